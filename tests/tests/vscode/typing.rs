//! Shared from VS Code, joined from Neovim, both typing at once: named cursors, the status bar, a daemon that dies.

use std::time::Duration;

use codecollab_tests::fixtures::vscode::{converge, serial, Setup, DOC};
use serde_json::json;

/// What VS Code types at full speed: several lines, non-ASCII (accents, CJK, an emoji outside the BMP, which is
/// two UTF-16 units) included.
const VSCODE_TEXT: &str = "fast typing from VS Code é 日本 😀 ok\nsecond line, still going\nthird 👩\u{200d}💻 line";

#[test]
fn shared_from_vscode_joined_from_neovim_both_typing_at_once() {
    let _serial = serial();
    let setup = Setup::start();
    let (mut vscode, mut nvim, invite) = setup.vscode_shares_neovim_joins();
    let Setup { guest_dir, .. } = &setup;
    assert_eq!(std::fs::read_to_string(guest_dir.path().join("doc.txt")).expect("joined file"), DOC);
    nvim.command("edit doc.txt").expect("edit");
    vscode.open("doc.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+End"] })).expect("focus");

    // Both type at once: VS Code at the end of the file at full speed, Neovim at the top and in the middle.
    vscode.send("type", json!({ "text": VSCODE_TEXT })).expect("type");
    for round in 0..8 {
        nvim.input(&format!("ggI[nvim {round}] <Esc>")).expect("input");
        nvim.input("jA+<Esc>").expect("input");
        std::thread::sleep(Duration::from_millis(40));
    }
    vscode.recv().expect("VS Code typed");
    nvim.settle_input().expect("Neovim settled");

    let text = converge(&mut vscode, &mut nvim, &invite, "doc.txt");
    assert!(text.contains(VSCODE_TEXT), "VS Code's typing arrived in one piece: {text:?}");
    for round in 0..8 {
        assert!(text.contains(&format!("[nvim {round}] ")), "Neovim's round {round} is there: {text:?}");
    }
    assert_eq!(text.matches('+').count(), 8, "every `+` Neovim appended is there: {text:?}");

    // Neovim's caret shows in VS Code with her name; the status bar counts her.
    nvim.input("gg0").expect("move");
    vscode
        .wait_for("Neovim's named cursor in VS Code", Duration::from_secs(20), |v| {
            Ok(v.cursor_names()?.iter().any(|n| n == "nora"))
        })
        .expect("cursor decoration");
    // One other person (the test's own server-text observers come and go; wait for them to be gone).
    vscode
        .wait_for("the status bar to count Nora", Duration::from_secs(20), |v| {
            let status = v.status()?;
            Ok(status.contains("connected") && status.ends_with("· 1 other"))
        })
        .expect("status bar");

    // When she leaves, her cursor goes.
    drop(nvim);
    vscode
        .wait_for("the cursor to go", Duration::from_secs(20), |v| Ok(!v.cursor_names()?.iter().any(|n| n == "nora")))
        .expect("cursor removed");

    // If the daemon dies, the session ends visibly here (no silent restart into a daemon without the session).
    assert_eq!(vscode.kill_daemons().expect("kill"), 1, "one daemon per VS Code window");
    vscode.notification("daemon stopped").expect("told the daemon stopped");
    vscode
        .wait_for("the status bar item to go", Duration::from_secs(20), |v| Ok(v.status()?.is_empty()))
        .expect("ended");
}
