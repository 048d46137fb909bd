//! Leaving Neovim's session with edits the server does not have yet (typed offline): never dropped silently. A plain
//! leave stays and names the files; `leave wait` leaves once the server has them; `leave!` leaves at once and says
//! they stay local.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::{messages, server_text, NvimPair};
use codecollab_tests::harness::ServerProcess;
use codecollab_tests::nvim::Nvim;
use serde_json::json;

fn in_session(nvim: &mut Nvim) -> bool {
    nvim.lua("return require('codecollab').state.session ~= nil", json!([])).expect("state") == json!(true)
}

#[test]
fn leaving_with_unsent_edits_asks_then_waits_for_the_server_or_says_they_stay_local() {
    let NvimPair { mut server, data, host_dir: _h, guest_dir, mut a, mut b, invite } = NvimPair::start();
    server.kill();
    for nvim in [&mut a, &mut b] {
        nvim.wait_for("reconnecting", Duration::from_secs(20), |n| Ok(n.status()?.contains("reconnecting")))
            .expect("the drop is seen");
    }
    a.input("ggIana offline <Esc>").expect("type");
    b.input("GAben offline<Esc>").expect("type");
    a.settle_input().expect("settled");
    b.settle_input().expect("settled");

    // A plain leave stays in the session and says which file holds what the server lacks, and what to do.
    a.command("CodeCollab leave").expect("leave");
    a.wait_for("the answer", Duration::from_secs(10), |n| Ok(messages(n).contains("still in the session")))
        .expect("told");
    let said = messages(&mut a);
    assert!(said.contains("doc.txt") && said.contains("leave wait") && said.contains("leave!"), "{said}");
    assert!(in_session(&mut a));

    // leave! leaves at once and says those edits stay local.
    b.command("CodeCollab leave!").expect("leave!");
    b.wait_for("ben to leave", Duration::from_secs(10), |n| Ok(!in_session(n))).expect("left");
    let said = messages(&mut b);
    assert!(said.contains("never reached the server") && said.contains("doc.txt"), "{said}");
    let on_disk = std::fs::read_to_string(guest_dir.path().join("doc.txt")).unwrap_or_default();
    let in_buffer = b.text().expect("text");
    assert!(in_buffer.contains("ben offline"), "kept in the buffer: {in_buffer:?} (disk: {on_disk:?})");

    // leave wait: Ana leaves once the server, back, has her edit.
    a.command("CodeCollab leave wait").expect("leave wait");
    a.wait_for("waiting", Duration::from_secs(10), |n| Ok(messages(n).contains("waiting for the server")))
        .expect("told it waits");
    assert!(in_session(&mut a), "still in while the server is away");
    let _server = ServerProcess::spawn(&server.addr.to_string(), data.path(), &[]).expect("restart");
    a.wait_for("ana to leave", Duration::from_secs(30), |n| Ok(!in_session(n))).expect("left once sent");
    assert!(messages(&mut a).contains("every edit reached the server"), "{}", messages(&mut a));
    let text = server_text(&invite, "doc.txt");
    assert!(text.starts_with("ana offline "), "the server has her edit: {text:?}");
    assert!(!text.contains("ben offline"), "ben's stayed local, as he was told: {text:?}");
}
