//! The embedded default store: SQLite (bundled) in the data directory, in WAL mode.
//!
//! Durability: with `synchronous=NORMAL` (durability `process`) a committed transaction is in the WAL file and
//! survives the server process being killed; a power loss may lose the last transactions. With
//! `synchronous=FULL` (durability `fsync`) every commit is fsynced and survives power loss too.

use std::path::Path;

use codecollab_protocol::wire::DocId;
use codecollab_protocol::{ClientId, Revision};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::{
    decode_op, encode_op, from_sql, to_sql, DocumentRecord, LoadedDocument, SessionRecord, Store, StoreError, StoredOp,
    Write, Written,
};
use crate::config::Durability;

/// The database file in the data directory.
pub const DATABASE_FILE: &str = "codecollab.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS removed_peers (
    session TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (session, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    path TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS documents_live_path ON documents (session, path) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS ops (
    doc INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    author INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    op BLOB NOT NULL,
    committed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (doc, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    doc INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (doc, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS client_seqs (
    doc INTEGER NOT NULL,
    client INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (doc, client)
) WITHOUT ROWID;
";

pub struct SqliteStore {
    connection: Connection,
    durability: Durability,
    /// Commits, and bytes of text committed, since the write-ahead log was last checkpointed.
    since_checkpoint: (u32, usize),
}

/// The write-ahead log is checkpointed (its pages copied into the database) after this many commits or this many
/// bytes of text committed, whichever comes first: about SQLite's default of 1,000 pages, for operation batches.
const CHECKPOINT_COMMITS: u32 = 256;
const CHECKPOINT_BYTES: usize = 4 << 20;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn backend(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn is_constraint(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation)
}

/// Brings a database made by an older server up to the current schema.
fn migrate(connection: &Connection) -> rusqlite::Result<()> {
    let has_committed: bool =
        connection.prepare("SELECT 1 FROM pragma_table_info('ops') WHERE name = 'committed'")?.exists([])?;
    if !has_committed {
        // Operations stored before commit times were kept: counted as committed now, so retention keeps them
        // its full age from the upgrade on.
        connection.execute_batch(&format!(
            "ALTER TABLE ops ADD COLUMN committed INTEGER NOT NULL DEFAULT 0;
             UPDATE ops SET committed = {};",
            crate::auth::unix_now()
        ))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir`.
    pub fn open(data_dir: &Path, durability: Durability) -> anyhow::Result<SqliteStore> {
        std::fs::create_dir_all(data_dir)?;
        let connection = Connection::open(data_dir.join(DATABASE_FILE))?;
        let synchronous = match durability {
            Durability::Process => "NORMAL",
            Durability::Fsync => "FULL",
        };
        // Exclusive locking: the server is the database's only user, and it saves two fcntl() calls per
        // transaction. It also means a second server on the same data directory fails at once (instead of
        // two servers interleaving revisions). Backups go through `sqlite3 ... ".backup"` after stopping the
        // server, or a copy of the data directory of a stopped server (docs/operations.md).
        connection.execute_batch(&format!(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;
             PRAGMA wal_autocheckpoint = 0;"
        ))?;
        connection.execute_batch(SCHEMA)?;
        migrate(&connection)?;
        Ok(SqliteStore { connection, durability, since_checkpoint: (0, 0) })
    }

    /// Applies `writes` in one transaction, each in its own savepoint.
    fn transaction(&mut self, writes: &[Write]) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        let mut tx = self.connection.transaction().map_err(backend)?;
        let mut outcomes = Vec::with_capacity(writes.len());
        if let [write] = writes {
            // One write: its own transaction is its savepoint.
            let outcome = Self::apply(&tx, write);
            if outcome.is_ok() {
                tx.commit().map_err(backend)?;
            }
            return Ok(vec![outcome]);
        }
        for write in writes {
            // Each write in its own savepoint: one refused write does not undo the others of the batch.
            let savepoint = tx.savepoint().map_err(backend)?;
            let outcome = Self::apply(&savepoint, write);
            if outcome.is_ok() {
                savepoint.commit().map_err(backend)?;
            } else {
                drop(savepoint); // rolls back
            }
            outcomes.push(outcome);
        }
        tx.set_drop_behavior(rusqlite::DropBehavior::Commit);
        tx.commit().map_err(backend)?;
        Ok(outcomes)
    }

    fn apply(tx: &Connection, write: &Write) -> Result<Written, StoreError> {
        match write {
            Write::CreateSession { session, host, created } => {
                tx.execute(
                    "INSERT INTO sessions (id, host, created) VALUES (?1, ?2, ?3)",
                    params![session, host, to_sql(*created)],
                )
                .map_err(backend)?;
            }
            Write::RemovePeer { session, name } => {
                tx.execute(
                    "INSERT OR IGNORE INTO removed_peers (session, name) VALUES (?1, ?2)",
                    params![session, name],
                )
                .map_err(backend)?;
            }
            Write::CreateDocument { session, path, text } => {
                let inserted =
                    tx.execute("INSERT INTO documents (session, path) VALUES (?1, ?2)", params![session, path]);
                match inserted {
                    Err(e) if is_constraint(&e) => return Err(StoreError::PathTaken(path.clone())),
                    other => other.map_err(backend)?,
                };
                let doc = tx.last_insert_rowid();
                tx.execute("INSERT INTO snapshots (doc, revision, text) VALUES (?1, 0, ?2)", params![doc, text])
                    .map_err(backend)?;
                return Ok(Written::DocumentCreated(from_sql(doc)));
            }
            Write::RenameDocument { doc, path } => {
                let changed = tx.execute(
                    "UPDATE documents SET path = ?2 WHERE id = ?1 AND deleted = 0",
                    params![to_sql(*doc), path],
                );
                match changed {
                    Err(e) if is_constraint(&e) => return Err(StoreError::PathTaken(path.clone())),
                    Ok(0) => return Err(StoreError::UnknownDocument(*doc)),
                    other => other.map_err(backend)?,
                };
            }
            Write::DeleteDocument { doc } => {
                let id = to_sql(*doc);
                tx.execute("UPDATE documents SET deleted = 1 WHERE id = ?1", params![id]).map_err(backend)?;
                for table in ["ops", "snapshots", "client_seqs"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE doc = ?1"), params![id]).map_err(backend)?;
                }
            }
            Write::AppendOps { doc, ops, committed } => {
                let id = to_sql(*doc);
                // Each client's last sequence number is read from the ops themselves; `client_seqs` only keeps
                // it for ops that compaction deletes (below). One row per op is the whole cost of a commit.
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO ops (doc, revision, author, seq, op, committed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(backend)?;
                for stored in ops {
                    let inserted = insert.execute(params![
                        id,
                        to_sql(stored.revision),
                        to_sql(stored.author),
                        to_sql(stored.seq),
                        encode_op(&stored.op),
                        to_sql(*committed)
                    ]);
                    match inserted {
                        Err(e) if is_constraint(&e) => {
                            return Err(StoreError::RevisionTaken { doc: *doc, revision: stored.revision })
                        }
                        other => other.map_err(backend)?,
                    };
                }
            }
            Write::Snapshot { doc, revision, text } => {
                tx.execute(
                    "INSERT OR REPLACE INTO snapshots (doc, revision, text) VALUES (?1, ?2, ?3)",
                    params![to_sql(*doc), to_sql(*revision), text],
                )
                .map_err(backend)?;
            }
            Write::Compact { doc, beyond_count, older_than } => {
                let id = to_sql(*doc);
                let newest: Option<i64> = tx
                    .query_row("SELECT MAX(revision) FROM snapshots WHERE doc = ?1", params![id], |row| row.get(0))
                    .map_err(backend)?;
                let Some(newest) = newest else { return Ok(Written::Done) };
                // Retention keeps an op while it is among the newest and young: it goes if either fails. Commit
                // times grow with revisions, so the old ones are a prefix; its end is the newest old one.
                let aged: Option<i64> = tx
                    .query_row(
                        "SELECT MAX(revision) FROM ops WHERE doc = ?1 AND committed < ?2",
                        params![id, to_sql(*older_than)],
                        |row| row.get(0),
                    )
                    .map_err(backend)?;
                // Never an op the newest snapshot does not already contain.
                let through = to_sql(*beyond_count).max(aged.unwrap_or(0)).min(newest);
                // Keep each client's last sequence number before its ops go (a client's sequence numbers grow
                // with the revisions, so both maxima come from its latest op).
                tx.execute(
                    "INSERT INTO client_seqs (doc, client, seq, revision)
                     SELECT doc, author, MAX(seq), MAX(revision) FROM ops WHERE doc = ?1 AND revision <= ?2
                     GROUP BY author
                     ON CONFLICT (doc, client) DO UPDATE SET seq = excluded.seq, revision = excluded.revision
                     WHERE excluded.revision > client_seqs.revision",
                    params![id, through],
                )
                .map_err(backend)?;
                tx.execute("DELETE FROM ops WHERE doc = ?1 AND revision <= ?2", params![id, through])
                    .map_err(backend)?;
                tx.execute("DELETE FROM snapshots WHERE doc = ?1 AND revision < ?2", params![id, newest])
                    .map_err(backend)?;
            }
        }
        Ok(Written::Done)
    }
}

impl SqliteStore {
    /// The consecutive operations after revision `after`, up to `through`, from the first one stored; an error if
    /// one is missing in between.
    fn ops(&mut self, doc: DocId, after: Revision, through: Revision) -> Result<Vec<StoredOp>, StoreError> {
        let mut query = self
            .connection
            .prepare_cached(
                "SELECT revision, author, seq, op FROM ops WHERE doc = ?1 AND revision > ?2 AND revision <= ?3
                 ORDER BY revision",
            )
            .map_err(backend)?;
        let rows = query
            .query_map(params![to_sql(doc), to_sql(after), to_sql(through.min(i64::MAX as u64))], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?, row.get::<_, Vec<u8>>(3)?))
            })
            .map_err(backend)?;
        let mut ops: Vec<StoredOp> = Vec::new();
        for row in rows {
            let (revision, author, seq, bytes) = row.map_err(backend)?;
            let revision = from_sql(revision);
            if let Some(previous) = ops.last().filter(|p| p.revision + 1 != revision) {
                return Err(StoreError::Backend(format!(
                    "document {doc} is missing revision {}",
                    previous.revision + 1
                )));
            }
            ops.push(StoredOp { revision, author: from_sql(author), seq: from_sql(seq), op: decode_op(&bytes)? });
        }
        Ok(ops)
    }
}

impl Store for SqliteStore {
    fn commits_quickly(&self) -> bool {
        self.durability == Durability::Process
    }

    fn commit(&mut self, writes: &[Write]) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        let outcomes = self.transaction(writes)?;
        self.since_checkpoint.0 += 1;
        self.since_checkpoint.1 += writes.iter().map(Write::text_bytes).sum::<usize>();
        Ok(outcomes)
    }

    fn maintenance_due(&self) -> bool {
        let (commits, bytes) = self.since_checkpoint;
        commits >= CHECKPOINT_COMMITS || bytes >= CHECKPOINT_BYTES
    }

    /// Checkpoints the write-ahead log. SQLite would otherwise do it inside whichever commit crosses its
    /// threshold, taking that commit from 45 µs to several milliseconds on the thread that asked for it.
    fn maintain(&mut self) -> Result<(), StoreError> {
        self.connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(backend)?;
        self.since_checkpoint = (0, 0);
        Ok(())
    }

    fn load_session(&mut self, session: &str) -> Result<Option<SessionRecord>, StoreError> {
        let host: Option<String> = self
            .connection
            .query_row("SELECT host FROM sessions WHERE id = ?1", params![session], |row| row.get(0))
            .optional()
            .map_err(backend)?;
        let Some(host) = host else { return Ok(None) };
        let mut removed_query =
            self.connection.prepare_cached("SELECT name FROM removed_peers WHERE session = ?1").map_err(backend)?;
        let removed = removed_query
            .query_map(params![session], |row| row.get(0))
            .map_err(backend)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(backend)?;
        let mut documents_query = self
            .connection
            .prepare_cached("SELECT id, path FROM documents WHERE session = ?1 AND deleted = 0 ORDER BY id")
            .map_err(backend)?;
        let documents = documents_query
            .query_map(params![session], |row| Ok(DocumentRecord { doc: from_sql(row.get(0)?), path: row.get(1)? }))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(Some(SessionRecord { host, removed, documents }))
    }

    fn session_count(&mut self) -> Result<usize, StoreError> {
        let n: i64 =
            self.connection.query_row("SELECT COUNT(*) FROM sessions", [], |row| row.get(0)).map_err(backend)?;
        Ok(n as usize)
    }

    fn load_document(&mut self, doc: DocId) -> Result<LoadedDocument, StoreError> {
        let id = to_sql(doc);
        let snapshot: Option<(i64, String)> = self
            .connection
            .query_row(
                "SELECT revision, text FROM snapshots WHERE doc = ?1 ORDER BY revision DESC LIMIT 1",
                params![id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        let Some((snapshot_revision, snapshot_text)) = snapshot else {
            return Err(StoreError::UnknownDocument(doc));
        };
        let snapshot_revision = from_sql(snapshot_revision);
        let ops = self.ops(doc, snapshot_revision, Revision::MAX)?;
        if let Some(first) = ops.first().filter(|op| op.revision != snapshot_revision + 1) {
            return Err(StoreError::Backend(format!(
                "document {doc} is missing revisions {} to {}",
                snapshot_revision + 1,
                first.revision - 1
            )));
        }
        let mut seqs_query = self
            .connection
            .prepare_cached(
                "SELECT client, MAX(seq), MAX(revision) FROM (
                     SELECT client, seq, revision FROM client_seqs WHERE doc = ?1
                     UNION ALL
                     SELECT author, seq, revision FROM ops WHERE doc = ?1
                 ) GROUP BY client",
            )
            .map_err(backend)?;
        let client_seqs = seqs_query
            .query_map(params![id], |row| {
                Ok((from_sql(row.get(0)?) as ClientId, from_sql(row.get(1)?), from_sql(row.get(2)?)))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(LoadedDocument { snapshot_revision, snapshot_text, ops, client_seqs })
    }

    fn load_ops(
        &mut self,
        doc: DocId,
        after: Revision,
        through: Revision,
    ) -> Result<Option<Vec<StoredOp>>, StoreError> {
        let ops = self.ops(doc, after, through)?;
        let complete = through == after || ops.first().is_some_and(|op| op.revision == after + 1);
        Ok(complete.then_some(ops))
    }
}

#[cfg(test)]
mod tests;
