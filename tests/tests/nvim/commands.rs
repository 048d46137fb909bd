//! Each of Neovim's editing commands, alone, leaves the buffer exactly as the server has it.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::{server_text, DOC};
use codecollab_tests::harness::{poll_until, ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;

/// Each editing command, alone, leaves the buffer exactly as the server has it (`J`, `u`, `dG`, visual-block
/// insert, `:s`, multibyte and emoji text).
#[test]
fn every_editing_command_keeps_the_buffer_equal_to_the_server() {
    let data = TempDir::new("nvim-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let host_dir = TempDir::new("nvim-host");
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    let (mut a, invite) = Nvim::share(host_dir.path(), &server.url(), "ana").expect("share");
    a.command("edit doc.txt").expect("edit");
    for keys in [
        "ggiHello 👩\u{200d}💻 <Esc>",
        "2Gdd",
        "ggJ",
        "Go日本語 e\u{301}<Esc>",
        "u",
        "$a!<Esc>",
        "Goend 😀<Esc>",
        "ggyyp",
        ":%s/x/y/g<CR>",
        "gg0<C-v>jjIé <Esc>",
        "3GA tail<Esc>",
        "Gdd",
        "u",
        "ggdG",
        "u",
    ] {
        let before = a.text().expect("text");
        a.input(keys).expect("keys");
        a.settle_input().expect("settle");
        // Every command here changes the text; `u` does through the daemon (undo of one's own changes), so the
        // buffer changes once its answer is back, not when the keys are processed.
        let (mut local, mut remote) = (String::new(), String::new());
        let agreed = poll_until(
            "the command to change the buffer, and the server to hold the buffer's text",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                local = a.text()?;
                remote = server_text(&invite, "doc.txt");
                Ok(local != before && remote == local)
            },
        );
        assert!(agreed.is_ok(), "after {keys:?}: the buffer has {local:?}, the server {remote:?}");
    }
}
