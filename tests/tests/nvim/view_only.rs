//! A view-only session makes shared buffers 'nomodifiable' while the host's edits still arrive.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::DOC;
use codecollab_tests::harness::{ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;
use serde_json::json;

#[test]
fn a_view_only_session_makes_shared_buffers_nomodifiable() {
    let data = TempDir::new("nvim-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("nvim-host"), TempDir::new("nvim-viewer"));
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    let (mut a, _) = Nvim::share(host_dir.path(), &server.url(), "ana").expect("share");
    let view_invite = a.lua("return require('codecollab').state.view_invite", json!([])).expect("view invite");
    let mut viewer = Nvim::join(view_invite.as_str().expect("string"), guest_dir.path(), "vic").expect("join");
    viewer.command("edit doc.txt").expect("edit");
    viewer
        .wait_for("readonly", Duration::from_secs(10), |n| Ok(n.status()?.starts_with("collab: readonly")))
        .expect("readonly state in the statusline");
    // The statusline and the buffer's option are set by separate notifications: wait on the option itself.
    viewer
        .wait_for("the buffer to be nomodifiable", Duration::from_secs(10), |n| {
            Ok(n.lua("return vim.bo.modifiable", json!([]))? == json!(false))
        })
        .expect("nomodifiable");
    // The host's edits still arrive.
    a.command("edit doc.txt").expect("edit");
    a.input("ggIfrom ana: <Esc>").expect("keys");
    viewer
        .wait_for("the host's edit", Duration::from_secs(10), |n| Ok(n.text()?.starts_with("from ana: alpha")))
        .expect("received");
}
