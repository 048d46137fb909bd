//! The SQLite store against real database files: the rules every store keeps (`conformance`), migrating an older
//! database, and checkpointing.

use super::*;
use crate::store::conformance::{self, insert, one_document};

fn temp_store(name: &str) -> (SqliteStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("codecollab-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (SqliteStore::open(&dir, Durability::Process).expect("opens"), dir)
}

#[test]
fn revisions_are_taken_once_and_documents_reload() {
    let (mut store, dir) = temp_store("revisions");
    conformance::revisions_are_taken_once_and_documents_reload(&mut store);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn compaction_keeps_the_retention_window_and_what_the_newest_snapshot_lacks() {
    let (mut store, dir) = temp_store("retention");
    conformance::compaction_keeps_the_retention_window_and_what_the_newest_snapshot_lacks(&mut store);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn paths_stay_unique_and_a_refused_append_leaves_nothing() {
    let (mut store, dir) = temp_store("paths");
    conformance::paths_stay_unique_and_a_refused_append_leaves_nothing(&mut store);
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
    let doc = one_document(&mut store);
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
