//! Build script: embeds the browser client that `scripts/build-web` built into `web/dist` (committed, so that a
//! plain `cargo build` needs neither Node.js nor the WebAssembly toolchain) as a table of files in `OUT_DIR`, each
//! also gzipped here (with Zopfli, once per change of the client) for browsers that take it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = manifest.join("../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // One iteration instead of Zopfli's default 15: within 0.3 % of its size on this client, in half the time.
    let options = zopfli::Options {
        iteration_count: std::num::NonZeroU64::new(1).expect("non-zero"),
        ..zopfli::Options::default()
    };
    let mut table = String::from("&[\n");
    for (index, (name, path)) in files.iter().enumerate() {
        println!("cargo:rerun-if-changed={}", path.display());
        let body = std::fs::read(path).expect("reading a web file");
        let mut gzipped = Vec::with_capacity(body.len() / 3);
        zopfli::compress(options, zopfli::Format::Gzip, body.as_slice(), &mut gzipped).expect("gzip");
        let gz = out.join(format!("web-{index}.gz"));
        std::fs::write(&gz, gzipped).expect("writing a gzipped web file");
        let _ = writeln!(
            table,
            "    WebFile {{ name: {name:?}, body: include_bytes!({:?}), gzip: include_bytes!({:?}) }},",
            path.display().to_string(),
            gz.display().to_string()
        );
    }
    table.push(']');
    std::fs::write(out.join("web_files.rs"), table).expect("writing the table of web files");
}

/// Every file under `dir`, named by its path relative to `root` with `/` separators.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            files.push((name, path));
        }
    }
}
