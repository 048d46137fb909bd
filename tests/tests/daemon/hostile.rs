//! A daemon trusts no server and no peer with its disk: against a hostile server (one that sends forbidden paths,
//! a million files, clashing names, frames that do not decode, a frame of 2 GB) and a joiner's folder holding
//! symbolic links, nothing is written outside the session rules, each refusal is told, and the session goes on.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use codecollab_protocol::wire::{ClientMsg, DocInfo, Limits, Role, ServerMsg};
use codecollab_tests::harness::{proc_status_kb, TempDir, TestServer};
use codecollab_tests::hostile::{HostileServer, Reply};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use serde_json::json;

use codecollab_tests::fixtures::scripted::{join, share};
use codecollab_tests::fixtures::{files_under, uri};

fn snapshot(doc: u64, path: &str, text: &str) -> Reply {
    Reply::Msg(ServerMsg::Snapshot { doc, path: path.into(), revision: 0, text: text.into(), last_seq: None })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_plants_nothing_and_the_session_goes_on() {
    let deep = vec!["d"; 100].join("/") + "/deep.txt";
    let mut docs: Vec<(u64, String)> = vec![
        (1, "ok.txt".into()),
        (2, ".git/hooks/post-checkout".into()),
        (3, "vendor/.HG/hgrc".into()),
        (4, "../escape.txt".into()),
        (5, "/tmp/absolute.txt".into()),
        (6, deep),
        (7, "bell\u{7}.txt".into()),
        (8, "README.md".into()),
        (9, "readme.MD".into()),
        // Listed as a plain file, but its snapshot says it lives in `.git`.
        (10, "innocent.txt".into()),
    ];
    // A million more: the daemon takes 10,000 files at most from one session.
    docs.extend((0..1_000_000).map(|i| (100 + i, format!("many/f{i}.txt"))));
    let welcome = ServerMsg::Welcome {
        session: "hostile".into(),
        peer: 2,
        name: "victim".into(),
        role: Role::Edit,
        host: false,
        token: "t".into(),
        peers: Vec::new(),
        docs: docs.iter().map(|(doc, path)| DocInfo { doc: *doc, path: path.clone() }).collect(),
        limits: Some(Limits { max_frame_bytes: 16 << 20, max_document_chars: 1 << 30, heartbeat_ms: 60_000 }),
        unshared: Vec::new(),
    };
    let paths: HashMap<u64, String> = docs.into_iter().collect();
    let script = Box::new(move |msg: &ClientMsg| match msg {
        ClientMsg::Join { .. } => vec![Reply::Msg(welcome.clone())],
        ClientMsg::Subscribe { doc: 10, .. } => vec![snapshot(10, ".git/config", "[core]\n\thooksPath = /tmp\n")],
        ClientMsg::Subscribe { doc, .. } if *doc < 100 => vec![snapshot(*doc, &paths[doc], "planted\n")],
        ClientMsg::Subscribe { doc, .. } => vec![snapshot(*doc, &paths[doc], "")],
        // After the join the client's cursor triggers the rest of the script.
        ClientMsg::Cursor { .. } => vec![
            // Moved to where it would run.
            Reply::Msg(ServerMsg::Renamed { doc: 1, path: ".git/hooks/pre-commit".into() }),
            // A frame whose path is not UTF-8: dropped, the connection goes on.
            Reply::Raw(b"\x92\x01\x82\xa4type\xa7created\xa3doc\x82\xa3doc\x19\xa4path\xa3\xff\xfe\xfd".to_vec()),
            Reply::Msg(ServerMsg::Created { doc: DocInfo { doc: 20, path: "later.txt".into() }, peer: None }),
        ],
        ClientMsg::Unsubscribe { doc: 20 } => Vec::new(),
        _ => Vec::new(),
    });
    // `later.txt`'s snapshot, then a frame too large to read.
    let mut later_sent = false;
    let script: codecollab_tests::hostile::Script = Box::new({
        let script = script;
        move |msg: &ClientMsg| match msg {
            ClientMsg::Subscribe { doc: 20, .. } if !later_sent => {
                later_sent = true;
                vec![snapshot(20, "later.txt", "still going\n"), Reply::HugeFrame(2 << 30)]
            }
            other => script(other),
        }
    });
    let server = HostileServer::start(script).await.expect("starts");
    let dir = TempDir::new("victim");
    let mut editor = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("daemon");
    let joined = join(&mut editor, &server.invite(), dir.path(), "victim").await;
    let files: Vec<String> =
        joined["files"].as_array().expect("files").iter().map(|f| f.as_str().expect("path").to_owned()).collect();
    assert!(files.len() <= 10_001 && files.contains(&"ok.txt".to_owned()), "{} files", files.len());
    assert!(!files.iter().any(|f| f.contains(".git") || f.contains("readme.MD")), "refused files are not listed");

    // The join's refusals were told, each once.
    editor.drain(Duration::from_millis(300)).await.expect("daemon runs");
    let said = editor.messages.join("\n");
    for expected in [
        ".git/hooks/post-checkout",
        "vendor/.HG/hgrc",
        "../escape.txt",
        "/tmp/absolute.txt",
        "deep.txt",
        "bell",
        "readme.MD",
        ".git/config",
        "more than 10000",
    ] {
        assert!(said.contains(expected), "told about {expected}: {said}");
    }

    // Trigger the rest: a rename into .git, a frame that does not decode, a new file, then a 2 GB frame.
    let ok = uri(&dir.path().join("ok.txt"));
    editor.open(&ok, "planted\n").await.expect("opens");
    editor
        .notify(
            "collab/cursor",
            json!({"uri": ok, "ranges": [{"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}]}),
        )
        .await
        .expect("cursor");
    editor.wait_state("reconnecting", Duration::from_secs(30)).await.expect("the 2 GB frame ends the connection");
    let said = editor.messages.join("\n");
    assert!(said.contains(".git/hooks/pre-commit") && said.contains("did not decode"), "{said}");
    assert!(editor.states.last().is_some_and(|s| s == "reconnecting"), "{:?}", editor.states);
    let later = dir.path().join("later.txt");
    codecollab_tests::harness::poll_until(
        "later.txt on disk",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || Ok(std::fs::read_to_string(&later).is_ok_and(|t| t == "still going\n")),
    )
    .expect("the session went on after the frame that did not decode");
    assert!(proc_status_kb(editor.pid().expect("running"), "VmHWM:") < 400_000, "the 2 GB frame was never held");

    // On disk: only what the rules allow, all inside the folder.
    let on_disk = files_under(dir.path());
    for file in &on_disk {
        assert!(codecollab_protocol::path::check(file).is_ok(), "{file} on disk");
    }
    assert!(on_disk.iter().any(|f| f == "ok.txt") && on_disk.iter().any(|f| f == "README.md"), "{on_disk:?}");
    assert!(!on_disk.iter().any(|f| f.eq_ignore_ascii_case("readme.md") && f != "README.md"), "{on_disk:?}");
    assert!(
        !Path::new("/tmp/absolute.txt").exists() && !dir.path().parent().expect("parent").join("escape.txt").exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_folder_with_links_gets_a_message_for_them_and_the_rest_works() {
    let server = TestServer::start(|_| {}).await;
    let (host, guest, outside) = (TempDir::new("a"), TempDir::new("b"), TempDir::new("outside"));
    std::fs::create_dir_all(host.path().join("docs")).expect("creates");
    std::fs::write(host.path().join("docs/a.txt"), "through a link\n").expect("writes");
    std::fs::write(host.path().join("b.txt"), "plain\n").expect("writes");
    std::fs::write(host.path().join("c.txt"), "linked file\n").expect("writes");
    std::fs::write(outside.path().join("mine.txt"), "not yours\n").expect("writes");
    // The joiner's folder already holds a link to a folder and a link to a file, both pointing outside it.
    std::os::unix::fs::symlink(outside.path(), guest.path().join("docs")).expect("links");
    std::os::unix::fs::symlink(outside.path().join("mine.txt"), guest.path().join("c.txt")).expect("links");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    join(&mut b, &invite, guest.path(), "bob").await;
    b.drain(Duration::from_millis(500)).await.expect("b");
    let said = b.messages.join("\n");
    assert!(said.contains("docs/a.txt") && said.contains("symbolic link"), "{said}");
    assert!(said.contains("c.txt"), "{said}");
    assert_eq!(std::fs::read_to_string(guest.path().join("b.txt")).expect("written"), "plain\n");
    assert_eq!(std::fs::read_to_string(outside.path().join("mine.txt")).expect("reads"), "not yours\n");
    assert_eq!(std::fs::read_dir(outside.path()).expect("lists").count(), 1, "nothing written outside");
    // The rest of the session works: an edit in b.txt travels.
    let (ua, ub) = (uri(&host.path().join("b.txt")), uri(&guest.path().join("b.txt")));
    a.open(&ua, "plain\n").await.expect("opens");
    b.open(&ub, "plain\n").await.expect("opens");
    b.type_at(&ub, 0, 0, "still ").await.expect("types");
    codecollab_tests::fixtures::scripted::until(
        &mut [&mut a, &mut b],
        &[&ua, &ub],
        Duration::from_secs(20),
        "the edit",
        |t| t[0] == "still plain\n" && t[1] == t[0],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_never_uploads_version_control_internals_or_links() {
    let server = TestServer::start(|_| {}).await;
    let (host, guest, outside) = (TempDir::new("a"), TempDir::new("b"), TempDir::new("outside"));
    for (path, text) in [
        ("src/main.rs", "fn main() {}\n"),
        (".git/config", "[core]\n"),
        (".git/hooks/post-checkout", "#!/bin/sh\n"),
        ("vendor/.Hg/hgrc", "[ui]\n"),
        ("sub/.svn/entries", "x\n"),
        (".jj/repo", "x\n"),
    ] {
        let full = host.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("creates");
        std::fs::write(full, text).expect("writes");
    }
    std::fs::write(outside.path().join("elsewhere.txt"), "outside the folder\n").expect("writes");
    std::os::unix::fs::symlink(outside.path().join("elsewhere.txt"), host.path().join("link.txt")).expect("links");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    let joined = join(&mut b, &invite, guest.path(), "bob").await;
    assert_eq!(joined["files"], json!(["src/main.rs"]), "only the source file travels");
    assert_eq!(files_under(guest.path()), ["src/main.rs"]);
}
