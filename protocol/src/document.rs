//! The server-side document: text in a [`TextTree`], a revision counter, a bounded history of recent operations, and
//! `receive`, which sequences a client's operation (transform through history, apply) exactly once.
//!
//! Revisions count committed operations: the operation committed *as* revision `r` takes the document from
//! revision `r - 1` to `r`. A client's operation made at `base_revision` is transformed through the operations
//! committed as `base_revision + 1 ..= revision`, so the history must still hold them; an older base is
//! answered with [`Received::ResyncNeeded`].
//!
//! Exactly once: the document remembers, per client, the last sequence number it committed and at which
//! revision. A resend of that operation is acknowledged again ([`Received::Duplicate`]) and not applied. An
//! entry is forgotten once its revision leaves the history window; from then on any resend of it has a base
//! revision outside the window too, so it is answered with `ResyncNeeded` and still never applied twice.
//!
//! An operation numbered below the client's last committed one ([`Received::Stale`]) was necessarily dealt with
//! already: a client sends operation `n + 1` only once `n` is acknowledged (or, after a resync, known to be in
//! the snapshot, or superseded by the merge). It is a frame that was still in flight on a dropped connection and
//! arrived after the client's resend on the new one; it is dropped without an answer (the connection it came on
//! is gone, and the client has moved on).

use std::collections::{HashMap, VecDeque};

use crate::client::{ClientSeq, Revision};
use crate::ot::{transform, OpError, TextOperation};
use crate::tree::TextTree;

/// Identifies one client (one daemon instance) across reconnects. Chosen at random by the client.
pub type ClientId = u64;

/// A committed operation, as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub author: ClientId,
    pub seq: ClientSeq,
    /// The operation as committed: it applies to the document at the previous revision.
    pub op: TextOperation,
}

/// What became of a received operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Committed as `revision`; `op` is the operation as applied, to be broadcast to the other clients.
    Applied { revision: Revision, op: TextOperation },
    /// This `(client, seq)` was already committed as `revision`: acknowledge again, change nothing.
    Duplicate { revision: Revision },
    /// The base revision is older than the history kept: the client must reload the document.
    ResyncNeeded { oldest_base: Revision },
    /// A sequence number below the last one committed for this client: an old frame, dealt with already; nothing
    /// to do and nothing to answer.
    Stale { last: ClientSeq },
}

/// An operation the document refuses. The document is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("base revision {base_revision} is ahead of the document's revision {current}")]
    FutureRevision { base_revision: Revision, current: Revision },
    #[error("operation expects {expected} chars but the document had {actual} at its base revision")]
    BaseLengthMismatch { expected: usize, actual: usize },
    #[error("the document would grow to {chars} chars, over the limit of {limit}")]
    TooLarge { chars: usize, limit: usize },
    #[error(transparent)]
    Op(#[from] OpError),
}

/// Limits a document enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Operations kept for transforming late operations and replaying to resuming clients.
    pub history: usize,
    /// Largest document, in chars.
    pub max_chars: usize,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        DocumentLimits { history: 1024, max_chars: 64 * 1024 * 1024 }
    }
}

/// One shared document as the server holds it.
#[derive(Debug, Clone)]
pub struct Document {
    text: TextTree,
    revision: Revision,
    /// The operations committed as revisions `revision - history.len() + 1 ..= revision`.
    history: VecDeque<HistoryEntry>,
    limits: DocumentLimits,
    /// Per client: the last sequence number committed, and the revision it was committed as.
    last_committed: HashMap<ClientId, (ClientSeq, Revision)>,
    /// What [`Document::rollback`] undoes, while a batch is open ([`Document::begin`]).
    undo: Option<Undo>,
}

/// Everything a batch changed, to put back if its commit fails.
#[derive(Debug, Clone)]
struct Undo {
    revision: Revision,
    /// The inverse of each operation applied, in order.
    inverses: Vec<TextOperation>,
    /// History entries the batch pushed out of the window, oldest first.
    trimmed: Vec<HistoryEntry>,
    /// `last_committed` entries as they were before each change, in order.
    last_committed: Vec<(ClientId, Option<(ClientSeq, Revision)>)>,
}

impl Document {
    /// A document holding `text` at `revision`, with an empty history.
    pub fn new(text: &str, revision: Revision, limits: DocumentLimits) -> Self {
        Document {
            text: TextTree::from(text),
            revision,
            history: VecDeque::with_capacity(limits.history.min(1024)),
            limits,
            last_committed: HashMap::new(),
            undo: None,
        }
    }

    /// A document rebuilt from a snapshot and the operations committed after it (for example after a restart).
    pub fn restore<I>(snapshot: &str, revision: Revision, later: I, limits: DocumentLimits) -> Result<Self, OpError>
    where
        I: IntoIterator<Item = HistoryEntry>,
    {
        let mut document = Document::new(snapshot, revision, limits);
        for entry in later {
            entry.op.apply_to(&mut document.text)?;
            document.commit(entry);
        }
        Ok(document)
    }

    pub fn text(&self) -> &TextTree {
        &self.text
    }

    pub fn revision(&self) -> Revision {
        self.revision
    }

    pub fn len_chars(&self) -> usize {
        self.text.len_chars()
    }

    pub fn limits(&self) -> DocumentLimits {
        self.limits
    }

    /// The oldest base revision an operation (or a resuming client) may still use.
    pub fn oldest_base(&self) -> Revision {
        self.revision - self.history.len() as Revision
    }

    /// The operations committed after `revision`, oldest first, or `None` if the history no longer has them all.
    pub fn history_since(&self, revision: Revision) -> Option<impl ExactSizeIterator<Item = &HistoryEntry>> {
        if revision < self.oldest_base() || revision > self.revision {
            return None;
        }
        let skip = (revision - self.oldest_base()) as usize;
        Some(self.history.range(skip..))
    }

    /// The last `(seq, revision)` committed for `client`, while it is within the history window.
    pub fn last_committed(&self, client: ClientId) -> Option<(ClientSeq, Revision)> {
        self.last_committed.get(&client).copied()
    }

    /// Sequences an operation `op` that `client` made on revision `base_revision` with sequence number `seq`.
    ///
    /// Nothing a peer sends can make this panic; on `Err` the document is unchanged.
    pub fn receive(
        &mut self,
        client: ClientId,
        seq: ClientSeq,
        base_revision: Revision,
        op: &TextOperation,
    ) -> Result<Received, ReceiveError> {
        if let Some(&(last, revision)) = self.last_committed.get(&client) {
            if seq == last {
                return Ok(Received::Duplicate { revision });
            }
            if seq < last {
                return Ok(Received::Stale { last });
            }
        }
        if base_revision > self.revision {
            return Err(ReceiveError::FutureRevision { base_revision, current: self.revision });
        }
        if base_revision < self.oldest_base() {
            return Ok(Received::ResyncNeeded { oldest_base: self.oldest_base() });
        }
        // The operations committed after the base revision, which the client had not seen.
        let first_concurrent = (base_revision - self.oldest_base()) as usize;
        let base_len = self.history.get(first_concurrent).map_or(self.len_chars(), |e| e.op.base_len());
        if op.base_len() != base_len {
            return Err(ReceiveError::BaseLengthMismatch { expected: op.base_len(), actual: base_len });
        }
        let mut transformed = op.clone();
        for entry in self.history.range(first_concurrent..) {
            transformed = transform(&transformed, &entry.op)?.0;
        }
        if transformed.target_len() > self.limits.max_chars {
            return Err(ReceiveError::TooLarge { chars: transformed.target_len(), limit: self.limits.max_chars });
        }
        if let Some(undo) = &mut self.undo {
            undo.inverses.push(transformed.invert_in(&self.text)?);
        }
        transformed.apply_to(&mut self.text)?;
        let revision = self.commit(HistoryEntry { author: client, seq, op: transformed.clone() });
        Ok(Received::Applied { revision, op: transformed })
    }

    /// Opens a batch: what [`Document::receive`] does from now on can be undone with [`Document::rollback`]
    /// until [`Document::settle`]. The server applies a batch in memory, then stores it; if storing fails, the
    /// document must be as it was, with nothing of the batch in it. Costs a copy of the text each operation
    /// deletes, nothing more.
    pub fn begin(&mut self) {
        self.undo = Some(Undo {
            revision: self.revision,
            inverses: Vec::new(),
            trimmed: Vec::new(),
            last_committed: Vec::new(),
        });
    }

    /// Closes the batch: its changes stay.
    pub fn settle(&mut self) {
        self.undo = None;
    }

    /// Undoes everything received since [`Document::begin`] and closes the batch.
    pub fn rollback(&mut self) {
        let Some(undo) = self.undo.take() else { return };
        for inverse in undo.inverses.iter().rev() {
            // Each inverse was made against the text it now applies to.
            let _ = inverse.apply_to(&mut self.text);
        }
        // The history before the batch: what was trimmed (oldest first), then what is left, minus what was added.
        let added = (self.revision - undo.revision) as usize;
        let mut history: VecDeque<HistoryEntry> = undo.trimmed.into_iter().collect();
        history.append(&mut self.history);
        history.truncate(history.len().saturating_sub(added));
        self.history = history;
        for (client, before) in undo.last_committed.into_iter().rev() {
            match before {
                Some(entry) => self.last_committed.insert(client, entry),
                None => self.last_committed.remove(&client),
            };
        }
        self.revision = undo.revision;
    }

    /// Records an applied operation as the next revision and trims the history to its bound.
    fn commit(&mut self, entry: HistoryEntry) -> Revision {
        self.revision += 1;
        let before = self.last_committed.insert(entry.author, (entry.seq, self.revision));
        if let Some(undo) = &mut self.undo {
            undo.last_committed.push((entry.author, before));
        }
        self.history.push_back(entry);
        while self.history.len() > self.limits.history {
            let oldest_revision = self.oldest_base() + 1;
            if let Some(old) = self.history.pop_front() {
                if self.last_committed.get(&old.author).is_some_and(|&(_, r)| r == oldest_revision) {
                    let before = self.last_committed.remove(&old.author);
                    if let Some(undo) = &mut self.undo {
                        undo.last_committed.push((old.author, before));
                    }
                }
                if let Some(undo) = &mut self.undo {
                    undo.trimmed.push(old);
                }
            }
        }
        self.revision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert_at(len: usize, at: usize, text: &str) -> TextOperation {
        TextOperation::replace(len, at, at, text).expect("in bounds")
    }

    fn small() -> DocumentLimits {
        DocumentLimits { history: 3, max_chars: 100 }
    }

    #[test]
    fn transforms_a_late_op_through_history() {
        let mut doc = Document::new("ab", 0, small());
        assert_eq!(
            doc.receive(1, 1, 0, &insert_at(2, 0, "X")),
            Ok(Received::Applied { revision: 1, op: insert_at(2, 0, "X") })
        );
        let late = doc.receive(2, 1, 0, &insert_at(2, 2, "Y")).expect("accepted");
        assert_eq!(late, Received::Applied { revision: 2, op: insert_at(3, 3, "Y") });
        assert_eq!(doc.text().to_string(), "XabY");
    }

    #[test]
    fn duplicates_are_acknowledged_not_applied() {
        let mut doc = Document::new("", 0, small());
        doc.receive(1, 5, 0, &insert_at(0, 0, "a")).expect("accepted");
        assert_eq!(doc.receive(1, 5, 0, &insert_at(0, 0, "a")), Ok(Received::Duplicate { revision: 1 }));
        assert_eq!(doc.receive(1, 4, 1, &insert_at(1, 0, "a")), Ok(Received::Stale { last: 5 }));
        assert_eq!(doc.text().to_string(), "a");
    }

    #[test]
    fn bad_ops_are_typed_errors_that_change_nothing() {
        let mut doc = Document::new("abc", 0, small());
        assert_eq!(
            doc.receive(1, 1, 1, &insert_at(3, 0, "x")),
            Err(ReceiveError::FutureRevision { base_revision: 1, current: 0 })
        );
        assert_eq!(
            doc.receive(1, 1, 0, &insert_at(4, 0, "x")),
            Err(ReceiveError::BaseLengthMismatch { expected: 4, actual: 3 })
        );
        assert!(matches!(doc.receive(1, 1, 0, &insert_at(3, 0, &"x".repeat(98))), Err(ReceiveError::TooLarge { .. })));
        assert_eq!((doc.revision(), doc.text().to_string()), (0, "abc".to_owned()));
    }

    #[test]
    fn a_rolled_back_batch_leaves_no_trace() {
        let mut doc = Document::new("abc", 0, small());
        doc.receive(1, 1, 0, &insert_at(3, 3, "d")).expect("accepted");
        doc.receive(2, 1, 1, &TextOperation::replace(4, 0, 2, "XY").expect("valid")).expect("accepted");
        let before = doc.clone();
        doc.begin();
        // Enough operations to push every entry out of the three-entry history, deletions among them.
        doc.receive(1, 2, 2, &TextOperation::replace(4, 1, 3, "").expect("valid")).expect("accepted");
        for (i, seq) in (3..=6).enumerate() {
            doc.receive(3, seq, 3 + i as Revision, &insert_at(2 + i, 0, "z")).expect("accepted");
        }
        assert_eq!(doc.receive(2, 1, 2, &insert_at(4, 0, "q")), Ok(Received::ResyncNeeded { oldest_base: 4 }));
        doc.rollback();
        assert_eq!(doc.text().to_string(), before.text().to_string());
        assert_eq!((doc.revision(), doc.oldest_base()), (before.revision(), before.oldest_base()));
        assert_eq!(
            doc.history_since(0).map(|h| h.cloned().collect::<Vec<_>>()),
            before.history_since(0).map(|h| h.cloned().collect())
        );
        for client in [1, 2, 3] {
            assert_eq!(doc.last_committed(client), before.last_committed(client), "client {client}");
        }
        // The same operation is applied again as new, not taken for a duplicate.
        assert!(matches!(doc.receive(1, 2, 2, &insert_at(4, 0, "w")), Ok(Received::Applied { revision: 3, .. })));
        doc.settle();
    }

    #[test]
    fn old_base_needs_resync_and_forgotten_duplicates_stay_unapplied() {
        let mut doc = Document::new("", 0, small());
        for (i, seq) in (1..=5).enumerate() {
            doc.receive(1, seq, i as Revision, &insert_at(i, i, "x")).expect("accepted");
        }
        assert_eq!(doc.oldest_base(), 2);
        assert_eq!(doc.receive(2, 1, 1, &insert_at(1, 0, "y")), Ok(Received::ResyncNeeded { oldest_base: 2 }));
        assert!(doc.history_since(1).is_none());
        assert_eq!(doc.history_since(4).map(|h| h.len()), Some(1));
        assert_eq!(doc.text().to_string(), "xxxxx");
    }
}
