//! A view-only session makes VS Code's editors read-only while remote edits arrive; leaving makes them writable.

use std::time::Duration;

use codecollab_tests::editor::server_text_of_invite;
use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::harness::poll_until;
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

#[test]
fn a_view_only_session_makes_vscode_read_only_while_remote_edits_arrive() {
    let _serial = serial();
    let Setup { data: _data, server, host_dir, guest_dir } = Setup::start();
    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    let view_invite = nvim.lua("return require('codecollab').state.view_invite", json!([])).expect("view");
    nvim.command("edit doc.txt").expect("edit");

    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.join_from_palette(view_invite.as_str().expect("a string")).expect("join");
    vscode.notification("view-only").expect("told it is view-only");
    vscode.open("doc.txt").expect("open");
    vscode
        .wait_for("the read-only state", Duration::from_secs(20), |v| Ok(v.status()?.contains("readonly")))
        .expect("readonly");

    vscode
        .wait_for("the editor to be read-only", Duration::from_secs(10), |v| {
            Ok(v.call("readOnly", json!({}))?["readOnly"] == true)
        })
        .expect("read-only editor");
    // Typing in VS Code changes nothing anywhere; Neovim's typing still arrives.
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "zzz" })).expect("type");
    nvim.input("GAfrom the host<Esc>").expect("input");
    nvim.settle_input().expect("settled");
    vscode
        .wait_for("the host's edit in VS Code", Duration::from_secs(20), |v| {
            Ok(v.visible_text()?.contains("from the host"))
        })
        .expect("remote edit shown");
    let expected = "alpha beta\ngamma delta\nxxx yyy xxxfrom the host\n";
    assert_eq!(vscode.visible_text().expect("text"), expected, "VS Code shows the host's text, without zzz");
    assert_eq!(nvim.text().expect("text"), expected);
    assert_eq!(server_text_of_invite(&invite, "doc.txt").expect("server"), expected);

    // Show Peers lists the host; Leave ends the session here (the status bar item goes) and not for the host.
    vscode.palette("CodeCollab: Show Peers").expect("show peers");
    let peers = vscode.call("quickPick", json!({ "title": "Peers" })).expect("peers");
    // Each row: the name, then (as detail) the file the peer is in.
    assert_eq!(peers["labels"], json!(["nils", "doc.txt"]), "{peers}");
    vscode.palette("CodeCollab: Leave").expect("leave");
    vscode
        .wait_for("the status bar item to go", Duration::from_secs(20), |v| Ok(v.status()?.is_empty()))
        .expect("left");
    nvim.input("GAstill here<Esc>").expect("input");
    nvim.settle_input().expect("settled");
    // Neovim has the text; its daemon sends it on, and the server commits it, a moment later.
    poll_until("the host's edit to reach the server", Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(server_text_of_invite(&invite, "doc.txt")?.ends_with("still here\n"))
    })
    .expect("the host's edit is committed");
    std::thread::sleep(Duration::from_secs(1)); // ample for an edit to reach a connected peer
    assert!(!vscode.visible_text().expect("text").contains("still here"), "VS Code has left: no more edits arrive");
    // Left, the file is an ordinary writable file again.
    assert_eq!(vscode.call("readOnly", json!({})).expect("read-only?")["readOnly"], false);
    vscode.call("focus", json!({ "keys": ["Control+End"] })).expect("focus");
    vscode.call("type", json!({ "text": "mine" })).expect("type");
    vscode
        .wait_for("typing to work again", Duration::from_secs(10), |v| Ok(v.visible_text()?.contains("mine")))
        .expect("writable after leaving");
}
