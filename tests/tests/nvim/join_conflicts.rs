//! Joining from Neovim into a folder with the user's own work in it: refused with the list, then `:CodeCollab join!`
//! moves the differing files aside and joins.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::messages;
use codecollab_tests::harness::{ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;
use serde_json::json;

#[test]
fn a_join_over_differing_files_is_refused_until_join_bang_moves_them_aside() {
    let data = TempDir::new("nvim-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("nvim-host"), TempDir::new("nvim-guest"));
    std::fs::write(host_dir.path().join("notes.txt"), "the host's notes\n").expect("write");
    let precious = "guest's own precious work\n";
    std::fs::write(guest_dir.path().join("notes.txt"), precious).expect("write");
    let (_ana, invite) = Nvim::share(host_dir.path(), &server.url(), "ana").expect("share");

    let mut ben = Nvim::start(guest_dir.path(), "{ name = 'ben' }", true).expect("nvim");
    ben.command(&format!("CodeCollab join {invite}")).expect("join");
    ben.wait_for("the refusal", Duration::from_secs(20), |n| Ok(messages(n).contains("join failed"))).expect("refused");
    let told = messages(&mut ben);
    assert!(told.contains("notes.txt") && told.contains(":CodeCollab join!"), "{told}");
    assert_eq!(std::fs::read_to_string(guest_dir.path().join("notes.txt")).expect("reads"), precious);
    assert_eq!(ben.lua("return require('codecollab').state.session", json!([])).expect("state"), json!(null));

    ben.command(&format!("CodeCollab join! {invite}")).expect("join!");
    ben.wait_for("the join", Duration::from_secs(20), |n| {
        Ok(n.lua("return require('codecollab').state.ready == true", json!([]))? == json!(true))
    })
    .expect("joined");
    let told = messages(&mut ben);
    let folder = told
        .lines()
        .find_map(|line| line.split("were moved to ").nth(1))
        .unwrap_or_else(|| panic!("where they went is said: {told}"))
        .trim()
        .to_owned();
    assert_eq!(std::fs::read_to_string(std::path::Path::new(&folder).join("notes.txt")).expect("backup"), precious);
    assert_eq!(std::fs::read_to_string(guest_dir.path().join("notes.txt")).expect("reads"), "the host's notes\n");
    std::fs::remove_dir_all(folder).ok();
}
