//! Co-editing through real daemons: mixed encodings and non-ASCII text, stale and refused daemon edits, join and
//! divergent opens, the view role, thousands of edits fired without waiting, and a server killed mid-typing.

use std::time::Duration;

use codecollab_tests::harness::{ServerProcess, TempDir, TestServer};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use serde_json::json;

use codecollab_tests::fixtures::scripted::{join, pair, server_text, settle, share, Pair};
use codecollab_tests::fixtures::{metric, uri};

const INITIAL: &str = "fn main() {\r\n    println!(\"héllo 日本語 👩\u{200d}💻\");\r\n}\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_editors_with_mixed_encodings_converge() {
    let server = TestServer::start(|_| {}).await;
    let (host_dir, b_dir, c_dir) = (TempDir::new("host"), TempDir::new("b"), TempDir::new("c"));
    std::fs::write(host_dir.path().join("main.rs"), INITIAL).expect("write");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let mut c = ScriptedEditor::start(Encoding::Utf32, &[]).await.expect("c");
    let (invite, _) = share(&mut a, host_dir.path(), &server.url(), "ada").await;
    let joined = join(&mut b, &invite, b_dir.path(), "bob").await;
    assert_eq!(joined["files"], json!(["main.rs"]));
    join(&mut c, &invite, c_dir.path(), "cyd").await;
    let uris =
        [uri(&host_dir.path().join("main.rs")), uri(&b_dir.path().join("main.rs")), uri(&c_dir.path().join("main.rs"))];
    // The joiners' daemons wrote the file: each editor opens it from disk.
    for (editor, (dir, u)) in
        [&mut a, &mut b, &mut c].into_iter().zip([&host_dir, &b_dir, &c_dir].into_iter().zip(&uris))
    {
        let text = std::fs::read_to_string(dir.path().join("main.rs")).expect("file on disk");
        assert_eq!(text, INITIAL);
        editor.open(u, &text).await.expect("open");
    }
    for (i, editor) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        editor.seed(100 + i as u64);
    }
    // All three type at once, reading what arrives between keystrokes.
    for _ in 0..120 {
        for (editor, u) in [&mut a, &mut b, &mut c].into_iter().zip(&uris) {
            editor.type_randomly(u).await.expect("type");
            while editor.pump(Duration::ZERO).await.expect("pump") {}
        }
    }
    let texts = settle(&mut [&mut a, &mut b, &mut c], &[&uris[0], &uris[1], &uris[2]]).await;
    assert_eq!(server_text(&invite, "main.rs").await, texts[0], "and equal to the server");
    let stale: u64 = [&a, &b, &c].iter().map(|e| e.stats.stale_dropped).sum();
    assert!(stale > 0, "concurrent typing must exercise the stale-drop path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_refused_daemon_edits_are_resent_transformed() {
    let mut pair = Pair::start(&[("notes.txt", "shared notes\n")], (Encoding::Utf16, Encoding::Utf16)).await;
    let (ua, ub) = pair.open_both("notes.txt", "shared notes\n").await;
    let Pair { mut a, mut b, invite, .. } = pair;
    // B refuses a third of the daemon edits it could apply (VS Code's applyEdit does this while typing): each
    // refusal is answered with an empty edit, and the daemon must re-send.
    b.refuse_rate = 0.33;
    a.seed(1);
    b.seed(2);
    for _ in 0..150 {
        a.type_randomly(&ua).await.expect("type");
        b.type_randomly(&ub).await.expect("type");
        while a.pump(Duration::ZERO).await.expect("pump") {}
        while b.pump(Duration::ZERO).await.expect("pump") {}
    }
    // Eventually B stops refusing, as an editor does once the user pauses.
    b.refuse_rate = 0.0;
    for _ in 0..3 {
        settle(&mut [&mut a, &mut b], &[&ua, &ub]).await;
        // An empty edit from an editor that is in step changes nothing and costs nothing.
        let applied = b.buffers[&ub].applied;
        b.notify("collab/edit", json!({"uri": ub, "revision": applied, "changes": []})).await.expect("empty edit");
        b.buffers.get_mut(&ub).expect("open").sent += 1;
    }
    let texts = settle(&mut [&mut a, &mut b], &[&ua, &ub]).await;
    assert_eq!(server_text(&invite, "notes.txt").await, texts[0]);
    assert!(b.stats.refused > 10 && b.stats.stale_dropped > 0, "{:?}", b.stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_writes_files_and_a_divergent_buffer_is_diffed_into_line() {
    let prepare = |root: &std::path::Path| {
        std::fs::create_dir_all(root.join("src/nested")).expect("mkdir");
        std::fs::write(root.join("src/nested/lib.rs"), "line one\nline two\nline three\n").expect("write");
        std::fs::write(root.join(".gitignore"), "target/\n").expect("write");
        std::fs::create_dir_all(root.join("target")).expect("mkdir");
        std::fs::write(root.join("target/build.log"), "ignored").expect("write");
        std::fs::write(root.join("image.bin"), [0u8, 159, 146, 150]).expect("write");
    };
    let Pair { server: _server, host: host_dir, guest: guest_dir, mut a, mut b, joined, .. } =
        Pair::start_with(prepare, (Encoding::Utf16, Encoding::Utf8)).await;
    assert_eq!(joined["files"], json!([".gitignore", "src/nested/lib.rs"]), "gitignored and binary files stay home");
    // Both reported their work as LSP progress, which editors show natively.
    a.drain(Duration::from_millis(100)).await.expect("drain");
    b.drain(Duration::from_millis(100)).await.expect("drain");
    for editor in [&a, &b] {
        let kinds: Vec<&str> = editor.progress.iter().filter_map(|p| p["kind"].as_str()).collect();
        assert_eq!(kinds.first(), Some(&"begin"), "{:?}", editor.progress);
        assert_eq!(kinds.last(), Some(&"end"), "{:?}", editor.progress);
    }
    assert_eq!(
        std::fs::read_to_string(guest_dir.path().join("src/nested/lib.rs")).expect("written"),
        "line one\nline two\nline three\n"
    );
    // The guest's editor has a stale copy of the file: opening it brings the buffer in line with a diff.
    let ub = uri(&guest_dir.path().join("src/nested/lib.rs"));
    b.open(&ub, "line one\nline 2\nline three\n").await.expect("open");
    b.drain(Duration::from_millis(300)).await.expect("drain");
    assert_eq!(b.text(&ub), "line one\nline two\nline three\n");
    // Edits by the host reach the guest's file on disk while no editor has it open there.
    let ua = uri(&host_dir.path().join(".gitignore"));
    a.open(&ua, "target/\n").await.expect("open");
    a.type_at(&ua, 8, 8, "node_modules/\n").await.expect("type");
    let on_disk = guest_dir.path().join(".gitignore");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&on_disk).expect("exists") != "target/\nnode_modules/\n" {
        assert!(tokio::time::Instant::now() < deadline, "the guest's file was not updated on disk");
        a.drain(Duration::from_millis(50)).await.expect("drain");
        b.drain(Duration::from_millis(50)).await.expect("drain");
    }
    // A file the host opens that the session does not hold yet is created, and appears on the guest's disk.
    let new = host_dir.path().join("docs/new.md");
    std::fs::create_dir_all(new.parent().expect("parent")).expect("mkdir");
    a.open(&uri(&new), "# New\n").await.expect("open");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(guest_dir.path().join("docs/new.md")).ok().as_deref() != Some("# New\n") {
        assert!(tokio::time::Instant::now() < deadline, "the new file did not reach the guest");
        a.drain(Duration::from_millis(50)).await.expect("drain");
        b.drain(Duration::from_millis(50)).await.expect("drain");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_edits_are_refused_and_its_buffer_restored() {
    let server = TestServer::start(|_| {}).await;
    let (host_dir, viewer_dir) = (TempDir::new("host"), TempDir::new("viewer"));
    std::fs::write(host_dir.path().join("r.txt"), "read only\n").expect("write");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut v = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("v");
    let (invite, view_invite) = share(&mut a, host_dir.path(), &server.url(), "ada").await;
    join(&mut v, &view_invite, viewer_dir.path(), "viewer").await;
    v.wait_state("readonly", Duration::from_secs(10)).await.expect("readonly state");
    let uv = uri(&viewer_dir.path().join("r.txt"));
    v.open(&uv, "read only\n").await.expect("open");
    v.type_at(&uv, 0, 4, "HACKED").await.expect("type");
    v.drain(Duration::from_millis(300)).await.expect("drain");
    assert_eq!(v.text(&uv), "read only\n", "the buffer is restored");
    assert!(v.messages.iter().any(|m| m.contains("view-only")), "{:?}", v.messages);
    assert_eq!(server_text(&invite, "r.txt").await, "read only\n");
    // The viewer still sees the host's edits.
    let ua = uri(&host_dir.path().join("r.txt"));
    a.open(&ua, "read only\n").await.expect("open");
    a.type_at(&ua, 0, 0, "> ").await.expect("type");
    settle(&mut [&mut a, &mut v], &[&ua, &uv]).await;
    assert_eq!(v.text(&uv), "> read only\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_edits_fired_without_waiting_stay_in_order() {
    let mut pair = Pair::start(&[("fast.txt", "")], (Encoding::Utf16, Encoding::Utf16)).await;
    let (ua, ub) = pair.open_both("fast.txt", "").await;
    let Pair { mut a, mut b, invite, .. } = pair;
    // 3000 edits, each depending on the previous one, written to the daemon without reading anything back.
    let mut expected = String::new();
    for i in 0..3000usize {
        let text = format!("{}", i % 10);
        let at = if i % 3 == 0 { 0 } else { expected.chars().count() };
        a.type_at(&ua, at, at, &text).await.expect("type");
        expected.insert_str(expected.char_indices().nth(at).map_or(expected.len(), |(b, _)| b), &text);
    }
    assert_eq!(a.text(&ua), expected);
    let texts = settle(&mut [&mut a, &mut b], &[&ua, &ub]).await;
    assert_eq!(texts[1], expected, "reordering any two edits would change this text");
    assert_eq!(server_text(&invite, "fast.txt").await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_while_both_type_loses_nothing() {
    let data = TempDir::new("daemon-kill");
    let mut server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("host"), TempDir::new("guest"));
    std::fs::write(host_dir.path().join("k.txt"), "").expect("write");
    let (mut a, mut b, invite, _) =
        pair(&server.url(), host_dir.path(), guest_dir.path(), (Encoding::Utf16, Encoding::Utf8)).await;
    let (ua, ub) = (uri(&host_dir.path().join("k.txt")), uri(&guest_dir.path().join("k.txt")));
    a.open(&ua, "").await.expect("open");
    b.open(&ub, "").await.expect("open");
    // Each types unique tokens, always at its own end of the buffer... before, during and after the outage.
    let mut typed = Vec::new();
    let round = |i: usize| (format!("<a{i}>"), format!("[b{i}]"));
    for i in 0..200 {
        if i == 80 {
            server.kill();
        }
        if i == 140 {
            let listen = server.addr.to_string();
            server = ServerProcess::spawn(&listen, data.path(), &[]).expect("server restarts");
        }
        let (ta, tb) = round(i);
        let end = a.buffers[&ua].text.len();
        a.type_at(&ua, end, end, &ta).await.expect("type");
        b.type_at(&ub, 0, 0, &tb).await.expect("type");
        typed.push(ta);
        typed.push(tb);
        while a.pump(Duration::ZERO).await.expect("pump") {}
        while b.pump(Duration::ZERO).await.expect("pump") {}
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.wait_state("connected", Duration::from_secs(20)).await.expect("a reconnects");
    b.wait_state("connected", Duration::from_secs(20)).await.expect("b reconnects");
    assert!(a.states.iter().any(|s| s == "reconnecting"), "{:?}", a.states);
    let texts = settle(&mut [&mut a, &mut b], &[&ua, &ub]).await;
    for token in &typed {
        assert_eq!(texts[0].matches(token.as_str()).count(), 1, "{token} must survive exactly once");
    }
    assert_eq!(server_text(&invite, "k.txt").await, texts[0]);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_cursors_arrive_with_names_and_vanish_when_the_peer_leaves() {
    let text = "日本語 text\nsecond line\n";
    let mut pair = Pair::start(&[("c.txt", text)], (Encoding::Utf16, Encoding::Utf8)).await;
    let (ua, ub) = pair.open_both("c.txt", text).await;
    let Pair { mut a, mut b, guest: guest_dir, .. } = pair;
    // Ada selects "text" (UTF-16 columns 4..8 on line 0); Bob, in UTF-8, sees bytes 10..14 on line 0.
    let range = json!({"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 8}});
    a.notify("collab/cursor", json!({"uri": ua, "ranges": [range]})).await.expect("cursor");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let cursor = loop {
        b.pump(Duration::from_millis(50)).await.expect("pump");
        if let Some(cursor) = b.cursors.get(&ub).and_then(|c| c.as_array()).and_then(|c| c.first()).cloned() {
            break cursor;
        }
        assert!(tokio::time::Instant::now() < deadline, "no collab/cursors for bob");
    };
    assert_eq!(cursor["name"], "ada");
    assert!(cursor["color"].as_str().is_some_and(|c| c.starts_with('#')));
    assert_eq!(
        cursor["ranges"][0],
        json!({"start": {"line": 0, "character": 10}, "end": {"line": 0, "character": 14}})
    );
    b.drain(Duration::from_millis(200)).await.expect("drain");
    let ada = b.peers.as_array().and_then(|p| p.iter().find(|p| p["name"] == "ada").cloned()).expect("ada listed");
    assert_eq!(ada["uri"], json!(uri(&guest_dir.path().join("c.txt"))), "and where she is");
    // Ada leaves: her cursor goes.
    a.request("collab/leave", json!({})).await.expect("leave");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.cursors.get(&ub).and_then(|c| c.as_array()).is_some_and(|c| !c.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "ada's cursor stayed");
        b.pump(Duration::from_millis(50)).await.expect("pump");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_that_never_answers_progress_requests_still_gets_edits_at_once() {
    let mut pair = Pair::start(&[("p.txt", "x\n")], (Encoding::Utf16, Encoding::Utf16)).await;
    let (ua, _) = pair.open_both("p.txt", "x\n").await;
    let Pair { mut a, mut b, .. } = pair;
    a.type_at(&ua, 0, 0, "y").await.expect("type");
    // B reads raw messages and answers nothing (its daemon's progress request stays unanswered).
    let started = tokio::time::Instant::now();
    loop {
        let message = b.next_message(Duration::from_secs(5)).await.expect("daemon alive").expect("an edit within 5 s");
        if message["method"] == "collab/edit" {
            break;
        }
    }
    // Blocked behind the request, it would have waited for the daemon to give up on it (5 s).
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the edit waited {:?} behind a progress request",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_opened_in_two_editors_at_once_is_fetched_once_by_each() {
    let mut pair = Pair::start(&[], (Encoding::Utf16, Encoding::Utf16)).await;
    let text: String = (0..4000).map(|i| format!("line {i} of a new file\n")).collect();
    let bytes_out = |addr| metric(addr, "codecollab_bytes_out_total");
    let before = bytes_out(pair.server.addr).await;
    // Both editors open the same path, which the session does not hold yet, at once: both daemons create it.
    pair.open_both("new.txt", &text).await;
    let texts = pair.settle("new.txt").await;
    assert_eq!(texts, [text.clone(), text.clone()]);
    // Each daemon received the text once (its own create is answered with it); not a second time for the other's.
    let sent = bytes_out(pair.server.addr).await - before;
    assert!(sent < 2 * text.len() as u64 + text.len() as u64 / 2, "{sent} bytes out for a {} byte file", text.len());
    assert_eq!(pair.server_text("new.txt").await, text);
}

/// Two peers create the same new path at once from their editors, each with its own text: the second creation
/// finds the first's document, and its text is kept beside the first's, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_new_path_created_by_two_editors_at_once_keeps_both_texts() {
    let mut pair = Pair::start(&[], (Encoding::Utf16, Encoding::Utf8)).await;
    let (ua, ub) = pair.uris("same.txt");
    pair.a.open(&ua, "ada's first line\n").await.expect("a opens");
    pair.b.open(&ub, "bob's own text\n").await.expect("b opens");
    let texts = pair.settle("same.txt").await;
    for token in ["ada's first line\n", "bob's own text\n"] {
        assert_eq!(texts[0].matches(token).count(), 1, "{token:?} in {:?}", texts[0]);
    }
    assert_eq!(pair.server_text("same.txt").await, texts[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_into_a_new_file_before_the_server_has_it_is_kept_and_merged() {
    let mut pair = Pair::start(&[], (Encoding::Utf16, Encoding::Utf8)).await;
    // Both open the same new path at once and type at once, before either daemon has the server's answer.
    let (ua, ub) = pair.open_both("new.txt", "").await;
    let Pair { mut a, mut b, invite, .. } = pair;
    for i in 0..20 {
        let at = a.text(&ua).chars().count();
        a.type_at(&ua, at, at, &format!("<a{i}>")).await.expect("types");
        let at = b.text(&ub).chars().count();
        b.type_at(&ub, at, at, &format!("<b{i}>")).await.expect("types");
    }
    let texts = settle(&mut [&mut a, &mut b], &[&ua, &ub]).await;
    for i in 0..20 {
        for token in [format!("<a{i}>"), format!("<b{i}>")] {
            assert_eq!(texts[0].matches(&token).count(), 1, "{token} in {}", texts[0]);
        }
    }
    assert_eq!(server_text(&invite, "new.txt").await, texts[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_megabytes_travels_whole_and_stays_editable() {
    let pair = Pair::start(&[], (Encoding::Utf16, Encoding::Utf8)).await;
    let (ua, ub) = pair.uris("big.txt");
    let Pair { mut a, mut b, invite, guest: guest_dir, .. } = pair;
    // About 2.5 MB with multibyte text: the upload and the snapshot both travel as many WebSocket fragments,
    // split wherever the byte count falls, and the open as one large LSP message.
    let text: String = (0..40_000).map(|i| format!("{i:05} héllo 日本語 👩\u{200d}💻 the quick brown fox\n")).collect();
    a.open(&ua, &text).await.expect("open");
    let on_disk = guest_dir.path().join("big.txt");
    codecollab_tests::harness::poll_until(
        "the guest's daemon writes the file",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok(std::fs::read_to_string(&on_disk).is_ok_and(|t| t == text)),
    )
    .expect("written whole");
    b.open(&ub, &text).await.expect("open");
    a.seed(7);
    b.seed(8);
    for _ in 0..40 {
        a.type_randomly(&ua).await.expect("type");
        b.type_randomly(&ub).await.expect("type");
        while a.pump(Duration::ZERO).await.expect("pump") {}
        while b.pump(Duration::ZERO).await.expect("pump") {}
    }
    let texts = settle(&mut [&mut a, &mut b], &[&ua, &ub]).await;
    assert_ne!(texts[0], text, "both typed");
    assert_eq!(server_text(&invite, "big.txt").await, texts[0]);
}
