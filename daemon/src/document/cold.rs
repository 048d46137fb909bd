//! Cold documents: a document no editor shows and with nothing in flight can have its text moved out of memory
//! into a private cache file, and read back the moment anything needs it, so a daemon in a session of many files
//! holds only the ones in use (see [`TextCache`] for the budget).

use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use codecollab_protocol::wire::DocId;
use ropey::Rope;

use super::Doc;

/// The budget of text, in bytes, that documents which could be cold may hold in memory: past it, the least
/// recently used go cold until they hold half of it. `CODECOLLAB_HOT_TEXT_BYTES` sets another (tests set a small
/// one to take the cold path with few files).
const DEFAULT_BUDGET: usize = 4 << 20;

/// What a cold document keeps of its text besides the cache file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cold {
    /// The file on disk held the text when it went cold (`Doc::disk` was the text).
    written: bool,
    /// The text's length in bytes.
    bytes: usize,
}

/// Where cold documents' texts are: a folder only this user can read, created at the first eviction, removed
/// with the session. Also the bookkeeping of what is hot: a use counter for least-recently-used order, and how
/// much text was brought in since the budget was last checked.
#[derive(Debug)]
pub struct TextCache {
    dir: Option<PathBuf>,
    pub budget: usize,
    tick: u64,
    /// Bytes of text brought into memory since the last check; the check is skipped while it is small.
    pub grown: usize,
}

impl Default for TextCache {
    fn default() -> Self {
        let budget = std::env::var("CODECOLLAB_HOT_TEXT_BYTES").ok().and_then(|v| v.parse().ok());
        TextCache { dir: None, budget: budget.unwrap_or(DEFAULT_BUDGET), tick: 0, grown: 0 }
    }
}

impl TextCache {
    /// The next use count, for least-recently-used order.
    pub fn tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The cache file of `doc`, creating the folder if need be.
    pub fn file(&mut self, doc: DocId) -> std::io::Result<PathBuf> {
        if self.dir.is_none() {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("codecollab-cold-{}-{n}", std::process::id()));
            std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
            self.dir = Some(dir);
        }
        Ok(self.dir.as_ref().expect("created above").join(doc.to_string()))
    }

    /// Forgets `doc`'s cache file (the document left the session).
    pub fn remove(&self, doc: DocId) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join(doc.to_string()));
        }
    }
}

impl Drop for TextCache {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Doc {
    pub fn is_cold(&self) -> bool {
        self.cold.is_some()
    }

    /// The bytes of text this document holds in memory (0 when cold).
    pub fn hot_bytes(&self) -> usize {
        self.text.len_bytes()
    }

    /// Whether its text could go cold now: no editor shows it, nothing of ours is in flight or waiting, no one's
    /// cursor is in it, and the file on disk is either not written yet or holds exactly the text.
    pub fn could_be_cold(&self) -> bool {
        self.cold.is_none()
            && self.editor.is_none()
            && self.unapproved.is_none()
            && !self.retry
            && !self.cursor_unsent
            && self.presence.is_empty()
            && self.ot.is_synchronized()
            && self.disk.as_ref().is_none_or(|disk| *disk == self.text)
    }

    /// Moves its text into `file` (written only if the file does not hold this revision already) and out of
    /// memory. Only when [`Doc::could_be_cold`].
    pub fn go_cold(&mut self, file: &Path) -> std::io::Result<()> {
        debug_assert!(self.could_be_cold());
        // Nothing pending: the text is the server's text at this revision, so a file written at it still holds it.
        let revision = self.ot.revision();
        if self.cached != Some(revision) {
            self.cached = None;
            let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
            for chunk in self.text.chunks() {
                out.write_all(chunk.as_bytes())?;
            }
            // No fsync: the file only matters to this process, which reads it back through the page cache.
            out.flush()?;
            self.cached = Some(revision);
        }
        self.cold = Some(Cold { written: self.disk.is_some(), bytes: self.text.len_bytes() });
        self.text = Rope::new();
        self.server_text = Rope::new();
        self.disk = None;
        self.fresh_from_disk = false;
        Ok(())
    }

    /// Forgets what its file on disk held: it was moved away (aside, by a join's consent) or not moved to the
    /// document's new path, so the next write makes a new file rather than one that looks deleted on disk.
    pub fn forget_disk(&mut self) {
        self.disk = None;
        if let Some(cold) = self.cold.as_mut() {
            cold.written = false;
        }
    }

    /// Brings its text back from `file` if it is cold. `Err` if the file could not be read: the document is then
    /// left empty and not written, and the caller asks the server for it again.
    pub fn warm(&mut self, file: &Path) -> std::io::Result<()> {
        let Some(cold) = self.cold.take() else { return Ok(()) };
        let read = std::fs::read_to_string(file).and_then(|text| {
            if text.len() == cold.bytes {
                Ok(text)
            } else {
                Err(std::io::Error::other(format!("{} bytes where {} were kept", text.len(), cold.bytes)))
            }
        });
        match read {
            Ok(text) => {
                let rope = Rope::from_str(&text);
                self.server_text = rope.clone();
                self.disk = cold.written.then(|| rope.clone());
                self.text = rope;
                Ok(())
            }
            Err(error) => {
                self.cached = None;
                self.dirty = false;
                Err(error)
            }
        }
    }
}
