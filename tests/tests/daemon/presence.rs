//! Presence across a server restart, through real daemons: every cursor an editor shows carries the name of the
//! peer who put it there, and nothing of the peers' old connections stays behind.

use std::time::Duration;

use codecollab_tests::fixtures::scripted::{join, pair};
use codecollab_tests::fixtures::uri;
use codecollab_tests::harness::{ServerProcess, TempDir};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use serde_json::{json, Value};

const TEXT: &str = "zero\none\ntwo\nthree\n";

/// A caret at the start of `line`.
fn caret(line: u32) -> Value {
    json!({"start": {"line": line, "character": 0}, "end": {"line": line, "character": 0}})
}

/// The cursors `editor` shows in `uri`, as (name, first line, colour).
fn shown(editor: &ScriptedEditor, uri: &str) -> Vec<(String, u64, String)> {
    let cursors = editor.cursors.get(uri).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut shown: Vec<_> = cursors
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("?").to_owned();
            let line = c["ranges"][0]["start"]["line"].as_u64().unwrap_or(u64::MAX);
            (name, line, c["color"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    shown.sort();
    shown
}

/// Pumps `editor` until `done` holds of what it shows in `uri`; fails with what it shows after `what` times out.
async fn until_shown(
    editor: &mut ScriptedEditor,
    uri: &str,
    what: &str,
    done: impl Fn(&[(String, u64, String)]) -> bool,
) -> Vec<(String, u64, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = shown(editor, uri);
        if done(&now) {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "waiting for {what}; shown: {now:?}");
        editor.pump(Duration::from_millis(50)).await.expect("pump");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_every_cursor_keeps_its_owners_name() {
    let data = TempDir::new("presence-restart");
    let mut server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let dirs = [TempDir::new("ada"), TempDir::new("bob"), TempDir::new("cy")];
    std::fs::write(dirs[0].path().join("c.txt"), TEXT).expect("write");
    let (mut ada, mut bob, invite, _) =
        pair(&server.url(), dirs[0].path(), dirs[1].path(), (Encoding::Utf16, Encoding::Utf8)).await;
    let mut cy = ScriptedEditor::start(Encoding::Utf32, &[]).await.expect("cy");
    join(&mut cy, &invite, dirs[2].path(), "cy").await;
    let uris: Vec<String> = dirs.iter().map(|d| uri(&d.path().join("c.txt"))).collect();
    for (editor, (uri, line)) in [&mut ada, &mut bob, &mut cy].into_iter().zip(uris.iter().zip([0, 1, 2])) {
        editor.open(uri, TEXT).await.expect("open");
        editor.notify("collab/cursor", json!({"uri": uri, "ranges": [caret(line)]})).await.expect("cursor");
    }
    let before = until_shown(&mut ada, &uris[0], "bob's and cy's cursors", |s| s.len() == 2).await;
    assert_eq!((before[0].0.as_str(), before[0].1), ("bob", 1));
    assert_eq!((before[1].0.as_str(), before[1].1), ("cy", 2));

    // The server dies and comes back; all three reconnect, in whatever order their backoffs take them.
    server.kill();
    let listen = server.addr.to_string();
    for editor in [&mut ada, &mut bob, &mut cy] {
        editor.wait_state("reconnecting", Duration::from_secs(20)).await.expect("the drop is noticed");
    }
    server = ServerProcess::spawn(&listen, data.path(), &[]).expect("server restarts");
    for editor in [&mut ada, &mut bob, &mut cy] {
        editor.wait_state("connected", Duration::from_secs(30)).await.expect("reconnects");
    }

    // Bob moves. Ada sees him where he is now, under his name; cy's cursor, re-announced by her daemon, is where
    // she left it, under hers; and no cursor is ever shown under ada's own name or at a place nobody is.
    bob.notify("collab/cursor", json!({"uri": uris[1], "ranges": [caret(3)]})).await.expect("cursor");
    let after = until_shown(&mut ada, &uris[0], "bob at line 3 and cy at line 2", |s| {
        s.iter().any(|c| c.0 == "bob" && c.1 == 3) && s.iter().any(|c| c.0 == "cy" && c.1 == 2)
    })
    .await;
    ada.drain(Duration::from_millis(500)).await.expect("drain");
    let settled = shown(&ada, &uris[0]);
    assert_eq!(settled, after, "nothing else arrives");
    let places: Vec<(&str, u64)> = settled.iter().map(|c| (c.0.as_str(), c.1)).collect();
    assert_eq!(places, [("bob", 3), ("cy", 2)], "only the living cursors, each under its owner's name");
    assert_ne!(settled[0].2, settled[1].2, "two peers, two colours");
    // The peer list says the same: three people, ada is herself, each name once.
    let peers = ada.peers.as_array().cloned().unwrap_or_default();
    let mut names: Vec<&str> = peers.iter().filter_map(|p| p["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["ada", "bob", "cy"], "{peers:?}");
    let you: Vec<&str> = peers.iter().filter(|p| p["you"] == true).filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(you, ["ada"]);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_list_says_which_file_a_peer_moved_to_even_a_new_one() {
    let mut pair =
        codecollab_tests::fixtures::scripted::Pair::start(&[("c.txt", TEXT)], (Encoding::Utf8, Encoding::Utf8)).await;
    let (ua, _ub) = pair.open_both("c.txt", TEXT).await;
    let where_is_ada = |b: &ScriptedEditor| {
        let peers = b.peers.as_array().cloned().unwrap_or_default();
        peers.iter().find(|p| p["name"] == "ada").and_then(|p| p["uri"].as_str().map(str::to_owned))
    };
    pair.a.notify("collab/cursor", json!({"uri": ua, "ranges": [caret(1)]})).await.expect("cursor");
    let guest_c = uri(&pair.guest.path().join("c.txt"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while where_is_ada(&pair.b).as_deref() != Some(guest_c.as_str()) {
        assert!(tokio::time::Instant::now() < deadline, "ada not seen in c.txt: {:?}", pair.b.peers);
        pair.b.pump(Duration::from_millis(50)).await.expect("pump");
    }
    // Ada opens a new file, types in it, and her caret is there.
    let (na, _) = pair.uris("new.txt");
    pair.a.open(&na, "").await.expect("open");
    pair.a.type_at(&na, 0, 0, "hello").await.expect("type");
    pair.a
        .notify(
            "collab/cursor",
            json!({"uri": na, "ranges": [{"start": {"line": 0, "character": 5}, "end": {"line": 0, "character": 5}}]}),
        )
        .await
        .expect("cursor");
    let guest_new = uri(&pair.guest.path().join("new.txt"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while where_is_ada(&pair.b).as_deref() != Some(guest_new.as_str()) {
        assert!(tokio::time::Instant::now() < deadline, "ada not seen in new.txt: {:?}", pair.b.peers);
        pair.a.pump(Duration::from_millis(10)).await.expect("pump");
        pair.b.pump(Duration::from_millis(50)).await.expect("pump");
    }
}
