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
use super::operation::{push_run, push_text, Component, OpError, TextOperation};

/// Transforms two operations made concurrently on the same document; returns `(a', b')` where `a'` is `a`
/// rebased onto `b` and `b'` is `b` rebased onto `a`.
pub fn transform(a: &TextOperation, b: &TextOperation) -> Result<(TextOperation, TextOperation), OpError> {
    if a.base_len != b.base_len {
        return Err(OpError::TransformLengthMismatch { a_base: a.base_len, b_base: b.base_len });
    }
    if let Some((x, y)) = Edit::of(a).and_then(|x| Some((x, Edit::of(b)?))) {
        return Ok((edit::rebase(x, y, a.base_len, true), edit::rebase(y, x, a.base_len, false)));
    }
    transform_components(a, b)
}

/// The retain or delete a walk is in the middle of: (deletes, chars left).
type Run = Option<(bool, usize)>;

/// The general case: walks both operations' components side by side, building the results' components
/// directly and setting their lengths once at the end.
pub(crate) fn transform_components(
    a: &TextOperation,
    b: &TextOperation,
) -> Result<(TextOperation, TextOperation), OpError> {
    let mismatch = || OpError::TransformLengthMismatch { a_base: a.base_len, b_base: b.base_len };
    if a.base_len != b.base_len {
        return Err(mismatch());
    }
    let capacity = a.components.len() + b.components.len();
    let (mut a_prime, mut b_prime) = (Vec::with_capacity(capacity), Vec::with_capacity(capacity));
    let (mut a_components, mut b_components) = (a.components.iter(), b.components.iter());
    let (mut a_run, mut b_run): (Run, Run) = (None, None);
    // What a' inserts and deletes, for its target length.
    let (mut a_inserted, mut a_deleted) = (0, 0);
    loop {
        if a_run.is_none() {
            match a_components.next() {
                // The tie-break: a's insert is placed before anything b does at the same position.
                Some(Component::Insert(text)) => {
                    let n = text.char_len();
                    push_text(&mut a_prime, text, n, Some(text));
                    push_run(&mut b_prime, n, false);
                    a_inserted += n;
                    continue;
                }
                Some(Component::Retain(n)) => a_run = Some((false, *n)),
                Some(Component::Delete(n)) => a_run = Some((true, *n)),
                None => {}
            }
        }
        if b_run.is_none() {
            match b_components.next() {
                Some(Component::Insert(text)) => {
                    let n = text.char_len();
                    push_run(&mut a_prime, n, false);
                    push_text(&mut b_prime, text, n, Some(text));
                    continue;
                }
                Some(Component::Retain(n)) => b_run = Some((false, *n)),
                Some(Component::Delete(n)) => b_run = Some((true, *n)),
                None => {}
            }
        }
        match (a_run, b_run) {
            (None, None) => break,
            (Some((a_deletes, a_left)), Some((b_deletes, b_left))) => {
                let n = a_left.min(b_left);
                match (a_deletes, b_deletes) {
                    (false, false) => {
                        push_run(&mut a_prime, n, false);
                        push_run(&mut b_prime, n, false);
                    }
                    // Both deleted the same chars: neither needs to delete them again.
                    (true, true) => {}
                    (true, false) => {
                        push_run(&mut a_prime, n, true);
                        a_deleted += n;
                    }
                    (false, true) => push_run(&mut b_prime, n, true),
                }
                a_run = (a_left > n).then_some((a_deletes, a_left - n));
                b_run = (b_left > n).then_some((b_deletes, b_left - n));
            }
            // Unreachable after the length check; kept as an error so no input can panic.
            _ => return Err(mismatch()),
        }
    }
    let target_len = b.target_len + a_inserted - a_deleted;
    Ok((
        TextOperation { components: a_prime, base_len: b.target_len, target_len },
        TextOperation { components: b_prime, base_len: a.target_len, target_len },
    ))
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
