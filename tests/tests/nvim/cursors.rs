//! Remote cursors in Neovim, read off the rendered screen: the caret's cell takes the peer's colour and the name is
//! a label at the end of the line, with and without 'termguicolors'; the text never shifts; marks move with the
//! text and vanish when the peer leaves.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::NvimPair;
use codecollab_tests::nvim::Nvim;
use serde_json::{json, Value};

/// The cursor extmarks of the current buffer: carets as `["caret", row, col]`, labels as `["label", row, text]`.
const MARKS: &str = "local ns = require('codecollab.cursors').ns \
    local out = {} \
    for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do \
      local d = m[4] \
      if d.virt_text_pos == 'eol' then table.insert(out, { 'label', m[2], d.virt_text[1][1] }) \
      elseif not (d.hl_group or ''):find('Sel$') then table.insert(out, { 'caret', m[2], m[3] }) end \
    end \
    table.sort(out, function(x, y) return x[1] < y[1] end) \
    return out";

/// Screen row `row` (1-based) as drawn, and the highlight attribute of each of its cells.
fn screen_row(nvim: &mut Nvim, row: u32) -> (String, Vec<i64>) {
    let code = "vim.cmd('redraw!') local row = ... local text, attrs = '', {} \
                for col = 1, vim.o.columns do \
                  text = text .. vim.fn.screenstring(row, col) \
                  attrs[col] = vim.fn.screenattr(row, col) \
                end return { text, attrs }";
    let drawn = nvim.lua(code, json!([row])).expect("screen");
    let text = drawn[0].as_str().unwrap_or_default().trim_end().to_owned();
    let attrs = drawn[1].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
    (text, attrs)
}

#[test]
fn a_remote_cursor_colours_its_cell_and_labels_the_line_end_without_shifting_text() {
    let NvimPair { server: _server, data: _data, host_dir: _host_dir, guest_dir: _guest_dir, mut a, mut b, invite: _ } =
        NvimPair::start();
    a.input("2G6|").expect("move"); // line 2, byte column 5: the space in "gamma delta"
    b.wait_for("ana's cursor", Duration::from_secs(20), |n| {
        Ok(n.lua(MARKS, json!([]))? == json!([["caret", 1, 5], ["label", 1, " ana "]]))
    })
    .expect("a caret mark at ana's place and her name on that line");

    for termguicolors in [false, true] {
        b.command(if termguicolors { "set termguicolors" } else { "set notermguicolors" }).expect("set");
        let (text, attrs) = screen_row(&mut b, 2);
        // The line's own text is where it was, and the label comes after it.
        assert!(text.starts_with("gamma delta"), "the text is not shifted: {text:?}");
        assert!(text["gamma delta".len()..].trim_start().starts_with("ana"), "the label ends the line: {text:?}");
        // The caret's cell (column 6, the space) is drawn differently from its neighbours, and so is the label.
        assert_ne!(attrs[5], attrs[4], "the caret cell is coloured (termguicolors={termguicolors}): {attrs:?}");
        assert_eq!(attrs[4], attrs[6], "only the caret cell: {attrs:?}");
        let label = text.find("ana").expect("label");
        assert_ne!(attrs[label], attrs[0], "the label is coloured (termguicolors={termguicolors})");
    }
    // The colour has a terminal (cterm) form too, so it shows without 'termguicolors'.
    let group = b
        .lua(
            "for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, require('codecollab.cursors').ns, 0, -1, \
               { details = true })) do if m[4].virt_text_pos == 'eol' then return m[4].virt_text[1][2] end end",
            json!([]),
        )
        .expect("group");
    let hl = b.lua("return vim.api.nvim_get_hl(0, { name = ... })", json!([group])).expect("hl");
    assert!(hl["ctermbg"].as_i64().is_some_and(|c| (16..=255).contains(&c)), "{group}: {hl}");
    assert!(hl["bg"].as_i64().is_some(), "{group}: {hl}");

    // Text typed before her caret pushes the mark along.
    b.input("2GIab<Esc>").expect("type");
    b.settle_input().expect("settled");
    b.wait_for("the mark to move", Duration::from_secs(10), |n| {
        Ok(n.lua(MARKS, json!([]))? == json!([["caret", 1, 7], ["label", 1, " ana "]]))
    })
    .expect("moved with the text");
    // Ana leaves: her cursor vanishes.
    a.command("CodeCollab leave").expect("leave");
    b.wait_for("the marks to vanish", Duration::from_secs(10), |n| Ok(n.lua(MARKS, json!([]))? == json!([])))
        .expect("gone");
}

#[test]
fn the_xterm_colour_of_each_peer_colour_is_the_nearest() {
    let dir = codecollab_tests::harness::TempDir::new("nvim-cterm");
    let mut nvim = Nvim::start(dir.path(), "{}", true).expect("nvim");
    let cterm = |nvim: &mut Nvim, rgb: [u8; 3]| {
        nvim.lua("return require('codecollab.cursors').cterm(...)", json!(rgb)).expect("cterm").as_i64().expect("n")
    };
    // Exact cube and grey entries map to themselves; the server's palette maps to nearby cube colours.
    assert_eq!(cterm(&mut nvim, [0xff, 0x00, 0x00]), 196);
    assert_eq!(cterm(&mut nvim, [0x5f, 0x87, 0xaf]), 67);
    assert_eq!(cterm(&mut nvim, [0x80, 0x80, 0x80]), 244);
    assert_eq!(cterm(&mut nvim, [0xe6, 0x19, 0x4b]), 161);
    assert_eq!(cterm(&mut nvim, [0x3c, 0xb4, 0x4b]), 71);
}

/// The selected spans of the current buffer, as `[row, col, end_row, end_col]` of each selection extmark.
const SELECTED: &str = "local ns = require('codecollab.cursors').ns \
    local out = {} \
    for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do \
      local d = m[4] \
      if (d.hl_group or ''):find('Sel$') then table.insert(out, { m[2], m[3], d.end_row, d.end_col }) end \
    end \
    return out";

/// A Visual selection in one Neovim is drawn in the other, both ends included as Neovim selects them, forwards,
/// backwards and linewise; leaving Visual mode takes it away and leaves the caret.
#[test]
fn a_visual_selection_is_shown_to_the_other_and_goes_when_visual_mode_ends() {
    let NvimPair { server: _server, data: _data, host_dir: _host_dir, guest_dir: _guest_dir, mut a, mut b, invite: _ } =
        NvimPair::start();
    b.wait_for("the shared text", Duration::from_secs(20), |n| Ok(n.text()?.starts_with("alpha beta\ngamma delta")))
        .expect("loaded");
    let selected = |b: &mut Nvim, want: Value, what: &str| {
        b.wait_for(what, Duration::from_secs(20), |n| Ok(n.lua(SELECTED, json!([]))? == want)).expect(what);
    };
    // "gamma", from its g to its last a: the selection covers all five, the caret after them.
    a.input("2G0ve").expect("select a word");
    selected(&mut b, json!([[1, 0, 1, 5]]), "gamma selected");
    // Backwards over "delta": from its end to its d, both included.
    a.input("<Esc>2G$vb").expect("select backwards");
    selected(&mut b, json!([[1, 6, 1, 11]]), "delta selected");
    b.wait_for("the caret at the d", Duration::from_secs(20), |n| {
        Ok(n.lua(MARKS, json!([]))? == json!([["caret", 1, 6], ["label", 1, " ana "]]))
    })
    .expect("the caret is the selection's head");
    // Linewise: whole lines.
    a.input("<Esc>1G0Vj").expect("select two lines");
    selected(&mut b, json!([[0, 0, 1, 11]]), "two lines selected");
    // Leaving Visual mode does not move the cursor, and the selection goes.
    a.input("<Esc>").expect("leave visual mode");
    selected(&mut b, json!([]), "no selection");
    b.wait_for("a caret", Duration::from_secs(20), |n| {
        Ok(n.lua(MARKS, json!([]))? == json!([["caret", 1, 0], ["label", 1, " ana "]]))
    })
    .expect("a caret where ana is");
}
