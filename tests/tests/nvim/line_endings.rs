//! A CRLF file stays CRLF on every copy when a Neovim (`fileformat=dos`) types new lines into it and saves.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::server_text;
use codecollab_tests::harness::{poll_until, ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;
use serde_json::json;

#[test]
fn a_crlf_file_stays_crlf_on_every_copy() {
    let data = TempDir::new("nvim-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("nvim-host"), TempDir::new("nvim-guest"));
    std::fs::write(host_dir.path().join("dos.txt"), "first\r\nsecond\r\n").expect("write");
    let (_ana, invite) = Nvim::share(host_dir.path(), &server.url(), "ana").expect("share");
    let mut ben = Nvim::join(&invite, guest_dir.path(), "ben").expect("join");
    ben.command("edit dos.txt").expect("edit");
    assert_eq!(ben.lua("return vim.bo.fileformat", json!([])).expect("lua"), json!("dos"));
    ben.input("GoNew line from ben<Esc>ggOTop line<Esc>").expect("types");
    ben.settle_input().expect("settled");
    ben.command("write").expect("saves");
    let expected = "Top line\r\nfirst\r\nsecond\r\nNew line from ben\r\n";
    poll_until("the server's text", Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(server_text(&invite, "dos.txt") == expected)
    })
    .expect("the session's text is CRLF");
    for (who, dir) in [("the host", host_dir.path()), ("the guest", guest_dir.path())] {
        let file = dir.join("dos.txt");
        poll_until(&format!("{who}'s file"), Duration::from_secs(20), Duration::from_millis(100), || {
            Ok(std::fs::read(&file).unwrap_or_default() == expected.as_bytes())
        })
        .unwrap_or_else(|_| panic!("{who}'s file: {:?}", std::fs::read_to_string(&file)));
    }
}
