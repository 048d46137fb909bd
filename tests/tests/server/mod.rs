//! The relay server through its real WebSocket endpoint (in-process on 127.0.0.1:0, or the real binary where
//! process death matters).

mod bad_input;
mod convergence;
mod durability;
mod operations;
mod resume;
mod tls;

use codecollab_protocol::wire::{ErrorCode, ServerMsg};
use codecollab_tests::client::WsClient;
use codecollab_tests::editor::{self, Editor, SessionTokens};
use codecollab_tests::harness::TestServer;

/// A server and a session on it.
pub async fn server_and_session() -> (TestServer, SessionTokens) {
    server_and_session_with(|_| {}).await
}

pub async fn server_and_session_with(
    configure: impl FnOnce(&mut codecollab_server::Config),
) -> (TestServer, SessionTokens) {
    let server = TestServer::start(configure).await;
    let tokens = editor::create_session(&server.url(), None, "host").await.expect("session created");
    (server, tokens)
}

/// Every editor converges to the server's text: wait until each has seen the server's latest revision.
pub async fn assert_converged(url: &str, token: &str, path: &str, editors: &mut [Editor]) -> String {
    let (text, revision) = editor::server_text(url, token, path).await.expect("server text");
    for (i, editor) in editors.iter_mut().enumerate() {
        editor.sync_to(revision).await.unwrap_or_else(|e| panic!("editor {i}: {e:#}"));
        assert_eq!(editor.text.to_string(), text, "editor {i} differs from the server");
    }
    text
}

/// Waits for an error with `code` (skipping other messages) and returns its message.
pub async fn expect_error(ws: &mut WsClient, code: ErrorCode) -> String {
    ws.recv_until(|m| match m {
        ServerMsg::Error { code: c, message, .. } if *c == code => Some(message.clone()),
        _ => None,
    })
    .await
    .unwrap_or_else(|e| panic!("expected {code:?}: {e:#}"))
}
