//! The revision pair toward one editor buffer (docs/editor-protocol.md): two counters, the daemon's unconfirmed edits,
//! and the editor's view of the text. The daemon transforms; the editor never does.
//!
//! - A daemon edit carries `revision` = editor edits processed. The editor applies it only if that equals the
//!   edits it has sent, so an edit crossing one of the editor's on the wire is dropped by the editor.
//! - An editor edit carries `revision` = daemon edits it has applied. Daemon edits from that index on were (or
//!   will be) dropped: the editor's edit is transformed past them, and they are re-sent, transformed past it,
//!   as one edit tagged with the new count. An editor edit with no changes asks for exactly that re-send.

use std::collections::VecDeque;

use codecollab_protocol::{transform, TextOperation};
use ropey::Rope;

use crate::lsp_ext::Change;
use crate::position::{self, Encoding, PositionError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditorEditError {
    #[error("the editor says it applied {claimed} daemon edits, but only {sent} were sent")]
    FutureRevision { claimed: u64, sent: u64 },
    #[error(transparent)]
    Position(#[from] PositionError),
}

/// A daemon edit to send: `collab/edit {uri, revision, changes}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonEdit {
    pub revision: u64,
    pub changes: Vec<Change>,
}

/// What an editor edit leads to.
#[derive(Debug)]
pub struct EditorEditOutcome {
    /// The editor's edit, transformed to apply to the daemon's text (`None` when refused: read-only).
    pub apply: Option<TextOperation>,
    /// Daemon edits to (re-)send to the editor.
    pub resend: Option<DaemonEdit>,
}

#[derive(Debug)]
pub struct EditorBuffer {
    pub uri: String,
    pub encoding: Encoding,
    /// The editor's text as of the last editor edit processed, before the daemon edits it has not confirmed.
    view: Rope,
    /// Editor edits processed.
    processed: u64,
    /// Daemon edits sent since `collab/open`.
    sent: u64,
    /// Daemon edits sent that the editor has not confirmed, by index.
    unconfirmed: VecDeque<(u64, TextOperation)>,
}

impl EditorBuffer {
    /// The editor opened `uri` with `editor_text`; the daemon's text is `daemon`. If they differ, the first daemon
    /// edit (a line diff) brings the editor in line.
    pub fn open(
        uri: String,
        encoding: Encoding,
        editor_text: &str,
        daemon: &Rope,
    ) -> (EditorBuffer, Option<DaemonEdit>) {
        Self::open_after(uri, encoding, editor_text, daemon, 0)
    }

    /// [`EditorBuffer::open`] for a buffer whose editor has already sent `edits` edits since opening it (they were
    /// kept while the session did not hold the file yet; `editor_text` has them).
    pub fn open_after(
        uri: String,
        encoding: Encoding,
        editor_text: &str,
        daemon: &Rope,
        edits: u64,
    ) -> (EditorBuffer, Option<DaemonEdit>) {
        // When the texts agree, the view shares the daemon rope's nodes (a clone is O(1)) instead of holding a
        // second copy of the file.
        let same = *daemon == editor_text;
        let view = if same { daemon.clone() } else { Rope::from_str(editor_text) };
        let mut buffer = EditorBuffer { uri, encoding, view, processed: edits, sent: 0, unconfirmed: VecDeque::new() };
        let edit = if same {
            None
        } else {
            let op = position::diff(editor_text, &daemon.to_string());
            let view = buffer.view.clone();
            Some(buffer.queue(op, &view))
        };
        (buffer, edit)
    }

    /// Queues a daemon edit `op` made on `text` (what the editor has, if it is in step) and returns it to send.
    fn queue(&mut self, op: TextOperation, text: &Rope) -> DaemonEdit {
        let changes = position::operation_to_changes(text, &op, self.encoding);
        self.unconfirmed.push_back((self.sent, op));
        self.sent += 1;
        DaemonEdit { revision: self.processed, changes }
    }

    /// A remote change `op`, to be applied to the daemon's text `before`: returns the edit to send the editor.
    pub fn daemon_edit(&mut self, op: TextOperation, before: &Rope) -> DaemonEdit {
        self.queue(op, before)
    }

    /// The editor made `changes` having applied `revision` daemon edits. With `readonly`, the edit is refused
    /// and the editor is sent the edit that undoes it.
    pub fn editor_edit(
        &mut self,
        revision: u64,
        changes: &[Change],
        readonly: bool,
    ) -> Result<EditorEditOutcome, EditorEditError> {
        if revision > self.sent {
            return Err(EditorEditError::FutureRevision { claimed: revision, sent: self.sent });
        }
        // Confirmed daemon edits are part of the editor's text now: bring the view up to date (on a copy, so an
        // invalid edit changes nothing).
        let mut view = self.view.clone();
        let confirmed = self.unconfirmed.iter().take_while(|(index, _)| *index < revision).count();
        for (_, op) in self.unconfirmed.iter().take(confirmed) {
            op.apply_to(&mut view).expect("daemon edits apply to the editor's view in order");
        }
        let (edit, after) = position::changes_to_operation(&view, changes, self.encoding)?;
        self.unconfirmed.drain(..confirmed);
        // The daemon edits the editor dropped, as one operation on `view`.
        let dropped = self
            .unconfirmed
            .drain(..)
            .map(|(_, op)| op)
            .reduce(|a, b| a.compose(&b).expect("consecutive edits compose"));
        self.processed += 1;
        self.sent = revision;
        let (apply, resend_op) = if readonly {
            // Undo the editor's edit, then redo what it dropped.
            let undo = edit.invert_in(&view).expect("the edit applies to the view");
            let resend = match dropped {
                Some(dropped) => undo.compose(&dropped).expect("undo leads back to the view"),
                None => undo,
            };
            (None, (!resend.is_noop()).then_some(resend))
        } else {
            match dropped {
                Some(dropped) => {
                    let (edit_prime, dropped_prime) = transform(&edit, &dropped).expect("both apply to the view");
                    (Some(edit_prime), Some(dropped_prime))
                }
                None => (Some(edit), None),
            }
        };
        self.view = after;
        let after = self.view.clone();
        let resend = resend_op.map(|op| self.queue(op, &after));
        Ok(EditorEditOutcome { apply, resend })
    }

    /// Editor edits processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_lsp_server::lsp_types::{Position, Range};

    fn change(line: u32, from: u32, to: u32, text: &str) -> Change {
        Change {
            range: Range { start: Position { line, character: from }, end: Position { line, character: to } },
            text: text.into(),
        }
    }

    /// The editor side of the protocol, as a plugin implements it.
    struct Editor {
        text: Rope,
        sent: u64,
        applied: u64,
    }

    impl Editor {
        fn receive(&mut self, edit: &DaemonEdit) -> bool {
            if edit.revision != self.sent {
                return false;
            }
            let (_, after) = position::changes_to_operation(&self.text, &edit.changes, Encoding::Utf16).expect("valid");
            self.text = after;
            self.applied += 1;
            true
        }
    }

    #[test]
    fn a_crossing_edit_is_dropped_and_resent_transformed() {
        let mut daemon = Rope::from_str("hello");
        let (mut buffer, first) = EditorBuffer::open("u".into(), Encoding::Utf16, "hello", &daemon);
        assert!(first.is_none());
        let mut editor = Editor { text: Rope::from_str("hello"), sent: 0, applied: 0 };
        // A remote insert at 0 is sent to the editor...
        let remote = TextOperation::replace(5, 0, 0, ">").expect("op");
        let to_editor = buffer.daemon_edit(remote.clone(), &daemon);
        remote.apply_to(&mut daemon).expect("fits");
        // ...while the editor types at the end; its edit crosses the daemon's on the wire.
        let typed = change(0, 5, 5, "!");
        let (_, after) =
            position::changes_to_operation(&editor.text, std::slice::from_ref(&typed), Encoding::Utf16).expect("valid");
        editor.text = after;
        editor.sent += 1;
        assert!(!editor.receive(&to_editor), "stale: dropped by the editor");
        let outcome = buffer.editor_edit(editor.applied, &[typed], false).expect("valid");
        outcome.apply.expect("applies").apply_to(&mut daemon).expect("fits");
        let resend = outcome.resend.expect("the dropped edit is re-sent");
        assert!(editor.receive(&resend));
        assert_eq!(editor.text.to_string(), ">hello!");
        assert_eq!(daemon.to_string(), ">hello!");
    }

    #[test]
    fn an_empty_edit_asks_for_the_resend() {
        let mut daemon = Rope::from_str("ab");
        let (mut buffer, _) = EditorBuffer::open("u".into(), Encoding::Utf16, "ab", &daemon);
        let remote = TextOperation::replace(2, 1, 1, "X").expect("op");
        let lost = buffer.daemon_edit(remote.clone(), &daemon);
        remote.apply_to(&mut daemon).expect("fits");
        // The editor could not apply it (its revision matched); it sends an empty edit.
        let mut editor = Editor { text: Rope::from_str("ab"), sent: 0, applied: 0 };
        assert_eq!(lost.revision, editor.sent);
        editor.sent += 1;
        let outcome = buffer.editor_edit(0, &[], false).expect("valid");
        assert!(outcome.apply.expect("identity").is_noop());
        assert!(editor.receive(&outcome.resend.expect("re-sent")));
        assert_eq!(editor.text.to_string(), "aXb");
    }

    #[test]
    fn readonly_edits_are_undone_and_bad_positions_change_nothing() {
        let daemon = Rope::from_str("keep\n");
        let (mut buffer, _) = EditorBuffer::open("u".into(), Encoding::Utf16, "keep\n", &daemon);
        assert!(buffer.editor_edit(0, &[change(9, 0, 0, "x")], false).is_err());
        assert!(buffer.editor_edit(7, &[], false).is_err());
        let mut editor = Editor { text: Rope::from_str("keep\n"), sent: 0, applied: 0 };
        let typed = change(0, 0, 4, "lost");
        let (_, after) =
            position::changes_to_operation(&editor.text, std::slice::from_ref(&typed), Encoding::Utf16).expect("valid");
        editor.text = after;
        editor.sent += 1;
        let outcome = buffer.editor_edit(0, &[typed], true).expect("valid");
        assert!(outcome.apply.is_none());
        assert!(editor.receive(&outcome.resend.expect("restore")));
        assert_eq!(editor.text.to_string(), "keep\n");
    }

    #[test]
    fn opening_a_divergent_buffer_diffs_it_into_line() {
        let daemon = Rope::from_str("a\nB\nc\n");
        let (_, edit) = EditorBuffer::open("u".into(), Encoding::Utf8, "a\nb\nc\n", &daemon);
        let mut editor = Editor { text: Rope::from_str("a\nb\nc\n"), sent: 0, applied: 0 };
        let edit = edit.expect("a diff");
        assert_eq!(edit.changes.len(), 1, "only the changed line");
        assert!(editor.receive(&edit));
        assert_eq!(editor.text, daemon);
    }
}
