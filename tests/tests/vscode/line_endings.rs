//! A CRLF file stays CRLF on every copy when VS Code types new lines into it and saves.

use std::time::Duration;

use codecollab_tests::fixtures::until_server_text;
use codecollab_tests::fixtures::vscode::{serial, Setup};
use codecollab_tests::harness::poll_until;
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

#[test]
fn a_crlf_file_stays_crlf_on_every_copy_when_vscode_types_into_it() {
    let _serial = serial();
    let Setup { data: _data, server, host_dir, guest_dir } = Setup::start();
    std::fs::write(host_dir.path().join("dos.txt"), "first\r\nsecond\r\n").expect("write");
    let (_nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.join_from_palette(&invite).expect("join");
    vscode.open("dos.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+End"] })).expect("focus");
    vscode.call("type", json!({ "text": "New line from vic\n" })).expect("type");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "Top line\n" })).expect("type");
    vscode.save().expect("save");

    let expected = "Top line\r\nfirst\r\nsecond\r\nNew line from vic\r\n";
    until_server_text(&invite, "dos.txt", |t| t == expected);
    for (who, dir) in [("the host (Neovim's daemon writes it)", host_dir.path()), ("VS Code's save", guest_dir.path())]
    {
        let file = dir.join("dos.txt");
        poll_until(who, Duration::from_secs(30), Duration::from_millis(100), || {
            Ok(std::fs::read(&file).unwrap_or_default() == expected.as_bytes())
        })
        .unwrap_or_else(|_| panic!("{who}: {:?}", std::fs::read_to_string(&file)));
    }
}
