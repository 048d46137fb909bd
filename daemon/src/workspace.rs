//! The shared folder on disk: which files a share uploads (honouring `.gitignore`, skipping binaries, large files,
//! symbolic links and version-control internals), mapping between editor URIs, absolute paths and session paths,
//! and changing files safely, whatever path the server sends: only paths that follow the session rules
//! ([`codecollab_protocol::path`]), never through a symbolic link or below a folder that is one (every component
//! under the root is checked, and new files are created without following links), and atomically, so a reader
//! never sees half a file.
//!
//! What a check cannot prevent: a local process that swaps a folder for a link between the check and the write.
//! The threat here is a remote peer or server, which cannot do that (docs/security.md).

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use codecollab_protocol::path as session_path;
use codecollab_protocol::wire::UnsharedFile;

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

/// Where session path `path` lives under `root`, refusing any path the session rules refuse.
pub fn resolve(root: &Path, path: &str) -> anyhow::Result<PathBuf> {
    if let Err(why) = session_path::check(path) {
        bail!("refusing the path {path:?}: {why}");
    }
    let mut full = root.to_path_buf();
    for part in path.split('/') {
        full.push(part);
    }
    Ok(full)
}

/// [`resolve`], and a refusal if any component of the path under `root` that exists is a symbolic link (the file
/// itself included): nothing is written, renamed or deleted through one.
pub fn resolve_without_links(root: &Path, path: &str) -> anyhow::Result<PathBuf> {
    let full = resolve(root, path)?;
    let mut prefix = root.to_path_buf();
    for part in path.split('/') {
        prefix.push(part);
        match std::fs::symlink_metadata(&prefix) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let shown = prefix.strip_prefix(root).unwrap_or(&prefix).display().to_string();
                bail!("{shown} is a symbolic link, and files are never written through one")
            }
            Ok(_) => {}
            // Nothing further down exists yet, so nothing further down is a link.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
            Err(error) => return Err(error).with_context(|| format!("checking {}", prefix.display())),
        }
    }
    Ok(full)
}

/// Creates the folders of `path` under `root` one at a time, each checked not to be a link first.
fn create_parents(root: &Path, path: &str) -> anyhow::Result<()> {
    let mut prefix = root.to_path_buf();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        prefix.push(part);
        match std::fs::symlink_metadata(&prefix) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("{} is not a folder", prefix.display()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&prefix).with_context(|| format!("creating {}", prefix.display()))?
            }
            Err(error) => return Err(error).with_context(|| format!("checking {}", prefix.display())),
        }
    }
    Ok(())
}

/// The ignore rules of the folder's top `.gitignore` and `.ignore` (the watcher's: a share honours nested ones too).
pub fn top_ignore(root: &Path) -> TopIgnore {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    for name in [".gitignore", ".ignore"] {
        let _ = builder.add(root.join(name));
    }
    TopIgnore(builder.build().unwrap_or_else(|_| ignore::gitignore::Gitignore::empty()))
}

/// See [`top_ignore`].
#[derive(Debug)]
pub struct TopIgnore(ignore::gitignore::Gitignore);

impl TopIgnore {
    /// Whether `path` (under the root) or a folder above it is ignored.
    pub fn ignored(&self, path: &Path) -> bool {
        let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
        self.0.matched_path_or_any_parents(path, is_dir).is_ignore()
    }
}

/// What a share finds under its folder.
#[derive(Debug, Default)]
pub struct Scan {
    /// The text files to share: (path, text), sorted by path.
    pub files: Vec<(String, String)>,
    /// The files left out that a peer would expect to see (binaries, files not UTF-8, files over
    /// [`MAX_FILE_BYTES`]), and why, sorted by path.
    pub unshared: Vec<UnsharedFile>,
}

/// Why the file `bytes` (read from disk) is not shared as text, if it is not.
pub fn not_text(bytes: &[u8]) -> Option<&'static str> {
    if bytes.contains(&0) {
        Some("binary")
    } else if std::str::from_utf8(bytes).is_err() {
        Some("not UTF-8 text")
    } else {
        None
    }
}

/// Why a file of `size` bytes is too large to share.
pub fn too_large(size: u64) -> String {
    format!("larger than {} MiB ({size} bytes)", MAX_FILE_BYTES >> 20)
}

/// The files to share under `root`: `.gitignore` (and `.ignore`) honoured, version-control internals and symbolic
/// links skipped, paths the session rules refuse left out silently, and binaries (a NUL byte, or not UTF-8) and
/// files over [`MAX_FILE_BYTES`] listed as unshared.
pub fn scan(root: &Path) -> anyhow::Result<Scan> {
    let mut scan = Scan::default();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|entry| {
            let name = entry.file_name().to_string_lossy();
            !session_path::VCS_DIRS.iter().any(|vcs| name.eq_ignore_ascii_case(vcs))
        })
        .build();
    for entry in walker {
        let entry = entry.context("walking the shared folder")?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Some(path) = relative(root, entry.path()) else { continue };
        if let Err(why) = session_path::check(&path) {
            tracing::info!(%path, %why, "not shared");
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if size > MAX_FILE_BYTES {
            tracing::info!(%path, size, "not shared: too large");
            scan.unshared.push(UnsharedFile { path, reason: too_large(size) });
            continue;
        }
        let bytes = std::fs::read(entry.path()).with_context(|| format!("reading {}", entry.path().display()))?;
        if let Some(reason) = not_text(&bytes) {
            tracing::info!(%path, reason, "not shared");
            scan.unshared.push(UnsharedFile { path, reason: reason.into() });
            continue;
        }
        scan.files.push((path, String::from_utf8(bytes).expect("checked by not_text")));
    }
    scan.files.sort();
    scan.unshared.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(scan)
}

/// Writes `text` to session path `path` under `root`, atomically (a new temporary file, created without following
/// links, renamed into place), never through a symbolic link.
pub fn write(root: &Path, path: &str, text: &str) -> anyhow::Result<()> {
    let full = resolve_without_links(root, path)?;
    if std::fs::read(&full).is_ok_and(|existing| existing == text.as_bytes()) {
        return Ok(());
    }
    create_parents(root, path)?;
    let name = full.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = full.with_file_name(format!(".{name}.codecollab-tmp"));
    let _ = std::fs::remove_file(&temporary);
    let mut file = new_file(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("writing {}", temporary.display()))?;
    drop(file);
    std::fs::rename(&temporary, &full).with_context(|| format!("replacing {}", full.display()))?;
    Ok(())
}

/// The bytes of the plain file at session path `path` under `root`, if there is one reached through no link:
/// what a join compares with the session's text before it writes.
pub fn existing(root: &Path, path: &str) -> Option<Vec<u8>> {
    let full = resolve_without_links(root, path).ok()?;
    let meta = std::fs::symlink_metadata(&full).ok()?;
    meta.is_file().then(|| std::fs::read(&full).ok()).flatten()
}

/// The folder a join moves differing local files into: beside `root`, named after it and the time, never inside
/// the shared tree (so it is neither shared nor overwritten).
pub fn backup_folder(root: &Path) -> PathBuf {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut name = root.as_os_str().to_owned();
    name.push(format!(".codecollab-backup-{seconds}"));
    PathBuf::from(name)
}

/// Moves the file at session path `path` under `root` to the same path under `folder` (neither through a link).
pub fn back_up(root: &Path, path: &str, folder: &Path) -> anyhow::Result<()> {
    let source = resolve_without_links(root, path)?;
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let target = resolve_without_links(folder, path)?;
    create_parents(folder, path)?;
    std::fs::rename(&source, &target).with_context(|| format!("moving {} to {}", source.display(), target.display()))
}

/// A new file at `path`, refusing to follow a link there or to reuse an existing file.
fn new_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW).mode(0o644);
    }
    options.open(path)
}

/// Deletes the file at session path `path` under `root` (not through a link, nor a link itself).
pub fn remove(root: &Path, path: &str) -> anyhow::Result<()> {
    let full = resolve_without_links(root, path)?;
    match std::fs::remove_file(&full) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("deleting {}", full.display()))
        }
        _ => Ok(()),
    }
}

/// Moves the file at session path `from` to `to` under `root` (neither through a link).
pub fn rename(root: &Path, from: &str, to: &str) -> anyhow::Result<()> {
    let source = resolve_without_links(root, from)?;
    let target = resolve_without_links(root, to)?;
    create_parents(root, to)?;
    std::fs::rename(&source, &target).with_context(|| format!("moving {} to {}", source.display(), target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn nothing_is_written_renamed_or_deleted_through_a_link() {
        let base = std::env::temp_dir().join(format!("codecollab-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(&root).expect("creates");
        std::fs::create_dir_all(&outside).expect("creates");
        std::fs::write(outside.join("secret.txt"), "mine").expect("writes");
        std::os::unix::fs::symlink(&outside, root.join("linked")).expect("links a folder");
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("file-link.txt")).expect("links a file");
        for path in ["linked/secret.txt", "linked/new.txt", "linked/deeper/new.txt", "file-link.txt"] {
            let error = write(&root, path, "planted").expect_err(path);
            assert!(error.to_string().contains("symbolic link"), "{path}: {error}");
        }
        assert!(remove(&root, "linked/secret.txt").is_err());
        assert!(rename(&root, "file-link.txt", "moved.txt").is_err());
        std::fs::write(root.join("plain.txt"), "x").expect("writes");
        assert!(rename(&root, "plain.txt", "linked/plain.txt").is_err());
        assert_eq!(std::fs::read_to_string(outside.join("secret.txt")).expect("reads"), "mine");
        assert_eq!(std::fs::read_dir(&outside).expect("lists").count(), 1, "nothing new outside the root");
        write(&root, "sub/dir/ok.txt", "fine").expect("a plain path is written");
        assert_eq!(std::fs::read_to_string(root.join("sub/dir/ok.txt")).expect("reads"), "fine");
        assert!(write(&root, ".git/hooks/post-checkout", "#!/bin/sh").is_err());
        std::fs::remove_dir_all(base).ok();
    }

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
