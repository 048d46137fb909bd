//! The statusline follows a server restart, and what both typed meanwhile is kept.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::{converge, NvimPair};
use codecollab_tests::harness::ServerProcess;

#[test]
fn the_statusline_follows_a_server_restart_and_nothing_is_lost() {
    let NvimPair { mut server, data, host_dir: _host_dir, guest_dir: _guest_dir, mut a, mut b, invite: _ } =
        NvimPair::start();
    assert!(a.status().expect("status").starts_with("collab: connected"), "{}", a.status().unwrap_or_default());
    server.kill();
    a.wait_for("reconnecting", Duration::from_secs(10), |n| Ok(n.status()?.starts_with("collab: reconnecting")))
        .expect("reconnecting");
    // Typing goes on while the server is down.
    a.input("ggAoffline-a<Esc>").expect("keys");
    b.input("GAoffline-b<Esc>").expect("keys");
    let listen = server.addr.to_string();
    let _server = ServerProcess::spawn(&listen, data.path(), &[]).expect("restart");
    a.wait_for("connected", Duration::from_secs(20), |n| Ok(n.status()?.starts_with("collab: connected")))
        .expect("connected");
    let text = converge(&mut [&mut a, &mut b]);
    assert!(text.contains("offline-a") && text.contains("offline-b"), "{text}");
}
