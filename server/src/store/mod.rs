//! Durable storage behind a narrow interface: batches of writes committed atomically (which is what group commit
//! needs), and a few reads. SQLite (the embedded default) and PostgreSQL (shared by several nodes) implement it
//! without the document logic knowing which.
//!
//! The one rule every implementation keeps: an operation is appended at a revision that must be free. Two
//! writers can never both commit revision `r` of a document; the loser gets [`StoreError::RevisionTaken`].

#[cfg(test)]
mod conformance;
pub mod postgres;
pub mod sqlite;
pub mod writer;

use codecollab_protocol::wire::DocId;
use codecollab_protocol::{ClientId, ClientSeq, Revision, TextOperation};

/// Both databases' integers are signed: ids and sequence numbers are stored bit-for-bit.
fn to_sql(value: u64) -> i64 {
    value as i64
}

fn from_sql(value: i64) -> u64 {
    value as u64
}

/// Operations are stored in the same compact MessagePack form as on the wire, in either database.
fn encode_op(op: &TextOperation) -> Vec<u8> {
    rmp_serde::to_vec(op).expect("operations encode")
}

fn decode_op(bytes: &[u8]) -> Result<TextOperation, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Backend(format!("a stored operation does not decode: {e}")))
}

/// One committed operation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOp {
    /// The revision this operation produced.
    pub revision: Revision,
    pub author: ClientId,
    pub seq: ClientSeq,
    pub op: TextOperation,
}

/// A write. A batch of them commits as one transaction; each succeeds or fails on its own inside it.
#[derive(Debug, Clone)]
pub enum Write {
    CreateSession {
        session: String,
        host: String,
        created: u64,
    },
    /// Refuse this name in this session from now on.
    RemovePeer {
        session: String,
        name: String,
    },
    /// Creates a document with its revision-0 snapshot; the outcome carries its id.
    CreateDocument {
        session: String,
        path: String,
        text: String,
    },
    RenameDocument {
        doc: DocId,
        path: String,
    },
    DeleteDocument {
        doc: DocId,
    },
    /// Appends consecutive operations, committed at `committed` (Unix seconds); the first one's revision must be
    /// the next free one.
    AppendOps {
        doc: DocId,
        ops: Vec<StoredOp>,
        committed: u64,
    },
    Snapshot {
        doc: DocId,
        revision: Revision,
        text: String,
    },
    /// Drops what is no longer needed: every snapshot older than the newest, and the operations outside the
    /// retention window, those at or before `beyond_count` (too many newer ones) or committed before
    /// `older_than` (Unix seconds), but never one the newest snapshot does not contain (a document is loaded as
    /// its newest snapshot and the operations after it). Every client's last sequence number is kept.
    Compact {
        doc: DocId,
        beyond_count: Revision,
        older_than: u64,
    },
}

impl Write {
    /// The text this write carries, in bytes: what makes one write slower to commit than another.
    pub fn text_bytes(&self) -> usize {
        match self {
            Write::CreateDocument { text, .. } | Write::Snapshot { text, .. } => text.len(),
            Write::AppendOps { ops, .. } => ops.iter().map(|o| o.op.inserted_bytes()).sum(),
            Write::CreateSession { .. }
            | Write::RemovePeer { .. }
            | Write::RenameDocument { .. }
            | Write::DeleteDocument { .. }
            | Write::Compact { .. } => 0,
        }
    }
}

/// What a successful write returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Done,
    DocumentCreated(DocId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("revision {revision} of document {doc} is already taken")]
    RevisionTaken { doc: DocId, revision: Revision },
    #[error("a document already exists at {0}")]
    PathTaken(String),
    #[error("no such document {0}")]
    UnknownDocument(DocId),
    #[error("storage failure: {0}")]
    Backend(String),
    /// Another node sequences this document now (its lease is not this node's, or no longer is).
    #[error("document {0} is sequenced by another node")]
    NotOwner(DocId),
}

/// Which node serves a session's clients (several nodes sharing one store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionHome {
    /// This node: it holds the session, and sequences its documents.
    Here,
    /// Another node, reached at this URL: this node relays the session's clients to it.
    Node(String),
}

/// What another node took over from this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    Document(DocId),
    Session(String),
}

/// A document as listed in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    pub doc: DocId,
    pub path: String,
}

/// Everything needed to rebuild a document in memory.
#[derive(Debug, Clone)]
pub struct LoadedDocument {
    pub snapshot_revision: Revision,
    pub snapshot_text: String,
    /// Operations after the snapshot, in revision order.
    pub ops: Vec<StoredOp>,
    /// Per client, the last sequence number committed and its revision.
    pub client_seqs: Vec<(ClientId, ClientSeq, Revision)>,
}

/// A session as stored.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub host: String,
    pub removed: Vec<String>,
    pub documents: Vec<DocumentRecord>,
}

/// The storage interface. Methods are blocking. The server calls them from its store thread, and, when
/// [`Store::commits_quickly`], small commits from the task that asks, on that task's thread (see
/// [`writer`]); never two at once.
pub trait Store: Send {
    /// True when a commit never waits for a device or the network (no fsync, no remote database), so a small one
    /// may run on an async runtime's thread.
    fn commits_quickly(&self) -> bool {
        false
    }
    /// Whether housekeeping ([`Store::maintain`]) is due.
    fn maintenance_due(&self) -> bool {
        false
    }
    /// Housekeeping kept out of commits (SQLite: checkpointing its write-ahead log). Only the store thread runs it.
    fn maintain(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Makes this node the one that sequences `doc`, when several nodes share the store: from then on, until
    /// [`Store::release`], a write of the document's operations commits only while no other node has taken it
    /// over, and is refused with [`StoreError::NotOwner`] after that, in the same transaction (fencing). Refused
    /// with `NotOwner` while another node holds it. Returns whether a lease was taken: a store of one node owns
    /// every document and takes none.
    fn claim(&mut self, _doc: DocId) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Makes this node the one that serves session `session`'s clients, unless another node holds it (then its
    /// URL). Like [`Store::claim`] for documents; a store of one node serves every session here.
    fn claim_session(&mut self, _session: &str) -> Result<SessionHome, StoreError> {
        Ok(SessionHome::Here)
    }
    /// Gives up every session and document this node holds (it is shutting down), so others take them at once.
    fn release_all(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Gives `doc` up (its task ended), so another node may take it at once.
    fn release(&mut self, _doc: DocId) -> Result<(), StoreError> {
        Ok(())
    }
    /// How often [`Store::maintain`] must run even when nothing is committed (to keep what [`Store::claim`]
    /// took), if at all.
    fn housekeeping_every(&self) -> Option<std::time::Duration> {
        None
    }
    /// How many documents and sessions this node holds leases on.
    fn leases_held(&self) -> usize {
        0
    }
    /// The documents and sessions this node found it no longer holds since the last call (another node took
    /// them over while this one could not renew its claim).
    fn take_lost(&mut self) -> Vec<Lost> {
        Vec::new()
    }
    /// Applies `writes` in one transaction and returns one outcome per write, in order.
    fn commit(&mut self, writes: &[Write]) -> Result<Vec<Result<Written, StoreError>>, StoreError>;
    fn load_session(&mut self, session: &str) -> Result<Option<SessionRecord>, StoreError>;
    fn session_count(&mut self) -> Result<usize, StoreError>;
    fn load_document(&mut self, doc: DocId) -> Result<LoadedDocument, StoreError>;
    /// The operations committed as revisions `after + 1 ..= through`, in order, or `None` if the store no longer
    /// has them all (compacted: beyond retention).
    fn load_ops(&mut self, doc: DocId, after: Revision, through: Revision)
        -> Result<Option<Vec<StoredOp>>, StoreError>;
}
