//! The rules every [`Store`] keeps, as checks each implementation's tests run against a real database.

use codecollab_protocol::TextOperation;

use codecollab_protocol::wire::DocId;

use super::{DocumentRecord, Store, StoreError, StoredOp, Write, Written};

/// An insertion of `text` at `at` into a text of `len` characters.
pub fn insert(len: usize, at: usize, text: &str) -> TextOperation {
    TextOperation::replace(len, at, at, text).expect("in bounds")
}

/// Session `s` with one empty document, `a.txt`, created through `store`; returns the document.
pub fn one_document(store: &mut dyn Store) -> DocId {
    let outcomes = store
        .commit(&[
            Write::CreateSession { session: "s".into(), host: "Ada".into(), created: 1 },
            Write::CreateDocument { session: "s".into(), path: "a.txt".into(), text: String::new() },
        ])
        .expect("commits");
    match outcomes[1] {
        Ok(Written::DocumentCreated(doc)) => doc,
        ref other => panic!("{other:?}"),
    }
}

/// Revisions are taken once, a refused write does not undo the rest of its batch, and documents reload with
/// their snapshot, operations and each client's last sequence number, compacted or not.
pub fn revisions_are_taken_once_and_documents_reload(store: &mut dyn Store) {
    let outcomes = store
        .commit(&[
            Write::CreateSession { session: "s".into(), host: "Ada".into(), created: 1 },
            Write::CreateDocument { session: "s".into(), path: "a.txt".into(), text: "hi".into() },
            Write::CreateDocument { session: "s".into(), path: "a.txt".into(), text: "again".into() },
        ])
        .expect("commits");
    let Ok(Written::DocumentCreated(doc)) = outcomes[1] else { panic!("{outcomes:?}") };
    store.claim(doc).expect("this node sequences it");
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
}

/// Compaction keeps the retention window (by count and by age) and never what the newest snapshot lacks.
pub fn compaction_keeps_the_retention_window_and_what_the_newest_snapshot_lacks(store: &mut dyn Store) {
    let doc = one_document(store);
    store.claim(doc).expect("this node sequences it");
    // Revisions 1..=10 committed at times 100..=109, by two clients.
    for revision in 1..=10_u64 {
        let op = StoredOp { revision, author: revision % 2, seq: revision, op: insert(revision as usize - 1, 0, "x") };
        store.commit(&[Write::AppendOps { doc, ops: vec![op], committed: 99 + revision }]).expect("commits");
    }
    let ops_after = |store: &mut dyn Store, after| store.load_ops(doc, after, 10).expect("reads").map(|o| o.len());
    assert_eq!(ops_after(store, 0), Some(10));
    assert_eq!(ops_after(store, 7), Some(3));
    assert_eq!(store.load_ops(doc, 10, 10).expect("reads").map(|o| o.len()), Some(0), "nothing missed");
    // A snapshot at 8. Retention by count says keep after 3, by age keep what was committed from 105 (rev 6).
    store.commit(&[Write::Snapshot { doc, revision: 8, text: "x".repeat(8) }]).expect("commits");
    store.commit(&[Write::Compact { doc, beyond_count: 3, older_than: 105 }]).expect("commits");
    assert_eq!(ops_after(store, 5), Some(5), "revisions 6 to 10 are kept");
    assert_eq!(ops_after(store, 4), None, "revision 5 is gone: a resuming client gets a snapshot");
    // Retention would let everything go, but the ops after the newest snapshot stay.
    store.commit(&[Write::Compact { doc, beyond_count: 10, older_than: 1_000 }]).expect("commits");
    assert_eq!(ops_after(store, 8), Some(2));
    assert_eq!(ops_after(store, 7), None);
    let loaded = store.load_document(doc).expect("loads");
    assert_eq!((loaded.snapshot_revision, loaded.ops.len()), (8, 2));
    assert!(
        loaded.client_seqs.contains(&(0, 10, 10)) && loaded.client_seqs.contains(&(1, 9, 9)),
        "{:?}",
        loaded.client_seqs
    );
}

/// Renames and deletions keep one live document per path, removed peers are listed, and an append whose later
/// operation finds its revision taken leaves none of its operations behind.
pub fn paths_stay_unique_and_a_refused_append_leaves_nothing(store: &mut dyn Store) {
    let created = |outcome: &Result<Written, StoreError>| match outcome {
        Ok(Written::DocumentCreated(doc)) => *doc,
        other => panic!("{other:?}"),
    };
    let outcomes = store
        .commit(&[
            Write::CreateSession { session: "t".into(), host: "Ada".into(), created: 1 },
            Write::CreateDocument { session: "t".into(), path: "a.txt".into(), text: String::new() },
            Write::CreateDocument { session: "t".into(), path: "b.txt".into(), text: String::new() },
            Write::RemovePeer { session: "t".into(), name: "mallory".into() },
            Write::RemovePeer { session: "t".into(), name: "mallory".into() },
        ])
        .expect("commits");
    let (a, b) = (created(&outcomes[1]), created(&outcomes[2]));
    assert!(outcomes[3..].iter().all(Result::is_ok), "removing twice is fine: {outcomes:?}");
    let outcomes = store
        .commit(&[
            Write::RenameDocument { doc: a, path: "b.txt".into() },
            Write::RenameDocument { doc: 999_999, path: "c.txt".into() },
            Write::DeleteDocument { doc: b },
            Write::RenameDocument { doc: a, path: "b.txt".into() },
            Write::CreateDocument { session: "t".into(), path: "a.txt".into(), text: "new a".into() },
        ])
        .expect("commits");
    assert_eq!(outcomes[0], Err(StoreError::PathTaken("b.txt".into())));
    assert_eq!(outcomes[1], Err(StoreError::UnknownDocument(999_999)));
    assert_eq!(outcomes[3], Ok(Written::Done), "free once b.txt is deleted");
    let new_a = created(&outcomes[4]);
    store.claim(a).expect("this node sequences it");
    store.claim(new_a).expect("this node sequences it");
    let session = store.load_session("t").expect("reads").expect("exists");
    assert_eq!(session.removed, vec!["mallory".to_owned()]);
    assert_eq!(
        session.documents,
        vec![DocumentRecord { doc: a, path: "b.txt".into() }, DocumentRecord { doc: new_a, path: "a.txt".into() }]
    );
    assert!(matches!(store.load_document(b), Err(StoreError::UnknownDocument(_))), "its snapshot is gone");

    // Revision 2 is taken by the first append; the second brings 1 (free) and 2 (taken): neither stays.
    let op = |revision: u64| StoredOp { revision, author: 3, seq: revision, op: insert(revision as usize - 1, 0, "x") };
    store.commit(&[Write::AppendOps { doc: a, ops: vec![op(1), op(2)], committed: 5 }]).expect("commits");
    let outcomes = store
        .commit(&[
            Write::AppendOps { doc: new_a, ops: vec![op(1)], committed: 5 },
            Write::AppendOps { doc: a, ops: vec![op(3), op(2)], committed: 5 },
            Write::AppendOps { doc: new_a, ops: vec![op(2)], committed: 5 },
        ])
        .expect("commits");
    assert_eq!(outcomes[1], Err(StoreError::RevisionTaken { doc: a, revision: 2 }));
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert_eq!(store.load_document(a).expect("loads").ops, vec![op(1), op(2)], "revision 3 did not stay");
    assert_eq!(store.load_ops(new_a, 0, 2).expect("reads"), Some(vec![op(1), op(2)]));
    assert_eq!(store.session_count().expect("counts"), 1);
}
