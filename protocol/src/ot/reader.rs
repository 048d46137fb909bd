//! A cursor over an operation's components that can hand out part of a component (used by compose and transform).

use std::slice;

use super::operation::{char_len, Component, TextOperation};

/// A component, or the unconsumed rest of one. Inserts carry their char count so it is computed once.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Piece<'a> {
    Retain(usize),
    Insert(&'a str, usize),
    Delete(usize),
}

impl Piece<'_> {
    /// Length in chars: consumed from the base for retain and delete, produced for insert.
    #[inline]
    pub(crate) fn len(self) -> usize {
        match self {
            Piece::Retain(n) | Piece::Delete(n) | Piece::Insert(_, n) => n,
        }
    }
}

/// Walks the components of one operation, splitting them on demand.
pub(crate) struct Reader<'a> {
    rest: slice::Iter<'a, Component>,
    head: Option<Piece<'a>>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(op: &'a TextOperation) -> Self {
        let mut rest = op.components.iter();
        let head = rest.next().map(piece);
        Reader { rest, head }
    }

    /// The current piece, if any is left.
    #[inline]
    pub(crate) fn peek(&self) -> Option<Piece<'a>> {
        self.head
    }

    /// Consumes the whole current piece.
    #[inline]
    pub(crate) fn skip(&mut self) {
        self.head = self.rest.next().map(piece);
    }

    /// Consumes the first `n` chars of the current piece (`n` at most its length) without splitting text.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        match &mut self.head {
            Some(Piece::Retain(k) | Piece::Delete(k)) if n < *k => *k -= n,
            Some(Piece::Insert(..)) => {
                self.take(n);
            }
            _ => self.skip(),
        }
    }

    /// Consumes and returns the first `n` chars of the current piece; `n` must not exceed its length.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Option<Piece<'a>> {
        let head = self.head?;
        if n >= head.len() {
            self.skip();
            return Some(head);
        }
        let (taken, left) = match head {
            Piece::Retain(k) => (Piece::Retain(n), Piece::Retain(k - n)),
            Piece::Delete(k) => (Piece::Delete(n), Piece::Delete(k - n)),
            Piece::Insert(s, k) => {
                let cut = if s.len() == k { n } else { s.char_indices().nth(n).map_or(s.len(), |(i, _)| i) };
                (Piece::Insert(&s[..cut], n), Piece::Insert(&s[cut..], k - n))
            }
        };
        self.head = Some(left);
        Some(taken)
    }
}

#[inline]
fn piece(component: &Component) -> Piece<'_> {
    match component {
        Component::Retain(n) => Piece::Retain(*n),
        Component::Insert(s) => Piece::Insert(s, char_len(s)),
        Component::Delete(n) => Piece::Delete(*n),
    }
}
