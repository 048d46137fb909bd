//! A daemon too old for the Neovim plugin, and a server of another wire-protocol version: each is one clear error
//! in Neovim, saying what to update.

use std::path::Path;
use std::time::Duration;

use codecollab_protocol::wire::{close, ClientMsg};
use codecollab_tests::fixtures::nvim::messages;
use codecollab_tests::harness::TempDir;
use codecollab_tests::hostile::{HostileServer, Reply};
use codecollab_tests::nvim::Nvim;
use serde_json::json;

#[test]
fn a_daemon_too_old_for_the_plugin_is_named_with_what_to_do() {
    let dir = TempDir::new("nvim-old-daemon");
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/old-codecollab-daemon");
    let mut nvim = Nvim::start(dir.path(), &format!("{{ daemon = '{}' }}", old.display()), false).expect("nvim");
    nvim.command("CodeCollab share").expect("share");
    nvim.wait_for("the error", Duration::from_secs(20), |n| Ok(messages(n).contains("too old for this plugin")))
        .expect("told");
    let said = messages(&mut nvim);
    assert!(said.contains("0.0.9") && said.contains("editor protocol 1") && said.contains("needs 2"), "{said}");
    assert!(said.contains("cargo build --release -p codecollab-daemon"), "{said}");
    assert_eq!(nvim.lua("return require('codecollab').state.session", json!([])).expect("state"), json!(null));
}

#[test]
fn a_server_of_another_protocol_version_is_one_clear_error_in_neovim() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let server = runtime
        .block_on(HostileServer::start(Box::new(|msg| match msg {
            ClientMsg::Join { .. } => {
                vec![Reply::Close(close::UNSUPPORTED_VERSION, "this server speaks codecollab.v2".into())]
            }
            _ => Vec::new(),
        })))
        .expect("server");
    let dir = TempDir::new("nvim-skew");
    let mut nvim = Nvim::start(dir.path(), "{ name = 'old' }", true).expect("nvim");
    nvim.lua("require('codecollab').join(...)", json!([server.invite()])).expect("join");
    nvim.wait_for("the error", Duration::from_secs(20), |n| Ok(messages(n).contains("join failed"))).expect("told");
    let said = messages(&mut nvim);
    assert!(said.contains("does not speak this daemon's protocol") && said.contains("codecollab.v2"), "{said}");
    assert_eq!(said.matches("join failed").count(), 1, "one message: {said}");
}
