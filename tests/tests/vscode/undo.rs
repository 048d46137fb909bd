//! Ctrl+Z in a shared file in VS Code takes back only your own change (a word you typed, with Neovim's typing inside
//! it kept), on every copy, and puts the caret where it was; the redo key brings it back.

use std::time::Duration;

use codecollab_tests::editor::server_text_of_invite;
use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

/// Waits until VS Code, Neovim and the server all hold `expected`.
fn agree_on(vscode: &mut VsCode, nvim: &mut Nvim, invite: &str, expected: &str) {
    nvim.settle_input().expect("Neovim settled");
    let mut last = (String::new(), String::new(), String::new());
    let agreed = vscode.wait_for(expected, Duration::from_secs(60), |vscode| {
        last = (vscode.visible_text()?, nvim.text()?, server_text_of_invite(invite, "doc.txt")?);
        Ok(last.0 == expected && last.1 == expected && last.2 == expected)
    });
    if let Err(error) = agreed {
        panic!("{error}\nVS Code: {:?}\nNeovim:  {:?}\nserver:  {:?}", last.0, last.1, last.2);
    }
}

#[test]
fn ctrl_z_in_vscode_undoes_only_your_own_change_and_redo_brings_it_back() {
    let _serial = serial();
    let setup = Setup::start();
    let (mut vscode, mut nvim, invite) = setup.vscode_shares_neovim_joins();
    nvim.command("edit doc.txt").expect("edit");
    vscode.open("doc.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    // VS Code types a word and its space (one step); Neovim types inside the word and adds a line.
    vscode.call("type", json!({ "text": "Zed " })).expect("type");
    agree_on(&mut vscode, &mut nvim, &invite, "Zed alpha beta\ngamma delta\nxxx yyy xxx\n");
    nvim.input("gg0a-n-<Esc>").expect("keys");
    nvim.input("GoNvim end<Esc>").expect("keys");
    let both = "Z-n-ed alpha beta\ngamma delta\nxxx yyy xxx\nNvim end\n";
    agree_on(&mut vscode, &mut nvim, &invite, both);

    // Ctrl+Z: VS Code's word goes, Neovim's typing (inside it too) stays, everywhere; the caret is where it was.
    vscode.call("focus", json!({ "keys": ["Control+End", "Control+z"] })).expect("undo");
    agree_on(&mut vscode, &mut nvim, &invite, "-n-alpha beta\ngamma delta\nxxx yyy xxx\nNvim end\n");
    vscode
        .wait_for("the caret where the word was", Duration::from_secs(20), |v| Ok(v.caret()? == Some((1, 1))))
        .expect("caret");
    // The redo key brings it back.
    vscode.call("press", json!({ "key": "Control+Shift+z" })).expect("redo");
    agree_on(&mut vscode, &mut nvim, &invite, both);
}
