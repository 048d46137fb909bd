//! The host removes a guest: the guest's edits and copy stop, and the invite no longer works.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::{messages, server_text, until_server_has, NvimPair};
use serde_json::json;

#[test]
fn the_host_removes_a_guest_whose_edits_and_copy_stop_and_whose_invite_no_longer_works() {
    let NvimPair { server: _server, data: _data, host_dir: _host_dir, guest_dir, a: mut ana, b: mut ben, invite } =
        NvimPair::start();
    ana.command("CodeCollab remove ben").expect("remove");
    ben.wait_for("Ben's session to end", Duration::from_secs(20), |n| {
        Ok(n.lua("return require('codecollab').state.connection", json!([]))? == json!("idle"))
    })
    .expect("ended");
    assert!(messages(&mut ben).contains("removed"), "Ben is told");
    assert!(messages(&mut ana).contains("ben was removed"), "Ana is told");
    // Ben's edits stop at once; his copy stops receiving.
    ben.input("ggIfrom ben after removal <Esc>").expect("types");
    ana.input("GAfrom ana after removal<Esc>").expect("types");
    ben.settle_input().expect("settled");
    ana.settle_input().expect("settled");
    until_server_has(&invite, "from ana after removal");
    std::thread::sleep(Duration::from_secs(1)); // ample for an edit to travel to a connected peer
    assert!(!ana.text().expect("text").contains("from ben"), "Ben's edit did not reach Ana");
    assert!(!server_text(&invite, "doc.txt").contains("from ben"), "nor the server");
    assert!(!ben.text().expect("text").contains("from ana"), "Ana's edit did not reach Ben");
    // His invite no longer works.
    ben.lua("require('codecollab').join(...)", json!([invite, guest_dir.path()])).expect("tries to join again");
    ben.wait_for("the refusal", Duration::from_secs(20), |n| Ok(messages(n).contains("join failed"))).expect("refused");
    assert!(messages(&mut ben).contains("removed"), "{}", messages(&mut ben));
}
