//! Joining from VS Code into a folder with the user's own work in it: the join asks before it moves the differing
//! file aside, and says where it went.

use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;

#[test]
fn vscode_asks_before_a_join_moves_a_differing_file_aside() {
    let _serial = serial();
    let Setup { data: _data, server, host_dir, guest_dir } = Setup::start();
    let precious = "guest's own precious work\n";
    std::fs::write(guest_dir.path().join("doc.txt"), precious).expect("write");
    let (_nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");

    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.palette("CodeCollab: Join Session").expect("join command");
    vscode.call("input", serde_json::json!({ "text": invite, "title": "Join Session" })).expect("invite");
    let asked = vscode.notification("would be overwritten").expect("asked");
    assert!(asked.contains("doc.txt") && asked.contains("Nothing was written"), "{asked}");
    assert_eq!(std::fs::read_to_string(guest_dir.path().join("doc.txt")).expect("reads"), precious, "not yet");

    vscode.notification_action("would be overwritten", "Move Mine Aside and Join").expect("agrees");
    vscode.notification("joined, 1 files").expect("joined");
    let moved = vscode.notification("moved to").expect("says where");
    let folder = moved.split("moved to ").nth(1).and_then(|rest| rest.split(": ").next()).expect("a folder").to_owned();
    let folder = std::path::Path::new(&folder);
    assert_eq!(std::fs::read_to_string(folder.join("doc.txt")).expect("the backup"), precious);
    assert_eq!(
        std::fs::read_to_string(guest_dir.path().join("doc.txt")).expect("reads"),
        codecollab_tests::fixtures::vscode::DOC
    );
    std::fs::remove_dir_all(folder).ok();
}
