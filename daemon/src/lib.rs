//! `codecollab-daemon`: spawned by an editor, it speaks the editor protocol (LSP framing, `collab/*` methods) on
//! stdio and the wire protocol toward the server.
//!
//! - [`lsp_server`]: the LSP side; handlers only forward. [`lsp_ext`]: the editor protocol's types.
//! - [`main_loop`]: the one owner of state, driven by a closed `Event` enum, and its dispatch.
//!   [`connection`]: the connection's lifecycle (idle, connecting, connected, reconnecting) as one enum.
//!   [`session`]: a session's peers and documents, what the server's messages do to them, files on disk.
//!   [`document`]: one document (rope, OT client, revision pair, selections); its transitions return effects.
//!   [`output`]: everything the daemon tells its editor, built in one place.
//! - [`editor_ot`]: the revision pair toward each editor buffer. [`position`]: every position conversion.
//! - [`relay`]: the WebSocket connection to the server. [`workspace`]: the shared folder on disk.
//! - [`transport`]: LSP framing on stdio, feeding tower-lsp-server's service.
//! - [`fuzzing`]: the daemon fed an editor's bytes, as the fuzz target and the corpus replay run it.
#![deny(clippy::print_stdout)]

pub mod connection;
pub mod document;
pub mod editor_ot;
pub mod fuzzing;
pub mod lsp_ext;
pub mod lsp_server;
pub mod main_loop;
pub mod output;
pub mod position;
pub mod relay;
pub mod session;
pub mod transport;
pub mod watcher;
pub mod workspace;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tower_lsp_server::LspService;

/// Serves the editor protocol on `input`/`output` until `exit` or the end of `input`.
pub async fn run<I, O>(input: I, output: O)
where
    I: AsyncRead + Unpin,
    O: AsyncWrite,
{
    let (events, receiver) = mpsc::unbounded_channel();
    let (out, out_receiver) = mpsc::unbounded_channel();
    let main_loop = main_loop::MainLoop::new(events.clone(), out);
    let shutdown = events.clone();
    let main_task = tokio::spawn(main_loop.run(receiver));
    let (service, socket) = LspService::build(|client| {
        tokio::spawn(lsp_server::forward_output(client, out_receiver));
        lsp_server::Backend::new(events)
    })
    .custom_method("collab/share", lsp_server::Backend::share)
    .custom_method("collab/join", lsp_server::Backend::join)
    .custom_method("collab/leave", lsp_server::Backend::leave)
    .custom_method("collab/status", lsp_server::Backend::status)
    .custom_method("collab/allow", lsp_server::Backend::allow)
    .custom_method("collab/removePeer", lsp_server::Backend::remove_peer)
    .custom_method("collab/undo", lsp_server::Backend::undo)
    .custom_method("collab/redo", lsp_server::Backend::redo)
    .custom_method("collab/open", lsp_server::Backend::open)
    .custom_method("collab/edit", lsp_server::Backend::edit)
    .custom_method("collab/cursor", lsp_server::Backend::cursor)
    .custom_method("collab/close", lsp_server::Backend::close)
    .finish();
    transport::serve(input, output, service, socket).await;
    // The editor is gone: the main loop writes the files no editor has open (the last remote edits among them)
    // before the process ends. It holds a sender to its own channel, so it is told rather than left to notice.
    let _ = shutdown.send(main_loop::Event::Shutdown);
    if tokio::time::timeout(std::time::Duration::from_secs(10), main_task).await.is_err() {
        tracing::warn!("the main loop did not stop in time; some files may not be written");
    }
}
