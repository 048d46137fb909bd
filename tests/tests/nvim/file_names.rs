//! A shared buffer given another name in Neovim (`:saveas`) is shared as that new file from then on; the file it
//! was stays as it was, for everyone.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::{server_text, NvimPair, DOC};
use codecollab_tests::harness::poll_until;
use serde_json::json;

#[test]
fn saveas_shares_the_buffer_under_its_new_name_and_leaves_the_old_file() {
    let NvimPair { server: _server, data: _data, host_dir, guest_dir: _guest_dir, a: _ana, b: mut ben, invite } =
        NvimPair::start();
    // Ben's buffer shows the file before he gives it another name.
    ben.wait_for("Ben's buffer", Duration::from_secs(20), |n| Ok(n.text()? == DOC)).expect("loaded");
    ben.command("saveas copy.txt").expect("saveas");
    ben.input("ggIben in the copy <Esc>").expect("types");
    ben.settle_input().expect("settled");
    poll_until("the copy on the server", Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(server_text(&invite, "copy.txt").starts_with("ben in the copy alpha beta"))
    })
    .expect("the copy is shared");
    assert_eq!(server_text(&invite, "doc.txt"), DOC, "the old file is as it was");
    let copy = host_dir.path().join("copy.txt");
    poll_until("the copy on Ana's disk", Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(std::fs::read_to_string(&copy).unwrap_or_default().starts_with("ben in the copy"))
    })
    .expect("written for Ana");
    let tracked = ben.lua(
        "return vim.uri_from_bufnr(0) == require('codecollab.buffer').tracked[vim.api.nvim_get_current_buf()].uri",
        json!([]),
    );
    assert_eq!(tracked.expect("lua"), json!(true), "the buffer is tracked under its new name");
}
