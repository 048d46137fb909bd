//! Remote cursors are extmarks with the peer's name that move with the text and vanish when the peer leaves.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::NvimPair;
use serde_json::json;

#[test]
fn remote_cursors_are_extmarks_with_the_peers_name_and_move_with_the_text() {
    let NvimPair { server: _server, data: _data, host_dir: _host_dir, guest_dir: _guest_dir, mut a, mut b, invite: _ } =
        NvimPair::start();
    a.input("2G6|").expect("move"); // line 2, byte column 5
    let marks = "local ns = require('codecollab.cursors').ns \
                 local out = {} \
                 for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do \
                   if m[4].virt_text then table.insert(out, { m[2], m[3], m[4].virt_text[1][1] }) end \
                 end return out";
    b.wait_for("ana's cursor", Duration::from_secs(20), |n| Ok(n.lua(marks, json!([]))? == json!([[1, 5, " ana "]])))
        .expect("extmark at ana's caret with her name");
    // Text typed before her caret pushes the mark along.
    b.input("2GIab<Esc>").expect("type");
    b.settle_input().expect("settled");
    b.wait_for("the mark to move", Duration::from_secs(10), |n| {
        Ok(n.lua(marks, json!([]))? == json!([[1, 7, " ana "]]))
    })
    .expect("moved with the text");
    // Ana leaves: her cursor vanishes.
    a.lua("require('codecollab').leave()", json!([])).expect("leave");
    b.wait_for("the mark to vanish", Duration::from_secs(10), |n| Ok(n.lua(marks, json!([]))? == json!([])))
        .expect("gone");
}
