//! A deterministic simulation in the style of ot.js's client/server test: one server document, several clients,
//! in-memory connections whose messages are delivered in random order across connections (in order within
//! one, like TCP), random disconnects with messages lost or delivered late, then resume and resend. Every
//! message goes through the real codec.
//!
//! The server behaves as the real one does: it replays what a resuming client missed while its history reaches
//! back, and sends a snapshot (with the client's last committed sequence number) when it does not; an operation
//! whose base has left the history is refused with `resync_needed`, and the client sends it again on the current
//! revision; an operation numbered below the client's last committed one is an old frame and is dropped.
//!
//! Two properties: every client's text equals the server's at the end, and, with texts of unique tokens, nothing
//! anyone typed is lost (every token inserted is in the final text exactly once unless someone deleted it, and
//! none is torn apart), through snapshot resyncs included.

use std::collections::{BTreeSet, HashMap, VecDeque};

use codecollab_protocol::wire::{ClientMsg, ErrorCode, ServerMsg};
use codecollab_protocol::{Client, ClientId, ClientSeq, Document, DocumentLimits, Received, TextOperation};
use ropey::Rope;

use crate::support::for_each_seed;
use crate::support::random::{self, Rng};
use crate::support::tokens::{self, TokenEdit};

const FRAME_LIMIT: usize = 1 << 20;
const DOC: u64 = 1;

/// One connection: frames in flight each way.
struct Connection {
    client: usize,
    up: VecDeque<Vec<u8>>,
    down: VecDeque<Vec<u8>>,
    /// The client still uses this connection (false once it has disconnected).
    open: bool,
    /// The server has processed `Subscribe` on it and sends it live updates.
    live: bool,
}

struct SimClient {
    id: ClientId,
    ot: Client,
    text: Rope,
    /// The server's text at `ot.revision()`: the base a snapshot resync merges from.
    base: Rope,
    connection: Option<usize>,
    /// The author letter of its tokens, and how many it has typed.
    author: char,
    typed: u64,
}

pub struct Sim {
    pub rng: Rng,
    server: Document,
    /// Every client's last committed sequence number, also beyond the history window (the real server keeps it
    /// with the document in its store).
    client_seqs: HashMap<ClientId, ClientSeq>,
    clients: Vec<SimClient>,
    connections: Vec<Connection>,
    pub stats: Stats,
    /// Tokens typed and tokens deleted, by anyone.
    inserted: BTreeSet<String>,
    deleted: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub disconnects: usize,
    pub duplicates: usize,
    pub ops: usize,
    pub snapshots: usize,
    pub stale: usize,
    pub resync_refusals: usize,
}

fn encode_up(msg: &ClientMsg) -> Vec<u8> {
    msg.encode().expect("client messages encode")
}

fn encode_down(msg: &ServerMsg) -> Vec<u8> {
    msg.encode().expect("server messages encode")
}

impl Sim {
    pub fn new(seed: u64, clients: usize, initial: &str, limits: DocumentLimits) -> Sim {
        let mut sim = Sim {
            rng: Rng::new(seed),
            server: Document::new(initial, 0, limits),
            client_seqs: HashMap::new(),
            clients: Vec::new(),
            connections: Vec::new(),
            stats: Stats::default(),
            inserted: BTreeSet::new(),
            deleted: BTreeSet::new(),
        };
        for index in 0..clients {
            let id = sim.rng.next_u64();
            let author = char::from(b'a' + index as u8);
            let text = Rope::from_str(initial);
            let ot = Client::new(0, 1);
            sim.clients.push(SimClient { id, ot, base: text.clone(), text, connection: None, author, typed: 0 });
            let connection = sim.open_connection(index);
            sim.connections[connection].live = true;
        }
        sim
    }

    pub fn text(&self, client: usize) -> &Rope {
        &self.clients[client].text
    }

    fn open_connection(&mut self, client: usize) -> usize {
        self.connections.push(Connection {
            client,
            up: VecDeque::new(),
            down: VecDeque::new(),
            open: true,
            live: false,
        });
        let index = self.connections.len() - 1;
        self.clients[client].connection = Some(index);
        index
    }

    fn send_up(&mut self, client: usize, send: codecollab_protocol::Outgoing) {
        let connection = self.clients[client].connection.expect("a client only sends while connected");
        let msg = ClientMsg::Op { doc: DOC, seq: send.seq, base_revision: send.base_revision, op: send.op };
        self.connections[connection].up.push_back(encode_up(&msg));
    }

    /// The user of `client` makes `op` (on its current text).
    pub fn local_edit(&mut self, client: usize, op: TextOperation) {
        let c = &mut self.clients[client];
        op.apply_to(&mut c.text).expect("edit fits the client's text");
        if let Some(send) = c.ot.apply_local(op).expect("client accepts local edits") {
            self.send_up(client, send);
        }
    }

    pub fn random_local_edit(&mut self, client: usize) {
        let op = random::small_edit(&mut self.rng, self.clients[client].text.len_chars());
        self.local_edit(client, op);
    }

    /// The user of `client` types a new token between two tokens, or deletes a whole token it sees.
    pub fn token_edit(&mut self, client: usize) {
        let text = self.clients[client].text.to_string();
        let author = self.clients[client].author;
        let mut typed = self.clients[client].typed;
        let (op, what) = tokens::random_edit(&mut self.rng, &text, author, &mut typed, 0.3);
        self.clients[client].typed = typed;
        match what {
            TokenEdit::Inserted(token) => self.inserted.insert(token),
            TokenEdit::Deleted(token) => self.deleted.insert(token),
        };
        self.local_edit(client, op);
    }

    pub fn disconnect(&mut self, client: usize) {
        let Some(index) = self.clients[client].connection.take() else { return };
        self.stats.disconnects += 1;
        let late_delivery = self.rng.chance(0.5);
        let connection = &mut self.connections[index];
        connection.open = false;
        connection.live = false;
        connection.down.clear();
        // Either what the client sent is lost, or it reaches the server late, after the client moved on.
        if !late_delivery {
            connection.up.clear();
        }
        self.clients[client].ot.disconnected();
    }

    pub fn reconnect(&mut self, client: usize) {
        if self.clients[client].connection.is_some() {
            return;
        }
        let since = self.clients[client].ot.revision();
        let index = self.open_connection(client);
        self.connections[index].up.push_back(encode_up(&ClientMsg::Subscribe { doc: DOC, since: Some(since) }));
    }

    /// Delivers one frame, chosen at random among all non-empty queues. Returns false if none is pending.
    pub fn deliver_one(&mut self) -> bool {
        let pending: Vec<(usize, bool)> = self
            .connections
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                let up = (!c.up.is_empty()).then_some((i, true));
                let down = (!c.down.is_empty() && c.open).then_some((i, false));
                up.into_iter().chain(down)
            })
            .collect();
        if pending.is_empty() {
            return false;
        }
        let (index, up) = *self.rng.pick(&pending);
        if up {
            let frame = self.connections[index].up.pop_front().expect("queue was non-empty");
            self.server_handle(index, &frame);
        } else {
            let frame = self.connections[index].down.pop_front().expect("queue was non-empty");
            self.client_handle(index, &frame);
        }
        true
    }

    fn send_down(&mut self, connection: usize, msg: &ServerMsg) {
        if self.connections[connection].open {
            self.connections[connection].down.push_back(encode_down(msg));
        }
    }

    fn server_handle(&mut self, index: usize, frame: &[u8]) {
        let author = self.clients[self.connections[index].client].id;
        match ClientMsg::decode(frame, FRAME_LIMIT).expect("frames decode") {
            ClientMsg::Subscribe { doc, since } => {
                let since = since.expect("the simulation always resumes");
                let replay: Option<Vec<ServerMsg>> = self.server.history_since(since).map(|history| {
                    history
                        .zip(since + 1..)
                        .map(|(entry, revision)| {
                            if entry.author == author {
                                ServerMsg::Ack { doc, seq: entry.seq, revision }
                            } else {
                                ServerMsg::Op { doc, revision, peer: entry.author, op: entry.op.clone() }
                            }
                        })
                        .collect()
                });
                match replay {
                    Some(replay) => {
                        for msg in &replay {
                            self.send_down(index, msg);
                        }
                        self.send_down(index, &ServerMsg::Subscribed { doc, revision: self.server.revision() });
                    }
                    None => {
                        let snapshot = ServerMsg::Snapshot {
                            doc,
                            path: "doc".into(),
                            revision: self.server.revision(),
                            text: self.server.text().to_string(),
                            last_seq: self.client_seqs.get(&author).copied(),
                        };
                        self.send_down(index, &snapshot);
                    }
                }
                self.connections[index].live = true;
            }
            ClientMsg::Op { doc, seq, base_revision, op } => {
                match self.server.receive(author, seq, base_revision, &op).expect("valid ops are accepted") {
                    Received::Applied { revision, op } => {
                        self.stats.ops += 1;
                        self.client_seqs.insert(author, seq);
                        for other in 0..self.connections.len() {
                            if !self.connections[other].live {
                                continue;
                            }
                            // Acknowledge on every live connection of the author, not only the one it came on:
                            // after a reconnect, that is the new one.
                            let msg = if self.clients[self.connections[other].client].id == author {
                                ServerMsg::Ack { doc, seq, revision }
                            } else {
                                ServerMsg::Op { doc, revision, peer: author, op: op.clone() }
                            };
                            self.send_down(other, &msg);
                        }
                    }
                    Received::Duplicate { revision } => {
                        self.stats.duplicates += 1;
                        self.send_down(index, &ServerMsg::Ack { doc, seq, revision });
                    }
                    Received::ResyncNeeded { .. } => {
                        self.stats.resync_refusals += 1;
                        let message = "base revision older than the history".to_owned();
                        self.send_down(
                            index,
                            &ServerMsg::Error { code: ErrorCode::ResyncNeeded, message, doc: Some(doc) },
                        );
                    }
                    Received::Stale { .. } => self.stats.stale += 1,
                }
            }
            other => panic!("unexpected message {other:?}"),
        }
    }

    fn client_handle(&mut self, index: usize, frame: &[u8]) {
        let client = self.connections[index].client;
        let c = &mut self.clients[client];
        let send = match ServerMsg::decode(frame, FRAME_LIMIT).expect("frames decode") {
            ServerMsg::Ack { seq, revision, .. } => {
                let acked = c.ot.server_ack(seq, revision).expect("acks are in order");
                if let Some(committed) = acked.committed {
                    committed.apply_to(&mut c.base).expect("the committed op fits the base");
                }
                acked.send
            }
            ServerMsg::Op { revision, op, .. } => {
                let transformed = c.ot.apply_server(revision, op.clone()).expect("ops are in order");
                op.apply_to(&mut c.base).expect("a server op fits the base");
                transformed.apply_to(&mut c.text).expect("transformed op fits");
                None
            }
            ServerMsg::Subscribed { revision, .. } => {
                assert_eq!(c.ot.revision(), revision, "replay brought the client up to date");
                c.ot.resumed()
            }
            ServerMsg::Snapshot { revision, text, last_seq, .. } => {
                self.stats.snapshots += 1;
                let base = c.base.to_string();
                let rebased = c.ot.resync(&base, revision, &text, last_seq, None).expect("snapshots merge");
                rebased.apply.apply_to(&mut c.text).expect("the merge fits the local text");
                c.base = Rope::from_str(&text);
                rebased.send
            }
            ServerMsg::Error { code: ErrorCode::ResyncNeeded, .. } => c.ot.resend(),
            other => panic!("unexpected message {other:?}"),
        };
        if let Some(send) = send {
            let msg = ClientMsg::Op { doc: DOC, seq: send.seq, base_revision: send.base_revision, op: send.op };
            self.connections[index].up.push_back(encode_up(&msg));
        }
    }

    /// Reconnects everyone and delivers everything.
    pub fn settle(&mut self) {
        for client in 0..self.clients.len() {
            self.reconnect(client);
        }
        let mut steps = 0;
        while self.deliver_one() {
            steps += 1;
            assert!(steps < 10_000_000, "the simulation does not settle");
        }
    }

    pub fn assert_converged(&self) {
        let server = self.server.text().to_string();
        for (i, c) in self.clients.iter().enumerate() {
            assert!(c.ot.is_synchronized(), "client {i} still has pending edits ({})", c.ot.state_name());
            assert_eq!(c.ot.revision(), self.server.revision(), "client {i} revision");
            assert_eq!(c.text.to_string(), server, "client {i} text");
            assert_eq!(c.base.to_string(), server, "client {i} base");
        }
    }

    /// Every token typed is in the server's text exactly once, unless someone deleted it; no deleted token is;
    /// the text is nothing but whole tokens.
    pub fn assert_nothing_lost(&self) {
        let server = self.server.text().to_string();
        let found = tokens::parse(&server).unwrap_or_else(|| panic!("a token was torn apart: {server:?}"));
        let found_set: BTreeSet<String> = found.iter().cloned().collect();
        assert_eq!(found.len(), found_set.len(), "a token appears twice: {server:?}");
        let expected: BTreeSet<String> = self.inserted.difference(&self.deleted).cloned().collect();
        let lost: Vec<&String> = expected.difference(&found_set).collect();
        let revived: Vec<&String> = found_set.difference(&expected).collect();
        assert!(lost.is_empty() && revived.is_empty(), "lost {lost:?}, deleted but present {revived:?} in {server:?}");
    }
}

#[test]
fn five_clients_random_delivery_and_disconnects_converge() {
    let mut totals = Stats::default();
    for_each_seed("five_clients_random_delivery_and_disconnects_converge", 0..seeds(1_000), |seed| {
        let mut sim = Sim::new(seed, 5, "héllo 日本語 😀\n", DocumentLimits::default());
        for _ in 0..200 {
            let client = sim.rng.below(5);
            match sim.rng.below(100) {
                0..=29 => sim.random_local_edit(client),
                30..=32 => sim.disconnect(client),
                33..=37 => sim.reconnect(client),
                _ => {
                    sim.deliver_one();
                }
            }
        }
        sim.settle();
        sim.assert_converged();
        totals.disconnects += sim.stats.disconnects;
        totals.duplicates += sim.stats.duplicates;
        totals.ops += sim.stats.ops;
        totals.stale += sim.stats.stale;
    });
    // The run must actually exercise resume and the duplicate path, or it proves nothing about them.
    assert!(totals.disconnects > 1000, "{totals:?}");
    assert!(totals.duplicates >= 10, "{totals:?}");
    eprintln!("simulation: {totals:?}");
}

/// How many seeds a simulation runs: `default`, or `CODECOLLAB_SIMULATION_SEEDS` (say 10000, before a release).
fn seeds(default: u64) -> u64 {
    std::env::var("CODECOLLAB_SIMULATION_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

#[test]
fn nothing_typed_is_lost_through_long_disconnects_and_snapshot_resyncs() {
    let mut totals = Stats::default();
    let seeds = seeds(1_000);
    for_each_seed("nothing_typed_is_lost_through_long_disconnects_and_snapshot_resyncs", 0..seeds, |seed| {
        // A small history, so a client away for a while comes back to a snapshot.
        let limits = DocumentLimits { history: 8, ..DocumentLimits::default() };
        let mut sim = Sim::new(seed, 4, "", limits);
        for _ in 0..300 {
            let client = sim.rng.below(4);
            match sim.rng.below(100) {
                // Typing goes on whether or not the client is connected (offline edits are buffered).
                0..=34 => sim.token_edit(client),
                35..=36 => sim.disconnect(client),
                // A disconnected client stays away for a while: reconnecting is rarer than disconnecting often
                // enough that the others type more than the history holds meanwhile.
                37..=38 if sim.rng.chance(0.5) => sim.reconnect(client),
                _ => {
                    sim.deliver_one();
                }
            }
        }
        sim.settle();
        sim.assert_converged();
        sim.assert_nothing_lost();
        totals.disconnects += sim.stats.disconnects;
        totals.snapshots += sim.stats.snapshots;
        totals.ops += sim.stats.ops;
        totals.stale += sim.stats.stale;
        totals.resync_refusals += sim.stats.resync_refusals;
    });
    // The snapshot path must actually be taken, often, or this proves nothing about it.
    assert!(totals.snapshots >= seeds as usize, "{totals:?}");
    eprintln!("token simulation over {seeds} seeds: {totals:?}");
}
