//! Two Neovims typing into one file at once end with identical buffers, equal to the server's.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::{converge, server_text, NvimPair, DOC};

#[test]
fn two_neovims_typing_at_once_end_identical() {
    // Named bindings, not `..`: the server and the folders must live until the end of the test.
    let NvimPair { server: _server, data: _data, host_dir: _host_dir, guest_dir, mut a, mut b, invite } =
        NvimPair::start();
    assert_eq!(std::fs::read_to_string(guest_dir.path().join("doc.txt")).expect("materialized"), DOC);
    // Both type at once: inputs to the two Neovims interleave while their daemons exchange edits.
    let scripts_a = ["ggiHello 👩\u{200d}💻 <Esc>", "2Gdd", "ggJ", "Go日本語 e\u{301}<Esc>", "u", "$a!<Esc>"];
    let scripts_b = ["Goend 😀<Esc>", "ggyyp", ":%s/x/y/g<CR>", "gg0<C-v>jjIé <Esc>", "3GA tail<Esc>", "gg"];
    for (ka, kb) in scripts_a.iter().zip(scripts_b.iter()) {
        a.input(ka).expect("keys");
        b.input(kb).expect("keys");
        std::thread::sleep(Duration::from_millis(30));
    }
    // Ana's `u` goes through the daemon: wait for it to land before the two are compared.
    a.wait_for("Ana's undo", Duration::from_secs(20), |n| Ok(!n.text()?.contains("日本語"))).expect("undone");
    let text = converge(&mut [&mut a, &mut b]);
    assert_ne!(text, DOC, "the edits happened");
    // Ana's `u` undoes her own most recent change (the line she added), whatever Ben did meanwhile; her first edit,
    // several changes back, is there.
    assert!(text.contains("Hello 👩\u{200d}💻"), "{text}");
    assert!(!text.contains("日本語"), "Ana's u took back her own latest change: {text}");
    assert_eq!(server_text(&invite, "doc.txt"), text, "and the server agrees");
}
