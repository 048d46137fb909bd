//! The daemon's lifecycle and bad input from the editor: it answers `--version` and `--help`, exits promptly on `exit` and on
//! the end of stdin, and refuses malformed requests, unknown URIs and positions past the end while it keeps
//! serving.

use std::time::Duration;

use codecollab_tests::harness::{binary, TempDir, TestServer};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use serde_json::json;

use codecollab_tests::fixtures::scripted::share;
use codecollab_tests::fixtures::uri;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_exit_and_end_of_stdin() {
    let output = std::process::Command::new(binary("codecollab-daemon", "codecollab-daemon"))
        .arg("--version")
        .output()
        .expect("runs");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("codecollab-daemon "));
    let output = std::process::Command::new(binary("codecollab-daemon", "codecollab-daemon"))
        .arg("--help")
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && help.contains("Usage: codecollab-daemon"), "{help}");
    let editor = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("starts");
    let started = std::time::Instant::now();
    assert!(editor.exit().await.expect("exits").success());
    assert!(started.elapsed() < Duration::from_secs(3), "exit took {:?}", started.elapsed());
    let editor = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("starts");
    let started = std::time::Instant::now();
    editor.close_stdin().await.expect("exits when the editor goes away");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_from_the_editor_is_refused_and_the_daemon_keeps_serving() {
    let server = TestServer::start(|_| {}).await;
    let dir = TempDir::new("bad");
    std::fs::write(dir.path().join("a.txt"), "one\ntwo\n").expect("write");
    let mut editor = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("starts");
    // Malformed params: a JSON-RPC error, not a crash.
    let error = editor.request("collab/share", json!({"root": 42})).await.expect_err("malformed params");
    assert!(error.to_string().contains("-32602") || error.to_string().to_lowercase().contains("invalid"), "{error}");
    let error = editor
        .request("collab/join", json!({"invite": "not an invite", "root": uri(dir.path())}))
        .await
        .expect_err("bad invite");
    assert!(error.to_string().contains("invite"), "{error}");
    let (_invite, _) = share(&mut editor, dir.path(), &server.url(), "ada").await;
    let u = uri(&dir.path().join("a.txt"));
    editor.open(&u, "one\ntwo\n").await.expect("open");
    // Unknown URI, position past the end, a revision from the future, garbage params: each refused.
    editor
        .notify("collab/edit", json!({"uri": "file:///nowhere.txt", "revision": 0, "changes": []}))
        .await
        .expect("send");
    let past_end =
        json!({"range": {"start": {"line": 40, "character": 0}, "end": {"line": 40, "character": 1}}, "text": "x"});
    editor.notify("collab/edit", json!({"uri": u, "revision": 0, "changes": [past_end]})).await.expect("send");
    editor.notify("collab/edit", json!({"uri": u, "revision": 99, "changes": []})).await.expect("send");
    editor.notify("collab/edit", json!({"uri": u, "revision": "zero"})).await.expect("send");
    editor.notify("collab/cursor", json!({"uri": u, "ranges": "nope"})).await.expect("send");
    // Broken framing: a header block with a bad length, then a body that is not JSON. Each is answered with a
    // parse error, and the next well-framed message is served.
    editor.send_bytes(b"Content-Length: nonsense\r\n\r\n").await.expect("send");
    editor.send_bytes(b"Content-Length: 9\r\n\r\n{not json").await.expect("send");
    // Still serving, and the document unchanged by any of it.
    let status = editor.request("collab/status", json!({})).await.expect("status");
    assert_eq!(status["state"], "connected");
    let mut parse_errors = 0;
    while let Some(message) = editor.next_message(Duration::from_millis(200)).await.expect("read") {
        if message["id"].is_null() && message["error"]["code"] == json!(-32700) {
            parse_errors += 1;
        }
    }
    assert_eq!(parse_errors, 2);
    editor.buffers.get_mut(&u).expect("open").sent = 0;
    editor.type_at(&u, 3, 3, "!").await.expect("type");
    editor.drain(Duration::from_millis(300)).await.expect("drain");
    let status = editor.request("collab/status", json!({})).await.expect("status");
    assert!(status["peers"].as_array().is_some_and(|p| p.len() == 1), "{status}");
    let leave = editor.request("collab/leave", json!({})).await.expect("leave");
    assert!(leave.is_null());
    assert!(editor.exit().await.expect("exits").success());
}

/// A server of another wire-protocol version closes with 4002: the join fails at once with a message naming both
/// sides' versions and what to do, and the daemon does not keep retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_another_protocol_version_is_a_clear_error_not_endless_retries() {
    let server = codecollab_tests::hostile::HostileServer::start(Box::new(|msg| match msg {
        codecollab_protocol::wire::ClientMsg::Join { .. } => vec![codecollab_tests::hostile::Reply::Close(
            codecollab_protocol::wire::close::UNSUPPORTED_VERSION,
            "this server speaks codecollab.v2".into(),
        )],
        _ => Vec::new(),
    }))
    .await
    .expect("server");
    let dir = TempDir::new("skew");
    let mut editor = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("daemon");
    let error = editor
        .request("collab/join", json!({"invite": server.invite(), "root": uri(dir.path()), "name": "old"}))
        .await
        .expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("does not speak this daemon's protocol")
            && message.contains("wire protocol version 1")
            && message.contains("codecollab.v2")
            && message.contains("--version"),
        "{message}"
    );
    // No retries: one join, and the daemon is idle.
    editor.drain(Duration::from_secs(2)).await.expect("drain");
    let joins = server
        .received
        .lock()
        .expect("lock")
        .iter()
        .filter(|m| matches!(m, codecollab_protocol::wire::ClientMsg::Join { .. }))
        .count();
    assert_eq!(joins, 1);
    let status = editor.request("collab/status", json!({})).await.expect("status");
    assert_eq!(status["state"], "idle");
}

/// A share on a server that requires host tokens, without one: the answer says a host token is needed and how each
/// editor sets one (the HTTP refusal alone would not say).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_without_the_host_token_a_server_requires_says_how_to_set_one() {
    let server = TestServer::start(|c| c.require_host_token = true).await;
    let dir = TempDir::new("needs-token");
    let mut editor = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("daemon");
    let error = editor
        .request("collab/share", json!({"root": uri(dir.path()), "server": server.url(), "name": "ada"}))
        .await
        .expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("401") && message.contains("needs a host token") && message.contains("Set Host Token"),
        "{message}"
    );
}
