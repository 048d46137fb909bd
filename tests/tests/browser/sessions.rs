//! The browser in a session's life: a server restart while it types, a view-only invite, a bad invite, an edit
//! over the size limit, and a session with VS Code.

use std::collections::BTreeSet;
use std::time::Duration;

use codecollab_tests::browser::{web_invite, Browser};
use codecollab_tests::fixtures::nvim::server_text;
use codecollab_tests::fixtures::vscode::{invite_in, serial, Setup, DOC};
use codecollab_tests::harness::{ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

use super::converge;

/// The tokens `[b<n>]` in `text`.
fn browser_tokens(text: &str) -> Vec<u32> {
    text.split("[b").skip(1).filter_map(|rest| rest.split(']').next()?.parse().ok()).collect()
}

#[test]
fn a_browser_keeps_what_it_types_through_a_server_restart_and_shows_it_reconnecting() {
    let _serial = serial();
    let Setup { data, mut server, host_dir, .. } = Setup::start();
    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "ana").expect("Neovim shares");
    nvim.command("edit doc.txt").expect("edit");
    let mut browser = Browser::join(&web_invite(&invite), "bea").expect("the browser joins");
    browser.wait_for("doc.txt", Duration::from_secs(20), |b| Ok(b.text("doc.txt")? == DOC)).expect("opened");
    browser.caret_to_end().expect("caret");

    // Tokens before, during and after the outage, each typed once.
    let mut typed = 0;
    let mut type_tokens = |browser: &mut Browser, n: u32| {
        for _ in 0..n {
            browser.type_text(&format!("[b{typed}]")).expect("type");
            typed += 1;
        }
    };
    type_tokens(&mut browser, 5);
    server.kill();
    browser
        .wait_for("the page to show it is reconnecting", Duration::from_secs(20), |b| {
            Ok(b.screen()?["connection"].as_str().unwrap_or_default().starts_with("reconnecting"))
        })
        .expect("reconnecting");
    type_tokens(&mut browser, 10);
    nvim.input("ggIneovim offline <Esc>").expect("input");
    let shown = browser.screen().expect("screen")["connection"].as_str().unwrap_or_default().to_owned();
    assert!(shown.contains("your edits are kept"), "the page says what happens to the edits: {shown:?}");

    let _restarted = ServerProcess::spawn(&server.addr.to_string(), data.path(), &[]).expect("restart");
    browser
        .wait_for("connected again", Duration::from_secs(30), |b| Ok(b.state(None)?.connection == "connected"))
        .expect("connected");
    type_tokens(&mut browser, 5);

    let text = converge(&mut browser, &mut nvim, &invite, "doc.txt");
    let mut tokens = browser_tokens(&text);
    tokens.sort_unstable();
    assert_eq!(tokens, (0..20).collect::<Vec<_>>(), "every token typed, exactly once: {text:?}");
    assert!(text.starts_with("neovim offline "), "{text:?}");
}

#[test]
fn a_view_only_browser_cannot_type_says_so_and_still_follows_the_text() {
    let _serial = serial();
    let setup = Setup::start();
    let (mut nvim, _invite) = Nvim::share(setup.host_dir.path(), &setup.server.url(), "ana").expect("Neovim shares");
    nvim.command("edit doc.txt").expect("edit");
    let view_invite = nvim.lua("return require('codecollab').state.web_view_invite", json!([])).expect("invite");
    let view_invite = view_invite.as_str().expect("Neovim has the web view invite").to_owned();
    assert!(view_invite.starts_with("http://") && view_invite.contains("/s/"), "{view_invite}");
    let mut browser = Browser::join(&view_invite, "vic").expect("the browser joins");
    browser.wait_for("doc.txt", Duration::from_secs(20), |b| Ok(b.text("doc.txt")? == DOC)).expect("opened");

    let screen = browser.screen().expect("screen");
    assert_eq!(screen["viewOnly"], json!(true), "clearly marked: {screen}");
    assert_eq!(screen["editable"], json!(false), "the editor is read-only: {screen}");
    assert_eq!(browser.state(None).expect("state").role.as_deref(), Some("view"));
    browser.caret_to_end().expect("caret");
    browser.type_text("nope").expect("keys go nowhere");
    browser.insert("still nope").expect("nor an input method's text");

    nvim.input("Gofrom ana<Esc>").expect("input");
    let expected = format!("{DOC}from ana\n");
    nvim.wait_for("Neovim's text", Duration::from_secs(10), |n| Ok(n.text()? == expected)).expect("typed");
    browser
        .wait_for("Ana's edit in the browser", Duration::from_secs(20), |b| Ok(b.text("doc.txt")? == expected))
        .expect("followed");
    assert_eq!(server_text(&nvim_invite(&mut nvim), "doc.txt"), expected, "nothing of the viewer's reached the server");
}

fn nvim_invite(nvim: &mut Nvim) -> String {
    nvim.lua("return require('codecollab').state.invite", json!([])).expect("invite").as_str().expect("str").to_owned()
}

#[test]
fn a_bad_invite_and_an_edit_over_the_size_limit_are_explained_on_the_page() {
    let _serial = serial();
    let config_dir = TempDir::new("browser-limits");
    let config = config_dir.path().join("server.toml");
    std::fs::write(&config, "[limits]\nmax_document_chars = 200\n").expect("config");
    let data = TempDir::new("browser-limits-data");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &["--config", config.to_str().expect("utf-8")])
        .expect("server");
    let host_dir = TempDir::new("browser-limits-host");
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "ana").expect("Neovim shares");

    // A token that was never issued (one character changed): the page says the invite does not work.
    let good = web_invite(&invite);
    let (page, token) = good.split_once('#').expect("token");
    let last = if token.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{page}#{}{last}", &token[..token.len() - 1]);
    let mut browser = Browser::start().expect("browser");
    browser.call("goto", json!({ "url": forged, "name": "eve" })).expect("goto");
    browser
        .wait_for("the page to say why", Duration::from_secs(60), |b| {
            Ok(b.screen()?["ended"].as_str().is_some_and(|e| e.contains("this invite does not work")))
        })
        .expect("explained");
    drop(browser);

    // A paste that would take the file past the server's limit is undone, with the reason; typing goes on.
    let mut browser = Browser::join(&good, "bea").expect("the browser joins");
    browser.wait_for("doc.txt", Duration::from_secs(20), |b| Ok(b.text("doc.txt")? == DOC)).expect("opened");
    browser.caret_to_end().expect("caret");
    browser.insert(&"0123456789".repeat(20)).expect("paste");
    browser
        .wait_for("the reason on the page", Duration::from_secs(20), |b| {
            let screen = b.screen()?;
            Ok(screen["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m.as_str().is_some_and(|m| m.contains("over the server's limit of 200"))))
        })
        .expect("told");
    browser.type_text("small").expect("type");
    let expected = format!("{DOC}small");
    browser
        .wait_for("the small edit stored", Duration::from_secs(20), |b| {
            let state = b.state(Some("doc.txt"))?;
            Ok(state.synced && state.text.as_deref() == Some(expected.as_str()))
        })
        .expect("stored");
    assert_eq!(server_text(&invite, "doc.txt"), expected);
    nvim.command("edit doc.txt").expect("edit");
    nvim.wait_for("Neovim to have it", Duration::from_secs(20), |n| Ok(n.text()? == expected)).expect("Neovim");
}

#[test]
fn a_browser_and_vscode_in_one_session_type_at_once_and_see_each_other() {
    let _serial = serial();
    let setup = Setup::start();
    let mut vscode = VsCode::start(setup.host_dir.path(), Some(&setup.server.url()), "vera").expect("VS Code");
    vscode.palette("CodeCollab: Share Folder").expect("share");
    let invite = invite_in(&vscode.notification("Invite").expect("the share's notification"));
    vscode.open("doc.txt").expect("open");
    let mut browser = Browser::join(&web_invite(&invite), "bea").expect("the browser joins");
    browser.wait_for("doc.txt", Duration::from_secs(20), |b| Ok(b.text("doc.txt")? == DOC)).expect("opened");

    // Both at once: VS Code at the top, the browser at the end.
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    browser.caret_to_end().expect("caret");
    vscode.send("type", json!({ "text": "[vs 1] [vs 2] [vs 3] é 😀\n" })).expect("type");
    browser.type_text(" [br 1] [br 2] [br 3]").expect("type");
    browser.insert(" 日本 👩\u{200d}💻").expect("insert");
    vscode.recv().expect("VS Code typed");

    let mut last = (String::new(), String::new(), String::new());
    let agreed = browser.wait_for("VS Code, the browser and the server to agree", Duration::from_secs(60), |b| {
        let state = b.state(Some("doc.txt"))?;
        let in_vscode = vscode.visible_text()?;
        let on_server = server_text(&invite, "doc.txt");
        last = (state.text.clone().unwrap_or_default(), in_vscode.clone(), on_server.clone());
        Ok(state.synced && state.text.as_deref() == Some(on_server.as_str()) && in_vscode == on_server)
    });
    assert!(agreed.is_ok(), "{agreed:?}\nbrowser: {:?}\nVS Code: {:?}\nserver:  {:?}", last.0, last.1, last.2);
    let text = last.0;
    let expected: BTreeSet<&str> =
        ["[vs 1]", "[vs 2]", "[vs 3]", "é 😀", "[br 1]", "[br 2]", "[br 3]", " 日本 👩\u{200d}💻"].into();
    for token in expected {
        assert_eq!(text.matches(token).count(), 1, "{token} once: {text:?}");
    }

    vscode
        .wait_for("the browser's named cursor in VS Code", Duration::from_secs(20), |v| {
            Ok(v.cursor_names()?.iter().any(|n| n == "bea"))
        })
        .expect("Bea in VS Code");
    browser
        .wait_for("VS Code's named cursor in the browser", Duration::from_secs(20), |b| {
            Ok(b.state(None)?.cursors.iter().any(|(name, _)| name == "vera"))
        })
        .expect("Vera in the browser");
}

#[test]
fn a_peers_rename_and_delete_reach_the_tabs_and_a_removed_browser_is_told() {
    let _serial = serial();
    let setup = Setup::start();
    let (mut ana, invite) = Nvim::share(setup.host_dir.path(), &setup.server.url(), "ana").expect("Neovim shares");
    let mut browser = Browser::join(&web_invite(&invite), "bea").expect("the browser joins");
    browser.wait_for("doc.txt", Duration::from_secs(20), |b| Ok(b.text("doc.txt")? == DOC)).expect("opened");
    browser.caret_to_end().expect("caret");
    browser.type_text("bea was here").expect("type");
    let typed = format!("{DOC}bea was here");
    browser.wait_for("the typing stored", Duration::from_secs(20), |b| Ok(b.state(None)?.synced)).expect("stored");

    // A peer renames the file: the tab and the tree follow, the text stays.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(codecollab_tests::editor::invite_rename(&invite, "doc.txt", "renamed.txt")).expect("rename");
    browser
        .wait_for("the tab to follow", Duration::from_secs(20), |b| {
            let screen = b.screen()?;
            let tabs: Vec<String> =
                screen["tabs"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect();
            Ok(tabs.iter().any(|t| t.starts_with("renamed.txt"))
                && b.state(Some("renamed.txt"))?.text.as_deref() == Some(typed.as_str()))
        })
        .expect("followed");

    // A peer deletes it: the page says so, the tab keeps the text, read-only.
    runtime.block_on(codecollab_tests::editor::invite_delete(&invite, "renamed.txt")).expect("delete");
    browser
        .wait_for("the page to say it was deleted", Duration::from_secs(20), |b| {
            let screen = b.screen()?;
            Ok(screen["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m.as_str().is_some_and(|m| m.contains("renamed.txt was deleted by a peer")))
                && screen["editable"] == json!(false))
        })
        .expect("told");
    let screen = browser.screen().expect("screen");
    assert!(screen["files"].as_array().is_some_and(Vec::is_empty), "gone from the tree: {screen}");
    let kept = browser.call("editorText", json!({})).expect("text")["text"].as_str().unwrap_or_default().to_owned();
    assert_eq!(kept, typed, "the tab keeps the text");

    // The host removes Bea: the page ends, saying why.
    ana.command("CodeCollab remove bea").expect("remove");
    browser
        .wait_for("the page to say she was removed", Duration::from_secs(20), |b| {
            Ok(b.screen()?["ended"].as_str().is_some_and(|e| e.contains("removed")))
        })
        .expect("ended");
}
