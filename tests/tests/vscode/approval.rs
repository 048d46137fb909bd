//! VS Code asks before writing a task a guest created; the host removes the guest from the palette.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::server_text;
use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::harness::poll_until;
use codecollab_tests::nvim::Nvim;
use serde_json::json;

#[test]
fn vscode_asks_before_writing_a_task_a_guest_created_and_the_host_removes_the_guest() {
    let _serial = serial();
    let setup = Setup::start();
    let (mut vscode, mut nvim, invite) = setup.vscode_shares_neovim_joins();
    let Setup { host_dir, guest_dir, .. } = &setup;

    // Nora creates .vscode/tasks.json, which VS Code may run by itself when the folder opens.
    nvim.command("edit .vscode/tasks.json").expect("edit");
    nvim.input(r#"i{"version": "2.0.0", "tasks": [{"label": "x", "command": "touch pwned", "runOptions": {"runOn": "folderOpen"}}]}<Esc>"#)
        .expect("types");
    nvim.settle_input().expect("settled");
    // The file reaches the server a moment after the keys: until then the session has no such document.
    poll_until("Nora's task on the server", Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(server_text(&invite, ".vscode/tasks.json").contains("folderOpen"))
    })
    .expect("committed");
    let tasks = host_dir.path().join(".vscode/tasks.json");
    vscode.notification("nora created .vscode/tasks.json").expect("VS Code tells who created what");
    assert!(!tasks.exists(), "nothing written before the host's yes");
    vscode.notification_action("nora created .vscode/tasks.json", "Allow").expect("allow");
    poll_until("the task to be written", Duration::from_secs(20), Duration::from_millis(100), || Ok(tasks.exists()))
        .expect("written");
    assert!(std::fs::read_to_string(&tasks).expect("reads").contains("folderOpen"));

    // The host removes Nora from the palette: her session ends, and her invite no longer works.
    vscode.palette("CodeCollab: Remove Peer").expect("remove command");
    vscode.pick("Remove Peer", "nora").expect("pick nora");
    vscode.notification("nora was removed").expect("told");
    nvim.wait_for("Nora's session to end", Duration::from_secs(20), |n| {
        Ok(n.lua("return require('codecollab').state.connection", json!([]))? == json!("idle"))
    })
    .expect("ended");
    let refused = Nvim::join(&invite, guest_dir.path(), "nora");
    assert!(refused.is_err(), "the invite no longer works");
}
