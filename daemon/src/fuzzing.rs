//! What the `daemon_transport` fuzz target runs on each input, here so that the test suite replays its kept
//! corpus through the very same code: the whole daemon, fed `input` as an editor's stdio. Nothing an editor sends
//! may panic the daemon or hang it.

use std::time::Duration;

/// Runs the daemon on `input` until the input ends (the editor closed its end), on a runtime of its own.
pub fn editor_input(input: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let mut output = Vec::new();
        let run = crate::run(input, &mut output);
        tokio::time::timeout(Duration::from_secs(20), run).await.expect("the daemon does not hang");
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_daemon_transport_corpus_passes() {
        let fuzz = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for dir in [fuzz.join("corpus/daemon_transport"), fuzz.join("regressions/daemon_transport")] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let bytes = std::fs::read(entry.path()).expect("reads a corpus file");
                let outcome = std::panic::catch_unwind(|| super::editor_input(&bytes));
                assert!(outcome.is_ok(), "{} fails", entry.path().display());
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no corpus under {}", fuzz.display());
    }
}
