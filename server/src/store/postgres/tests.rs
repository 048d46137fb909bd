//! The PostgreSQL store against a real server (a scratch database per test): the rules every store keeps, the
//! schema's migrations, and reconnecting after the connection breaks.

use super::*;
use crate::store::conformance::{self, insert, one_document};
use crate::store::{Store, StoreError, StoredOp, Write, Written};

const LEASE: Duration = Duration::from_secs(5);

fn scratch(label: &str) -> (ScratchDatabase, PostgresStore) {
    let database = ScratchDatabase::create(label).expect("a scratch database");
    let store = PostgresStore::open(database.url(), "ws://node-a", LEASE).expect("opens");
    (database, store)
}

#[test]
fn revisions_are_taken_once_and_documents_reload() {
    let (_database, mut store) = scratch("revisions");
    conformance::revisions_are_taken_once_and_documents_reload(&mut store);
}

#[test]
fn compaction_keeps_the_retention_window_and_what_the_newest_snapshot_lacks() {
    let (_database, mut store) = scratch("retention");
    conformance::compaction_keeps_the_retention_window_and_what_the_newest_snapshot_lacks(&mut store);
}

#[test]
fn paths_stay_unique_and_a_refused_append_leaves_nothing() {
    let (_database, mut store) = scratch("paths");
    conformance::paths_stay_unique_and_a_refused_append_leaves_nothing(&mut store);
}

#[test]
fn migrations_run_once_even_when_nodes_start_together() {
    let database = ScratchDatabase::create("migrations").expect("a scratch database");
    let url = database.url().to_owned();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn({
                let url = url.clone();
                move || PostgresStore::open(&url, "ws://node-a", LEASE).map(|_| ())
            })
        })
        .collect();
    for start in starts {
        start.join().expect("joins").expect("every node opens the store");
    }
    let mut store = PostgresStore::open(&url, "ws://node-a", LEASE).expect("opens again");
    let version: i32 = store
        .with(|client| client.query_one("SELECT version FROM codecollab_schema", &[]).map_err(backend))
        .expect("reads")
        .get(0);
    assert_eq!(version as usize, MIGRATIONS.len());
    assert_eq!(store.session_count().expect("counts"), 0);
}

#[test]
fn a_broken_connection_fails_at_most_one_call_and_the_next_connects_again() {
    let (database, mut store) = scratch("reconnect");
    store.commit(&[Write::CreateSession { session: "s".into(), host: "Ada".into(), created: 1 }]).expect("commits");
    // The database server ends this store's connection, as a restart or a failover of PostgreSQL would.
    let mut admin = Client::connect(&ScratchDatabase::admin_url(), NoTls).expect("admin");
    let ended: bool = admin
        .query_one(
            "SELECT bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            &[&database.name()],
        )
        .expect("terminates")
        .get(0);
    assert!(ended);
    // The first call fails, unless the store noticed the end of its connection before making it.
    let first = store.session_count();
    assert!(matches!(first, Err(StoreError::Backend(_)) | Ok(1)), "{first:?}");
    assert_eq!(store.session_count().expect("connected again"), 1);
    assert!(store.load_session("s").expect("reads").is_some());
}

fn append(doc: DocId, revision: u64, author: u64) -> Write {
    let op = insert(revision as usize - 1, 0, "x");
    Write::AppendOps { doc, ops: vec![StoredOp { revision, author, seq: revision, op }], committed: 1 }
}

/// Tries to take `doc` for `store` until it may (the holder's lease ran out), for at most thirty seconds.
fn take_over(store: &mut PostgresStore, doc: DocId) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.claim(doc) {
            Ok(_) => return,
            Err(StoreError::NotOwner(_)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_node_paused_past_its_lease_can_never_commit_again() {
    let database = ScratchDatabase::create("fencing").expect("a scratch database");
    // Long enough that no stall of a loaded machine lets it run out before the test means it to.
    let short = Duration::from_secs(3);
    let mut a = PostgresStore::open(database.url(), "ws://node-a", short).expect("opens");
    let mut b = PostgresStore::open(database.url(), "ws://node-b", short).expect("opens");
    let doc = one_document(&mut a);
    a.claim(doc).expect("free: a takes it");
    assert!(matches!(b.claim(doc), Err(StoreError::NotOwner(_))), "a holds it");
    assert_eq!(a.commit(&[append(doc, 1, 1)]).expect("commits")[0], Ok(Written::Done));
    assert!(
        matches!(b.commit(&[append(doc, 2, 2)]).expect("commits")[0], Err(StoreError::NotOwner(_))),
        "b never took it"
    );

    // a stops renewing (a pause, a freeze, a cut network); once its lease has run out, b takes over and commits.
    take_over(&mut b, doc);
    assert_eq!(b.load_document(doc).expect("loads").ops.len(), 1, "b sees what a committed");
    assert_eq!(b.commit(&[append(doc, 2, 2)]).expect("commits")[0], Ok(Written::Done));

    // a wakes up and commits what it was about to: refused, whichever revision, and the document is reported lost.
    for revision in [2, 3] {
        let outcome = &a
            .commit(&[append(doc, revision, 1), Write::Snapshot { doc, revision, text: "x".into() }])
            .expect("commits");
        assert!(outcome.iter().all(|o| matches!(o, Err(StoreError::NotOwner(_)))), "{outcome:?}");
    }
    assert_eq!(a.take_lost(), vec![Lost::Document(doc)]);
    assert_eq!(a.take_lost(), Vec::<Lost>::new(), "reported once");
    let stored = b.load_document(doc).expect("loads");
    assert_eq!(stored.ops.iter().map(|o| o.author).collect::<Vec<_>>(), vec![1, 2], "only what each owner committed");
    assert_eq!(stored.snapshot_revision, 0, "a's snapshot did not land either");
}

#[test]
fn leases_are_renewed_while_held_and_a_takeover_is_found_at_renewal() {
    let database = ScratchDatabase::create("renewal").expect("a scratch database");
    let short = Duration::from_secs(2);
    let mut a = PostgresStore::open(database.url(), "ws://node-a", short).expect("opens");
    let mut b = PostgresStore::open(database.url(), "ws://node-b", short).expect("opens");
    let doc = one_document(&mut a);
    a.claim(doc).expect("takes it");
    assert_eq!(a.housekeeping_every(), Some(short / 3));
    // a renews as its housekeeping comes due, over two lease lengths: b can never take the document.
    let until = Instant::now() + short * 2;
    while Instant::now() < until {
        if a.maintenance_due() {
            a.maintain().expect("renews");
        }
        assert!(matches!(b.claim(doc), Err(StoreError::NotOwner(_))), "renewed, so still a's");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(a.take_lost().is_empty());
    // a stops renewing; b takes over; a's next renewal finds out.
    take_over(&mut b, doc);
    a.maintain().expect("renews what it still holds");
    assert_eq!(a.take_lost(), vec![Lost::Document(doc)]);
    assert!(!a.maintenance_due(), "nothing left to renew");
}

#[test]
fn a_released_document_and_a_restarted_nodes_documents_are_free_at_once() {
    let database = ScratchDatabase::create("release").expect("a scratch database");
    let long = Duration::from_secs(60);
    let mut a = PostgresStore::open(database.url(), "ws://node-a", long).expect("opens");
    let mut b = PostgresStore::open(database.url(), "ws://node-b", long).expect("opens");
    let doc = one_document(&mut a);
    a.claim(doc).expect("takes it");
    a.release(doc).expect("releases");
    b.claim(doc).expect("released: b takes it at once, long lease or not");
    assert!(matches!(a.claim(doc), Err(StoreError::NotOwner(_))));
    assert_eq!(b.commit(&[append(doc, 1, 2)]).expect("commits")[0], Ok(Written::Done));

    // b's process ends without releasing (a crash); it starts again under the same name, and b's old hold is
    // dropped: a may take the document at once, with a higher epoch than any b had.
    drop(b);
    let _b_again = PostgresStore::open(database.url(), "ws://node-b", long).expect("opens");
    a.claim(doc).expect("b's old lease expired at its restart");
    assert_eq!(a.commit(&[append(doc, 2, 1)]).expect("commits")[0], Ok(Written::Done));
    let epochs: i64 = a
        .with(|client| client.query_one("SELECT epoch FROM leases WHERE doc = $1", &[&to_sql(doc)]).map_err(backend))
        .expect("reads")
        .get(0);
    assert_eq!(epochs, 3, "a, then b, then a again: each took a new epoch");
}
