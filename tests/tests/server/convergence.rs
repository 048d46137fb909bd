//! Concurrent editing through the server: two and ten clients typing at once end equal to the server's text.

use std::time::Duration;

use codecollab_protocol::wire::{ClientMsg, ServerMsg};
use codecollab_protocol::TextOperation;
use codecollab_tests::client::Connect;
use codecollab_tests::editor::{self, Editor};
use codecollab_tests::random::{self, Rng};

use codecollab_tests::fixtures::wire::{assert_converged, server_and_session};

async fn clients_typing_at_once(clients: usize, edits_each: usize, seed: u64) {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let mut editors = Vec::new();
    for i in 0..clients {
        let editor =
            Editor::open(&url, &tokens.edit_token, &format!("peer{i}"), "shared.txt", "héllo 日本語 👩\u{200d}💻\n")
                .await
                .expect("editor opens");
        editors.push(editor);
    }
    let tasks: Vec<_> = editors
        .into_iter()
        .enumerate()
        .map(|(i, mut editor)| {
            tokio::spawn(async move {
                let mut rng = Rng::new(seed + i as u64);
                for _ in 0..edits_each {
                    let op = random::small_edit(&mut rng, editor.text.len_chars());
                    editor.edit(op).await.expect("edit");
                    // Take in whatever has arrived, sometimes waiting a little so ops really interleave.
                    let wait =
                        if rng.chance(0.2) { Duration::from_millis(rng.below(3) as u64) } else { Duration::ZERO };
                    while editor.pump(wait).await.expect("pump") {}
                }
                editor.flush().await.expect("flush");
                editor
            })
        })
        .collect();
    let mut editors = Vec::new();
    for task in tasks {
        editors.push(task.await.expect("editor task"));
    }
    let text = assert_converged(&url, &tokens.edit_token, "shared.txt", &mut editors).await;
    let acknowledged: u64 = editors.iter().map(|e| e.acknowledged).sum();
    assert!(acknowledged > 0 && !text.is_empty());
    server.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_typing_at_once_converge() {
    clients_typing_at_once(2, 300, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_typing_at_once_converge() {
    clients_typing_at_once(10, 100, 101).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_dropped_connection_and_a_duplicate_resend() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let mut a = Editor::open(&url, &tokens.edit_token, "a", "doc.txt", "abc").await.expect("a");
    let mut b = Editor::open(&url, &tokens.edit_token, "b", "doc.txt", "").await.expect("b");
    // A sends an op, and its connection drops before A reads the acknowledgement.
    a.edit(TextOperation::replace(3, 3, 3, "D").expect("op")).await.expect("edit");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while editor::server_text(&url, &tokens.edit_token, "doc.txt").await.expect("server text").0 != "abcD" {
        assert!(tokio::time::Instant::now() < deadline, "the server never committed A's op");
    }
    a.disconnect();
    // Meanwhile B edits, and A goes on typing offline.
    b.edit(TextOperation::replace(3, 0, 0, ">").expect("op")).await.expect("edit");
    b.flush().await.expect("b flush");
    a.edit(TextOperation::replace(4, 4, 4, "E").expect("op")).await.expect("offline edit");
    assert!(!a.is_online());
    // On reconnecting, the replay acknowledges the lost op and brings B's; then the offline edit goes out.
    a.reconnect(&url).await.expect("reconnect");
    a.flush().await.expect("a flush");
    let mut editors = [a, b];
    let text = assert_converged(&url, &tokens.edit_token, "doc.txt", &mut editors).await;
    assert_eq!(text, ">abcDE");
    server.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_operation_is_acknowledged_again_not_applied_twice() {
    let (server, tokens) = server_and_session().await;
    let url = server.url();
    let editor = Editor::open(&url, &tokens.edit_token, "a", "doc.txt", "abc").await.expect("editor");
    let doc = editor.doc;
    let connect = Connect { token: Some(tokens.edit_token.clone()), ..Default::default() };
    let op = TextOperation::replace(3, 3, 3, "!").expect("op");
    // The client sends seq 1 and loses the connection before reading the acknowledgement...
    let (mut first, _) = editor::join(&url, &connect, 77, "x").await.expect("join");
    first.send(&ClientMsg::Subscribe { doc, since: None }).await.expect("subscribe");
    let base_revision = first
        .recv_until(|m| if let ServerMsg::Snapshot { revision, .. } = m { Some(*revision) } else { None })
        .await
        .expect("snapshot");
    first.send(&ClientMsg::Op { doc, seq: 1, base_revision, op: op.clone() }).await.expect("op");
    let committed = first
        .recv_until(|m| if let ServerMsg::Ack { seq: 1, revision, .. } = m { Some(*revision) } else { None })
        .await
        .expect("ack");
    drop(first);
    // ...so it resends it, same client id, same sequence number, same base, on a new connection.
    let (mut second, _) = editor::join(&url, &connect, 77, "x").await.expect("rejoin");
    second.send(&ClientMsg::Subscribe { doc, since: None }).await.expect("subscribe");
    let last_seq = second
        .recv_until(|m| if let ServerMsg::Snapshot { last_seq, .. } = m { Some(*last_seq) } else { None })
        .await
        .expect("snapshot");
    assert_eq!(last_seq, Some(1), "the snapshot says seq 1 is in it");
    second.send(&ClientMsg::Op { doc, seq: 1, base_revision, op }).await.expect("resend");
    let again = second
        .recv_until(|m| if let ServerMsg::Ack { seq: 1, revision, .. } = m { Some(*revision) } else { None })
        .await
        .expect("acknowledged again");
    assert_eq!(again, committed, "acknowledged with its original revision");
    let (text, revision) = editor::server_text(&url, &tokens.edit_token, "doc.txt").await.expect("text");
    assert_eq!((text.as_str(), revision), ("abc!", committed), "applied exactly once");
    drop(editor);
    server.stop().await.expect("clean shutdown");
}
