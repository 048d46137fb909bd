//! Files rather than buffers: sharing and joining trees of many files, and joining into a folder that holds files.

use std::time::Duration;

use codecollab_tests::editor::invite_rename;
use codecollab_tests::fixtures::scripted::{join, server_text, share, Pair};
use codecollab_tests::fixtures::{files_under, git, uri};
use codecollab_tests::harness::{TempDir, TestServer};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use serde_json::{json, Value};

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
    // Bob's own files are in his folder before he joins (files made during the session are shared at once).
    let server = TestServer::start(|_| {}).await;
    let (host, guest) = (TempDir::new("host"), TempDir::new("guest"));
    std::fs::write(host.path().join("shared.txt"), "shared\n").expect("write");
    std::fs::write(host.path().join("old.txt"), "the host's old\n").expect("write");
    std::fs::write(guest.path().join("mine.txt"), "bob's own\n").expect("write");
    std::fs::write(guest.path().join("target.txt"), "bob's target\n").expect("write");
    let (a, b, invite, joined) = codecollab_tests::fixtures::scripted::pair(
        &server.url(),
        host.path(),
        guest.path(),
        (Encoding::Utf16, Encoding::Utf8),
    )
    .await;
    let mut pair = Pair { server, host, guest, a, b, invite, joined };

    let (ua, _) = pair.uris("mine.txt");
    pair.a.open(&ua, "ada's new file\n").await.expect("a creates mine.txt");
    let guest = pair.guest.path().to_owned();
    let read = |path: &str| std::fs::read_to_string(guest.join(path)).unwrap_or_default();
    wait(&mut pair.b, "b has ada's mine.txt", |_| read("mine.txt") == "ada's new file\n").await;
    let told = pair.b.messages.join("\n");
    let moved = told.lines().find_map(|l| l.split("moved to ").nth(1)).unwrap_or_else(|| panic!("told: {told}"));
    assert_eq!(std::fs::read_to_string(moved.trim()).expect("the backup"), "bob's own\n");

    invite_rename(&pair.invite, "old.txt", "target.txt").await.expect("renames");
    wait(&mut pair.b, "b renamed old.txt", |_| read("target.txt") == "the host's old\n").await;
    let folder = std::path::Path::new(moved.trim()).parent().expect("the backup folder").to_owned();
    assert_eq!(std::fs::read_to_string(folder.join("target.txt")).expect("the backup"), "bob's target\n");
    assert!(!guest.join("old.txt").exists());
    std::fs::remove_dir_all(folder).ok();
}

/// Lets `editor` take in what arrives until `done` holds, or fails after 30 s.
async fn wait(editor: &mut ScriptedEditor, what: &str, done: impl Fn(&ScriptedEditor) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(editor) {
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
    let told = |b: &ScriptedEditor, kind: &str| -> Vec<Value> {
        b.files.iter().flat_map(|f| f[kind].as_array().cloned().unwrap_or_default()).collect()
    };
    let at = |p: &str| json!(uri(&guest.join(p)));
    // Each on b's disk, and told to b's editor (which comes right after the disk).
    wait(&mut pair.b, "new.txt reaches b", |b| {
        read("new.txt").as_deref() == Some("fresh\n") && !told(b, "created").is_empty()
    })
    .await;

    // Renamed: a file, then a folder, as an editor does it (ask, move on disk, tell).
    let rename =
        |from: &str, to: &str| json!({"files": [{"oldUri": uri(&host.join(from)), "newUri": uri(&host.join(to))}]});
    for (from, to) in [("a.txt", "renamed.txt"), ("dir", "lib")] {
        pair.a.request("workspace/willRenameFiles", rename(from, to)).await.expect("will rename");
        std::fs::rename(host.join(from), host.join(to)).expect("rename on disk");
        pair.a.notify("workspace/didRenameFiles", rename(from, to)).await.expect("did rename");
    }
    pair.b.type_at(&ub, 0, 0, "<b-after>").await.expect("b types into the file it knows as a.txt");
    wait(&mut pair.b, "the renames reach b", |b| {
        read("lib/b.txt").as_deref() == Some("bravo\n")
            && read("lib/c.txt").is_some()
            && read("a.txt").is_none()
            && told(b, "renamed").len() >= 3
    })
    .await;
    assert!(read("dir/b.txt").is_none() && read("dir/c.txt").is_none());

    // Deleted.
    std::fs::remove_file(host.join("lib/c.txt")).expect("rm");
    pair.a.notify("workspace/didDeleteFiles", files(&["lib/c.txt"])).await.expect("delete");
    wait(&mut pair.b, "the deletion reaches b", |b| read("lib/c.txt").is_none() && !told(b, "deleted").is_empty())
        .await;

    // The server holds the new names; b's typing before and after the rename is in the renamed file.
    let invite = pair.invite.clone();
    let renamed = until_server(&invite, "renamed.txt", |t| t.contains("<b-after>")).await;
    assert!(renamed.contains("<b-before>") && renamed.ends_with("alpha\n"), "{renamed:?}");
    assert_eq!(server_text(&invite, "lib/b.txt").await, "bravo\n");
    assert_eq!(server_text(&invite, "new.txt").await, "fresh\n");
    let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("the session's files");
    assert_eq!(paths, ["lib/b.txt", "new.txt", "renamed.txt"]);

    // b's editor was told each, in its own URIs, so its buffers can follow (`collab/files`); the file it has open
    // under its old name is named by the URI it opened it with.
    assert_eq!(told(&pair.b, "created"), [at("new.txt")]);
    let renamed = told(&pair.b, "renamed");
    for (from, to) in [("a.txt", "renamed.txt"), ("dir/b.txt", "lib/b.txt"), ("dir/c.txt", "lib/c.txt")] {
        assert!(renamed.contains(&json!({"oldUri": at(from), "newUri": at(to)})), "{from} → {to}: {renamed:?}");
    }
    assert_eq!(told(&pair.b, "deleted"), [at("lib/c.txt")]);
}

/// An editor's open of a file that crosses a peer's rename of it (sent before the `collab/files` telling of the
/// move reached the editor) is the moved document's buffer: the old name does not come back for everyone, and what
/// is typed under either name reaches the renamed file. A file created at the old name afterwards is a new one.
/// A rename onto a path the session holds (an explorer asking first, then failing to move) is refused here with a
/// word, and the file keeps its name and its edits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_crossing_a_peers_rename_follows_it_instead_of_bringing_the_old_name_back() {
    let files = [("doc.txt", "alpha\n"), ("other.txt", "other\n")];
    let mut pair = Pair::start(&files, (Encoding::Utf8, Encoding::Utf16)).await;
    let (host, guest) = (pair.host.path().to_owned(), pair.guest.path().to_owned());
    let rename =
        |from: &str, to: &str| json!({"files": [{"oldUri": uri(&host.join(from)), "newUri": uri(&host.join(to))}]});
    pair.a.request("workspace/willRenameFiles", rename("doc.txt", "renamed.txt")).await.expect("will rename");
    std::fs::rename(host.join("doc.txt"), host.join("renamed.txt")).expect("rename on disk");
    pair.a.notify("workspace/didRenameFiles", rename("doc.txt", "renamed.txt")).await.expect("did rename");
    wait(&mut pair.b, "b's daemon moves the file and tells its editor", |b| {
        guest.join("renamed.txt").exists() && b.files.iter().any(|f| f.get("renamed").is_some())
    })
    .await;

    // b's editor had read doc.txt before the move and opens it now; it types, then follows the rename.
    let ((_, old), (_, new)) = (pair.uris("doc.txt"), pair.uris("renamed.txt"));
    pair.b.open(&old, "alpha\n").await.expect("the crossing open");
    pair.b.type_at(&old, 0, 0, "<b-old-name>").await.expect("b types");
    pair.b.notify("collab/close", json!({"uri": old})).await.expect("close");
    pair.b.open(&new, "<b-old-name>alpha\n").await.expect("b follows");
    pair.b.type_at(&new, 0, 0, "<b-new-name>").await.expect("b types");
    let invite = pair.invite.clone();
    let text = until_server(&invite, "renamed.txt", |t| t.contains("<b-new-name>")).await;
    assert_eq!(text, "<b-new-name><b-old-name>alpha\n");
    let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("the session's files");
    assert_eq!(paths, ["other.txt", "renamed.txt"], "the old name is not back");
    assert!(!guest.join("doc.txt").exists());

    // Now doc.txt is a new file, for everyone.
    pair.b.open(&old, "new\n").await.expect("b creates doc.txt");
    until_server(&invite, "doc.txt", |t| t == "new\n").await;

    // An explorer asks to move other.txt onto renamed.txt, then cannot: nothing moves, and a is told why.
    pair.a.request("workspace/willRenameFiles", rename("other.txt", "renamed.txt")).await.expect("will rename");
    wait(&mut pair.a, "a is told", |a| a.messages.iter().any(|m| m.contains("another document is at renamed.txt")))
        .await;
    let (other, _) = pair.uris("other.txt");
    pair.a.open(&other, "other\n").await.expect("a opens other.txt");
    pair.a.type_at(&other, 0, 0, "<a>").await.expect("a types");
    until_server(&invite, "other.txt", |t| t == "<a>other\n").await;
    assert_eq!(server_text(&invite, "renamed.txt").await, text);
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

/// The host's disk changes under the session while the guest types in a file it has open: `git checkout` of a
/// branch that adds, deletes, renames and changes files, then `mv` of a folder, `rm`, and a formatter rewriting a
/// file. At the end the guest's folder equals the host's byte for byte, the server holds exactly those files, and
/// every token the guest typed is in its file everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_the_hosts_disk_reach_the_guest_while_it_types() {
    let files = [
        ("typed.txt", "the guest types here\n"),
        ("keep.txt", "kept as it is\n"),
        ("change.txt", "one\ntwo\nthree\n"),
        ("delete.txt", "deleted on the branch\n"),
        ("rename.txt", "renamed on the branch\n"),
        ("src/a.rs", "fn a() {}\n"),
        ("src/b.rs", "fn b() {}\n"),
        ("fmt.rs", "fn  f( )  {  }\n"),
    ];
    let mut pair = Pair::start_with(
        |root| {
            for (path, text) in files {
                let file = root.join(path);
                std::fs::create_dir_all(file.parent().expect("a folder")).expect("mkdir");
                std::fs::write(file, text).expect("write");
            }
            std::fs::write(root.join(".gitignore"), "target/\n").expect("write");
            git(root, &["init", "-q", "-b", "main"]);
            git(root, &["add", "-A"]);
            git(root, &["commit", "-q", "-m", "main"]);
            git(root, &["checkout", "-q", "-b", "other"]);
            std::fs::write(root.join("change.txt"), "one\n2\nthree\nfour\n").expect("write");
            std::fs::write(root.join("added.txt"), "added on the branch\n").expect("write");
            git(root, &["rm", "-q", "delete.txt"]);
            git(root, &["mv", "rename.txt", "renamed.txt"]);
            git(root, &["add", "-A"]);
            git(root, &["commit", "-q", "-m", "other"]);
            git(root, &["checkout", "-q", "main"]);
        },
        (Encoding::Utf16, Encoding::Utf8),
    )
    .await;
    let host = pair.host.path().to_owned();
    let (_, ub) = pair.uris("typed.txt");
    pair.b.open(&ub, "the guest types here\n").await.expect("b opens");
    let mut typed = Vec::new();
    let mut counter = 0;
    let mut step = 0;
    let steps: Vec<Box<dyn Fn()>> = vec![
        Box::new(|| git(&host, &["checkout", "-q", "other"])),
        Box::new(|| std::fs::rename(host.join("src"), host.join("lib")).expect("mv")),
        Box::new(|| std::fs::remove_file(host.join("keep.txt")).expect("rm")),
        Box::new(|| std::fs::write(host.join("fmt.rs"), "fn f() {}\n").expect("format")),
        Box::new(|| std::fs::create_dir_all(host.join("target")).expect("mkdir")),
        Box::new(|| std::fs::write(host.join("target/ignored.txt"), "build output\n").expect("write")),
    ];
    for _ in 0..60 {
        typed.push(pair.b.type_token(&ub, 'b', &mut counter).await.expect("b types"));
        pair.b.drain(Duration::from_millis(20)).await.expect("drains");
        if counter % 10 == 0 && step < steps.len() {
            steps[step]();
            step += 1;
        }
    }
    let guest = pair.guest.path().to_owned();
    let tree = |root: &std::path::Path| {
        let mut files = std::collections::BTreeMap::new();
        for relative in files_under(root) {
            let skip = [".git/", ".gitignore", "target/"].iter().any(|p| relative.starts_with(p));
            if !skip {
                let bytes = std::fs::read(root.join(&relative)).expect("reads");
                files.insert(relative, bytes);
            }
        }
        files
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        pair.a.drain(Duration::from_millis(50)).await.expect("a");
        pair.b.drain(Duration::from_millis(50)).await.expect("b");
        // typed.txt is open in the guest's editor, which saves it when its user does: on the guest's side it is the
        // buffer that must match.
        let (mut ours, mut theirs) = (tree(&host), tree(&guest));
        let host_typed = String::from_utf8(ours.remove("typed.txt").unwrap_or_default()).expect("UTF-8");
        theirs.remove("typed.txt");
        let all_typed = typed.iter().all(|token| host_typed.contains(token.as_str()));
        if ours == theirs && all_typed && pair.b.text(&ub) == host_typed {
            break;
        }
        let differing: Vec<&String> =
            ours.keys().chain(theirs.keys()).filter(|k| ours.get(*k) != theirs.get(*k)).collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "the folders differ in {differing:?} (every token typed on the host's disk: {all_typed})"
        );
    }
    let expected = ["added.txt", "change.txt", "fmt.rs", "lib/a.rs", "lib/b.rs", "renamed.txt", "typed.txt"];
    assert_eq!(tree(&host).keys().collect::<Vec<_>>(), expected);
    assert_eq!(std::fs::read_to_string(guest.join("change.txt")).expect("reads"), "one\n2\nthree\nfour\n");
    assert_eq!(std::fs::read_to_string(guest.join("fmt.rs")).expect("reads"), "fn f() {}\n");
    let paths = codecollab_tests::editor::invite_server_paths(&pair.invite).await.expect("the session's files");
    let mut with_gitignore: Vec<&str> = expected.to_vec();
    with_gitignore.insert(0, ".gitignore");
    assert_eq!(paths, with_gitignore);
}

/// Files a share leaves out (binary, not UTF-8, over 4 MiB) are listed for every joiner, with why, and never
/// written on their disks; one that appears on the host's disk later is told to the peers already in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_left_out_are_listed_for_joiners_with_why() {
    let pair = Pair::start_with(
        |root| {
            std::fs::write(root.join("notes.txt"), "text\n").expect("write");
            std::fs::write(root.join("image.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").expect("write");
            std::fs::write(root.join("latin1.txt"), b"caf\xe9\n").expect("write");
            std::fs::write(root.join("big.log"), "x".repeat(5 << 20)).expect("write");
        },
        (Encoding::Utf8, Encoding::Utf8),
    )
    .await;
    let Pair { mut b, joined, host, guest, .. } = pair;
    assert_eq!(joined["files"], json!(["notes.txt"]));
    assert_eq!(
        joined["unshared"],
        json!([
            {"path": "big.log", "reason": format!("larger than 4 MiB ({} bytes)", 5 << 20)},
            {"path": "image.png", "reason": "binary"},
            {"path": "latin1.txt", "reason": "not UTF-8 text"},
        ])
    );
    for path in ["big.log", "image.png", "latin1.txt"] {
        assert!(!guest.path().join(path).exists(), "{path} is not written on the joiner's disk");
    }
    // A binary file the host's disk gains during the session is told to the peer already in.
    std::fs::write(host.path().join("logo.ico"), b"\0\0\x01\0").expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !b.messages.iter().any(|m| m.contains("logo.ico")) {
        assert!(tokio::time::Instant::now() < deadline, "never told of logo.ico: {:?}", b.messages);
        b.drain(Duration::from_millis(50)).await.expect("the daemon runs");
    }
    let told = b.messages.iter().find(|m| m.contains("logo.ico")).cloned();
    assert!(told.as_deref().is_some_and(|m| m.contains("logo.ico (binary)")), "{:?}", b.messages);
}

/// Files created, renamed and deleted in the editor while the server is down reach the others once it is back,
/// with what was typed into the renamed file meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_operations_made_offline_reach_the_others_on_reconnect() {
    let data = TempDir::new("files-offline");
    let mut server = codecollab_tests::harness::ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host, guest) = (TempDir::new("host"), TempDir::new("guest"));
    std::fs::write(host.path().join("a.txt"), "alpha\n").expect("write");
    std::fs::write(host.path().join("gone.txt"), "to delete\n").expect("write");
    let (mut a, mut b, invite, _) = codecollab_tests::fixtures::scripted::pair(
        &server.url(),
        host.path(),
        guest.path(),
        (Encoding::Utf8, Encoding::Utf8),
    )
    .await;
    let read = |path: &str| std::fs::read_to_string(guest.path().join(path)).ok();
    let ua = uri(&host.path().join("a.txt"));
    a.open(&ua, "alpha\n").await.expect("open");

    server.kill();
    a.wait_state("reconnecting", Duration::from_secs(20)).await.expect("a sees the drop");
    let at = |p: &str| uri(&host.path().join(p));
    // Renamed (as an editor does it), typed into under its new name, a file created, one deleted.
    let rename = json!({"files": [{"oldUri": at("a.txt"), "newUri": at("b.txt")}]});
    a.request("workspace/willRenameFiles", rename.clone()).await.expect("will rename");
    std::fs::rename(host.path().join("a.txt"), host.path().join("b.txt")).expect("mv");
    a.notify("workspace/didRenameFiles", rename).await.expect("did rename");
    a.notify("collab/close", json!({"uri": ua})).await.expect("close");
    let ub_host = at("b.txt");
    a.open(&ub_host, "alpha\n").await.expect("reopen");
    a.type_at(&ub_host, 0, 0, "offline ").await.expect("type");
    std::fs::write(host.path().join("new.txt"), "made offline\n").expect("write");
    a.notify("workspace/didCreateFiles", json!({"files": [{"uri": at("new.txt")}]})).await.expect("create");
    // Written again once its creation is queued (and its watch's batch has come and gone): that goes too.
    a.drain(Duration::from_millis(500)).await.expect("a's daemon runs");
    std::fs::write(host.path().join("new.txt"), "made offline\nand more\n").expect("write again");
    a.drain(Duration::from_millis(500)).await.expect("a's daemon runs");
    std::fs::remove_file(host.path().join("gone.txt")).expect("rm");
    a.notify("workspace/didDeleteFiles", json!({"files": [{"uri": at("gone.txt")}]})).await.expect("delete");

    let _server =
        codecollab_tests::harness::ServerProcess::spawn(&server.addr.to_string(), data.path(), &[]).expect("restart");
    a.wait_state("connected", Duration::from_secs(30)).await.expect("a reconnects");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        a.drain(Duration::from_millis(50)).await.expect("a");
        b.drain(Duration::from_millis(50)).await.expect("b");
        let done = read("b.txt").as_deref() == Some("offline alpha\n")
            && read("new.txt").as_deref() == Some("made offline\nand more\n")
            && read("a.txt").is_none()
            && read("gone.txt").is_none();
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's folder: {:?}",
            files_under(guest.path()).iter().map(|p| (p.clone(), read(p))).collect::<Vec<_>>()
        );
    }
    let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("paths");
    assert_eq!(paths, ["b.txt", "new.txt"]);
}

/// A peer cut off while others rename and delete files learns of it when it is back: no broadcast reached it, so
/// the session's file list in its welcome is what it catches up from (its disk follows; a deleted file goes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_away_during_renames_and_deletes_catches_up_when_back() {
    let server = TestServer::start(|_| {}).await;
    let (host, guest) = (TempDir::new("host"), TempDir::new("guest"));
    for (path, text) in [("a.txt", "alpha\n"), ("gone.txt", "to delete\n"), ("keep.txt", "kept\n")] {
        std::fs::write(host.path().join(path), text).expect("write");
    }
    let mut a = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("a");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    let proxy = codecollab_tests::proxy::FaultProxy::start(server.addr, 7).await.expect("proxy");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    join(&mut b, &codecollab_tests::fixtures::through(&invite, &proxy), guest.path(), "bob").await;
    let read = |path: &str| std::fs::read_to_string(guest.path().join(path)).ok();

    proxy.cut();
    b.wait_state("reconnecting", Duration::from_secs(20)).await.expect("b is cut off");
    let at = |p: &str| uri(&host.path().join(p));
    let rename = json!({"files": [{"oldUri": at("a.txt"), "newUri": at("renamed.txt")}]});
    a.request("workspace/willRenameFiles", rename.clone()).await.expect("will rename");
    std::fs::rename(host.path().join("a.txt"), host.path().join("renamed.txt")).expect("mv");
    a.notify("workspace/didRenameFiles", rename).await.expect("did rename");
    std::fs::remove_file(host.path().join("gone.txt")).expect("rm");
    a.notify("workspace/didDeleteFiles", json!({"files": [{"uri": at("gone.txt")}]})).await.expect("delete");
    let paths = loop {
        let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("paths");
        if paths == ["keep.txt", "renamed.txt"] {
            break paths;
        }
        a.drain(Duration::from_millis(50)).await.expect("a");
    };
    assert_eq!(paths, ["keep.txt", "renamed.txt"]);

    proxy.set(codecollab_tests::proxy::Mode::Pass);
    b.wait_state("connected", Duration::from_secs(30)).await.expect("b is back");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(read("renamed.txt").as_deref() == Some("alpha\n") && read("a.txt").is_none() && read("gone.txt").is_none())
    {
        assert!(tokio::time::Instant::now() < deadline, "b's folder: {:?}", files_under(guest.path()));
        b.drain(Duration::from_millis(50)).await.expect("b");
    }
    assert_eq!(read("keep.txt").as_deref(), Some("kept\n"));
    // And the editor was told, so open buffers follow.
    let told: Vec<Value> = b.files.clone();
    let g = |p: &str| json!(uri(&guest.path().join(p)));
    assert!(
        told.iter().any(|f| f["renamed"] == json!([{"oldUri": g("a.txt"), "newUri": g("renamed.txt")}])),
        "{told:?}"
    );
    assert!(told.iter().any(|f| f["deleted"] == json!([g("gone.txt")])), "{told:?}");
}

/// A joiner whose budget of text in memory is far below the session's: most files go cold (their text only in the
/// daemon's private cache), and everything still happens to them. The join shows its progress and writes every file
/// exactly; the host's
/// edits to cold files reach the joiner's disk; a change made on the joiner's disk to a cold file is merged and
/// shared; a cold file opened in the joiner's editor shows the session's text; no typed token is lost. When the
/// joiner leaves, its cache folder is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_over_its_memory_budget_keeps_files_cold_and_loses_nothing() {
    const FILES: usize = 60;
    let server = TestServer::start(|_| {}).await;
    let (host, guest, temp) = (TempDir::new("host"), TempDir::new("guest"), TempDir::new("cold-cache"));
    let path_of = |i: usize| format!("d{}/f{i}.txt", i % 4);
    for i in 0..FILES {
        std::fs::create_dir_all(host.path().join(format!("d{}", i % 4))).expect("mkdir");
        let text: String = (0..4_000).map(|j| char::from(b'a' + ((i + j) % 26) as u8)).chain(['\n']).collect();
        std::fs::write(host.path().join(path_of(i)), text).expect("write");
    }
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let budget = [("CODECOLLAB_HOT_TEXT_BYTES", "16384"), ("TMPDIR", temp.path().to_str().expect("utf-8"))];
    let mut b = ScriptedEditor::start(Encoding::Utf8, &budget).await.expect("b");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;
    join(&mut b, &invite, guest.path(), "bob").await;
    // Progress goes out once the editor has answered its create request: wait for the end of it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !b.progress.iter().any(|p| p["kind"] == "end") {
        assert!(tokio::time::Instant::now() < deadline, "no end of the join's progress: {:?}", b.progress);
        b.drain(Duration::from_millis(20)).await.expect("b runs");
    }
    let reports = b.progress.iter().filter(|p| p["kind"] == "report").count();
    assert!(reports >= 2, "the join shows its progress as files arrive: {:?}", b.progress);
    for i in 0..FILES {
        let (theirs, ours) = (host.path().join(path_of(i)), guest.path().join(path_of(i)));
        assert_eq!(std::fs::read(theirs).expect("host"), std::fs::read(ours).expect("guest"), "{}", path_of(i));
    }
    let cache = std::fs::read_dir(temp.path()).expect("lists").flatten().next().expect("a cache folder").path();
    let cold = std::fs::read_dir(&cache).expect("lists").count();
    assert!(cold >= FILES / 2, "{cold} of {FILES} files cold with a 16 KB budget");

    // The host types into files that are cold at the joiner; the joiner's disk gets every token.
    let mut tokens: Vec<(usize, String)> = Vec::new();
    for i in (0..FILES).step_by(7) {
        let file = uri(&host.path().join(path_of(i)));
        let text = std::fs::read_to_string(host.path().join(path_of(i))).expect("reads");
        a.open(&file, &text).await.expect("open");
        let token = format!("<ada-{i}>");
        a.type_at(&file, 0, 0, &token).await.expect("type");
        tokens.push((i, token));
    }
    // And the joiner's disk changes under files that are cold there: each change is merged and shared.
    for i in (3..FILES).step_by(11) {
        let file = guest.path().join(path_of(i));
        let mut text = std::fs::read_to_string(&file).expect("reads");
        let token = format!("<bob-disk-{i}>");
        text.push_str(&token);
        std::fs::write(&file, text).expect("write");
        tokens.push((i, token));
    }
    for (i, token) in &tokens {
        let path = path_of(*i);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            a.drain(Duration::from_millis(20)).await.expect("a runs");
            b.drain(Duration::from_millis(20)).await.expect("b runs");
            let on_server = server_text(&invite, &path).await;
            let on_disk = std::fs::read_to_string(guest.path().join(&path)).unwrap_or_default();
            if on_server.contains(token.as_str()) && on_disk.contains(token.as_str()) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{token} in {path}: server {on_server:?}");
        }
    }
    // The cache's files go (a temporary-folder cleaner): a cold file the host then edits is fetched anew, and
    // the joiner's copy is the session's, each token once, nothing doubled.
    let cold_ids: Vec<u64> = std::fs::read_dir(&cache)
        .expect("lists")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    assert!(!cold_ids.is_empty(), "some files are cold");
    for entry in std::fs::read_dir(&cache).expect("lists").flatten() {
        std::fs::remove_file(entry.path()).expect("rm");
    }
    let file = uri(&host.path().join(path_of(1)));
    a.open(&file, &std::fs::read_to_string(host.path().join(path_of(1))).expect("reads")).await.expect("open");
    a.type_at(&file, 0, 0, "<ada-after-cache-loss>").await.expect("type");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        a.drain(Duration::from_millis(20)).await.expect("a runs");
        b.drain(Duration::from_millis(20)).await.expect("b runs");
        let on_server = server_text(&invite, &path_of(1)).await;
        let on_disk = std::fs::read_to_string(guest.path().join(path_of(1))).unwrap_or_default();
        if on_disk == on_server && on_server.matches("<ada-after-cache-loss>").count() == 1 {
            assert_eq!(on_server.len(), 4_001 + "<ada-after-cache-loss>".len(), "nothing doubled or lost");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the joiner's {}: {on_disk:?}", path_of(1));
    }

    // A file whose cold text went with the cache, opened in the joiner's editor: the daemon fetches it again and
    // brings the buffer to the session's text.
    let docs = codecollab_tests::editor::invite_server_docs(&invite).await.expect("docs");
    let path = docs
        .iter()
        .find(|d| cold_ids.contains(&d.doc) && d.path != path_of(1))
        .map(|d| d.path.clone())
        .expect("a cold file the host has not edited since");
    let file = uri(&guest.path().join(&path));
    b.open(&file, "stale text the editor read\n").await.expect("open");
    let expected = server_text(&invite, &path).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while b.text(&file) != expected {
        b.drain(Duration::from_millis(20)).await.expect("b runs");
        assert!(tokio::time::Instant::now() < deadline, "{:?} vs {expected:?}", b.text(&file));
    }
    let i: usize = path.split(['f', '.']).nth(1).and_then(|n| n.parse().ok()).expect("f<i>.txt");
    for (_, token) in tokens.iter().filter(|(t, _)| *t == i) {
        assert!(b.text(&file).contains(token.as_str()), "{token} in {path}");
    }
    b.request("collab/leave", json!({})).await.expect("leaves");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cache.exists() {
        assert!(tokio::time::Instant::now() < deadline, "the cache folder outlived the session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A rename chain (a.txt → b.txt → c.txt, sent one after the other without waiting) races the other peer's typing
/// into the file it still knows as a.txt: every token lands in c.txt, and neither old name is left anywhere. Then a
/// delete races that peer's typing into another file: the delete wins everywhere, and nothing brings the file back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_chain_and_a_delete_racing_a_peers_typing() {
    let files = [("a.txt", "alpha\n"), ("x.txt", "xray\n")];
    let mut pair = Pair::start(&files, (Encoding::Utf8, Encoding::Utf16)).await;
    let (host, guest) = (pair.host.path().to_owned(), pair.guest.path().to_owned());
    let (_, ub) = pair.uris("a.txt");
    pair.b.open(&ub, "alpha\n").await.expect("b opens a.txt");
    let rename =
        |from: &str, to: &str| json!({"files": [{"oldUri": uri(&host.join(from)), "newUri": uri(&host.join(to))}]});
    let mut typed = Vec::new();
    for (i, (from, to)) in [("a.txt", "b.txt"), ("b.txt", "c.txt")].into_iter().enumerate() {
        let token = format!("<b{i}>");
        pair.b.type_at(&ub, 0, 0, &token).await.expect("b types into what it knows as a.txt");
        typed.push(token);
        pair.a.request("workspace/willRenameFiles", rename(from, to)).await.expect("will rename");
        std::fs::rename(host.join(from), host.join(to)).expect("rename on disk");
        pair.a.notify("workspace/didRenameFiles", rename(from, to)).await.expect("did rename");
    }
    pair.b.type_at(&ub, 0, 0, "<b2>").await.expect("b types after both renames were sent");
    typed.push("<b2>".into());
    let invite = pair.invite.clone();
    let text = until_server(&invite, "c.txt", |t| typed.iter().all(|token| t.contains(token.as_str()))).await;
    assert!(text.ends_with("alpha\n"), "{text:?}");
    wait(&mut pair.b, "b's disk to hold c.txt only", |_| {
        guest.join("c.txt").exists() && !guest.join("a.txt").exists() && !guest.join("b.txt").exists()
    })
    .await;
    let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("the session's files");
    assert_eq!(paths, ["c.txt", "x.txt"]);

    // b types into x.txt while a deletes it: the delete wins; b's buffer keeps its text (it is told), and nothing
    // re-creates the file for anyone.
    let (_, ux) = pair.uris("x.txt");
    pair.b.open(&ux, "xray\n").await.expect("b opens x.txt");
    pair.b.type_at(&ux, 0, 0, "<late>").await.expect("b types");
    std::fs::remove_file(host.join("x.txt")).expect("rm");
    pair.a
        .notify("workspace/didDeleteFiles", json!({"files": [{"uri": uri(&host.join("x.txt"))}]}))
        .await
        .expect("delete");
    pair.b.type_at(&ux, 0, 0, "<later>").await.expect("b types again");
    wait(&mut pair.b, "the delete to reach b", |b| {
        !guest.join("x.txt").exists() && b.files.iter().any(|f| f["deleted"].as_array().is_some_and(|d| !d.is_empty()))
    })
    .await;
    pair.b.drain(Duration::from_millis(500)).await.expect("the daemon runs");
    let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("the session's files");
    assert_eq!(paths, ["c.txt"], "the delete won");
    assert!(!host.join("x.txt").exists() && !guest.join("x.txt").exists(), "on no disk either");
    assert!(pair.b.text(&ux).contains("<later>"), "b's buffer keeps what it typed");
}

/// An editor slow to move a file it announced a rename of (`willRenameFiles`, then the move, then
/// `didRenameFiles`), while the other peer types into it: the host's daemon does not write the file at its new name
/// before the editor moves the old one there (the move would put the older text over it, and the watch would take
/// that as the host deleting the peer's typing). Every token the peer typed ends in the file, on the server, on the
/// host's disk and in the peer's buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_slow_to_move_a_renamed_file_loses_none_of_a_peers_typing() {
    let mut pair = Pair::start(&[("a.txt", "alpha\n")], (Encoding::Utf8, Encoding::Utf8)).await;
    let (host, guest) = (pair.host.path().to_owned(), pair.guest.path().to_owned());
    let (_, ub) = pair.uris("a.txt");
    pair.b.open(&ub, "alpha\n").await.expect("b opens a.txt");
    let rename = json!({"files": [{"oldUri": uri(&host.join("a.txt")), "newUri": uri(&host.join("b.txt"))}]});
    pair.a.request("workspace/willRenameFiles", rename.clone()).await.expect("will rename");
    pair.b.type_at(&ub, 0, 0, "<during>").await.expect("b types while the host's editor moves the file");
    let invite = pair.invite.clone();
    until_server(&invite, "b.txt", |t| t.contains("<during>")).await;
    // The host's daemon has the typing and several disk writes' time before the editor moves the file.
    pair.a.drain(Duration::from_millis(800)).await.expect("a's daemon runs");
    std::fs::rename(host.join("a.txt"), host.join("b.txt")).expect("the editor moves the file");
    pair.a.notify("workspace/didRenameFiles", rename).await.expect("did rename");
    pair.b.type_at(&ub, 0, 0, "<after>").await.expect("b types after the move");
    let tokens = ["<during>", "<after>"];
    let all = |t: &str| tokens.iter().all(|token| t.contains(token)) && t.ends_with("alpha\n");
    let read = |root: &std::path::Path| std::fs::read_to_string(root.join("b.txt")).unwrap_or_default();
    wait(&mut pair.a, "the host's disk to hold every token", |_| all(&read(&host))).await;
    wait(&mut pair.b, "the guest's buffer to hold every token", |b| all(&b.text(&ub))).await;
    wait(&mut pair.b, "the guest's disk to follow the rename", |_| guest.join("b.txt").exists()).await;
    // Whatever the watch saw of the move has been taken in by now (its batches are 200 ms): nothing was taken back.
    pair.a.drain(Duration::from_millis(600)).await.expect("a's daemon runs");
    let text = until_server(&invite, "b.txt", |_| true).await;
    assert!(all(&text), "{text:?}");
    assert!(all(&read(&host)) && !host.join("a.txt").exists(), "{:?}", read(&host));
    let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("the session's files");
    assert_eq!(paths, ["b.txt"]);
}

/// A file deleted on the host's disk while the other peer keeps typing into it, the editor's `didDeleteFiles`
/// coming late: the host's daemon never writes it back (its next write of the peer's typing would bring the file
/// back, and the watch would then create it again for everyone). The delete wins on the server and on both disks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_on_disk_while_a_peer_types_into_it_is_not_written_back() {
    let mut pair = Pair::start(&[("x.txt", "xray\n")], (Encoding::Utf8, Encoding::Utf8)).await;
    let (host, guest) = (pair.host.path().to_owned(), pair.guest.path().to_owned());
    let (_, ux) = pair.uris("x.txt");
    pair.b.open(&ux, "xray\n").await.expect("b opens x.txt");
    std::fs::remove_file(host.join("x.txt")).expect("rm");
    for i in 0..15 {
        pair.b.type_at(&ux, 0, 0, &format!("<t{i}>")).await.expect("b types");
        pair.b.drain(Duration::from_millis(40)).await.expect("b's daemon runs");
    }
    pair.a
        .notify("workspace/didDeleteFiles", json!({"files": [{"uri": uri(&host.join("x.txt"))}]}))
        .await
        .expect("delete");
    let invite = pair.invite.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("the session's files");
        if paths.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the delete never reached the server: {paths:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait(&mut pair.b, "the delete to reach b", |_| !guest.join("x.txt").exists()).await;
    // The host's writes and its watch's batches (200 ms each) have all had their turn: nothing came back.
    pair.a.drain(Duration::from_millis(1000)).await.expect("a's daemon runs");
    let paths = codecollab_tests::editor::invite_server_paths(&invite).await.expect("the session's files");
    assert!(paths.is_empty(), "the delete won: {paths:?}");
    assert!(!host.join("x.txt").exists() && !guest.join("x.txt").exists(), "on no disk either");
    assert!(pair.b.text(&ux).contains("<t14>"), "b's buffer keeps what it typed");
}

/// A file that appears on disk empty (shared from the watch with that text), is then written with content, and is
/// opened by the editor before the watch's next batch (Neovim's `:w` of a buffer, a partial write read mid-way):
/// the editor's text is newer than what the session was created with, and it is what the session keeps. The
/// session's text used to win the open, clearing the editor's buffer and losing what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_opening_a_file_just_shared_from_disk_with_newer_text_keeps_it() {
    let mut pair = Pair::start(&[("x.txt", "xray\n")], (Encoding::Utf8, Encoding::Utf8)).await;
    let host = pair.host.path().to_owned();
    std::fs::write(host.join("new.txt"), "").expect("an empty file");
    let invite = pair.invite.clone();
    until_server(&invite, "new.txt", |t| t.is_empty()).await;
    // Let the host's daemon hear its creation answered, then write and open within one batch of its watch.
    pair.a.drain(Duration::from_millis(300)).await.expect("a's daemon runs");
    let text = "written by the editor <t1>\n";
    std::fs::write(host.join("new.txt"), text).expect("the editor writes");
    let new = uri(&host.join("new.txt"));
    pair.a.open(&new, text).await.expect("a opens new.txt");
    let server = until_server(&invite, "new.txt", |t| t.contains("<t1>")).await;
    assert_eq!(server, text);
    wait(&mut pair.a, "a's buffer to agree", |a| a.text(&new) == text).await;
    pair.a.drain(Duration::from_millis(500)).await.expect("a's daemon runs");
    assert_eq!(pair.a.text(&new), text, "the editor's buffer keeps its text");
    assert_eq!(until_server(&invite, "new.txt", |_| true).await, text, "nothing doubled");
}
