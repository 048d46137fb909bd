//! The shared folder on disk: which files a share uploads (honouring `.gitignore`, skipping binaries and large
//! files), mapping between editor URIs, absolute paths and session paths, and writing files safely (never
//! outside the root, whatever path the server sends; atomically, so a reader never sees half a file).

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};

/// Files larger than this are not shared.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// A `file://` URI as a path.
pub fn uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    let decoded = percent_decode(rest)?;
    let path = PathBuf::from(decoded);
    path.is_absolute().then_some(path)
}

/// A path as a `file://` URI.
pub fn path_to_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => uri.push(byte as char),
            _ => uri.push_str(&format!("%{byte:02X}")),
        }
    }
    uri
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The session path (`/`-separated, relative) of `path` under `root`, if it is under it.
pub fn relative(root: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = rest
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str().map(str::to_owned),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Where session path `path` lives under `root`, refusing anything that could escape it.
pub fn resolve(root: &Path, path: &str) -> anyhow::Result<PathBuf> {
    if path.is_empty() || path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        bail!("refusing unsafe path {path:?}");
    }
    let mut full = root.to_path_buf();
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains(':') {
            bail!("refusing unsafe path {path:?}");
        }
        full.push(part);
    }
    Ok(full)
}

/// The text files to share under `root`: `.gitignore` (and `.ignore`) honoured, `.git` skipped, binaries (a NUL
/// byte, or not UTF-8) and files over [`MAX_FILE_BYTES`] left out. Sorted by path.
pub fn scan(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .filter_entry(|entry| entry.file_name() != ".git")
        .build();
    for entry in walker {
        let entry = entry.context("walking the shared folder")?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if size > MAX_FILE_BYTES {
            tracing::info!(path = %entry.path().display(), size, "not shared: too large");
            continue;
        }
        let Some(path) = relative(root, entry.path()) else { continue };
        let bytes = std::fs::read(entry.path()).with_context(|| format!("reading {}", entry.path().display()))?;
        if bytes.contains(&0) {
            continue;
        }
        match String::from_utf8(bytes) {
            Ok(text) => files.push((path, text)),
            Err(_) => tracing::info!(%path, "not shared: not UTF-8 text"),
        }
    }
    files.sort();
    Ok(files)
}

/// Writes `text` to session path `path` under `root`, atomically (a temporary file renamed into place).
pub fn write(root: &Path, path: &str, text: &str) -> anyhow::Result<()> {
    let full = resolve(root, path)?;
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if std::fs::read(&full).is_ok_and(|existing| existing == text.as_bytes()) {
        return Ok(());
    }
    let name = full.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = full.with_file_name(format!(".{name}.codecollab-tmp"));
    std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, &full).with_context(|| format!("replacing {}", full.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_escape_the_root() {
        let root = Path::new("/tmp/share");
        assert_eq!(resolve(root, "a/b.txt").expect("safe"), Path::new("/tmp/share/a/b.txt"));
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "C:/x", "a\\b", "", "./a"] {
            assert!(resolve(root, bad).is_err(), "{bad:?}");
        }
        assert_eq!(relative(root, Path::new("/tmp/share/d/é f.rs")), Some("d/é f.rs".into()));
        assert_eq!(relative(root, Path::new("/tmp/other/x")), None);
        let uri = path_to_uri(Path::new("/tmp/share/d/é f.rs"));
        assert_eq!(uri_to_path(&uri), Some(PathBuf::from("/tmp/share/d/é f.rs")));
    }
}
