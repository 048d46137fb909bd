//! VS Code shows reconnecting through a server restart, and nothing typed meanwhile is lost.

use std::time::Duration;

use codecollab_tests::fixtures::vscode::{converge, serial, Setup};
use codecollab_tests::harness::ServerProcess;
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

#[test]
fn vscode_shows_reconnecting_through_a_server_restart_and_loses_nothing() {
    let _serial = serial();
    let Setup { data, mut server, host_dir, guest_dir } = Setup::start();
    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    nvim.command("edit doc.txt").expect("edit");
    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.join_from_palette(&invite).expect("join");
    vscode.open("doc.txt").expect("open");

    server.kill();
    vscode
        .wait_for("reconnecting", Duration::from_secs(20), |v| Ok(v.status()?.contains("reconnecting")))
        .expect("reconnecting shown");
    // Both keep typing while the server is down.
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "offline in VS Code\n" })).expect("type");
    nvim.input("GAoffline in Neovim<Esc>").expect("input");
    nvim.settle_input().expect("settled");

    let _restarted = ServerProcess::spawn(&server.addr.to_string(), data.path(), &[]).expect("restart");
    vscode
        .wait_for("connected again", Duration::from_secs(30), |v| Ok(v.status()?.contains("connected")))
        .expect("connected shown");
    let text = converge(&mut vscode, &mut nvim, &invite, "doc.txt");
    assert!(text.starts_with("offline in VS Code\n") && text.contains("offline in Neovim"), "{text:?}");
}
