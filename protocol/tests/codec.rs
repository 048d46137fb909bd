//! The wire codec: every message round-trips; random, truncated and mutated frames never panic the decoder.

use codecollab_protocol::wire::{ClientMsg, DocInfo, ErrorCode, Limits, PeerInfo, Role, ServerMsg, UnsharedFile};
use codecollab_protocol::{DecodeError, Selection, TextOperation};

use crate::support::for_each_seed;
use crate::support::random::{self, Rng};

const LIMIT: usize = 1 << 20;

fn sample_op() -> TextOperation {
    let mut op = TextOperation::new();
    op.retain(3).insert("日本語 😀 👩\u{200d}💻").delete(2).retain(1);
    op
}

fn client_messages() -> Vec<ClientMsg> {
    vec![
        ClientMsg::CreateSession { name: "Ada".into() },
        ClientMsg::Join { client_id: u64::MAX, name: None },
        ClientMsg::Join { client_id: 1, name: Some("Zoë 👩\u{200d}💻".into()) },
        ClientMsg::Create { path: "src/main.rs".into(), text: "fn main() {}\r\n".into() },
        ClientMsg::Subscribe { doc: 3, since: None },
        ClientMsg::Subscribe { doc: 3, since: Some(17) },
        ClientMsg::Unsubscribe { doc: 3 },
        ClientMsg::Op { doc: 1, seq: 9, base_revision: 4, op: sample_op() },
        ClientMsg::Cursor {
            doc: 1,
            revision: 4,
            selections: vec![Selection::caret(2), Selection { anchor: 5, head: 1 }],
        },
        ClientMsg::Delete { doc: 2 },
        ClientMsg::Rename { doc: 2, path: "b/c.txt".into() },
        ClientMsg::RemovePeer { name: "Eve".into() },
        ClientMsg::Unshared {
            files: vec![UnsharedFile { path: "big.log".into(), reason: "larger than 4 MiB".into() }],
        },
    ]
}

fn server_messages() -> Vec<ServerMsg> {
    let peer = PeerInfo { peer: 4, name: "Grace".into(), role: Role::View, color: "#aa3355".into() };
    let doc = DocInfo { doc: 1, path: "README.md".into() };
    vec![
        ServerMsg::SessionCreated {
            session: "s1".into(),
            url: Some("wss://collab.example:7830".into()),
            host_token: "h".into(),
            edit_token: "e".into(),
            view_token: "v".into(),
        },
        ServerMsg::Welcome {
            session: "s1".into(),
            peer: 1,
            name: "Ada".into(),
            role: Role::Edit,
            host: true,
            token: "t".into(),
            peers: vec![peer.clone()],
            docs: vec![doc.clone()],
            limits: Some(Limits { max_frame_bytes: 16 << 20, max_document_chars: 1 << 24, heartbeat_ms: 15_000 }),
            unshared: vec![UnsharedFile { path: "logo.png".into(), reason: "binary".into() }],
        },
        ServerMsg::Snapshot { doc: 1, path: "README.md".into(), revision: 12, text: "é\n".into(), last_seq: Some(3) },
        ServerMsg::Subscribed { doc: 1, revision: 12 },
        ServerMsg::Ack { doc: 1, seq: 3, revision: 13 },
        ServerMsg::Op { doc: 1, revision: 14, peer: 4, op: sample_op() },
        ServerMsg::Presence { doc: 1, peer: 4, revision: 14, selections: vec![Selection::caret(0)] },
        ServerMsg::Created { doc, peer: Some(3) },
        ServerMsg::Deleted { doc: 1 },
        ServerMsg::Renamed { doc: 1, path: "docs/README.md".into() },
        ServerMsg::PeerJoined { peer },
        ServerMsg::PeerLeft { peer: 4 },
        ServerMsg::PeerRemoved { name: "Bo".into() },
        ServerMsg::Unshared {
            files: vec![UnsharedFile { path: "big.log".into(), reason: "larger than 4 MiB".into() }],
        },
        ServerMsg::Error { code: ErrorCode::ResyncNeeded, message: "reload".into(), doc: Some(1) },
    ]
}

#[test]
fn every_message_round_trips() {
    for msg in client_messages() {
        let frame = msg.encode().expect("encodes");
        assert_eq!(ClientMsg::decode(&frame, LIMIT), Ok(msg));
    }
    for msg in server_messages() {
        let frame = msg.encode().expect("encodes");
        assert_eq!(ServerMsg::decode(&frame, LIMIT), Ok(msg));
    }
}

#[test]
fn random_operations_round_trip() {
    for_each_seed("random_operations_round_trip", 0..500, |seed| {
        let mut rng = Rng::new(seed);
        let len = rng.below(40);
        let op = random::operation(&mut rng, len);
        let msg = ClientMsg::Op { doc: 1, seq: 1, base_revision: 0, op };
        assert_eq!(ClientMsg::decode(&msg.encode().expect("encodes"), LIMIT), Ok(msg));
    });
}

#[test]
fn truncated_frames_are_errors() {
    for msg in client_messages() {
        let frame = msg.encode().expect("encodes");
        for cut in 0..frame.len() {
            assert!(ClientMsg::decode(&frame[..cut], LIMIT).is_err(), "{msg:?} cut at {cut}");
        }
    }
    for msg in server_messages() {
        let frame = msg.encode().expect("encodes");
        for cut in 0..frame.len() {
            assert!(ServerMsg::decode(&frame[..cut], LIMIT).is_err(), "{msg:?} cut at {cut}");
        }
    }
}

#[test]
fn random_and_mutated_frames_never_panic() {
    let valid: Vec<Vec<u8>> = client_messages().iter().map(|m| m.encode().expect("encodes")).collect();
    for_each_seed("random_and_mutated_frames_never_panic", 0..20_000, |seed| {
        let mut rng = Rng::new(seed);
        let frame: Vec<u8> = if rng.chance(0.5) {
            (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect()
        } else {
            let mut frame = rng.pick(&valid).clone();
            for _ in 0..rng.between(1, 4) {
                let at = rng.below(frame.len());
                frame[at] = rng.next_u64() as u8;
            }
            frame
        };
        // Either outcome is fine; a decoded operation must still be well formed.
        if let Ok(ClientMsg::Op { op, .. }) = ClientMsg::decode(&frame, LIMIT) {
            assert!(random::is_normal(&op));
        }
        let _ = ServerMsg::decode(&frame, LIMIT);
    });
}

#[test]
fn hostile_operations_are_rejected() {
    let encode_op = |components: &[rmpv_like::Raw]| {
        let mut frame = Vec::new();
        rmp::encode::write_array_len(&mut frame, 2).expect("vec");
        rmp::encode::write_uint(&mut frame, 1).expect("vec");
        rmp::encode::write_map_len(&mut frame, 5).expect("vec");
        for (key, value) in [("type", None), ("doc", Some(1u64)), ("seq", Some(1)), ("base_revision", Some(0))] {
            rmp::encode::write_str(&mut frame, key).expect("vec");
            match value {
                None => rmp::encode::write_str(&mut frame, "op").expect("vec"),
                Some(v) => rmp::encode::write_uint(&mut frame, v).map(|_| ()).expect("vec"),
            }
        }
        rmp::encode::write_str(&mut frame, "op").expect("vec");
        rmp::encode::write_array_len(&mut frame, components.len() as u32).expect("vec");
        for component in components {
            match component {
                rmpv_like::Raw::Int(n) => rmp::encode::write_sint(&mut frame, *n).map(|_| ()).expect("vec"),
                rmpv_like::Raw::Text(s) => rmp::encode::write_str(&mut frame, s).expect("vec"),
                rmpv_like::Raw::Bool => rmp::encode::write_bool(&mut frame, true).expect("vec"),
            }
        }
        frame
    };
    use rmpv_like::Raw::{Bool, Int, Text};
    // A well-formed one decodes, denormalized input is normalized.
    let fine = ClientMsg::decode(&encode_op(&[Int(2), Text("a"), Text("b"), Int(-1), Int(1)]), LIMIT);
    let mut expected = TextOperation::new();
    expected.retain(2).insert("ab").delete(1).retain(1);
    assert_eq!(fine, Ok(ClientMsg::Op { doc: 1, seq: 1, base_revision: 0, op: expected }));
    for hostile in [
        vec![Int(0)],
        vec![Text("")],
        vec![Bool],
        vec![Int(i64::MAX), Int(i64::MAX), Int(i64::MAX)],
        vec![Int(i64::MIN)],
    ] {
        let result = ClientMsg::decode(&encode_op(&hostile), LIMIT);
        assert!(matches!(result, Err(DecodeError::Malformed(_))), "{hostile:?} gave {result:?}");
    }
}

/// The shapes a hostile peer might put in an operation's component list.
mod rmpv_like {
    #[derive(Debug)]
    pub enum Raw {
        Int(i64),
        Text(&'static str),
        Bool,
    }
}

#[test]
fn a_welcome_without_limits_or_unshared_from_an_older_server_decodes() {
    // The fields of `welcome` before `limits` and `unshared` were added, as such a server encodes them.
    #[derive(serde::Serialize)]
    struct OldWelcome<'a> {
        r#type: &'a str,
        session: &'a str,
        peer: u64,
        name: &'a str,
        role: Role,
        host: bool,
        token: &'a str,
        peers: Vec<PeerInfo>,
        docs: Vec<DocInfo>,
    }
    let old = OldWelcome {
        r#type: "welcome",
        session: "s",
        peer: 2,
        name: "Ada",
        role: Role::Edit,
        host: false,
        token: "t",
        peers: Vec::new(),
        docs: Vec::new(),
    };
    let frame = rmp_serde::to_vec_named(&(1u32, old)).expect("encodes");
    match ServerMsg::decode(&frame, 1 << 20) {
        Ok(ServerMsg::Welcome { limits, peer, unshared, .. }) => {
            assert_eq!((limits, peer), (None, 2));
            assert!(unshared.is_empty());
        }
        other => panic!("{other:?}"),
    }
}
