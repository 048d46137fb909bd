//! Undo of one's own edits through the daemon (`collab/undo`, `collab/redo`): only the asking editor's steps are
//! taken back, everyone else's stay, on every copy; steps a peer emptied are skipped; where steps end is the
//! editor's to say (`undoStop`), and an editor that says nothing has each edit undone on its own.

use codecollab_tests::fixtures::scripted::{until, Pair};
use codecollab_tests::lsp::Encoding;
use serde_json::{json, Value};
use std::time::Duration;

/// Waits until both editors and the server hold `expected`.
async fn everywhere(pair: &mut Pair, expected: &str) {
    let (ua, ub) = pair.uris("doc.txt");
    until(&mut [&mut pair.a, &mut pair.b], &[&ua, &ub], Duration::from_secs(30), expected, |texts| {
        texts.iter().all(|t| t == expected)
    })
    .await;
    let invite = pair.invite.clone();
    let server = codecollab_tests::fixtures::scripted::server_text(&invite, "doc.txt").await;
    assert_eq!(server, expected, "the server agrees");
}

fn done(answer: Value) -> bool {
    answer["done"].as_bool().unwrap_or_else(|| panic!("an answer with done: {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_takes_back_only_ones_own_steps_on_every_copy_and_redo_brings_them_back() {
    let mut pair = Pair::start(&[("doc.txt", "alpha\n")], (Encoding::Utf16, Encoding::Utf8)).await;
    let (ua, ub) = pair.open_both("doc.txt", "alpha\n").await;
    // a types one step of two keystrokes (the editor says where steps end), b types inside and around it.
    pair.a.type_in_step(&ua, (0, 0), "<a1", true).await.expect("a types");
    pair.a.type_in_step(&ua, (3, 3), ">", false).await.expect("a types");
    everywhere(&mut pair, "<a1>alpha\n").await;
    pair.b.type_at(&ub, 2, 2, "<b1>").await.expect("b types inside a's text");
    pair.b.type_at(&ub, 14, 14, "<b2>").await.expect("b types at the end");
    everywhere(&mut pair, "<a<b1>1>alpha\n<b2>").await;

    // a undoes: its step goes, b's typing (inside it too) stays, everywhere. The change came before the answer.
    assert!(done(pair.a.request("collab/undo", json!({"uri": ua})).await.expect("undo")));
    assert_eq!(pair.a.waiting("collab/edit"), 1, "the change came before the answer");
    everywhere(&mut pair, "<b1>alpha\n<b2>").await;
    assert!(!done(pair.a.request("collab/undo", json!({"uri": ua})).await.expect("undo")), "nothing left");
    // b's undo takes back b's own, not a's.
    assert!(done(pair.b.request("collab/undo", json!({"uri": ub})).await.expect("b undoes")));
    everywhere(&mut pair, "<b1>alpha\n").await;
    // a redoes its step.
    assert!(done(pair.a.request("collab/redo", json!({"uri": ua})).await.expect("redo")));
    everywhere(&mut pair, "<a<b1>1>alpha\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_a_peer_deleted_is_skipped_and_each_edit_is_a_step_when_the_editor_says_nothing() {
    let mut pair = Pair::start(&[("doc.txt", "alpha\n")], (Encoding::Utf8, Encoding::Utf16)).await;
    let (ua, ub) = pair.open_both("doc.txt", "alpha\n").await;
    // Without `undoStop`, each edit is a step of its own.
    pair.a.type_at(&ua, 0, 0, "<a1>").await.expect("a types");
    pair.a.type_at(&ua, 4, 4, "<a2>").await.expect("a types");
    pair.a.type_at(&ua, 8, 8, "<a3>").await.expect("a types");
    everywhere(&mut pair, "<a1><a2><a3>alpha\n").await;
    // b deletes a's last token: a's undo skips that step (nothing left of it) and takes back the one before.
    pair.b.type_at(&ub, 8, 12, "").await.expect("b deletes <a3>");
    everywhere(&mut pair, "<a1><a2>alpha\n").await;
    assert!(done(pair.a.request("collab/undo", json!({"uri": ua})).await.expect("undo")));
    everywhere(&mut pair, "<a1>alpha\n").await;
    // a deletes b's... no: a deletes "alpha", and its undo brings it back where it now belongs.
    pair.a.type_at(&ua, 4, 9, "").await.expect("a deletes alpha");
    pair.b.type_at(&ub, 0, 0, "<b1>").await.expect("b types before");
    everywhere(&mut pair, "<b1><a1>\n").await;
    assert!(done(pair.a.request("collab/undo", json!({"uri": ua})).await.expect("undo")));
    everywhere(&mut pair, "<b1><a1>alpha\n").await;
    // A new edit after undoing leaves nothing to redo.
    pair.a.type_at(&ua, 0, 0, "!").await.expect("a types");
    everywhere(&mut pair, "!<b1><a1>alpha\n").await;
    assert!(!done(pair.a.request("collab/redo", json!({"uri": ua})).await.expect("redo")), "nothing to redo");
    // An unknown buffer has nothing to undo.
    let unknown = json!({"uri": "file:///nowhere/else.txt"});
    assert!(!done(pair.a.request("collab/undo", unknown).await.expect("an answer, not an error")));
}
