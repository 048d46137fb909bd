//! `TextOperation`: a sequence of retain / insert / delete components over Unicode scalar values, kept in normal form.
//!
//! Lengths and offsets everywhere in this crate count `char`s (Unicode scalar values), never bytes or UTF-16
//! units: that is the unit every peer agrees on, whatever its editor uses.
//!
//! Normal form, which makes equality structural:
//! - no component has length zero;
//! - no two adjacent components have the same kind (they are merged);
//! - an insert and a delete that touch are ordered insert-then-delete
//!   (`[Delete(2), Insert("x")]` and `[Insert("x"), Delete(2)]` mean the same edit; only the latter is kept).
//!
//! Every constructor goes through the builder methods ([`TextOperation::retain`], [`TextOperation::insert`],
//! [`TextOperation::delete`]), which maintain the form, so two operations that do the same thing compare equal.

use std::fmt;

use compact_str::CompactString;

/// One step of an operation, applied at a cursor that walks the base document from its start.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Component {
    /// Keep the next `n` chars.
    Retain(usize),
    /// Insert this text at the cursor. The text is never empty.
    Insert(Text),
    /// Remove the next `n` chars.
    Delete(usize),
}

/// The text of an insert, with its length in chars counted once, when it is made: transform and compose need
/// that length for every insert they pass, and counting it there was a fifth of their time. Short texts (up to
/// 24 bytes, so every keystroke) are stored inline, without a heap allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Text {
    text: CompactString,
    chars: usize,
}

impl Text {
    pub fn new(text: &str) -> Text {
        Text { text: CompactString::new(text), chars: char_len(text) }
    }

    /// `text`, which the caller knows to be `chars` chars long.
    #[inline]
    pub(crate) fn counted(text: &str, chars: usize) -> Text {
        debug_assert_eq!(chars, char_len(text));
        Text { text: CompactString::new(text), chars }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Length in chars (Unicode scalar values).
    #[inline]
    pub fn char_len(&self) -> usize {
        self.chars
    }

    /// Appends `text`, `chars` chars long.
    #[inline]
    pub(crate) fn push(&mut self, text: &str, chars: usize) {
        self.text.push_str(text);
        self.chars += chars;
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text::new(text)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        let chars = char_len(&text);
        Text { text: CompactString::from(text), chars }
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Retain(n) => write!(f, "r{n}"),
            Component::Insert(s) => write!(f, "i{s:?}"),
            Component::Delete(n) => write!(f, "d{n}"),
        }
    }
}

/// Why an operation could not be applied, composed or transformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The operation expects a document of `expected` chars and was given one of `actual`.
    #[error("operation expects a document of {expected} chars, got {actual}")]
    BaseLengthMismatch { expected: usize, actual: usize },
    /// `compose(a, b)` needs `b.base_len() == a.target_len()`.
    #[error("cannot compose: first operation produces {first_target} chars, second expects {second_base}")]
    ComposeLengthMismatch { first_target: usize, second_base: usize },
    /// `transform(a, b)` needs both operations to start from the same document.
    #[error("cannot transform: operations start from documents of {a_base} and {b_base} chars")]
    TransformLengthMismatch { a_base: usize, b_base: usize },
    /// A replacement range lies outside the document, or ends before it starts.
    #[error("replacement {start}..{end} is out of bounds for a document of {len} chars")]
    ReplacementOutOfBounds { start: usize, end: usize, len: usize },
}

/// The components in order. A plain `Vec`: measured against an inline `SmallVec`, moving the larger inline
/// value around cost more than the one allocation it saved.
pub(crate) type Components = Vec<Component>;

/// An edit of a whole document: it consumes exactly `base_len` chars and produces exactly `target_len` chars.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TextOperation {
    pub(crate) components: Components,
    pub(crate) base_len: usize,
    pub(crate) target_len: usize,
}

impl fmt::Debug for TextOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Op({}->{} ", self.base_len, self.target_len)?;
        f.debug_list().entries(self.components.iter()).finish()?;
        write!(f, ")")
    }
}

/// Appends a retain (`delete` false) or delete of `n` chars to `components`, merged with a run of its kind just
/// before it. For loops that build components directly and set the lengths once at the end: updating the
/// lengths per component, as the builder methods do, was a third of the time of a keystroke transform.
#[inline(always)]
pub(crate) fn push_run(components: &mut Components, n: usize, delete: bool) {
    match (components.last_mut(), delete) {
        _ if n == 0 => {}
        (Some(Component::Retain(m)), false) | (Some(Component::Delete(m)), true) => *m += n,
        (_, false) => components.push(Component::Retain(n)),
        (_, true) => components.push(Component::Delete(n)),
    }
}

/// Appends an insert of `text` (`chars` chars) to `components`, keeping the normal form (merged with an insert
/// before it, placed before a trailing delete). `whole` is the component `text` comes from, if all of it: copying
/// it as it is beats re-encoding the text.
#[inline(always)]
pub(crate) fn push_text(components: &mut Components, text: &str, chars: usize, whole: Option<&Text>) {
    let n = components.len();
    match (components.as_mut_slice(), whole) {
        ([.., Component::Insert(last)], _) => last.push(text, chars),
        ([.., Component::Insert(before), Component::Delete(_)], _) => before.push(text, chars),
        ([.., Component::Delete(_)], _) => components.insert(n - 1, Component::Insert(Text::counted(text, chars))),
        // Each case builds the component in place: going through an `Option` first cost a stall in the copy.
        (_, Some(whole)) => components.push(Component::Insert(whole.clone())),
        (_, None) => components.push(Component::Insert(Text::counted(text, chars))),
    }
}

/// Byte offset of the `chars`-th char of `text` (or its length).
#[inline]
pub(crate) fn byte_offset(text: &str, chars: usize) -> usize {
    text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i)
}

/// Number of chars in `text`. Counting is the one place bytes turn into chars.
#[inline]
pub(crate) fn char_len(text: &str) -> usize {
    if text.len() <= 64 {
        // Short texts, nearly every insert: count the continuation bytes (10xxxxxx) eight at a time, which beats
        // the set-up of the vectorized count below.
        let mut chunks = text.as_bytes().chunks_exact(8);
        let mut continuation = 0;
        for chunk in &mut chunks {
            let Ok(bytes) = <[u8; 8]>::try_from(chunk) else { continue };
            let word = u64::from_le_bytes(bytes);
            continuation += ((word >> 7) & !(word >> 6) & 0x0101_0101_0101_0101).count_ones() as usize;
        }
        continuation += chunks.remainder().iter().filter(|&&b| b & 0xC0 == 0x80).count();
        text.len() - continuation
    } else if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

impl TextOperation {
    /// The empty operation on the empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty operation with room for `n` components.
    pub fn with_capacity(n: usize) -> Self {
        TextOperation { components: Vec::with_capacity(n), base_len: 0, target_len: 0 }
    }

    /// The operation that keeps a document of `len` chars as it is.
    pub fn identity(len: usize) -> Self {
        let mut op = Self::new();
        op.retain(len);
        op
    }

    /// The operation that replaces chars `start..end` of a document of `len` chars by `text`.
    pub fn replace(len: usize, start: usize, end: usize, text: &str) -> Result<Self, OpError> {
        if start > end || end > len {
            return Err(OpError::ReplacementOutOfBounds { start, end, len });
        }
        let mut op = Self::with_capacity(4);
        op.retain(start).insert(text).delete(end - start).retain(len - end);
        Ok(op)
    }

    /// Chars the operation consumes: the length of the document it applies to.
    pub fn base_len(&self) -> usize {
        self.base_len
    }

    /// Chars the operation produces: the length of the document after it.
    pub fn target_len(&self) -> usize {
        self.target_len
    }

    /// The components, in normal form.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// True if applying the operation changes nothing (it only retains).
    pub fn is_noop(&self) -> bool {
        self.components.iter().all(|c| matches!(c, Component::Retain(_)))
    }

    /// Appends "keep the next `n` chars".
    #[inline]
    pub fn retain(&mut self, n: usize) -> &mut Self {
        if n == 0 {
            return self;
        }
        self.base_len += n;
        self.target_len += n;
        if let Some(Component::Retain(last)) = self.components.last_mut() {
            *last += n;
        } else {
            self.components.push(Component::Retain(n));
        }
        self
    }

    /// Appends "insert `text` here".
    #[inline]
    pub fn insert(&mut self, text: &str) -> &mut Self {
        if text.is_empty() {
            return self;
        }
        let chars = char_len(text);
        self.target_len += chars;
        push_text(&mut self.components, text, chars, None);
        self
    }

    /// Appends an insert whose char length the caller already knows (hot paths of compose and transform).
    #[inline]
    pub(crate) fn insert_counted(&mut self, text: &str, chars: usize) {
        if chars == 0 {
            return;
        }
        self.target_len += chars;
        push_text(&mut self.components, text, chars, None);
    }

    /// Appends "remove the next `n` chars".
    #[inline]
    pub fn delete(&mut self, n: usize) -> &mut Self {
        if n == 0 {
            return self;
        }
        self.base_len += n;
        if let Some(Component::Delete(last)) = self.components.last_mut() {
            *last += n;
        } else {
            self.components.push(Component::Delete(n));
        }
        self
    }

    /// Builds an operation from components in any form, normalizing them.
    pub fn from_components<I: IntoIterator<Item = Component>>(components: I) -> Self {
        let mut op = Self::new();
        for component in components {
            op.push(component);
        }
        op
    }

    /// Appends one component, keeping the normal form.
    pub fn push(&mut self, component: Component) -> &mut Self {
        match component {
            Component::Retain(n) => self.retain(n),
            Component::Insert(s) => {
                self.target_len += s.char_len();
                push_text(&mut self.components, &s, s.char_len(), Some(&s));
                self
            }
            Component::Delete(n) => self.delete(n),
        }
    }

    /// Number of chars inserted in total.
    pub fn inserted_chars(&self) -> usize {
        self.components.iter().map(|c| if let Component::Insert(s) = c { s.char_len() } else { 0 }).sum()
    }

    /// Number of bytes (UTF-8) inserted in total.
    pub fn inserted_bytes(&self) -> usize {
        self.components.iter().map(|c| if let Component::Insert(s) = c { s.len() } else { 0 }).sum()
    }

    /// Number of chars deleted in total.
    pub fn deleted_chars(&self) -> usize {
        self.components.iter().map(|c| if let Component::Delete(n) = c { *n } else { 0 }).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_keeps_normal_form() {
        let mut a = TextOperation::new();
        a.retain(2).delete(1).insert("x").delete(1).insert("y").retain(0).retain(3);
        let mut b = TextOperation::new();
        b.retain(2).insert("xy").delete(2).retain(3);
        assert_eq!(a, b);
        assert_eq!(a.components().len(), 4);
        assert_eq!(a.base_len(), 7);
        assert_eq!(a.target_len(), 7);
    }

    #[test]
    fn char_len_agrees_with_std_across_chunk_boundaries() {
        let pieces = ["a", "é", "日本語", "😀", "👩\u{200d}💻", "e\u{301}", "\r\n"];
        for n in 0..40 {
            let text: String = (0..n).map(|i| pieces[(i * 7 + n) % pieces.len()]).collect();
            assert_eq!(char_len(&text), text.chars().count(), "{text:?}");
        }
    }

    #[test]
    fn counts_chars_not_bytes() {
        let mut op = TextOperation::new();
        op.insert("é日😀👩‍💻");
        // é, 日, 😀, and the ZWJ sequence is 3 scalar values.
        assert_eq!(op.target_len(), 6);
    }

    #[test]
    fn replace_rejects_bad_ranges() {
        assert!(TextOperation::replace(3, 2, 1, "").is_err());
        assert!(TextOperation::replace(3, 0, 4, "").is_err());
        let op = TextOperation::replace(3, 1, 2, "ab").expect("valid range");
        assert_eq!(op.target_len(), 4);
    }
}
