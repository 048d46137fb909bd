//! Shared harness for CodeCollab's end-to-end tests and load generator: servers (in-process or the real binary),
//! a WebSocket client that speaks the wire protocol, and an editor-like OT client.
//!
//! - [`harness`]: temporary directories, the in-process [`harness::TestServer`], the real binary as
//!   [`harness::ServerProcess`], and building binaries on demand.
//! - [`client`]: [`client::WsClient`], plain or TLS, with the token and subprotocol in the upgrade request.
//! - [`editor`]: [`editor::Editor`], one document edited through the protocol's OT client, as a daemon would.
//! - [`nvim`]: [`nvim::Nvim`], a real headless Neovim with the plugin, driven over msgpack-RPC.
//! - [`vscode`]: [`vscode::VsCode`], a real VS Code workbench (code-server) with the extension, driven by Playwright.
//! - [`browser`]: [`browser::Browser`], the web client in a real Chromium, driven by Playwright.
//! - [`lsp`]: [`lsp::ScriptedEditor`], the real daemon binary driven over stdio as an editor plugin would.
//! - [`hostile`]: [`hostile::HostileServer`], a server that sends whatever a test scripts, lies included.
//! - [`proxy`]: [`proxy::FaultProxy`], a TCP proxy that delays, stalls, resets, refuses and cuts on command.
//! - [`fixtures`]: the starts most tests share (two editors in one session, a server with a session, ...) and the
//!   waits and checks they make.
//! - [`random`], [`tokens`]: the seeded generator and the unique-token texts, from `codecollab-testgen`.
//!   tests.

pub mod bench;
pub mod browser;
pub mod client;
pub mod driver;
pub mod editor;
pub mod fixtures;
pub mod harness;
pub mod hostile;
pub mod lsp;
pub mod nvim;
pub mod proxy;
pub mod relay;
pub mod vscode;

pub use codecollab_testgen::{random, tokens};
