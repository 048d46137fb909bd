//! Undo and redo of one editor's own edits in a shared text, leaving everyone else's in place.
//!
//! Each undo step is kept as the operation that undoes it: the inverse of the editor's own operations in the step,
//! composed newest first. The steps form a stack whose top applies to the current text and each one below to the
//! text as it would be once the steps above it were undone. Another operation on the text (a peer's, a change made
//! on disk) is transformed through the stack from the top down: each step moves past it, and it moves past each
//! step on its way to the one below. Undoing a step applies its operation as a new edit of one's own (everyone
//! sees it like any edit) and keeps its inverse as a redo step; redoing does the same the other way. A step whose
//! every effect others have removed meanwhile (text one typed and a peer deleted) has become a no-op, and is
//! skipped. The technique is that of ot.js's `UndoManager` and CodeMirror's collaborative history.
//!
//! Its known limit, shared with them: when two editors delete the same text at the same moment, each history holds
//! the deletion as its own (a client does not learn which of the two the server kept), so if both take it back,
//! the text comes back twice. Nothing is lost; the seeded simulation in `protocol/tests/undo.rs` allows exactly
//! this case and no other.
//!
//! Not wired into the daemon and the editors yet (issue 17): this is the core they will use.

use crate::ot::{transform, EditText, OpError, TextOperation};

/// One editor's undo and redo stacks for one text.
#[derive(Debug, Clone)]
pub struct UndoHistory {
    undo: Vec<TextOperation>,
    redo: Vec<TextOperation>,
    /// Whether the editor's next own edit joins the step on top of `undo` rather than starting one.
    open: bool,
    /// Most steps kept; the oldest go first.
    limit: usize,
}

impl UndoHistory {
    pub fn new(limit: usize) -> UndoHistory {
        UndoHistory { undo: Vec::new(), redo: Vec::new(), open: false, limit: limit.max(1) }
    }

    /// The editor made `op` on `base` (the text before it), as part of the open step or, if there is none, as the
    /// start of a new one. Anything undone so far can no longer be redone.
    pub fn record(&mut self, op: &TextOperation, base: &impl EditText) -> Result<(), OpError> {
        if op.is_noop() {
            return Ok(());
        }
        let inverse = op.invert_in(base)?;
        self.redo.clear();
        match self.undo.last_mut() {
            Some(top) if self.open => *top = inverse.compose(top)?,
            _ => {
                self.undo.push(inverse);
                if self.undo.len() > self.limit {
                    self.undo.remove(0);
                }
                self.open = true;
            }
        }
        Ok(())
    }

    /// Ends the open step: the editor's next own edit starts a new one.
    pub fn close_step(&mut self) {
        self.open = false;
    }

    /// Someone else's operation `op`, applied to the current text after everything recorded here: every step moves
    /// past it, so that it still undoes (or redoes) exactly what it did.
    pub fn transform(&mut self, op: &TextOperation) -> Result<(), OpError> {
        if op.is_noop() {
            return Ok(());
        }
        for stack in [&mut self.undo, &mut self.redo] {
            let mut incoming = op.clone();
            for step in stack.iter_mut().rev() {
                let (step_after, incoming_after) = transform(step, &incoming)?;
                *step = step_after;
                incoming = incoming_after;
            }
        }
        Ok(())
    }

    /// The operation that undoes the editor's most recent step that still has an effect, on `text` (the current
    /// text), or `None` if none is left. The caller applies it as an edit of the editor's own, without recording
    /// it here; the step becomes the next redo.
    pub fn undo(&mut self, text: &impl EditText) -> Result<Option<TextOperation>, OpError> {
        Self::pop(&mut self.undo, &mut self.redo, &mut self.open, text)
    }

    /// The operation that redoes the most recently undone step, like [`UndoHistory::undo`].
    pub fn redo(&mut self, text: &impl EditText) -> Result<Option<TextOperation>, OpError> {
        Self::pop(&mut self.redo, &mut self.undo, &mut self.open, text)
    }

    /// Takes the top step of `from` that is not a no-op (dropping those that are), and keeps its inverse on `to`.
    fn pop(
        from: &mut Vec<TextOperation>,
        to: &mut Vec<TextOperation>,
        open: &mut bool,
        text: &impl EditText,
    ) -> Result<Option<TextOperation>, OpError> {
        *open = false;
        while let Some(step) = from.pop() {
            if step.is_noop() {
                continue;
            }
            to.push(step.invert_in(text)?);
            return Ok(Some(step));
        }
        Ok(None)
    }

    /// Steps that can be undone and redone now (no-ops included until they are reached).
    pub fn depth(&self) -> (usize, usize) {
        (self.undo.len(), self.redo.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ropey::Rope;

    fn edit(text: &mut Rope, history: Option<&mut UndoHistory>, op: &TextOperation) {
        if let Some(history) = history {
            history.record(op, text).expect("records");
        }
        op.apply_to(text).expect("applies");
    }

    #[test]
    fn undo_takes_back_only_ones_own_steps_and_redo_brings_them_back() {
        let mut text = Rope::from_str("hello world");
        let mut mine = UndoHistory::new(100);
        // Mine: "big " before "world" (one step of two keystrokes).
        for (at, s) in [(6, "bi"), (8, "g ")] {
            let op = TextOperation::replace(text.len_chars(), at, at, s).expect("op");
            edit(&mut text, Some(&mut mine), &op);
        }
        mine.close_step();
        // A peer's: "dear " at the start, and "!" at the end.
        for (at, s) in [(0, "dear "), (text.len_chars() + 5, "!")] {
            let op = TextOperation::replace(text.len_chars(), at, at, s).expect("op");
            mine.transform(&op).expect("moves past");
            edit(&mut text, None, &op);
        }
        assert_eq!(text.to_string(), "dear hello big world!");
        let undo = mine.undo(&text).expect("undo").expect("a step");
        undo.apply_to(&mut text).expect("applies");
        assert_eq!(text.to_string(), "dear hello world!");
        assert!(mine.undo(&text).expect("undo").is_none(), "one step only");
        let redo = mine.redo(&text).expect("redo").expect("a step");
        redo.apply_to(&mut text).expect("applies");
        assert_eq!(text.to_string(), "dear hello big world!");
    }

    #[test]
    fn a_step_whose_text_a_peer_deleted_is_skipped() {
        let mut text = Rope::from_str("ab");
        let mut mine = UndoHistory::new(100);
        let first = TextOperation::replace(2, 1, 1, "X").expect("op");
        edit(&mut text, Some(&mut mine), &first);
        mine.close_step();
        let second = TextOperation::replace(3, 3, 3, "Y").expect("op");
        edit(&mut text, Some(&mut mine), &second);
        // The peer deletes "Y" (and "b" with it).
        let theirs = TextOperation::replace(4, 2, 4, "").expect("op");
        mine.transform(&theirs).expect("moves past");
        edit(&mut text, None, &theirs);
        assert_eq!(text.to_string(), "aX");
        let undo = mine.undo(&text).expect("undo").expect("the first step, the second being empty");
        undo.apply_to(&mut text).expect("applies");
        assert_eq!(text.to_string(), "a");
    }

    #[test]
    fn undoing_a_deletion_restores_the_text_where_it_now_belongs() {
        let mut text = Rope::from_str("one two three");
        let mut mine = UndoHistory::new(100);
        let delete = TextOperation::replace(13, 4, 8, "").expect("op");
        edit(&mut text, Some(&mut mine), &delete);
        let theirs = TextOperation::replace(9, 0, 0, ">> ").expect("op");
        mine.transform(&theirs).expect("moves past");
        edit(&mut text, None, &theirs);
        let undo = mine.undo(&text).expect("undo").expect("a step");
        undo.apply_to(&mut text).expect("applies");
        assert_eq!(text.to_string(), ">> one two three");
    }

    #[test]
    fn a_new_edit_after_undoing_drops_the_redo_steps_and_the_oldest_steps_go_past_the_limit() {
        let mut text = Rope::new();
        let mut mine = UndoHistory::new(2);
        for s in ["a", "b", "c"] {
            let op = TextOperation::replace(text.len_chars(), text.len_chars(), text.len_chars(), s).expect("op");
            edit(&mut text, Some(&mut mine), &op);
            mine.close_step();
        }
        assert_eq!(mine.depth(), (2, 0));
        let undo = mine.undo(&text).expect("undo").expect("a step");
        undo.apply_to(&mut text).expect("applies");
        assert_eq!(mine.depth(), (1, 1));
        let op = TextOperation::replace(2, 2, 2, "d").expect("op");
        edit(&mut text, Some(&mut mine), &op);
        assert_eq!(mine.depth(), (2, 0));
        assert_eq!(text.to_string(), "abd");
    }
}
