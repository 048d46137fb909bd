//! Composition: one operation with the effect of two consecutive ones.
//!
//! Law: `apply(apply(s, a), b) == apply(s, a.compose(&b))` whenever `b.base_len() == a.target_len()`.

use super::edit::{self, Edit};
use super::operation::{OpError, TextOperation};
use super::reader::{Piece, Reader};

impl TextOperation {
    /// The operation equivalent to applying `self`, then `next`.
    pub fn compose(&self, next: &TextOperation) -> Result<TextOperation, OpError> {
        if self.target_len != next.base_len {
            return Err(OpError::ComposeLengthMismatch { first_target: self.target_len, second_base: next.base_len });
        }
        if let (Some(a), Some(b)) = (Edit::of(self), Edit::of(next)) {
            return Ok(edit::compose(a, b, self.base_len));
        }
        compose_components(self, next)
    }
}

/// The general case: walks both operations' components side by side.
pub(crate) fn compose_components(this: &TextOperation, next: &TextOperation) -> Result<TextOperation, OpError> {
    if this.target_len != next.base_len {
        return Err(mismatch(this, next));
    }
    let mut out = TextOperation::with_capacity(this.components.len() + next.components.len());
    let mut first = Reader::new(this);
    let mut second = Reader::new(next);
    loop {
        match (first.peek(), second.peek()) {
            (None, None) => break,
            // What the first deletes, the second never sees.
            (Some(Piece::Delete(n)), _) => {
                out.delete(n);
                first.skip();
            }
            // What the second inserts, the first never saw.
            (_, Some(Piece::Insert(s, n))) => {
                out.insert_counted(s, n);
                second.skip();
            }
            (Some(a), Some(b)) => {
                let n = a.len().min(b.len());
                second.advance(n);
                match (a, b) {
                    (Piece::Retain(_), Piece::Retain(_)) => {
                        first.advance(n);
                        out.retain(n);
                    }
                    (Piece::Retain(_), Piece::Delete(_)) => {
                        first.advance(n);
                        out.delete(n);
                    }
                    (Piece::Insert(..), Piece::Retain(_)) => {
                        if let Some(Piece::Insert(s, _)) = first.take(n) {
                            out.insert_counted(s, n);
                        }
                    }
                    // Inserted by the first, deleted by the second: nothing is left of it.
                    (Piece::Insert(..), Piece::Delete(_)) => first.advance(n),
                    _ => return Err(mismatch(this, next)),
                }
            }
            // Unreachable after the length check; kept as an error so no input can panic.
            _ => return Err(mismatch(this, next)),
        }
    }
    Ok(out)
}

fn mismatch(first: &TextOperation, second: &TextOperation) -> OpError {
    OpError::ComposeLengthMismatch { first_target: first.target_len, second_base: second.base_len }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_insert_then_delete_inside_it() {
        let mut a = TextOperation::new();
        a.retain(1).insert("日本語").retain(1);
        let mut b = TextOperation::new();
        b.retain(2).delete(1).retain(2);
        let ab = a.compose(&b).expect("lengths match");
        assert_eq!(ab.apply("xy").expect("lengths match"), "x日語y");
        let mut expected = TextOperation::new();
        expected.retain(1).insert("日語").retain(1);
        assert_eq!(ab, expected);
    }

    #[test]
    fn rejects_mismatched_lengths() {
        let a = TextOperation::identity(3);
        let b = TextOperation::identity(4);
        assert!(a.compose(&b).is_err());
    }
}
