//! The three-way merge on texts of unique tokens: whatever both sides inserted and deleted, the merged text keeps
//! every token either side typed, loses every token either side deleted, and tears no token apart; and an edit
//! that crosses the merge on its way to the editor keeps what it did.

use std::collections::BTreeSet;

use codecollab_protocol::merge;

use crate::support::for_each_seed;
use crate::support::random::Rng;
use crate::support::tokens::{self, TokenEdit};

/// Applies `edits` random token edits by `author` to `text`; returns the new text, its operation from `text`,
/// and what was inserted and deleted.
fn edit(
    rng: &mut Rng,
    text: &str,
    author: char,
    edits: usize,
) -> (String, codecollab_protocol::TextOperation, Vec<TokenEdit>) {
    let mut counter = 0;
    let mut current = text.to_owned();
    let mut op = codecollab_protocol::TextOperation::identity(text.chars().count());
    let mut done = Vec::new();
    for _ in 0..edits {
        let (step, what) = tokens::random_edit(rng, &current, author, &mut counter, 0.4);
        current = step.apply(&current).expect("fits");
        op = op.compose(&step).expect("composes");
        done.push(what);
    }
    (current, op, done)
}

/// One merge of random token edits: `base_tokens` tokens, then up to `edits` edits on each side.
fn check(seed: u64, base_tokens: usize, edits: usize) {
    let mut rng = Rng::new(seed);
    let (n_base, n_theirs, n_ours) = (rng.below(base_tokens + 1), rng.between(1, edits), rng.between(1, edits));
    let (base, _, _) = edit(&mut rng, "", 'b', n_base);
    let (snapshot, _, theirs) = edit(&mut rng, &base, 't', n_theirs);
    let (local, ours_op, ours) = edit(&mut rng, &base, 'o', n_ours);
    let merged = merge::merge(&base, &ours_op, &snapshot, None).expect("merges");
    let from_local = merged.theirs.apply(&local).expect("theirs fits our text");
    let from_snapshot = merged.ours.apply(&snapshot).expect("ours fits the snapshot");
    assert_eq!(from_local, from_snapshot, "both ways lead to one text");
    let mut expected: BTreeSet<String> = tokens::parse(&base).expect("base is tokens").into_iter().collect();
    take_in(&mut expected, theirs.iter().chain(&ours));
    let context = format!("\nbase     {base:?}\nsnapshot {snapshot:?}\nlocal    {local:?}\nmerged   {from_local:?}");
    assert_tokens(&from_local, &expected, &context);

    // An edit the local editor made while the merge was on its way to it (it crossed theirs on the wire) is
    // transformed past theirs, as the daemon does: what it deletes must stay deleted, what it types must stay.
    // Theirs may rewrite text it did not change (read as deleted and typed again): that must not undo the edit.
    let n_editor = rng.between(1, 6);
    let (_, crossing, editor) = edit(&mut rng, &local, 'e', n_editor);
    let (crossing, _) = codecollab_protocol::transform(&crossing, &merged.theirs).expect("the edit fits");
    let last = crossing.apply(&from_local).expect("the crossing edit fits the merged text");
    take_in(&mut expected, &editor);
    let context = format!("{context}\nthen an edit that crossed theirs: {last:?}");
    // Where the crossing edit typed inside a run theirs replaced, it lands at that run's start, in front of a line
    // break theirs kept from the base: a token's line break may end up after the crossing edit's (a blank line
    // where there was none). The tokens are what must hold.
    assert_tokens(&last.replace('\n', ""), &expected, &context);
}

/// `expected` after the token edits `done`: what they inserted is in, what they deleted is out.
fn take_in<'a>(expected: &mut BTreeSet<String>, done: impl IntoIterator<Item = &'a TokenEdit>) {
    for what in done {
        match what {
            TokenEdit::Inserted(t) => expected.insert(t.clone()),
            TokenEdit::Deleted(t) => expected.remove(t),
        };
    }
}

/// `text` is whole tokens, each once, exactly `expected`; `context` says what was merged.
fn assert_tokens(text: &str, expected: &BTreeSet<String>, context: &str) {
    let Some(found) = tokens::parse(text) else { panic!("a token was torn apart:{context}") };
    let found_set: BTreeSet<String> = found.iter().cloned().collect();
    assert_eq!(found.len(), found_set.len(), "a token appears twice:{context}");
    assert_eq!(&found_set, expected, "{context}");
}

#[test]
fn merging_keeps_every_typed_token_and_drops_every_deleted_one() {
    // Small texts with a few edits on each side, then larger ones with many (all seeds up to 100,000 of both
    // passed once; these ranges keep the test under a few seconds in a debug build).
    for_each_seed("merging_keeps_every_typed_token_and_drops_every_deleted_one", 0..4_000, |seed| check(seed, 30, 12));
    for_each_seed("merging_keeps_every_typed_token_and_drops_every_deleted_one (large)", 0..500, |seed| {
        check(seed, 80, 40)
    });
}
