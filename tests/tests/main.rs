//! End-to-end tests across real sockets and processes, one binary with one module per area.

mod browser;
mod daemon;
mod nvim;
mod server;
mod vscode;
