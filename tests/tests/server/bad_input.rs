//! Bad input, one test per class: each gets a typed error or close code, the server goes on serving everyone
//! else, and no document changes.

use std::time::Duration;

use codecollab_protocol::wire::{ClientMsg, ErrorCode, ServerMsg, PROTOCOL_VERSION};
use codecollab_protocol::TextOperation;
use codecollab_server::auth::{unix_now, Secret, TokenKind};
use codecollab_tests::client::{Connect, Event, WsClient};
use codecollab_tests::editor::{self, Editor};
use codecollab_tests::harness::{binary, ServerProcess, TempDir, TestServer};

use codecollab_tests::fixtures::wire::{expect_error, server_and_session, server_and_session_with};

/// The text of `path` as the server has it, and an edit by another client still going through.
async fn still_serving(url: &str, token: &str, path: &str) -> String {
    let mut other = Editor::open(url, token, "bystander", path, "").await.expect("bystander opens");
    let text = other.text.to_string();
    let len = other.text.len_chars();
    other.edit(TextOperation::replace(len, len, len, "+").expect("op")).await.expect("edit");
    other.flush().await.expect("bystander's edit acknowledged");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_and_text_frames_are_malformed() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let editor = Editor::open(&url, &tokens.edit_token, "e", "g.txt", "keep").await.expect("editor");
    let mut ws = WsClient::connect(&url, Some(&tokens.edit_token)).await.expect("connect");
    ws.send_raw(vec![0xc1, 0xff, 0x00, 0x13]).await.expect("send");
    expect_error(&mut ws, ErrorCode::Malformed).await;
    let op = ClientMsg::Op {
        doc: editor.doc,
        seq: 1,
        base_revision: 0,
        op: TextOperation::replace(4, 0, 4, "").expect("op"),
    };
    let frame = op.encode().expect("encode");
    ws.send_raw(frame[..frame.len() - 3].to_vec()).await.expect("send");
    expect_error(&mut ws, ErrorCode::Malformed).await;
    ws.send_text("{\"type\":\"join\"}").await.expect("send");
    expect_error(&mut ws, ErrorCode::Malformed).await;
    // The same connection still works.
    ws.send(&ClientMsg::Join { client_id: 1, name: Some("after".into()) }).await.expect("send");
    ws.recv_until(|m| matches!(m, ServerMsg::Welcome { .. }).then_some(())).await.expect("welcome");
    assert_eq!(still_serving(&url, &tokens.edit_token, "g.txt").await, "keep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_closes_with_1009() {
    let (server, tokens) = server_and_session_with(|c| c.limits.max_frame_bytes = 64 * 1024).await;
    let url = server.url();
    let mut ws = WsClient::connect(&url, Some(&tokens.edit_token)).await.expect("connect");
    ws.send_raw(vec![0x90; 100 * 1024]).await.expect("send");
    let close = ws.expect_close().await.expect("closed");
    assert_eq!(close.map(|(code, _)| code), Some(1009));
    assert_eq!(still_serving(&url, &tokens.edit_token, "f.txt").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocol_versions_are_refused_clearly() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    // A client speaking another version of the subprotocol is told so in the close frame.
    let connect = Connect {
        token: Some(tokens.edit_token.clone()),
        protocols: Some(vec!["codecollab.v9".into()]),
        ..Default::default()
    };
    let mut ws = WsClient::connect_with(&url, connect).await.expect("handshake completes");
    let (code, reason) = ws.expect_close().await.expect("closed").expect("close frame");
    assert_eq!(code, 4002);
    assert!(reason.contains("codecollab.v1"), "{reason}");
    // One naming no subprotocol is refused at the upgrade.
    let connect = Connect { token: Some(tokens.edit_token.clone()), protocols: Some(vec![]), ..Default::default() };
    let refused = WsClient::connect_with(&url, connect).await.expect_err("refused");
    assert!(refused.to_string().contains("400"), "{refused}");
    // A frame whose envelope names another version gets a typed error.
    let mut ws = WsClient::connect(&url, Some(&tokens.edit_token)).await.expect("connect");
    let mut frame = ClientMsg::Join { client_id: 1, name: None }.encode().expect("encode");
    assert_eq!(frame[1], PROTOCOL_VERSION as u8);
    frame[1] = 9;
    ws.send_raw(frame).await.expect("send");
    let message = expect_error(&mut ws, ErrorCode::UnsupportedVersion).await;
    assert!(message.contains('9'), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_base_length_and_future_revision_change_nothing() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let mut editor = Editor::open(&url, &tokens.edit_token, "e", "b.txt", "abc").await.expect("editor");
    let ws = editor.ws.as_mut().expect("online");
    let wrong_length = TextOperation::replace(5, 0, 0, "x").expect("op");
    ws.send(&ClientMsg::Op { doc: editor.doc, seq: 1, base_revision: 0, op: wrong_length }).await.expect("send");
    expect_error(ws, ErrorCode::BaseLengthMismatch).await;
    let fits = TextOperation::replace(3, 0, 0, "x").expect("op");
    ws.send(&ClientMsg::Op { doc: editor.doc, seq: 2, base_revision: 99, op: fits }).await.expect("send");
    expect_error(ws, ErrorCode::FutureRevision).await;
    assert_eq!(still_serving(&url, &tokens.edit_token, "b.txt").await, "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_forged_and_foreign_tokens_are_refused() {
    // Listening on all interfaces (reached through loopback) so that no token means no access at all.
    let server = TestServer::start(|c| c.listen = "0.0.0.0:0".parse().expect("addr")).await;
    let url = format!("ws://127.0.0.1:{}", server.addr.port());
    let secret = Secret::load_or_create(server.data_dir.path()).expect("the server's secret");
    let mut host = secret.claims(TokenKind::Host, Duration::from_secs(60));
    host.name = Some("ops".into());
    let host_token = secret.sign(&host);
    let ours = editor::create_session(&url, Some(&host_token), "ops").await.expect("session");
    let theirs = editor::create_session(&url, Some(&host_token), "ops").await.expect("another session");
    let mut editor = Editor::open(&url, &ours.edit_token, "e", "t.txt", "mine").await.expect("editor");
    // No token.
    let refused = WsClient::connect(&url, None).await.expect_err("no token");
    assert!(refused.to_string().contains("401"), "{refused}");
    // Expired.
    let mut expired = secret.claims(TokenKind::Invite, Duration::from_secs(60));
    expired.session = Some(ours.session.clone());
    expired.role = Some(codecollab_protocol::wire::Role::Edit);
    expired.exp = unix_now() - 1;
    let refused = WsClient::connect(&url, Some(&secret.sign(&expired))).await.expect_err("expired");
    assert!(refused.to_string().contains("401"), "{refused}");
    // Forged: a view invite edited to say "edit", keeping its signature.
    let (prefix, rest) = ours.view_token.split_once('.').expect("token");
    let (body, signature) = rest.split_once('.').expect("token");
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = String::from_utf8(engine.decode(body).expect("base64")).expect("json").replace("\"view\"", "\"edit\"");
    let forged = format!("{prefix}.{}.{signature}", engine.encode(claims));
    let refused = WsClient::connect(&url, Some(&forged)).await.expect_err("forged");
    assert!(refused.to_string().contains("401"), "{refused}");
    // Another session's token reaches only that session: our document is unknown there.
    let (mut foreign, _) =
        editor::join(&url, &Connect { token: Some(theirs.edit_token.clone()), ..Default::default() }, 4, "f")
            .await
            .expect("joins its own session");
    foreign.send(&ClientMsg::Subscribe { doc: editor.doc, since: None }).await.expect("send");
    expect_error(&mut foreign, ErrorCode::UnknownDocument).await;
    let op = TextOperation::replace(4, 0, 4, "stolen").expect("op");
    foreign.send(&ClientMsg::Op { doc: editor.doc, seq: 1, base_revision: 0, op }).await.expect("send");
    expect_error(&mut foreign, ErrorCode::UnknownDocument).await;
    // And everything else goes on.
    editor.edit(TextOperation::replace(4, 4, 4, "!").expect("op")).await.expect("edit");
    editor.flush().await.expect("flush");
    assert_eq!(still_serving(&url, &ours.edit_token, "t.txt").await, "mine!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_ops_is_rate_limited_and_others_are_served() {
    let (server, tokens) = server_and_session_with(|c| {
        c.limits.ops_per_second = 50;
        c.limits.ops_burst = 50;
    })
    .await;
    let url = server.url();
    let editor = Editor::open(&url, &tokens.edit_token, "e", "r.txt", "").await.expect("editor");
    let (mut flooder, _) =
        editor::join(&url, &Connect { token: Some(tokens.edit_token.clone()), ..Default::default() }, 66, "flood")
            .await
            .expect("join");
    flooder.send(&ClientMsg::Subscribe { doc: editor.doc, since: None }).await.expect("subscribe");
    flooder.recv_until(|m| matches!(m, ServerMsg::Snapshot { .. }).then_some(())).await.expect("snapshot");
    // 500 inserts as fast as possible, each on the revision it would have if all before it were applied.
    for seq in 1..=500u64 {
        let len = (seq - 1) as usize;
        let op = TextOperation::replace(len, len, len, "f").expect("op");
        flooder.send(&ClientMsg::Op { doc: editor.doc, seq, base_revision: seq - 1, op }).await.expect("send");
    }
    // Every op is answered: acknowledged, rate limited, or (an op that slipped through after an earlier one was
    // refused) refused for its base revision, which no longer exists.
    let (mut acked, mut limited, mut other) = (0, 0, 0);
    while acked + limited + other < 500 {
        match flooder.next_event().await.expect("answer") {
            Event::Msg(ServerMsg::Ack { .. }) => acked += 1,
            Event::Msg(ServerMsg::Error { code: ErrorCode::RateLimited, .. }) => limited += 1,
            Event::Msg(ServerMsg::Error {
                code: ErrorCode::FutureRevision | ErrorCode::BaseLengthMismatch, ..
            }) => other += 1,
            Event::Msg(ServerMsg::Error { code, message, .. }) => panic!("unexpected refusal {code:?}: {message}"),
            Event::Msg(_) => {}
            Event::Closed(close) => panic!("flooder closed: {close:?}"),
        }
    }
    assert!(limited >= 400, "rate limited {limited} of 500 (acknowledged {acked}, other refusals {other})");
    // The bystander is served, and the document holds exactly the accepted ops.
    let text = still_serving(&url, &tokens.edit_token, "r.txt").await;
    assert_eq!(text.len(), acked, "only acknowledged ops are in the document");
}

/// The HTTP status a WebSocket upgrade with `token` gets from `server`, connecting from `source`.
async fn upgrade_status(server: std::net::SocketAddr, source: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{source}:0").parse().expect("address")).expect("binds");
    let mut stream = socket.connect(server).await.expect("connects");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: codecollab.v1\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut head = vec![0; 64];
    let n = stream.read(&mut head).await.expect("reads");
    let line = String::from_utf8_lossy(&head[..n]).to_string();
    line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_authentication_from_one_address_is_refused_for_a_while() {
    let (server, tokens) = server_and_session_with(|c| c.limits.failed_auth_per_minute = 3).await;
    let forged = format!("{}x", tokens.edit_token);
    for _ in 0..3 {
        assert_eq!(upgrade_status(server.addr, "127.0.0.1", &forged).await, 401);
    }
    // From then on, this address is refused whatever it brings, a good token included...
    assert_eq!(upgrade_status(server.addr, "127.0.0.1", &tokens.edit_token).await, 429);
    // ...and other addresses are not.
    assert_eq!(upgrade_status(server.addr, "127.0.0.2", &tokens.edit_token).await, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_log_never_contains_a_token_or_the_secret() {
    let data = TempDir::new("quiet-log");
    // Debug logging, the most the server says.
    let mut server = ServerProcess::spawn_logging("127.0.0.1:0", data.path(), &[], "debug").expect("starts");
    let url = server.url();
    let tokens = editor::create_session(&url, None, "host").await.expect("session");
    let mut editor = Editor::open(&url, &tokens.edit_token, "e", "t.txt", "text").await.expect("joins");
    editor.edit(TextOperation::replace(4, 4, 4, "!").expect("op")).await.expect("edit");
    editor.flush().await.expect("flush");
    // Reconnecting with the personal token, a forged one, an expired one, and a refused join.
    editor.disconnect();
    editor.reconnect(&url).await.expect("reconnects");
    let forged = format!("{}x", tokens.view_token);
    assert!(WsClient::connect(&url, Some(&forged)).await.is_err());
    let expired = std::process::Command::new(binary("codecollab-server", "codecollab-server"))
        .args(["token", "--name", "late", "--ttl", "1s", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("mints a token");
    let expired = String::from_utf8(expired.stdout).expect("utf-8").trim().to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(WsClient::connect(&url, Some(&expired)).await.is_err());
    let mut removed = WsClient::connect(&url, Some(&tokens.host_token)).await.expect("connects");
    removed.send(&ClientMsg::Join { client_id: 9, name: None }).await.expect("joins");
    removed.send(&ClientMsg::RemovePeer { name: "e".into() }).await.expect("removes");
    let mut again = WsClient::connect(&url, Some(&editor.token)).await.expect("connects");
    again.send(&ClientMsg::Join { client_id: 3, name: None }).await.expect("sends");
    expect_error(&mut again, ErrorCode::Unauthorized).await;
    // And a frame that does not decode, from a viewer.
    let mut viewer = WsClient::connect(&url, Some(&tokens.view_token)).await.expect("connects");
    viewer.send(&ClientMsg::Join { client_id: 1, name: Some("v".into()) }).await.expect("sends");
    viewer.send_raw(vec![1, 2, 3]).await.expect("sends");
    expect_error(&mut viewer, ErrorCode::Malformed).await;
    // The log comes through a pipe: wait for the last refusal's line.
    codecollab_tests::harness::poll_until(
        "the last refusal in the log",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || Ok(server.log().iter().any(|line| line.contains("Malformed"))),
    )
    .expect("logged");
    let log = server.log();
    server.kill();
    let joined = log.join("\n");
    assert!(joined.contains("upgrade refused") && joined.contains("refused"), "refusals are logged:\n{joined}");
    let secret = std::fs::read_to_string(data.path().join("secret")).expect("the secret file");
    assert!(!joined.contains(secret.trim()), "the server's secret is never logged");
    let tokens = [&tokens.host_token, &tokens.edit_token, &tokens.view_token, &editor.token, &forged, &expired];
    for line in &log {
        assert!(!line.contains("cc1."), "a token in the log: {line}");
        for token in tokens {
            let signature = token.rsplit('.').next().expect("signed");
            assert!(!line.contains(signature), "a token's signature in the log: {line}");
        }
    }
}
