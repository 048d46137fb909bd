//! A file that runs by itself, created by a guest, is written on the host's disk only after :CodeCollab allow.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::{messages, server_text, NvimPair};
use serde_json::json;

#[test]
fn a_file_that_runs_by_itself_created_by_a_guest_waits_for_the_hosts_allow() {
    let NvimPair { server: _server, data: _data, host_dir, guest_dir: _guest_dir, a: mut ana, b: mut ben, invite } =
        NvimPair::start();
    // Ben creates .nvim.lua, which Neovim's 'exrc' would run when Ana next opens the folder.
    ben.command("edit .nvim.lua").expect("edit");
    ben.input("ivim.cmd('!touch pwned')<Esc>").expect("types");
    ben.settle_input().expect("settled");
    codecollab_tests::harness::poll_until(
        "Ben's text on the server",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || Ok(server_text(&invite, ".nvim.lua").contains("pwned")),
    )
    .expect("committed");
    ana.wait_for("Ana to be told", Duration::from_secs(20), |n| {
        Ok(n.lua("return require('codecollab').state.approvals['.nvim.lua'] ~= nil", json!([]))? == json!(true))
    })
    .expect("told");
    let told = messages(&mut ana);
    assert!(told.contains("ben created .nvim.lua") && told.contains(":CodeCollab allow .nvim.lua"), "{told}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!host_dir.path().join(".nvim.lua").exists(), "not written before Ana allows it");
    ana.command("CodeCollab allow .nvim.lua").expect("allow");
    let written = host_dir.path().join(".nvim.lua");
    ana.wait_for("the file to be written", Duration::from_secs(20), |_| Ok(written.exists())).expect("written");
    assert_eq!(std::fs::read_to_string(&written).expect("reads"), "vim.cmd('!touch pwned')\n");
}
