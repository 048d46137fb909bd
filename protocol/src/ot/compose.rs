//! Composition: one operation with the effect of two consecutive ones.
//!
//! Law: `apply(apply(s, a), b) == apply(s, a.compose(&b))` whenever `b.base_len() == a.target_len()`.

use super::edit::{self, byte_at, Edit};
use super::operation::{push_run, push_text, Component, OpError, Text, TextOperation};

impl TextOperation {
    /// The operation equivalent to applying `self`, then `next`.
    pub fn compose(&self, next: &TextOperation) -> Result<TextOperation, OpError> {
        if self.target_len != next.base_len {
            return Err(OpError::ComposeLengthMismatch { first_target: self.target_len, second_base: next.base_len });
        }
        if let Some((a, b)) = Edit::of(self).and_then(|a| Some((a, Edit::of(next)?))) {
            return Ok(edit::compose(a, b, self.base_len));
        }
        compose_components(self, next)
    }
}

/// What is left of the first operation's current component (its deletes are passed on at once).
#[derive(Clone, Copy)]
enum First<'a> {
    Retain(usize),
    /// Inserted text not yet consumed, its length in chars, and the component if this is all of it.
    Insert(&'a str, usize, Option<&'a Text>),
}

/// The general case: walks both operations' components side by side, building the result's components directly.
pub(crate) fn compose_components(this: &TextOperation, next: &TextOperation) -> Result<TextOperation, OpError> {
    if this.target_len != next.base_len {
        return Err(mismatch(this, next));
    }
    let mut out = Vec::with_capacity(this.components.len() + next.components.len());
    let (mut firsts, mut seconds) = (this.components.iter(), next.components.iter());
    let mut first: Option<First<'_>> = None;
    // The second's current retain or delete: (deletes, chars left).
    let mut second: Option<(bool, usize)> = None;
    loop {
        if first.is_none() {
            match firsts.next() {
                // What the first deletes, the second never sees.
                Some(Component::Delete(n)) => {
                    push_run(&mut out, *n, true);
                    continue;
                }
                Some(Component::Retain(n)) => first = Some(First::Retain(*n)),
                Some(Component::Insert(text)) => first = Some(First::Insert(text, text.char_len(), Some(text))),
                None => {}
            }
        }
        if second.is_none() {
            match seconds.next() {
                // What the second inserts, the first never saw.
                Some(Component::Insert(text)) => {
                    push_text(&mut out, text, text.char_len(), Some(text));
                    continue;
                }
                Some(Component::Retain(n)) => second = Some((false, *n)),
                Some(Component::Delete(n)) => second = Some((true, *n)),
                None => {}
            }
        }
        let (Some(a), Some((deletes, b_left))) = (first, second) else {
            if first.is_none() && second.is_none() {
                break;
            }
            // Unreachable after the length check; kept as an error so no input can panic.
            return Err(mismatch(this, next));
        };
        let n = match a {
            First::Retain(a_left) => {
                let n = a_left.min(b_left);
                push_run(&mut out, n, deletes);
                first = (a_left > n).then_some(First::Retain(a_left - n));
                n
            }
            First::Insert(text, chars, whole) => {
                let n = chars.min(b_left);
                let cut = if n == chars { text.len() } else { byte_at(text, chars, n) };
                // Kept by the second, or deleted by it: then nothing is left of it.
                if !deletes {
                    push_text(&mut out, &text[..cut], n, whole.filter(|_| n == chars));
                }
                first = (chars > n).then(|| First::Insert(&text[cut..], chars - n, None));
                n
            }
        };
        second = (b_left > n).then_some((deletes, b_left - n));
    }
    Ok(TextOperation { components: out, base_len: this.base_len, target_len: next.target_len })
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
