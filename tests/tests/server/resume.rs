//! Resuming after a long disconnect: a client whose revision has left the server's memory is replayed what it
//! missed from the operations the store keeps (also across a restart), and only a client beyond the store's
//! retention gets a snapshot, with the last of its operations the server committed.

use std::time::Duration;

use codecollab_protocol::wire::{ClientMsg, ServerMsg};
use codecollab_protocol::TextOperation;
use codecollab_server::config::Retention;
use codecollab_tests::editor::{self, Editor};
use codecollab_tests::fixtures::metric;
use codecollab_tests::harness::TestServer;

use codecollab_tests::fixtures::wire::assert_converged;

fn append(editor: &Editor, text: &str) -> TextOperation {
    let len = editor.text.len_chars();
    TextOperation::replace(len, len, len, text).expect("in bounds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_from_beyond_memory_is_replayed_from_the_store_not_sent_a_snapshot() {
    let server = TestServer::start(|c| {
        c.history = 8;
        c.snapshot_every = 4;
    })
    .await;
    let url = server.url();
    let tokens = editor::create_session(&url, None, "host").await.expect("session");
    let mut present = Editor::open(&url, &tokens.edit_token, "present", "doc.txt", "").await.expect("opens");
    let mut away = Editor::open(&url, &tokens.edit_token, "away", "doc.txt", "").await.expect("opens");
    away.edit(append(&away, "<away-before>")).await.expect("edit");
    away.flush().await.expect("acknowledged");
    away.disconnect();
    // Typed while away: one operation in flight when the connection went, the rest buffered.
    away.edit(append(&away, "<away-1>")).await.expect("offline edit");
    away.edit(append(&away, "<away-2>")).await.expect("offline edit");
    // Six times the history in memory, with snapshots (and compaction) all along.
    for i in 0..48 {
        present.edit(append(&present, &format!("<p{i}>"))).await.expect("edit");
        present.flush().await.expect("acknowledged");
    }
    // `reconnect` fails on a snapshot: this must be a replay.
    away.reconnect(&url).await.expect("replayed, not a snapshot");
    away.flush().await.expect("the offline edits are acknowledged");
    let text = assert_converged(&url, &tokens.edit_token, "doc.txt", &mut [present, away]).await;
    for token in ["<away-before>", "<away-1>", "<away-2>", "<p0>", "<p47>"] {
        assert_eq!(text.matches(token).count(), 1, "{token} in {text}");
    }
    assert_eq!(metric(server.addr, "codecollab_replays_from_store_total").await, 1);
    assert_eq!(metric(server.addr, "codecollab_snapshot_resyncs_total").await, 0);
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_resume_is_still_replayed_from_the_store() {
    let data = codecollab_tests::harness::TempDir::new("restart-replay");
    let configure = |c: &mut codecollab_server::Config| {
        c.history = 8;
        c.snapshot_every = 4;
        c.data_dir = data.path().to_owned();
    };
    let server = TestServer::start(configure).await;
    let addr = server.addr;
    let tokens = editor::create_session(&server.url(), None, "host").await.expect("session");
    let mut writer = Editor::open(&server.url(), &tokens.edit_token, "writer", "doc.txt", "").await.expect("opens");
    let mut away = Editor::open(&server.url(), &tokens.edit_token, "away", "doc.txt", "").await.expect("opens");
    away.disconnect();
    for i in 0..20 {
        writer.edit(append(&writer, &format!("<w{i}>"))).await.expect("edit");
        writer.flush().await.expect("acknowledged");
    }
    server.stop().await.expect("stops");
    // The same data directory and port: memory is empty, the store has it all.
    let server = TestServer::start(|c| {
        configure(c);
        c.listen = addr;
    })
    .await;
    away.reconnect(&server.url()).await.expect("replayed from the store after a restart");
    assert_eq!(away.text.to_string(), (0..20).map(|i| format!("<w{i}>")).collect::<String>());
    assert_eq!(metric(server.addr, "codecollab_replays_from_store_total").await, 1);
    server.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_retention_a_resume_gets_a_snapshot_and_its_last_committed_sequence() {
    let server = TestServer::start(|c| {
        c.history = 4;
        c.snapshot_every = 4;
        c.retention = Retention { ops: 4, age: Duration::from_secs(3600) };
    })
    .await;
    let url = server.url();
    let tokens = editor::create_session(&url, None, "host").await.expect("session");
    let mut present = Editor::open(&url, &tokens.edit_token, "present", "doc.txt", "").await.expect("opens");
    let mut away = Editor::open(&url, &tokens.edit_token, "away", "doc.txt", "").await.expect("opens");
    away.edit(append(&away, "<mine>")).await.expect("edit");
    away.flush().await.expect("acknowledged");
    let since = away.ot.revision();
    away.disconnect();
    for i in 0..40 {
        present.edit(append(&present, &format!("<p{i}>"))).await.expect("edit");
        present.flush().await.expect("acknowledged");
    }
    let connect = codecollab_tests::client::Connect { token: Some(away.token.clone()), ..Default::default() };
    let (mut ws, _) = editor::join(&url, &connect, away.client_id, "away").await.expect("rejoins");
    ws.send(&ClientMsg::Subscribe { doc: away.doc, since: Some(since) }).await.expect("sends");
    let (text, last_seq) = ws
        .recv_until(|m| match m {
            ServerMsg::Snapshot { text, last_seq, .. } => Some((text.clone(), *last_seq)),
            ServerMsg::Subscribed { .. } => panic!("replayed, but the store keeps only 4 operations"),
            _ => None,
        })
        .await
        .expect("a snapshot");
    assert!(text.matches("<mine>").count() == 1 && text.ends_with("<p39>"), "{text}");
    assert_eq!(last_seq, Some(1), "the client's operation 1 is in the snapshot");
    assert_eq!(metric(server.addr, "codecollab_snapshot_resyncs_total").await, 1);
    server.stop().await.expect("stops");
}
