//! A deterministic simulation in the style of ot.js's client/server test: one server document, several clients,
//! in-memory connections whose messages are delivered in random order across connections (in order within
//! one, like TCP), random disconnects with messages lost or delivered late, then resume and resend. Every
//! message goes through the real codec. At the end every client's text equals the server's.

use std::collections::VecDeque;

use codecollab_protocol::wire::{ClientMsg, ServerMsg};
use codecollab_protocol::{Client, ClientId, Document, DocumentLimits, Received, TextOperation};
use ropey::Rope;

use crate::support::for_each_seed;
use crate::support::random::{self, Rng};

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
    connection: Option<usize>,
}

pub struct Sim {
    pub rng: Rng,
    server: Document,
    clients: Vec<SimClient>,
    connections: Vec<Connection>,
    pub stats: Stats,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub disconnects: usize,
    pub duplicates: usize,
    pub ops: usize,
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
            clients: Vec::new(),
            connections: Vec::new(),
            stats: Stats::default(),
        };
        for index in 0..clients {
            let id = sim.rng.next_u64();
            sim.clients.push(SimClient { id, ot: Client::new(0, 1), text: Rope::from_str(initial), connection: None });
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

    /// The user of `client` makes `op` (on its current text).
    pub fn local_edit(&mut self, client: usize, op: TextOperation) {
        let c = &mut self.clients[client];
        op.apply_to(&mut c.text).expect("edit fits the client's text");
        if let Some(send) = c.ot.apply_local(op).expect("client accepts local edits") {
            let connection = c.connection.expect("a client only sends while connected");
            let msg = ClientMsg::Op { doc: DOC, seq: send.seq, base_revision: send.base_revision, op: send.op };
            self.connections[connection].up.push_back(encode_up(&msg));
        }
    }

    pub fn random_local_edit(&mut self, client: usize) {
        let op = random::small_edit(&mut self.rng, self.clients[client].text.len_chars());
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
                let replay: Vec<ServerMsg> = self
                    .server
                    .history_since(since)
                    .expect("history reaches back to every client's revision")
                    .zip(since + 1..)
                    .map(|(entry, revision)| {
                        if entry.author == author {
                            ServerMsg::Ack { doc, seq: entry.seq, revision }
                        } else {
                            ServerMsg::Op { doc, revision, peer: entry.author, op: entry.op.clone() }
                        }
                    })
                    .collect();
                for msg in &replay {
                    self.send_down(index, msg);
                }
                self.send_down(index, &ServerMsg::Subscribed { doc, revision: self.server.revision() });
                self.connections[index].live = true;
            }
            ClientMsg::Op { doc, seq, base_revision, op } => {
                match self.server.receive(author, seq, base_revision, &op).expect("valid ops are accepted") {
                    Received::Applied { revision, op } => {
                        self.stats.ops += 1;
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
                    Received::ResyncNeeded { .. } => panic!("history is large enough in the simulation"),
                }
            }
            other => panic!("unexpected message {other:?}"),
        }
    }

    fn client_handle(&mut self, index: usize, frame: &[u8]) {
        let client = self.connections[index].client;
        let c = &mut self.clients[client];
        let send = match ServerMsg::decode(frame, FRAME_LIMIT).expect("frames decode") {
            ServerMsg::Ack { seq, revision, .. } => c.ot.server_ack(seq, revision).expect("acks are in order"),
            ServerMsg::Op { revision, op, .. } => {
                let op = c.ot.apply_server(revision, op).expect("ops are in order");
                op.apply_to(&mut c.text).expect("transformed op fits");
                None
            }
            ServerMsg::Subscribed { revision, .. } => {
                assert_eq!(c.ot.revision(), revision, "replay brought the client up to date");
                c.ot.resumed()
            }
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
        }
    }
}

#[test]
fn five_clients_random_delivery_and_disconnects_converge() {
    let mut totals = Stats::default();
    for_each_seed("five_clients_random_delivery_and_disconnects_converge", 0..1000, |seed| {
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
    });
    // The run must actually exercise resume and the duplicate path, or it proves nothing about them.
    assert!(totals.disconnects > 1000, "{totals:?}");
    assert!(totals.duplicates >= 10, "{totals:?}");
    eprintln!("simulation: {totals:?}");
}
