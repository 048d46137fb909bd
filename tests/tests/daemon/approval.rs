//! Files that editors or shells run by themselves when a folder opens (`.vscode/tasks.json`, `.envrc`, ...) are
//! never written on anyone's disk from someone else's change without that person's yes: the daemon tells the editor
//! (`collab/approval`) and waits for `collab/allow`, unless its user chose to allow them all.

use std::time::Duration;

use codecollab_tests::harness::{poll_until, TempDir, TestServer};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use serde_json::json;

use codecollab_tests::fixtures::scripted::{join, share};
use codecollab_tests::fixtures::uri;

/// Waits until `editor` has been told about `path`.
async fn told(editor: &mut ScriptedEditor, path: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = editor.approvals.iter().rev().find(|a| a["path"] == path) {
            return found.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never told about {path}: {:?}", editor.approvals);
        editor.drain(Duration::from_millis(50)).await.expect("daemon runs");
    }
}

fn read(dir: &TempDir, path: &str) -> Option<String> {
    std::fs::read_to_string(dir.path().join(path)).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_changes_to_files_that_run_by_themselves_wait_for_a_yes() {
    let server = TestServer::start(|_| {}).await;
    let (host, guest, trusting) = (TempDir::new("a"), TempDir::new("b"), TempDir::new("c"));
    std::fs::write(host.path().join(".envrc"), "export HOST=1\n").expect("writes");
    std::fs::write(host.path().join("notes.txt"), "plain\n").expect("writes");
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let mut c = ScriptedEditor::start_with(Encoding::Utf8, &[], json!({"allowRunnableFiles": true})).await.expect("c");
    let (invite, _) = share(&mut a, host.path(), &server.url(), "ada").await;

    // Joining: the host's .envrc would run on the guest's machine; it waits, the plain file does not.
    join(&mut b, &invite, guest.path(), "bob").await;
    let approval = told(&mut b, ".envrc").await;
    assert_eq!((approval["by"].clone(), approval["created"].clone()), (json!(["the session"]), json!(true)));
    assert_eq!(read(&guest, "notes.txt").as_deref(), Some("plain\n"));
    assert_eq!(read(&guest, ".envrc"), None, "not written before the yes");
    let allowed = b.request("collab/allow", json!({"uri": approval["uri"]})).await.expect("allows");
    assert_eq!(allowed, json!({"written": true}));
    assert_eq!(read(&guest, ".envrc").as_deref(), Some("export HOST=1\n"));

    // A guest creates .vscode/tasks.json: the host is told who did, and nothing lands in the host's folder.
    let tasks = uri(&guest.path().join(".vscode/tasks.json"));
    b.open(&tasks, "{\"tasks\": []}\n").await.expect("creates");
    let approval = told(&mut a, ".vscode/tasks.json").await;
    assert_eq!(approval["by"], json!(["bob"]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read(&host, ".vscode/tasks.json"), None, "not written on the host before the yes");
    a.request("collab/allow", json!({"uri": approval["uri"]})).await.expect("allows");
    assert_eq!(read(&host, ".vscode/tasks.json").as_deref(), Some("{\"tasks\": []}\n"));

    // A later change by the guest asks again, naming the guest; the host's copy stays as allowed until then.
    a.approvals.clear();
    b.type_at(&tasks, 1, 1, "\"evil\": 1, ").await.expect("types");
    let approval = told(&mut a, ".vscode/tasks.json").await;
    assert_eq!((approval["by"].clone(), approval["created"].clone()), (json!(["bob"]), json!(false)));
    assert_eq!(read(&host, ".vscode/tasks.json").as_deref(), Some("{\"tasks\": []}\n"));
    a.request("collab/allow", json!({"uri": approval["uri"]})).await.expect("allows");
    assert_eq!(read(&host, ".vscode/tasks.json").as_deref(), Some("{\"evil\": 1, \"tasks\": []}\n"));

    // Someone who chose to allow them all gets them written at once, and is not asked.
    join(&mut c, &invite, trusting.path(), "cy").await;
    poll_until(".envrc at c", Duration::from_secs(10), Duration::from_millis(20), || {
        Ok(read(&trusting, ".envrc").as_deref() == Some("export HOST=1\n"))
    })
    .expect("written without asking");
    c.drain(Duration::from_millis(200)).await.expect("c");
    assert!(c.approvals.is_empty(), "{:?}", c.approvals);
    // Allowing a file that waits for nothing says so.
    let nothing =
        a.request("collab/allow", json!({"uri": uri(&host.path().join("notes.txt"))})).await.expect("answers");
    assert_eq!(nothing, json!({"written": false}));
}
