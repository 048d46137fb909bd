//! The Neovim plugin in real headless Neovims, with real daemons and a real server.

use std::time::Duration;

use codecollab_tests::harness::{ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;
use serde_json::json;

const DOC: &str = "alpha beta\ngamma delta\nxxx yyy xxx\n";

fn host(server: &ServerProcess, dir: &TempDir, name: &str) -> (Nvim, String) {
    Nvim::share(dir.path(), &server.url(), name).expect("share")
}

fn guest(invite: &str, dir: &TempDir, name: &str) -> Nvim {
    Nvim::join(invite, dir.path(), name).expect("join")
}

/// A server, Ana sharing a folder holding doc.txt, and Ben joined into another; both have doc.txt open.
struct Pair {
    server: ServerProcess,
    data: TempDir,
    _dirs: (TempDir, TempDir),
    guest_dir: std::path::PathBuf,
    a: Nvim,
    b: Nvim,
    invite: String,
}

fn pair() -> Pair {
    let data = TempDir::new("nvim-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("nvim-host"), TempDir::new("nvim-guest"));
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    let (mut a, invite) = host(&server, &host_dir, "ana");
    let mut b = guest(&invite, &guest_dir, "ben");
    a.command("edit doc.txt").expect("edit");
    b.command("edit doc.txt").expect("edit");
    let guest_path = guest_dir.path().to_owned();
    Pair { server, data, _dirs: (host_dir, guest_dir), guest_dir: guest_path, a, b, invite }
}

fn server_text(invite: &str, path: &str) -> String {
    codecollab_tests::editor::server_text_of_invite(invite, path).expect("server text")
}

fn converge(editors: &mut [&mut Nvim]) -> String {
    for nvim in editors.iter_mut() {
        nvim.settle_input().expect("input processed");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let texts: Vec<String> = editors.iter_mut().map(|n| n.text().expect("text")).collect();
        if texts.windows(2).all(|w| w[0] == w[1]) {
            return texts[0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "Neovims did not converge:\n{texts:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_neovims_typing_at_once_end_identical() {
    // Named bindings, not `..`: the server and the folders must live until the end of the test.
    let Pair { server: _server, data: _data, _dirs, guest_dir, mut a, mut b, invite } = pair();
    assert_eq!(std::fs::read_to_string(guest_dir.join("doc.txt")).expect("materialized"), DOC);
    // Both type at once: inputs to the two Neovims interleave while their daemons exchange edits.
    let scripts_a = ["ggiHello 👩\u{200d}💻 <Esc>", "2Gdd", "ggJ", "Go日本語 e\u{301}<Esc>", "u", "$a!<Esc>"];
    let scripts_b = ["Goend 😀<Esc>", "ggyyp", ":%s/x/y/g<CR>", "gg0<C-v>jjIé <Esc>", "3GA tail<Esc>", "gg"];
    for (ka, kb) in scripts_a.iter().zip(scripts_b.iter()) {
        a.input(ka).expect("keys");
        b.input(kb).expect("keys");
        std::thread::sleep(Duration::from_millis(30));
    }
    let text = converge(&mut [&mut a, &mut b]);
    assert_ne!(text, DOC, "the edits happened");
    // Ana's `u` undoes the most recent change in her buffer, which may be one of Ben's (remote edits are undo
    // blocks of their own; the undo is an ordinary edit everyone receives): so only Ana's first edit, several
    // changes back, is certain to be there.
    assert!(text.contains("Hello 👩\u{200d}💻"), "{text}");
    assert_eq!(server_text(&invite, "doc.txt"), text, "and the server agrees");
}

#[test]
fn remote_cursors_are_extmarks_with_the_peers_name_and_move_with_the_text() {
    let Pair { server: _server, data: _data, _dirs, guest_dir: _, mut a, mut b, invite: _ } = pair();
    a.input("2G6|").expect("move"); // line 2, byte column 5
    let marks = "local ns = require('codecollab.cursors').ns \
                 local out = {} \
                 for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do \
                   if m[4].virt_text then table.insert(out, { m[2], m[3], m[4].virt_text[1][1] }) end \
                 end return out";
    b.wait_for("ana's cursor", Duration::from_secs(20), |n| Ok(n.lua(marks, json!([]))? == json!([[1, 5, " ana "]])))
        .expect("extmark at ana's caret with her name");
    // Text typed before her caret pushes the mark along.
    b.input("2GIab<Esc>").expect("type");
    b.settle_input().expect("settled");
    b.wait_for("the mark to move", Duration::from_secs(10), |n| {
        Ok(n.lua(marks, json!([]))? == json!([[1, 7, " ana "]]))
    })
    .expect("moved with the text");
    // Ana leaves: her cursor vanishes.
    a.lua("require('codecollab').leave()", json!([])).expect("leave");
    b.wait_for("the mark to vanish", Duration::from_secs(10), |n| Ok(n.lua(marks, json!([]))? == json!([])))
        .expect("gone");
}

#[test]
fn the_statusline_follows_a_server_restart_and_nothing_is_lost() {
    let Pair { mut server, data, _dirs, guest_dir: _, mut a, mut b, invite: _ } = pair();
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

#[test]
fn checkhealth_reports_ok_and_a_missing_daemon_clearly() {
    let dir = TempDir::new("nvim-health");
    let health =
        "vim.cmd('checkhealth codecollab') return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n')";
    let mut good = Nvim::start(dir.path(), "{}", true).expect("nvim");
    let report = good.lua(health, json!([])).expect("checkhealth").as_str().unwrap_or_default().to_owned();
    assert!(report.contains("OK") && report.contains("daemon: codecollab-daemon"), "{report}");
    let mut missing = Nvim::start(dir.path(), "{ daemon = '/nonexistent/codecollab-daemon' }", false).expect("nvim");
    let report = missing.lua(health, json!([])).expect("checkhealth").as_str().unwrap_or_default().to_owned();
    assert!(
        report.contains("ERROR") && report.contains("codecollab-daemon not found") && report.contains("cargo build"),
        "{report}"
    );
    // And :CodeCollab share says the same, as an error message, instead of failing obscurely.
    let error = missing.command("CodeCollab share").expect_err("reported as an error");
    assert!(error.to_string().contains("codecollab-daemon not found"), "{error}");
}

/// Each editing command, alone, leaves the buffer exactly as the server has it (`J`, `u`, `dG`, visual-block
/// insert, `:s`, multibyte and emoji text).
#[test]
fn every_editing_command_keeps_the_buffer_equal_to_the_server() {
    let data = TempDir::new("nvim-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let host_dir = TempDir::new("nvim-host");
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    let (mut a, invite) = host(&server, &host_dir, "ana");
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
        a.input(keys).expect("keys");
        a.settle_input().expect("settle");
        std::thread::sleep(Duration::from_millis(300));
        let local = a.text().expect("text");
        let remote = server_text(&invite, "doc.txt");
        assert_eq!(local, remote, "after {keys:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neovim_and_a_utf16_editor_co_edit_one_file() {
    use codecollab_tests::lsp::{Encoding, ScriptedEditor};
    let data = TempDir::new("nvim-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("nvim-host"), TempDir::new("utf16-guest"));
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    let (mut nvim, invite) = host(&server, &host_dir, "ana");
    nvim.command("edit doc.txt").expect("edit");
    let mut editor = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("scripted editor");
    let root = format!("file://{}", guest_dir.path().display());
    editor.request("collab/join", json!({"invite": invite, "root": root, "name": "vs"})).await.expect("join");
    let uri = format!("file://{}", guest_dir.path().join("doc.txt").display());
    editor.open(&uri, DOC).await.expect("open");
    editor.seed(5);
    let keys = ["ggiNeovim 日本 <Esc>", "jA 😀<Esc>", "Gdd", "ggJ", "Oline é<Esc>", "u"];
    for round in 0..30 {
        if round % 5 == 0 {
            nvim.input(keys[(round / 5) % keys.len()]).expect("keys");
        }
        editor.type_randomly(&uri).await.expect("type");
        while editor.pump(Duration::ZERO).await.expect("pump") {}
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nvim.settle_input().expect("settled");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        editor.drain(Duration::from_millis(200)).await.expect("drain");
        let (ours, theirs) = (nvim.text().expect("text"), editor.text(&uri));
        if ours == theirs {
            assert_eq!(
                codecollab_tests::editor::invite_server_text(&invite, "doc.txt").await.expect("server text"),
                ours
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not converge:\n{ours:?}\n{theirs:?}");
    }
}

#[test]
fn a_view_only_session_makes_shared_buffers_nomodifiable() {
    let data = TempDir::new("nvim-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("nvim-host"), TempDir::new("nvim-viewer"));
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    let (mut a, _) = host(&server, &host_dir, "ana");
    let view_invite = a.lua("return require('codecollab').state.view_invite", json!([])).expect("view invite");
    let mut viewer = guest(view_invite.as_str().expect("string"), &guest_dir, "vic");
    viewer.command("edit doc.txt").expect("edit");
    viewer
        .wait_for("readonly", Duration::from_secs(10), |n| Ok(n.status()?.starts_with("collab: readonly")))
        .expect("readonly state in the statusline");
    assert_eq!(viewer.lua("return vim.bo.modifiable", json!([])).expect("option"), json!(false));
    // The host's edits still arrive.
    a.command("edit doc.txt").expect("edit");
    a.input("ggIfrom ana: <Esc>").expect("keys");
    viewer
        .wait_for("the host's edit", Duration::from_secs(10), |n| Ok(n.text()?.starts_with("from ana: alpha")))
        .expect("received");
}

/// Neovim's `:messages`.
fn messages(nvim: &mut Nvim) -> String {
    let output = nvim.call("nvim_exec2", json!(["messages", {"output": true}])).expect("messages");
    output["output"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_file_that_runs_by_itself_created_by_a_guest_waits_for_the_hosts_allow() {
    let Pair { server: _server, data: _data, _dirs: (host_dir, _guest), a: mut ana, b: mut ben, invite, .. } = pair();
    // Ben creates .nvim.lua, which Neovim's 'exrc' would run when Ana next opens the folder.
    ben.command("edit .nvim.lua").expect("edit");
    ben.input("ivim.cmd('!touch pwned')<Esc>").expect("types");
    ben.settle_input().expect("settled");
    codecollab_tests::harness::poll_until(
        "Ben's text on the server",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || Ok(server_text(&invite, ".nvim.lua").contains("pwned")),
    )
    .expect("committed");
    ana.wait_for("Ana to be told", Duration::from_secs(20), |n| {
        Ok(n.lua("return require('codecollab').state.approvals['.nvim.lua'] ~= nil", json!([]))? == json!(true))
    })
    .expect("told");
    let told = messages(&mut ana);
    assert!(told.contains("ben created .nvim.lua") && told.contains(":CodeCollab allow .nvim.lua"), "{told}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!host_dir.path().join(".nvim.lua").exists(), "not written before Ana allows it");
    ana.command("CodeCollab allow .nvim.lua").expect("allow");
    let written = host_dir.path().join(".nvim.lua");
    ana.wait_for("the file to be written", Duration::from_secs(20), |_| Ok(written.exists())).expect("written");
    assert_eq!(std::fs::read_to_string(&written).expect("reads"), "vim.cmd('!touch pwned')\n");
}

#[test]
fn the_host_removes_a_guest_whose_edits_and_copy_stop_and_whose_invite_no_longer_works() {
    let Pair { server: _server, data: _data, _dirs, a: mut ana, b: mut ben, invite, guest_dir } = pair();
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
    poll_until_server_has(&invite, "from ana after removal");
    std::thread::sleep(Duration::from_secs(1)); // ample for an edit to travel to a connected peer
    assert!(!ana.text().expect("text").contains("from ben"), "Ben's edit did not reach Ana");
    assert!(!server_text(&invite, "doc.txt").contains("from ben"), "nor the server");
    assert!(!ben.text().expect("text").contains("from ana"), "Ana's edit did not reach Ben");
    // His invite no longer works.
    ben.lua("require('codecollab').join(...)", json!([invite, guest_dir])).expect("tries to join again");
    ben.wait_for("the refusal", Duration::from_secs(20), |n| Ok(messages(n).contains("join failed"))).expect("refused");
    assert!(messages(&mut ben).contains("removed"), "{}", messages(&mut ben));
}

fn poll_until_server_has(invite: &str, text: &str) {
    codecollab_tests::harness::poll_until(
        "the server to have it",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || Ok(server_text(invite, "doc.txt").contains(text)),
    )
    .expect("committed");
}
