//! Buffers and file names in Neovim: a buffer given another name (`:saveas`) is shared as that new file, the old one
//! staying as it was; a buffer follows a peer's rename; a deleted file's buffer keeps its text and is shared again
//! when written.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::{messages, server_text, NvimPair, DOC};
use codecollab_tests::fixtures::until_server_text;
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

#[test]
fn a_buffer_follows_a_peers_rename_and_keeps_its_text_when_the_file_is_deleted() {
    let NvimPair { server: _server, data: _data, host_dir: _h, guest_dir, a: _ana, b: mut ben, invite } =
        NvimPair::start();
    ben.wait_for("Ben's buffer", Duration::from_secs(20), |n| Ok(n.text()? == DOC)).expect("loaded");
    ben.input("ggIben: <Esc>").expect("types");
    ben.settle_input().expect("settled");
    until_server_text(&invite, "doc.txt", |t| t.starts_with("ben: alpha"));

    // Someone renames the file: Ben's buffer is the new file's now, and what he types goes there.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(codecollab_tests::editor::invite_rename(&invite, "doc.txt", "moved.txt")).expect("rename");
    let name = |n: &mut codecollab_tests::nvim::Nvim| -> anyhow::Result<String> {
        Ok(n.lua("return vim.fn.expand('%:t')", json!([]))?.as_str().unwrap_or_default().to_owned())
    };
    ben.wait_for("the buffer to follow", Duration::from_secs(20), |n| Ok(name(n)? == "moved.txt")).expect("followed");
    ben.input("GAmore<Esc>").expect("types");
    ben.settle_input().expect("settled");
    let text = until_server_text(&invite, "moved.txt", |t| t.contains("more"));
    assert!(text.starts_with("ben: alpha beta"), "{text:?}");
    ben.command("write").expect("writes without E13");
    assert_eq!(std::fs::read_to_string(guest_dir.path().join("moved.txt")).expect("moved.txt"), text);
    assert!(!guest_dir.path().join("doc.txt").exists(), "the old name is gone from Ben's disk");
    assert!(messages(&mut ben).contains("doc.txt was renamed to moved.txt"), "{}", messages(&mut ben));

    // Someone deletes it: the file goes from Ben's disk, his buffer keeps the text, and he is told.
    runtime.block_on(codecollab_tests::editor::invite_delete(&invite, "moved.txt")).expect("delete");
    ben.wait_for("the warning", Duration::from_secs(20), |n| Ok(messages(n).contains("was deleted in the session")))
        .expect("told");
    assert!(!guest_dir.path().join("moved.txt").exists(), "deleted on Ben's disk");
    assert_eq!(ben.text().expect("text"), text, "the buffer keeps its text");
    // Writing it creates the file again, for everyone, with what he typed since.
    ben.input("GAback<Esc>").expect("types");
    ben.settle_input().expect("settled");
    ben.command("write").expect("write");
    let again = until_server_text(&invite, "moved.txt", |t| t.contains("moreback"));
    assert!(again.starts_with("ben: alpha beta"), "{again:?}");
    ben.input("ggIagain <Esc>").expect("types");
    ben.settle_input().expect("settled");
    until_server_text(&invite, "moved.txt", |t| t.starts_with("again ben: "));
}

/// What file-explorer plugins (oil.nvim, nvim-tree, neo-tree, through their LSP file-operation support) do to
/// rename a file: ask every LSP client that registered `willRename` for it, move the file, rename its buffer, then
/// tell the clients that registered `didRename`.
const EXPLORER_RENAME: &str = "local old, new = ... \
    local files = { { oldUri = vim.uri_from_fname(old), newUri = vim.uri_from_fname(new) } } \
    local asked = 0 \
    for _, client in ipairs(vim.lsp.get_clients()) do \
      if vim.tbl_get(client.server_capabilities, 'workspace', 'fileOperations', 'willRename') then \
        client:request_sync('workspace/willRenameFiles', { files = files }, 5000) asked = asked + 1 \
      end \
    end \
    assert(vim.uv.fs_rename(old, new)) \
    local buf = vim.fn.bufnr(old) \
    if buf > 0 then vim.api.nvim_buf_set_name(buf, new) vim.api.nvim_buf_call(buf, function() vim.cmd('silent! write!') end) end \
    for _, client in ipairs(vim.lsp.get_clients()) do \
      if vim.tbl_get(client.server_capabilities, 'workspace', 'fileOperations', 'didRename') then \
        client:notify('workspace/didRenameFiles', { files = files }) \
      end \
    end \
    return asked";

#[test]
fn a_rename_by_a_file_explorer_plugin_reaches_the_session_and_the_peers_buffer_follows() {
    let NvimPair { server: _server, data: _data, host_dir, guest_dir, a: mut ana, b: mut ben, invite } =
        NvimPair::start();
    ben.wait_for("Ben's buffer", Duration::from_secs(20), |n| Ok(n.text()? == DOC)).expect("loaded");
    let (old, new) = (host_dir.path().join("doc.txt"), host_dir.path().join("renamed.txt"));
    let asked = ana.lua(EXPLORER_RENAME, json!([old, new])).expect("the explorer renames");
    assert_eq!(asked, json!(1), "the daemon registered willRename and was asked");
    // The session has the new name; Ben's disk and buffer follow; both go on typing into it.
    until_server_text(&invite, "renamed.txt", |t| t == DOC);
    let name = |n: &mut codecollab_tests::nvim::Nvim| -> anyhow::Result<String> {
        Ok(n.lua("return vim.fn.expand('%:t')", json!([]))?.as_str().unwrap_or_default().to_owned())
    };
    ben.wait_for("Ben's buffer to follow", Duration::from_secs(20), |n| Ok(name(n)? == "renamed.txt"))
        .expect("followed");
    assert!(!guest_dir.path().join("doc.txt").exists());
    ana.input("ggIana <Esc>").expect("types");
    ben.input("GAben<Esc>").expect("types");
    ana.settle_input().expect("settled");
    ben.settle_input().expect("settled");
    let text = until_server_text(&invite, "renamed.txt", |t| t.starts_with("ana alpha") && t.ends_with("xxxben\n"));
    ana.wait_for("Ana's buffer", Duration::from_secs(20), |n| Ok(n.text()? == text)).expect("agrees");
    ben.wait_for("Ben's buffer", Duration::from_secs(20), |n| Ok(n.text()? == text)).expect("agrees");
    let paths = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(codecollab_tests::editor::invite_server_paths(&invite))
        .expect("paths");
    assert_eq!(paths, ["renamed.txt"]);
}
