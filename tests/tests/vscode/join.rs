//! Shared from Neovim, joined from VS Code's palette (which names the files left out, and why); VS Code follows a
//! peer into another file.

use std::time::Duration;

use codecollab_tests::fixtures::vscode::{converge, serial, Setup};
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

#[test]
fn shared_from_neovim_joined_from_the_vscode_palette() {
    let _serial = serial();
    let Setup { data: _data, server, host_dir, guest_dir } = Setup::start();
    std::fs::create_dir(host_dir.path().join("src")).expect("mkdir");
    std::fs::write(host_dir.path().join("src/lib.rs"), "fn main() {}\n").expect("write");
    std::fs::write(host_dir.path().join("logo.png"), b"\x89PNG\r\n\x1a\n\0\0").expect("write");

    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    nvim.command("edit doc.txt").expect("edit");

    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    let joined = vscode.join_from_palette(&invite).expect("join");
    assert!(joined.contains("joined, 2 files"), "{joined}");
    assert!(joined.contains("1 file is not in the session") && joined.contains("logo.png (binary)"), "{joined}");
    assert!(!guest_dir.path().join("logo.png").exists());
    assert_eq!(std::fs::read_to_string(guest_dir.path().join("src/lib.rs")).expect("joined file"), "fn main() {}\n");

    vscode.open("doc.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "from VS Code: 😀\n" })).expect("type");
    nvim.input("GAfrom Neovim<Esc>").expect("input");
    nvim.settle_input().expect("settled");
    let text = converge(&mut vscode, &mut nvim, &invite, "doc.txt");
    assert!(text.starts_with("from VS Code: 😀\nalpha beta\n"), "{text:?}");
    assert!(text.contains("from Neovim"), "{text:?}");

    // Following Nils: when he goes to another file, VS Code opens it.
    vscode.palette("CodeCollab: Follow Peer").expect("follow command");
    vscode.call("input", json!({ "text": "nils", "title": "Follow Peer" })).expect("pick nils");
    nvim.command("edit src/lib.rs").expect("edit");
    nvim.input("w").expect("move");
    vscode
        .wait_for("VS Code to follow Nils into lib.rs", Duration::from_secs(20), |v| {
            Ok(v.active_tab()?.starts_with("lib.rs"))
        })
        .expect("followed");
    let status = vscode.status().expect("status");
    assert!(status.contains("following"), "status bar: {status:?}");
}
