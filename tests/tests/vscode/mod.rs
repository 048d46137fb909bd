//! The VS Code extension in a real VS Code workbench (code-server, driven by Playwright in Chromium), with a real
//! daemon, server and Neovim on the other side.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use codecollab_tests::editor::server_text_of_invite;
use codecollab_tests::harness::{poll_until, ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

/// A workbench is two heavy processes (code-server and Chromium) on a 2-core machine: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const DOC: &str = "alpha beta\ngamma delta\nxxx yyy xxx\n";

/// What VS Code types at full speed: several lines, non-ASCII (accents, CJK, an emoji outside the BMP, which is
/// two UTF-16 units) included.
const VSCODE_TEXT: &str = "fast typing from VS Code é 日本 😀 ok\nsecond line, still going\nthird 👩\u{200d}💻 line";

/// A server, a folder holding doc.txt to share, and an empty one to join into.
struct Setup {
    _data: TempDir,
    server: ServerProcess,
    host_dir: TempDir,
    guest_dir: TempDir,
}

fn setup() -> Setup {
    let data = TempDir::new("vscode-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("vscode-host"), TempDir::new("vscode-guest"));
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    Setup { _data: data, server, host_dir, guest_dir }
}

fn invite_in(notification: &str) -> String {
    let start = notification.find("ws://").expect("an invite in the notification");
    notification[start..].split_whitespace().next().expect("invite").to_owned()
}

/// Waits until the text VS Code shows, Neovim's buffer and the server all hold the same text; returns it.
fn converge(vscode: &mut VsCode, nvim: &mut Nvim, invite: &str, name: &str) -> String {
    let mut last = (String::new(), String::new(), String::new());
    let result = vscode.wait_for("VS Code, Neovim and the server to agree", Duration::from_secs(60), |vscode| {
        let in_vscode = vscode.visible_text()?;
        let in_nvim = nvim.text()?;
        let on_server = server_text_of_invite(invite, name)?;
        let same = in_vscode == in_nvim && in_nvim == on_server;
        last = (in_vscode, in_nvim, on_server);
        Ok(same)
    });
    if let Err(error) = result {
        panic!("{error}\nVS Code: {:?}\nNeovim:  {:?}\nserver:  {:?}", last.0, last.1, last.2);
    }
    last.0
}

#[test]
fn shared_from_vscode_joined_from_neovim_both_typing_at_once() {
    let _serial = serial();
    let Setup { _data, server, host_dir, guest_dir } = setup();

    let mut vscode = VsCode::start(host_dir.path(), Some(&server.url()), "vera").expect("VS Code");
    vscode.palette("CodeCollab: Share Folder").expect("share");
    let invite = invite_in(&vscode.notification("Invite").expect("the share's notification"));

    let mut nvim = Nvim::join(&invite, guest_dir.path(), "nora").expect("Neovim joins");
    assert_eq!(std::fs::read_to_string(guest_dir.path().join("doc.txt")).expect("joined file"), DOC);
    nvim.command("edit doc.txt").expect("edit");
    vscode.open("doc.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+End"] })).expect("focus");

    // Both type at once: VS Code at the end of the file at full speed, Neovim at the top and in the middle.
    vscode.send("type", json!({ "text": VSCODE_TEXT })).expect("type");
    for round in 0..8 {
        nvim.input(&format!("ggI[nvim {round}] <Esc>")).expect("input");
        nvim.input("jA+<Esc>").expect("input");
        std::thread::sleep(Duration::from_millis(40));
    }
    vscode.recv().expect("VS Code typed");
    nvim.settle_input().expect("Neovim settled");

    let text = converge(&mut vscode, &mut nvim, &invite, "doc.txt");
    assert!(text.contains(VSCODE_TEXT), "VS Code's typing arrived in one piece: {text:?}");
    for round in 0..8 {
        assert!(text.contains(&format!("[nvim {round}] ")), "Neovim's round {round} is there: {text:?}");
    }
    assert_eq!(text.matches('+').count(), 8, "every `+` Neovim appended is there: {text:?}");

    // Neovim's caret shows in VS Code with her name; the status bar counts her.
    nvim.input("gg0").expect("move");
    vscode
        .wait_for("Neovim's named cursor in VS Code", Duration::from_secs(20), |v| {
            Ok(v.cursor_names()?.iter().any(|n| n == "nora"))
        })
        .expect("cursor decoration");
    // One other person (the test's own server-text observers come and go; wait for them to be gone).
    vscode
        .wait_for("the status bar to count Nora", Duration::from_secs(20), |v| {
            let status = v.status()?;
            Ok(status.contains("connected") && status.ends_with("· 1"))
        })
        .expect("status bar");

    // When she leaves, her cursor goes.
    drop(nvim);
    vscode
        .wait_for("the cursor to go", Duration::from_secs(20), |v| Ok(!v.cursor_names()?.iter().any(|n| n == "nora")))
        .expect("cursor removed");

    // If the daemon dies, the session ends visibly here (no silent restart into a daemon without the session).
    assert_eq!(vscode.kill_daemons().expect("kill"), 1, "one daemon per VS Code window");
    vscode.notification("daemon stopped").expect("told the daemon stopped");
    vscode
        .wait_for("the status bar item to go", Duration::from_secs(20), |v| Ok(v.status()?.is_empty()))
        .expect("ended");
}

#[test]
fn shared_from_neovim_joined_from_the_vscode_palette() {
    let _serial = serial();
    let Setup { _data, server, host_dir, guest_dir } = setup();
    std::fs::create_dir(host_dir.path().join("src")).expect("mkdir");
    std::fs::write(host_dir.path().join("src/lib.rs"), "fn main() {}\n").expect("write");

    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    nvim.command("edit doc.txt").expect("edit");

    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    let joined = vscode.join_from_palette(&invite).expect("join");
    assert!(joined.contains("joined, 2 files"), "{joined}");
    assert_eq!(std::fs::read_to_string(guest_dir.path().join("src/lib.rs")).expect("joined file"), "fn main() {}\n");

    vscode.open("doc.txt").expect("open");
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "from VS Code: 😀\n" })).expect("type");
    nvim.input("GAfrom Neovim<Esc>").expect("input");
    nvim.settle_input().expect("settled");
    let text = converge(&mut vscode, &mut nvim, &invite, "doc.txt");
    assert!(text.starts_with("from VS Code: 😀\nalpha beta\n"), "{text:?}");
    assert!(text.contains("from Neovim"), "{text:?}");

    // Following Nils: when he goes to another file, VS Code opens it.
    vscode.palette("CodeCollab: Follow Peer").expect("follow command");
    vscode.call("input", json!({ "text": "nils", "title": "Follow Peer" })).expect("pick nils");
    nvim.command("edit src/lib.rs").expect("edit");
    nvim.input("w").expect("move");
    vscode
        .wait_for("VS Code to follow Nils into lib.rs", Duration::from_secs(20), |v| {
            Ok(v.active_tab()?.starts_with("lib.rs"))
        })
        .expect("followed");
    let status = vscode.status().expect("status");
    assert!(status.contains("following"), "status bar: {status:?}");
}

#[test]
fn a_view_only_session_makes_vscode_read_only_while_remote_edits_arrive() {
    let _serial = serial();
    let Setup { _data, server, host_dir, guest_dir } = setup();
    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    let view_invite = nvim.lua("return require('codecollab').state.view_invite", json!([])).expect("view");
    nvim.command("edit doc.txt").expect("edit");

    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.join_from_palette(view_invite.as_str().expect("a string")).expect("join");
    vscode.notification("view-only").expect("told it is view-only");
    vscode.open("doc.txt").expect("open");
    vscode
        .wait_for("the read-only state", Duration::from_secs(20), |v| Ok(v.status()?.contains("readonly")))
        .expect("readonly");

    vscode
        .wait_for("the editor to be read-only", Duration::from_secs(10), |v| {
            Ok(v.call("readOnly", json!({}))?["readOnly"] == true)
        })
        .expect("read-only editor");
    // Typing in VS Code changes nothing anywhere; Neovim's typing still arrives.
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "zzz" })).expect("type");
    nvim.input("GAfrom the host<Esc>").expect("input");
    nvim.settle_input().expect("settled");
    vscode
        .wait_for("the host's edit in VS Code", Duration::from_secs(20), |v| {
            Ok(v.visible_text()?.contains("from the host"))
        })
        .expect("remote edit shown");
    let expected = "alpha beta\ngamma delta\nxxx yyy xxxfrom the host\n";
    assert_eq!(vscode.visible_text().expect("text"), expected, "VS Code shows the host's text, without zzz");
    assert_eq!(nvim.text().expect("text"), expected);
    assert_eq!(server_text_of_invite(&invite, "doc.txt").expect("server"), expected);

    // Show Peers lists the host; Leave ends the session here (the status bar item goes) and not for the host.
    vscode.palette("CodeCollab: Show Peers").expect("show peers");
    let peers = vscode.call("quickPick", json!({ "title": "Peers" })).expect("peers");
    // Each row: the name, then (as detail) the file the peer is in.
    assert_eq!(peers["labels"], json!(["nils", "doc.txt"]), "{peers}");
    vscode.palette("CodeCollab: Leave").expect("leave");
    vscode
        .wait_for("the status bar item to go", Duration::from_secs(20), |v| Ok(v.status()?.is_empty()))
        .expect("left");
    nvim.input("GAstill here<Esc>").expect("input");
    nvim.settle_input().expect("settled");
    // Neovim has the text; its daemon sends it on, and the server commits it, a moment later.
    poll_until("the host's edit to reach the server", Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(server_text_of_invite(&invite, "doc.txt")?.ends_with("still here\n"))
    })
    .expect("the host's edit is committed");
    std::thread::sleep(Duration::from_secs(1)); // ample for an edit to reach a connected peer
    assert!(!vscode.visible_text().expect("text").contains("still here"), "VS Code has left: no more edits arrive");
    // Left, the file is an ordinary writable file again.
    assert_eq!(vscode.call("readOnly", json!({})).expect("read-only?")["readOnly"], false);
    vscode.call("focus", json!({ "keys": ["Control+End"] })).expect("focus");
    vscode.call("type", json!({ "text": "mine" })).expect("type");
    vscode
        .wait_for("typing to work again", Duration::from_secs(10), |v| Ok(v.visible_text()?.contains("mine")))
        .expect("writable after leaving");
}

#[test]
fn vscode_shows_reconnecting_through_a_server_restart_and_loses_nothing() {
    let _serial = serial();
    let Setup { _data: data, mut server, host_dir, guest_dir } = setup();
    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "nils").expect("Neovim shares");
    nvim.command("edit doc.txt").expect("edit");
    let mut vscode = VsCode::start(guest_dir.path(), None, "vic").expect("VS Code");
    vscode.join_from_palette(&invite).expect("join");
    vscode.open("doc.txt").expect("open");

    server.kill();
    vscode
        .wait_for("reconnecting", Duration::from_secs(20), |v| Ok(v.status()?.contains("reconnecting")))
        .expect("reconnecting shown");
    // Both keep typing while the server is down.
    vscode.call("focus", json!({ "keys": ["Control+Home"] })).expect("focus");
    vscode.call("type", json!({ "text": "offline in VS Code\n" })).expect("type");
    nvim.input("GAoffline in Neovim<Esc>").expect("input");
    nvim.settle_input().expect("settled");

    let _restarted = ServerProcess::spawn(&server.addr.to_string(), data.path(), &[]).expect("restart");
    vscode
        .wait_for("connected again", Duration::from_secs(30), |v| Ok(v.status()?.contains("connected")))
        .expect("connected shown");
    let text = converge(&mut vscode, &mut nvim, &invite, "doc.txt");
    assert!(text.starts_with("offline in VS Code\n") && text.contains("offline in Neovim"), "{text:?}");
}

#[test]
fn vscode_asks_before_writing_a_task_a_guest_created_and_the_host_removes_the_guest() {
    let _serial = serial();
    let Setup { _data, server, host_dir, guest_dir } = setup();
    let mut vscode = VsCode::start(host_dir.path(), Some(&server.url()), "vera").expect("VS Code");
    vscode.palette("CodeCollab: Share Folder").expect("share");
    let invite = invite_in(&vscode.notification("Invite").expect("the share's notification"));
    let mut nvim = Nvim::join(&invite, guest_dir.path(), "nora").expect("Neovim joins");

    // Nora creates .vscode/tasks.json, which VS Code may run by itself when the folder opens.
    nvim.command("edit .vscode/tasks.json").expect("edit");
    nvim.input(r#"i{"version": "2.0.0", "tasks": [{"label": "x", "command": "touch pwned", "runOptions": {"runOn": "folderOpen"}}]}<Esc>"#)
        .expect("types");
    nvim.settle_input().expect("settled");
    poll_until("Nora's task on the server", Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(server_text_of_invite(&invite, ".vscode/tasks.json")?.contains("folderOpen"))
    })
    .expect("committed");
    let tasks = host_dir.path().join(".vscode/tasks.json");
    vscode.notification("nora created .vscode/tasks.json").expect("VS Code tells who created what");
    assert!(!tasks.exists(), "nothing written before the host's yes");
    vscode.notification_action("nora created .vscode/tasks.json", "Allow").expect("allow");
    poll_until("the task to be written", Duration::from_secs(20), Duration::from_millis(100), || Ok(tasks.exists()))
        .expect("written");
    assert!(std::fs::read_to_string(&tasks).expect("reads").contains("folderOpen"));

    // The host removes Nora from the palette: her session ends, and her invite no longer works.
    vscode.palette("CodeCollab: Remove Peer").expect("remove command");
    vscode.pick("Remove Peer", "nora").expect("pick nora");
    vscode.notification("nora was removed").expect("told");
    nvim.wait_for("Nora's session to end", Duration::from_secs(20), |n| {
        Ok(n.lua("return require('codecollab').state.connection", json!([]))? == json!("idle"))
    })
    .expect("ended");
    let refused = Nvim::join(&invite, guest_dir.path(), "nora");
    assert!(refused.is_err(), "the invite no longer works");
}
