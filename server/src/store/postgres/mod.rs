//! The PostgreSQL store, for several server nodes sharing one database (`--database-url`): the same tables and
//! the same rules as the SQLite store, with migrations applied at start under an advisory lock.
//!
//! Durability: a commit returns once PostgreSQL has committed the transaction, which with the server's default
//! `synchronous_commit = on` means it is flushed to PostgreSQL's write-ahead log.
//!
//! A statement that fails in PostgreSQL aborts its whole transaction, so refusals the store expects (a path or a
//! revision already taken, an unknown document) are found without failing a statement (`ON CONFLICT DO NOTHING`,
//! counting rows): one refused write never undoes the others of a batch, as with SQLite's savepoints. Anything
//! else that fails (the connection, the server) fails the whole batch, and the next call connects again.
//!
//! Ownership: each document is sequenced by one node at a time, the holder of its row in `leases` (node, epoch,
//! expiry by the database's clock). A node takes the row when it is free or expired, bumping the epoch, and renews
//! what it holds every third of the lease's time. Every commit of a document's operations, snapshot or compaction
//! first locks the row (`FOR SHARE`) and checks that it still names this node and the epoch it took, in the same
//! transaction: a node that was paused past its lease while another took over can never commit again, and a
//! takeover waits for a commit in progress, then loads what it committed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use codecollab_protocol::wire::DocId;
use codecollab_protocol::{ClientId, Revision};
use postgres::{Client, NoTls, Statement, Transaction};

use super::{
    decode_op, encode_op, from_sql, to_sql, DocumentRecord, LoadedDocument, Lost, SessionHome, SessionRecord, Store,
    StoreError, StoredOp, Write, Written,
};

/// Each migration, in order; the schema's version is how many of them ran. Never edit one that has shipped:
/// add another.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE removed_peers (
    session TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (session, name)
);
CREATE TABLE documents (
    id BIGSERIAL PRIMARY KEY,
    session TEXT NOT NULL,
    path TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX documents_live_path ON documents (session, path) WHERE NOT deleted;
CREATE TABLE ops (
    doc BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    author BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    op BYTEA NOT NULL,
    committed BIGINT NOT NULL,
    PRIMARY KEY (doc, revision)
);
CREATE TABLE snapshots (
    doc BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (doc, revision)
);
CREATE TABLE client_seqs (
    doc BIGINT NOT NULL,
    client BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    PRIMARY KEY (doc, client)
);
",
    "
CREATE TABLE leases (
    doc BIGINT PRIMARY KEY,
    node TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
",
    "
CREATE TABLE secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key TEXT NOT NULL
);
",
    "
CREATE TABLE session_leases (
    session TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
",
];

/// How long a connection may take to answer whether it still works, after a failure.
const HEALTH_CHECK: Duration = Duration::from_secs(2);

/// Takes the lease on a document that has none, whose lease expired, or that this node held before (in this
/// process or an earlier one of the same name): the epoch goes up every time.
const CLAIM: &str = "
INSERT INTO leases (doc, node, epoch, expires) VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (doc) DO UPDATE SET node = excluded.node, epoch = leases.epoch + 1, expires = excluded.expires
    WHERE leases.expires < clock_timestamp() OR leases.node = excluded.node
RETURNING epoch";

/// [`CLAIM`] for a session.
const CLAIM_SESSION: &str = "
INSERT INTO session_leases (session, node, epoch, expires)
    VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (session) DO UPDATE SET node = excluded.node, epoch = session_leases.epoch + 1, expires = excluded.expires
    WHERE session_leases.expires < clock_timestamp() OR session_leases.node = excluded.node
RETURNING epoch";

/// The advisory lock nodes take while migrating, so two starting at once do not both run a migration.
const MIGRATION_LOCK: i64 = 0x636f_6465_636f_6c6c; // "codecoll"

pub struct PostgresStore {
    url: String,
    /// `None` after the connection broke, until the next call connects again.
    client: Option<Client>,
    /// This node's name in `leases`: how other nodes reach it (`--node-url`), the same across its restarts.
    node: String,
    lease: Duration,
    /// The documents this node sequences, with the epoch of its lease on each.
    held: HashMap<DocId, i64>,
    /// The sessions whose clients this node serves, with the epoch of its lease on each.
    sessions: HashMap<String, i64>,
    /// When the held leases were last renewed.
    renewed: Instant,
    /// Documents and sessions found taken over, not yet reported ([`Store::take_lost`]).
    lost: Vec<Lost>,
    /// The statements of every commit, prepared once per connection (an unprepared one costs a round trip more).
    prepared: Option<Prepared>,
}

/// Statements prepared on the current connection.
struct Prepared {
    fence: Statement,
    insert_op: Statement,
}

impl Prepared {
    fn new(client: &mut Client) -> Result<Prepared, postgres::Error> {
        Ok(Prepared {
            fence: client.prepare("SELECT doc, epoch FROM leases WHERE doc = ANY($1) AND node = $2 FOR SHARE")?,
            insert_op: client.prepare(
                "INSERT INTO ops (doc, revision, author, seq, op, committed) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT DO NOTHING",
            )?,
        })
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.write_str("PostgresStore")
    }
}

fn backend(error: postgres::Error) -> StoreError {
    StoreError::Backend(describe(&error))
}

/// The error with PostgreSQL's own message when it sent one (`Display` alone says only "db error").
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => error.to_string(),
    }
}

/// Connects and brings the schema up to date.
fn connect(url: &str) -> Result<Client, postgres::Error> {
    let mut client = Client::connect(url, NoTls)?;
    migrate(&mut client)?;
    Ok(client)
}

/// Runs the migrations this database has not had yet, in one transaction under [`MIGRATION_LOCK`].
fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // Asked first: `CREATE TABLE IF NOT EXISTS` would log a notice at every start.
    let fresh: bool = tx.query_one("SELECT to_regclass('codecollab_schema') IS NULL", &[])?.get(0);
    if fresh {
        tx.batch_execute("CREATE TABLE codecollab_schema (version INTEGER NOT NULL)")?;
    }
    let version: Option<i32> = tx.query_opt("SELECT version FROM codecollab_schema", &[])?.map(|row| row.get(0));
    let done = version.unwrap_or(0).max(0) as usize;
    for migration in MIGRATIONS.iter().skip(done) {
        tx.batch_execute(migration)?;
    }
    let now = MIGRATIONS.len() as i32;
    match version {
        None => tx.execute("INSERT INTO codecollab_schema (version) VALUES ($1)", &[&now])?,
        Some(_) => tx.execute("UPDATE codecollab_schema SET version = $1", &[&now])?,
    };
    tx.commit()
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL) as the node `node`, whose leases last `lease`, and
    /// applies the migrations the database lacks. The leases an earlier process of this node left are expired
    /// (not deleted: their epochs stay), so others may take those documents at once. Blocking: call it off the
    /// async runtime's threads.
    pub fn open(url: &str, node: &str, lease: Duration) -> anyhow::Result<PostgresStore> {
        let client = connect(url).map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {}", describe(&e)))?;
        let mut store = PostgresStore {
            url: url.to_owned(),
            client: Some(client),
            node: node.to_owned(),
            lease,
            held: HashMap::new(),
            sessions: HashMap::new(),
            renewed: Instant::now(),
            lost: Vec::new(),
            prepared: None,
        };
        store.release_all().map_err(|e| anyhow::anyhow!("expiring this node's old leases: {e}"))?;
        Ok(store)
    }

    /// The token secret every node of the cluster signs with: the one in the database, put there by the first
    /// node that asked (as `candidate`, fresh random hex). Blocking.
    pub fn shared_secret(&mut self, candidate: &str) -> Result<String, StoreError> {
        self.with(|client| cluster_secret(client, candidate).map_err(backend))
    }

    /// This node's name in the leases.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The documents among `docs` whose lease this node still holds at the epoch it took, locking their rows
    /// until the transaction ends. Those it does not are no longer held, and reported as lost.
    fn fence(
        &mut self,
        tx: &mut Transaction<'_>,
        statement: &Statement,
        docs: &HashSet<DocId>,
    ) -> Result<HashSet<DocId>, postgres::Error> {
        let mine: Vec<i64> = docs.iter().filter(|doc| self.held.contains_key(doc)).map(|&doc| to_sql(doc)).collect();
        let mut still = HashSet::new();
        if !mine.is_empty() {
            let rows = tx.query(statement, &[&mine, &self.node])?;
            for row in rows {
                let (doc, epoch): (i64, i64) = (row.get(0), row.get(1));
                if self.held.get(&from_sql(doc)) == Some(&epoch) {
                    still.insert(from_sql(doc));
                }
            }
        }
        for doc in docs.iter().filter(|doc| !still.contains(doc)) {
            if self.held.remove(doc).is_some() {
                self.lost.push(Lost::Document(*doc));
            }
        }
        Ok(still)
    }

    /// Runs `call` on the connection. After a failure of the backend the connection is checked, and dropped if it
    /// no longer answers, so the next call connects again.
    fn with<T>(&mut self, call: impl FnOnce(&mut Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut client = self.take_client()?;
        let result = call(&mut client);
        self.keep(client, &result);
        result
    }

    /// The connection, made again (and its statements forgotten) if the last one broke.
    fn take_client(&mut self) -> Result<Client, StoreError> {
        match self.client.take() {
            Some(client) => Ok(client),
            None => {
                self.prepared = None;
                connect(&self.url).map_err(backend)
            }
        }
    }

    /// Puts the connection back after a call, unless the call failed in the backend and the connection no longer
    /// answers.
    fn keep<T>(&mut self, mut client: Client, result: &Result<T, StoreError>) {
        let broken = client.is_closed()
            || (matches!(result, Err(StoreError::Backend(_))) && client.is_valid(HEALTH_CHECK).is_err());
        if !broken {
            self.client = Some(client);
        }
    }

    fn apply(
        tx: &mut Transaction<'_>,
        prepared: &Prepared,
        write: &Write,
    ) -> Result<Result<Written, StoreError>, postgres::Error> {
        match write {
            Write::CreateSession { session, host, created } => {
                let inserted = tx.execute(
                    "INSERT INTO sessions (id, host, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[session, host, &to_sql(*created)],
                )?;
                if inserted == 0 {
                    return Ok(Err(StoreError::Backend(format!("session {session} exists already"))));
                }
            }
            Write::RemovePeer { session, name } => {
                tx.execute(
                    "INSERT INTO removed_peers (session, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[session, name],
                )?;
            }
            Write::CreateDocument { session, path, text } => {
                let row = tx.query_opt(
                    "INSERT INTO documents (session, path) VALUES ($1, $2)
                     ON CONFLICT (session, path) WHERE NOT deleted DO NOTHING RETURNING id",
                    &[session, path],
                )?;
                let Some(row) = row else { return Ok(Err(StoreError::PathTaken(path.clone()))) };
                let doc: i64 = row.get(0);
                tx.execute("INSERT INTO snapshots (doc, revision, text) VALUES ($1, 0, $2)", &[&doc, text])?;
                return Ok(Ok(Written::DocumentCreated(from_sql(doc))));
            }
            Write::RenameDocument { doc, path } => {
                let id = to_sql(*doc);
                let session: Option<String> = tx
                    .query_opt("SELECT session FROM documents WHERE id = $1 AND NOT deleted", &[&id])?
                    .map(|row| row.get(0));
                let Some(session) = session else { return Ok(Err(StoreError::UnknownDocument(*doc))) };
                // Locks the other document's row too, if there is one, so the check holds until the commit.
                let taken = tx.query_opt(
                    "SELECT 1 FROM documents WHERE session = $1 AND path = $2 AND NOT deleted AND id <> $3 FOR UPDATE",
                    &[&session, path, &id],
                )?;
                if taken.is_some() {
                    return Ok(Err(StoreError::PathTaken(path.clone())));
                }
                tx.execute("UPDATE documents SET path = $2 WHERE id = $1", &[&id, path])?;
            }
            Write::DeleteDocument { doc } => {
                let id = to_sql(*doc);
                tx.execute("UPDATE documents SET deleted = TRUE WHERE id = $1", &[&id])?;
                for table in ["ops", "snapshots", "client_seqs"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE doc = $1"), &[&id])?;
                }
            }
            Write::AppendOps { doc, ops, committed } => {
                let id = to_sql(*doc);
                let insert = &prepared.insert_op;
                let mut inserted = Vec::with_capacity(ops.len());
                for stored in ops {
                    let revision = to_sql(stored.revision);
                    let rows = tx.execute(
                        insert,
                        &[
                            &id,
                            &revision,
                            &to_sql(stored.author),
                            &to_sql(stored.seq),
                            &encode_op(&stored.op),
                            &to_sql(*committed),
                        ],
                    )?;
                    if rows == 0 {
                        // Taken: none of this write's operations stay.
                        for revision in inserted {
                            tx.execute("DELETE FROM ops WHERE doc = $1 AND revision = $2", &[&id, &revision])?;
                        }
                        return Ok(Err(StoreError::RevisionTaken { doc: *doc, revision: stored.revision }));
                    }
                    inserted.push(revision);
                }
            }
            Write::Snapshot { doc, revision, text } => {
                tx.execute(
                    "INSERT INTO snapshots (doc, revision, text) VALUES ($1, $2, $3)
                     ON CONFLICT (doc, revision) DO UPDATE SET text = excluded.text",
                    &[&to_sql(*doc), &to_sql(*revision), text],
                )?;
            }
            Write::Compact { doc, beyond_count, older_than } => {
                let id = to_sql(*doc);
                let newest: Option<i64> =
                    tx.query_one("SELECT MAX(revision) FROM snapshots WHERE doc = $1", &[&id])?.get(0);
                let Some(newest) = newest else { return Ok(Ok(Written::Done)) };
                // The same window as the SQLite store's: see there.
                let aged: Option<i64> = tx
                    .query_one(
                        "SELECT MAX(revision) FROM ops WHERE doc = $1 AND committed < $2",
                        &[&id, &to_sql(*older_than)],
                    )?
                    .get(0);
                let through = to_sql(*beyond_count).max(aged.unwrap_or(0)).min(newest);
                tx.execute(
                    "INSERT INTO client_seqs (doc, client, seq, revision)
                     SELECT doc, author, MAX(seq), MAX(revision) FROM ops WHERE doc = $1 AND revision <= $2
                     GROUP BY doc, author
                     ON CONFLICT (doc, client) DO UPDATE SET seq = excluded.seq, revision = excluded.revision
                     WHERE excluded.revision > client_seqs.revision",
                    &[&id, &through],
                )?;
                tx.execute("DELETE FROM ops WHERE doc = $1 AND revision <= $2", &[&id, &through])?;
                tx.execute("DELETE FROM snapshots WHERE doc = $1 AND revision < $2", &[&id, &newest])?;
            }
        }
        Ok(Ok(Written::Done))
    }
}

/// The cluster's token secret: `candidate` if the database had none yet.
fn cluster_secret(client: &mut Client, candidate: &str) -> Result<String, postgres::Error> {
    client.execute("INSERT INTO secret (id, key) VALUES (1, $1) ON CONFLICT DO NOTHING", &[&candidate])?;
    Ok(client.query_one("SELECT key FROM secret WHERE id = 1", &[])?.get(0))
}

/// The cluster's token secret in the database at `url` (for `codecollab-server token`), made if it has none.
/// Blocking.
pub fn secret_in(url: &str, candidate: &str) -> anyhow::Result<String> {
    let mut client = connect(url).map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {}", describe(&e)))?;
    cluster_secret(&mut client, candidate).map_err(|e| anyhow::anyhow!("reading the secret: {}", describe(&e)))
}

/// The document whose operations a write changes, and which only its sequencing node may commit.
fn sequenced(write: &Write) -> Option<DocId> {
    match write {
        Write::AppendOps { doc, .. } | Write::Snapshot { doc, .. } | Write::Compact { doc, .. } => Some(*doc),
        _ => None,
    }
}

/// The consecutive operations after revision `after`, up to `through`, from the first one stored; an error if one
/// is missing in between.
fn read_ops(client: &mut Client, doc: DocId, after: Revision, through: Revision) -> Result<Vec<StoredOp>, StoreError> {
    let rows = client
        .query(
            "SELECT revision, author, seq, op FROM ops WHERE doc = $1 AND revision > $2 AND revision <= $3
             ORDER BY revision",
            &[&to_sql(doc), &to_sql(after), &to_sql(through.min(i64::MAX as u64))],
        )
        .map_err(backend)?;
    let mut ops: Vec<StoredOp> = Vec::with_capacity(rows.len());
    for row in rows {
        let revision = from_sql(row.get(0));
        if let Some(previous) = ops.last().filter(|p| p.revision + 1 != revision) {
            return Err(StoreError::Backend(format!("document {doc} is missing revision {}", previous.revision + 1)));
        }
        let bytes: &[u8] = row.get(3);
        ops.push(StoredOp { revision, author: from_sql(row.get(1)), seq: from_sql(row.get(2)), op: decode_op(bytes)? });
    }
    Ok(ops)
}

impl Store for PostgresStore {
    fn commit(&mut self, writes: &[Write]) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        let fenced: HashSet<DocId> = writes.iter().filter_map(sequenced).collect();
        let mut client = self.take_client()?;
        let result = (|| {
            let prepared = match self.prepared.take() {
                Some(prepared) => prepared,
                None => Prepared::new(&mut client).map_err(backend)?,
            };
            let mut tx = client.transaction().map_err(backend)?;
            let owned = match fenced.is_empty() {
                true => HashSet::new(),
                false => self.fence(&mut tx, &prepared.fence, &fenced).map_err(backend)?,
            };
            let mut outcomes = Vec::with_capacity(writes.len());
            for write in writes {
                let outcome = match (sequenced(write), write) {
                    (Some(doc), _) if !owned.contains(&doc) => Err(StoreError::NotOwner(doc)),
                    (_, Write::DeleteDocument { doc }) => {
                        // Its lease goes with it.
                        tx.execute("DELETE FROM leases WHERE doc = $1", &[&to_sql(*doc)]).map_err(backend)?;
                        self.held.remove(doc);
                        Self::apply(&mut tx, &prepared, write).map_err(backend)?
                    }
                    _ => Self::apply(&mut tx, &prepared, write).map_err(backend)?,
                };
                outcomes.push(outcome);
            }
            tx.commit().map_err(backend)?;
            self.prepared = Some(prepared);
            Ok(outcomes)
        })();
        self.keep(client, &result);
        result
    }

    fn claim(&mut self, doc: DocId) -> Result<bool, StoreError> {
        let (node, lease) = (self.node.clone(), self.lease.as_secs_f64());
        let epoch = self.with(|client| {
            let row = client.query_opt(CLAIM, &[&to_sql(doc), &node, &lease]).map_err(backend)?;
            Ok(row.map(|row| row.get::<_, i64>(0)))
        })?;
        let Some(epoch) = epoch else { return Err(StoreError::NotOwner(doc)) };
        if self.held.is_empty() {
            // Renewals count from the first lease held.
            self.renewed = Instant::now();
        }
        self.held.insert(doc, epoch);
        Ok(true)
    }

    fn claim_session(&mut self, session: &str) -> Result<SessionHome, StoreError> {
        let (node, lease) = (self.node.clone(), self.lease.as_secs_f64());
        let claimed = self.with(|client| {
            let row = client.query_opt(CLAIM_SESSION, &[&session, &node, &lease]).map_err(backend)?;
            match row {
                Some(row) => Ok(Ok(row.get::<_, i64>(0))),
                None => {
                    let holder = client
                        .query_opt("SELECT node FROM session_leases WHERE session = $1", &[&session])
                        .map_err(backend)?;
                    Ok(Err(holder.map(|row| row.get::<_, String>(0))))
                }
            }
        })?;
        match claimed {
            Ok(epoch) => {
                if self.held.is_empty() && self.sessions.is_empty() {
                    self.renewed = Instant::now();
                }
                self.sessions.insert(session.to_owned(), epoch);
                Ok(SessionHome::Here)
            }
            Err(Some(holder)) => Ok(SessionHome::Node(holder)),
            // Released between the two statements: try again next time.
            Err(None) => Err(StoreError::Backend("the session's holder changed while asking".into())),
        }
    }

    fn release_all(&mut self) -> Result<(), StoreError> {
        let node = self.node.clone();
        self.held.clear();
        self.sessions.clear();
        self.with(|client| {
            for table in ["leases", "session_leases"] {
                let sql = format!("UPDATE {table} SET expires = '-infinity' WHERE node = $1");
                client.execute(&sql, &[&node]).map_err(backend)?;
            }
            Ok(())
        })
    }

    fn release(&mut self, doc: DocId) -> Result<(), StoreError> {
        let Some(epoch) = self.held.remove(&doc) else { return Ok(()) };
        let node = self.node.clone();
        // Expired, not deleted: the epoch stays, so the next holder's is higher.
        self.with(|client| {
            client
                .execute(
                    "UPDATE leases SET expires = '-infinity' WHERE doc = $1 AND node = $2 AND epoch = $3",
                    &[&to_sql(doc), &node, &epoch],
                )
                .map_err(backend)?;
            Ok(())
        })
    }

    fn housekeeping_every(&self) -> Option<Duration> {
        Some(self.lease / 3)
    }

    fn maintenance_due(&self) -> bool {
        !(self.held.is_empty() && self.sessions.is_empty()) && self.renewed.elapsed() >= self.lease / 3
    }

    /// Renews every lease held, of documents and of sessions. One this node no longer holds at its epoch was taken
    /// over (it could not renew in time): it is reported lost.
    fn maintain(&mut self) -> Result<(), StoreError> {
        let docs: Vec<i64> = self.held.keys().map(|&doc| to_sql(doc)).collect();
        let sessions: Vec<String> = self.sessions.keys().cloned().collect();
        let (node, lease) = (self.node.clone(), self.lease.as_secs_f64());
        let (current_docs, current_sessions) = self.with(|client| {
            let docs: HashMap<DocId, i64> = client
                .query(
                    "UPDATE leases SET expires = clock_timestamp() + make_interval(secs => $3)
                     WHERE doc = ANY($1) AND node = $2 RETURNING doc, epoch",
                    &[&docs, &node, &lease],
                )
                .map_err(backend)?
                .iter()
                .map(|row| (from_sql(row.get(0)), row.get(1)))
                .collect();
            let sessions: HashMap<String, i64> = client
                .query(
                    "UPDATE session_leases SET expires = clock_timestamp() + make_interval(secs => $3)
                     WHERE session = ANY($1) AND node = $2 RETURNING session, epoch",
                    &[&sessions, &node, &lease],
                )
                .map_err(backend)?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            Ok((docs, sessions))
        })?;
        self.renewed = Instant::now();
        let lost_docs: Vec<DocId> =
            self.held.iter().filter(|(doc, epoch)| current_docs.get(doc) != Some(epoch)).map(|(&d, _)| d).collect();
        for doc in lost_docs {
            self.held.remove(&doc);
            self.lost.push(Lost::Document(doc));
        }
        let lost_sessions: Vec<String> = self
            .sessions
            .iter()
            .filter(|(session, epoch)| current_sessions.get(*session) != Some(epoch))
            .map(|(s, _)| s.clone())
            .collect();
        for session in lost_sessions {
            self.sessions.remove(&session);
            self.lost.push(Lost::Session(session));
        }
        Ok(())
    }

    fn leases_held(&self) -> usize {
        self.held.len() + self.sessions.len()
    }

    fn take_lost(&mut self) -> Vec<Lost> {
        std::mem::take(&mut self.lost)
    }

    fn load_session(&mut self, session: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.with(|client| {
            let host: Option<String> = client
                .query_opt("SELECT host FROM sessions WHERE id = $1", &[&session])
                .map_err(backend)?
                .map(|row| row.get(0));
            let Some(host) = host else { return Ok(None) };
            let removed = client
                .query("SELECT name FROM removed_peers WHERE session = $1", &[&session])
                .map_err(backend)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let documents = client
                .query("SELECT id, path FROM documents WHERE session = $1 AND NOT deleted ORDER BY id", &[&session])
                .map_err(backend)?
                .iter()
                .map(|row| DocumentRecord { doc: from_sql(row.get(0)), path: row.get(1) })
                .collect();
            Ok(Some(SessionRecord { host, removed, documents }))
        })
    }

    fn session_count(&mut self) -> Result<usize, StoreError> {
        self.with(|client| {
            let n: i64 = client.query_one("SELECT COUNT(*) FROM sessions", &[]).map_err(backend)?.get(0);
            Ok(n as usize)
        })
    }

    fn load_document(&mut self, doc: DocId) -> Result<LoadedDocument, StoreError> {
        self.with(|client| {
            let id = to_sql(doc);
            let snapshot = client
                .query_opt("SELECT revision, text FROM snapshots WHERE doc = $1 ORDER BY revision DESC LIMIT 1", &[&id])
                .map_err(backend)?;
            let Some(snapshot) = snapshot else { return Err(StoreError::UnknownDocument(doc)) };
            let snapshot_revision = from_sql(snapshot.get(0));
            let snapshot_text: String = snapshot.get(1);
            let ops = read_ops(client, doc, snapshot_revision, Revision::MAX)?;
            if let Some(first) = ops.first().filter(|op| op.revision != snapshot_revision + 1) {
                return Err(StoreError::Backend(format!(
                    "document {doc} is missing revisions {} to {}",
                    snapshot_revision + 1,
                    first.revision - 1
                )));
            }
            let client_seqs = client
                .query(
                    "SELECT client, MAX(seq), MAX(revision) FROM (
                         SELECT client, seq, revision FROM client_seqs WHERE doc = $1
                         UNION ALL
                         SELECT author, seq, revision FROM ops WHERE doc = $1
                     ) AS seqs GROUP BY client",
                    &[&id],
                )
                .map_err(backend)?
                .iter()
                .map(|row| {
                    let client: i64 = row.get(0);
                    (from_sql(client) as ClientId, from_sql(row.get(1)), from_sql(row.get(2)))
                })
                .collect();
            Ok(LoadedDocument { snapshot_revision, snapshot_text, ops, client_seqs })
        })
    }

    fn load_ops(
        &mut self,
        doc: DocId,
        after: Revision,
        through: Revision,
    ) -> Result<Option<Vec<StoredOp>>, StoreError> {
        self.with(|client| {
            let ops = read_ops(client, doc, after, through)?;
            let complete = through == after || ops.first().is_some_and(|op| op.revision == after + 1);
            Ok(complete.then_some(ops))
        })
    }
}

/// A database of its own for one test, created on a PostgreSQL server and dropped (with anything still connected
/// to it) when this value is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// The server tests use: `CODECOLLAB_TEST_POSTGRES` (a URL of a database the test may create others from),
    /// else the machine's `postgres://postgres@127.0.0.1:5432/test`.
    pub fn admin_url() -> String {
        std::env::var("CODECOLLAB_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// Creates a database named after `label`, this process and a counter. Blocking; safe to call from async code
    /// too (the work runs on a thread of its own, as does the drop).
    pub fn create(label: &str) -> anyhow::Result<ScratchDatabase> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin_url = Self::admin_url();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let label: String =
            label.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        let name = format!("codecollab_{label}_{}_{n}", std::process::id());
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) if admin_url.contains("://") && !admin_url.contains('?') => format!("{server}/{name}"),
            _ => anyhow::bail!("CODECOLLAB_TEST_POSTGRES must be a postgres:// URL naming a database, with no options"),
        };
        admin(
            &admin_url,
            vec![format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")],
        )
        .map_err(|e| anyhow::anyhow!("tests need PostgreSQL at {admin_url} (set CODECOLLAB_TEST_POSTGRES): {e}"))?;
        Ok(ScratchDatabase { admin_url, name, url })
    }

    /// The URL of the scratch database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The scratch database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The one integer `sql` selects from the scratch database.
    pub fn select_i64(&self, sql: &str) -> anyhow::Result<i64> {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        std::thread::spawn(move || -> Result<i64, String> {
            let mut client = Client::connect(&url, NoTls).map_err(|e| describe(&e))?;
            client.query_one(&sql, &[]).map(|row| row.get(0)).map_err(|e| describe(&e))
        })
        .join()
        .unwrap_or_else(|_| Err("the query panicked".into()))
        .map_err(anyhow::Error::msg)
    }

    /// Runs `statements` one by one on the server's admin database (to break connections, rename, ...).
    pub fn admin(&self, statements: &[&str]) -> anyhow::Result<()> {
        admin(&self.admin_url, statements.iter().map(|s| s.to_string()).collect()).map_err(anyhow::Error::msg)
    }
}

/// Runs `statements` one by one (each outside a transaction, as `CREATE DATABASE` must be) on the server at
/// `admin_url`, from a thread of its own: the synchronous client cannot run on an async runtime's thread.
fn admin(admin_url: &str, statements: Vec<String>) -> Result<(), String> {
    let admin_url = admin_url.to_owned();
    std::thread::spawn(move || {
        let mut admin = Client::connect(&admin_url, NoTls).map_err(|e| describe(&e))?;
        statements.iter().try_for_each(|statement| admin.batch_execute(statement)).map_err(|e| describe(&e))
    })
    .join()
    .unwrap_or_else(|_| Err("the admin connection panicked".into()))
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Err(error) = admin(&self.admin_url, vec![format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
        {
            eprintln!("could not drop the test database {}: {error}", self.name);
        }
    }
}

#[cfg(test)]
mod tests;
