//! How much of the session's text is in memory: documents are warmed (their text read back from the cache) before
//! anything uses their text, and the least recently used of those that could be cold go cold once their text
//! passes the budget ([`crate::document::TextCache`]), so a session of many files, joining it included, holds only
//! what is in use.

use codecollab_protocol::wire::{ClientMsg, DocId, DocInfo, ServerMsg};

use super::{Io, Session};
use crate::document::Doc;

impl Session {
    /// Brings `doc`'s text into memory if it is cold, and counts it as used now. If its cache file cannot be read,
    /// see [`Session::lost_cold_text`].
    pub(super) fn warm(&mut self, doc: DocId, io: &Io) {
        let tick = self.cache.tick();
        let Some(d) = self.docs.get_mut(&doc) else { return };
        d.last_used = tick;
        if !d.is_cold() {
            return;
        }
        let warmed = self.cache.file(doc).and_then(|file| d.warm(&file));
        self.cache.grown += d.hot_bytes();
        if let Err(error) = warmed {
            self.lost_cold_text(doc, &error, io);
        }
    }

    /// A cold document's text could not be read back (its cache file went, say a temporary-folder cleaner took
    /// it): nothing may be computed from the empty text left (a change on disk would be merged against it, and
    /// the file's whole text sent again). The document leaves and is fetched anew, as one a peer just created: its
    /// snapshot is written, a local file that differs from it moved aside first.
    pub(super) fn lost_cold_text(&mut self, doc: DocId, error: &std::io::Error, io: &Io) {
        let Some(d) = self.remove_doc(doc) else { return };
        tracing::warn!(path = %d.path, %error, "a cold document's text could not be read back; fetching it again");
        self.release(&d.path);
        io.send(ClientMsg::Unsubscribe { doc });
        self.fetch(DocInfo { doc, path: d.path }, io);
    }

    /// Warms the document a server message is about, if handling it touches the text. (`Subscribed` does not: a
    /// cold document has nothing to send again, so a reconnect does not bring every text back.)
    pub(super) fn warm_for(&mut self, message: &ServerMsg, io: &Io) {
        let doc = match message {
            ServerMsg::Snapshot { doc, .. }
            | ServerMsg::Ack { doc, .. }
            | ServerMsg::Op { doc, .. }
            | ServerMsg::Presence { doc, .. }
            | ServerMsg::Renamed { doc, .. } => *doc,
            ServerMsg::Error { doc: Some(doc), .. } => *doc,
            _ => return,
        };
        self.warm(doc, io);
    }

    /// A document's text came into memory (a snapshot, a write of a cold one): counted toward the next check.
    pub(super) fn grew(&mut self, bytes: usize) {
        self.cache.grown += bytes;
    }

    /// If the text that could be cold passes the budget, the least recently used of it goes cold until half the
    /// budget is left. The scan runs only once a quarter of the budget came into memory since the last one.
    pub(super) fn cool(&mut self) {
        if self.cache.grown < self.cache.budget / 4 {
            return;
        }
        self.cache.grown = 0;
        let mut candidates: Vec<(u64, DocId, usize)> = self
            .docs
            .iter()
            .filter(|(_, d)| d.could_be_cold())
            .map(|(&doc, d)| (d.last_used, doc, d.hot_bytes()))
            .collect();
        let mut hot: usize = candidates.iter().map(|&(_, _, bytes)| bytes).sum();
        if hot <= self.cache.budget {
            return;
        }
        candidates.sort_unstable();
        let keep = self.cache.budget / 2;
        for (_, doc, bytes) in candidates {
            if hot <= keep {
                break;
            }
            let Some(d) = self.docs.get_mut(&doc) else { continue };
            match self.cache.file(doc).and_then(|file| d.go_cold(&file)) {
                Ok(()) => hot -= bytes,
                Err(error) => {
                    // It stays in memory; so will the rest (the cache folder is what failed).
                    tracing::warn!(path = %d.path, %error, "keeping text in memory: the cache cannot be written");
                    break;
                }
            }
        }
        tracing::debug!(hot, budget = self.cache.budget, "texts moved out of memory");
    }

    /// Takes `doc` out of the session's documents; its cache file goes.
    pub(super) fn remove_doc(&mut self, doc: DocId) -> Option<Doc> {
        self.cache.remove(doc);
        self.moved_away.retain(|_, moved| *moved != doc);
        self.renames_in_flight.remove(&doc);
        self.docs.remove(&doc)
    }
}
