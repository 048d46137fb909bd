//! A browser joins a session Neovim shared: both type at once (accents, CJK, emoji, a ZWJ sequence), every
//! keystroke lands once in every copy, and each sees the other's named cursor.

use std::time::Duration;

use codecollab_tests::browser::{web_invite, Browser};
use codecollab_tests::fixtures::vscode::{serial, Setup, DOC};
use codecollab_tests::nvim::Nvim;
use serde_json::json;

use super::converge;

/// The names beside remote carets in Neovim's current buffer.
const NVIM_CARET_NAMES: &str = "local ns = require('codecollab.cursors').ns local out = {} \
    for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do \
      if m[4].virt_text_pos == 'eol' then table.insert(out, vim.trim(m[4].virt_text[1][1])) end \
    end return out";

#[test]
fn a_browser_and_neovim_type_at_once_in_one_file_and_see_each_others_named_cursor() {
    let _serial = serial();
    let setup = Setup::start();
    let (mut nvim, invite) = Nvim::share(setup.host_dir.path(), &setup.server.url(), "ana").expect("Neovim shares");
    nvim.command("edit doc.txt").expect("edit");
    let mut browser = Browser::join(&web_invite(&invite), "bea").expect("the browser joins");
    browser
        .wait_for("doc.txt to open by itself", Duration::from_secs(20), |b| Ok(b.text("doc.txt")? == DOC))
        .expect("opened");
    browser.caret_to_end().expect("caret");

    // Both at once: the browser at the end, key by key; Neovim at the top and on the next line, in rounds.
    browser
        .send("type", json!({ "text": "typed in the browser, key by key\nsecond browser line", "delay": 15 }))
        .expect("type");
    for round in 0..8 {
        nvim.input(&format!("ggI[nvim {round}] <Esc>")).expect("input");
        nvim.input("jA+<Esc>").expect("input");
        std::thread::sleep(Duration::from_millis(60));
    }
    browser.recv().expect("the browser typed");
    // What a keyboard cannot type arrives as an input method's insertion: accents, CJK, astral emoji, a ZWJ sequence.
    browser.insert(" é 日本語 😀 👩\u{200d}💻 done").expect("insert");
    nvim.input("GA ü 中文 🎉 👨\u{200d}👩\u{200d}👧<Esc>").expect("input");

    let text = converge(&mut browser, &mut nvim, &invite, "doc.txt");
    assert!(text.contains("typed in the browser, key by key\nsecond browser line"), "{text:?}");
    assert!(text.contains(" é 日本語 😀 👩\u{200d}💻 done"), "{text:?}");
    assert!(text.contains(" ü 中文 🎉 👨\u{200d}👩\u{200d}👧"), "{text:?}");
    for round in 0..8 {
        assert_eq!(text.matches(&format!("[nvim {round}] ")).count(), 1, "round {round} once: {text:?}");
    }
    assert_eq!(text.matches('+').count(), 8, "every `+` Neovim appended: {text:?}");
    for line in DOC.lines() {
        assert!(text.contains(line.split(' ').next().unwrap_or(line)), "the original text stays: {text:?}");
    }

    // Each sees the other's named cursor: Neovim's at the very start of the file, the browser's in Neovim.
    nvim.input("gg0").expect("move");
    browser
        .wait_for("Ana's cursor at the start, in the browser", Duration::from_secs(20), |b| {
            Ok(b.state(None)?.cursors.contains(&("ana".to_owned(), 0)))
        })
        .expect("Ana's cursor");
    let screen = browser.screen().expect("screen");
    assert!(screen["carets"].as_array().into_iter().flatten().any(|c| c == "ana"), "her name is drawn: {screen}");
    browser.press("Control+Home").expect("move");
    nvim.wait_for("Bea's cursor in Neovim", Duration::from_secs(20), |n| {
        Ok(n.lua(NVIM_CARET_NAMES, json!([]))?.as_array().into_iter().flatten().any(|name| name == "bea"))
    })
    .expect("Bea's cursor");

    // When Neovim leaves, her cursor and her name go.
    drop(nvim);
    browser
        .wait_for("Ana's cursor to go", Duration::from_secs(20), |b| Ok(b.state(None)?.cursors.is_empty()))
        .expect("gone");
}
