//! Applying an operation to text (`&str`, a `ropey::Rope` or a [`TextTree`]) and inverting it against the text it
//! applied to.
//!
//! Law: `apply(apply(s, op), op.invert(s)) == s`.

use std::ops::Range;

use ropey::Rope;

use super::operation::{byte_offset, char_len, Component, OpError, Text, TextOperation};
use crate::tree::TextTree;

/// Text an operation applies to in place, indexed by chars: [`TextOperation::apply_to`].
pub trait EditText {
    fn len_chars(&self) -> usize;
    /// The chars in `range`.
    fn slice_string(&self, range: Range<usize>) -> String;
    /// Inserts `text` at char `at`.
    fn insert_text(&mut self, at: usize, text: &Text);
    fn remove_chars(&mut self, range: Range<usize>);
}

impl EditText for Rope {
    fn len_chars(&self) -> usize {
        Rope::len_chars(self)
    }

    fn slice_string(&self, range: Range<usize>) -> String {
        self.slice(range).to_string()
    }

    fn insert_text(&mut self, at: usize, text: &Text) {
        self.insert(at, text);
    }

    fn remove_chars(&mut self, range: Range<usize>) {
        self.remove(range);
    }
}

impl EditText for TextTree {
    fn len_chars(&self) -> usize {
        TextTree::len_chars(self)
    }

    fn slice_string(&self, range: Range<usize>) -> String {
        self.slice(range)
    }

    fn insert_text(&mut self, at: usize, text: &Text) {
        self.insert_counted(at, text, text.char_len());
    }

    fn remove_chars(&mut self, range: Range<usize>) {
        self.remove(range);
    }
}

impl TextOperation {
    /// Returns `text` with the operation applied. O(len(text)).
    pub fn apply(&self, text: &str) -> Result<String, OpError> {
        let actual = char_len(text);
        if actual != self.base_len {
            return Err(OpError::BaseLengthMismatch { expected: self.base_len, actual });
        }
        let mut out = String::with_capacity(text.len() + self.inserted_bytes());
        let mut rest = text;
        for component in &self.components {
            match component {
                Component::Retain(n) => {
                    let cut = byte_offset(rest, *n);
                    out.push_str(&rest[..cut]);
                    rest = &rest[cut..];
                }
                Component::Insert(s) => out.push_str(s),
                Component::Delete(n) => rest = &rest[byte_offset(rest, *n)..],
            }
        }
        Ok(out)
    }

    /// Applies the operation to `text` (a rope or a [`TextTree`]) in place: O(log n) per component,
    /// independent of the document size.
    ///
    /// On error the text is untouched (the length is checked before anything changes).
    pub fn apply_to(&self, text: &mut impl EditText) -> Result<(), OpError> {
        let actual = text.len_chars();
        if actual != self.base_len {
            return Err(OpError::BaseLengthMismatch { expected: self.base_len, actual });
        }
        let mut position = 0;
        for component in &self.components {
            match component {
                Component::Retain(n) => position += n,
                Component::Insert(s) => {
                    text.insert_text(position, s);
                    position += s.char_len();
                }
                Component::Delete(n) => text.remove_chars(position..position + n),
            }
        }
        Ok(())
    }

    /// The operation that undoes this one, given the text this one applies to.
    pub fn invert(&self, base: &str) -> Result<TextOperation, OpError> {
        let actual = char_len(base);
        if actual != self.base_len {
            return Err(OpError::BaseLengthMismatch { expected: self.base_len, actual });
        }
        let mut inverse = TextOperation::with_capacity(self.components.len());
        let mut rest = base;
        for component in &self.components {
            match component {
                Component::Retain(n) => {
                    inverse.retain(*n);
                    rest = &rest[byte_offset(rest, *n)..];
                }
                Component::Insert(s) => {
                    inverse.delete(s.char_len());
                }
                Component::Delete(n) => {
                    let cut = byte_offset(rest, *n);
                    inverse.insert_counted(&rest[..cut], *n);
                    rest = &rest[cut..];
                }
            }
        }
        Ok(inverse)
    }

    /// [`TextOperation::invert`] against a rope or a [`TextTree`]: O(log n) per component plus the deleted text.
    pub fn invert_in(&self, base: &impl EditText) -> Result<TextOperation, OpError> {
        let actual = base.len_chars();
        if actual != self.base_len {
            return Err(OpError::BaseLengthMismatch { expected: self.base_len, actual });
        }
        let mut inverse = TextOperation::with_capacity(self.components.len());
        let mut position = 0;
        for component in &self.components {
            match component {
                Component::Retain(n) => {
                    inverse.retain(*n);
                    position += n;
                }
                Component::Insert(s) => {
                    inverse.delete(s.char_len());
                }
                Component::Delete(n) => {
                    inverse.insert_counted(&base.slice_string(position..position + n), *n);
                    position += n;
                }
            }
        }
        Ok(inverse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(build: impl FnOnce(&mut TextOperation)) -> TextOperation {
        let mut op = TextOperation::new();
        build(&mut op);
        op
    }

    #[test]
    fn applies_to_str_and_rope_alike() {
        let base = "héllo wörld 😀";
        let edit = op(|o| {
            o.retain(1).delete(1).insert("e").retain(3).insert(" big").retain(8);
        });
        let expected = "hello big wörld 😀";
        assert_eq!(edit.apply(base).expect("lengths match"), expected);
        let mut rope = Rope::from_str(base);
        edit.apply_to(&mut rope).expect("lengths match");
        assert_eq!(rope.to_string(), expected);
    }

    #[test]
    fn wrong_length_is_an_error_and_changes_nothing() {
        let edit = op(|o| {
            o.retain(3).insert("x");
        });
        assert_eq!(edit.apply("ab"), Err(OpError::BaseLengthMismatch { expected: 3, actual: 2 }));
        let mut rope = Rope::from_str("abcd");
        assert!(edit.apply_to(&mut rope).is_err());
        assert_eq!(rope.to_string(), "abcd");
    }

    #[test]
    fn invert_undoes() {
        let base = "日本語のテキスト";
        let edit = op(|o| {
            o.retain(2).delete(2).insert("👩‍💻").retain(4);
        });
        let after = edit.apply(base).expect("lengths match");
        let inverse = edit.invert(base).expect("lengths match");
        assert_eq!(inverse, edit.invert_in(&Rope::from_str(base)).expect("lengths match"));
        assert_eq!(inverse.apply(&after).expect("lengths match"), base);
    }
}
