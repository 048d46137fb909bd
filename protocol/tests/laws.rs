//! The algebraic laws of text operations, checked on seeded random inputs with non-ASCII text.

use codecollab_protocol::{transform, Bias, Component, Replacement, Selection, TextOperation, TextTree};
use ropey::Rope;

use crate::support::for_each_seed;
use crate::support::random::{self, is_normal, Rng};

const SEEDS: std::ops::Range<u64> = 0..2000;

#[test]
fn apply_to_str_equals_apply_to_rope() {
    for_each_seed("apply_to_str_equals_apply_to_rope", SEEDS, |seed| {
        let mut rng = Rng::new(seed);
        let doc = random::text(&mut rng, 20);
        let op = random::operation(&mut rng, doc.chars().count());
        let mut rope = Rope::from_str(&doc);
        op.apply_to(&mut rope).expect("lengths match");
        assert_eq!(rope.to_string(), op.apply(&doc).expect("lengths match"));
        assert_eq!(rope.len_chars(), op.target_len());
        let mut tree = TextTree::from(doc.as_str());
        op.apply_to(&mut tree).expect("lengths match");
        assert_eq!(tree.to_string(), rope.to_string());
    });
}

#[test]
fn a_text_tree_agrees_with_a_rope_on_a_large_document() {
    // Large enough for a tree several levels deep with the real node sizes; keystrokes and whole-document
    // operations (long deletes and inserts that split and merge many nodes at once).
    for_each_seed("a_text_tree_agrees_with_a_rope_on_a_large_document", 0..4, |seed| {
        let mut rng = Rng::new(seed);
        let doc: String = (0..200).map(|_| random::text(&mut rng, 1000)).collect();
        let (mut rope, mut tree) = (Rope::from_str(&doc), TextTree::from(doc.as_str()));
        assert_eq!(tree.to_string(), doc);
        for step in 0..3000 {
            let len = tree.len_chars();
            let op =
                if step % 100 == 99 { random::operation(&mut rng, len) } else { random::small_edit(&mut rng, len) };
            op.apply_to(&mut rope).expect("lengths match");
            op.apply_to(&mut tree).expect("lengths match");
            if step % 100 == 99 {
                assert_eq!(tree.len_bytes(), rope.len_bytes(), "step {step}");
                assert!(tree.to_string() == rope, "step {step}: the tree and the rope differ");
            }
        }
    });
}

#[test]
fn compose_is_sequential_application() {
    for_each_seed("compose_is_sequential_application", SEEDS, |seed| {
        let mut rng = Rng::new(seed);
        let doc = random::text(&mut rng, 20);
        let a = random::operation(&mut rng, doc.chars().count());
        let after_a = a.apply(&doc).expect("lengths match");
        let b = random::operation(&mut rng, a.target_len());
        let ab = a.compose(&b).expect("lengths match");
        assert!(is_normal(&ab), "{ab:?}");
        assert_eq!(ab.apply(&doc).expect("lengths match"), b.apply(&after_a).expect("lengths match"));
    });
}

#[test]
fn transform_converges() {
    for_each_seed("transform_converges", SEEDS, |seed| {
        let mut rng = Rng::new(seed);
        let doc = random::text(&mut rng, 20);
        let len = doc.chars().count();
        let a = random::operation(&mut rng, len);
        let b = random::operation(&mut rng, len);
        let (a_prime, b_prime) = transform(&a, &b).expect("same base");
        assert!(is_normal(&a_prime) && is_normal(&b_prime));
        let via_a = b_prime.apply(&a.apply(&doc).expect("ok")).expect("ok");
        let via_b = a_prime.apply(&b.apply(&doc).expect("ok")).expect("ok");
        assert_eq!(via_a, via_b, "a={a:?} b={b:?}");
        // Composition commutes with transformation: a·b' == b·a'.
        assert_eq!(a.compose(&b_prime).expect("ok"), b.compose(&a_prime).expect("ok"));
    });
}

#[test]
fn invert_undoes() {
    for_each_seed("invert_undoes", SEEDS, |seed| {
        let mut rng = Rng::new(seed);
        let doc = random::text(&mut rng, 20);
        let op = random::operation(&mut rng, doc.chars().count());
        let inverse = op.invert(&doc).expect("lengths match");
        assert_eq!(inverse, op.invert_in(&Rope::from_str(&doc)).expect("lengths match"));
        assert_eq!(inverse.apply(&op.apply(&doc).expect("ok")).expect("ok"), doc);
        assert_eq!(op.compose(&inverse).expect("ok").apply(&doc).expect("ok"), doc);
    });
}

/// Where each base char ends up in the target, or `None` if deleted: an independent reading of the operation.
fn char_map(op: &TextOperation) -> Vec<Option<usize>> {
    let mut map = Vec::with_capacity(op.base_len());
    let mut target = 0;
    for component in op.components() {
        match component {
            Component::Retain(n) => {
                map.extend((target..target + n).map(Some));
                target += n;
            }
            Component::Insert(s) => target += s.chars().count(),
            Component::Delete(n) => map.extend(std::iter::repeat_n(None, *n)),
        }
    }
    map
}

#[test]
fn cursors_stay_in_bounds_and_keep_their_side() {
    for_each_seed("cursors_stay_in_bounds_and_keep_their_side", SEEDS, |seed| {
        let mut rng = Rng::new(seed);
        let len = rng.below(30);
        let op = random::operation(&mut rng, len);
        let map = char_map(&op);
        for offset in 0..=len + 2 {
            let after = op.transform_offset(offset, Bias::After);
            let before = op.transform_offset(offset, Bias::Before);
            assert!(before <= after && after <= op.target_len(), "{op:?} at {offset}");
            // After: the cursor sits right before the char that followed it, if that char survived.
            if let Some(Some(next)) = map.get(offset) {
                assert_eq!(after, *next, "{op:?} at {offset}");
            }
            // Before: the cursor sits right after the char that preceded it, if that char survived.
            if offset > 0 && offset <= len {
                if let Some(previous) = map[offset - 1] {
                    assert_eq!(before, previous + 1, "{op:?} at {offset}");
                }
            }
        }
        // An insert exactly at the cursor: Before stays, After moves past it.
        let at = rng.below(len + 1);
        let text = random::nonempty_text(&mut rng, 3);
        let insert = TextOperation::replace(len, at, at, &text).expect("in bounds");
        assert_eq!(insert.transform_offset(at, Bias::Before), at);
        assert_eq!(insert.transform_offset(at, Bias::After), at + text.chars().count());
        // Selections stay in bounds and keep their direction.
        let selection = Selection { anchor: rng.below(len + 1), head: rng.below(len + 1) };
        let moved = selection.transform(&op, Bias::After);
        assert!(moved.anchor <= op.target_len() && moved.head <= op.target_len());
        if selection.anchor < selection.head {
            assert!(moved.anchor <= moved.head);
        }
    });
}

#[test]
fn replacements_round_trip() {
    for_each_seed("replacements_round_trip", SEEDS, |seed| {
        let mut rng = Rng::new(seed);
        let doc: Vec<char> = random::text(&mut rng, 20).chars().collect();
        let mut expected = doc.clone();
        let mut replacements = Vec::new();
        for _ in 0..rng.between(1, 5) {
            let start = rng.below(expected.len() + 1);
            let end = rng.between(start, expected.len());
            let text = random::text(&mut rng, 2);
            expected.splice(start..end, text.chars());
            replacements.push(Replacement::new(start, end, text));
        }
        let doc: String = doc.into_iter().collect();
        let expected: String = expected.into_iter().collect();
        let op = TextOperation::from_replacements(doc.chars().count(), &replacements)
            .unwrap_or_else(|e| panic!("{e} for {doc:?} {replacements:?}"));
        assert!(is_normal(&op));
        assert_eq!(op.apply(&doc).expect("ok"), expected);
        let back = TextOperation::from_replacements(doc.chars().count(), &op.to_replacements()).expect("ok");
        assert_eq!(back, op);
    });
}

#[test]
fn normal_form_makes_equality_structural() {
    for_each_seed("normal_form_makes_equality_structural", SEEDS, |seed| {
        let mut rng = Rng::new(seed);
        let len = rng.below(20);
        let op = random::operation(&mut rng, len);
        // Re-split every component into random pieces, in random delete/insert order: same operation.
        let mut pieces = Vec::new();
        for component in op.components() {
            match component {
                Component::Retain(n) | Component::Delete(n) => {
                    let mut left = *n;
                    while left > 0 {
                        let k = rng.between(1, left);
                        pieces.push(if matches!(component, Component::Retain(_)) {
                            Component::Retain(k)
                        } else {
                            Component::Delete(k)
                        });
                        left -= k;
                    }
                }
                Component::Insert(s) => {
                    let chars: Vec<char> = s.chars().collect();
                    let cut = rng.below(chars.len() + 1);
                    pieces.push(Component::Insert(chars[..cut].iter().collect::<String>().into()));
                    pieces.push(Component::Insert(chars[cut..].iter().collect::<String>().into()));
                }
            }
            if rng.chance(0.2) {
                pieces.push(Component::Retain(0));
            }
        }
        let rebuilt = TextOperation::from_components(pieces);
        assert!(is_normal(&rebuilt));
        assert_eq!(rebuilt, op);
    });
}
