//! Running the server: health and metrics, heartbeats, presence, roles, removal, host tokens, documents,
//! and the configured limits.

use std::time::Duration;

use codecollab_protocol::wire::{ClientMsg, ErrorCode, ServerMsg, UnsharedFile};
use codecollab_protocol::{Selection, TextOperation};
use codecollab_tests::client::{Connect, WsClient};
use codecollab_tests::editor::{self, Editor};
use codecollab_tests::harness::{binary, http_get, ServerProcess, TempDir};

use codecollab_tests::fixtures::wire::{expect_error, server_and_session, server_and_session_with};

fn connect_with(token: &str) -> Connect {
    Connect { token: Some(token.to_owned()), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_on_the_same_port() {
    let (server, tokens) = server_and_session().await;
    assert_eq!(http_get(server.addr, "/healthz").await.expect("healthz"), (200, "ok\n".to_owned()));
    let mut editor = Editor::open(&server.url(), &tokens.edit_token, "a", "m.txt", "").await.expect("open");
    for i in 0..5 {
        editor.edit(TextOperation::replace(i, i, i, "x").expect("op")).await.expect("edit");
        editor.flush().await.expect("flush");
    }
    let (status, body) = http_get(server.addr, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    for name in [
        "codecollab_connections 1",
        "codecollab_sessions 1",
        "codecollab_documents 1",
        "codecollab_ops_committed_total 5",
        "codecollab_commit_latency_seconds_count",
        "codecollab_commit_waits_total",
        "codecollab_commit_waits_expired_total",
        "codecollab_bytes_in_total",
        "codecollab_bytes_out_total",
        "codecollab_refusals_total{reason=\"rate_limited\"} 0",
    ] {
        assert!(body.contains(name), "metrics lack {name:?}:\n{body}");
    }
    assert_eq!(http_get(server.addr, "/nope").await.expect("404").0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_dropped_after_two_heartbeats_and_its_presence_removed() {
    let (server, tokens) = server_and_session_with(|c| c.heartbeat = Duration::from_millis(100)).await;
    let url = server.url();
    let mut watcher = Editor::open(&url, &tokens.edit_token, "watcher", "h.txt", "hello").await.expect("watcher");
    let (mut silent, welcome) = editor::join(&url, &connect_with(&tokens.edit_token), 5, "silent").await.expect("join");
    let ServerMsg::Welcome { peer: silent_peer, .. } = welcome else { unreachable!() };
    silent.send(&ClientMsg::Subscribe { doc: watcher.doc, since: None }).await.expect("subscribe");
    silent
        .send(&ClientMsg::Cursor { doc: watcher.doc, revision: 0, selections: vec![Selection::caret(2)] })
        .await
        .expect("cursor");
    let ws = watcher.ws.as_mut().expect("online");
    let seen = ws
        .recv_until(|m| match m {
            ServerMsg::Presence { peer, selections, .. } if *peer == silent_peer => Some(selections.clone()),
            _ => None,
        })
        .await
        .expect("presence");
    assert_eq!(seen, vec![Selection::caret(2)]);
    // From now on `silent` never reads, so it never answers a ping.
    // The presence is cleared (by the document) and the peer announced gone (by the session), in either order.
    let started = tokio::time::Instant::now();
    let (mut cleared, mut left) = (false, None);
    while !(cleared && left.is_some()) {
        match ws.recv().await.expect("watcher keeps its connection") {
            ServerMsg::Presence { peer, selections, .. } if peer == silent_peer && selections.is_empty() => {
                cleared = true
            }
            ServerMsg::PeerLeft { peer } if peer == silent_peer => left = Some(started.elapsed()),
            _ => {}
        }
    }
    let left = left.expect("peer left");
    assert!(left < Duration::from_secs(5), "dropped after {left:?}");
    // The watcher, which reads (and so answers pings), is still served.
    watcher.edit(TextOperation::replace(5, 5, 5, "!").expect("op")).await.expect("edit");
    watcher.flush().await.expect("still connected");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_relayed_transformed_and_coalesced() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let mut a = Editor::open(&url, &tokens.edit_token, "a", "p.txt", "0123456789").await.expect("a");
    let mut b = Editor::open(&url, &tokens.edit_token, "b", "p.txt", "").await.expect("b");
    let doc = a.doc;
    // A burst of cursor moves: B sees A's latest position.
    for offset in 0..=5 {
        let ws = a.ws.as_mut().expect("online");
        ws.send(&ClientMsg::Cursor { doc, revision: 0, selections: vec![Selection::caret(offset)] })
            .await
            .expect("cursor");
    }
    let latest =
        b.ws.as_mut()
            .expect("online")
            .recv_until(|m| match m {
                ServerMsg::Presence { selections, .. } if selections == &[Selection::caret(5)] => Some(()),
                _ => None,
            })
            .await;
    assert!(latest.is_ok());
    // B inserts before A's cursor; a peer who subscribes afterwards sees A's cursor moved along.
    b.edit(TextOperation::replace(10, 0, 0, "ab").expect("op")).await.expect("edit");
    b.flush().await.expect("flush");
    let (mut c, _) = editor::join(&url, &connect_with(&tokens.edit_token), 9, "c").await.expect("c");
    c.send(&ClientMsg::Subscribe { doc, since: None }).await.expect("subscribe");
    let moved = c
        .recv_until(|m| match m {
            ServerMsg::Presence { peer, selections, .. } if *peer == a.peer => Some(selections.clone()),
            _ => None,
        })
        .await
        .expect("presence of a");
    assert_eq!(moved, vec![Selection::caret(7)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_everything_but_cannot_edit() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let mut editor = Editor::open(&url, &tokens.edit_token, "e", "v.txt", "shared").await.expect("editor");
    let (mut viewer, welcome) =
        editor::join(&url, &connect_with(&tokens.view_token), 3, "viewer").await.expect("viewer");
    assert!(matches!(welcome, ServerMsg::Welcome { role: codecollab_protocol::wire::Role::View, .. }));
    viewer.send(&ClientMsg::Subscribe { doc: editor.doc, since: None }).await.expect("subscribe");
    viewer.recv_until(|m| matches!(m, ServerMsg::Snapshot { .. }).then_some(())).await.expect("snapshot");
    let op = TextOperation::replace(6, 0, 6, "hacked").expect("op");
    viewer.send(&ClientMsg::Op { doc: editor.doc, seq: 1, base_revision: 0, op }).await.expect("send");
    expect_error(&mut viewer, ErrorCode::Forbidden).await;
    viewer.send(&ClientMsg::Delete { doc: editor.doc }).await.expect("send");
    expect_error(&mut viewer, ErrorCode::Forbidden).await;
    viewer.send(&ClientMsg::Rename { doc: editor.doc, path: "moved.txt".into() }).await.expect("send");
    expect_error(&mut viewer, ErrorCode::Forbidden).await;
    viewer.send(&ClientMsg::Create { path: "new.txt".into(), text: "planted".into() }).await.expect("send");
    expect_error(&mut viewer, ErrorCode::Forbidden).await;
    // The viewer still receives the editor's work, and may show a cursor.
    editor.edit(TextOperation::replace(6, 6, 6, "!").expect("op")).await.expect("edit");
    viewer.recv_until(|m| matches!(m, ServerMsg::Op { .. }).then_some(())).await.expect("op relayed");
    let (text, _) = editor::server_text(&url, &tokens.edit_token, "v.txt").await.expect("text");
    assert_eq!(text, "shared!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_removes_a_peer_whose_token_is_then_refused() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let (mut host, _) = editor::join(&url, &connect_with(&tokens.host_token), 1, "ignored").await.expect("host");
    let (mut guest, welcome) = editor::join(&url, &connect_with(&tokens.edit_token), 2, "guest").await.expect("guest");
    let ServerMsg::Welcome { token: guest_token, .. } = welcome else { unreachable!() };
    // A guest may not remove anyone.
    guest.send(&ClientMsg::RemovePeer { name: "host".into() }).await.expect("send");
    expect_error(&mut guest, ErrorCode::Forbidden).await;
    host.send(&ClientMsg::RemovePeer { name: "guest".into() }).await.expect("send");
    expect_error(&mut guest, ErrorCode::Unauthorized).await;
    assert_eq!(guest.expect_close().await.expect("closed").map(|(code, _)| code), Some(4003));
    // Neither the guest's personal token nor the invite under that name gets back in.
    for token in [&guest_token, &tokens.edit_token] {
        let mut ws = WsClient::connect(&url, Some(token)).await.expect("connects");
        ws.send(&ClientMsg::Join { client_id: 2, name: Some("guest".into()) }).await.expect("send");
        expect_error(&mut ws, ErrorCode::Unauthorized).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_created_renamed_and_deleted_for_everyone() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let (mut other, _) = editor::join(&url, &connect_with(&tokens.edit_token), 8, "other").await.expect("other");
    let editor = Editor::open(&url, &tokens.edit_token, "e", "a/b.txt", "x").await.expect("editor");
    let doc = other
        .recv_until(|m| if let ServerMsg::Created { doc, .. } = m { Some(doc.clone()) } else { None })
        .await
        .expect("created");
    assert_eq!(doc.path, "a/b.txt");
    for bad in ["../escape.txt", "/etc/passwd", "a//b"] {
        other.send(&ClientMsg::Create { path: bad.into(), text: String::new() }).await.expect("send");
        expect_error(&mut other, ErrorCode::InvalidPath).await;
    }
    other.send(&ClientMsg::Rename { doc: doc.doc, path: "c.txt".into() }).await.expect("send");
    let renamed =
        other.recv_until(|m| if let ServerMsg::Renamed { path, .. } = m { Some(path.clone()) } else { None }).await;
    assert_eq!(renamed.expect("renamed"), "c.txt");
    other.send(&ClientMsg::Delete { doc: doc.doc }).await.expect("send");
    other.recv_until(|m| matches!(m, ServerMsg::Deleted { .. }).then_some(())).await.expect("deleted");
    other.send(&ClientMsg::Subscribe { doc: doc.doc, since: None }).await.expect("send");
    expect_error(&mut other, ErrorCode::UnknownDocument).await;
    drop(editor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_typed_refusals() {
    let (server, tokens) = server_and_session_with(|c| {
        c.limits.max_documents_per_session = 2;
        c.limits.max_document_chars = 50;
        c.limits.max_sessions = 1;
        c.limits.max_connections = 4;
    })
    .await;
    let url = server.url();
    let mut editor = Editor::open(&url, &tokens.edit_token, "e", "one.txt", "x").await.expect("editor");
    let ws = editor.ws.as_mut().expect("online");
    ws.send(&ClientMsg::Create { path: "big.txt".into(), text: "y".repeat(51) }).await.expect("send");
    expect_error(ws, ErrorCode::DocumentTooLarge).await;
    ws.send(&ClientMsg::Create { path: "two.txt".into(), text: String::new() }).await.expect("send");
    ws.recv_until(|m| matches!(m, ServerMsg::Snapshot { .. }).then_some(())).await.expect("second document");
    ws.send(&ClientMsg::Create { path: "three.txt".into(), text: String::new() }).await.expect("send");
    expect_error(ws, ErrorCode::LimitReached).await;
    // Growing a document past its limit is refused; the document stays as it was.
    let op = TextOperation::replace(1, 1, 1, &"z".repeat(60)).expect("op");
    ws.send(&ClientMsg::Op { doc: editor.doc, seq: 1, base_revision: 0, op }).await.expect("send");
    expect_error(ws, ErrorCode::DocumentTooLarge).await;
    assert_eq!(editor::server_text(&url, &tokens.edit_token, "one.txt").await.expect("text").0, "x");
    // One session allowed: the second is refused.
    let mut ws = WsClient::connect(&url, None).await.expect("connect");
    ws.send(&ClientMsg::CreateSession { name: "second".into() }).await.expect("send");
    expect_error(&mut ws, ErrorCode::LimitReached).await;
    // Connections past the limit get 503 at the upgrade.
    let mut held = Vec::new();
    let refused = loop {
        match WsClient::connect(&url, None).await {
            Ok(ws) => held.push(ws),
            Err(error) => break error.to_string(),
        }
        assert!(held.len() < 10, "the connection limit was never enforced");
    };
    assert!(refused.contains("503"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_token_is_needed_off_loopback_and_the_token_command_makes_one() {
    let data = TempDir::new("hosttoken");
    let output = std::process::Command::new(binary("codecollab-server", "codecollab-server"))
        .args(["token", "--name", "ops", "--ttl", "1h", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("token command runs");
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    assert!(token.starts_with("cc1."), "{token}");
    // Listening on all interfaces (tested through loopback): no anonymous session creation.
    let server = ServerProcess::spawn("0.0.0.0:0", data.path(), &[]).expect("server starts");
    let url = format!("ws://127.0.0.1:{}", server.addr.port());
    let refused = WsClient::connect(&url, None).await.expect_err("no token, no upgrade");
    assert!(refused.to_string().contains("401"), "{refused}");
    let tokens = editor::create_session(&url, Some(&token), "ops").await.expect("host token creates a session");
    // An invite cannot create sessions.
    let mut ws = WsClient::connect(&url, Some(&tokens.edit_token)).await.expect("connect");
    ws.send(&ClientMsg::CreateSession { name: "x".into() }).await.expect("send");
    expect_error(&mut ws, ErrorCode::Unauthorized).await;
    // The secret signs nothing that shows up in the log.
    let log = server.log().join("\n");
    for secret in [&token, &tokens.edit_token, &tokens.host_token] {
        assert!(!log.contains(secret.as_str()), "a token was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_into_version_control_or_clashing_in_letter_case_are_refused() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let mut editor = Editor::open(&url, &tokens.edit_token, "e", "README.md", "x").await.expect("editor");
    let ws = editor.ws.as_mut().expect("online");
    let deep = vec!["d"; 65].join("/");
    for path in [
        ".git/hooks/post-checkout",
        "sub/.Git/config",
        ".hg/hgrc",
        "a/.svn/entries",
        ".jj/repo",
        ".bzr/x",
        ".pijul/x",
        "readme.md",
        "bell\u{7}",
        &deep,
    ] {
        ws.send(&ClientMsg::Create { path: path.into(), text: "#!/bin/sh\n".into() }).await.expect("send");
        let message = expect_error(ws, ErrorCode::InvalidPath).await;
        assert!(message.contains("invalid path") || message.contains("README.md"), "{path:?}: {message}");
    }
    // A rename can no more move a document there.
    ws.send(&ClientMsg::Create { path: "tool.sh".into(), text: "echo\n".into() }).await.expect("send");
    let doc = ws
        .recv_until(|m| match m {
            ServerMsg::Snapshot { doc, path, .. } if path == "tool.sh" => Some(*doc),
            _ => None,
        })
        .await
        .expect("created");
    for (path, why) in [
        (".git/hooks/pre-commit", "invalid path"),
        ("Readme.MD", "differs from README.md only in letter case"),
        ("README.md", "a document already exists at README.md"),
    ] {
        ws.send(&ClientMsg::Rename { doc, path: path.into() }).await.expect("send");
        let message = expect_error(ws, ErrorCode::InvalidPath).await;
        assert!(message.contains(why), "{path:?}: {message}");
    }
    // A rename that only changes the letter case of the same document is fine.
    ws.send(&ClientMsg::Rename { doc, path: "Tool.sh".into() }).await.expect("send");
    ws.recv_until(|m| matches!(m, ServerMsg::Renamed { path, .. } if path == "Tool.sh").then_some(()))
        .await
        .expect("renamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_left_out_are_listed_for_everyone_checked_and_dropped_once_shared() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let (mut sharer, _) = editor::join(&url, &connect_with(&tokens.edit_token), 1, "sharer").await.expect("join");
    let (mut other, _) = editor::join(&url, &connect_with(&tokens.edit_token), 2, "other").await.expect("join");
    let file = |path: &str, reason: &str| UnsharedFile { path: path.into(), reason: reason.into() };
    // A path no document may have is refused, whole.
    sharer
        .send(&ClientMsg::Unshared { files: vec![file("ok.png", "binary"), file("../x.png", "binary")] })
        .await
        .expect("send");
    expect_error(&mut sharer, ErrorCode::InvalidPath).await;
    // Listed: everyone gets the whole list, reasons cut to their bound.
    let long = "x".repeat(500);
    sharer
        .send(&ClientMsg::Unshared { files: vec![file("logo.png", "binary"), file("big.log", &long)] })
        .await
        .expect("send");
    let listed = other
        .recv_until(|m| match m {
            ServerMsg::Unshared { files } => Some(files.clone()),
            _ => None,
        })
        .await
        .expect("list");
    assert_eq!(listed.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["big.log", "logo.png"]);
    assert_eq!(listed[0].reason.chars().count(), codecollab_protocol::wire::MAX_UNSHARED_REASON);
    // A joiner finds it in its welcome.
    let (_late, welcome) = editor::join(&url, &connect_with(&tokens.edit_token), 3, "late").await.expect("join");
    let ServerMsg::Welcome { unshared, .. } = welcome else { unreachable!() };
    assert_eq!(unshared, listed);
    // Once a document is created at one of those paths, it is no longer listed.
    let _creator = Editor::open(&url, &tokens.edit_token, "creator", "logo.png", "now text").await.expect("create");
    let after = other
        .recv_until(|m| match m {
            ServerMsg::Unshared { files } => Some(files.clone()),
            _ => None,
        })
        .await
        .expect("list");
    assert_eq!(after.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["big.log"]);
    // A viewer may not add to it.
    let (mut viewer, _) = editor::join(&url, &connect_with(&tokens.view_token), 4, "viewer").await.expect("join");
    viewer.send(&ClientMsg::Unshared { files: vec![file("v.png", "binary")] }).await.expect("send");
    expect_error(&mut viewer, ErrorCode::Forbidden).await;
}
