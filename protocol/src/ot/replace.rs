//! Conversion between operations and lists of replacements `(start, end, text)` applied in sequence, the shape
//! editors produce (LSP `didChange`: each change is relative to the text left by the previous one).

use super::operation::{char_len, Component, OpError, TextOperation};

/// Replace chars `start..end` by `text`. Offsets are chars in the document as it is when this replacement runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Replacement {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

impl Replacement {
    pub fn new(start: usize, end: usize, text: impl Into<String>) -> Self {
        Replacement { start, end, text: text.into() }
    }
}

impl TextOperation {
    /// The operation equivalent to applying `replacements` one after another to a document of `base_len` chars.
    ///
    /// Ascending, non-overlapping replacements (the common case) are folded in one pass; any other order is
    /// handled by composing, which is correct for every sequence.
    pub fn from_replacements<'a, I>(base_len: usize, replacements: I) -> Result<TextOperation, OpError>
    where
        I: IntoIterator<Item = &'a Replacement>,
    {
        let mut op = TextOperation::identity(base_len);
        // In the one-pass case: how many chars of the *current* document `op`'s prefix produces.
        let mut written = 0usize;
        let mut one_pass = true;
        for replacement in replacements {
            let current_len = op.target_len;
            let Replacement { start, end, ref text } = *replacement;
            if start > end || end > current_len {
                return Err(OpError::ReplacementOutOfBounds { start, end, len: current_len });
            }
            if one_pass && start >= written {
                // Invariant: `op` is a prefix producing `written` chars, then a retain of the rest of the
                // current document. Replace that trailing retain by this replacement and a shorter retain.
                let tail = current_len - written;
                // The builder may have merged that retain with one of the prefix: trim exactly `tail` chars.
                if tail > 0 {
                    match op.components.last_mut() {
                        Some(Component::Retain(n)) if *n > tail => *n -= tail,
                        Some(Component::Retain(n)) if *n == tail => {
                            op.components.pop();
                        }
                        _ => unreachable_invariant(),
                    }
                    op.base_len -= tail;
                    op.target_len -= tail;
                }
                let keep = start - written;
                op.retain(keep).insert(text).delete(end - start).retain(tail - keep - (end - start));
                written = start + char_len(text);
                continue;
            }
            one_pass = false;
            op = op.compose(&TextOperation::replace(current_len, start, end, text)?)?;
        }
        Ok(op)
    }

    /// Replacements, in ascending order, that applied one after another have the effect of this operation.
    pub fn to_replacements(&self) -> Vec<Replacement> {
        let mut out = Vec::new();
        // Offset in the document as it stands after the replacements emitted so far.
        let mut position = 0;
        let mut pending: Option<Replacement> = None;
        for component in &self.components {
            match component {
                Component::Retain(n) => {
                    if let Some(replacement) = pending.take() {
                        position += char_len(&replacement.text);
                        out.push(replacement);
                    }
                    position += n;
                }
                Component::Insert(s) => {
                    pending.get_or_insert_with(|| Replacement::new(position, position, "")).text.push_str(s);
                }
                Component::Delete(n) => {
                    pending.get_or_insert_with(|| Replacement::new(position, position, "")).end += n;
                }
            }
        }
        out.extend(pending);
        out
    }
}

/// The one-pass fold keeps a trailing retain of exactly the unwritten rest; this is only reached if that
/// invariant is broken by a change to this file.
#[cold]
fn unreachable_invariant() -> ! {
    unreachable!("from_replacements: the operation does not end with a retain of the unwritten rest")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_all(text: &str, replacements: &[Replacement]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for r in replacements {
            chars.splice(r.start..r.end, r.text.chars());
        }
        chars.into_iter().collect()
    }

    #[test]
    fn ascending_descending_and_overlapping_sequences() {
        let base = "0123456789";
        for replacements in [
            vec![Replacement::new(1, 2, "ab"), Replacement::new(5, 7, ""), Replacement::new(8, 8, "é")],
            vec![Replacement::new(8, 9, "x"), Replacement::new(2, 4, "日本"), Replacement::new(0, 1, "")],
            vec![Replacement::new(2, 6, "ab"), Replacement::new(1, 3, "Z"), Replacement::new(3, 3, "!")],
        ] {
            let op = TextOperation::from_replacements(10, &replacements).expect("in bounds");
            assert_eq!(op.apply(base).expect("ok"), apply_all(base, &replacements));
            let back = op.to_replacements();
            assert_eq!(apply_all(base, &back), apply_all(base, &replacements));
        }
    }

    #[test]
    fn out_of_bounds_is_an_error() {
        assert!(TextOperation::from_replacements(3, &[Replacement::new(2, 4, "")]).is_err());
        assert!(TextOperation::from_replacements(3, &[Replacement::new(2, 1, "")]).is_err());
    }
}
