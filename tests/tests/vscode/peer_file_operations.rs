//! A peer's rename and delete of a file open in VS Code: the tab moves to the new name and typing goes on there (a
//! tab behind the active one too, which stays in front); a deleted file's editor keeps its text, the user is told,
//! and saving it creates the file again for everyone.

use std::time::Duration;

use codecollab_tests::editor::{invite_delete, invite_rename};
use codecollab_tests::fixtures::until_server_text;
use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

#[test]
fn vscode_follows_a_peers_rename_and_keeps_a_deleted_files_text() {
    let _serial = serial();
    let Setup { data: _data, server, host_dir, guest_dir } = Setup::start();
    std::fs::write(host_dir.path().join("other.txt"), "other text\n").expect("write");
    std::fs::write(host_dir.path().join("side.txt"), "side text\n").expect("write");
    let (_nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.join_from_palette(&invite).expect("join");
    // A file with unsaved typing, then another in front of it.
    vscode.open("side.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "vic-side " })).expect("type");
    until_server_text(&invite, "side.txt", |t| t == "vic-side side text\n");
    vscode.open("doc.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "vic: " })).expect("type");
    until_server_text(&invite, "doc.txt", |t| t.starts_with("vic: alpha"));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // Someone renames the file behind it: that tab moves, with its unsaved text, and stays behind.
    runtime.block_on(invite_rename(&invite, "side.txt", "aside.txt")).expect("rename");
    vscode
        .wait_for("the tab behind to follow, and the one in front to stay", Duration::from_secs(30), |v| {
            let tabs = v.tabs()?;
            let moved =
                tabs.iter().any(|t| t.starts_with("aside.txt")) && !tabs.iter().any(|t| t.starts_with("side.txt"));
            Ok(moved && v.active_tab()?.starts_with("doc.txt"))
        })
        .expect("the tab behind moved");
    assert_eq!(until_server_text(&invite, "aside.txt", |t| !t.is_empty()), "vic-side side text\n");

    // Someone renames the one in front: the tab moves to the new name, and typing goes on into it.
    runtime.block_on(invite_rename(&invite, "doc.txt", "moved.txt")).expect("rename");
    vscode
        .wait_for("the tab to follow", Duration::from_secs(30), |v| Ok(v.active_tab()?.starts_with("moved.txt")))
        .expect("the tab moved");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "after " })).expect("type");
    until_server_text(&invite, "moved.txt", |t| t.starts_with("after vic: alpha"));
    assert!(!guest_dir.path().join("doc.txt").exists());

    // Someone deletes another file VS Code has open: its file goes, the editor keeps the text, the user is told.
    vscode.open("other.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+End"] })).expect("focus");
    vscode.call("type", json!({ "text": "kept" })).expect("type");
    until_server_text(&invite, "other.txt", |t| t.ends_with("kept"));
    runtime.block_on(invite_delete(&invite, "other.txt")).expect("delete");
    vscode.notification("other.txt was deleted in the session").expect("told");
    assert!(!guest_dir.path().join("other.txt").exists(), "deleted on the guest's disk");
    assert!(vscode.visible_text().expect("text").contains("other text\nkept"), "the editor keeps the text");
    // Saving it creates it again, for everyone, and it is shared from then on.
    vscode.save().expect("save");
    until_server_text(&invite, "other.txt", |t| t == "other text\nkept");
    vscode.call("focus", json!({ "keys": ["Control+End"] })).expect("focus");
    vscode.call("type", json!({ "text": " again" })).expect("type");
    until_server_text(&invite, "other.txt", |t| t == "other text\nkept again");
}
