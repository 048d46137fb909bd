//! Leaving VS Code's session with edits the server does not have (typed while it was down): the user is told which
//! files hold them, and "Wait and Leave" leaves once the restarted server has them.

use std::time::Duration;

use codecollab_tests::editor::server_text_of_invite;
use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::harness::ServerProcess;
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

#[test]
fn leaving_vscode_with_unsent_edits_waits_for_the_server_when_asked() {
    let _serial = serial();
    let Setup { data, mut server, host_dir, guest_dir } = Setup::start();
    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    nvim.command("edit doc.txt").expect("edit");
    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.join_from_palette(&invite).expect("join");
    vscode.open("doc.txt").expect("open");

    server.kill();
    vscode
        .wait_for("reconnecting", Duration::from_secs(20), |v| Ok(v.status()?.contains("reconnecting")))
        .expect("reconnecting shown");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "typed while the server was down\n" })).expect("type");

    vscode.palette("CodeCollab: Leave").expect("leave");
    let asked = vscode.notification_action("have not reached the server", "Wait and Leave").expect("asked");
    assert!(asked.contains("doc.txt"), "names the file: {asked}");
    vscode
        .wait_for("waiting shown", Duration::from_secs(20), |v| Ok(v.status()?.contains("leaving once sent")))
        .expect("the status bar says it waits");

    let _restarted = ServerProcess::spawn(&server.addr.to_string(), data.path(), &[]).expect("restart");
    vscode.notification("every edit reached the server").expect("told it left");
    vscode.wait_for("the session to end", Duration::from_secs(20), |v| Ok(v.status()?.is_empty())).expect("left");
    let text = server_text_of_invite(&invite, "doc.txt").expect("server text");
    assert!(text.starts_with("typed while the server was down\n"), "the server has it: {text:?}");
    // Neovim, still in the session, receives it too.
    nvim.wait_for("Neovim to have it", Duration::from_secs(30), |n| Ok(n.text()? == text)).expect("received");
}
