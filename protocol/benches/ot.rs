//! Benchmarks of the OT core against the `operational-transform` crate (the OT library Rustpad and Teamtype use),
//! measured in the same run and reported as ratios; and the server document's `receive` across document sizes.
//!
//! Run: `cargo bench -p codecollab-protocol --bench ot` (add `-- --quick` for a shorter run that replays only a
//! prefix of the trace through the crate's O(n) string apply).

use std::hint::black_box;
use std::time::{Duration, Instant};

use codecollab_protocol::{transform, Component, Document, DocumentLimits, Received, TextOperation, TextTree};
use operational_transform::OperationSeq;
use ropey::Rope;

use codecollab_testgen::random::Rng;
use codecollab_testgen::{random, trace};

/// Runs `ours` and `theirs` alternately, `runs` times each, and returns their median durations. Alternating
/// keeps a noisy neighbour from landing on one side only.
fn median_pair<F: FnMut(), G: FnMut()>(runs: usize, mut ours: F, mut theirs: G) -> (Duration, Duration) {
    let mut a = Vec::with_capacity(runs);
    let mut b = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        ours();
        a.push(start.elapsed());
        let start = Instant::now();
        theirs();
        b.push(start.elapsed());
    }
    a.sort();
    b.sort();
    (a[runs / 2], b[runs / 2])
}

/// Runs `f` `runs` times and returns the median duration.
fn median<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn to_crate(op: &TextOperation) -> OperationSeq {
    let mut seq = OperationSeq::default();
    for component in op.components() {
        match component {
            Component::Retain(n) => seq.retain(*n as u64),
            Component::Insert(s) => seq.insert(s),
            Component::Delete(n) => seq.delete(*n as u64),
        }
    }
    seq
}

fn crate_txn(len: usize, patches: &[(usize, usize, String)]) -> OperationSeq {
    // Trace transactions are applied patch by patch, as the crate has no replacement-list constructor.
    let mut op: Option<OperationSeq> = None;
    let mut current = len;
    for (at, deleted, text) in patches {
        let mut seq = OperationSeq::default();
        seq.retain(*at as u64);
        seq.delete(*deleted as u64);
        seq.insert(text);
        seq.retain((current - at - deleted) as u64);
        current = current - deleted + text.chars().count();
        op = Some(match op {
            None => seq,
            Some(prev) => prev.compose(&seq).expect("consecutive patches compose"),
        });
    }
    op.unwrap_or_default()
}

fn trace_replay(quick: bool) {
    let trace = trace::load("automerge-paper");
    let edits = trace.txns.len();
    let ours = median(5, || {
        let rope = trace::replay(Rope::new(), &trace);
        assert!(rope == trace.end_content.as_str());
        black_box(rope);
    });
    let tree = median(5, || {
        let tree = trace::replay(TextTree::new(), &trace);
        assert!(tree.to_string() == trace.end_content);
        black_box(tree);
    });
    // The crate applies to a String in O(n) per edit: replay once (a prefix with --quick).
    let crate_edits = if quick { edits / 10 } else { edits };
    let theirs = median(1, || {
        let mut text = String::new();
        let mut len = 0;
        for txn in &trace.txns[..crate_edits] {
            let op = crate_txn(len, &txn.patches);
            text = op.apply(&text).expect("lengths match");
            len = op.target_len();
        }
        if !quick {
            assert_eq!(text, trace.end_content);
        }
        black_box(text);
    });
    let ours_per_edit = ours.as_secs_f64() / edits as f64;
    let theirs_per_edit = theirs.as_secs_f64() / crate_edits as f64;
    println!("trace replay: automerge-paper, {edits} edits");
    println!(
        "  codecollab (rope)                 {:>10.1} ms total  {:>8.0} ns/edit",
        ours.as_secs_f64() * 1e3,
        ours_per_edit * 1e9
    );
    println!(
        "  codecollab (TextTree, the server)  {:>9.1} ms total  {:>8.0} ns/edit",
        tree.as_secs_f64() * 1e3,
        tree.as_secs_f64() * 1e9 / edits as f64
    );
    println!(
        "  operational-transform (String)    {:>10.1} ms total  {:>8.0} ns/edit  ({crate_edits} edits{})",
        theirs.as_secs_f64() * 1e3,
        theirs_per_edit * 1e9,
        if quick { ", prefix" } else { "" }
    );
    if quick {
        println!(
            "  ratio per edit (a prefix understates it: their cost grows with length) {:.0}x",
            theirs_per_edit / ours_per_edit
        );
    } else {
        println!("  ratio (whole replay)              {:>10.0}x faster", theirs.as_secs_f64() / ours.as_secs_f64());
    }
}

/// Pairs of operations: random multi-component ones on short random texts (the crate's own benchmark shape), or
/// keystrokes on 1-5 KB documents (the shape a server sees). `concurrent`: both on the same text (transform),
/// else the second follows the first (compose).
fn op_pairs(seed: u64, keystrokes: bool, concurrent: bool) -> Vec<(TextOperation, TextOperation)> {
    let mut rng = Rng::new(seed);
    let gen = |rng: &mut Rng, len: usize| {
        if keystrokes {
            random::small_edit(rng, len)
        } else {
            random::operation(rng, len)
        }
    };
    (0..2000)
        .map(|_| {
            let len = if keystrokes { rng.between(1000, 5000) } else { rng.below(40) };
            let a = gen(&mut rng, len);
            let b = gen(&mut rng, if concurrent { len } else { a.target_len() });
            (a, b)
        })
        .collect()
}

fn transform_and_compose() {
    for (shape, keystrokes) in [("random ops", false), ("keystrokes", true)] {
        let pairs = op_pairs(1, keystrokes, true);
        let crate_pairs: Vec<_> = pairs.iter().map(|(a, b)| (to_crate(a), to_crate(b))).collect();
        let (ours, theirs) = median_pair(
            101,
            || {
                for (a, b) in &pairs {
                    black_box(transform(black_box(a), black_box(b)).expect("same base"));
                }
            },
            || {
                for (a, b) in &crate_pairs {
                    black_box(black_box(a).transform(black_box(b)).expect("same base"));
                }
            },
        );
        report(&format!("transform, {shape}"), pairs.len(), ("codecollab", ours), ("operational-transform", theirs));

        let pairs = op_pairs(2, keystrokes, false);
        let crate_pairs: Vec<_> = pairs.iter().map(|(a, b)| (to_crate(a), to_crate(b))).collect();
        let (ours, theirs) = median_pair(
            101,
            || {
                for (a, b) in &pairs {
                    black_box(black_box(a).compose(black_box(b)).expect("consecutive"));
                }
            },
            || {
                for (a, b) in &crate_pairs {
                    black_box(black_box(a).compose(black_box(b)).expect("consecutive"));
                }
            },
        );
        report(&format!("compose, {shape}"), pairs.len(), ("codecollab", ours), ("operational-transform", theirs));
    }
}

/// Prints `n` operations' times per operation on both sides, and their ratio.
fn report(name: &str, n: usize, (ours_name, ours): (&str, Duration), (theirs_name, theirs): (&str, Duration)) {
    let per = |d: Duration| d.as_secs_f64() * 1e9 / n as f64;
    println!(
        "{name:<24} {ours_name} {:>7.0} ns/op   {theirs_name} {:>7.0} ns/op   ratio {:.2}x",
        per(ours),
        per(theirs),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    // A row for `scripts/bench` (the format of `codecollab_tests::bench::row`, which this crate cannot use).
    println!(
        "bench-row\tOT {name}: {ours_name}, against {theirs_name}\t{:.0} ns/op\t{:.0} ns/op\t{:.2}x\t-",
        per(ours),
        per(theirs),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}

/// `Document::receive` of keystrokes made 16 revisions behind (16 concurrent ops to transform through), at
/// several document sizes. Returns ns per op.
/// A document of `size` chars in lines of 64: ASCII, or `mixed` with one accented, CJK or emoji char in eight (so
/// that no chunk can map chars to bytes without counting).
fn document_text(size: usize, mixed: bool) -> String {
    (0..size)
        .map(|i| match i % 64 {
            63 => '\n',
            n if mixed && n % 8 == 7 => ['é', '日', '😀'][n / 8 % 3],
            _ => (b'a' + (i % 26) as u8) as char,
        })
        .collect()
}

/// Time per `receive` in a document of `size` chars (see [`document_text`]).
fn receive_at(size: usize, mixed: bool) -> f64 {
    const BEHIND: u64 = 16;
    const OPS: usize = 20_000;
    let mut rng = Rng::new(size as u64);
    let text = document_text(size, mixed);
    let mut doc = Document::new(&text, 0, DocumentLimits { history: 1024, max_chars: 64 << 20 });
    // Length of the document at each revision, to build ops on an old base.
    let mut lengths = vec![size];
    for seq in 1..=BEHIND {
        let op = random::small_edit(&mut rng, doc.len_chars());
        doc.receive(1, seq, doc.revision(), &op).expect("accepted");
        lengths.push(doc.len_chars());
    }
    let start = Instant::now();
    for i in 0..OPS {
        let base_revision = doc.revision() - BEHIND;
        let base_len = lengths[base_revision as usize];
        let op = random::small_edit(&mut rng, base_len);
        let client = 2 + (i as u64 % 16);
        match doc.receive(client, 1 + i as u64, base_revision, &op).expect("accepted") {
            Received::Applied { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        lengths.push(doc.len_chars());
    }
    start.elapsed().as_secs_f64() * 1e9 / OPS as f64
}

fn receive_scaling() {
    const ROUNDS: usize = 5;
    let sizes = [(1_000, "1 KB"), (100_000, "100 KB"), (10_000_000, "10 MB")];
    println!("Document::receive, 16 concurrent ops outstanding (median of {ROUNDS} rounds over all sizes):");
    for (mixed, script) in [(false, "ASCII"), (true, "mixed scripts")] {
        // Sizes take turns within each round, so that a noisy spell on the machine lands on all of them.
        let mut runs = vec![Vec::with_capacity(ROUNDS); sizes.len()];
        for _ in 0..ROUNDS {
            for (runs, (size, _)) in runs.iter_mut().zip(sizes) {
                runs.push(receive_at(size, mixed));
            }
        }
        let medians: Vec<f64> = runs
            .iter_mut()
            .map(|runs| {
                runs.sort_by(f64::total_cmp);
                runs[ROUNDS / 2]
            })
            .collect();
        for ((_, label), ns) in sizes.iter().zip(&medians) {
            println!("  {label:<7} {script:<14} {ns:>8.0} ns/op   {:.2}x the 1 KB time", ns / medians[0]);
        }
    }
}

/// Keystrokes at random places in a 10 MB mixed-script document, applied to a ropey `Rope` (the daemon's text)
/// and to a `TextTree` (the server's) in alternating blocks; both apply the same edits in the same order.
fn random_edits() {
    const BLOCKS: usize = 10;
    const PER_BLOCK: usize = 5_000;
    let text = document_text(10_000_000, true);
    let mut rng = Rng::new(7);
    let mut len = text.chars().count();
    let ops: Vec<TextOperation> = (0..BLOCKS * PER_BLOCK)
        .map(|_| {
            let op = random::small_edit(&mut rng, len);
            len = op.target_len();
            op
        })
        .collect();
    let (mut tree, mut rope) = (TextTree::from(text.as_str()), Rope::from_str(&text));
    let (mut tree_blocks, mut rope_blocks) = (ops.chunks(PER_BLOCK), ops.chunks(PER_BLOCK));
    let (ours, theirs) = median_pair(
        BLOCKS,
        || tree_blocks.next().expect("a block").iter().for_each(|op| op.apply_to(&mut tree).expect("fits")),
        || rope_blocks.next().expect("a block").iter().for_each(|op| op.apply_to(&mut rope).expect("fits")),
    );
    assert!(tree.to_string() == rope, "the tree and the rope agree");
    println!("keystrokes at random places in a 10 MB mixed-script document:");
    report("  applied", PER_BLOCK, ("TextTree", ours), ("ropey", theirs));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `cargo test --benches` runs bench binaries with `--test`: do a smoke run only.
    if args.iter().any(|a| a == "--test") {
        return;
    }
    // A long loop over one workload, for `perf record`.
    if let Some(flag) = args.iter().find(|a| a.starts_with("--profile-transform")) {
        // `--profile-transform` for keystrokes, `--profile-transform=random` for random multi-component ops.
        let pairs = op_pairs(1, !flag.ends_with("=random"), true);
        for _ in 0..20_000 {
            for (a, b) in &pairs {
                black_box(transform(black_box(a), black_box(b)).expect("same base"));
            }
        }
        return;
    }
    // `--profile-receive=CHARS`: `receive` in one ASCII document size only.
    if let Some(size) = args.iter().find_map(|a| a.strip_prefix("--profile-receive=")) {
        let size = size.parse().expect("--profile-receive=CHARS");
        println!("Document::receive at {size} chars: {:.0} ns/op", receive_at(size, false));
        return;
    }
    transform_and_compose();
    receive_scaling();
    random_edits();
    trace_replay(quick);
}
