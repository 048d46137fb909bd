//! The store thread: owns the [`Store`], and commits every write request that is waiting when it gets to run in
//! one transaction (group commit). Under load many documents' operations share one commit, so durable
//! acknowledgements cost little more than non-durable ones.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use codecollab_protocol::wire::DocId;
use tokio::sync::{mpsc, oneshot};

use super::{LoadedDocument, SessionRecord, Store, StoreError, Write, Written};
use crate::metrics::Metrics;

/// Requests waiting beyond this many are left for the next round, bounding one transaction's size.
const MAX_BATCH: usize = 4_096;

type Outcomes = Result<Vec<Result<Written, StoreError>>, StoreError>;

enum Request {
    Commit { writes: Vec<Write>, reply: oneshot::Sender<Outcomes> },
    Read(Read),
}

enum Read {
    LoadSession { session: String, reply: oneshot::Sender<Result<Option<SessionRecord>, StoreError>> },
    SessionCount { reply: oneshot::Sender<Result<usize, StoreError>> },
    LoadDocument { doc: DocId, reply: oneshot::Sender<Result<LoadedDocument, StoreError>> },
}

/// A cheap, cloneable handle to the store thread. The thread stops once every handle is dropped, after
/// finishing what was queued.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the store thread has stopped".into())
}

impl StoreHandle {
    /// Starts the store thread.
    pub fn spawn(store: Box<dyn Store>, metrics: Arc<Metrics>) -> (StoreHandle, JoinHandle<()>) {
        let (requests, receiver) = mpsc::channel(65_536);
        let thread = std::thread::Builder::new()
            .name("codecollab-store".into())
            .spawn(move || run(store, receiver, &metrics))
            .expect("spawning the store thread");
        (StoreHandle { requests }, thread)
    }

    async fn read<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Read,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Read(make(reply))).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Commits `writes` durably (in one transaction with whatever else is waiting). Returns one outcome per write.
    pub async fn commit(&self, writes: Vec<Write>) -> Outcomes {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Commit { writes, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn load_session(&self, session: &str) -> Result<Option<SessionRecord>, StoreError> {
        let session = session.to_owned();
        self.read(|reply| Read::LoadSession { session, reply }).await
    }

    pub async fn session_count(&self) -> Result<usize, StoreError> {
        self.read(|reply| Read::SessionCount { reply }).await
    }

    pub async fn load_document(&self, doc: DocId) -> Result<LoadedDocument, StoreError> {
        self.read(|reply| Read::LoadDocument { doc, reply }).await
    }
}

fn run(mut store: Box<dyn Store>, mut receiver: mpsc::Receiver<Request>, metrics: &Metrics) {
    let mut batch = Vec::new();
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        // All writes of the round in one transaction; then the reads, which see them.
        let mut writes = Vec::new();
        let mut replies = Vec::new();
        let mut reads = Vec::new();
        for request in batch.drain(..) {
            match request {
                Request::Commit { writes: w, reply } => {
                    replies.push((writes.len(), w.len(), reply));
                    writes.extend(w);
                }
                Request::Read(read) => reads.push(read),
            }
        }
        if !writes.is_empty() {
            let started = Instant::now();
            let result = store.commit(&writes);
            metrics.commit_latency.observe(started.elapsed());
            match result {
                Ok(mut outcomes) => {
                    // Hand each requester its slice of the outcomes, in order.
                    for (start, len, reply) in replies.into_iter().rev() {
                        let mine = outcomes.split_off(start);
                        debug_assert_eq!(mine.len(), len);
                        let _ = reply.send(Ok(mine));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "store commit failed");
                    for (_, _, reply) in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
        for read in reads {
            match read {
                Read::LoadSession { session, reply } => {
                    let _ = reply.send(store.load_session(&session));
                }
                Read::SessionCount { reply } => {
                    let _ = reply.send(store.session_count());
                }
                Read::LoadDocument { doc, reply } => {
                    let _ = reply.send(store.load_document(doc));
                }
            }
        }
    }
}
