//! Nothing typed is lost across long disconnects, through real daemons, a real server and a fault-injection
//! proxy: a peer cut off while the others type comes back and every token anyone typed is in every copy, whether
//! the server replays what it missed from memory, from its store, or (beyond retention) sends a snapshot that the
//! daemon merges three ways.

use std::collections::BTreeSet;
use std::time::Duration;

use codecollab_server::config::Retention;
use codecollab_tests::harness::{TempDir, TestServer};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use codecollab_tests::proxy::FaultProxy;
use codecollab_tests::tokens;

use codecollab_tests::fixtures::scripted::{join, server_revision, server_text, settle, share, until};
use codecollab_tests::fixtures::{metric, through, token_set, uri};

/// Three editors on one file: `a` shares, `b` joins directly, `c` through a proxy that is cut while `a` and `b`
/// type tokens until `c` has missed at least `missed` of the server's revisions (their daemons compose what is typed
/// while an operation is in flight, so tokens are not revisions: the server is asked) and `c` types 50 offline.
/// When the proxy lets `c` through again, every token must be in every copy and the server's, exactly once. Returns
/// the server for the caller's checks of how `c` caught up.
async fn long_disconnect(configure: impl FnOnce(&mut codecollab_server::Config), missed: u64) -> TestServer {
    let server = TestServer::start(configure).await;
    let (host, guest_b, guest_c) = (TempDir::new("a"), TempDir::new("b"), TempDir::new("c"));
    std::fs::write(host.path().join("notes.txt"), "<s1>\n").expect("writes");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let mut c = ScriptedEditor::start(Encoding::Utf32, &[]).await.expect("c");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    let proxy = FaultProxy::start(server.addr, 1).await.expect("proxy");
    join(&mut b, &invite, guest_b.path(), "bob").await;
    join(&mut c, &through(&invite, &proxy), guest_c.path(), "cy").await;
    let uris: Vec<String> = [&host, &guest_b, &guest_c].iter().map(|d| uri(&d.path().join("notes.txt"))).collect();
    let (ua, ub, uc) = (uris[0].as_str(), uris[1].as_str(), uris[2].as_str());
    for (editor, uri) in [(&mut a, ua), (&mut b, ub), (&mut c, uc)] {
        editor.open(uri, "<s1>\n").await.expect("opens");
    }

    proxy.cut();
    c.wait_state("reconnecting", Duration::from_secs(30)).await.expect("c notices the cut");
    let cut_at = server_revision(&invite, "notes.txt").await;
    let (mut na, mut nb, mut nc) = (0, 0, 0);
    let mut expected: BTreeSet<String> = BTreeSet::from(["<s1>".to_owned()]);
    for i in 0.. {
        expected.insert(a.type_token(ua, 'a', &mut na).await.expect("a types"));
        expected.insert(b.type_token(ub, 'b', &mut nb).await.expect("b types"));
        if i % 10 == 0 && nc < 50 {
            expected.insert(c.type_token(uc, 'c', &mut nc).await.expect("c types offline"));
        }
        while a.pump(Duration::ZERO).await.expect("a") || b.pump(Duration::ZERO).await.expect("b") {}
        // Every ten tokens, a and b agree before more is typed: the texts grow by what each round adds, not by a
        // backlog that grows with the machine's load (a loaded daemon composes more keystrokes per operation, so
        // reaching the server revision asked for would otherwise take ever more tokens).
        if i % 10 == 9 {
            settle(&mut [&mut a, &mut b], &[ua, ub]).await;
            if server_revision(&invite, "notes.txt").await >= cut_at + missed {
                break;
            }
        }
    }
    while nc < 50 {
        expected.insert(c.type_token(uc, 'c', &mut nc).await.expect("c types offline"));
    }
    let theirs: BTreeSet<String> = expected.iter().filter(|t| !t.starts_with("<c")).cloned().collect();
    until(&mut [&mut a, &mut b], &[ua, ub], Duration::from_secs(120), "a and b to converge", |texts| {
        texts[0] == texts[1] && tokens::parse(&texts[0]).is_some_and(|t| t.len() == theirs.len())
    })
    .await;

    proxy.set(codecollab_tests::proxy::Mode::Pass);
    let texts = until(
        &mut [&mut a, &mut b, &mut c],
        &uris.iter().map(String::as_str).collect::<Vec<_>>(),
        Duration::from_secs(120),
        "every token everywhere",
        |texts| {
            texts.windows(2).all(|w| w[0] == w[1])
                && tokens::parse(&texts[0]).is_some_and(|t| t.len() == expected.len())
        },
    )
    .await;
    assert_eq!(token_set(&texts[0]), expected, "every token anyone typed, exactly once");
    assert_eq!(server_text(&invite, "notes.txt").await, texts[0], "the server holds the same text");
    assert_eq!(expected.len() as u64, na + nb + nc + 1);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_back_from_a_long_disconnect_erases_nothing() {
    // 1,200 operations missed: more than the 1,024 the server keeps in memory, so the store replays them.
    let server = long_disconnect(|_| {}, 1_200).await;
    assert!(metric(server.addr, "codecollab_replays_from_store_total").await >= 1);
    assert_eq!(metric(server.addr, "codecollab_snapshot_resyncs_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_small_history_a_returning_peer_is_replayed_from_the_store() {
    let server = long_disconnect(|c| c.history = 32, 100).await;
    assert!(metric(server.addr, "codecollab_replays_from_store_total").await >= 1);
    assert_eq!(metric(server.addr, "codecollab_snapshot_resyncs_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_retention_a_returning_peer_merges_three_ways_and_loses_nothing() {
    let server = long_disconnect(
        |c| {
            c.history = 16;
            c.snapshot_every = 8;
            c.retention = Retention { ops: 16, age: Duration::from_secs(3600) };
        },
        100,
    )
    .await;
    assert!(metric(server.addr, "codecollab_snapshot_resyncs_total").await >= 1, "the snapshot path was taken");
}
