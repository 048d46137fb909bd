//! The three-way merge a client falls back on when the server can only send a snapshot (its history no longer
//! reaches back to the client's revision): base (the text at the client's last server revision), theirs (the
//! snapshot) and ours (the client's pending operation on base) become one text that keeps every insertion of both
//! sides.
//!
//! Theirs is not known as operations, only as a text, so it is reconstructed as a diff of base against the
//! snapshot ([`diff`]: lines, then words, then characters inside a word), and our pending operation and that diff
//! are transformed against each other as any two concurrent operations are.
//!
//! A diff only sees texts, and where text repeats it has to choose which copy changed: typing `<c3>` after `<a1>`
//! in `<a1><b2>` can be read as inserting `<c3>` at offset 4 or `c3><` at offset 5 (the snapshot is the same).
//! The choice does not matter to theirs, but it matters to ours: had we deleted `<b2>`, the second reading would
//! make our deletion take the `<` of their `<c3>`, tearing their token apart. So the diff is read the way people
//! edit ([`align`]): pure insertions and deletions slide to their most natural edges (lines, spaces, between
//! brackets), replacements widen to such edges, changes separated only by punctuation are joined, and where we
//! inserted inside one of their changes, our text goes before theirs. What theirs then deletes and types again
//! unchanged is read as kept ([`unchanged_kept`]), so that an edit that crosses the merge on its way to the
//! editor keeps what it deleted.
//!
//! The guarantee (docs/wire-protocol.md, "Resync from a snapshot"): every character either side inserted is in
//! the result, each side's in the order it typed them; a character either side deleted is absent, except
//! punctuation and white space (at most [`MAX_WIDEN`] chars) next to their change inside a range we deleted,
//! which may come back (a deletion may be undone there; an insertion is never lost). Where text repeats, the
//! merge cannot know which copy a peer edited: it takes the reading above. The property test
//! `protocol/tests/merge.rs` checks on texts of unique tokens that every token typed on either side survives
//! whole and every token deleted is gone.

use std::time::Instant;

use similar::{Algorithm, DiffOp};

use crate::ot::{transform, Component, OpError, TextOperation};

/// How far a pure insertion or deletion may slide along repeated text to a more natural place.
const MAX_SLIDE: usize = 256;
/// How many unchanged chars a change may take in on either side (to reach a natural edge), or between two of
/// their changes (to join them). Taken-in chars that we deleted come back: a deletion of ours next to their
/// change may be undone by this much, never more.
const MAX_WIDEN: usize = 16;

/// An operation that turns `from` into `to`, read the way people edit text: lines first, then words inside each
/// changed run of lines, then characters inside a word replaced by another.
///
/// - Lines are matched with the patience algorithm, which anchors on lines that occur once on each side.
/// - Inside a changed run of lines, the words made of letters and digits that both sides share anchor the match
///   (patience again: an identifier, a token someone typed), and only between two anchors are the remaining
///   pieces (punctuation, white space, other words) matched, by the smallest difference (Myers). A run of
///   several words with no word in common is replaced whole.
/// - A word replaced by one other word keeps their common beginning and end ([`diff_chars`]).
///
/// So a moved or replaced token is read as one, not as a few characters that happen to match, which is what lets
/// [`merge`] keep whole what each side typed. `deadline` bounds the time spent (past it the diff is coarser,
/// never wrong).
pub fn diff(from: &str, to: &str, deadline: Option<Instant>) -> TextOperation {
    let mut op = TextOperation::new();
    let old: Vec<&str> = from.split_inclusive('\n').collect();
    let new: Vec<&str> = to.split_inclusive('\n').collect();
    for change in similar::capture_diff_slices_deadline(Algorithm::Patience, &old, &new, deadline) {
        match change {
            DiffOp::Equal { old_index, len, .. } => {
                op.retain(char_count(&old[old_index..old_index + len]));
            }
            DiffOp::Delete { old_index, old_len, .. } => {
                op.delete(char_count(&old[old_index..old_index + old_len]));
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                op.insert(&new[new_index..new_index + new_len].concat());
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => diff_words(
                &mut op,
                &old[old_index..old_index + old_len].concat(),
                &new[new_index..new_index + new_len].concat(),
                deadline,
            ),
        }
    }
    op
}

fn char_count(pieces: &[&str]) -> usize {
    pieces.iter().map(|p| p.chars().count()).sum()
}

/// Appends to `op` the diff of two runs of lines, word by word (see [`diff`]).
fn diff_words(op: &mut TextOperation, old: &str, new: &str, deadline: Option<Instant>) {
    let old = words(old);
    let new = words(new);
    let is_word = |piece: &&str| piece.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_');
    let old_keys: Vec<(usize, &str)> =
        old.iter().enumerate().filter(|(_, w)| is_word(w)).map(|(i, w)| (i, *w)).collect();
    let new_keys: Vec<(usize, &str)> =
        new.iter().enumerate().filter(|(_, w)| is_word(w)).map(|(i, w)| (i, *w)).collect();
    let old_words: Vec<&str> = old_keys.iter().map(|&(_, w)| w).collect();
    let new_words: Vec<&str> = new_keys.iter().map(|&(_, w)| w).collect();
    let mut anchors = Vec::new();
    for change in similar::capture_diff_slices_deadline(Algorithm::Patience, &old_words, &new_words, deadline) {
        if let DiffOp::Equal { old_index, new_index, len } = change {
            anchors.extend((0..len).map(|k| (old_keys[old_index + k].0, new_keys[new_index + k].0)));
        }
    }
    if anchors.is_empty() && (old_words.len() > 1 || new_words.len() > 1) {
        // Several words and nothing but punctuation and white space in common: matching those says nothing about
        // what was edited (the brackets and line breaks around different words), and reading the run as edits
        // around them would tear apart what a person typed as a whole. (One word on each side is one word edited.)
        op.insert(&new.concat());
        op.delete(char_count(&old));
        return;
    }
    let (mut i, mut j) = (0, 0);
    for (anchor_old, anchor_new) in anchors {
        diff_between_anchors(op, &old[i..anchor_old], &new[j..anchor_new], deadline);
        op.retain(old[anchor_old].chars().count());
        (i, j) = (anchor_old + 1, anchor_new + 1);
    }
    diff_between_anchors(op, &old[i..], &new[j..], deadline);
}

/// Appends to `op` the smallest diff of the pieces between two anchors.
fn diff_between_anchors(op: &mut TextOperation, old: &[&str], new: &[&str], deadline: Option<Instant>) {
    let changes = similar::capture_diff_slices_deadline(Algorithm::Myers, old, new, deadline);
    for change in changes {
        match change {
            DiffOp::Equal { old_index, len, .. } => {
                op.retain(char_count(&old[old_index..old_index + len]));
            }
            DiffOp::Delete { old_index, old_len, .. } => {
                op.delete(char_count(&old[old_index..old_index + old_len]));
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                op.insert(&new[new_index..new_index + new_len].concat());
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                let (old, new) = (&old[old_index..old_index + old_len], &new[new_index..new_index + new_len]);
                if let ([old], [new]) = (old, new) {
                    diff_chars(op, old, new);
                } else {
                    op.insert(&new.concat());
                    op.delete(char_count(old));
                }
            }
        }
    }
}

/// `text` cut into words: runs of letters, digits and `_`, runs of white space, and every other char alone.
fn words(text: &str) -> Vec<&str> {
    let class = |c: char| {
        if c.is_alphanumeric() || c == '_' {
            0
        } else if c.is_whitespace() {
            1
        } else {
            2
        }
    };
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut previous = None;
    for (at, c) in text.char_indices() {
        let kind = class(c);
        if at > start && (kind == 2 || previous != Some(kind)) {
            pieces.push(&text[start..at]);
            start = at;
        }
        previous = Some(kind);
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Appends to `op` the character diff of two words: their common beginning and end are kept and the middle
/// replaced, which is how a person edits inside a word (`foo` -> `fooBar`, `b1` -> `b2`), as long as what is
/// kept is at least three chars and half the longer word; otherwise the word was replaced (`b1` -> `b15` or
/// `c4` -> `c24` is a new word, not a digit typed into the old one). A smallest character diff would match
/// scattered letters that no one typed around.
fn diff_chars(op: &mut TextOperation, old: &str, new: &str) {
    let old: Vec<char> = old.chars().collect();
    let new: Vec<char> = new.chars().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..].iter().rev().zip(new[prefix..].iter().rev()).take_while(|(a, b)| a == b).count();
    if prefix + suffix < 3 || 2 * (prefix + suffix) < old.len().max(new.len()) {
        op.insert(&new.iter().collect::<String>());
        op.delete(old.len());
        return;
    }
    op.retain(prefix);
    op.insert(&new[prefix..new.len() - suffix].iter().collect::<String>());
    op.delete(old.len() - prefix - suffix);
    op.retain(suffix);
}

/// The outcome of a merge: what to apply where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// Our pending edits, on the snapshot: what the client still has to send.
    pub ours: TextOperation,
    /// Their changes, on our local text (base with our pending edits): what the client applies locally.
    pub theirs: TextOperation,
}

/// Merges our pending operation `ours` (on `base`) with the changes that turned `base` into `snapshot`.
///
/// Transforming `ours` as the first operation gives it the tie-break, as everywhere on the client: at the same
/// place, our insertion comes first, as if the server had sequenced it before theirs.
pub fn merge(base: &str, ours: &TextOperation, snapshot: &str, deadline: Option<Instant>) -> Result<Merged, OpError> {
    let base_chars: Vec<char> = base.chars().collect();
    if ours.base_len() != base_chars.len() {
        return Err(OpError::BaseLengthMismatch { expected: ours.base_len(), actual: base_chars.len() });
    }
    let (first, second) = align(&base_chars, diff(base, snapshot, deadline), ours);
    let (merged_ours, first) = transform(ours, &first)?;
    let (merged_ours, second) = transform(&merged_ours, &second)?;
    let local: Vec<char> = ours.apply(base)?.chars().collect();
    Ok(Merged { ours: merged_ours, theirs: unchanged_kept(&local, &first.compose(&second)?, deadline) })
}

/// `op` (on `text`) with what it deletes and types again unchanged read as kept. Each changed run, what it
/// deletes and what it types, is cut into pieces at natural edges ([`edge`]: whole tokens, words, brackets, line
/// breaks), and the pieces equal on both sides are kept (a patience diff of the pieces), so what is kept never
/// cuts through a word someone typed. The text it makes is the same.
///
/// [`align`] widens their changes to natural edges and joins them across separators, and the diff may replace a
/// run whole, which is what keeps each side's typing whole in the merge; but theirs then deletes text it did not
/// change and types it again. Applied to our text that is harmless, but an edit of ours that crosses theirs on its
/// way (the editor typed while the merge travelled to it, and the daemon transforms that edit past theirs) would
/// lose its deletion of such text, since the text comes back as theirs: a token a user deleted would reappear.
fn unchanged_kept(text: &[char], op: &TextOperation, deadline: Option<Instant>) -> TextOperation {
    let mut kept = TextOperation::with_capacity(op.components().len());
    let mut at = 0;
    for hunk in hunks(op) {
        kept.retain(hunk.at - at);
        at = hunk.end();
        let old = pieces(&text[hunk.at..hunk.end()]);
        let new = pieces(&hunk.inserted);
        let chars = |pieces: &[&[char]]| pieces.iter().flat_map(|p| p.iter()).collect::<String>();
        let count = |pieces: &[&[char]]| pieces.iter().map(|p| p.len()).sum::<usize>();
        for change in similar::capture_diff_slices_deadline(Algorithm::Patience, &old, &new, deadline) {
            match change {
                DiffOp::Equal { old_index, len, .. } => kept.retain(count(&old[old_index..old_index + len])),
                DiffOp::Delete { old_index, old_len, .. } => kept.delete(count(&old[old_index..old_index + old_len])),
                DiffOp::Insert { new_index, new_len, .. } => kept.insert(&chars(&new[new_index..new_index + new_len])),
                DiffOp::Replace { old_index, old_len, new_index, new_len } => kept
                    .insert(&chars(&new[new_index..new_index + new_len]))
                    .delete(count(&old[old_index..old_index + old_len])),
            };
        }
    }
    kept.retain(text.len() - at);
    kept
}

/// `text` cut at every natural edge inside it ([`edge`]).
fn pieces(text: &[char]) -> Vec<&[char]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for i in 1..text.len() {
        if edge(Some(text[i - 1]), Some(text[i])) > 0 {
            pieces.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// One changed run of an operation, in base coordinates: `deleted` chars from `at` replaced by `inserted`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hunk {
    at: usize,
    deleted: usize,
    inserted: Vec<char>,
}

impl Hunk {
    fn end(&self) -> usize {
        self.at + self.deleted
    }
}

/// Where our operation cuts the base text: the ends of the ranges it deletes, and where it inserts.
struct Cuts {
    /// Deleted ranges, in order, never touching.
    deleted: Vec<(usize, usize)>,
    /// Where ours inserts, in order.
    inserts: Vec<usize>,
    /// Every offset that is an end of a deleted range or a place ours inserts, sorted.
    points: Vec<usize>,
}

impl Cuts {
    /// True if we insert strictly inside the range `hunk` deletes.
    fn inserts_inside(&self, hunk: &Hunk) -> bool {
        let first_after = self.inserts.partition_point(|&p| p <= hunk.at);
        self.inserts.get(first_after).is_some_and(|&p| p < hunk.end())
    }

    /// True if `hunk` lies strictly inside one range we delete.
    fn contain(&self, hunk: &Hunk) -> bool {
        let range = self.deleted.partition_point(|&(_, end)| end <= hunk.at);
        self.deleted.get(range).is_some_and(|&(start, end)| start < hunk.at && hunk.end() < end)
    }

    fn of(ours: &TextOperation) -> Cuts {
        let (mut deleted, mut inserts, mut points, mut at) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for component in ours.components() {
            match component {
                Component::Retain(n) => at += n,
                Component::Insert(_) => {
                    inserts.push(at);
                    points.push(at);
                }
                Component::Delete(n) => {
                    deleted.push((at, at + n));
                    points.extend([at, at + n]);
                    at += n;
                }
            }
        }
        points.sort_unstable();
        points.dedup();
        Cuts { deleted, inserts, points }
    }

    /// How many times `hunk` cuts across our edits: each of our cut points strictly inside the range it deletes,
    /// and, if it deletes, each of its ends strictly inside a range we delete (the two deletions overlap without
    /// one containing the other). A pure insertion inside a range we delete is no crossing: it survives whole
    /// there, and [`boundary_score`] has already placed it where an insertion most likely was.
    fn crossings(&self, hunk: &Hunk) -> usize {
        if hunk.deleted == 0 {
            return 0;
        }
        let inside = |point: usize| {
            let range = self.deleted.partition_point(|&(_, end)| end <= point);
            self.deleted.get(range).is_some_and(|&(start, _)| start < point)
        };
        let ends = self.deleted.iter().flat_map(|&(start, end)| [start, end]);
        let within = ends.filter(|&p| hunk.at < p && p < hunk.end()).count();
        within + usize::from(inside(hunk.at)) + usize::from(inside(hunk.end()))
    }
}

/// Re-reads `theirs` (an operation on `base`) the way a person most likely made it, joins its changed runs where
/// our deletions would otherwise tear them apart, and returns it as two operations to apply one after the other
/// (see the comment before the second step). The snapshot they produce is always the one `theirs` produces.
///
/// 1. A pure insertion or deletion slides along repeated text to the place with the most natural edges
///    ([`boundary_score`]); a replacement whose edge falls inside a word or just inside a bracket widens over the
///    fewest unchanged chars that bring it to a natural edge ([`widened`]: `b2` -> `c3` inside `<b2>` becomes
///    `<b2>` -> `<c3>`).
/// 2. Consecutive runs are joined across a few unchanged chars where our edits allow it ([`join`]).
fn align(base: &[char], theirs: TextOperation, ours: &TextOperation) -> (TextOperation, TextOperation) {
    let cuts = Cuts::of(ours);
    let mut hunks = hunks(&theirs);
    for i in 0..hunks.len() {
        let low = if i == 0 { 0 } else { hunks[i - 1].end() };
        let high = hunks.get(i + 1).map_or(base.len(), |h| h.at);
        let hunk = &hunks[i];
        if hunk.deleted == 0 || hunk.inserted.is_empty() {
            let mut best = boundary_score(base, hunk);
            let mut chosen = None;
            for candidate in slides(base, hunk, low, high) {
                let score = boundary_score(base, &candidate);
                if score > best {
                    best = score;
                    chosen = Some(candidate);
                }
            }
            if let Some(chosen) = chosen {
                hunks[i] = chosen;
            }
            // An insertion inside a word we deleted whole (`8` typed after `<c1`) takes the word in: their word
            // survives whole (`<c18>`) instead of a torn-off piece.
            let hunk = &hunks[i];
            if hunk.deleted == 0 && cuts.contain(hunk) {
                hunks[i] = widened(base, hunk, low, high, true);
            }
        } else {
            hunks[i] = widened(base, hunk, low, high, cuts.contain(hunk));
        }
    }
    let hunks = join(base, hunks, &cuts);
    // Two steps, the second on the text the first leaves, so that where we inserted in the middle of their change
    // our insertion goes first, before their text rather than between it and what follows, which may be the end of
    // what they typed (a line break, a closing bracket) that the diff matched to the base or read as a change of
    // its own. One operation cannot say this: its normal form puts an insertion at the start of the deletion it
    // touches. A change (touching runs taken together, as they apply) with our insertion inside the range it
    // deletes deletes up to our last insertion there in the first step, and inserts in the second, where our
    // insertion meets it at one place.
    let touch = |runs: &mut Vec<Hunk>, hunk: Hunk| match runs.last_mut() {
        Some(previous) if previous.end() == hunk.at => {
            previous.deleted += hunk.deleted;
            previous.inserted.extend(hunk.inserted);
        }
        _ => runs.push(hunk),
    };
    let mut runs: Vec<Hunk> = Vec::with_capacity(hunks.len());
    for hunk in hunks {
        touch(&mut runs, hunk);
    }
    let mut touching: Vec<Hunk> = Vec::with_capacity(runs.len());
    for mut hunk in runs {
        // Our text will go before theirs: if theirs starts inside a word (their `<b21>` read as `2` typed into
        // `<b1>`), it first takes in the rest of the word, which we left alone, so that our text lands before the
        // word, not inside it.
        if !hunk.inserted.is_empty() && cuts.inserts_inside(&hunk) {
            let start = word_start(base, &hunk, touching.last().map_or(0, Hunk::end), &cuts);
            let mut inserted = base[start..hunk.at].to_vec();
            inserted.extend_from_slice(&hunk.inserted);
            hunk = Hunk { at: start, deleted: hunk.end() - start, inserted };
        }
        touch(&mut touching, hunk);
    }
    let mut first = TextOperation::with_capacity(touching.len() * 2 + 1);
    let mut second = TextOperation::with_capacity(touching.len() * 3 + 1);
    let mut at = 0;
    for hunk in touching {
        let gap = hunk.at - at;
        let inserted: String = hunk.inserted.iter().collect();
        let first_after = cuts.inserts.partition_point(|&p| p <= hunk.at);
        let last_inside = cuts.inserts[first_after..].iter().take_while(|&&p| p < hunk.end()).last().copied();
        first.retain(gap);
        second.retain(gap);
        match last_inside {
            Some(x) if !inserted.is_empty() => {
                first.delete(x - hunk.at);
                first.retain(hunk.end() - x);
                second.insert(&inserted);
                second.delete(hunk.end() - x);
            }
            _ => {
                first.retain(hunk.deleted);
                second.insert(&inserted);
                second.delete(hunk.deleted);
            }
        }
        at = hunk.end();
    }
    first.retain(base.len() - at);
    second.retain(base.len() - at);
    (first, second)
}

/// Where the word that `hunk` starts inside begins, if it can take it in: no further back than `low` or
/// [`MAX_WIDEN`] chars, and over none of our edits (a char we deleted would come back, a place we inserted would
/// move). `hunk.at` itself if `hunk` starts at a natural edge already, or cannot.
fn word_start(base: &[char], hunk: &Hunk, low: usize, cuts: &Cuts) -> usize {
    let before = |i: usize| i.checked_sub(1).and_then(|i| base.get(i)).copied();
    if edge(before(hunk.at), hunk.inserted.first().copied()) > 0 {
        return hunk.at;
    }
    let touched = |start: usize| {
        let first_cut = cuts.points.partition_point(|&p| p <= start);
        let cut_inside = cuts.points.get(first_cut).is_some_and(|&p| p < hunk.at);
        let range = cuts.deleted.partition_point(|&(_, end)| end <= start);
        cut_inside || cuts.deleted.get(range).is_some_and(|&(begin, _)| begin < hunk.at)
    };
    (1..=(hunk.at - low).min(MAX_WIDEN))
        .map(|n| hunk.at - n)
        .take_while(|&start| !touched(start))
        .find(|&start| edge(before(start), base.get(start).copied()) > 0)
        .unwrap_or(hunk.at)
}

/// How natural the two places where `hunk` meets the unchanged text are as edges of an edit, the higher the
/// better: where a line starts or ends, next to white space, between a closing and an opening bracket, next to
/// other punctuation; worst inside a word or just inside a bracket. A diff is free to place a pure insertion or
/// deletion anywhere along repeated text; people type whole lines, words and bracketed items, so the placement
/// with the best edges is the likeliest reading of what they did (the idea of diff-match-patch's semantic
/// clean-up, with brackets taken into account).
fn boundary_score(base: &[char], hunk: &Hunk) -> u32 {
    let (first, last) = if hunk.deleted == 0 {
        (hunk.inserted.first().copied(), hunk.inserted.last().copied())
    } else {
        (base.get(hunk.at).copied(), base.get(hunk.end() - 1).copied())
    };
    let before = hunk.at.checked_sub(1).and_then(|i| base.get(i)).copied();
    let after = base.get(hunk.end()).copied();
    edge(before, first) + edge(last, after)
}

/// How natural the place between `left` and `right` is as the edge of an edit (`None`: the text's start or end).
fn edge(left: Option<char>, right: Option<char>) -> u32 {
    let (Some(left), Some(right)) = (left, right) else { return 6 };
    let opening = |c: char| matches!(c, '(' | '[' | '{' | '<');
    let closing = |c: char| matches!(c, ')' | ']' | '}' | '>');
    if left == '\n' || left == '\r' {
        5
    } else if right == '\n' || right == '\r' {
        4
    } else if left.is_whitespace() || right.is_whitespace() {
        3
    } else if opening(left) || closing(right) {
        0
    } else if closing(left) || opening(right) {
        2
    } else if !left.is_alphanumeric() || !right.is_alphanumeric() {
        1
    } else {
        0
    }
}

/// Joins consecutive changed runs of theirs, at least one of which inserts, across a few unchanged chars that
/// hold no letter or digit (separators, brackets, line breaks), when the joined run cuts across our edits no more
/// often than the two did. Those chars may be what they typed, matched by the diff to equal chars of the base:
/// where we deleted them, deleting them would tear their insertions apart, so they come back instead.
///
/// Never across a word: a word between two of their changes is the base's. Where we deleted it, our deletion
/// stands. Where we did not, joining would take it into their change, so that it is deleted and typed again:
/// where we inserted inside the joined run, our text would go before it all (see [`align`]), past text neither
/// side changed; and an edit of ours that crossed the merge (one the editor made while the merge travelled to it)
/// would lose its deletion of that word, which would come back as theirs.
fn join(base: &[char], hunks: Vec<Hunk>, cuts: &Cuts) -> Vec<Hunk> {
    let mut joined: Vec<Hunk> = Vec::with_capacity(hunks.len());
    for hunk in hunks {
        if let Some(previous) = joined.last_mut() {
            let gap = previous.end()..hunk.at;
            let separators = || base[gap.clone()].iter().all(|c| !c.is_alphanumeric());
            let inserts = !previous.inserted.is_empty() || !hunk.inserted.is_empty();
            if gap.len() <= MAX_WIDEN && inserts && separators() {
                let mut inserted = previous.inserted.clone();
                inserted.extend_from_slice(&base[gap.clone()]);
                inserted.extend_from_slice(&hunk.inserted);
                let both = Hunk { at: previous.at, deleted: previous.deleted + gap.len() + hunk.deleted, inserted };
                if cuts.crossings(&both) <= cuts.crossings(previous) + cuts.crossings(&hunk) {
                    *previous = both;
                    continue;
                }
            }
        }
        joined.push(hunk);
    }
    joined
}

/// The changed runs of `op`, in order.
fn hunks(op: &TextOperation) -> Vec<Hunk> {
    let mut hunks: Vec<Hunk> = Vec::new();
    let mut at = 0;
    let mut open = false;
    for component in op.components() {
        match component {
            Component::Retain(n) => {
                at += n;
                open = false;
            }
            Component::Insert(text) => {
                if !open {
                    hunks.push(Hunk { at, deleted: 0, inserted: Vec::new() });
                    open = true;
                }
                if let Some(hunk) = hunks.last_mut() {
                    hunk.inserted.extend(text.chars());
                }
            }
            Component::Delete(n) => {
                if !open {
                    hunks.push(Hunk { at, deleted: 0, inserted: Vec::new() });
                    open = true;
                }
                if let Some(hunk) = hunks.last_mut() {
                    hunk.deleted += n;
                }
                at += n;
            }
        }
    }
    hunks
}

/// The positions a pure insertion or deletion can slide to, within `low..high`, nearest first (left before
/// right at equal distance). Inserting `r` at `p` is inserting `base[p-1] + r[..last]` at `p - 1` when `r` ends
/// with `base[p-1]`; deleting `base[p..p+d]` is deleting `base[p-1..p+d-1]` when `base[p-1] == base[p+d-1]`.
fn slides<'a>(base: &'a [char], hunk: &Hunk, low: usize, high: usize) -> impl Iterator<Item = Hunk> + 'a {
    let pure = hunk.deleted == 0 || hunk.inserted.is_empty();
    let mut left = Vec::new();
    let mut right = Vec::new();
    if pure {
        let mut current = hunk.clone();
        while left.len() < MAX_SLIDE && current.at > low {
            let before = base[current.at - 1];
            let last = if current.deleted == 0 { current.inserted.last() } else { base.get(current.end() - 1) };
            if last != Some(&before) {
                break;
            }
            current.at -= 1;
            if current.deleted == 0 {
                current.inserted.pop();
                current.inserted.insert(0, before);
            }
            left.push(current.clone());
        }
        let mut current = hunk.clone();
        while right.len() < MAX_SLIDE && current.end() < high {
            let after = base[current.end()];
            let first = if current.deleted == 0 { current.inserted.first() } else { base.get(current.at) };
            if first != Some(&after) {
                break;
            }
            if current.deleted == 0 {
                current.inserted.remove(0);
                current.inserted.push(after);
            }
            current.at += 1;
            right.push(current.clone());
        }
    }
    let longest = left.len().max(right.len());
    let mut left = left.into_iter();
    let mut right = right.into_iter();
    (0..longest).flat_map(move |_| left.next().into_iter().chain(right.next()))
}

/// `hunk` (a replacement, or an insertion inside a range we deleted) widened, on each side whose edge is
/// unnatural (score 0: inside a word, just inside a bracket; for an insertion, the place it inserts at), over the
/// fewest unchanged chars within `low..high` (at most [`MAX_WIDEN`]) that make it natural;
/// a side that cannot be made natural stays as it is. The widened chars are deleted and inserted again, so a
/// deletion of ours over them would be undone: only brackets, punctuation and white space are taken in, never a
/// letter or a digit, except when the whole change lies inside a range we deleted. Then it is an edit inside a
/// word we deleted whole (`b` -> `t` inside `<b12>`), and it is widened to the whole word (`<t12>`): their word
/// survives whole instead of one torn-off letter.
fn widened(base: &[char], hunk: &Hunk, low: usize, high: usize, inside_our_deletion: bool) -> Hunk {
    let at = |i: usize| base.get(i).copied();
    let word = |i: usize| base[i].is_alphanumeric() && !inside_our_deletion;
    let before = (0..=(hunk.at - low).min(MAX_WIDEN))
        .take_while(|&n| n == 0 || !word(hunk.at - n))
        .find(|&n| edge((hunk.at - n).checked_sub(1).and_then(at), at(hunk.at - n)) > 0)
        .unwrap_or(0);
    let after = (0..=(high - hunk.end()).min(MAX_WIDEN))
        .take_while(|&n| n == 0 || !word(hunk.end() + n - 1))
        .find(|&n| edge((hunk.end() + n).checked_sub(1).and_then(at), at(hunk.end() + n)) > 0)
        .unwrap_or(0);
    let (start, end) = (hunk.at - before, hunk.end() + after);
    let mut inserted = base[start..hunk.at].to_vec();
    inserted.extend_from_slice(&hunk.inserted);
    inserted.extend_from_slice(&base[hunk.end()..end]);
    Hunk { at: start, deleted: end - start, inserted }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert_at(len: usize, at: usize, text: &str) -> TextOperation {
        TextOperation::replace(len, at, at, text).expect("in bounds")
    }

    fn delete(len: usize, start: usize, end: usize) -> TextOperation {
        TextOperation::replace(len, start, end, "").expect("in bounds")
    }

    #[test]
    fn words_split_at_every_change_of_kind() {
        assert_eq!(
            words("let x_1 = <a17>;\n  é"),
            ["let", " ", "x_1", " ", "=", " ", "<", "a17", ">", ";", "\n  ", "é"]
        );
    }

    #[test]
    fn diffs_refine_changed_lines_to_characters() {
        let op = diff("a\nabcdef\nc\n", "a\nabcXef\nc\nd\n", None);
        assert_eq!(op.apply("a\nabcdef\nc\n").expect("fits"), "a\nabcXef\nc\nd\n");
        assert_eq!(op.deleted_chars(), 1, "only the changed char is replaced: {op:?}");
        assert_eq!(op.inserted_chars(), 3);
    }

    #[test]
    fn an_insertion_is_kept_whole_beside_our_deletion_of_equal_text() {
        // They typed <c3> after <a1>; we deleted <b2>. A diff may read their typing as `c3><` after `<a1><`.
        let base = "<a1><b2>";
        let ours = delete(8, 4, 8);
        let merged = merge(base, &ours, "<a1><c3><b2>", None).expect("merges");
        assert_eq!(merged.theirs.apply("<a1>").expect("fits"), "<a1><c3>");
        assert_eq!(merged.ours.apply("<a1><c3><b2>").expect("fits"), "<a1><c3>");
    }

    #[test]
    fn a_deletion_does_not_split_around_our_insertion() {
        // They deleted <b2>; we typed <d4> between <a1> and <b2>.
        let base = "<a1><b2><c3>";
        let ours = insert_at(12, 4, "<d4>");
        let merged = merge(base, &ours, "<a1><c3>", None).expect("merges");
        assert_eq!(merged.theirs.apply("<a1><d4><b2><c3>").expect("fits"), "<a1><d4><c3>");
    }

    #[test]
    fn a_replacement_is_widened_to_the_ends_of_our_deletion() {
        // They replaced <b2> by <c3> (a diff sees `b2` -> `c3`); we deleted <b2>.
        let merged = merge("<a1><b2>", &delete(8, 4, 8), "<a1><c3>", None).expect("merges");
        assert_eq!(merged.theirs.apply("<a1>").expect("fits"), "<a1><c3>");
    }

    #[test]
    fn both_sides_typing_at_one_place_keep_both_with_ours_first() {
        let merged = merge("abcd", &insert_at(4, 2, "X"), "abYcd", None).expect("merges");
        assert_eq!(merged.theirs.apply("abXcd").expect("fits"), "abXYcd");
        assert_eq!(merged.ours.apply("abYcd").expect("fits"), "abXYcd");
        // In a word too short to tell an edit inside it from a new word, theirs is a new word: ours goes before.
        let merged = merge("ab", &insert_at(2, 1, "X"), "aYb", None).expect("merges");
        assert_eq!(merged.theirs.apply("aXb").expect("fits"), "XaYb");
    }

    #[test]
    fn our_typing_stays_after_a_word_neither_side_changed() {
        // They typed <t3> before <b12> and replaced what follows it; we typed between the words after <b12>.
        // Their changes are not joined across <b12>, so our typing does not move before it.
        let base = "<b12><b6><b9><b4><b15>";
        let local = "<b12><b6><o4><b9><b4><o5><o1>";
        let mut ours = TextOperation::new();
        ours.retain(9).insert("<o4>").retain(8).insert("<o5><o1>").delete(5);
        assert_eq!(ours.apply(base).expect("fits"), local);
        let merged = merge(base, &ours, "<t3>\n<b12><t4><t2><t1>\n", None).expect("merges");
        let text = merged.theirs.apply(local).expect("fits");
        assert!(text.starts_with("<t3>\n<b12><o4>"), "{text}");
    }

    #[test]
    fn an_edit_crossing_the_merge_keeps_its_deletion() {
        // They typed <t1> and <t2> around <b2>; the editor deleted <b2> while the merge was on its way to it.
        let base = "<b1><b2><b3>";
        let merged = merge(base, &TextOperation::identity(12), "<b1><t1><b2><t2><b3>", None).expect("merges");
        let (crossing, _) = transform(&delete(12, 4, 8), &merged.theirs).expect("fits");
        assert_eq!(crossing.apply("<b1><t1><b2><t2><b3>").expect("fits"), "<b1><t1><t2><b3>");
    }

    #[test]
    fn text_deleted_and_typed_again_unchanged_is_kept() {
        // A run that deletes `<b1><b2>` and types `<t1><b1><b2><t2>` keeps the two tokens, whole.
        let text: Vec<char> = "<a0><b1><b2>".chars().collect();
        let mut op = TextOperation::new();
        op.retain(4).insert("<t1><b1><b2><t2>").delete(8);
        let kept = unchanged_kept(&text, &op, None);
        let mut expected = TextOperation::new();
        expected.retain(4).insert("<t1>").retain(8).insert("<t2>");
        assert_eq!(kept, expected);
        // Equal chars that are not whole pieces (the brackets around a replaced word) are not kept.
        let mut op = TextOperation::new();
        op.retain(4).insert("<c3>").delete(4).retain(4);
        assert_eq!(unchanged_kept(&text, &op, None), op);
    }

    #[test]
    fn a_wrong_base_is_an_error() {
        assert!(merge("abc", &insert_at(2, 0, "x"), "abc", None).is_err());
    }
}
