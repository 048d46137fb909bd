//! The server document's text: a B+ tree of UTF-8 chunks indexed by char count, built for edits at random places
//! in large documents.
//!
//! `ropey::Rope` (which the daemon keeps, for its line and UTF-16 indexes) stores four counts per child and scans
//! a leaf from its start to find a char. The server needs chars only, so a branch here holds one count per child,
//! its index for a 10 MB document fits in the L2 cache, and a leaf of ASCII text (`bytes == chars`) finds its
//! byte offset without a scan. Keystrokes at random places in a 10 MB document apply 1.7-1.9x faster than to a
//! rope (`cargo bench -p codecollab-protocol --bench ot`), and the whole automerge-paper trace 1.8x faster.
//!
//! Invariants (checked by `check` in the tests): every leaf is at the same depth; a branch's `chars[i]` is the
//! number of chars under `children[i]`; leaves hold (and have room for) at most `MAX_LEAF` bytes and branches at most
//! `MAX_CHILDREN` children; below the root, leaves hold at least `MIN_LEAF` bytes and branches at least
//! `MIN_CHILDREN` children, so the tree stays O(log n) deep and its leaves reasonably full whatever the edits.

use std::fmt;
use std::ops::Range;

#[cfg(not(test))]
mod size {
    /// Most bytes in a leaf.
    pub const MAX_LEAF: usize = 2048;
    /// Most children of a branch.
    pub const MAX_CHILDREN: usize = 32;
}
// Tiny nodes in the unit tests, so that a few hundred chars build a tree several levels deep.
#[cfg(test)]
mod size {
    pub const MAX_LEAF: usize = 24;
    pub const MAX_CHILDREN: usize = 6;
}
use size::{MAX_CHILDREN, MAX_LEAF};

/// Fewest bytes in a leaf below the root.
const MIN_LEAF: usize = MAX_LEAF / 4;
/// Fewest children of a branch below the root.
const MIN_CHILDREN: usize = MAX_CHILDREN / 3;
/// Largest piece when a leaf overflows: four bytes under [`MAX_LEAF`], room for rounding a cut to a char boundary.
const SPLIT_LEAF: usize = MAX_LEAF - 4;
/// Leaf and branch sizes when building from a string: three quarters full, so that the first edits don't split.
const BUILD_LEAF: usize = MAX_LEAF * 3 / 4;
const BUILD_CHILDREN: usize = MAX_CHILDREN * 3 / 4;
/// Spare bytes in a leaf built from a string: most leaves of a large document are never edited, so they get room
/// for a few dozen keystrokes, not for a whole leaf (a 10 MB document takes 1.12x its size, a rope 1.15x). A leaf that
/// outgrows it gets room for a whole leaf at once ([`make_room`]); leaves cut by edits get it from the start.
const BUILD_ROOM: usize = MAX_LEAF / 16;

/// Text as a B+ tree of chunks, indexed by char (Unicode scalar value) offsets. Insert and remove are O(log n)
/// plus the length of the text inserted or removed.
#[derive(Clone)]
pub struct TextTree {
    root: Node,
    /// Chars in the whole text: the root's count, which no parent holds.
    chars: usize,
}

#[derive(Clone, Debug)]
enum Node {
    Leaf(String),
    Branch(Box<Branch>),
}

#[derive(Clone, Debug)]
struct Branch {
    /// `chars[i]`: the number of chars under `children[i]`.
    chars: Vec<usize>,
    children: Vec<Node>,
}

/// A node with its char count, as passed up when nodes split.
type Counted = (usize, Node);

impl TextTree {
    pub fn new() -> Self {
        TextTree { root: Node::Leaf(String::new()), chars: 0 }
    }

    pub fn len_chars(&self) -> usize {
        self.chars
    }

    /// Length in bytes. Walks the chunks: O(n / 2 KiB), not for hot paths.
    pub fn len_bytes(&self) -> usize {
        self.chunks().map(str::len).sum()
    }

    /// The text's chunks, in order.
    pub fn chunks(&self) -> Chunks<'_> {
        Chunks { stack: vec![std::slice::from_ref(&self.root).iter()] }
    }

    /// Inserts `text` at char offset `at`.
    ///
    /// # Panics
    /// If `at` is past the end.
    pub fn insert(&mut self, at: usize, text: &str) {
        self.insert_counted(at, text, str_indices::chars::count(text));
    }

    /// [`TextTree::insert`] of `text`, which the caller knows to be `chars` chars long.
    pub(crate) fn insert_counted(&mut self, at: usize, text: &str, chars: usize) {
        assert!(at <= self.chars, "insert at char {at} of a text of {} chars", self.chars);
        debug_assert_eq!(chars, str_indices::chars::count(text));
        if text.is_empty() {
            return;
        }
        let split = self.root.insert(self.chars, at, text, chars);
        self.chars += chars;
        if !split.is_empty() {
            self.grow(split);
        }
    }

    /// The chars in `range`, as a string. O(log n) plus the length of the range.
    ///
    /// # Panics
    /// If the range is reversed or reaches past the end.
    pub fn slice(&self, range: Range<usize>) -> String {
        assert!(
            range.start <= range.end && range.end <= self.chars,
            "slice chars {range:?} of a text of {} chars",
            self.chars
        );
        let mut out = String::new();
        self.root.collect(self.chars, range, &mut out);
        out
    }

    /// Removes the chars in `range`.
    ///
    /// # Panics
    /// If the range is reversed or reaches past the end.
    pub fn remove(&mut self, range: Range<usize>) {
        assert!(
            range.start <= range.end && range.end <= self.chars,
            "remove chars {range:?} of a text of {} chars",
            self.chars
        );
        if range.is_empty() {
            return;
        }
        if range.len() == self.chars {
            *self = TextTree::new();
            return;
        }
        self.root.remove(self.chars, range.clone());
        self.chars -= range.len();
        // A root left with one child hands the root role down.
        while let Node::Branch(branch) = &mut self.root {
            if branch.children.len() != 1 {
                break;
            }
            self.root = branch.children.pop().expect("one child");
        }
    }

    /// Puts the root and the nodes that split off it under new branches, as many levels as that takes.
    fn grow(&mut self, split: Vec<Counted>) {
        let old_root = std::mem::replace(&mut self.root, Node::Leaf(String::new()));
        let mut level: Vec<Counted> =
            std::iter::once((self.chars - split.iter().map(|(c, _)| c).sum::<usize>(), old_root))
                .chain(split)
                .collect();
        while level.len() > 1 {
            level = group(level, MAX_CHILDREN);
        }
        self.root = level.pop().expect("one root").1;
    }
}

impl Default for TextTree {
    fn default() -> Self {
        TextTree::new()
    }
}

impl From<&str> for TextTree {
    fn from(text: &str) -> Self {
        let chars = str_indices::chars::count(text);
        if text.len() <= MAX_LEAF {
            return TextTree { root: Node::Leaf(leaf(text, BUILD_ROOM)), chars };
        }
        let mut level = leaf_pieces(text, chars, BUILD_LEAF, BUILD_ROOM);
        while level.len() > 1 {
            level = group(level, BUILD_CHILDREN);
        }
        TextTree { root: level.pop().expect("one root").1, chars }
    }
}

/// The whole text in a string of exactly its size (`to_string` would grow one by doubling).
impl From<&TextTree> for String {
    fn from(tree: &TextTree) -> String {
        let mut text = String::with_capacity(tree.len_bytes());
        tree.chunks().for_each(|chunk| text.push_str(chunk));
        text
    }
}

impl fmt::Display for TextTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.chunks().try_for_each(|chunk| f.write_str(chunk))
    }
}

impl fmt::Debug for TextTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TextTree({} chars)", self.chars)
    }
}

/// The chunks of a [`TextTree`], in order: a depth-first walk.
#[derive(Debug)]
pub struct Chunks<'a> {
    stack: Vec<std::slice::Iter<'a, Node>>,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let top = self.stack.last_mut()?;
            match top.next() {
                None => {
                    self.stack.pop();
                }
                Some(Node::Leaf(text)) => return Some(text),
                Some(Node::Branch(branch)) => self.stack.push(branch.children.iter()),
            }
        }
    }
}

/// A leaf holding `text`, with room to grow by `room` bytes (up to [`MAX_LEAF`]) without reallocating.
fn leaf(text: &str, room: usize) -> String {
    let mut leaf = String::with_capacity((text.len() + room).min(MAX_LEAF).max(text.len()));
    leaf.push_str(text);
    leaf
}

/// Makes room for `extra` more bytes in `leaf`, which will still fit in a leaf: room for a whole leaf at once,
/// and never more (`String`'s own growth would double it).
fn make_room(leaf: &mut String, extra: usize) {
    debug_assert!(leaf.len() + extra <= MAX_LEAF);
    if leaf.capacity() - leaf.len() < extra {
        leaf.reserve_exact(MAX_LEAF - leaf.len());
    }
}

/// The byte offset of char `at` in `leaf`, which holds `chars` chars. O(1) for ASCII.
fn byte_of(leaf: &str, chars: usize, at: usize) -> usize {
    if leaf.len() == chars {
        at
    } else {
        str_indices::chars::to_byte_idx(leaf, at)
    }
}

/// Cuts `text` (`chars` chars long) into leaves of at most `most` + 3 bytes, as even as char boundaries allow,
/// each with `room` spare bytes.
fn leaf_pieces(text: &str, chars: usize, most: usize, room: usize) -> Vec<Counted> {
    let count = text.len().div_ceil(most).max(1);
    let ascii = text.len() == chars;
    let mut pieces = Vec::with_capacity(count);
    let mut start = 0;
    for k in 1..=count {
        // In u64: the product passes 32 bits for a large document.
        let mut end = (text.len() as u64 * k as u64 / count as u64) as usize;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let piece = &text[start..end];
        let piece_chars = if ascii { piece.len() } else { str_indices::chars::count(piece) };
        pieces.push((piece_chars, Node::Leaf(leaf(piece, room))));
        start = end;
    }
    pieces
}

/// Puts `nodes` under branches of at most `most` children each, as even as possible.
fn group(mut nodes: Vec<Counted>, most: usize) -> Vec<Counted> {
    let count = nodes.len().div_ceil(most);
    let total = nodes.len();
    let mut groups = Vec::with_capacity(count);
    // From the last group back, so that each `split_off` moves only its own group.
    for k in (0..count).rev() {
        let members = nodes.split_off(total * k / count);
        let (chars, children): (Vec<usize>, Vec<Node>) = members.into_iter().unzip();
        groups.push((chars.iter().sum(), Node::Branch(Box::new(Branch { chars, children }))));
    }
    groups.reverse();
    groups
}

impl Node {
    /// Below the root, a node this small must be merged with a neighbour.
    fn is_underfull(&self) -> bool {
        match self {
            Node::Leaf(text) => text.len() < MIN_LEAF,
            Node::Branch(branch) => branch.children.len() < MIN_CHILDREN,
        }
    }

    /// Inserts `text` (`chars` chars) at char `at` of this node, which holds `own` chars. Returns the nodes that
    /// split off to its right, if it overflowed; this node keeps the chars they don't take.
    fn insert(&mut self, own: usize, at: usize, text: &str, chars: usize) -> Vec<Counted> {
        match self {
            Node::Leaf(leaf) => {
                let byte = byte_of(leaf, own, at);
                if leaf.len() + text.len() <= MAX_LEAF {
                    make_room(leaf, text.len());
                    leaf.insert_str(byte, text);
                    return Vec::new();
                }
                let mut joined = String::with_capacity(leaf.len() + text.len());
                joined.push_str(&leaf[..byte]);
                joined.push_str(text);
                joined.push_str(&leaf[byte..]);
                let mut pieces = leaf_pieces(&joined, own + chars, SPLIT_LEAF, MAX_LEAF);
                let rest = pieces.split_off(1);
                *self = pieces.pop().expect("at least one piece").1;
                rest
            }
            Node::Branch(branch) => {
                let (i, offset) = branch.child_at(at);
                let child_chars = branch.chars[i];
                let split = branch.children[i].insert(child_chars, offset, text, chars);
                branch.chars[i] = child_chars + chars - split.iter().map(|(c, _)| c).sum::<usize>();
                if split.is_empty() {
                    return Vec::new();
                }
                branch.splice(i + 1..i + 1, split);
                if branch.children.len() <= MAX_CHILDREN {
                    return Vec::new();
                }
                let mut groups = group(branch.take(), MAX_CHILDREN);
                let rest = groups.split_off(1);
                *self = groups.pop().expect("at least one group").1;
                rest
            }
        }
    }

    /// Appends chars `range` of this node, which holds `own` chars, to `out`.
    fn collect(&self, own: usize, range: Range<usize>, out: &mut String) {
        if range.is_empty() {
            return;
        }
        match self {
            Node::Leaf(leaf) => {
                let start = byte_of(leaf, own, range.start);
                let end = byte_of(leaf, own, range.end);
                out.push_str(&leaf[start..end]);
            }
            Node::Branch(branch) => {
                let mut offset = 0;
                for (child, &chars) in branch.children.iter().zip(&branch.chars) {
                    let (start, end) = (range.start.max(offset), range.end.min(offset + chars));
                    if start < end {
                        child.collect(chars, start - offset..end - offset, out);
                    }
                    offset += chars;
                    if offset >= range.end {
                        break;
                    }
                }
            }
        }
    }

    /// Removes chars `range` of this node, which holds `own` chars; the range leaves at least one char.
    fn remove(&mut self, own: usize, range: Range<usize>) {
        match self {
            Node::Leaf(leaf) => {
                let start = byte_of(leaf, own, range.start);
                let end = if leaf.len() == own {
                    range.end
                } else {
                    start + str_indices::chars::to_byte_idx(&leaf[start..], range.len())
                };
                leaf.replace_range(start..end, "");
            }
            Node::Branch(branch) => branch.remove(range),
        }
    }
}

impl Branch {
    /// The child holding char `at` (the left one at a boundary) and the offset of `at` inside it.
    fn child_at(&self, mut at: usize) -> (usize, usize) {
        let last = self.chars.len() - 1;
        for (i, &chars) in self.chars[..last].iter().enumerate() {
            if at <= chars {
                return (i, at);
            }
            at -= chars;
        }
        (last, at)
    }

    fn splice(&mut self, range: Range<usize>, nodes: Vec<Counted>) {
        let (chars, children): (Vec<usize>, Vec<Node>) = nodes.into_iter().unzip();
        self.chars.splice(range.clone(), chars);
        self.children.splice(range, children);
    }

    fn take(&mut self) -> Vec<Counted> {
        std::mem::take(&mut self.chars).into_iter().zip(std::mem::take(&mut self.children)).collect()
    }

    /// Removes chars `range` (which leaves at least one) from the children, then merges any child left too small.
    fn remove(&mut self, range: Range<usize>) {
        // The first and last children the range touches, and where each starts.
        let (mut lo, mut lo_start) = (0, 0);
        while lo_start + self.chars[lo] <= range.start {
            lo_start += self.chars[lo];
            lo += 1;
        }
        let (mut hi, mut hi_start) = (lo, lo_start);
        while hi_start + self.chars[hi] < range.end {
            hi_start += self.chars[hi];
            hi += 1;
        }
        if lo == hi && (range.start > lo_start || range.end < lo_start + self.chars[lo]) {
            // Inside one child, leaving some of it.
            let own = self.chars[lo];
            self.children[lo].remove(own, range.start - lo_start..range.end - lo_start);
            self.chars[lo] -= range.len();
        } else {
            // Children `lo` to `hi`, each either cut at one end or removed whole.
            let hi_end = range.end - hi_start;
            let hi_whole = hi_end == self.chars[hi];
            if !hi_whole {
                let own = self.chars[hi];
                self.children[hi].remove(own, 0..hi_end);
                self.chars[hi] -= hi_end;
            }
            let lo_begin = range.start - lo_start;
            let lo_whole = lo_begin == 0;
            if !lo_whole {
                let own = self.chars[lo];
                self.children[lo].remove(own, lo_begin..own);
                self.chars[lo] = lo_begin;
            }
            let whole = if lo_whole { lo } else { lo + 1 }..if hi_whole { hi + 1 } else { hi };
            self.chars.drain(whole.clone());
            self.children.drain(whole);
        }
        self.merge_small(lo);
    }

    /// Merges children `at` and `at + 1` (those an edit touched) with neighbours while either is too small.
    fn merge_small(&mut self, mut at: usize) {
        while self.children.len() > 1 {
            let Some(small) = (at..self.children.len().min(at + 2)).find(|&i| self.children[i].is_underfull()) else {
                return;
            };
            let left = small.min(self.children.len() - 2);
            self.merge_pair(left);
            at = left.saturating_sub(1);
        }
    }

    /// Replaces children `i` and `i + 1` by their concatenation, cut in two again if that is too big.
    fn merge_pair(&mut self, i: usize) {
        let (right_chars, right) = (self.chars.remove(i + 1), self.children.remove(i + 1));
        let (left_chars, left) = (self.chars[i], &mut self.children[i]);
        let total = left_chars + right_chars;
        let merged = match (left, right) {
            (Node::Leaf(left), Node::Leaf(right)) => {
                if left.len() + right.len() <= MAX_LEAF {
                    make_room(left, right.len());
                    left.push_str(&right);
                    self.chars[i] = total;
                    return;
                }
                let mut joined = std::mem::take(left);
                joined.push_str(&right);
                leaf_pieces(&joined, total, SPLIT_LEAF, MAX_LEAF)
            }
            (Node::Branch(left), Node::Branch(right)) => {
                let seam = left.children.len();
                let Branch { chars, children } = *right;
                left.chars.extend(chars);
                left.children.extend(children);
                // The two children meeting at the seam were each the edge of a subtree and may be small.
                left.merge_small(seam - 1);
                if left.children.len() <= MAX_CHILDREN {
                    self.chars[i] = total;
                    return;
                }
                group(left.take(), MAX_CHILDREN)
            }
            _ => unreachable!("siblings are at the same depth"),
        };
        self.splice(i..i + 1, merged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks every invariant in the module comment; returns the text.
    fn check(tree: &TextTree) -> String {
        fn walk(node: &Node, chars: usize, root: bool, depth: usize, leaf_depth: &mut Option<usize>) {
            match node {
                Node::Leaf(text) => {
                    assert_eq!(text.chars().count(), chars, "leaf count");
                    assert!(text.len() <= MAX_LEAF, "leaf of {} bytes", text.len());
                    assert!(text.capacity() <= MAX_LEAF, "leaf with room for {} bytes", text.capacity());
                    assert!(root || text.len() >= MIN_LEAF, "leaf of {} bytes below the root", text.len());
                    assert_eq!(*leaf_depth.get_or_insert(depth), depth, "leaves at different depths");
                }
                Node::Branch(branch) => {
                    let n = branch.children.len();
                    assert_eq!(n, branch.chars.len());
                    assert!(n <= MAX_CHILDREN, "branch of {n} children");
                    assert!(if root { n >= 2 } else { n >= MIN_CHILDREN }, "branch of {n} children (root: {root})");
                    assert_eq!(branch.chars.iter().sum::<usize>(), chars, "branch count");
                    for (&c, child) in branch.chars.iter().zip(&branch.children) {
                        walk(child, c, false, depth + 1, leaf_depth);
                    }
                }
            }
        }
        walk(&tree.root, tree.chars, true, 0, &mut None);
        let text = tree.to_string();
        assert_eq!(String::from(tree), text);
        assert_eq!(text.chars().count(), tree.len_chars());
        assert_eq!(text.len(), tree.len_bytes());
        text
    }

    /// A small xorshift generator: the tests are reproducible from the seed they print.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n.max(1) as u64) as usize
        }

        fn text(&mut self, most: usize) -> String {
            const PARTS: [&str; 8] = ["a", "bc", "é", "日本語", "😀", "👩\u{200d}💻", "e\u{301}", "\n"];
            (0..self.below(most) + 1).map(|_| PARTS[self.below(PARTS.len())]).collect()
        }
    }

    fn char_range(text: &str, range: Range<usize>) -> Range<usize> {
        let byte = |c| text.char_indices().nth(c).map_or(text.len(), |(b, _)| b);
        byte(range.start)..byte(range.end)
    }

    #[test]
    fn builds_from_strings_of_every_size() {
        let mut rng = Rng(1);
        for len in [0, 1, 5, MAX_LEAF, MAX_LEAF + 1, 200, 5_000] {
            let text = rng.text(len);
            let tree = TextTree::from(text.as_str());
            assert_eq!(check(&tree), text);
        }
    }

    #[test]
    fn random_edits_agree_with_a_string() {
        for seed in 1..=200_u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut model = rng.text(300);
            let mut tree = TextTree::from(model.as_str());
            for step in 0..200 {
                let len = model.chars().count();
                let at = rng.below(len + 1);
                match rng.below(10) {
                    // Mostly keystrokes, sometimes pastes and cuts large enough to split or empty whole subtrees.
                    0..=4 => {
                        let text = if rng.below(8) == 0 { rng.text(120) } else { rng.text(2) };
                        let byte = char_range(&model, at..at).start;
                        model.insert_str(byte, &text);
                        tree.insert(at, &text);
                    }
                    5..=8 => {
                        let end = (at + rng.below(3) + 1).min(len);
                        model.replace_range(char_range(&model, at..end), "");
                        tree.remove(at..end);
                    }
                    _ => {
                        let end = (at + rng.below(len / 2 + 1)).min(len);
                        model.replace_range(char_range(&model, at..end), "");
                        tree.remove(at..end);
                    }
                }
                assert_eq!(check(&tree), model, "seed {seed}, step {step}");
                let len = model.chars().count();
                let start = rng.below(len + 1);
                let end = (start + rng.below(len - start + 1)).min(len);
                assert_eq!(tree.slice(start..end), model[char_range(&model, start..end)], "seed {seed}, step {step}");
            }
        }
    }

    #[test]
    fn grows_deep_and_shrinks_back_to_a_leaf() {
        let mut tree = TextTree::new();
        for i in 0..2_000 {
            tree.insert(i / 2, "ab");
        }
        check(&tree);
        assert!(matches!(&tree.root, Node::Branch(b) if matches!(b.children[0], Node::Branch(_))), "several levels");
        while tree.len_chars() > 3 {
            tree.remove(tree.len_chars() / 3..tree.len_chars() / 3 + 2);
            check(&tree);
        }
        assert!(matches!(tree.root, Node::Leaf(_)));
        tree.remove(0..tree.len_chars());
        assert_eq!(check(&tree), "");
    }

    #[test]
    fn large_inserts_split_into_many_levels_at_once() {
        let mut tree = TextTree::from("start end");
        let big = "日本語 and ascii ".repeat(500);
        tree.insert(6, &big);
        assert_eq!(check(&tree), format!("start {big}end"));
        tree.remove(3..tree.len_chars() - 2);
        assert_eq!(check(&tree), "stand");
    }

    #[test]
    #[should_panic(expected = "remove chars 2..5 of a text of 3 chars")]
    fn out_of_range_is_a_panic_not_corruption() {
        TextTree::from("abc").remove(2..5);
    }
}
