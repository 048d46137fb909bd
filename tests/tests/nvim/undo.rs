//! `u` and `<C-r>` in a shared buffer of a real Neovim take back only your own changes: a peer's typing, inside
//! yours too, stays on every copy; a multi-line `:s` is one step; a step a peer deleted entirely is skipped; the
//! cursor goes where the change was.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::NvimPair;
use codecollab_tests::fixtures::until_server_text;
use codecollab_tests::nvim::Nvim;
use serde_json::json;

/// Waits until both Neovims and the server hold `expected`.
fn everywhere(pair: &mut NvimPair, expected: &str) {
    for nvim in [&mut pair.a, &mut pair.b] {
        nvim.settle_input().expect("input processed");
        nvim.wait_for(expected, Duration::from_secs(20), |n| Ok(n.text()? == expected)).unwrap_or_else(|error| {
            panic!("{error}: the buffer is {:?}", nvim.text().unwrap_or_default());
        });
    }
    until_server_text(&pair.invite, "doc.txt", |t| t == expected);
}

fn cursor_row(nvim: &mut Nvim) -> u64 {
    nvim.lua("return vim.api.nvim_win_get_cursor(0)[1]", json!([])).expect("cursor").as_u64().expect("a row")
}

#[test]
fn u_in_a_shared_buffer_undoes_only_your_own_changes_everywhere() {
    let mut pair = NvimPair::start();
    pair.b.wait_for("Ben's buffer", Duration::from_secs(20), |n| Ok(!n.text()?.is_empty())).expect("loaded");
    // Ana adds a line (one Insert-mode session: one step); Ben types inside it and at the end.
    pair.a.input("ggOZed line<Esc>").expect("keys");
    everywhere(&mut pair, "Zed line\nalpha beta\ngamma delta\nxxx yyy xxx\n");
    pair.b.input("ggA ben-in<Esc>").expect("keys");
    pair.b.input("GoBen end<Esc>").expect("keys");
    let both = "Zed line ben-in\nalpha beta\ngamma delta\nxxx yyy xxx\nBen end\n";
    everywhere(&mut pair, both);
    // Ana substitutes over three lines (one step) while Ben adds a line.
    pair.a.input(":%s/a/A/g<CR>").expect("keys");
    pair.b.input("GoTop<Esc>").expect("keys");
    everywhere(&mut pair, "Zed line ben-in\nAlphA betA\ngAmmA deltA\nxxx yyy xxx\nBen end\nTop\n");

    // u takes back the whole :s, and only it; the cursor goes to where it was (line 2).
    pair.a.input("u").expect("keys");
    let with_top = "Zed line ben-in\nalpha beta\ngamma delta\nxxx yyy xxx\nBen end\nTop\n";
    everywhere(&mut pair, with_top);
    assert_eq!(cursor_row(&mut pair.a), 2, "the cursor is where the :s began");
    // u again takes back Ana's line; Ben's text typed inside it stays.
    pair.a.input("u").expect("keys");
    let without_ana = " ben-inalpha beta\ngamma delta\nxxx yyy xxx\nBen end\nTop\n";
    everywhere(&mut pair, without_ana);
    assert_eq!(cursor_row(&mut pair.a), 1, "the cursor is where the line was");
    // CTRL-R brings it back; :undo and :redo typed on the command line do the same as u and CTRL-R.
    pair.a.input("<C-r>").expect("keys");
    everywhere(&mut pair, with_top);
    pair.a.input(":undo<CR>").expect("keys");
    everywhere(&mut pair, without_ana);
    pair.a.input(":redo<CR>").expect("keys");
    everywhere(&mut pair, with_top);

    // A step of Ana's that Ben deleted entirely is skipped: u takes back the one before it.
    pair.a.input("ggAXYZ<Esc>").expect("keys");
    everywhere(&mut pair, "Zed line ben-inXYZ\nalpha beta\ngamma delta\nxxx yyy xxx\nBen end\nTop\n");
    pair.b.input("gg$xxx").expect("keys");
    everywhere(&mut pair, with_top);
    pair.a.input("u").expect("keys");
    everywhere(&mut pair, without_ana);
    // Nothing of Ana's is left to undo; `:CodeCollab undo` says so and changes nothing.
    pair.a.command("CodeCollab undo").expect("command");
    pair.a
        .wait_for("the word", Duration::from_secs(20), |n| {
            Ok(codecollab_tests::fixtures::nvim::messages(n).contains("nothing of yours to undo"))
        })
        .expect("told");
    everywhere(&mut pair, without_ana);
}
