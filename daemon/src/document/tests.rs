//! Unit tests of one document's transitions: editor edits against the server's limit, with pastes pending.

use tower_lsp_server::lsp_types::{Position, Range};

use super::*;

fn insert_at(line: u32, character: u32, text: &str, revision: u64) -> EditParams {
    let at = Position { line, character };
    let changes = vec![Change { range: Range { start: at, end: at }, text: text.into() }];
    EditParams { uri: "file:///t.txt".into(), revision, changes, undo_stop: None }
}

/// Found by the end-to-end test under load: our own paste is pending (the server will refuse it: the document
/// would grow past the limit), another peer's paste arrives, then we type a word. The word is small: it is
/// not undone as if it made the file too large, and when the server refuses the paste, the word stays.
#[test]
fn a_small_edit_after_a_pending_paste_over_the_limit_is_kept_when_the_paste_is_refused() {
    let limit = 1_000;
    let mut doc = Doc::new("t.txt".into(), 0, "<s1>", 1 << 20);
    doc.open(OpenParams { uri: "file:///t.txt".into(), text: "<s1>".into() }, Encoding::Utf32);
    let paste = "b".repeat(600);
    let sent = doc.editor_edit(&insert_at(0, 0, &paste, 0), false, limit).expect("fits the buffer");
    assert!(sent.send.is_some() && sent.messages.is_empty(), "the paste alone fits: sent");
    let theirs = TextOperation::replace(4, 4, 4, &"a".repeat(600)).expect("in bounds");
    let shown = doc.remote_op(1, theirs, "ada").expect("applies");
    assert_eq!(shown.edits.len(), 1);
    // The editor types before it has applied the other peer's paste (its revision says 0 daemon edits).
    let typed = doc.editor_edit(&insert_at(0, 0, "<b-after>", 0), false, limit).expect("fits the buffer");
    assert!(typed.messages.is_empty(), "not undone: {:?}", typed.messages);
    let refused = doc.reject("the document would grow past its limit").expect("undoes the paste");
    let next = refused.send.expect("the word goes out on its own");
    assert_eq!(
        next.op.apply(&format!("<s1>{}", "a".repeat(600))).expect("fits"),
        format!("<b-after><s1>{}", "a".repeat(600))
    );
    assert_eq!(doc.text.to_string(), format!("<b-after><s1>{}", "a".repeat(600)));
}

#[test]
fn an_edit_that_alone_grows_the_file_past_the_limit_is_undone_at_once() {
    let mut doc = Doc::new("t.txt".into(), 0, "<s1>", 1 << 20);
    doc.open(OpenParams { uri: "file:///t.txt".into(), text: "<s1>".into() }, Encoding::Utf32);
    let effects = doc.editor_edit(&insert_at(0, 0, &"x".repeat(2_000), 0), false, 1_000).expect("fits");
    assert!(effects.send.is_none(), "nothing goes to the server");
    assert_eq!(effects.edits.len(), 1, "the editor is sent the undo");
    assert!(effects.messages.iter().any(|(_, m)| m.contains("over the server's limit")), "{:?}", effects.messages);
    assert_eq!(doc.text.to_string(), "<s1>");
}

/// A document's text goes cold into a file and comes back the same; an operation after it applies to the text it
/// had; the file is written again only once the text changed; a file that lost its text is an error, never an
/// empty document taken for the real one.
#[test]
fn a_cold_document_comes_back_with_its_text_and_takes_operations() {
    let mut cache = TextCache::default();
    let file = cache.file(7).expect("cache folder");
    let text = "héllo\nwörld 🌍\n".repeat(1000);
    let mut doc = Doc::new("t.txt".into(), 3, &text, 1 << 20);
    doc.disk = Some(doc.text.clone());
    assert!(doc.could_be_cold());
    doc.go_cold(&file).expect("goes cold");
    assert!(doc.is_cold() && doc.hot_bytes() == 0 && !doc.could_be_cold());
    assert_eq!(std::fs::read_to_string(&file).expect("cached"), text);

    doc.warm(&file).expect("warms");
    assert_eq!(doc.text.to_string(), text);
    assert!(doc.disk.as_ref().is_some_and(|d| *d == doc.text), "the file on disk held it, and still does");
    let op = TextOperation::replace(text.chars().count(), 0, 0, "<ada>").expect("in bounds");
    doc.remote_op(4, op, "ada").expect("applies");
    assert!(doc.text.to_string().starts_with("<ada>héllo"));
    assert!(!doc.could_be_cold(), "changed since written: the write comes first");
    doc.disk = Some(doc.text.clone());
    doc.dirty = false;
    doc.go_cold(&file).expect("goes cold again");
    assert!(std::fs::read_to_string(&file).expect("cached").starts_with("<ada>héllo"), "written again: it changed");

    std::fs::write(&file, "").expect("truncate");
    assert!(doc.warm(&file).is_err(), "a cut file is not the text");
    assert!(doc.text.len_chars() == 0 && !doc.dirty, "nothing is written from it");
    drop(cache);
    assert!(!file.parent().expect("folder").exists(), "the cache folder goes with the session");
}

/// An editor opening a document we just created from a half-written file (the rest written since) keeps its text:
/// what it has beyond what we read is merged in, with a peer's typing since kept too. Once we wrote the file, an
/// editor's other text is an older read of it, and the session's text wins, as for any open.
#[test]
fn an_open_of_a_file_just_created_from_disk_merges_the_editors_newer_text() {
    let mut doc = Doc::new("t.txt".into(), 0, "<half>", 1 << 20);
    doc.disk = Some(doc.text.clone());
    doc.fresh_from_disk = true;
    let op = TextOperation::replace(6, 0, 0, "<peer>").expect("in bounds");
    doc.remote_op(1, op, "ada").expect("applies");
    let open = OpenParams { uri: "file:///t.txt".into(), text: "<half><rest>".into() };
    let effects = doc.open(open, Encoding::Utf32);
    let sent = effects.send.expect("the rest goes to the server");
    assert_eq!(sent.op.apply("<peer><half>").expect("fits"), "<peer><half><rest>");
    assert_eq!(doc.text.to_string(), "<peer><half><rest>");
    assert!(!doc.fresh_from_disk, "only the first open");

    let mut written = Doc::new("t.txt".into(), 0, "<new>", 1 << 20);
    written.disk = Some(written.text.clone());
    let open = OpenParams { uri: "file:///t.txt".into(), text: "<old>".into() };
    let effects = written.open(open, Encoding::Utf32);
    assert!(effects.send.is_none() && written.text == "<new>", "the session's text wins an ordinary open");
    assert_eq!(effects.edits.len(), 1, "the editor is brought in line");
}

/// What the editor types while its open waits for the server is kept in a rope, edit by edit, and adopted whole
/// (a 10 MB file used to be copied twice per keystroke there, and the daemon fell seconds behind the typing).
#[test]
fn edits_to_a_waiting_buffer_are_kept_and_adopted() {
    let opened = "héllo\nwörld\n";
    let mut open = PendingOpen::new(OpenParams { uri: "file:///t.txt".into(), text: opened.into() });
    for (line, character, text) in [(1, 5, "!"), (0, 0, "¡"), (1, 0, "big ")] {
        open.edit(&insert_at(line, character, text, 0).changes, Encoding::Utf16).expect("in the text");
    }
    assert_eq!(open.text.to_string(), "¡héllo\nbig wörld!\n");
    let mut doc = Doc::new("t.txt".into(), 0, opened, 1 << 20);
    let effects = doc.adopt(open, Encoding::Utf16);
    assert_eq!(doc.text.to_string(), "¡héllo\nbig wörld!\n", "what was typed is in the session's text");
    assert!(effects.send.is_some(), "and goes to the server");
}
