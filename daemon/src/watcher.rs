//! Watches the shared folder for changes made on disk (git, formatters, `mv`, `rm`): what `notify` reports is
//! batched for [`BATCH`] and handed to the main loop as one [`Event::DiskChanged`] with the paths touched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::main_loop::Event;

/// How long changes are gathered before they are looked at: a checkout or a formatter touches many files, and a
/// file several times, in a burst.
const BATCH: Duration = Duration::from_millis(200);

/// A watch on a folder, for as long as it lives (dropping it stops the watch and its task).
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

/// Watches everything under `root`; batches of changed paths go to `events`.
pub fn watch(root: &Path, events: mpsc::UnboundedSender<Event>) -> anyhow::Result<Watcher> {
    let (raw, mut changed) = mpsc::unbounded_channel::<PathBuf>();
    let mut inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if !matches!(event.kind, EventKind::Access(_)) => {
            for path in event.paths {
                let _ = raw.send(path);
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "watching the shared folder"),
    })?;
    inner.watch(root, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while let Some(first) = changed.recv().await {
            let mut paths = BTreeSet::from([first]);
            let until = tokio::time::Instant::now() + BATCH;
            while let Ok(Some(path)) = tokio::time::timeout_at(until, changed.recv()).await {
                paths.insert(path);
            }
            if events.send(Event::DiskChanged(paths.into_iter().collect())).is_err() {
                break;
            }
        }
    });
    Ok(Watcher { _inner: inner })
}
