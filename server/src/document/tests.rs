//! The document task against a store whose commits fail: a failed batch is rolled back and refused, the rest
//! served.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use codecollab_protocol::wire::ServerMsg;

use super::*;
use crate::config::Retention;
use crate::outbox::{Outbound, OutboxReceiver};
use crate::store::{SessionRecord, Store, Written};

/// A store whose commits fail while `failing` is set, as a full disk makes them; it holds one empty document.
struct FlakyStore {
    failing: Arc<AtomicBool>,
}

impl Store for FlakyStore {
    fn commit(&mut self, writes: &[Write]) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("database or disk is full".into()));
        }
        Ok(writes.iter().map(|_| Ok(Written::Done)).collect())
    }
    fn load_session(&mut self, _: &str) -> Result<Option<SessionRecord>, StoreError> {
        Ok(None)
    }
    fn session_count(&mut self) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn load_document(&mut self, _: DocId) -> Result<LoadedDocument, StoreError> {
        Ok(LoadedDocument {
            snapshot_revision: 0,
            snapshot_text: "abc".into(),
            ops: Vec::new(),
            client_seqs: Vec::new(),
        })
    }
    fn load_ops(&mut self, _: DocId, _: Revision, _: Revision) -> Result<Option<Vec<StoredOp>>, StoreError> {
        Ok(None)
    }
}

/// Messages toward one connection until `done` holds for them (or 10 s pass, a failure).
async fn received_until(receiver: &mut OutboxReceiver, done: impl Fn(&[ServerMsg]) -> bool) -> Vec<ServerMsg> {
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done(&messages) {
        match tokio::time::timeout_at(deadline, receiver.frames.recv()).await {
            Ok(Some(Outbound::Frame(frame, _))) => {
                messages.extend(ServerMsg::decode_all(&frame, 1 << 20).expect("decodes"))
            }
            other => panic!("waited in vain, after {messages:?}: {other:?}"),
        }
    }
    messages
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_commit_refuses_its_ops_and_still_serves_the_rest_of_the_batch() {
    let failing = Arc::new(AtomicBool::new(true));
    let metrics = Arc::new(Metrics::default());
    let (store, _thread) = StoreHandle::spawn(Box::new(FlakyStore { failing: failing.clone() }), metrics.clone());
    let limits = DocumentLimits::default();
    let settings = DocSettings {
        limits,
        snapshot_every: 1_000,
        retention: Retention::default(),
        claim_patience: std::time::Duration::from_secs(1),
    };
    let handle = spawn(1, "a.txt".into(), settings, store, metrics.clone()).await.expect("loads");
    let (author, mut author_frames) = Outbox::new(64);
    let (reader, mut reader_frames) = Outbox::new(64);
    let op = TextOperation::replace(3, 3, 3, "!").expect("valid");
    // One batch: the author's subscription and operation, and another client subscribing (nothing has run the
    // document task yet on this single-threaded runtime).
    let subscribe =
        |peer, client, outbox: &Outbox| DocCommand::Subscribe { peer, client, since: None, outbox: outbox.clone() };
    assert!(handle.send(subscribe(1, 10, &author)).await);
    let command = DocCommand::Op {
        peer: 1,
        client: 10,
        seq: 1,
        base_revision: 0,
        op: op.clone(),
        outbox: author.clone(),
        received: Instant::now(),
    };
    assert!(handle.send(command).await);
    assert!(handle.send(subscribe(2, 20, &reader)).await);
    let to_reader = received_until(&mut reader_frames, |m| !m.is_empty()).await;
    assert!(
        matches!(to_reader.as_slice(), [ServerMsg::Snapshot { revision: 0, text, .. }] if text == "abc"),
        "the subscriber in the failed batch gets its snapshot, without the uncommitted op: {to_reader:?}"
    );
    let refused = |m: &ServerMsg| matches!(m, ServerMsg::Error { code: ErrorCode::StorageFailure, .. });
    let to_author = received_until(&mut author_frames, |m| m.iter().any(refused)).await;
    assert!(!to_author.iter().any(|m| matches!(m, ServerMsg::Ack { .. })), "nothing acknowledged: {to_author:?}");
    assert_eq!(metrics.commit_failures.load(Ordering::Relaxed), 1);

    // The store recovers: the same operation, sent again, is committed once.
    failing.store(false, Ordering::SeqCst);
    let command = DocCommand::Op {
        peer: 1,
        client: 10,
        seq: 1,
        base_revision: 0,
        op,
        outbox: author.clone(),
        received: Instant::now(),
    };
    assert!(handle.send(command).await);
    let acked = ServerMsg::Ack { doc: 1, seq: 1, revision: 1 };
    received_until(&mut author_frames, |m| m.contains(&acked)).await;
    let to_reader = received_until(&mut reader_frames, |m| !m.is_empty()).await;
    assert!(matches!(to_reader.as_slice(), [ServerMsg::Op { revision: 1, .. }]), "{to_reader:?}");
}
