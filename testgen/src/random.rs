//! A small deterministic random generator (SplitMix64) and generators of texts, operations and offsets.

use codecollab_protocol::{Component, TextOperation};

/// SplitMix64: tiny, fast, and identical on every platform, so a printed seed reproduces a failure anywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Pieces of text mixing ASCII, accents, CJK, emoji, a ZWJ sequence, a combining mark and line breaks.
pub const PIECES: &[&str] =
    &["a", "b", "xyz", " ", "\n", "\r\n", "é", "日本語", "😀", "👩\u{200d}💻", "e\u{301}", "ß", "\t"];

pub fn text(rng: &mut Rng, max_pieces: usize) -> String {
    (0..rng.below(max_pieces + 1)).map(|_| *rng.pick(PIECES)).collect()
}

pub fn nonempty_text(rng: &mut Rng, max_pieces: usize) -> String {
    let mut s = text(rng, max_pieces);
    if s.is_empty() {
        let piece: &&str = rng.pick(PIECES);
        s.push_str(piece);
    }
    s
}

/// A random operation on a document of `len` chars, in the style of ot.js's generator.
pub fn operation(rng: &mut Rng, len: usize) -> TextOperation {
    let mut op = TextOperation::new();
    let mut left = len;
    while left > 0 {
        let n = rng.between(1, left.min(12));
        match rng.below(4) {
            0 => {
                op.insert(&nonempty_text(rng, 3));
            }
            1 => {
                op.delete(n);
                left -= n;
            }
            _ => {
                op.retain(n);
                left -= n;
            }
        }
    }
    if rng.chance(0.3) {
        op.insert(&nonempty_text(rng, 2));
    }
    op
}

/// A keystroke-like edit: one insert or one short delete at a random place.
pub fn small_edit(rng: &mut Rng, len: usize) -> TextOperation {
    let at = rng.below(len + 1);
    let result = if len > 0 && rng.chance(0.3) {
        let end = (at + rng.between(1, 3)).min(len);
        TextOperation::replace(len, at.min(end), end, "")
    } else {
        TextOperation::replace(len, at, at, &nonempty_text(rng, 2))
    };
    result.expect("offsets are in bounds")
}

/// True if `op` is in normal form: no empty component, no two adjacent of a kind, never delete-then-insert.
pub fn is_normal(op: &TextOperation) -> bool {
    let parts = op.components();
    parts.iter().all(|c| match c {
        Component::Retain(n) | Component::Delete(n) => *n > 0,
        Component::Insert(s) => !s.is_empty(),
    }) && parts.windows(2).all(|w| {
        std::mem::discriminant(&w[0]) != std::mem::discriminant(&w[1])
            && !matches!((&w[0], &w[1]), (Component::Delete(_), Component::Insert(_)))
    })
}
