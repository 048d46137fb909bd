//! The fuzz targets' kept corpus and every regression they found, replayed through the same checks
//! (`codecollab_protocol::fuzzing`) on the stable toolchain, so what fuzzing once covered stays covered.

use std::path::PathBuf;

/// Every file of `fuzz/corpus/<target>` and `fuzz/regressions/<target>`.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut found = Vec::new();
    for dir in [fuzz.join("corpus").join(target), fuzz.join("regressions").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).expect("reads a corpus file");
            found.push((entry.path(), bytes));
        }
    }
    assert!(!found.is_empty(), "no corpus for {target} under {}", fuzz.display());
    found
}

fn replay(target: &str, check: fn(&[u8])) {
    for (path, bytes) in inputs(target) {
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "{target}: {} fails the checks", path.display());
    }
}

#[test]
fn the_frame_decoder_corpus_passes() {
    replay("frame_decoder", codecollab_protocol::fuzzing::frame);
}

#[test]
fn the_operations_corpus_passes() {
    replay("operations", codecollab_protocol::fuzzing::operations);
}
