//! Files renamed and deleted in VS Code's Explorer reach the session and a Neovim guest's disk, the renamed file
//! while it is open and typed into.

use std::time::Duration;

use codecollab_tests::editor::invite_server_paths;
use codecollab_tests::fixtures::vscode::{invite_in, serial, Setup};
use codecollab_tests::harness::poll_until;
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

#[test]
fn a_rename_and_a_delete_in_the_vscode_explorer_reach_a_neovim_guest() {
    let _serial = serial();
    let Setup { data: _data, server, host_dir, guest_dir } = Setup::start();
    std::fs::write(host_dir.path().join("other.txt"), "to be deleted\n").expect("write");
    let mut vscode = VsCode::start(host_dir.path(), Some(&server.url()), "vera").expect("VS Code");
    vscode.palette("CodeCollab: Share Folder").expect("share");
    let invite = invite_in(&vscode.notification("Invite").expect("the share's notification"));
    let _nvim = Nvim::join(&invite, guest_dir.path(), "nora").expect("Neovim joins");

    vscode.open("doc.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "before the rename " })).expect("type");
    vscode.call("renameInExplorer", json!({ "name": "doc.txt", "to": "renamed.txt" })).expect("rename in the Explorer");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "after the rename " })).expect("type");
    vscode.call("deleteInExplorer", json!({ "name": "other.txt" })).expect("delete in the Explorer");

    let guest = guest_dir.path().to_owned();
    poll_until("the guest's disk to follow", Duration::from_secs(30), Duration::from_millis(200), || {
        let renamed = std::fs::read_to_string(guest.join("renamed.txt")).unwrap_or_default();
        Ok(renamed.contains("after the rename")
            && renamed.contains("before the rename")
            && !guest.join("doc.txt").exists()
            && !guest.join("other.txt").exists())
    })
    .expect("renamed and deleted on the guest's disk");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let paths = runtime.block_on(invite_server_paths(&invite)).expect("the session's files");
    assert_eq!(paths, ["renamed.txt"]);
}
