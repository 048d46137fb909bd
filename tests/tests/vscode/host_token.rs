//! Hosting from VS Code on a server that requires host tokens (even on loopback): Share says which command to run,
//! Set Host Token keeps the token in VS Code's secret storage (never in settings), and Share then works.

use std::process::Command;

use codecollab_tests::fixtures::files_under;
use codecollab_tests::fixtures::vscode::{converge, invite_in, serial, DOC};
use codecollab_tests::harness::{binary, ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

#[test]
fn vscode_hosts_with_a_host_token_kept_in_secret_storage() {
    let _serial = serial();
    let data = TempDir::new("vscode-token-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &["--require-host-token"]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("vscode-token-host"), TempDir::new("vscode-token-guest"));
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    let output = Command::new(binary("codecollab-server", "codecollab-server"))
        .args(["token", "--name", "vera", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("codecollab-server token");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned();

    let mut vscode = VsCode::start(host_dir.path(), Some(&server.url()), "vera").expect("VS Code");
    // Without a token: an error that names the command, with a button for it.
    vscode.palette("CodeCollab: Share Folder").expect("share");
    let error = vscode.notification_action("Set Host Token", "Set Host Token").expect("the error offers the command");
    assert!(error.contains("needs a host token"), "{error}");
    vscode.call("input", json!({ "text": token, "title": "Set Host Token" })).expect("enter the token");
    vscode.notification("host token saved").expect("saved");
    // With it, Share works, and a Neovim joins.
    vscode.palette("CodeCollab: Share Folder").expect("share");
    let invite = invite_in(&vscode.notification("Invite").expect("the share's notification"));
    let mut nvim = Nvim::join(&invite, guest_dir.path(), "nora").expect("Neovim joins");
    vscode.open("doc.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "hosted " })).expect("type");
    nvim.command("edit doc.txt").expect("edit");
    let text = converge(&mut vscode, &mut nvim, &invite, "doc.txt");
    assert!(text.starts_with("hosted alpha"), "{text:?}");
    // The token is in no settings file of the workbench.
    for relative in files_under(vscode.work_path()) {
        if relative.ends_with("settings.json") {
            let settings = std::fs::read_to_string(vscode.work_path().join(&relative)).unwrap_or_default();
            assert!(!settings.contains(&token), "{relative} holds the host token");
        }
    }
}
