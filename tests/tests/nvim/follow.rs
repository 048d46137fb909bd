//! Following a peer in Neovim: it keeps going into the files the peer opens and to their cursor until the user moves,
//! the statusline says whom, an unknown name is an error naming who is here, and the statusline's count of the
//! others is redrawn as people come and go, with no keystroke.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::{messages, NvimPair};
use codecollab_tests::nvim::Nvim;
use serde_json::json;

/// Waits until Ben's window is at `want` (file name, 1-based line, 0-based byte column); fails showing where it is.
fn until_at(nvim: &mut Nvim, what: &str, want: (&str, u64, u64)) {
    let mut last = None;
    let waited = nvim.wait_for(what, Duration::from_secs(20), |n| {
        let now = place(n);
        let done = (now.0.as_str(), now.1, now.2) == want;
        last = Some(now);
        Ok(done)
    });
    if let Err(error) = waited {
        let state = nvim
            .lua("return vim.inspect({ require('codecollab').state, require('codecollab.cursors').by_uri })", json!([]))
            .unwrap_or_default();
        panic!("{error}: at {last:?}, want {want:?}\n{}\n{}", state.as_str().unwrap_or_default(), messages(nvim));
    }
}

/// Ben's window: (file name, 1-based line, 0-based byte column).
fn place(nvim: &mut Nvim) -> (String, u64, u64) {
    let at = nvim
        .lua("local p = vim.api.nvim_win_get_cursor(0) return { vim.fn.expand('%:t'), p[1], p[2] }", json!([]))
        .expect("cursor");
    (at[0].as_str().unwrap_or_default().to_owned(), at[1].as_u64().unwrap_or(0), at[2].as_u64().unwrap_or(0))
}

fn following(nvim: &mut Nvim) -> Option<String> {
    let name = nvim.lua("return require('codecollab').state.following", json!([])).expect("state");
    name.as_str().map(str::to_owned)
}

#[test]
fn following_goes_into_every_file_the_peer_opens_until_you_move() {
    let NvimPair { server: _server, data: _data, host_dir: _h, guest_dir: _g, mut a, mut b, invite: _ } =
        NvimPair::start();
    // Ana is on line 3; Ben's daemon learns where she is.
    a.input("3G5|").expect("move");
    b.wait_for("ana's place", Duration::from_secs(20), |n| {
        let peers = n.lua("return require('codecollab').state.peers", json!([]))?;
        Ok(peers.as_array().into_iter().flatten().any(|p| p["name"] == "ana" && p["uri"].is_string()))
    })
    .expect("ana is seen in doc.txt");

    // An unknown name is an error that says who is here; nothing is followed.
    let error = b.command("CodeCollab follow nobody").expect_err("an error");
    assert!(error.to_string().contains("no one called nobody") && error.to_string().contains("ana"), "{error}");
    assert_eq!(following(&mut b), None);

    // Without a name: the only other person. Ben goes to her caret, and is still following once Neovim has
    // processed the jump (the jump is not a move of his).
    b.command("CodeCollab follow").expect("follow");
    until_at(&mut b, "ben at ana's caret", ("doc.txt", 3, 4));
    b.settle_input().expect("settled");
    assert_eq!(following(&mut b).as_deref(), Some("ana"));
    assert!(b.status().expect("status").contains("following ana"), "{}", b.status().unwrap_or_default());

    // She moves: he moves with her.
    a.input("2G7|").expect("move");
    until_at(&mut b, "ben at line 2", ("doc.txt", 2, 6));
    // She opens a new file and types: he is taken into it, to where she types, and her typing (which moves his
    // cursor too) does not stop the follow.
    a.command("edit other.txt").expect("edit");
    a.input("ihello from ana<Esc>").expect("type");
    a.settle_input().expect("settled");
    until_at(&mut b, "ben in other.txt at ana's caret", ("other.txt", 1, 13));
    a.input("a, still typing<Esc>").expect("type");
    a.settle_input().expect("settled");
    until_at(&mut b, "ben at the end of her text", ("other.txt", 1, 27));
    assert_eq!(b.text().expect("text"), "hello from ana, still typing\n");
    assert_eq!(following(&mut b).as_deref(), Some("ana"));

    // Ben moves by himself: the follow ends, and he is told.
    b.input("0").expect("move");
    b.wait_for("the follow to end", Duration::from_secs(10), |n| Ok(following(n).is_none())).expect("stopped");
    assert!(messages(&mut b).contains("stopped following ana (you moved)"), "{}", messages(&mut b));
    assert!(!b.status().expect("status").contains("following"));
}

#[test]
fn the_statusline_counts_the_others_and_is_redrawn_when_someone_joins() {
    let data = codecollab_tests::harness::TempDir::new("nvim-count");
    let server = codecollab_tests::harness::ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host, guest) =
        (codecollab_tests::harness::TempDir::new("count-host"), codecollab_tests::harness::TempDir::new("count-guest"));
    let (mut a, invite) = Nvim::share(host.path(), &server.url(), "ana").expect("share");
    a.command("set laststatus=2 statusline=%!v:lua.require'codecollab'.status()").expect("statusline");
    // The statusline as drawn (the screen as Neovim last drew it: nothing here forces a redraw).
    let drawn = |n: &mut Nvim| -> anyhow::Result<String> {
        let code = "local row = vim.o.lines - 1 local s = '' \
                    for col = 1, vim.o.columns do s = s .. vim.fn.screenstring(row, col) end return s";
        Ok(n.lua(code, json!([]))?.as_str().unwrap_or_default().trim().to_owned())
    };
    a.wait_for("the statusline", Duration::from_secs(10), |n| Ok(drawn(n)? == "collab: connected · 0 others"))
        .expect("alone");
    let _b = Nvim::join(&invite, guest.path(), "ben").expect("join");
    a.wait_for("the count to be redrawn", Duration::from_secs(20), |n| Ok(drawn(n)? == "collab: connected · 1 other"))
        .expect("redrawn without a keystroke");
    drop(_b);
    a.wait_for("the count to go down", Duration::from_secs(20), |n| Ok(drawn(n)? == "collab: connected · 0 others"))
        .expect("redrawn when he leaves");
}
