//! The page around the editor: the file tree (with files a peer creates), tabs, syntax highlighting, following a
//! peer into another file, and two peers' named cursors at once.

use std::time::Duration;

use codecollab_tests::browser::{web_invite, Browser};
use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::nvim::Nvim;
use serde_json::{json, Value};

const MAIN_RS: &str = "fn main() {\n    let greeting = \"hello\";\n    println!(\"{greeting}\");\n}\n";

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

#[test]
fn the_browser_lists_files_follows_a_peer_into_another_file_and_draws_two_named_cursors() {
    let _serial = serial();
    let setup = Setup::start();
    std::fs::create_dir(setup.host_dir.path().join("src")).expect("mkdir");
    std::fs::write(setup.host_dir.path().join("src/main.rs"), MAIN_RS).expect("write");
    let (mut ana, invite) = Nvim::share(setup.host_dir.path(), &setup.server.url(), "ana").expect("Neovim shares");
    let mut ben = Nvim::join(&invite, setup.guest_dir.path(), "ben").expect("Neovim joins");
    ana.command("edit doc.txt").expect("edit");
    // The host gives the web invite the way Neovim gives any invite; it is the link this browser opens.
    ana.command("CodeCollab invite web").expect("invite web");
    let shown = ana.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)", json!([])).expect("window");
    assert_eq!(shown, json!([web_invite(&invite)]), "the web invite, in the window to copy from");
    ana.command("close").expect("close");
    let mut browser = Browser::join(&web_invite(&invite), "bea").expect("the browser joins");
    browser
        .wait_for("doc.txt", Duration::from_secs(20), |b| Ok(b.state(None)?.active.as_deref() == Some("doc.txt")))
        .expect("the first file opens by itself");
    let screen = browser.screen().expect("screen");
    assert_eq!(strings(&screen["files"]), ["doc.txt", "main.rs"], "the tree: {screen}");
    assert_eq!(strings(&screen["people"]).len(), 3, "ana, ben and bea (you): {screen}");

    // Following Ana: she opens src/main.rs and moves; the browser opens it in a tab and shows her there.
    browser.call("follow", json!({ "name": "ana" })).expect("follow");
    ana.command("edit src/main.rs").expect("edit");
    ana.input("2G9|").expect("move"); // line 2, on `greeting`
    browser
        .wait_for("the browser to follow Ana into main.rs", Duration::from_secs(20), |b| {
            Ok(b.state(None)?.active.as_deref() == Some("src/main.rs"))
        })
        .expect("followed");
    let at = "fn main() {\n    let ".encode_utf16().count() as u64;
    browser
        .wait_for("Ana's cursor on `greeting`", Duration::from_secs(20), |b| {
            Ok(b.state(None)?.cursors.contains(&("ana".to_owned(), at)))
        })
        .expect("her cursor");
    let screen = browser.screen().expect("screen");
    assert_eq!(
        strings(&screen["tabs"]).iter().map(|t| t.trim_end_matches('×')).collect::<Vec<_>>(),
        ["doc.txt", "main.rs"]
    );

    // Ben comes into main.rs too, and selects: two named cursors, in their colours.
    ben.command("edit src/main.rs").expect("edit");
    ben.input("3Gwve").expect("select `println`");
    browser
        .wait_for("two named cursors", Duration::from_secs(20), |b| {
            let carets = strings(&b.screen()?["carets"]);
            Ok(carets.contains(&"ana".to_owned()) && carets.contains(&"ben".to_owned()))
        })
        .expect("both");
    // Rust is highlighted (CodeMirror's highlighter marks tokens with classes).
    let highlighted = browser.call("highlighted", json!({})).expect("tokens")["count"].as_u64().unwrap_or(0);
    assert!(highlighted > 3, "main.rs is highlighted ({highlighted} styled tokens)");
    // Ctrl+F in the editor loads the search panel on first use.
    browser.caret_to_end().expect("into the editor");
    browser.press("Control+f").expect("search");
    browser
        .wait_for("the search panel", Duration::from_secs(20), |b| {
            Ok(b.call("visible", json!({ "selector": ".cm-search" }))?["visible"] == json!(true))
        })
        .expect("search panel");
    browser.press("Escape").expect("close it");
    if let Ok(file) = std::env::var("CODECOLLAB_WEB_SCREENSHOT") {
        browser.screenshot(std::path::Path::new(&file)).expect("screenshot");
    }

    // A file Ana creates appears in the tree.
    ana.command("edit notes.md").expect("edit");
    ana.input("i# Notes<Esc>").expect("type");
    ana.command("write").expect("write");
    browser
        .wait_for("notes.md in the tree", Duration::from_secs(20), |b| {
            Ok(strings(&b.screen()?["files"]).contains(&"notes.md".to_owned()))
        })
        .expect("listed");
}
