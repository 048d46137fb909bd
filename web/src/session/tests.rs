//! Unit tests of the browser session: positions in UTF-16, and each server message's effect.

use super::*;
use codecollab_protocol::wire::Limits;

fn rope(text: &str) -> Rope {
    Rope::from_str(text)
}

fn change(from: usize, to: usize, insert: &str) -> Change {
    Change { from, to, insert: insert.into() }
}

#[test]
fn utf16_changes_become_char_operations_and_back() {
    // é (1 unit), 中 (1 unit), 😀 (2 units), 👩‍💻 (5 units: a ZWJ sequence of two astral chars).
    let text = rope("é中😀👩‍💻z");
    assert_eq!(text.len_utf16_cu(), 1 + 1 + 2 + 5 + 1);
    // Replace the emoji (units 2..4) and insert after the ZWJ sequence (unit 9).
    let op = operation(&text, &[change(2, 4, "x"), change(9, 9, "🎉")]).expect("fits");
    assert_eq!(op.apply(&text.to_string()).expect("applies"), "é中x👩‍💻🎉z");
    assert_eq!(changes_of(&text, &op), vec![change(2, 4, "x"), change(9, 9, "🎉")]);
}

#[test]
fn changes_outside_the_text_or_overlapping_are_refused() {
    let text = rope("abc");
    assert!(operation(&text, &[change(2, 5, "")]).is_err());
    assert!(operation(&text, &[change(0, 2, ""), change(1, 3, "")]).is_err());
    assert!(operation(&text, &[change(2, 1, "")]).is_err());
}

/// The server's welcome into a session holding document 1, `a.txt` (a server older than `limits` sends none).
fn welcome(role: Role, max_document_chars: Option<u64>) -> Vec<u8> {
    let limits = max_document_chars.map(|max_document_chars| Limits {
        max_frame_bytes: 1 << 20,
        max_document_chars,
        heartbeat_ms: 10_000,
    });
    let welcome = ServerMsg::Welcome {
        session: "s".into(),
        peer: 2,
        name: "bea".into(),
        role,
        host: false,
        token: "t".into(),
        peers: vec![],
        docs: vec![DocInfo { doc: 1, path: "a.txt".into() }],
        limits,
        unshared: vec![],
    };
    welcome.encode().expect("encodes")
}

/// A session that joined and loaded `text` as document 1 at revision 5.
fn loaded(text: &str, role: Role, max_document_chars: u64) -> Session {
    let mut session = Session::new(7, "bea");
    session.connected();
    session.receive(&welcome(role, Some(max_document_chars)));
    session.open(1);
    let snapshot = ServerMsg::Snapshot { doc: 1, path: "a.txt".into(), revision: 5, text: text.into(), last_seq: None };
    session.receive(&snapshot.encode().expect("encodes"));
    let events = session.take_events();
    assert!(matches!(events.last(), Some(Event::Loaded { text: t, .. }) if t == text), "{events:?}");
    drain(&mut session);
    session
}

fn drain(session: &mut Session) -> Vec<ClientMsg> {
    std::iter::from_fn(|| session.next_frame()).map(|f| ClientMsg::decode(&f, 1 << 20).expect("decodes")).collect()
}

#[test]
fn an_edit_is_sent_once_and_the_next_after_its_acknowledgement() {
    let mut session = loaded("héllo", Role::Edit, 1000);
    session.edit(1, &[change(5, 5, " 😀")]);
    session.edit(1, &[change(8, 8, "!")]);
    let sent = drain(&mut session);
    let [ClientMsg::Op { seq: 1, base_revision: 5, op, .. }] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(op.apply("héllo").expect("fits"), "héllo 😀");
    assert_eq!(session.take_events(), vec![Event::Synced { doc: 1, synced: false }]);
    session.receive(&ServerMsg::Ack { doc: 1, seq: 1, revision: 6 }.encode().expect("encodes"));
    let sent = drain(&mut session);
    let [ClientMsg::Op { seq: 2, base_revision: 6, op, .. }] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(op.apply("héllo 😀").expect("fits"), "héllo 😀!");
    session.receive(&ServerMsg::Ack { doc: 1, seq: 2, revision: 7 }.encode().expect("encodes"));
    assert_eq!(session.take_events(), vec![Event::Synced { doc: 1, synced: true }]);
    assert_eq!(session.text(1).as_deref(), Some("héllo 😀!"));
}

#[test]
fn a_peers_operation_arrives_transformed_past_ours_in_utf16_positions() {
    let mut session = loaded("😀ab", Role::Edit, 1000);
    session.edit(1, &[change(2, 2, "X")]); // after the emoji: "😀Xab"
    drain(&mut session);
    session.take_events();
    // A peer inserted "é" at the end of the server's text at revision 5 ("😀ab" → "😀abé").
    let mut op = TextOperation::new();
    op.retain(3).insert("é");
    session.receive(&ServerMsg::Op { doc: 1, revision: 6, peer: 9, op }.encode().expect("encodes"));
    assert_eq!(session.take_events(), vec![Event::Changes { doc: 1, changes: vec![change(5, 5, "é")] }]);
    assert_eq!(session.text(1).as_deref(), Some("😀Xabé"));
    // Our edit's acknowledgement comes at revision 7.
    session.receive(&ServerMsg::Ack { doc: 1, seq: 1, revision: 7 }.encode().expect("encodes"));
    assert!(session.all_synced());
}

#[test]
fn a_view_only_edit_and_one_over_the_limit_are_undone_in_the_editor() {
    let mut session = loaded("abc", Role::View, 1000);
    session.edit(1, &[change(1, 1, "zz")]);
    assert!(drain(&mut session).is_empty());
    let events = session.take_events();
    assert_eq!(events[0], Event::Changes { doc: 1, changes: vec![change(1, 3, "")] });
    assert!(matches!(&events[1], Event::Message { text, .. } if text.contains("view-only")));

    let mut session = loaded("abc", Role::Edit, 4);
    session.edit(1, &[change(3, 3, "de")]);
    assert!(drain(&mut session).is_empty());
    let events = session.take_events();
    assert_eq!(events[0], Event::Changes { doc: 1, changes: vec![change(3, 5, "")] });
    assert!(matches!(&events[1], Event::Message { text, .. } if text.contains("limit of 4")));
    assert_eq!(session.text(1).as_deref(), Some("abc"));
}

#[test]
fn an_operation_the_server_refuses_is_undone_and_what_followed_stays() {
    let mut session = loaded("abc", Role::Edit, 1000);
    session.edit(1, &[change(3, 3, "1")]);
    session.edit(1, &[change(0, 0, "2")]);
    drain(&mut session);
    let refusal = ServerMsg::Error { code: ErrorCode::DocumentTooLarge, message: "too large".into(), doc: Some(1) };
    session.receive(&refusal.encode().expect("encodes"));
    assert_eq!(session.text(1).as_deref(), Some("2abc"));
    let sent = drain(&mut session);
    let [ClientMsg::Op { seq: 2, op, .. }] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(op.apply("abc").expect("fits"), "2abc");
}

#[test]
fn a_reconnect_resumes_from_the_revision_and_resends_the_outstanding_operation_with_its_number() {
    let mut session = loaded("abc", Role::Edit, 1000);
    session.edit(1, &[change(3, 3, "d")]);
    drain(&mut session);
    session.disconnected();
    session.edit(1, &[change(4, 4, "e")]); // offline
    assert!(drain(&mut session).is_empty(), "nothing goes out before the welcome");
    session.connected();
    session.receive(&welcome(Role::Edit, None));
    let sent = drain(&mut session);
    assert!(
        matches!(
            sent.as_slice(),
            [ClientMsg::Join { client_id: 7, .. }, ClientMsg::Subscribe { doc: 1, since: Some(5) }]
        ),
        "{sent:?}"
    );
    session.receive(&ServerMsg::Subscribed { doc: 1, revision: 5 }.encode().expect("encodes"));
    let sent = drain(&mut session);
    let [ClientMsg::Op { seq: 1, base_revision: 5, op, .. }] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(op.apply("abc").expect("fits"), "abcd");
    session.receive(&ServerMsg::Ack { doc: 1, seq: 1, revision: 6 }.encode().expect("encodes"));
    let sent = drain(&mut session);
    let [ClientMsg::Op { seq: 2, op, .. }] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(op.apply("abcd").expect("fits"), "abcde");
}

#[test]
fn a_snapshot_after_a_long_absence_is_merged_with_what_was_typed_offline() {
    let mut session = loaded("one\n", Role::Edit, 1000);
    session.disconnected();
    session.edit(1, &[change(4, 4, "mine\n")]);
    session.take_events();
    session.connected();
    session.receive(&welcome(Role::Edit, None));
    drain(&mut session);
    // The server's history no longer reaches back: a snapshot with a peer's line.
    let snapshot =
        ServerMsg::Snapshot { doc: 1, path: "a.txt".into(), revision: 40, text: "zero\none\n".into(), last_seq: None };
    session.receive(&snapshot.encode().expect("encodes"));
    assert_eq!(session.text(1).as_deref(), Some("zero\none\nmine\n"));
    let events = session.take_events();
    assert!(events.contains(&Event::Changes { doc: 1, changes: vec![change(0, 0, "zero\n")] }), "{events:?}");
    let sent = drain(&mut session);
    let [ClientMsg::Op { base_revision: 40, op, .. }] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(op.apply("zero\none\n").expect("fits"), "zero\none\nmine\n");
}
