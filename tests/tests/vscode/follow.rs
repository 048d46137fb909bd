//! Following in VS Code: Follow Peer keeps the editor with a Neovim peer, into the file they open and to their
//! cursor, until the user moves; the status bar says whom and counts the others; a name nobody has is an error.

use std::time::Duration;

use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

/// Waits until VS Code's active tab is `file` with its caret at (line, column), 1-based.
fn until_at(vscode: &mut VsCode, file: &str, at: (u64, u64)) {
    let mut last = (String::new(), None);
    let waited = vscode.wait_for(&format!("{file} at {at:?}"), Duration::from_secs(30), |v| {
        last = (v.active_tab()?, v.caret()?);
        Ok(last.0.starts_with(file) && last.1 == Some(at))
    });
    if let Err(error) = waited {
        panic!("{error}\nlast: {last:?}");
    }
}

#[test]
fn vscode_follows_a_neovim_peer_into_the_file_they_open_until_the_user_moves() {
    let _serial = serial();
    let Setup { data: _data, server, host_dir, guest_dir } = Setup::start();
    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    nvim.command("edit doc.txt").expect("edit");
    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.join_from_palette(&invite).expect("join");
    vscode.open("doc.txt").expect("open");
    vscode
        .wait_for("the count", Duration::from_secs(20), |v| Ok(v.status()?.contains("· 1 other")))
        .expect("one other, counted as Neovim counts");

    nvim.input("3G5|").expect("move"); // line 3, column 5
    vscode.palette("CodeCollab: Follow Peer").expect("follow");
    vscode.pick("Follow Peer", "nils").expect("pick nils");
    until_at(&mut vscode, "doc.txt", (3, 5));
    assert!(vscode.status().expect("status").contains("following nils"), "{}", vscode.status().unwrap_or_default());

    nvim.input("2G7|").expect("move");
    until_at(&mut vscode, "doc.txt", (2, 7));
    // Nils opens a new file and types: VS Code goes with him, to his caret, and is still following.
    nvim.command("edit other.txt").expect("edit");
    nvim.input("ihello from nils<Esc>").expect("type");
    nvim.settle_input().expect("settled");
    until_at(&mut vscode, "other.txt", (1, 15));
    assert!(vscode.status().expect("status").contains("following nils"));

    // The user clicks into the editor: the follow ends.
    vscode.call("focus", json!({ "keys": ["End"] })).expect("click");
    vscode
        .wait_for("the follow to end", Duration::from_secs(20), |v| Ok(!v.status()?.contains("following")))
        .expect("stopped");
    // Nils moves on; VS Code stays where the user is (nothing to wait for: a second is what a follow took above).
    let mine = vscode.caret().expect("caret");
    nvim.input("0").expect("move");
    nvim.settle_input().expect("settled");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(vscode.caret().expect("caret"), mine, "not followed any more");
    assert_ne!(mine, Some((1, 1)));
}
