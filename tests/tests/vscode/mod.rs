//! The VS Code extension in a real VS Code workbench (code-server, driven by Playwright in Chromium), with a real
//! daemon, server and Neovim on the other side; one file per property, one workbench at a time.

mod approval;
mod disk_changes;
mod file_operations;
mod follow;
mod host_token;
mod join;
mod join_conflicts;
mod leave;
mod line_endings;
mod peer_file_operations;
mod reload;
mod restart;
mod typing;
mod undo;
mod version_skew;
mod view_only;
