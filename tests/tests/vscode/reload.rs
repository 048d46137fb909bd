//! A file VS Code has open, rewritten on disk by a formatter: VS Code reloads it, and its change events carry the
//! rewrite to the session once (the daemon does not read the file again), while a Neovim peer types elsewhere.

use std::time::Duration;

use codecollab_tests::editor::server_text_of_invite;
use codecollab_tests::fixtures::vscode::{serial, Setup, DOC};
use codecollab_tests::harness::poll_until;

#[test]
fn a_formatter_rewriting_a_file_open_in_vscode_reaches_the_session_once() {
    let _serial = serial();
    let setup = Setup::start();
    let (mut vscode, mut nvim, invite) = setup.vscode_shares_neovim_joins();
    vscode.open("doc.txt").expect("open");
    vscode.wait_for("the text", Duration::from_secs(20), |v| Ok(v.visible_text()? == DOC)).expect("shown");
    let formatted = "alpha beta\ngamma  delta (formatted)\nxxx yyy xxx\nand a line the formatter added\n";
    std::fs::write(setup.host_dir.path().join("doc.txt"), formatted).expect("the formatter rewrites it");
    let mut last = String::new();
    poll_until("the session to have the rewrite", Duration::from_secs(30), Duration::from_millis(100), || {
        last = server_text_of_invite(&invite, "doc.txt").unwrap_or_default();
        Ok(last == formatted)
    })
    .unwrap_or_else(|e| panic!("{e}: {last:?}"));
    nvim.command("edit doc.txt").expect("edit");
    nvim.wait_for("Neovim's buffer", Duration::from_secs(20), |n| Ok(n.text()? == formatted)).expect("once, not twice");
    // Still the same a moment later: nothing else (a second copy from the disk) arrives.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server_text_of_invite(&invite, "doc.txt").expect("text"), formatted);
}
