//! A document task's readers: subscribing (a replay of what a resuming client missed, from memory or the store,
//! or a snapshot), and presence (each peer's selections, broadcast once per batch).

use std::sync::atomic::Ordering;

use codecollab_protocol::frame_of_bodies;
use codecollab_protocol::wire::{PeerId, ServerMsg};
use codecollab_protocol::{ClientId, HistoryEntry, Revision, Selection};
use tokio_tungstenite::tungstenite::Bytes;

use super::{DocumentTask, FRAME_BYTES, FRAME_MESSAGES};
use crate::outbox::{encode, Outbox};

pub(super) struct Subscriber {
    pub client: ClientId,
    pub outbox: Outbox,
}

pub(super) struct Presence {
    pub selections: Vec<Selection>,
    /// Changed since last broadcast.
    pub dirty: bool,
}

impl DocumentTask {
    /// What `client` missed after `since`, oldest first: from memory, or, for what has left memory, from the
    /// store (the caller's wait for it is the replay's only cost to the others: a resume from far back is rare).
    /// `None` if the store no longer has it all either.
    pub(super) async fn missed(&self, since: Revision) -> Option<Vec<HistoryEntry>> {
        if since > self.document.revision() {
            return None;
        }
        if let Some(history) = self.document.history_since(since) {
            self.metrics.replays_from_memory.fetch_add(1, Ordering::Relaxed);
            return Some(history.cloned().collect());
        }
        let oldest_in_memory = self.document.oldest_base();
        let older = match self.store.load_ops(self.id, since, oldest_in_memory).await {
            Ok(Some(older)) => older,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(doc = self.id, %error, "reading past operations failed; sending a snapshot instead");
                return None;
            }
        };
        self.metrics.replays_from_store.fetch_add(1, Ordering::Relaxed);
        let memory = self.document.history_since(oldest_in_memory).into_iter().flatten().cloned();
        Some(older.into_iter().map(|s| HistoryEntry { author: s.author, seq: s.seq, op: s.op }).chain(memory).collect())
    }

    pub(super) async fn subscribe(&mut self, peer: PeerId, client: ClientId, since: Option<Revision>, outbox: Outbox) {
        let revision = self.document.revision();
        let missed = match since {
            Some(since) => self.missed(since).await.map(|missed| (since, missed)),
            None => None,
        };
        match missed {
            Some((since, missed)) => {
                // The replay, ending with `Subscribed`.
                let mut bodies: Vec<Vec<u8>> = missed
                    .iter()
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
                for frame in frames(bodies.iter().map(Vec::as_slice)) {
                    outbox.send_frame(frame);
                }
            }
            None => {
                if since.is_some() {
                    self.metrics.snapshot_resyncs.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(doc = self.id, client, ?since, revision, "resume beyond retention: snapshot");
                }
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
    pub(super) fn broadcast_presence(&mut self) {
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

/// Message bodies in frames of at most [`FRAME_MESSAGES`] messages and [`FRAME_BYTES`] bytes (one message may be
/// larger), in order.
pub(super) fn frames<'a>(bodies: impl IntoIterator<Item = &'a [u8]>) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut bytes = 0;
    for body in bodies {
        if !current.is_empty() && (current.len() == FRAME_MESSAGES || bytes + body.len() > FRAME_BYTES) {
            frames.push(Bytes::from(frame_of_bodies(current.drain(..))));
            bytes = 0;
        }
        bytes += body.len();
        current.push(body);
    }
    if !current.is_empty() {
        frames.push(Bytes::from(frame_of_bodies(current.drain(..))));
    }
    frames
}
