//! A seeded simulation of undo and redo amid others' edits: clients type tokens, delete them, undo and redo their
//! own steps at random, with messages delivered in random order across connections (in order within one). Every
//! copy converges and no token is torn; then one client undoes all its steps while the others type, and exactly its
//! own tokens leave (everyone else's stay); then it redoes them all, and its tokens are back.

use std::collections::{BTreeSet, HashMap, VecDeque};

use codecollab_protocol::{Client, Document, DocumentLimits, Received, Revision, TextOperation, UndoHistory};
use ropey::Rope;

use crate::support::for_each_seed;
use crate::support::random::Rng;
use crate::support::tokens;

enum Down {
    Ack { seq: u64, revision: Revision },
    Op { revision: Revision, op: TextOperation },
}

struct Peer {
    ot: Client,
    text: Rope,
    history: UndoHistory,
    author: char,
    typed: u64,
    up: VecDeque<(u64, Revision, TextOperation)>,
    down: VecDeque<Down>,
}

struct Sim {
    rng: Rng,
    server: Document,
    peers: Vec<Peer>,
    /// Who deleted each token (by typing, undoing or redoing), to allow the one known duplicate: when two peers
    /// delete the same token at the same moment and both take their deletion back, it comes back twice (each sees
    /// its deletion as the one that happened; the server kept only one).
    deleters: HashMap<String, BTreeSet<usize>>,
}

impl Sim {
    fn new(seed: u64, peers: usize) -> Sim {
        let peers = (0..peers)
            .map(|i| Peer {
                ot: Client::new(0, 1),
                text: Rope::new(),
                history: UndoHistory::new(10_000),
                author: (b'a' + i as u8) as char,
                typed: 0,
                up: VecDeque::new(),
                down: VecDeque::new(),
            })
            .collect();
        let server = Document::new("", 0, DocumentLimits::default());
        Sim { rng: Rng::new(seed), server, peers, deleters: HashMap::new() }
    }

    /// Applies `op` to peer `p`'s text as its own edit (recorded in its history unless it is an undo or redo).
    fn local(&mut self, p: usize, op: TextOperation, record: bool) {
        let peer = &mut self.peers[p];
        if record {
            peer.history.record(&op, &peer.text).expect("records");
        }
        let before = tokens::parse(&peer.text.to_string()).expect("whole tokens");
        op.apply_to(&mut peer.text).expect("applies locally");
        let after: BTreeSet<String> =
            tokens::parse(&peer.text.to_string()).expect("whole tokens").into_iter().collect();
        for token in before.into_iter().filter(|t| !after.contains(t)) {
            self.deleters.entry(token).or_default().insert(p);
        }
        if let Some(out) = peer.ot.apply_local(op).expect("client state") {
            peer.up.push_back((out.seq, out.base_revision, out.op));
        }
    }

    /// Peer `p` types: inserts a token (or, with `delete`, may delete one), as a step of its own.
    fn type_token(&mut self, p: usize, delete: f64) -> tokens::TokenEdit {
        let peer = &mut self.peers[p];
        let (op, edit) =
            tokens::random_edit(&mut self.rng, &peer.text.to_string(), peer.author, &mut peer.typed, delete);
        self.local(p, op, true);
        if self.rng.chance(0.7) {
            self.peers[p].history.close_step();
        }
        edit
    }

    /// Peer `p` undoes (or redoes) its most recent step; false if there was none.
    fn undo(&mut self, p: usize, redo: bool) -> bool {
        let peer = &mut self.peers[p];
        let step = if redo { peer.history.redo(&peer.text) } else { peer.history.undo(&peer.text) };
        match step.expect("undo") {
            Some(op) => {
                self.local(p, op, false);
                true
            }
            None => false,
        }
    }

    /// Delivers one message somewhere; false if none was in flight.
    fn deliver_one(&mut self) -> bool {
        let mut queues: Vec<(usize, bool)> = Vec::new();
        for (i, peer) in self.peers.iter().enumerate() {
            if !peer.up.is_empty() {
                queues.push((i, true));
            }
            if !peer.down.is_empty() {
                queues.push((i, false));
            }
        }
        if queues.is_empty() {
            return false;
        }
        let (p, up) = *self.rng.pick(&queues);
        if up {
            let (seq, base, op) = self.peers[p].up.pop_front().expect("queued");
            match self.server.receive(p as u64 + 1, seq, base, &op).expect("valid ops are accepted") {
                Received::Applied { revision, op } => {
                    for (i, peer) in self.peers.iter_mut().enumerate() {
                        peer.down.push_back(if i == p {
                            Down::Ack { seq, revision }
                        } else {
                            Down::Op { revision, op: op.clone() }
                        });
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        } else {
            let peer = &mut self.peers[p];
            match peer.down.pop_front().expect("queued") {
                Down::Ack { seq, revision } => {
                    if let Some(out) = peer.ot.server_ack(seq, revision).expect("ack").send {
                        peer.up.push_back((out.seq, out.base_revision, out.op));
                    }
                }
                Down::Op { revision, op } => {
                    let apply = peer.ot.apply_server(revision, op).expect("in order");
                    peer.history.transform(&apply).expect("moves past");
                    apply.apply_to(&mut peer.text).expect("applies");
                }
            }
        }
        true
    }

    /// Between two of `a`'s undos (or redos): perhaps `b` or `c` inserts a token (returned), and a few messages go.
    fn others_type_meanwhile(&mut self) -> Option<tokens::TokenEdit> {
        let typed = self.rng.chance(0.5).then(|| {
            let p = 1 + self.rng.below(2);
            self.type_token(p, 0.0)
        });
        for _ in 0..self.rng.below(4) {
            self.deliver_one();
        }
        typed
    }

    fn settle(&mut self) {
        while self.deliver_one() {}
    }

    fn tokens(&self) -> Vec<String> {
        let text = self.server.text().to_string();
        tokens::parse(&text).unwrap_or_else(|| panic!("a token was torn: {text:?}"))
    }

    /// Whether two peers deleted `token` (see `deleters`).
    fn contested(&self, token: &str) -> bool {
        self.deleters.get(token).is_some_and(|d| d.len() > 1)
    }

    fn assert_converged(&self) {
        let server = self.server.text().to_string();
        for peer in &self.peers {
            assert_eq!(peer.text.to_string(), server, "{} diverged", peer.author);
        }
        let tokens = self.tokens();
        let mut seen = BTreeSet::new();
        for token in &tokens {
            assert!(seen.insert(token) || self.contested(token), "{token} twice: {tokens:?}");
        }
    }
}

fn by(author: char) -> impl Fn(&&String) -> bool {
    move |t: &&String| t.starts_with(&format!("<{author}"))
}

#[test]
fn undo_and_redo_amid_others_edits_converge_and_touch_only_ones_own_edits() {
    for_each_seed("undo simulation", 0..60, |seed| {
        let mut sim = Sim::new(seed, 3);
        // a's tokens that someone else deleted: a step that became empty stays empty, even if the text comes back
        // (by the deleter's undo), so undoing all of a's steps may leave such a token.
        let mut deleted_by_others = BTreeSet::new();
        // Everyone types, deletes, undoes and redoes at random, messages crossing.
        for _ in 0..300 {
            let p = sim.rng.below(3);
            match sim.rng.below(10) {
                0..=4 => {
                    if let tokens::TokenEdit::Deleted(token) = sim.type_token(p, 0.25) {
                        if p != 0 {
                            deleted_by_others.insert(token);
                        }
                    }
                }
                5 | 6 => drop(sim.undo(p, false)),
                7 => drop(sim.undo(p, true)),
                _ => {
                    for _ in 0..sim.rng.below(6) {
                        sim.deliver_one();
                    }
                }
            }
        }
        sim.settle();
        sim.assert_converged();

        // `a` undoes every step it has while the others type (inserting only): its tokens leave, and only its.
        let before = sim.tokens();
        let mut typed_since = Vec::new();
        let mut undone_steps = 0;
        while sim.undo(0, false) {
            undone_steps += 1;
            typed_since.extend(sim.others_type_meanwhile());
        }
        sim.settle();
        sim.assert_converged();
        let undone = sim.tokens();
        let left: Vec<&String> = undone.iter().filter(by('a')).filter(|t| !deleted_by_others.contains(*t)).collect();
        assert!(left.is_empty(), "seed {seed}: a's tokens are all undone, but {left:?} are left");
        for token in before.iter().filter(|t| !by('a')(t) && !sim.contested(t)) {
            assert!(undone.contains(token), "seed {seed}: {token} (not a's) was there and stays");
        }

        // And redoes them all (steps undone before are redone after them, and not here): its tokens that were there
        // are back, and the others' typing stays.
        for _ in 0..undone_steps {
            assert!(sim.undo(0, true), "seed {seed}: every step undone can be redone");
            typed_since.extend(sim.others_type_meanwhile());
        }
        sim.settle();
        sim.assert_converged();
        let redone = sim.tokens();
        for token in before.iter().filter(by('a')).filter(|t| !sim.contested(t)) {
            assert!(redone.contains(token), "seed {seed}: a's {token} is back");
        }
        // a's redo deletes again only what a had deleted (gone before the undo started), never what was there or
        // was typed since.
        for token in before.iter().filter(|t| !by('a')(t) && !sim.contested(t)) {
            assert!(redone.contains(token), "seed {seed}: {token} stays");
        }
        for edit in typed_since {
            let tokens::TokenEdit::Inserted(token) = edit else { panic!("the others only insert") };
            assert!(redone.contains(&token), "seed {seed}: {token}, typed meanwhile, stays");
        }
    });
}
