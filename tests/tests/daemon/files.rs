//! Files rather than buffers: sharing and joining trees of many files, and joining into a folder that holds files.

use std::time::Duration;

use codecollab_tests::editor::invite_rename;
use codecollab_tests::fixtures::scripted::{join, server_text, share, Pair};
use codecollab_tests::fixtures::uri;
use codecollab_tests::harness::{TempDir, TestServer};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use serde_json::json;

/// 1,000 files of 9-10 KB each: the size at which a share once hung without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_files_of_ten_kilobytes_are_shared_and_joined() {
    let server = TestServer::start(|_| {}).await;
    let (host, guest) = (TempDir::new("host"), TempDir::new("guest"));
    for i in 0..1_000 {
        let dir = host.path().join(format!("d{}", i % 20));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let text: String = (0..(9_000 + i)).map(|j| char::from(b'a' + ((i + j) % 26) as u8)).collect();
        std::fs::write(dir.join(format!("f{i}.txt")), text).expect("write");
    }
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let (invite, _) = tokio::time::timeout(Duration::from_secs(120), share(&mut a, host.path(), &server.url(), "ada"))
        .await
        .expect("the share answers");
    let joined = tokio::time::timeout(Duration::from_secs(120), join(&mut b, &invite, guest.path(), "bob"))
        .await
        .expect("the join answers");
    assert_eq!(joined["files"].as_array().expect("files").len(), 1_000);
    for i in [0, 499, 999] {
        let path = format!("d{}/f{i}.txt", i % 20);
        let theirs = std::fs::read(host.path().join(&path)).expect("host file");
        let ours = std::fs::read(guest.path().join(&path)).expect("guest file");
        assert_eq!(theirs, ours, "{path}");
    }
}

/// A guest joining into a folder with its own work in it: a file that differs from the session's is never
/// overwritten. The join is refused listing it, with nothing written; joined again choosing "backup", the file is
/// moved into a folder beside the root and the session's is written; files equal to the session's, or not in it,
/// stay as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_never_overwrites_a_local_file_that_differs() {
    let fill_host = |host: &std::path::Path| {
        std::fs::write(host.join("notes.txt"), "the host's notes\n").expect("write");
        std::fs::write(host.join("same.txt"), "the same on both\n").expect("write");
        std::fs::create_dir_all(host.join("src")).expect("mkdir");
        std::fs::write(host.join("src/new.rs"), "fn host() {}\n").expect("write");
    };
    let server = TestServer::start(|_| {}).await;
    let (host, guest) = (TempDir::new("host"), TempDir::new("guest"));
    fill_host(host.path());
    let precious = "guest's own precious work\n";
    std::fs::write(guest.path().join("notes.txt"), precious).expect("write");
    std::fs::write(guest.path().join("same.txt"), "the same on both\n").expect("write");
    std::fs::write(guest.path().join("mine-only.txt"), "only here\n").expect("write");
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(guest.path());

    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("b");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    let params = json!({"invite": invite, "root": uri(guest.path()), "name": "bob"});
    let error = b.request("collab/join", params.clone()).await.expect_err("a join over differing files is refused");
    let error = error.to_string();
    assert!(error.contains("-32010") && error.contains(r#""conflicts":["notes.txt"]"#), "{error}");
    assert!(error.contains("Nothing was written"), "{error}");
    assert_eq!(std::fs::read_to_string(guest.path().join("notes.txt")).expect("reads"), precious);
    assert_eq!(listing(guest.path()), before, "nothing was written");
    let status = b.request("collab/status", json!({})).await.expect("status");
    assert_eq!(status["state"], "idle", "{status}");

    let mut params = params;
    params["onConflict"] = json!("backup");
    let joined = b.request("collab/join", params).await.expect("a join that moves differing files aside");
    let folder = std::path::PathBuf::from(joined["backup"]["folder"].as_str().expect("a backup folder"));
    assert_eq!(joined["backup"]["files"], json!(["notes.txt"]));
    assert_eq!(folder.parent(), guest.path().parent(), "beside the root, not inside it");
    assert_eq!(std::fs::read_to_string(folder.join("notes.txt")).expect("the backup"), precious);
    assert_eq!(std::fs::read_to_string(guest.path().join("notes.txt")).expect("reads"), "the host's notes\n");
    assert_eq!(std::fs::read_to_string(guest.path().join("src/new.rs")).expect("reads"), "fn host() {}\n");
    assert_eq!(std::fs::read_to_string(guest.path().join("mine-only.txt")).expect("reads"), "only here\n");
    std::fs::remove_dir_all(folder).ok();
}

/// In a session: a peer creates a file where the other has a file of its own that the session does not hold, then
/// renames another file onto a second such file. Neither local file is overwritten: each is moved into a backup
/// folder beside the root, and the user is told where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_new_or_renamed_file_moves_a_local_file_of_that_name_aside() {
    let mut pair =
        Pair::start(&[("shared.txt", "shared\n"), ("old.txt", "the host's old\n")], (Encoding::Utf16, Encoding::Utf8))
            .await;
    std::fs::write(pair.guest.path().join("mine.txt"), "bob's own\n").expect("write");
    std::fs::write(pair.guest.path().join("target.txt"), "bob's target\n").expect("write");

    let (ua, _) = pair.uris("mine.txt");
    pair.a.open(&ua, "ada's new file\n").await.expect("a creates mine.txt");
    let guest = pair.guest.path().to_owned();
    let read = |path: &str| std::fs::read_to_string(guest.join(path)).unwrap_or_default();
    wait(&mut pair.b, "b has ada's mine.txt", || read("mine.txt") == "ada's new file\n").await;
    let told = pair.b.messages.join("\n");
    let moved = told.lines().find_map(|l| l.split("moved to ").nth(1)).unwrap_or_else(|| panic!("told: {told}"));
    assert_eq!(std::fs::read_to_string(moved.trim()).expect("the backup"), "bob's own\n");

    invite_rename(&pair.invite, "old.txt", "target.txt").await.expect("renames");
    wait(&mut pair.b, "b renamed old.txt", || read("target.txt") == "the host's old\n").await;
    let folder = std::path::Path::new(moved.trim()).parent().expect("the backup folder").to_owned();
    assert_eq!(std::fs::read_to_string(folder.join("target.txt")).expect("the backup"), "bob's target\n");
    assert!(!guest.join("old.txt").exists());
    std::fs::remove_dir_all(folder).ok();
}

/// Lets `editor` take in what arrives until `done` holds, or fails after 30 s.
async fn wait(editor: &mut ScriptedEditor, what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        editor.drain(Duration::from_millis(50)).await.expect("the daemon runs");
    }
}

/// Files created, renamed (a file and a folder) and deleted in one editor reach the session and the other peer's
/// disk; the other peer's typing into the renamed file, before and after the rename reaches it, is all kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_created_renamed_and_deleted_in_the_editor_reach_the_others() {
    let files = [("a.txt", "alpha\n"), ("dir/b.txt", "bravo\n"), ("dir/c.txt", "charlie\n")];
    let mut pair = Pair::start(&files, (Encoding::Utf16, Encoding::Utf8)).await;
    let (host, guest) = (pair.host.path().to_owned(), pair.guest.path().to_owned());
    let read = |path: &str| std::fs::read_to_string(guest.join(path)).ok();
    let (_, ub) = pair.uris("a.txt");
    pair.b.open(&ub, "alpha\n").await.expect("b opens a.txt");
    pair.b.type_at(&ub, 0, 0, "<b-before>").await.expect("b types");

    // Created: a new file on a's disk, told by the editor.
    std::fs::write(host.join("new.txt"), "fresh\n").expect("write");
    let files =
        |paths: &[&str]| json!({"files": paths.iter().map(|p| json!({"uri": uri(&host.join(p))})).collect::<Vec<_>>()});
    pair.a.notify("workspace/didCreateFiles", files(&["new.txt"])).await.expect("create");
    wait(&mut pair.b, "new.txt reaches b", || read("new.txt").as_deref() == Some("fresh\n")).await;

    // Renamed: a file, then a folder, as an editor does it (ask, move on disk, tell).
    let rename =
        |from: &str, to: &str| json!({"files": [{"oldUri": uri(&host.join(from)), "newUri": uri(&host.join(to))}]});
    for (from, to) in [("a.txt", "renamed.txt"), ("dir", "lib")] {
        pair.a.request("workspace/willRenameFiles", rename(from, to)).await.expect("will rename");
        std::fs::rename(host.join(from), host.join(to)).expect("rename on disk");
        pair.a.notify("workspace/didRenameFiles", rename(from, to)).await.expect("did rename");
    }
    pair.b.type_at(&ub, 0, 0, "<b-after>").await.expect("b types into the file it knows as a.txt");
    wait(&mut pair.b, "the renames reach b", || {
        read("lib/b.txt").as_deref() == Some("bravo\n") && read("lib/c.txt").is_some() && read("a.txt").is_none()
    })
    .await;
    assert!(read("dir/b.txt").is_none() && read("dir/c.txt").is_none());

    // Deleted.
    std::fs::remove_file(host.join("lib/c.txt")).expect("rm");
    pair.a.notify("workspace/didDeleteFiles", files(&["lib/c.txt"])).await.expect("delete");
    wait(&mut pair.b, "the deletion reaches b", || read("lib/c.txt").is_none()).await;

    // The server holds the new names; b's typing before and after the rename is in the renamed file.
    let invite = pair.invite.clone();
    let renamed = until_server(&invite, "renamed.txt", |t| t.contains("<b-after>")).await;
    assert!(renamed.contains("<b-before>") && renamed.ends_with("alpha\n"), "{renamed:?}");
    assert_eq!(server_text(&invite, "lib/b.txt").await, "bravo\n");
    assert_eq!(server_text(&invite, "new.txt").await, "fresh\n");
    let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("the session's files");
    assert_eq!(paths, ["lib/b.txt", "new.txt", "renamed.txt"]);
}

/// The server's text of `path` once `done` holds for it, or a failure after 30 s.
async fn until_server(invite: &str, path: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = codecollab_tests::editor::invite_server_text(invite, path).await {
            if done(&text) {
                return text;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for the server's {path}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
