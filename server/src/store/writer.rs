//! The store thread and the handle to the [`Store`]: every write request waiting when the thread gets to run is
//! committed in one transaction (group commit), so under load many documents' operations share one commit and
//! durable acknowledgements cost little more than non-durable ones.
//!
//! A small commit finding the store idle skips the queue: when the store's commits are quick (no fsync, no network
//! round trip), the calling task commits on its own thread. Handing a commit to another thread and back costs two
//! thread wake-ups, on this project's 2-core virtual machines about 80 µs against 45 µs for the commit itself, and
//! a closed loop of clients waits for both on every round. A busy store still queues, and the thread groups what
//! queued.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::Instant;

use codecollab_protocol::wire::DocId;
use tokio::sync::{broadcast, mpsc, oneshot};

use codecollab_protocol::Revision;

use super::{LoadedDocument, Lost, SessionHome, SessionRecord, Store, StoreError, StoredOp, Write, Written};
use crate::metrics::Metrics;

/// Requests waiting beyond this many are left for the next round, bounding one transaction's size.
const MAX_BATCH: usize = 4_096;
/// Largest commit, in bytes of text, that a task runs on its own thread; larger ones (a snapshot of a big
/// document) would hold a runtime worker too long and go to the store thread.
const INLINE_BYTES: usize = 64 * 1024;

type Outcomes = Result<Vec<Result<Written, StoreError>>, StoreError>;

enum Request {
    Commit {
        writes: Vec<Write>,
        reply: oneshot::Sender<Outcomes>,
    },
    Read(Read),
    /// An inline commit found housekeeping due, or its period came round ([`Store::housekeeping_every`]).
    Maintain,
    Claim {
        doc: DocId,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    ClaimSession {
        session: String,
        reply: oneshot::Sender<Result<SessionHome, StoreError>>,
    },
    Release(DocId),
}

enum Read {
    LoadSession { session: String, reply: oneshot::Sender<Result<Option<SessionRecord>, StoreError>> },
    SessionCount { reply: oneshot::Sender<Result<usize, StoreError>> },
    LoadDocument { doc: DocId, reply: oneshot::Sender<Result<LoadedDocument, StoreError>> },
    LoadOps { doc: DocId, after: Revision, through: Revision, reply: oneshot::Sender<OpsRead> },
}

type OpsRead = Result<Option<Vec<StoredOp>>, StoreError>;

/// A cheap, cloneable handle to the store. The store thread stops once every handle is dropped, after finishing
/// what was queued.
#[derive(Clone)]
pub struct StoreHandle {
    requests: mpsc::Sender<Request>,
    /// Locked by the store thread for each round and by an inline commit for its duration.
    store: Arc<Mutex<Box<dyn Store>>>,
    /// Whether small commits may run on the caller's thread ([`Store::commits_quickly`]).
    inline: bool,
    metrics: Arc<Metrics>,
    /// Documents and sessions another node took over ([`Store::take_lost`]).
    lost: broadcast::Sender<Lost>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle").field("inline", &self.inline).finish_non_exhaustive()
    }
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
        let inline = store.commits_quickly();
        if let Some(period) = store.housekeeping_every() {
            // A weak sender: the ticker does not keep the store thread alive once every handle is gone.
            let weak = requests.downgrade();
            std::thread::Builder::new()
                .name("codecollab-store-tick".into())
                .spawn(move || loop {
                    std::thread::sleep(period);
                    let Some(requests) = weak.upgrade() else { return };
                    let _ = requests.try_send(Request::Maintain);
                })
                .expect("spawning the housekeeping ticker");
        }
        let (lost, _) = broadcast::channel(1_024);
        let store = Arc::new(Mutex::new(store));
        let thread = {
            let (store, metrics, lost) = (store.clone(), metrics.clone(), lost.clone());
            std::thread::Builder::new()
                .name("codecollab-store".into())
                .spawn(move || run(&store, receiver, &metrics, &lost))
                .expect("spawning the store thread")
        };
        (StoreHandle { requests, store, inline, metrics, lost }, thread)
    }

    /// Makes this node the one that sequences `doc` ([`Store::claim`]).
    pub async fn claim(&self, doc: DocId) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Claim { doc, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Which node serves `session`'s clients, taking it for this one if no other holds it
    /// ([`Store::claim_session`]).
    pub async fn claim_session(&self, session: &str) -> Result<SessionHome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let session = session.to_owned();
        self.requests.send(Request::ClaimSession { session, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Gives `doc` up ([`Store::release`]); does not wait.
    pub fn release(&self, doc: DocId) {
        let _ = self.requests.try_send(Request::Release(doc));
    }

    /// Tells of each document and session another node took over from this one.
    pub fn lost(&self) -> broadcast::Receiver<Lost> {
        self.lost.subscribe()
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
        if self.inline && writes.iter().map(Write::text_bytes).sum::<usize>() <= INLINE_BYTES {
            // Only if nobody holds the store: this thread must not wait for another's commit.
            let idle = match self.store.try_lock() {
                Ok(store) => Some(store),
                Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(mut store) = idle {
                self.metrics.commits_inline.fetch_add(1, Ordering::Relaxed);
                let outcomes = commit(&mut **store, &writes, &self.metrics);
                if store.maintenance_due() {
                    // If the queue is full the thread is busy and will see the housekeeping due itself.
                    let _ = self.requests.try_send(Request::Maintain);
                }
                return outcomes;
            }
        }
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

    /// The operations committed as revisions `after + 1 ..= through`, or `None` if the store no longer has them.
    pub async fn load_ops(&self, doc: DocId, after: Revision, through: Revision) -> OpsRead {
        self.read(|reply| Read::LoadOps { doc, after, through, reply }).await
    }
}

/// Commits `writes` in one transaction, timing it.
fn commit(store: &mut dyn Store, writes: &[Write], metrics: &Metrics) -> Outcomes {
    let started = Instant::now();
    let result = store.commit(writes);
    metrics.commit_latency.observe(started.elapsed());
    if let Err(error) = &result {
        tracing::error!(%error, "store commit failed");
    }
    result
}

fn lock(store: &Mutex<Box<dyn Store>>) -> MutexGuard<'_, Box<dyn Store>> {
    // A panic inside a commit leaves SQLite's transaction rolled back; the store itself is still usable.
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

fn run(
    shared: &Mutex<Box<dyn Store>>,
    mut receiver: mpsc::Receiver<Request>,
    metrics: &Metrics,
    lost: &broadcast::Sender<Lost>,
) {
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
        let mut claims = Vec::new();
        let mut session_claims = Vec::new();
        let mut releases = Vec::new();
        for request in batch.drain(..) {
            match request {
                Request::Commit { writes: w, reply } => {
                    replies.push((writes.len(), w.len(), reply));
                    writes.extend(w);
                }
                Request::Read(read) => reads.push(read),
                Request::Maintain => {}
                Request::Claim { doc, reply } => claims.push((doc, reply)),
                Request::ClaimSession { session, reply } => session_claims.push((session, reply)),
                Request::Release(doc) => releases.push(doc),
            }
        }
        let mut store = lock(shared);
        // Releases first: a document whose task ended and started again in this round is claimed anew.
        for doc in releases {
            if let Err(error) = store.release(doc) {
                tracing::warn!(doc, %error, "releasing a document failed");
            }
        }
        for (doc, reply) in claims {
            let claimed = store.claim(doc);
            if matches!(claimed, Ok(true)) {
                metrics.leases_taken.fetch_add(1, Ordering::Relaxed);
            }
            let _ = reply.send(claimed.map(|_| ()));
        }
        for (session, reply) in session_claims {
            let _ = reply.send(store.claim_session(&session));
        }
        if !writes.is_empty() {
            match commit(&mut **store, &writes, metrics) {
                Ok(mut outcomes) => {
                    // Hand each requester its slice of the outcomes, in order.
                    for (start, len, reply) in replies.into_iter().rev() {
                        let mine = outcomes.split_off(start);
                        debug_assert_eq!(mine.len(), len);
                        let _ = reply.send(Ok(mine));
                    }
                }
                Err(error) => {
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
                Read::LoadOps { doc, after, through, reply } => {
                    let _ = reply.send(store.load_ops(doc, after, through));
                }
            }
        }
        if store.maintenance_due() {
            let started = Instant::now();
            match store.maintain() {
                Ok(()) => tracing::debug!(took = ?started.elapsed(), "store housekeeping done"),
                Err(error) => tracing::warn!(%error, "store housekeeping failed"),
            }
        }
        metrics.leases_held.store(store.leases_held() as i64, Ordering::Relaxed);
        for taken in store.take_lost() {
            tracing::warn!(?taken, "another node took it over");
            metrics.leases_lost.fetch_add(1, Ordering::Relaxed);
            let _ = lost.send(taken);
        }
    }
    // Every handle is gone: the server is stopping. Others may take what this node held at once.
    let mut store = lock(shared);
    if let Err(error) = store.release_all() {
        tracing::warn!(%error, "releasing this node's documents and sessions failed");
    }
    // The store is dropped here, on its own thread: the last reference to the mutex may be dropped on an async
    // runtime's thread, where dropping a PostgreSQL connection (which blocks on a runtime of its own) panics.
    drop(std::mem::replace(&mut *store, Box::new(Stopped)));
}

/// What the mutex holds once the store thread has dropped the real store: nothing is served any more.
struct Stopped;

impl Store for Stopped {
    fn commit(&mut self, _: &[Write]) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        Err(stopped())
    }
    fn load_session(&mut self, _: &str) -> Result<Option<SessionRecord>, StoreError> {
        Err(stopped())
    }
    fn session_count(&mut self) -> Result<usize, StoreError> {
        Err(stopped())
    }
    fn load_document(&mut self, _: DocId) -> Result<LoadedDocument, StoreError> {
        Err(stopped())
    }
    fn load_ops(&mut self, _: DocId, _: Revision, _: Revision) -> OpsRead {
        Err(stopped())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use super::*;
    use crate::store::StoredOp;

    /// Records on which thread each call ran; `load_document` waits for the test's go-ahead, holding the store.
    struct Probe {
        quick: bool,
        calls: Arc<Mutex<Vec<String>>>,
        gate: std_mpsc::Receiver<()>,
        commits: u32,
        due: bool,
    }

    fn on_store_thread() -> bool {
        std::thread::current().name() == Some("codecollab-store")
    }

    impl Probe {
        fn record(&self, what: &str) {
            let place = if on_store_thread() { "store thread" } else { "caller" };
            self.calls.lock().expect("not poisoned").push(format!("{what} on {place}"));
        }
    }

    impl Store for Probe {
        fn commits_quickly(&self) -> bool {
            self.quick
        }
        fn commit(&mut self, writes: &[Write]) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
            self.commits += 1;
            self.due = self.commits % 2 == 0;
            self.record("commit");
            Ok(writes.iter().map(|_| Ok(Written::Done)).collect())
        }
        /// Every second commit.
        fn maintenance_due(&self) -> bool {
            self.due
        }
        fn maintain(&mut self) -> Result<(), StoreError> {
            self.record("maintain");
            self.due = false;
            Ok(())
        }
        fn load_session(&mut self, _: &str) -> Result<Option<SessionRecord>, StoreError> {
            Ok(None)
        }
        fn session_count(&mut self) -> Result<usize, StoreError> {
            Ok(0)
        }
        fn load_document(&mut self, doc: DocId) -> Result<LoadedDocument, StoreError> {
            self.record("read");
            let _ = self.gate.recv();
            Err(StoreError::UnknownDocument(doc))
        }
        fn load_ops(&mut self, doc: DocId, _: Revision, _: Revision) -> OpsRead {
            Err(StoreError::UnknownDocument(doc))
        }
    }

    fn append(text: &str) -> Vec<Write> {
        let op = codecollab_protocol::TextOperation::replace(0, 0, 0, text).expect("valid");
        vec![Write::AppendOps { doc: 1, ops: vec![StoredOp { revision: 1, author: 1, seq: 1, op }], committed: 1 }]
    }

    /// The store, the calls it recorded, the go-ahead for a waiting read, and the metrics.
    type Started = (StoreHandle, Arc<Mutex<Vec<String>>>, std_mpsc::Sender<()>, Arc<Metrics>);

    fn start(quick: bool) -> Started {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (go, gate) = std_mpsc::channel();
        let metrics = Arc::new(Metrics::default());
        let probe = Probe { quick, calls: calls.clone(), gate, commits: 0, due: false };
        let (handle, _thread) = StoreHandle::spawn(Box::new(probe), metrics.clone());
        (handle, calls, go, metrics)
    }

    fn taken(calls: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *calls.lock().expect("not poisoned"))
    }

    /// Waits until `n` calls are recorded: housekeeping runs on the store thread after the commit's answer.
    async fn until_calls(calls: &Mutex<Vec<String>>, n: usize) {
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while calls.lock().expect("not poisoned").len() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("housekeeping runs");
    }

    #[tokio::test]
    async fn small_commits_skip_the_queue_only_when_the_store_is_idle_and_quick() {
        let (store, calls, go, metrics) = start(true);
        store.commit(append("a")).await.expect("commits");
        assert_eq!(taken(&calls), ["commit on caller"], "an idle, quick store commits on the asking thread");

        // A large commit goes to the store thread, which then does the housekeeping due (every second commit).
        store.commit(append(&"x".repeat(INLINE_BYTES + 1))).await.expect("commits");
        until_calls(&calls, 2).await;
        assert_eq!(taken(&calls), ["commit on store thread", "maintain on store thread"]);

        // While the store thread holds the store (a slow read), a commit waits its turn in the queue.
        let reader = tokio::spawn({
            let store = store.clone();
            async move { store.load_document(9).await }
        });
        while taken(&calls).is_empty() {
            tokio::task::yield_now().await;
        }
        let queued = tokio::spawn({
            let store = store.clone();
            async move { store.commit(append("b")).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!queued.is_finished(), "the commit waits for the store instead of running beside the read");
        go.send(()).expect("store thread alive");
        assert!(matches!(reader.await.expect("joins"), Err(StoreError::UnknownDocument(9))));
        queued.await.expect("joins").expect("commits");
        assert_eq!(taken(&calls), ["commit on store thread"]);

        // An inline commit that makes housekeeping due leaves it to the store thread.
        store.commit(append("c")).await.expect("commits");
        until_calls(&calls, 2).await;
        assert_eq!(taken(&calls), ["commit on caller", "maintain on store thread"]);
        assert_eq!(metrics.commits_inline.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_store_that_waits_on_a_device_commits_on_its_thread() {
        let (store, calls, _go, metrics) = start(false);
        store.commit(append("a")).await.expect("commits");
        assert_eq!(taken(&calls), ["commit on store thread"]);
        assert_eq!(metrics.commits_inline.load(Ordering::Relaxed), 0);
    }
}
