//! The rules a session path must follow, one definition for both ends: the server refuses a path that breaks them
//! and the daemon refuses it again before touching its disk, so neither a hostile peer nor a compromised server can
//! plant a file outside the shared folder or where tools execute it unseen.
//!
//! A session path is relative and `/`-separated, with plain components only (no `.`, `..` or empty ones, no
//! backslashes, colons or control characters), at most [`MAX_DEPTH`] components of at most [`MAX_COMPONENT_BYTES`]
//! bytes, [`MAX_PATH_BYTES`] in all, and no component naming version-control internals ([`VCS_DIRS`], in any
//! letter case, as a folder or a file, at any depth): a hook in `.git/hooks` runs on the host's next checkout.
//!
//! Separately, [`runs_by_itself`] names the files that editors and shells run or obey when a folder is opened
//! (`.vscode/tasks.json`, `.envrc`, ...): they may be shared, but a daemon does not write another person's change
//! to one without its user's yes.

/// Version-control internals: no session path may have a component naming one of these (letter case ignored).
pub const VCS_DIRS: &[&str] = &[".git", ".hg", ".svn", ".jj", ".bzr", ".pijul"];
/// Longest session path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest component, in bytes (what common file systems allow).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Most components in a session path.
pub const MAX_DEPTH: usize = 64;

/// Why a path is not a valid session path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("the path has more than {MAX_DEPTH} components")]
    TooDeep,
    #[error("a component is longer than {MAX_COMPONENT_BYTES} bytes")]
    ComponentTooLong,
    #[error("the path must be relative")]
    Absolute,
    #[error("the path contains a backslash, a colon or a control character")]
    BadCharacter,
    #[error("empty, `.` and `..` components are not allowed")]
    BadComponent,
    #[error("`{0}` is version-control internals, which are never shared")]
    VersionControl(String),
}

/// Checks `path` against the rules above.
pub fn check(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if path.chars().any(|c| c == '\\' || c == ':' || c.is_control()) {
        return Err(PathError::BadCharacter);
    }
    let mut depth = 0;
    for part in path.split('/') {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(PathError::TooDeep);
        }
        if part.is_empty() || part == "." || part == ".." {
            return Err(PathError::BadComponent);
        }
        if part.len() > MAX_COMPONENT_BYTES {
            return Err(PathError::ComponentTooLong);
        }
        if let Some(vcs) = VCS_DIRS.iter().find(|vcs| part.eq_ignore_ascii_case(vcs)) {
            return Err(PathError::VersionControl((*vcs).to_owned()));
        }
    }
    Ok(())
}

/// Folders whose every file an editor reads, and may run, by itself when the folder is opened.
const RUNNABLE_DIRS: &[&str] = &[".vscode", ".devcontainer", ".idea"];
/// Files that an editor or a shell runs or obeys by itself when a folder is opened (Neovim's and Vim's `exrc`,
/// direnv).
const RUNNABLE_FILES: &[&str] = &[".nvim.lua", ".nvimrc", ".exrc", ".vimrc", ".lvimrc", ".envrc"];

/// True if editors or shells run or obey the file at session path `path` by themselves when its folder is opened
/// (`.vscode/tasks.json`, `.nvim.lua`, `.envrc`, ...; at any depth, letter case ignored).
pub fn runs_by_itself(path: &str) -> bool {
    let mut parts = path.split('/').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        if !last && RUNNABLE_DIRS.iter().any(|dir| part.eq_ignore_ascii_case(dir)) {
            return true;
        }
        if last && RUNNABLE_FILES.iter().any(|file| part.eq_ignore_ascii_case(file)) {
            return true;
        }
    }
    false
}

/// The key under which two paths that a case-insensitive file system would take for one file are equal.
pub fn case_key(path: &str) -> String {
    path.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths_stay_plain_relative_and_away_from_version_control() {
        for good in ["a.txt", "src/main.rs", "dir/sub dir/ünïcode 日本.md", ".gitignore", ".github/ci.yml", "a.git"]
        {
            assert_eq!(check(good), Ok(()), "{good:?}");
        }
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        let long_part = "x".repeat(MAX_COMPONENT_BYTES + 1);
        let cases: &[(&str, PathError)] = &[
            ("", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("../x", PathError::BadComponent),
            ("a/../../x", PathError::BadComponent),
            ("a//b", PathError::BadComponent),
            ("a/./b", PathError::BadComponent),
            ("dir/", PathError::BadComponent),
            ("a\\b", PathError::BadCharacter),
            ("C:x", PathError::BadCharacter),
            ("a\u{0}b", PathError::BadCharacter),
            ("new\nline", PathError::BadCharacter),
            (".git/hooks/post-checkout", PathError::VersionControl(".git".into())),
            ("sub/.GIT/config", PathError::VersionControl(".git".into())),
            ("vendor/lib/.Hg/hgrc", PathError::VersionControl(".hg".into())),
            (".svn", PathError::VersionControl(".svn".into())),
            ("a/.jj/repo", PathError::VersionControl(".jj".into())),
            (".bzr/branch", PathError::VersionControl(".bzr".into())),
            (".pijul/config", PathError::VersionControl(".pijul".into())),
            (&deep, PathError::TooDeep),
            (&long_part, PathError::ComponentTooLong),
        ];
        for (bad, why) in cases {
            assert_eq!(check(bad).as_ref(), Err(why), "{bad:?}");
        }
        assert_eq!(check(&"a/".repeat(3000)), Err(PathError::TooLong));
    }

    #[test]
    fn files_that_run_by_themselves_are_recognized_at_any_depth_and_case() {
        for runs in [
            ".vscode/tasks.json",
            ".VSCode/settings.json",
            "sub/.vscode/launch.json",
            ".nvim.lua",
            "a/.envrc",
            ".exrc",
            ".devcontainer/devcontainer.json",
        ] {
            assert!(runs_by_itself(runs), "{runs:?}");
        }
        for plain in ["src/main.rs", "vscode/tasks.json", ".vscode", "envrc", "docs/.nvim.lua.md"] {
            assert!(!runs_by_itself(plain), "{plain:?}");
        }
        assert_eq!(case_key("Src/README.md"), case_key("src/readme.MD"));
    }
}
