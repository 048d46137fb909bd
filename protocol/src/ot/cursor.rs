//! Moving cursor offsets and selections through an operation, with an explicit bias for inserts at the cursor.
//!
//! Guarantees: the result is always within `0..=op.target_len()` (an out-of-bounds input is clamped first);
//! text inserted strictly before the cursor pushes it right, text inserted strictly after leaves it; text
//! inserted exactly at the cursor leaves it before the insert with [`Bias::Before`] and moves it past the
//! insert with [`Bias::After`]; a cursor inside deleted text collapses to where the deletion happened.

use serde::{Deserialize, Serialize};

use super::operation::{Component, TextOperation};

/// Which side of text inserted exactly at the cursor the cursor ends up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bias {
    /// The cursor stays before the inserted text.
    Before,
    /// The cursor moves past the inserted text (the author's own caret after typing).
    After,
}

/// A selection: `anchor` is where it started, `head` where the caret is. Equal offsets make a caret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Selection {
    pub anchor: usize,
    pub head: usize,
}

impl Selection {
    /// An empty selection at `offset`.
    pub fn caret(offset: usize) -> Self {
        Selection { anchor: offset, head: offset }
    }

    /// The smaller end.
    pub fn start(&self) -> usize {
        self.anchor.min(self.head)
    }

    /// The larger end.
    pub fn end(&self) -> usize {
        self.anchor.max(self.head)
    }

    /// This selection after `op`. A caret moves with `bias`. A non-empty selection keeps its extent: text
    /// inserted at its edges stays outside it, so it neither grows nor leaks over a neighbour's typing.
    pub fn transform(&self, op: &TextOperation, bias: Bias) -> Selection {
        if self.anchor == self.head {
            return Selection::caret(op.transform_offset(self.head, bias));
        }
        let forward = self.anchor <= self.head;
        let start = op.transform_offset(self.start(), Bias::After);
        let end = op.transform_offset(self.end(), Bias::Before).max(start);
        if forward {
            Selection { anchor: start, head: end }
        } else {
            Selection { anchor: end, head: start }
        }
    }

    /// Moves every selection in `selections` through `op`, as [`Selection::transform`] does one: what the server
    /// does to presence when it applies an operation, and the daemon to its own and others' selections.
    pub fn transform_all(selections: &mut [Selection], op: &TextOperation, bias: Bias) {
        for selection in selections {
            *selection = selection.transform(op, bias);
        }
    }
}

impl TextOperation {
    /// Where the char offset `offset` of the base document ends up in the target document.
    pub fn transform_offset(&self, offset: usize, bias: Bias) -> usize {
        let offset = offset.min(self.base_len);
        let mut base = 0;
        let mut target = 0;
        for component in &self.components {
            match component {
                Component::Retain(n) => {
                    if base + n > offset {
                        return target + (offset - base);
                    }
                    base += n;
                    target += n;
                }
                Component::Insert(s) => {
                    if base < offset || bias == Bias::After {
                        target += s.char_len();
                    }
                }
                Component::Delete(n) => {
                    if base + n > offset {
                        return target;
                    }
                    base += n;
                }
            }
        }
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_decides_the_side_of_an_insert_at_the_cursor() {
        let mut op = TextOperation::new();
        op.retain(2).insert("xyz").retain(2);
        assert_eq!(op.transform_offset(2, Bias::Before), 2);
        assert_eq!(op.transform_offset(2, Bias::After), 5);
        assert_eq!(op.transform_offset(1, Bias::After), 1);
        assert_eq!(op.transform_offset(3, Bias::Before), 6);
        assert_eq!(op.transform_offset(99, Bias::Before), 7);
    }

    #[test]
    fn cursor_in_deleted_text_collapses() {
        let mut op = TextOperation::new();
        op.retain(1).delete(3).retain(1);
        assert_eq!(op.transform_offset(2, Bias::After), 1);
        assert_eq!(op.transform_offset(4, Bias::After), 1);
        assert_eq!(op.transform_offset(5, Bias::After), 2);
    }

    #[test]
    fn selection_does_not_grow_at_its_edges() {
        let mut op = TextOperation::new();
        op.retain(2).insert("a").retain(2).insert("b").retain(1);
        let selection = Selection { anchor: 4, head: 2 };
        assert_eq!(selection.transform(&op, Bias::After), Selection { anchor: 5, head: 3 });
    }
}
