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

#[test]
fn edits_in_a_long_line_reach_the_other_whole() {
    let NvimPair { server: _server, data: _data, host_dir: _host_dir, guest_dir: _guest_dir, mut a, mut b, invite } =
        NvimPair::start();
    // A 4,500-byte line of two-byte and one-byte characters: the plugin finds each edit in it from where the edit
    // starts (what `on_bytes` says), not by walking the line.
    a.command("call append(1, repeat('é', 1500) . repeat('a', 1500))").expect("long line");
    converge(&mut [&mut a, &mut b]);
    // Several changes in one input (one flush: the earliest start bounds what is the same), a deletion, and the
    // other's typing at once.
    a.input("2G$aEND1<Esc>2G0iSTART1<Esc>2G1600|iMID1<Esc>").expect("keys");
    b.input("2G800|iMIDB<Esc>2G$aENDB<Esc>").expect("keys");
    a.input("2G300|x").expect("keys");
    let text = converge(&mut [&mut a, &mut b]);
    let line = text.lines().nth(1).expect("the long line");
    for token in ["END1", "START1", "MID1", "MIDB", "ENDB"] {
        assert!(line.contains(token), "{token} is in the line: {line}");
    }
    assert_eq!(line.matches('é').count(), 1499, "one é deleted, the rest kept");
    assert_eq!(line.matches('a').count(), 1500, "every a kept");
    assert_eq!(server_text(&invite, "doc.txt"), text, "and the server agrees");
}
