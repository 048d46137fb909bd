//! Transformation of two concurrent operations against each other (inclusion transformation, TP1).
//!
//! ```text
//!          s
//!     a  /   \  b
//!       /     \
//!  s·a  \     /  s·b
//!    b'  \   /  a'
//!         s'
//! ```
//!
//! Law (TP1): for `(a', b') = transform(a, b)`, `apply(apply(s, a), b') == apply(apply(s, b), a')`.
//!
//! Tie-break: when `a` and `b` both insert at the same position, **`a`'s text comes first**. The server
//! transforms an arriving op as `a` against the ops already committed as `b`, and a client transforms its own
//! pending ops as `a` against the server's as `b`; both sides use the same roles, which is what convergence
//! needs. Seen by users: when two people type at the same spot at once, the text of the one whose op the server
//! sequenced later lands first.

use super::edit::{self, Edit};
use super::operation::{OpError, TextOperation};
use super::reader::{Piece, Reader};

/// Transforms two operations made concurrently on the same document; returns `(a', b')` where `a'` is `a`
/// rebased onto `b` and `b'` is `b` rebased onto `a`.
pub fn transform(a: &TextOperation, b: &TextOperation) -> Result<(TextOperation, TextOperation), OpError> {
    if a.base_len != b.base_len {
        return Err(OpError::TransformLengthMismatch { a_base: a.base_len, b_base: b.base_len });
    }
    if let (Some(x), Some(y)) = (Edit::of(a), Edit::of(b)) {
        return Ok((edit::rebase(x, y, a.base_len, true), edit::rebase(y, x, a.base_len, false)));
    }
    transform_components(a, b)
}

/// The general case: walks both operations' components side by side.
pub(crate) fn transform_components(
    a: &TextOperation,
    b: &TextOperation,
) -> Result<(TextOperation, TextOperation), OpError> {
    if a.base_len != b.base_len {
        return Err(OpError::TransformLengthMismatch { a_base: a.base_len, b_base: b.base_len });
    }
    let capacity = a.components.len().max(b.components.len()) + 2;
    let mut a_prime = TextOperation::with_capacity(capacity);
    let mut b_prime = TextOperation::with_capacity(capacity);
    let mut a_reader = Reader::new(a);
    let mut b_reader = Reader::new(b);
    loop {
        match (a_reader.peek(), b_reader.peek()) {
            (None, None) => break,
            // The tie-break: a's insert is placed before anything b does at the same position.
            (Some(Piece::Insert(s, n)), _) => {
                a_prime.insert_counted(s, n);
                b_prime.retain(n);
                a_reader.skip();
            }
            (_, Some(Piece::Insert(s, n))) => {
                a_prime.retain(n);
                b_prime.insert_counted(s, n);
                b_reader.skip();
            }
            (Some(x), Some(y)) => {
                let n = x.len().min(y.len());
                a_reader.advance(n);
                b_reader.advance(n);
                match (x, y) {
                    (Piece::Retain(_), Piece::Retain(_)) => {
                        a_prime.retain(n);
                        b_prime.retain(n);
                    }
                    // Both deleted the same chars: neither needs to delete them again.
                    (Piece::Delete(_), Piece::Delete(_)) => {}
                    (Piece::Delete(_), Piece::Retain(_)) => {
                        a_prime.delete(n);
                    }
                    (Piece::Retain(_), Piece::Delete(_)) => {
                        b_prime.delete(n);
                    }
                    // Inserts were handled above.
                    _ => return Err(OpError::TransformLengthMismatch { a_base: a.base_len, b_base: b.base_len }),
                }
            }
            // Unreachable after the length check; kept as an error so no input can panic.
            _ => return Err(OpError::TransformLengthMismatch { a_base: a.base_len, b_base: b.base_len }),
        }
    }
    Ok((a_prime, b_prime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tie_break_puts_a_first() {
        let mut a = TextOperation::new();
        a.retain(1).insert("A").retain(1);
        let mut b = TextOperation::new();
        b.retain(1).insert("B").retain(1);
        let (a_prime, b_prime) = transform(&a, &b).expect("same base");
        let via_a = b_prime.apply(&a.apply("xy").expect("ok")).expect("ok");
        let via_b = a_prime.apply(&b.apply("xy").expect("ok")).expect("ok");
        assert_eq!(via_a, "xABy");
        assert_eq!(via_b, "xABy");
    }

    #[test]
    fn overlapping_deletes_delete_once() {
        let mut a = TextOperation::new();
        a.delete(3).retain(2);
        let mut b = TextOperation::new();
        b.retain(1).delete(3).retain(1);
        let (a_prime, b_prime) = transform(&a, &b).expect("same base");
        assert_eq!(b_prime.apply(&a.apply("abcde").expect("ok")).expect("ok"), "e");
        assert_eq!(a_prime.apply(&b.apply("abcde").expect("ok")).expect("ok"), "e");
    }
}
