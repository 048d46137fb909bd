//! Faults that must lose nothing, through real daemons and a real server: a store that cannot write (a full
//! disk), a network that stalls, a server that refuses the session for good, an editor that quits right after
//! remote edits arrive, and an edit too large for one frame.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use codecollab_tests::harness::{ServerProcess, TempDir, TestServer};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use codecollab_tests::proxy::{FaultProxy, Mode};
use codecollab_tests::tokens;
use serde_json::json;

use codecollab_tests::fixtures::scripted::{join, server_text, share, until};
use codecollab_tests::fixtures::{metric, through, token_set, uri};

/// A small tmpfs mounted on a temporary directory, unmounted when dropped: a disk that can really be filled.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let dir = TempDir::new("small-disk");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "this test fills a real disk: it mounts a {megabytes} MB tmpfs, which needs root (or CAP_SYS_ADMIN)"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk up: writes a file until the disk refuses more.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("creates the filler");
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_acknowledges_nothing_loses_nothing_and_service_resumes_by_itself() {
    let disk = SmallDisk::mount(8);
    let data = disk.path().join("data");
    let mut server = ServerProcess::spawn("127.0.0.1:0", &data, &[]).expect("server starts");
    let url = server.url();
    let (host, guest) = (TempDir::new("a"), TempDir::new("b"));
    std::fs::write(host.path().join("notes.txt"), "<s1>\n").expect("writes");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let (invite, _) = share(&mut a, host.path(), &url, "ada").await;
    join(&mut b, &invite, guest.path(), "bob").await;
    let (ua, ub) = (uri(&host.path().join("notes.txt")), uri(&guest.path().join("notes.txt")));
    a.open(&ua, "<s1>\n").await.expect("opens");
    b.open(&ub, "<s1>\n").await.expect("opens");
    let mut expected = BTreeSet::from(["<s1>".to_owned()]);
    let (mut na, mut nb) = (0, 0);
    for _ in 0..5 {
        expected.insert(a.type_token(&ua, 'a', &mut na).await.expect("types"));
    }
    until(&mut [&mut a, &mut b], &[&ua, &ub], Duration::from_secs(30), "the first tokens", |t| {
        t[0] == t[1] && token_set(&t[0]) == expected
    })
    .await;

    let filler = disk.fill();
    let failures = || async { metric(server.addr, "codecollab_commit_failures_total").await };
    // Typing until the store fails (the write-ahead log must grow into the full disk).
    let mut typed_while_failing = Vec::new();
    for i in 0.. {
        let token = a.type_token(&ua, 'a', &mut na).await.expect("types");
        expected.insert(token.clone());
        a.drain(Duration::from_millis(5)).await.expect("a");
        if failures().await > 0 {
            typed_while_failing.push(token);
            break;
        }
        assert!(i < 5_000, "the store never failed on a full disk");
    }
    for _ in 0..10 {
        let token = a.type_token(&ua, 'a', &mut na).await.expect("types");
        expected.insert(token.clone());
        typed_while_failing.push(token);
    }
    // The server still serves reads (a new subscriber gets the document) and presence; nothing typed during the
    // failure is acknowledged or shown to anyone.
    let served = server_text(&invite, "notes.txt").await;
    for token in &typed_while_failing {
        assert!(!served.contains(token.as_str()), "{token} was served while the store could not store it");
    }
    b.notify(
        "collab/cursor",
        json!({"uri": ub, "ranges": [{"start": {"line": 0, "character": 1}, "end": {"line": 0, "character": 1}}]}),
    )
    .await
    .expect("cursor");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.cursors.get(&ua).and_then(|c| c.as_array()).is_none_or(Vec::is_empty) {
        assert!(tokio::time::Instant::now() < deadline, "presence is relayed while the store fails");
        a.drain(Duration::from_millis(50)).await.expect("a");
    }
    b.drain(Duration::from_millis(200)).await.expect("b");
    for token in &typed_while_failing {
        assert!(!b.text(&ub).contains(token.as_str()), "{token} reached b without being stored");
    }
    assert!(a.messages.iter().any(|m| m.contains("cannot store")), "a is told: {:?}", a.messages);
    // b types meanwhile too (its edits wait as well).
    for _ in 0..5 {
        expected.insert(b.type_token(&ub, 'b', &mut nb).await.expect("types"));
    }

    // The disk has room again: service resumes by itself, and everything anyone typed arrives.
    std::fs::remove_file(filler).expect("frees the disk");
    let texts =
        until(&mut [&mut a, &mut b], &[&ua, &ub], Duration::from_secs(60), "everything after the disk is freed", |t| {
            t[0] == t[1] && tokens::parse(&t[0]).is_some_and(|found| found.len() == expected.len())
        })
        .await;
    assert_eq!(token_set(&texts[0]), expected);
    assert_eq!(server_text(&invite, "notes.txt").await, texts[0]);
    assert!(!a.states.iter().any(|s| s == "idle"), "the session went on: {:?}", a.states);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_network_is_noticed_by_the_heartbeat_and_nothing_is_lost() {
    let server = TestServer::start(|c| c.heartbeat = Duration::from_millis(300)).await;
    let (host, guest) = (TempDir::new("a"), TempDir::new("c"));
    std::fs::write(host.path().join("notes.txt"), "").expect("writes");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut c = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("c");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    let proxy = FaultProxy::start(server.addr, 3).await.expect("proxy");
    join(&mut c, &through(&invite, &proxy), guest.path(), "cy").await;
    let (ua, uc) = (uri(&host.path().join("notes.txt")), uri(&guest.path().join("notes.txt")));
    a.open(&ua, "").await.expect("opens");
    c.open(&uc, "").await.expect("opens");

    // No bytes either way, no reset: only a heartbeat can tell.
    proxy.set(Mode::Stall);
    c.wait_state("reconnecting", Duration::from_secs(10)).await.expect("c notices the stall");
    let mut expected = BTreeSet::new();
    let (mut na, mut nc) = (0, 0);
    for _ in 0..10 {
        expected.insert(a.type_token(&ua, 'a', &mut na).await.expect("types"));
        expected.insert(c.type_token(&uc, 'c', &mut nc).await.expect("types"));
    }
    proxy.set(Mode::Pass);
    let texts = until(&mut [&mut a, &mut c], &[&ua, &uc], Duration::from_secs(30), "both to have every token", |t| {
        t[0] == t[1] && tokens::parse(&t[0]).is_some_and(|found| found.len() == expected.len())
    })
    .await;
    assert_eq!(token_set(&texts[0]), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_forgot_the_session_ends_it_once_with_a_message_and_files_are_kept() {
    let first = TestServer::start(|_| {}).await;
    let addr = first.addr;
    let (host, guest) = (TempDir::new("a"), TempDir::new("b"));
    std::fs::write(host.path().join("notes.txt"), "<s1>\n").expect("writes");
    std::fs::write(host.path().join("other.txt"), "kept on disk\n").expect("writes");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let (invite, _) = share(&mut a, host.path(), &first.url(), "ada").await;
    join(&mut b, &invite, guest.path(), "bob").await;
    // The server's data is replaced (a new secret): every token it signed is now invalid.
    first.stop().await.expect("stops");
    let second = TestServer::start(|c| c.listen = addr).await;
    b.wait_state("idle", Duration::from_secs(30)).await.expect("the session ends");
    let said = b.messages.join("\n");
    assert!(said.contains("no longer accepts") && said.contains("kept in"), "{said}");
    assert_eq!(std::fs::read_to_string(guest.path().join("other.txt")).expect("kept"), "kept on disk\n");
    a.wait_state("idle", Duration::from_secs(30)).await.expect("the host's session ends too");
    // Ended means ended: no more attempts (the daemons retried every few seconds at most before).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refusals = metric(second.addr, "codecollab_refusals_total{reason=\"unauthorized\"}").await;
    assert_eq!(refusals, 2, "one refused attempt per daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_the_editor_writes_the_last_remote_edits_of_files_it_does_not_have_open() {
    let server = TestServer::start(|_| {}).await;
    let (host, guest) = (TempDir::new("a"), TempDir::new("b"));
    std::fs::write(host.path().join("notes.txt"), "").expect("writes");
    std::fs::write(host.path().join("marker.txt"), "").expect("writes");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    // Files are otherwise written every 200 ms: only quitting may write them here.
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[("CODECOLLAB_DISK_FLUSH_MS", "600000")]).await.expect("b");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    join(&mut b, &invite, guest.path(), "bob").await;
    let notes = uri(&host.path().join("notes.txt"));
    a.open(&notes, "").await.expect("opens");
    a.type_at(&notes, 0, 0, "<last>").await.expect("types");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !server_text(&invite, "notes.txt").await.contains("<last>") {
        assert!(tokio::time::Instant::now() < deadline, "the edit reaches the server");
        a.drain(Duration::from_millis(20)).await.expect("a");
    }
    // The edit is on its way to b before this marker (one connection, in order): when b's editor has the
    // marker, b's daemon has the edit.
    let (marker_a, marker_b) = (uri(&host.path().join("marker.txt")), uri(&guest.path().join("marker.txt")));
    a.open(&marker_a, "").await.expect("opens");
    b.open(&marker_b, "").await.expect("opens");
    a.type_at(&marker_a, 0, 0, "M").await.expect("types");
    until(&mut [&mut a, &mut b], &[&marker_a, &marker_b], Duration::from_secs(20), "the marker", |t| t[1] == "M").await;
    assert_eq!(std::fs::read_to_string(guest.path().join("notes.txt")).expect("reads"), "", "not written yet");
    let status = b.exit().await.expect("exits");
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(guest.path().join("notes.txt")).expect("reads"), "<last>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paste_larger_than_a_frame_travels_and_one_over_the_document_limit_is_undone() {
    // Frames up to 16 MiB (the default); documents up to 24 million chars.
    let server = TestServer::start(|c| c.limits.max_document_chars = 24_000_000).await;
    let (host, guest) = (TempDir::new("a"), TempDir::new("b"));
    std::fs::write(host.path().join("notes.txt"), "").expect("writes");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    join(&mut b, &invite, guest.path(), "bob").await;
    let (ua, ub) = (uri(&host.path().join("notes.txt")), uri(&guest.path().join("notes.txt")));
    a.open(&ua, "").await.expect("opens");
    b.open(&ub, "").await.expect("opens");
    // 20 MB in one edit, with a few non-ASCII chars so it is not all one byte per char.
    let paste = format!("<start>{}é😀<end>", "0123456789".repeat(2_000_000));
    a.type_at(&ua, 0, 0, &paste).await.expect("pastes");
    let chars = paste.chars().count();
    until(&mut [&mut a, &mut b], &[&ua, &ub], Duration::from_secs(120), "the paste at b", |t| {
        t[1].chars().count() == chars
    })
    .await;
    assert_eq!(b.text(&ub), paste);
    a.type_at(&ua, 0, 0, "<after>").await.expect("types");
    until(&mut [&mut a, &mut b], &[&ua, &ub], Duration::from_secs(30), "an edit after the paste", |t| {
        t[1].starts_with("<after>")
    })
    .await;
    assert!(!a.states.iter().any(|s| s == "reconnecting"), "no connection was lost: {:?}", a.states);
    // 10 MB more would make 30 million chars: undone at once in a's editor, and a is told; b never sees it.
    let before = a.text(&ua);
    a.type_at(&ua, 0, 0, &"x".repeat(10_000_000)).await.expect("pastes");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while a.text(&ua) != before {
        assert!(tokio::time::Instant::now() < deadline, "the paste over the limit is undone");
        a.drain(Duration::from_millis(50)).await.expect("a");
    }
    assert!(a.messages.iter().any(|m| m.contains("over the server's limit")), "{:?}", a.messages);
    b.drain(Duration::from_millis(300)).await.expect("b");
    assert_eq!(b.text(&ub), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_the_server_refuses_for_good_is_undone_in_the_editor_and_later_typing_stays() {
    // Documents up to a million chars. b pastes 600,000 while it cannot hear that a has just pasted as much: its
    // own check passes, the server's (which has a's paste) does not.
    let server = TestServer::start(|c| c.limits.max_document_chars = 1_000_000).await;
    let (host, guest) = (TempDir::new("a"), TempDir::new("b"));
    std::fs::write(host.path().join("notes.txt"), "<s1>").expect("writes");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    let proxy = FaultProxy::start(server.addr, 5).await.expect("proxy");
    join(&mut b, &through(&invite, &proxy), guest.path(), "bob").await;
    let (ua, ub) = (uri(&host.path().join("notes.txt")), uri(&guest.path().join("notes.txt")));
    a.open(&ua, "<s1>").await.expect("opens");
    b.open(&ub, "<s1>").await.expect("opens");
    proxy.set(Mode::Stall);
    let ours = format!("<a-paste>{}", "a".repeat(600_000));
    a.type_at(&ua, 4, 4, &ours).await.expect("pastes");
    // Bounds, not waits: 600,000-char operations through debug builds are slow on a loaded machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !server_text(&invite, "notes.txt").await.contains("<a-paste>") {
        assert!(tokio::time::Instant::now() < deadline, "a's paste is committed");
        a.drain(Duration::from_millis(20)).await.expect("a");
    }
    b.type_at(&ub, 0, 0, &format!("<b-paste>{}", "b".repeat(600_000))).await.expect("pastes");
    b.type_at(&ub, 0, 0, "<b-after>").await.expect("types after the paste");
    // The daemon answers requests in order with the edits before them: once it has, both edits are in it (the
    // paste sent into the stall), and a's paste, which the stall holds, cannot get to it first.
    b.request("collab/status", json!({})).await.expect("the daemon has taken both edits");
    proxy.set(Mode::Pass);
    let texts = until(&mut [&mut a, &mut b], &[&ua, &ub], Duration::from_secs(180), "the refusal and the rest", |t| {
        t[0] == t[1] && t[0].contains("<b-after>")
    })
    .await;
    assert_eq!(texts[0], format!("<b-after><s1>{ours}"), "b's paste is undone everywhere, its later typing stays");
    assert!(b.messages.iter().any(|m| m.contains("refused an edit") && m.contains("undone")), "{:?}", b.messages);
    assert_eq!(server_text(&invite, "notes.txt").await, texts[0]);
}
