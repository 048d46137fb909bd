//! Closed-form transform and compose for operations that change one place (a keystroke, a paste, a deletion):
//! the shape of nearly every operation a server or client handles, done without walking components.
//!
//! Each function gives exactly what the general component walk gives (checked exhaustively on small documents
//! in this module's tests), so the fast path changes speed, never results.

use super::operation::{byte_offset, push_run, Component, Text, TextOperation};

/// An operation that retains `at` chars, inserts `insert`, deletes `deleted` chars and retains the rest: any
/// operation of at most one insert and one delete, next to each other.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Edit<'a> {
    at: usize,
    insert: Option<&'a Text>,
    deleted: usize,
}

impl<'a> Edit<'a> {
    /// The operation as one edit, if it is one.
    #[inline(always)]
    pub(crate) fn of(op: &'a TextOperation) -> Option<Edit<'a>> {
        let mut rest = op.components.as_slice();
        if rest.len() > 4 {
            return None;
        }
        let mut edit = Edit { at: 0, insert: None, deleted: 0 };
        if let [Component::Retain(n), tail @ ..] = rest {
            edit.at = *n;
            rest = tail;
        }
        if let [Component::Insert(text), tail @ ..] = rest {
            edit.insert = Some(text);
            rest = tail;
        }
        if let [Component::Delete(n), tail @ ..] = rest {
            edit.deleted = *n;
            rest = tail;
        }
        matches!(rest, [] | [Component::Retain(_)]).then_some(edit)
    }

    /// The inserted text ("" if none).
    fn text(self) -> &'a str {
        self.insert.map_or("", Text::as_str)
    }

    /// Its length in chars.
    fn chars(self) -> usize {
        self.insert.map_or(0, Text::char_len)
    }

    fn end(self) -> usize {
        self.at + self.deleted
    }
}

/// `x` rebased onto `y` (both on a document of `len` chars): the same edit in the document after `y`. At the same
/// position, `x`'s insert goes before `y`'s if `x_first`.
///
/// The components are built directly (the only insert comes first, so only runs need merging) and the lengths
/// set once: updating them per component, as the builder does, cost a third of the time here.
#[inline(always)]
pub(crate) fn rebase(x: Edit<'_>, y: Edit<'_>, len: usize, x_first: bool) -> TextOperation {
    let at = if x.at < y.at || (x.at == y.at && x_first) {
        x.at
    } else if x.at <= y.end() {
        // Inside what `y` deleted, or right after it: after `y`'s text.
        y.at + y.chars()
    } else {
        x.at - y.deleted + y.chars()
    };
    let base_len = len - y.deleted + y.chars();
    let mut components = Vec::with_capacity(5);
    push_run(&mut components, at, false);
    if let Some(text) = x.insert {
        components.push(Component::Insert(text.clone()));
    }
    let mut cursor = at;
    // What `x` deletes and `y` does not: a part before `y`'s range and a part after it, with `y`'s text between.
    let before = x.end().min(y.at).saturating_sub(x.at);
    push_run(&mut components, before, true);
    cursor += before;
    let after_start = x.at.max(y.end());
    let after = x.end().saturating_sub(after_start);
    if after > 0 {
        let start = after_start - y.deleted + y.chars();
        push_run(&mut components, start - cursor, false);
        push_run(&mut components, after, true);
        cursor = start + after;
    }
    push_run(&mut components, base_len - cursor, false);
    TextOperation { components, base_len, target_len: base_len - before - after + x.chars() }
}

/// Byte index of char `n` of `text`, which is `chars` chars long: [`byte_offset`] without the walk when the
/// text is ASCII.
#[inline]
pub(crate) fn byte_at(text: &str, chars: usize, n: usize) -> usize {
    if text.len() == chars {
        n
    } else {
        byte_offset(text, n)
    }
}

/// `a` then `b` as one operation; `a` applies to a document of `len` chars.
#[inline]
pub(crate) fn compose(a: Edit<'_>, b: Edit<'_>, len: usize) -> TextOperation {
    let a_text_end = a.at + a.chars();
    let mut op = TextOperation::with_capacity(7);
    if b.end() < a.at {
        // `b` lies before `a`'s place, with untouched text between.
        op.retain(b.at);
        op.insert_counted(b.text(), b.chars());
        op.delete(b.deleted).retain(a.at - b.end());
        op.insert_counted(a.text(), a.chars());
        op.delete(a.deleted).retain(len - a.end());
    } else if b.at > a_text_end {
        // `b` lies after `a`'s text; in the original document it starts here:
        let b_at = b.at - a.chars() + a.deleted;
        op.retain(a.at);
        op.insert_counted(a.text(), a.chars());
        op.delete(a.deleted).retain(b_at - a.end());
        op.insert_counted(b.text(), b.chars());
        op.delete(b.deleted).retain(len - b_at - b.deleted);
    } else {
        // `b` touches or overlaps `a`'s text: one edit. `b` deletes some original text before `a`'s place, the
        // part of `a`'s text it covers, and some original text after what `a` deleted.
        let start = a.at.min(b.at);
        let deleted_before = a.at.saturating_sub(b.at).min(b.deleted);
        let head = b.at.saturating_sub(a.at);
        // Never before `head`: here `b` starts within `a`'s text or right at its end.
        let tail = b.end().saturating_sub(a.at).min(a.chars());
        let deleted_after = b.end().saturating_sub(a_text_end);
        op.retain(start);
        let (head_bytes, tail_bytes) = (byte_at(a.text(), a.chars(), head), byte_at(a.text(), a.chars(), tail));
        op.insert_counted(&a.text()[..head_bytes], head);
        op.insert_counted(b.text(), b.chars());
        op.insert_counted(&a.text()[tail_bytes..], a.chars() - tail);
        let deleted = deleted_before + a.deleted + deleted_after;
        op.delete(deleted).retain(len - start - deleted);
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::compose::compose_components;
    use crate::ot::transform::transform_components;

    /// Every one-place edit of a document of `len` chars, with no text, ASCII, or multibyte text inserted.
    fn all_edits(len: usize) -> Vec<TextOperation> {
        let mut edits = Vec::new();
        for at in 0..=len {
            for deleted in 0..=len - at {
                for text in ["", "A", "é😀"] {
                    let mut op = TextOperation::new();
                    op.retain(at).insert(text).delete(deleted).retain(len - at - deleted);
                    edits.push(op);
                }
            }
        }
        edits
    }

    #[test]
    fn rebase_is_the_general_transform_on_every_small_pair() {
        for len in 0..6 {
            let edits = all_edits(len);
            for a in &edits {
                for b in &edits {
                    let (x, y) = (Edit::of(a).expect("one edit"), Edit::of(b).expect("one edit"));
                    let expected = transform_components(a, b).expect("same base");
                    let got = (rebase(x, y, len, true), rebase(y, x, len, false));
                    assert_eq!(got, expected, "transform({a:?}, {b:?})");
                }
            }
        }
    }

    #[test]
    fn compose_is_the_general_compose_on_every_small_pair() {
        for len in 0..6 {
            for a in &all_edits(len) {
                for b in &all_edits(a.target_len()) {
                    let (x, y) = (Edit::of(a).expect("one edit"), Edit::of(b).expect("one edit"));
                    let expected = compose_components(a, b).expect("lengths match");
                    assert_eq!(compose(x, y, len), expected, "compose({a:?}, {b:?})");
                }
            }
        }
    }

    #[test]
    fn only_one_place_edits_qualify() {
        let mut two = TextOperation::new();
        two.retain(1).insert("x").retain(1).delete(1);
        assert!(Edit::of(&two).is_none());
        assert!(Edit::of(&TextOperation::identity(3)).is_some());
        assert!(Edit::of(&TextOperation::new()).is_some());
    }
}
