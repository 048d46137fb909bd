//! A Neovim (UTF-32 positions) and a UTF-16 editor co-edit one file and converge.

use std::time::Duration;

use codecollab_tests::fixtures::nvim::DOC;
use codecollab_tests::harness::{ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neovim_and_a_utf16_editor_co_edit_one_file() {
    use codecollab_tests::lsp::{Encoding, ScriptedEditor};
    let data = TempDir::new("nvim-server");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host_dir, guest_dir) = (TempDir::new("nvim-host"), TempDir::new("utf16-guest"));
    std::fs::write(host_dir.path().join("doc.txt"), DOC).expect("write");
    let (mut nvim, invite) = Nvim::share(host_dir.path(), &server.url(), "ana").expect("share");
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
        // The server too: Neovim's last `u` goes through the daemon, so it may land after the keys are processed.
        let server = codecollab_tests::editor::invite_server_text(&invite, "doc.txt").await.expect("server text");
        if ours == theirs && theirs == server {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not converge:\n{ours:?}\n{theirs:?}\n{server:?}");
    }
}
