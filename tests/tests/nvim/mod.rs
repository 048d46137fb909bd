//! The Neovim plugin in real headless Neovims, with real daemons and a real server; one file per property.

mod approval;
mod commands;
mod cursors;
mod encodings;
mod file_names;
mod follow;
mod getting_started;
mod health;
mod join_conflicts;
mod leave;
mod line_endings;
mod removal;
mod restart;
mod typing;
mod undo;
mod version_skew;
mod view_only;
