//! The daemon through its real binary over stdio, driven by scripted editors that follow the editor protocol,
//! against a real server.

mod approval;
mod chaos;
mod editing;
mod faults;
mod hostile;
mod lifecycle;
mod resync;

use std::path::Path;
use std::time::Duration;

use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use serde_json::{json, Value};

pub fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Shares `root` from `editor` on `server`; returns (edit invite, view invite).
pub async fn share(editor: &mut ScriptedEditor, root: &Path, server: &str, name: &str) -> (String, String) {
    let result = editor
        .request("collab/share", json!({"root": uri(root), "server": server, "name": name}))
        .await
        .expect("share succeeds");
    (
        result["invite"].as_str().expect("invite").to_owned(),
        result["viewInvite"].as_str().expect("view invite").to_owned(),
    )
}

pub async fn join(editor: &mut ScriptedEditor, invite: &str, root: &Path, name: &str) -> Value {
    editor
        .request("collab/join", json!({"invite": invite, "root": uri(root), "name": name}))
        .await
        .expect("join succeeds")
}

/// Two scripted editors in one session, as most tests start: `a` (ada) shares `host` on `server`, `b` (bob) joins
/// into `guest`. Returns both, the edit invite, and `b`'s join answer.
pub async fn pair(
    server: &str,
    host: &Path,
    guest: &Path,
    (a_encoding, b_encoding): (Encoding, Encoding),
) -> (ScriptedEditor, ScriptedEditor, String, Value) {
    let mut a = ScriptedEditor::start(a_encoding, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(b_encoding, &[]).await.expect("b");
    let (invite, _) = share(&mut a, host, server, "ada").await;
    let joined = join(&mut b, &invite, guest, "bob").await;
    (a, b, invite, joined)
}

/// Lets every editor handle what arrives until all are quiet and their texts of `uri` agree (or time runs out).
pub async fn settle(editors: &mut [&mut ScriptedEditor], uris: &[&str]) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        for editor in editors.iter_mut() {
            editor.drain(Duration::from_millis(150)).await.expect("pump");
        }
        let texts: Vec<String> = editors.iter().zip(uris).map(|(e, u)| e.text(u)).collect();
        if texts.windows(2).all(|w| w[0] == w[1]) {
            return texts;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("editors did not converge:\n{texts:#?}");
        }
    }
}

/// The server's text of `path` in the session of `invite`, through a plain wire-protocol client.
pub async fn server_text(invite: &str, path: &str) -> String {
    let (url, token) = invite.split_once('#').expect("invite has a token");
    let url = url.split('?').next().expect("url").trim_end_matches('/');
    let (text, _) = codecollab_tests::editor::server_text(url, token, path).await.expect("server text");
    text
}
