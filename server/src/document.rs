//! One task per document: the single owner that sequences its operations (transform through history, apply,
//! persist, acknowledge the author, broadcast to the others), so order holds by construction.
//!
//! The task works in batches: it takes every command waiting in its queue, applies the operations in memory,
//! commits them to the store in one write (which the store thread groups with other documents' writes), and
//! only then acknowledges and broadcasts them. Nothing is acknowledged or shown to anyone before it is durable.
//! Subscriptions and cursors in the batch are handled after the commit, so a new subscriber's replay and the
//! broadcast never overlap or leave a gap.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use codecollab_protocol::wire::{DocId, ErrorCode, PeerId, ServerMsg};
use codecollab_protocol::{
    frame_of_bodies, Bias, ClientId, ClientSeq, Document, DocumentLimits, HistoryEntry, ReceiveError, Received,
    Revision, Selection, TextOperation,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Bytes;

use crate::metrics::Metrics;
use crate::outbox::{encode, Outbox};
use crate::pace::{self, Pace};
use crate::store::writer::StoreHandle;
use crate::store::{LoadedDocument, StoreError, StoredOp, Write};

/// Commands taken per batch at most, bounding the work between two commits.
const MAX_BATCH: usize = 1_024;
/// Messages per frame when replaying history to a resuming client.
const REPLAY_FRAME: usize = 512;
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
    /// Queues a command. Returns false if the document task has stopped (the document was deleted).
    pub async fn send(&self, command: DocCommand) -> bool {
        self.commands.send(command).await.is_ok()
    }
}

/// Settings a document task needs from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct DocSettings {
    pub limits: DocumentLimits,
    pub snapshot_every: u64,
}

struct Subscriber {
    client: ClientId,
    outbox: Outbox,
}

struct Presence {
    selections: Vec<Selection>,
    /// Changed since last broadcast.
    dirty: bool,
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
}

/// An operation applied in memory and waiting for its commit.
struct Pending {
    author_peer: PeerId,
    stored: StoredOp,
}

/// Loads a document from the store and starts its task.
pub async fn spawn(
    id: DocId,
    path: String,
    settings: DocSettings,
    store: StoreHandle,
    metrics: Arc<Metrics>,
) -> Result<DocHandle, StoreError> {
    let loaded = store.load_document(id).await?;
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
    };
    task.metrics.documents.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(task.run(receiver));
    Ok(DocHandle { doc: id, commands })
}

async fn load(id: DocId, store: &StoreHandle, settings: DocSettings) -> Result<Document, StoreError> {
    restore(id, store.load_document(id).await?, settings)
}

fn restore(id: DocId, loaded: LoadedDocument, settings: DocSettings) -> Result<Document, StoreError> {
    let history = loaded.ops.into_iter().map(|s| HistoryEntry { author: s.author, seq: s.seq, op: s.op });
    Document::restore(&loaded.snapshot_text, loaded.snapshot_revision, history, settings.limits)
        .map_err(|e| StoreError::Backend(format!("document {id} does not replay: {e}")))
}

fn refusal(error: &ReceiveError) -> ErrorCode {
    match error {
        ReceiveError::FutureRevision { .. } => ErrorCode::FutureRevision,
        ReceiveError::BaseLengthMismatch { .. } | ReceiveError::Op(_) => ErrorCode::BaseLengthMismatch,
        ReceiveError::StaleSequence { .. } => ErrorCode::ProtocolViolation,
        ReceiveError::TooLarge { .. } => ErrorCode::DocumentTooLarge,
    }
}

impl DocumentTask {
    async fn run(mut self, mut receiver: mpsc::Receiver<DocCommand>) {
        let mut batch = Vec::new();
        while let Some(first) = receiver.recv().await {
            self.take(first, &mut batch);
            // Let connection tasks that are already runnable deliver their ops first: one commit and one frame
            // per subscriber then serve them all. This costs no timer and no measurable latency.
            tokio::task::yield_now().await;
            self.drain(&mut receiver, &mut batch);
            self.linger(&mut receiver, &mut batch).await;
            self.handle_batch(&mut batch).await;
        }
        self.metrics.documents.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(doc = self.id, "document task stopped");
    }

    /// Adds a command to the batch, noting when an operation arrived.
    fn take(&mut self, command: DocCommand, batch: &mut Vec<DocCommand>) {
        if let DocCommand::Op { client, .. } = &command {
            self.pace.arrived(*client, Instant::now());
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
        for command in batch.drain(..) {
            match command {
                DocCommand::Op { peer, client, seq, base_revision, op, outbox } => {
                    match self.document.receive(client, seq, base_revision, &op) {
                        Ok(Received::Applied { revision, op }) => {
                            pending.push(Pending {
                                author_peer: peer,
                                stored: StoredOp { revision, author: client, seq, op },
                            });
                        }
                        Ok(Received::Duplicate { revision }) => duplicate_acks.push((outbox, seq, revision)),
                        Ok(Received::ResyncNeeded { oldest_base }) => {
                            self.refuse(&outbox, ErrorCode::ResyncNeeded, format!(
                                "base revision {base_revision} is older than the history kept (oldest {oldest_base}); subscribe again"
                            ));
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
        if !pending.is_empty() && !self.commit(&pending).await {
            return;
        }
        for (outbox, seq, revision) in duplicate_acks {
            outbox.send(&ServerMsg::Ack { doc: self.id, seq, revision });
        }
        for command in later {
            self.handle_other(command);
        }
        self.broadcast_presence();
    }

    fn refuse(&self, outbox: &Outbox, code: ErrorCode, message: String) {
        self.metrics.refused(code);
        outbox.send(&ServerMsg::Error { code, message, doc: Some(self.id) });
    }

    /// Persists the batch; on success acknowledges and broadcasts it. On failure the in-memory document is
    /// reloaded from the store (dropping the uncommitted operations) and the authors are told to resend.
    async fn commit(&mut self, pending: &[Pending]) -> bool {
        let revision = self.document.revision();
        let mut writes =
            vec![Write::AppendOps { doc: self.id, ops: pending.iter().map(|p| p.stored.clone()).collect() }];
        let since_snapshot = revision - self.last_snapshot;
        // Snapshot every N ops, but never more often than the copy costs back: a snapshot copies the whole text,
        // so a large document waits for proportionally more ops (the cost per op stays flat as documents grow).
        let snapshot = since_snapshot >= self.settings.snapshot_every
            && since_snapshot.saturating_mul(64) >= self.document.len_chars() as u64;
        if snapshot {
            writes.push(Write::Snapshot { doc: self.id, revision, text: String::from(self.document.text()) });
            // Operations behind both the snapshot and the history window are no longer needed by anyone.
            writes.push(Write::Compact { doc: self.id, through: revision.min(self.document.oldest_base()) });
        }
        let outcome = self.store.commit(writes).await;
        let failure = match outcome {
            Ok(outcomes) => outcomes.into_iter().next().and_then(Result::err),
            Err(error) => Some(error),
        };
        if let Some(error) = failure {
            tracing::error!(doc = self.id, %error, "commit failed; reloading the document");
            match load(self.id, &self.store, self.settings).await {
                Ok(document) => self.document = document,
                Err(error) => tracing::error!(doc = self.id, %error, "reload failed; keeping the in-memory document"),
            }
            for p in pending {
                if let Some(subscriber) = self.subscribers.values().find(|s| s.client == p.stored.author) {
                    self.refuse(
                        &subscriber.outbox,
                        ErrorCode::StorageFailure,
                        "the change could not be stored; resend it".into(),
                    );
                }
            }
            return false;
        }
        if snapshot {
            self.last_snapshot = revision;
        }
        self.metrics.ops_committed.fetch_add(pending.len() as u64, Ordering::Relaxed);
        self.metrics.document_commits.fetch_add(1, Ordering::Relaxed);
        // One frame per subscriber for the whole batch: each op as `Op`, or as `Ack` to its author's client.
        // Subscribers that authored nothing in the batch share one encoding.
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
        let mut shared_frame: Option<Bytes> = None;
        for subscriber in self.subscribers.values() {
            let authored = pending.iter().any(|p| p.stored.author == subscriber.client);
            let frame = if authored {
                let bodies = pending.iter().zip(ops.iter().zip(&acks)).map(|(p, (op, ack))| {
                    if p.stored.author == subscriber.client {
                        ack.as_slice()
                    } else {
                        op.as_slice()
                    }
                });
                Bytes::from(frame_of_bodies(bodies))
            } else {
                shared_frame.get_or_insert_with(|| Bytes::from(frame_of_bodies(ops.iter().map(Vec::as_slice)))).clone()
            };
            subscriber.outbox.send_frame(frame);
        }
        let now = Instant::now();
        for p in pending {
            self.pace.acknowledged(p.stored.author, now);
            self.client_seqs.insert(p.stored.author, p.stored.seq);
            for (peer, presence) in self.presence.iter_mut() {
                let bias = if *peer == p.author_peer { Bias::After } else { Bias::Before };
                for selection in presence.selections.iter_mut() {
                    *selection = selection.transform(&p.stored.op, bias);
                }
            }
        }
        true
    }

    fn handle_other(&mut self, command: DocCommand) {
        match command {
            DocCommand::Subscribe { peer, client, since, outbox } => self.subscribe(peer, client, since, outbox),
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
                    for selection in selections.iter_mut() {
                        *selection = selection.transform(&entry.op, Bias::Before);
                    }
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

    fn subscribe(&mut self, peer: PeerId, client: ClientId, since: Option<Revision>, outbox: Outbox) {
        let revision = self.document.revision();
        let replay = since.and_then(|since| self.document.history_since(since).map(|h| (since, h)));
        match replay {
            Some((since, history)) => {
                // The replay, in frames of up to REPLAY_FRAME messages, ending with `Subscribed`.
                let mut bodies: Vec<Vec<u8>> = history
                    .zip(since + 1..)
                    .map(|(entry, revision)| {
                        let msg = if entry.author == client {
                            ServerMsg::Ack { doc: self.id, seq: entry.seq, revision }
                        } else {
                            // The author's peer id is not kept in history: 0 stands for "a peer".
                            ServerMsg::Op { doc: self.id, revision, peer: 0, op: entry.op.clone() }
                        };
                        msg.encode_body().expect("server messages always encode")
                    })
                    .collect();
                bodies.push(ServerMsg::Subscribed { doc: self.id, revision }.encode_body().expect("encodes"));
                for chunk in bodies.chunks(REPLAY_FRAME) {
                    outbox.send_frame(Bytes::from(frame_of_bodies(chunk.iter().map(Vec::as_slice))));
                }
            }
            None => {
                outbox.send(&ServerMsg::Snapshot {
                    doc: self.id,
                    path: self.path.clone(),
                    revision,
                    text: String::from(self.document.text()),
                    last_seq: self.client_seqs.get(&client).copied(),
                });
            }
        }
        // What the others are looking at, right away.
        for (other, presence) in &self.presence {
            if *other != peer {
                outbox.send(&ServerMsg::Presence {
                    doc: self.id,
                    peer: *other,
                    revision,
                    selections: presence.selections.clone(),
                });
            }
        }
        self.subscribers.insert(peer, Subscriber { client, outbox });
    }

    /// Sends each changed presence once per batch: a burst of cursor moves becomes its latest position.
    fn broadcast_presence(&mut self) {
        let revision = self.document.revision();
        for (peer, presence) in self.presence.iter_mut() {
            if !presence.dirty {
                continue;
            }
            presence.dirty = false;
            let frame = encode(&ServerMsg::Presence {
                doc: self.id,
                peer: *peer,
                revision,
                selections: presence.selections.clone(),
            });
            for (other, subscriber) in &self.subscribers {
                if other != peer {
                    subscriber.outbox.send_frame(frame.clone());
                }
            }
        }
    }
}
