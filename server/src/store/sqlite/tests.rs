//! The SQLite store against real database files: revisions, reloading, compaction within the retention window,
//! migrating an older database, and checkpointing.

use super::*;

fn insert(len: usize, at: usize, text: &str) -> TextOperation {
    TextOperation::replace(len, at, at, text).expect("in bounds")
}

fn temp_store(name: &str) -> (SqliteStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("codecollab-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (SqliteStore::open(&dir, Durability::Process).expect("opens"), dir)
}

#[test]
fn revisions_are_taken_once_and_documents_reload() {
    let (mut store, dir) = temp_store("revisions");
    let outcomes = store
        .commit(&[
            Write::CreateSession { session: "s".into(), host: "Ada".into(), created: 1 },
            Write::CreateDocument { session: "s".into(), path: "a.txt".into(), text: "hi".into() },
            Write::CreateDocument { session: "s".into(), path: "a.txt".into(), text: "again".into() },
        ])
        .expect("commits");
    let Ok(Written::DocumentCreated(doc)) = outcomes[1] else { panic!("{outcomes:?}") };
    assert_eq!(outcomes[2], Err(StoreError::PathTaken("a.txt".into())));
    let op1 = StoredOp { revision: 1, author: u64::MAX, seq: 1, op: insert(2, 2, "!") };
    let op2 = StoredOp { revision: 2, author: 7, seq: 1, op: insert(3, 0, "¡") };
    let outcomes = store
        .commit(&[
            Write::AppendOps { doc, ops: vec![op1.clone()], committed: 10 },
            Write::AppendOps { doc, ops: vec![op1.clone()], committed: 10 },
            Write::AppendOps { doc, ops: vec![op2.clone()], committed: 10 },
        ])
        .expect("commits");
    assert_eq!(outcomes[1], Err(StoreError::RevisionTaken { doc, revision: 1 }));
    assert!(outcomes[2].is_ok(), "a refused write does not undo the rest of the batch");
    let loaded = store.load_document(doc).expect("loads");
    assert_eq!((loaded.snapshot_revision, loaded.snapshot_text.as_str()), (0, "hi"));
    assert_eq!(loaded.ops, vec![op1, op2.clone()]);
    assert!(loaded.client_seqs.contains(&(u64::MAX, 1, 1)));
    // Snapshot at 1, compact through 1: the snapshot replaces the first op.
    store
        .commit(&[
            Write::Snapshot { doc, revision: 1, text: "hi!".into() },
            Write::Compact { doc, beyond_count: 1, older_than: 0 },
        ])
        .expect("commits");
    let loaded = store.load_document(doc).expect("loads");
    assert_eq!((loaded.snapshot_revision, loaded.snapshot_text.as_str()), (1, "hi!"));
    assert_eq!(loaded.ops, vec![op2]);
    // The compacted op's author is still known to have committed its sequence number 1.
    assert!(loaded.client_seqs.contains(&(u64::MAX, 1, 1)), "{:?}", loaded.client_seqs);
    assert!(loaded.client_seqs.contains(&(7, 1, 2)), "{:?}", loaded.client_seqs);
    let session = store.load_session("s").expect("reads").expect("exists");
    assert_eq!(session.documents, vec![DocumentRecord { doc, path: "a.txt".into() }]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn compaction_keeps_the_retention_window_and_what_the_newest_snapshot_lacks() {
    let (mut store, dir) = temp_store("retention");
    let outcomes = store
        .commit(&[
            Write::CreateSession { session: "s".into(), host: "Ada".into(), created: 1 },
            Write::CreateDocument { session: "s".into(), path: "a.txt".into(), text: String::new() },
        ])
        .expect("commits");
    let Ok(Written::DocumentCreated(doc)) = outcomes[1] else { panic!("{outcomes:?}") };
    // Revisions 1..=10 committed at times 100..=109, by two clients.
    for revision in 1..=10_u64 {
        let op = StoredOp { revision, author: revision % 2, seq: revision, op: insert(revision as usize - 1, 0, "x") };
        store.commit(&[Write::AppendOps { doc, ops: vec![op], committed: 99 + revision }]).expect("commits");
    }
    let ops_after = |store: &mut SqliteStore, after| store.load_ops(doc, after, 10).expect("reads").map(|o| o.len());
    assert_eq!(ops_after(&mut store, 0), Some(10));
    assert_eq!(ops_after(&mut store, 7), Some(3));
    assert_eq!(store.load_ops(doc, 10, 10).expect("reads").map(|o| o.len()), Some(0), "nothing missed");
    // A snapshot at 8. Retention by count says keep after 3, by age keep what was committed from 105 (rev 6).
    store.commit(&[Write::Snapshot { doc, revision: 8, text: "x".repeat(8) }]).expect("commits");
    store.commit(&[Write::Compact { doc, beyond_count: 3, older_than: 105 }]).expect("commits");
    assert_eq!(ops_after(&mut store, 5), Some(5), "revisions 6 to 10 are kept");
    assert_eq!(ops_after(&mut store, 4), None, "revision 5 is gone: a resuming client gets a snapshot");
    // Retention would let everything go, but the ops after the newest snapshot stay.
    store.commit(&[Write::Compact { doc, beyond_count: 10, older_than: 1_000 }]).expect("commits");
    assert_eq!(ops_after(&mut store, 8), Some(2));
    assert_eq!(ops_after(&mut store, 7), None);
    let loaded = store.load_document(doc).expect("loads");
    assert_eq!((loaded.snapshot_revision, loaded.ops.len()), (8, 2));
    assert!(
        loaded.client_seqs.contains(&(0, 10, 10)) && loaded.client_seqs.contains(&(1, 9, 9)),
        "{:?}",
        loaded.client_seqs
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_database_of_an_older_server_gets_commit_times() {
    let dir = std::env::temp_dir().join(format!("codecollab-store-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creates");
    let old = Connection::open(dir.join(DATABASE_FILE)).expect("opens");
    old.execute_batch(
        "CREATE TABLE ops (doc INTEGER NOT NULL, revision INTEGER NOT NULL, author INTEGER NOT NULL,
             seq INTEGER NOT NULL, op BLOB NOT NULL, PRIMARY KEY (doc, revision)) WITHOUT ROWID;
         INSERT INTO ops VALUES (1, 1, 7, 1, x'91a178');",
    )
    .expect("old schema");
    drop(old);
    let mut store = SqliteStore::open(&dir, Durability::Process).expect("migrates");
    let committed: i64 = store.connection.query_row("SELECT committed FROM ops", [], |row| row.get(0)).expect("reads");
    assert!(committed as u64 + 60 >= crate::auth::unix_now(), "counted as committed now: {committed}");
    assert_eq!(store.load_ops(1, 0, 1).expect("reads").map(|o| o.len()), Some(1));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_write_ahead_log_is_checkpointed_by_maintenance_not_by_commits() {
    let (mut store, dir) = temp_store("checkpoint");
    // Only pages written since the last complete checkpoint are in the log: a checkpoint that copied them all
    // lets the next commit start the log over.
    let log_pages = |store: &SqliteStore| -> i64 {
        store.connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1)).expect("reads")
    };
    let autocheckpoint: i64 =
        store.connection.query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0)).expect("reads");
    assert_eq!(autocheckpoint, 0, "commits never checkpoint");
    let outcomes = store
        .commit(&[
            Write::CreateSession { session: "s".into(), host: "Ada".into(), created: 1 },
            Write::CreateDocument { session: "s".into(), path: "a.txt".into(), text: String::new() },
        ])
        .expect("commits");
    let Ok(Written::DocumentCreated(doc)) = outcomes[1] else { panic!("{outcomes:?}") };
    for revision in 1..CHECKPOINT_COMMITS as u64 {
        assert!(!store.maintenance_due(), "not due after {revision} commits");
        let op = StoredOp { revision, author: 1, seq: revision, op: insert(revision as usize - 1, 0, "x") };
        store.commit(&[Write::AppendOps { doc, ops: vec![op], committed: 1 }]).expect("commits");
    }
    assert!(store.maintenance_due());
    store.maintain().expect("checkpoints");
    assert!(!store.maintenance_due());
    let op = StoredOp { revision: 256, author: 1, seq: 256, op: insert(255, 0, "x") };
    store.commit(&[Write::AppendOps { doc, ops: vec![op], committed: 1 }]).expect("commits");
    assert!(log_pages(&store) < 10, "the log started over after the checkpoint");
    // A large snapshot makes it due at once.
    store.commit(&[Write::Snapshot { doc, revision: 255, text: "y".repeat(CHECKPOINT_BYTES) }]).expect("commits");
    assert!(store.maintenance_due());
    std::fs::remove_dir_all(dir).ok();
}
