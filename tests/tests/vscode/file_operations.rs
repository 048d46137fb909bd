//! Files renamed and deleted in VS Code's Explorer reach the session and a Neovim guest's disk, the renamed file
//! while it is open and typed into.

use std::time::Duration;

use codecollab_tests::editor::invite_server_paths;
use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::harness::poll_until;
use serde_json::json;

#[test]
fn a_rename_and_a_delete_in_the_vscode_explorer_reach_a_neovim_guest() {
    let _serial = serial();
    let setup = Setup::start();
    std::fs::write(setup.host_dir.path().join("other.txt"), "to be deleted\n").expect("write");
    let (mut vscode, _nvim, invite) = setup.vscode_shares_neovim_joins();
    let guest_dir = &setup.guest_dir;

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
