//! Seeded random generators for the tests and benchmarks of every crate (dev-only, never in a release build):
//! SplitMix64 and random texts, operations and offsets ([`random`]), texts of unique tokens for checking that no
//! one's edit was lost ([`tokens`]), the editing traces of `shared/traces` ([`trace`]), and a seed runner that
//! names the failing seed.

pub mod random;
pub mod tokens;
pub mod trace;

use std::cell::Cell;

/// Runs `case` for each seed in `seeds` (or only for the seed in `CODECOLLAB_SEED`, to reproduce a failure),
/// printing the seed of a failing case.
pub fn for_each_seed(name: &str, seeds: std::ops::Range<u64>, mut case: impl FnMut(u64)) {
    let seeds: Vec<u64> = match std::env::var("CODECOLLAB_SEED") {
        Ok(seed) => vec![seed.parse().expect("CODECOLLAB_SEED must be an integer")],
        Err(_) => seeds.collect(),
    };
    for seed in seeds {
        let guard = SeedGuard { name, seed, armed: Cell::new(true) };
        case(seed);
        guard.armed.set(false);
    }
}

struct SeedGuard<'a> {
    name: &'a str,
    seed: u64,
    armed: Cell<bool>,
}

impl Drop for SeedGuard<'_> {
    fn drop(&mut self) {
        if self.armed.get() && std::thread::panicking() {
            eprintln!("{} failed with seed {}: rerun with CODECOLLAB_SEED={}", self.name, self.seed, self.seed);
        }
    }
}
