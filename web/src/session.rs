//! The browser's side of a session, with no IO: the documents it opened (text, the server's text, the OT client),
//! what arrives from the server and what the page's editor does, turned into frames to send and events for the
//! page (in the editor's UTF-16 positions).
//!
//! The page owns the WebSocket and the editor; this owns everything about convergence, the same way the daemon's
//! documents do: one operation in flight per document, the rest composed; a resent operation keeps its sequence
//! number; a reconnect resumes each document from its revision (or merges with a snapshot when the server's
//! history no longer reaches back); an operation the server refuses for good is undone here and in the editor.

use std::collections::{BTreeMap, HashMap, VecDeque};

use codecollab_protocol::wire::{
    ClientMsg, DocId, DocInfo, ErrorCode, PeerId, PeerInfo, Role, ServerMsg, UnsharedFile,
};
use codecollab_protocol::{Bias, Client, ClientId, ClientSeq, Component, Outgoing, Revision, Selection, TextOperation};
use ropey::Rope;

/// The largest frame decoded before the server has said its limit (its default).
const DEFAULT_FRAME_LIMIT: usize = 16 << 20;

/// How long a three-way merge's diff may take before it settles for a coarser one.
#[cfg(not(target_arch = "wasm32"))]
const MERGE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// One replacement in the editor's positions (UTF-16 code units), all of a list relative to the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub from: usize,
    pub to: usize,
    pub insert: String,
}

/// A selection in the editor's positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub anchor: usize,
    pub head: usize,
}

/// What the page is told, in order (as JSON objects whose `type` is the variant's name in snake case, see
/// [`crate::json`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Joined (again, with `resumed`): who we are, who is here, what the session holds.
    Welcome {
        session: String,
        peer: PeerId,
        name: String,
        role: Role,
        /// This peer's own token, to reconnect with.
        token: String,
        peers: Vec<PeerInfo>,
        docs: Vec<DocInfo>,
        unshared: Vec<UnsharedFile>,
        resumed: bool,
    },
    /// A document the page opened is here, with its text.
    Loaded {
        doc: DocId,
        path: String,
        text: String,
    },
    /// Replacements to make in a document's editor, relative to its text before them.
    Changes {
        doc: DocId,
        changes: Vec<Change>,
    },
    /// Whether every edit of ours to `doc` is stored by the server.
    Synced {
        doc: DocId,
        synced: bool,
    },
    /// Where a peer's selections are in `doc` (empty: none any more).
    Presence {
        doc: DocId,
        peer: PeerId,
        selections: Vec<Range>,
    },
    /// Everyone's presence is gone (the connection dropped; it arrives again on resuming).
    PresenceCleared,
    PeerJoined {
        peer: PeerInfo,
    },
    PeerLeft {
        peer: PeerId,
    },
    Created {
        doc: DocInfo,
    },
    Deleted {
        doc: DocId,
    },
    Renamed {
        doc: DocId,
        path: String,
    },
    Unshared {
        files: Vec<UnsharedFile>,
    },
    /// Edits to send again after a while: the server could not take them now (nothing was applied).
    RetryLater,
    /// Something to tell the user; `fatal` when the session cannot go on (what is typed stays in the page).
    Message {
        level: Level,
        text: String,
        fatal: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// One document the page opened.
#[derive(Debug)]
struct Doc {
    path: String,
    /// `None` until its snapshot arrives.
    synced: Option<Synced>,
    /// Our latest selection, in `text` chars, and whether the server has it.
    mine: Option<Selection>,
    cursor_unsent: bool,
    /// Our outstanding operation waits to be sent again (the server could not store it).
    retry: bool,
}

#[derive(Debug)]
struct Synced {
    text: Rope,
    /// The server's text at `ot.revision()`: what a refused operation is undone against and a snapshot merged with.
    server: Rope,
    ot: Client,
    /// Whether `Synced { synced: true }` was the last thing the page heard.
    told_synced: bool,
}

/// The browser's session state.
#[derive(Debug)]
pub struct Session {
    client_id: ClientId,
    name: String,
    /// A welcome arrived on the current connection.
    joined: bool,
    welcomed_before: bool,
    role: Role,
    frame_limit: usize,
    max_document_chars: u64,
    docs: BTreeMap<DocId, String>,
    open: HashMap<DocId, Doc>,
    /// The next sequence number per document: it must grow across the life of this client id, even when a
    /// document is opened again.
    next_seq: HashMap<DocId, ClientSeq>,
    frames: VecDeque<Vec<u8>>,
    events: Vec<Event>,
}

impl Session {
    /// A new client, not yet connected. `client_id` is random and stays the same across reconnects.
    pub fn new(client_id: ClientId, name: &str) -> Session {
        Session {
            client_id,
            name: name.to_owned(),
            joined: false,
            welcomed_before: false,
            role: Role::View,
            frame_limit: DEFAULT_FRAME_LIMIT,
            max_document_chars: u64::MAX,
            docs: BTreeMap::new(),
            open: HashMap::new(),
            next_seq: HashMap::new(),
            frames: VecDeque::new(),
            events: Vec::new(),
        }
    }

    /// The next frame to send, if any.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }

    /// Events for the page, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The text of an open document, as this client has it.
    pub fn text(&self, doc: DocId) -> Option<String> {
        Some(self.open.get(&doc)?.synced.as_ref()?.text.to_string())
    }

    /// Whether every open document's edits are stored by the server.
    pub fn all_synced(&self) -> bool {
        self.open.values().all(|d| d.synced.as_ref().is_none_or(|s| s.ot.is_synchronized()))
    }

    /// The WebSocket opened: join (again).
    pub fn connected(&mut self) {
        self.send(ClientMsg::Join { client_id: self.client_id, name: Some(self.name.clone()) });
    }

    /// The WebSocket closed: what was in flight goes again after resuming.
    pub fn disconnected(&mut self) {
        self.joined = false;
        for doc in self.open.values_mut() {
            if let Some(synced) = doc.synced.as_mut() {
                synced.ot.disconnected();
            }
            doc.cursor_unsent = doc.mine.is_some();
        }
        self.events.push(Event::PresenceCleared);
    }

    /// The page opens a document: its snapshot follows as [`Event::Loaded`].
    pub fn open(&mut self, doc: DocId) {
        if self.open.contains_key(&doc) {
            return;
        }
        let Some(path) = self.docs.get(&doc).cloned() else {
            self.message(Level::Warning, format!("document {doc} is not in the session"), false);
            return;
        };
        self.open.insert(doc, Doc { path, synced: None, mine: None, cursor_unsent: false, retry: false });
        if self.joined {
            self.send(ClientMsg::Subscribe { doc, since: None });
        }
    }

    /// The page's editor changed `doc`: `changes` relative to its text before them, in UTF-16 positions.
    pub fn edit(&mut self, doc: DocId, changes: &[Change]) {
        let role = self.role;
        let limit = self.max_document_chars;
        let Some(d) = self.open.get_mut(&doc) else { return };
        let Some(synced) = d.synced.as_mut() else { return };
        let op = match operation(&synced.text, changes) {
            Ok(op) => op,
            Err(why) => {
                let text = format!("an edit of {} did not fit its text ({why}); reload the page", d.path);
                self.message(Level::Error, text, true);
                return;
            }
        };
        if op.is_noop() {
            return;
        }
        let growth = op.target_len().saturating_sub(op.base_len());
        let refusal = if role == Role::View {
            Some("this session is view-only for you".to_owned())
        } else if growth > 0 && (synced.server.len_chars() + growth) as u64 > limit {
            Some(format!(
                "that edit was undone: it would make {} {} chars long, over the server's limit of {limit}",
                d.path,
                synced.server.len_chars() + growth
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            // The editor has it already: undo it there, and say why.
            if let Ok(undo) = op.invert_in(&synced.text) {
                let mut after = synced.text.clone();
                if op.apply_to(&mut after).is_ok() {
                    let changes = changes_of(&after, &undo);
                    self.events.push(Event::Changes { doc, changes });
                }
            }
            self.message(Level::Error, refusal, false);
            return;
        }
        if op.apply_to(&mut synced.text).is_err() {
            let text = format!("an edit of {} did not fit; reload the page", d.path);
            self.message(Level::Error, text, true);
            return;
        }
        if let Some(mine) = d.mine.as_mut() {
            *mine = mine.transform(&op, Bias::Before);
        }
        match synced.ot.apply_local(op) {
            Ok(Some(out)) => {
                let frame = op_message(doc, out);
                self.send(frame);
            }
            Ok(None) => {}
            Err(error) => self.message(Level::Error, format!("an edit was refused here: {error}"), true),
        }
        self.tell_synced(doc);
    }

    /// The page's selection in `doc`, in UTF-16 positions.
    pub fn cursor(&mut self, doc: DocId, anchor: usize, head: usize) {
        let Some(d) = self.open.get_mut(&doc) else { return };
        let Some(synced) = d.synced.as_ref() else { return };
        let at = |p: usize| synced.text.utf16_cu_to_char(p.min(synced.text.len_utf16_cu()));
        d.mine = Some(Selection { anchor: at(anchor), head: at(head) });
        d.cursor_unsent = true;
        self.send_cursor(doc);
    }

    /// Time to send again what the server could not take.
    pub fn retry(&mut self) {
        let mut out = Vec::new();
        for (&doc, d) in self.open.iter_mut() {
            if std::mem::take(&mut d.retry) {
                if let Some(o) = d.synced.as_mut().and_then(|s| s.ot.resend()) {
                    out.push(op_message(doc, o));
                }
            }
        }
        for message in out {
            self.send(message);
        }
    }

    /// A frame from the server.
    pub fn receive(&mut self, frame: &[u8]) {
        match ServerMsg::decode_all(frame, self.frame_limit) {
            Ok(messages) => {
                for message in messages {
                    self.server_message(message);
                }
            }
            Err(error) => {
                self.message(Level::Warning, format!("a message from the server was unreadable: {error}"), false)
            }
        }
    }

    fn server_message(&mut self, message: ServerMsg) {
        match message {
            ServerMsg::Welcome { session, peer, name, role, host: _, token, peers, docs, limits, unshared } => {
                self.joined = true;
                self.role = role;
                if let Some(limits) = limits {
                    self.frame_limit = usize::try_from(limits.max_frame_bytes).unwrap_or(usize::MAX);
                    self.max_document_chars = limits.max_document_chars;
                }
                self.docs = docs.iter().map(|d| (d.doc, d.path.clone())).collect();
                let resumed = std::mem::replace(&mut self.welcomed_before, true);
                // Documents that left the session while we were away.
                let gone: Vec<DocId> = self.open.keys().filter(|d| !self.docs.contains_key(d)).copied().collect();
                for doc in gone {
                    self.open.remove(&doc);
                    self.events.push(Event::Deleted { doc });
                }
                let subscribe: Vec<ClientMsg> = self
                    .open
                    .iter()
                    .map(|(&doc, d)| ClientMsg::Subscribe { doc, since: d.synced.as_ref().map(|s| s.ot.revision()) })
                    .collect();
                self.events.push(Event::Welcome { session, peer, name, role, token, peers, docs, unshared, resumed });
                for message in subscribe {
                    self.send(message);
                }
            }
            ServerMsg::Snapshot { doc, path, revision, text, last_seq } => {
                self.snapshot(doc, path, revision, text, last_seq)
            }
            ServerMsg::Subscribed { doc, revision: _ } => {
                let Some(d) = self.open.get_mut(&doc) else { return };
                if let Some(out) = d.synced.as_mut().and_then(|s| s.ot.resumed()) {
                    self.send(op_message(doc, out));
                }
                self.send_cursor(doc);
                self.tell_synced(doc);
            }
            ServerMsg::Ack { doc, seq, revision } => self.ack(doc, seq, revision),
            ServerMsg::Op { doc, revision, peer: _, op } => self.remote_op(doc, revision, op),
            ServerMsg::Presence { doc, peer, revision: _, mut selections } => {
                let Some(synced) = self.open.get(&doc).and_then(|d| d.synced.as_ref()) else { return };
                // At the server's revision: bring them past our pending edits.
                if let Ok(Some(pending)) = synced.ot.pending() {
                    Selection::transform_all(&mut selections, &pending, Bias::Before);
                }
                let len = synced.text.len_chars();
                let at = |p: usize| synced.text.char_to_utf16_cu(p.min(len));
                let selections = selections.iter().map(|s| Range { anchor: at(s.anchor), head: at(s.head) }).collect();
                self.events.push(Event::Presence { doc, peer, selections });
            }
            ServerMsg::Created { doc, peer: _ } => {
                self.docs.insert(doc.doc, doc.path.clone());
                self.events.push(Event::Created { doc });
            }
            ServerMsg::Deleted { doc } => {
                self.docs.remove(&doc);
                self.open.remove(&doc);
                self.events.push(Event::Deleted { doc });
            }
            ServerMsg::Renamed { doc, path } => {
                self.docs.insert(doc, path.clone());
                if let Some(d) = self.open.get_mut(&doc) {
                    d.path = path.clone();
                }
                self.events.push(Event::Renamed { doc, path });
            }
            ServerMsg::PeerJoined { peer } => self.events.push(Event::PeerJoined { peer }),
            ServerMsg::PeerLeft { peer } => self.events.push(Event::PeerLeft { peer }),
            ServerMsg::Unshared { files } => self.events.push(Event::Unshared { files }),
            ServerMsg::Error { code, message, doc } => self.server_error(code, message, doc),
            ServerMsg::SessionCreated { .. } | ServerMsg::PeerRemoved { .. } => {}
        }
    }

    fn snapshot(&mut self, doc: DocId, path: String, revision: Revision, text: String, last_seq: Option<ClientSeq>) {
        let Some(d) = self.open.get_mut(&doc) else { return };
        d.path = path.clone();
        let next_seq = self.next_seq.entry(doc).or_insert(1);
        match d.synced.as_mut() {
            None => {
                // The sequence numbers go on past any this client id used on this document before.
                *next_seq = (*next_seq).max(last_seq.map_or(1, |s| s + 1));
                let rope = Rope::from_str(&text);
                d.synced = Some(Synced {
                    server: rope.clone(),
                    text: rope,
                    ot: Client::new(revision, *next_seq),
                    told_synced: true,
                });
                self.events.push(Event::Loaded { doc, path, text });
                self.send_cursor(doc);
            }
            Some(synced) => {
                if revision < synced.ot.revision() {
                    // The server went back in time (restored from an old backup): merging with its older text would
                    // delete what it lost and we have. Keep ours and stop.
                    let text = format!(
                        "the server's copy of {path} is older than ours (revision {revision}, ours {}): it lost recent changes. This page keeps your text; copy it before closing.",
                        synced.ot.revision()
                    );
                    self.message(Level::Error, text, true);
                    return;
                }
                let base = synced.server.to_string();
                match synced.ot.resync(&base, revision, &text, last_seq, merge_deadline()) {
                    Ok(rebased) => {
                        let changes = changes_of(&synced.text, &rebased.apply);
                        if rebased.apply.apply_to(&mut synced.text).is_err() {
                            self.message(Level::Error, format!("{path} could not be merged; reload the page"), true);
                            return;
                        }
                        synced.server = Rope::from_str(&text);
                        d.retry = false;
                        if !changes.is_empty() {
                            self.events.push(Event::Changes { doc, changes });
                        }
                        if let Some(out) = rebased.send {
                            self.send(op_message(doc, out));
                        }
                        self.send_cursor(doc);
                        self.tell_synced(doc);
                    }
                    Err(error) => {
                        let text = format!("{path} could not be merged with the server's copy ({error})");
                        self.message(Level::Error, text, true);
                    }
                }
            }
        }
    }

    fn ack(&mut self, doc: DocId, seq: ClientSeq, revision: Revision) {
        let Some(synced) = self.open.get_mut(&doc).and_then(|d| d.synced.as_mut()) else { return };
        let acked = match synced.ot.server_ack(seq, revision) {
            Ok(acked) => acked,
            Err(error) => return self.resubscribe(doc, &error.to_string()),
        };
        if let Some(committed) = acked.committed {
            if committed.apply_to(&mut synced.server).is_err() {
                return self.resubscribe(doc, "an acknowledged operation did not fit the server's text");
            }
        }
        self.next_seq.insert(doc, synced.ot.next_seq());
        if let Some(out) = acked.send {
            self.send(op_message(doc, out));
        }
        self.send_cursor(doc);
        self.tell_synced(doc);
    }

    fn remote_op(&mut self, doc: DocId, revision: Revision, op: TextOperation) {
        let Some(synced) = self.open.get_mut(&doc).and_then(|d| d.synced.as_mut()) else { return };
        let transformed = match synced.ot.apply_server(revision, op.clone()) {
            Ok(transformed) => transformed,
            Err(error) => return self.resubscribe(doc, &error.to_string()),
        };
        let changes = changes_of(&synced.text, &transformed);
        if transformed.apply_to(&mut synced.text).is_err() || op.apply_to(&mut synced.server).is_err() {
            return self.resubscribe(doc, "an operation did not fit");
        }
        if let Some(d) = self.open.get_mut(&doc) {
            if let Some(mine) = d.mine.as_mut() {
                *mine = mine.transform(&transformed, Bias::Before);
            }
        }
        if !changes.is_empty() {
            self.events.push(Event::Changes { doc, changes });
        }
    }

    fn server_error(&mut self, code: ErrorCode, message: String, doc: Option<DocId>) {
        match (code, doc) {
            // The outstanding operation's base left the server's history before it arrived: nothing was applied.
            (ErrorCode::ResyncNeeded, Some(doc)) => {
                if let Some(out) = self.open.get_mut(&doc).and_then(|d| d.synced.as_mut()).and_then(|s| s.ot.resend()) {
                    self.send(op_message(doc, out));
                }
            }
            (ErrorCode::StorageFailure | ErrorCode::RateLimited, doc) => {
                if let Some(d) = doc.and_then(|doc| self.open.get_mut(&doc)) {
                    d.retry = d.synced.as_ref().is_some_and(|s| !s.ot.is_synchronized());
                }
                if code == ErrorCode::StorageFailure {
                    let text = "the server cannot store changes right now; yours are kept and will be sent again";
                    self.message(Level::Warning, text.into(), false);
                }
                self.events.push(Event::RetryLater);
            }
            (ErrorCode::Unauthorized, _) => self.message(Level::Error, message, true),
            (
                ErrorCode::DocumentTooLarge
                | ErrorCode::BaseLengthMismatch
                | ErrorCode::FutureRevision
                | ErrorCode::Forbidden,
                Some(doc),
            ) => self.reject(doc, &message),
            (ErrorCode::UnknownDocument, Some(doc)) => {
                if self.open.remove(&doc).is_some() {
                    self.events.push(Event::Deleted { doc });
                }
            }
            _ => self.message(Level::Warning, message, false),
        }
    }

    /// The server refused our outstanding operation for good: undo it here and in the editor (what was typed after
    /// it stays), and say so.
    fn reject(&mut self, doc: DocId, reason: &str) {
        let Some(d) = self.open.get_mut(&doc) else { return };
        let Some(synced) = d.synced.as_mut() else { return };
        let base = synced.server.to_string();
        let rebased = match synced.ot.reject(&base) {
            Ok(rebased) => rebased,
            Err(error) => return self.resubscribe(doc, &error.to_string()),
        };
        let changes = changes_of(&synced.text, &rebased.apply);
        if rebased.apply.apply_to(&mut synced.text).is_err() {
            return self.resubscribe(doc, "undoing a refused operation did not fit");
        }
        let text = format!("the server refused an edit of {} ({reason}); it was undone", d.path);
        if !changes.is_empty() {
            self.events.push(Event::Changes { doc, changes });
        }
        if let Some(out) = rebased.send {
            self.send(op_message(doc, out));
        }
        self.message(Level::Error, text, false);
        self.tell_synced(doc);
    }

    /// Our copy of `doc` is out of step: load it again (a snapshot, merged with what is pending).
    fn resubscribe(&mut self, doc: DocId, why: &str) {
        self.message(Level::Warning, format!("reloading a document that went out of step ({why})"), false);
        self.send(ClientMsg::Subscribe { doc, since: None });
    }

    /// Sends our selection in `doc` if it changed and every edit of ours is acknowledged (so that it is in the
    /// server's positions).
    fn send_cursor(&mut self, doc: DocId) {
        if !self.joined {
            return;
        }
        let Some(d) = self.open.get_mut(&doc) else { return };
        let Some(synced) = d.synced.as_ref() else { return };
        if !d.cursor_unsent || !synced.ot.is_synchronized() {
            return;
        }
        let Some(mine) = d.mine else { return };
        d.cursor_unsent = false;
        let revision = synced.ot.revision();
        self.send(ClientMsg::Cursor { doc, revision, selections: vec![mine] });
    }

    fn tell_synced(&mut self, doc: DocId) {
        let Some(synced) = self.open.get_mut(&doc).and_then(|d| d.synced.as_mut()) else { return };
        let now = synced.ot.is_synchronized();
        if now != synced.told_synced {
            synced.told_synced = now;
            self.events.push(Event::Synced { doc, synced: now });
        }
    }

    fn message(&mut self, level: Level, text: String, fatal: bool) {
        self.events.push(Event::Message { level, text, fatal });
    }

    fn send(&mut self, message: ClientMsg) {
        if !self.joined && !matches!(message, ClientMsg::Join { .. }) {
            // Resuming sends what is pending once the welcome is back.
            return;
        }
        match message.encode() {
            Ok(frame) => self.frames.push_back(frame),
            Err(error) => self.message(Level::Error, format!("a message could not be encoded: {error}"), false),
        }
    }
}

fn op_message(doc: DocId, out: Outgoing) -> ClientMsg {
    ClientMsg::Op { doc, seq: out.seq, base_revision: out.base_revision, op: out.op }
}

/// The merge deadline: a clock where there is one (the browser's `Instant` is not available to plain wasm32, so
/// there the merge runs to the end).
fn merge_deadline() -> Option<std::time::Instant> {
    #[cfg(not(target_arch = "wasm32"))]
    return Some(std::time::Instant::now() + MERGE_DEADLINE);
    #[cfg(target_arch = "wasm32")]
    return None;
}

/// The operation that makes `changes` (UTF-16 positions, all relative to `text`, not overlapping) to `text`.
pub fn operation(text: &Rope, changes: &[Change]) -> Result<TextOperation, String> {
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by_key(|c| (c.from, c.to));
    let len16 = text.len_utf16_cu();
    let mut op = TextOperation::new();
    let mut at = 0; // chars
    for change in sorted {
        if change.from > change.to || change.to > len16 {
            return Err(format!("a change {}..{} outside a text of {len16}", change.from, change.to));
        }
        let (from, to) = (text.utf16_cu_to_char(change.from), text.utf16_cu_to_char(change.to));
        if from < at {
            return Err("changes overlap".into());
        }
        op.retain(from - at);
        op.delete(to - from);
        op.insert(&change.insert);
        at = to;
    }
    op.retain(text.len_chars() - at);
    Ok(op)
}

/// `op` as replacements in UTF-16 positions of `text` (its base).
pub fn changes_of(text: &Rope, op: &TextOperation) -> Vec<Change> {
    let mut changes: Vec<Change> = Vec::new();
    let mut at = 0; // chars in text
    let len = text.len_chars();
    let pos = |p: usize| text.char_to_utf16_cu(p.min(len));
    for component in op.components() {
        match component {
            Component::Retain(n) => at += n,
            Component::Delete(n) => {
                let (from, to) = (pos(at), pos(at + n));
                match changes.last_mut() {
                    Some(last) if last.to == from => last.to = to,
                    _ => changes.push(Change { from, to, insert: String::new() }),
                }
                at += n;
            }
            Component::Insert(inserted) => {
                let from = pos(at);
                match changes.last_mut() {
                    Some(last) if last.to == from => last.insert.push_str(inserted),
                    _ => changes.push(Change { from, to: from, insert: inserted.to_string() }),
                }
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests;
