//! One task per document: the single owner that sequences its operations (transform through history, apply,
//! persist, acknowledge the author, broadcast to the others), so order holds by construction.
//!
//! The task works in batches: it takes every command waiting in its queue, applies the operations in memory,
//! commits them to the store in one write (which the store thread groups with other documents' writes), and
//! only then acknowledges and broadcasts them. Nothing is acknowledged or shown to anyone before it is durable.
//! Subscriptions and cursors in the batch are handled after the commit, so a new subscriber's replay and the
//! broadcast never overlap or leave a gap.
//!
//! A commit that fails (disk full, database read-only, I/O error) is rolled back in memory
//! ([`Document::rollback`]): nothing of the batch was acknowledged or shown to anyone, its authors are told
//! (`storage_failure`) and send again, and everything else in the batch (subscriptions, cursors) is served as
//! usual. The next batch tries the store again, so service resumes by itself once the store recovers.
//!
//! A resuming client is replayed what it missed from the history in memory, or, when its revision has left
//! memory, from the operations the store keeps for the retention window; only beyond that does it get a snapshot
//! (and merges three ways).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codecollab_protocol::wire::{close, DocId, ErrorCode, PeerId, ServerMsg};
use codecollab_protocol::{
    Bias, ClientId, ClientSeq, Document, DocumentLimits, HistoryEntry, ReceiveError, Received, Revision, Selection,
    TextOperation,
};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Bytes;

use crate::config::Retention;
use crate::metrics::Metrics;
use crate::outbox::{encode, Outbox};
use crate::pace::{self, Pace};
use crate::store::writer::StoreHandle;
use crate::store::{LoadedDocument, Lost, StoreError, StoredOp, Write, Written};

mod subscribers;

use subscribers::{frames, Presence, Subscriber};

/// Commands taken per batch at most, bounding the work between two commits.
const MAX_BATCH: usize = 1_024;
/// Messages per frame when replaying history to a resuming client or broadcasting a batch, at most.
const FRAME_MESSAGES: usize = 512;
/// Bytes of messages per frame, at most (one message may be larger), so a replay of large operations, or a batch
/// of them, never makes a frame near a client's frame limit.
const FRAME_BYTES: usize = 1 << 20;
/// Most selections kept per peer (multi-cursor), bounding presence memory.
const MAX_SELECTIONS: usize = 64;

#[derive(Debug)]
pub enum DocCommand {
    /// Start sending this peer the document's operations and presence. With `since`, replay what followed that
    /// revision (or send a snapshot if the history no longer reaches back); without, send a snapshot.
    Subscribe {
        peer: PeerId,
        client: ClientId,
        since: Option<Revision>,
        outbox: Outbox,
    },
    Unsubscribe {
        peer: PeerId,
    },
    Op {
        peer: PeerId,
        client: ClientId,
        seq: ClientSeq,
        base_revision: Revision,
        op: TextOperation,
        outbox: Outbox,
        /// When its frame was read off the socket.
        received: Instant,
    },
    Cursor {
        peer: PeerId,
        revision: Revision,
        selections: Vec<Selection>,
    },
    Rename {
        path: String,
    },
}

/// A handle to a document's task.
#[derive(Debug, Clone)]
pub struct DocHandle {
    pub doc: DocId,
    commands: mpsc::Sender<DocCommand>,
}

impl DocHandle {
    /// Queues a command. Returns false if the document task has stopped (the document was deleted, or another
    /// node took it over).
    pub async fn send(&self, command: DocCommand) -> bool {
        self.commands.send(command).await.is_ok()
    }

    /// Whether the task has stopped: a new one must be started to serve the document again.
    pub fn is_stopped(&self) -> bool {
        self.commands.is_closed()
    }
}

/// Settings a document task needs from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct DocSettings {
    pub limits: DocumentLimits,
    pub snapshot_every: u64,
    pub retention: Retention,
    /// How long to keep trying to take a document another node holds (a node that stopped is taken over once its
    /// lease expires: at most a lease's length after it stopped; the server allows twice that and a second).
    pub claim_patience: Duration,
}

struct DocumentTask {
    id: DocId,
    path: String,
    document: Document,
    subscribers: HashMap<PeerId, Subscriber>,
    presence: HashMap<PeerId, Presence>,
    /// Every client's last committed sequence number, also beyond the history window (from the store), so a
    /// snapshot can tell a resuming client whether its outstanding operation is in it.
    client_seqs: HashMap<ClientId, ClientSeq>,
    /// Revision of the newest stored snapshot.
    last_snapshot: Revision,
    settings: DocSettings,
    store: StoreHandle,
    metrics: Arc<Metrics>,
    /// Which clients answer acknowledgements at once (adaptive group commit).
    pace: Pace,
    /// Another node sequences the document now: the task ends.
    moved: bool,
}

/// An operation applied in memory and waiting for its commit.
struct Pending {
    author_peer: PeerId,
    stored: StoredOp,
    /// Where the author is told if the commit fails.
    outbox: Outbox,
    /// When its frame was read off the socket.
    received: Instant,
}

/// Loads a document from the store and starts its task.
pub async fn spawn(
    id: DocId,
    path: String,
    settings: DocSettings,
    store: StoreHandle,
    metrics: Arc<Metrics>,
) -> Result<DocHandle, StoreError> {
    claim(id, &store, settings.claim_patience).await?;
    let loaded = match store.load_document(id).await {
        Ok(loaded) => loaded,
        Err(error) => {
            store.release(id);
            return Err(error);
        }
    };
    let client_seqs = loaded.client_seqs.iter().map(|&(client, seq, _)| (client, seq)).collect();
    let last_snapshot = loaded.snapshot_revision;
    let document = restore(id, loaded, settings)?;
    let (commands, receiver) = mpsc::channel(4_096);
    let task = DocumentTask {
        id,
        path,
        last_snapshot,
        document,
        subscribers: HashMap::new(),
        presence: HashMap::new(),
        client_seqs,
        settings,
        store,
        metrics,
        pace: Pace::default(),
        moved: false,
    };
    task.metrics.documents.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(task.run(receiver));
    Ok(DocHandle { doc: id, commands })
}

/// Makes this node the document's sequencer, waiting up to `patience` while another node holds it.
async fn claim(id: DocId, store: &StoreHandle, patience: Duration) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match store.claim(id).await {
            Err(StoreError::NotOwner(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(CLAIM_RETRY).await;
            }
            claimed => return claimed,
        }
    }
}

/// How often a document held by another node is tried again.
const CLAIM_RETRY: Duration = Duration::from_millis(250);

fn restore(id: DocId, loaded: LoadedDocument, settings: DocSettings) -> Result<Document, StoreError> {
    let history = loaded.ops.into_iter().map(|s| HistoryEntry { author: s.author, seq: s.seq, op: s.op });
    Document::restore(&loaded.snapshot_text, loaded.snapshot_revision, history, settings.limits)
        .map_err(|e| StoreError::Backend(format!("document {id} does not replay: {e}")))
}

fn refusal(error: &ReceiveError) -> ErrorCode {
    match error {
        ReceiveError::FutureRevision { .. } => ErrorCode::FutureRevision,
        ReceiveError::BaseLengthMismatch { .. } | ReceiveError::Op(_) => ErrorCode::BaseLengthMismatch,
        ReceiveError::TooLarge { .. } => ErrorCode::DocumentTooLarge,
    }
}

impl DocumentTask {
    async fn run(mut self, mut receiver: mpsc::Receiver<DocCommand>) {
        let mut batch = Vec::new();
        let mut lost = self.store.lost();
        let mut lost_open = true;
        loop {
            let first = tokio::select! {
                biased;
                command = receiver.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
                taken = lost.recv(), if lost_open => {
                    match taken {
                        Ok(Lost::Document(doc)) if doc == self.id => {
                            self.move_away();
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => lost_open = false,
                        // Another document, or missed ones: a commit would find out anyway.
                        _ => {}
                    }
                    continue;
                }
            };
            self.take(first, &mut batch);
            // Let connection tasks that are already runnable deliver their ops first: one commit and one frame
            // per subscriber then serve them all. This costs no timer and no measurable latency.
            tokio::task::yield_now().await;
            self.drain(&mut receiver, &mut batch);
            self.linger(&mut receiver, &mut batch).await;
            self.handle_batch(&mut batch).await;
            if self.moved {
                break;
            }
        }
        if !self.moved {
            self.store.release(self.id);
        }
        self.metrics.documents.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(doc = self.id, "document task stopped");
    }

    /// Adds a command to the batch, noting when an operation arrived.
    fn take(&mut self, command: DocCommand, batch: &mut Vec<DocCommand>) {
        if let DocCommand::Op { client, received, .. } = &command {
            let now = Instant::now();
            self.metrics.op_queue.observe(now.saturating_duration_since(*received));
            self.pace.arrived(*client, now);
        }
        batch.push(command);
    }

    /// Adds whatever is already queued, up to the batch limit.
    fn drain(&mut self, receiver: &mut mpsc::Receiver<DocCommand>, batch: &mut Vec<DocCommand>) {
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(command) => self.take(command, batch),
                Err(_) => break,
            }
        }
    }

    /// Waits (briefly, see [`crate::pace`]) for the operations of prompt clients that are known to be coming.
    async fn linger(&mut self, receiver: &mut mpsc::Receiver<DocCommand>, batch: &mut Vec<DocCommand>) {
        let mut awaited = self.pace.awaited();
        if awaited.is_empty() {
            return;
        }
        self.metrics.commit_waits.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + pace::LINGER;
        while !awaited.is_empty() && batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(command)) => {
                    if let DocCommand::Op { client, .. } = &command {
                        awaited.retain(|c| c != client);
                    }
                    self.take(command, batch);
                }
                Ok(None) => return,
                Err(_) => {
                    self.metrics.commit_waits_expired.fetch_add(1, Ordering::Relaxed);
                    self.pace.expired(&awaited);
                    break;
                }
            }
        }
        self.drain(receiver, batch);
    }

    async fn handle_batch(&mut self, batch: &mut Vec<DocCommand>) {
        let mut pending: Vec<Pending> = Vec::new();
        // Acknowledgements of duplicates wait for the commit too: the original may be in this very batch.
        let mut duplicate_acks: Vec<(Outbox, ClientSeq, Revision)> = Vec::new();
        let mut later = Vec::new();
        self.document.begin();
        for command in batch.drain(..) {
            match command {
                DocCommand::Op { peer, client, seq, base_revision, op, outbox, received } => {
                    match self.document.receive(client, seq, base_revision, &op) {
                        Ok(Received::Applied { revision, op }) => {
                            let stored = StoredOp { revision, author: client, seq, op };
                            pending.push(Pending { author_peer: peer, stored, outbox, received });
                        }
                        Ok(Received::Duplicate { revision }) => duplicate_acks.push((outbox, seq, revision)),
                        Ok(Received::ResyncNeeded { oldest_base }) => {
                            self.refuse(&outbox, ErrorCode::ResyncNeeded, format!(
                                "base revision {base_revision} is older than the history kept (oldest {oldest_base}); send it again on your current revision"
                            ));
                        }
                        Ok(Received::Stale { last }) => {
                            // An old frame of a dropped connection: dealt with already (see `Document`).
                            self.metrics.stale_ops.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(doc = self.id, client, seq, last, "stale operation dropped");
                        }
                        Err(error) => {
                            tracing::info!(doc = self.id, client, seq, %error, "operation refused");
                            self.refuse(&outbox, refusal(&error), error.to_string());
                        }
                    }
                }
                other => later.push(other),
            }
        }
        if pending.is_empty() {
            self.document.settle();
        } else {
            self.commit(&pending).await;
        }
        // After a failed commit the document is back before the batch: a duplicate of one of its operations was
        // not committed either.
        let revision = self.document.revision();
        for (outbox, seq, committed) in duplicate_acks {
            if committed <= revision {
                outbox.send(&ServerMsg::Ack { doc: self.id, seq, revision: committed });
            } else {
                self.refuse(&outbox, ErrorCode::StorageFailure, "the change could not be stored; send it again".into());
            }
        }
        for command in later {
            self.handle_other(command).await;
        }
        self.broadcast_presence();
    }

    /// Another node sequences the document now: every subscriber's connection is closed (reconnecting resumes
    /// with the document's new owner, what was not acknowledged is sent again), and the task ends.
    fn move_away(&mut self) {
        tracing::warn!(doc = self.id, "another node sequences the document now; its subscribers reconnect");
        for subscriber in self.subscribers.values() {
            subscriber.outbox.close(close::MOVED, "another node serves this document now");
        }
        self.moved = true;
    }

    fn refuse(&self, outbox: &Outbox, code: ErrorCode, message: String) {
        self.metrics.refused(code);
        outbox.send(&ServerMsg::Error { code, message, doc: Some(self.id) });
    }

    /// Persists the batch; on success acknowledges and broadcasts it. On failure the batch is rolled back in memory
    /// and its authors are told to send again.
    async fn commit(&mut self, pending: &[Pending]) {
        let revision = self.document.revision();
        let ops = pending.iter().map(|p| p.stored.clone()).collect();
        let mut writes = vec![Write::AppendOps { doc: self.id, ops, committed: crate::auth::unix_now() }];
        let since_snapshot = revision - self.last_snapshot;
        // Snapshot every N ops, but never more often than the copy costs back: a snapshot copies the whole text,
        // so a large document waits for proportionally more ops (the cost per op stays flat as documents grow).
        let snapshot = since_snapshot >= self.settings.snapshot_every
            && since_snapshot.saturating_mul(64) >= self.document.len_chars() as u64;
        if snapshot {
            writes.push(Write::Snapshot { doc: self.id, revision, text: String::from(self.document.text()) });
            // The operations outside the retention window are no longer needed by anyone (see `Retention`).
            let retention = self.settings.retention;
            writes.push(Write::Compact {
                doc: self.id,
                beyond_count: revision.saturating_sub(retention.ops),
                older_than: crate::auth::unix_now().saturating_sub(retention.age.as_secs()),
            });
        }
        let outcomes = self.store.commit(writes).await;
        let failure = match &outcomes {
            Ok(outcomes) => outcomes.first().and_then(|o| o.as_ref().err()).cloned(),
            Err(error) => Some(error.clone()),
        };
        if let Some(StoreError::NotOwner(_)) = failure {
            // Another node took the document over (this one was paused or cut off past its lease): nothing of the
            // batch is anywhere. Its authors resend it to the new owner when they reconnect.
            self.document.rollback();
            self.move_away();
            return;
        }
        if let Some(error) = failure {
            tracing::error!(doc = self.id, %error, ops = pending.len(), "commit failed; the batch is rolled back");
            self.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
            self.document.rollback();
            for p in pending {
                self.refuse(
                    &p.outbox,
                    ErrorCode::StorageFailure,
                    "the change could not be stored; send it again".into(),
                );
            }
            return;
        }
        self.document.settle();
        if snapshot {
            match outcomes.as_ref().ok().and_then(|o| o.get(1)) {
                Some(Ok(Written::Done)) => self.last_snapshot = revision,
                other => tracing::warn!(doc = self.id, ?other, "the snapshot was not stored; trying again later"),
            }
        }
        self.metrics.ops_committed.fetch_add(pending.len() as u64, Ordering::Relaxed);
        self.metrics.document_commits.fetch_add(1, Ordering::Relaxed);
        // One frame per subscriber for the whole batch (more if it is large): each op as `Op`, or as `Ack` to its
        // author's client. Subscribers that authored nothing in the batch share one encoding.
        let encode_body = |msg: &ServerMsg| msg.encode_body().expect("server messages always encode");
        let ops: Vec<Vec<u8>> = pending
            .iter()
            .map(|p| {
                let StoredOp { revision, ref op, .. } = p.stored;
                encode_body(&ServerMsg::Op { doc: self.id, revision, peer: p.author_peer, op: op.clone() })
            })
            .collect();
        let acks: Vec<Vec<u8>> = pending
            .iter()
            .map(|p| encode_body(&ServerMsg::Ack { doc: self.id, seq: p.stored.seq, revision: p.stored.revision }))
            .collect();
        let mut shared_frames: Option<Vec<Bytes>> = None;
        for subscriber in self.subscribers.values() {
            let authored = pending.iter().any(|p| p.stored.author == subscriber.client);
            let frames = if authored {
                let bodies = pending.iter().zip(ops.iter().zip(&acks)).map(|(p, (op, ack))| {
                    if p.stored.author == subscriber.client {
                        ack.as_slice()
                    } else {
                        op.as_slice()
                    }
                });
                frames(bodies)
            } else {
                shared_frames.get_or_insert_with(|| frames(ops.iter().map(Vec::as_slice))).clone()
            };
            for frame in frames {
                subscriber.outbox.send_frame(frame);
            }
        }
        let now = Instant::now();
        for p in pending {
            self.metrics.op_broadcast.observe(now.saturating_duration_since(p.received));
            self.pace.acknowledged(p.stored.author, now);
            self.client_seqs.insert(p.stored.author, p.stored.seq);
            for (peer, presence) in self.presence.iter_mut() {
                let bias = if *peer == p.author_peer { Bias::After } else { Bias::Before };
                Selection::transform_all(&mut presence.selections, &p.stored.op, bias);
            }
        }
    }

    async fn handle_other(&mut self, command: DocCommand) {
        match command {
            DocCommand::Subscribe { peer, client, since, outbox } => self.subscribe(peer, client, since, outbox).await,
            DocCommand::Unsubscribe { peer } => {
                if let Some(subscriber) = self.subscribers.remove(&peer) {
                    self.pace.forget(subscriber.client);
                }
                if self.presence.remove(&peer).is_some() {
                    let cleared = encode(&ServerMsg::Presence {
                        doc: self.id,
                        peer,
                        revision: self.document.revision(),
                        selections: Vec::new(),
                    });
                    for subscriber in self.subscribers.values() {
                        subscriber.outbox.send_frame(cleared.clone());
                    }
                }
            }
            DocCommand::Cursor { peer, revision, mut selections } => {
                if !self.subscribers.contains_key(&peer) {
                    return;
                }
                // Bring the selections from the peer's revision to the current one; drop them if it is too old.
                let Some(later) = self.document.history_since(revision) else { return };
                selections.truncate(MAX_SELECTIONS);
                for entry in later {
                    Selection::transform_all(&mut selections, &entry.op, Bias::Before);
                }
                let limit = self.document.len_chars();
                for selection in selections.iter_mut() {
                    selection.anchor = selection.anchor.min(limit);
                    selection.head = selection.head.min(limit);
                }
                self.presence.insert(peer, Presence { selections, dirty: true });
            }
            DocCommand::Rename { path } => self.path = path,
            DocCommand::Op { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
