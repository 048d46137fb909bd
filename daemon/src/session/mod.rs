//! A session the daemon is in: its peers, its documents (by id, with their paths claimed against letter-case
//! clashes), what it is still fetching or creating, and what the server's messages do to them. Each method gets
//! an [`Io`]: the way to the server (while connected) and to the editor. [`files`] holds what touches the shared
//! folder and the editor's buffers.

mod file_ops;
mod files;
mod memory;
mod starting;

pub use starting::Starting;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use codecollab_protocol::wire::{
    ClientMsg, DocId, DocInfo, ErrorCode, Limits, PeerId, PeerInfo, Role, ServerMsg, UnsharedFile, MAX_UNSHARED,
    MAX_UNSHARED_REASON,
};
use codecollab_protocol::{Outgoing, MAX_OP_BYTES};
use tokio::sync::mpsc;

use crate::document::{Doc, Effects, PendingOpen, TextCache, Trouble};
use crate::main_loop::{rpc_error, Event, Reply};
use crate::output::Editor;
use crate::relay::Relay;

/// The most documents a daemon holds: a session listing more (a hostile or broken server) gets the rest refused.
const MAX_DOCUMENTS: usize = 10_000;

/// The limits a server that does not say assumes (its defaults).
pub const DEFAULT_LIMITS: Limits =
    Limits { max_frame_bytes: 16 << 20, max_document_chars: 16 << 20, heartbeat_ms: 15_000 };

/// What a session's methods reach out through.
#[derive(Debug)]
pub struct Io<'a> {
    /// The server, while connected (and welcomed); what would go out otherwise is sent again on reconnecting.
    pub relay: Option<&'a Relay>,
    pub editor: &'a Editor,
    /// Write others' changes to files that run by themselves without asking.
    pub allow_runnable_files: bool,
    /// Where timers send their events, and the connection they belong to.
    pub events: &'a mpsc::UnboundedSender<Event>,
    pub epoch: u64,
}

impl Io<'_> {
    fn send(&self, msg: ClientMsg) {
        if let Some(relay) = self.relay {
            // Closed only when the connection ends, which its own event reports.
            let _ = relay.send(msg);
        }
    }

    fn send_op(&self, doc: DocId, out: Outgoing) {
        tracing::debug!(doc, seq = out.seq, base = out.base_revision, op = %crate::document::brief(&out.op), connected = self.relay.is_some(), "operation out");
        self.send(ClientMsg::Op { doc, seq: out.seq, base_revision: out.base_revision, op: out.op });
    }
}

/// The session must end.
#[derive(Debug)]
pub enum Ended {
    /// Continuing could lose someone's work, or the server will no longer have us (the reason, for the user).
    Lost(String),
    /// A join was refused before it wrote anything (its answer says why): the daemon leaves without more words.
    JoinRefused,
}

/// What the server's `welcome` says about us.
#[derive(Debug)]
pub struct Welcome {
    pub id: String,
    pub token: String,
    pub peer: PeerId,
    pub role: Role,
    pub host: bool,
    pub peers: Vec<PeerInfo>,
    pub limits: Option<Limits>,
    pub unshared: Vec<UnsharedFile>,
}

#[derive(Debug)]
pub struct Session {
    pub id: String,
    /// The server's address, for reconnecting.
    pub server: String,
    /// Personal token, for reconnecting.
    pub token: String,
    pub root: PathBuf,
    pub peer: PeerId,
    pub role: Role,
    /// May remove others (the server says so in `welcome`).
    host: bool,
    pub peers: HashMap<PeerId, PeerInfo>,
    pub docs: HashMap<DocId, Doc>,
    /// Editor opens of files the session does not hold yet, by path: created on the server, then tracked.
    pending_opens: HashMap<String, PendingOpen>,
    /// The document each peer last moved its cursor in: where "follow" goes.
    pub last_doc: HashMap<PeerId, DocId>,
    /// Paths the session holds whose snapshot we asked for and have not received yet: an editor opening one waits
    /// for it instead of creating the file again.
    fetching: HashMap<String, DocId>,
    /// The server's limits, from `welcome`.
    limits: Limits,
    /// Refusals in a row that asked us to send again later (the server could not store, or rate limited us):
    /// the delay before the next retry doubles with each.
    retries: u32,
    /// An [`Event::Retry`] is on its way.
    retry_scheduled: bool,
    /// Paths the user was told are not written (each is told once).
    warned: HashSet<String>,
    /// Who created the documents announced as created while we fetch them (for telling who changed what).
    created_by: HashMap<DocId, String>,
    /// Documents a peer created during the session whose file is not on our disk yet: its first write is told to
    /// the editor (`collab/files`).
    announced: HashSet<DocId>,
    /// A `collab/removePeer` waiting for the server: the name, and the answer to give.
    removing: Option<(String, Reply<()>)>,
    /// The documents held or being fetched, by case-folded path ([`codecollab_protocol::path::case_key`]): a second
    /// path that differs only in letter case is refused.
    case_keys: HashMap<String, (DocId, String)>,
    pub starting: Option<Starting>,
    /// Where local files that session files would have overwritten were moved, once there was one.
    backup: Option<PathBuf>,
    /// Files new on disk that we asked the server to create (`workspace/didCreateFiles`, the watch), with the text
    /// we read and sent: their snapshot is ours, already on disk (or on it since with newer text, merged in).
    created_here: HashMap<String, String>,
    /// Paths a peer moved a document away from while our editor did not have it open. An open of such a path may
    /// have crossed the `collab/files` that told the editor of the move: see `Session::open`.
    moved_away: HashMap<String, DocId>,
    /// Files of our folder we told the session are not in it (sent again after a reconnect: the server keeps the
    /// list in memory only).
    unshared_here: Vec<UnsharedFile>,
    /// The session's list of files not in it, by path, with why.
    pub unshared: BTreeMap<String, String>,
    /// File operations made while the server was out of reach, sent in order once it is back.
    queued_file_ops: Vec<ClientMsg>,
    /// Our renames sent and not yet broadcast back, in order, by document: a `renamed` for a document with one in
    /// flight is our own or one ours overrides (see `Session::renamed`).
    renames_in_flight: HashMap<DocId, VecDeque<String>>,
    /// The paths (old and new) of renames our editor announced (`willRenameFiles`) and has not yet said are done
    /// (`didRenameFiles`), with when: the editor is moving those files, so what the watch sees there meanwhile is
    /// that move, not a file created or deleted (see `Session::disk_changed`).
    editor_moving: HashMap<String, Instant>,
    /// The watch on the shared folder, once the share or join is done.
    watcher: Option<crate::watcher::Watcher>,
    /// Where cold documents' texts are, and the budget of text in memory (see [`memory`]).
    cache: TextCache,
}

/// The session's list of files not in it, as a server sent it: what a daemon keeps of it is bounded (a server's
/// word is not trusted with our memory); it is only ever shown, never written.
fn unshared_map(files: Vec<UnsharedFile>) -> BTreeMap<String, String> {
    let bounded = |s: String, n: usize| s.chars().filter(|c| !c.is_control()).take(n).collect::<String>();
    files
        .into_iter()
        .take(MAX_UNSHARED)
        .map(|f| (bounded(f.path, 4096), bounded(f.reason, MAX_UNSHARED_REASON)))
        .collect()
}

/// The most text one operation (or a created file's first frame) carries toward this server: a quarter of its frame
/// limit, at most [`MAX_OP_BYTES`], so a frame always has room for its envelope.
fn op_bytes(limits: &Limits) -> usize {
    (limits.max_frame_bytes / 4).clamp(1, MAX_OP_BYTES as u64) as usize
}

impl Session {
    pub fn new(server: String, root: PathBuf, welcome: Welcome) -> Session {
        Session {
            id: welcome.id,
            server,
            token: welcome.token,
            root,
            peer: welcome.peer,
            role: welcome.role,
            host: welcome.host,
            peers: welcome.peers.into_iter().map(|p| (p.peer, p)).collect(),
            docs: HashMap::new(),
            pending_opens: HashMap::new(),
            last_doc: HashMap::new(),
            fetching: HashMap::new(),
            limits: welcome.limits.unwrap_or(DEFAULT_LIMITS),
            retries: 0,
            retry_scheduled: false,
            warned: HashSet::new(),
            created_by: HashMap::new(),
            announced: HashSet::new(),
            backup: None,
            created_here: HashMap::new(),
            moved_away: HashMap::new(),
            watcher: None,
            unshared_here: Vec::new(),
            queued_file_ops: Vec::new(),
            renames_in_flight: HashMap::new(),
            editor_moving: HashMap::new(),
            unshared: unshared_map(welcome.unshared),
            removing: None,
            case_keys: HashMap::new(),
            starting: None,
            cache: TextCache::default(),
        }
    }

    /// Records that `doc` is at `path` (for the letter-case check).
    fn claim(&mut self, doc: DocId, path: &str) {
        self.case_keys.insert(codecollab_protocol::path::case_key(path), (doc, path.to_owned()));
    }

    /// Forgets `path` (its document was deleted, moved or refused).
    fn release(&mut self, path: &str) {
        self.case_keys.remove(&codecollab_protocol::path::case_key(path));
    }

    /// Why session path `path` (of document `doc`, if known) is not taken to disk here: the session rules, another
    /// document at that path, or a letter-case clash with one (one file on a case-insensitive file system). `None`
    /// if it is fine.
    fn refusal_of(&self, path: &str, doc: Option<DocId>) -> Option<String> {
        if let Err(why) = codecollab_protocol::path::check(path) {
            return Some(why.to_string());
        }
        match self.case_keys.get(&codecollab_protocol::path::case_key(path)) {
            Some((other, other_path)) if Some(*other) != doc => Some(if other_path == path {
                format!("another document is at {path} already")
            } else {
                format!("it differs from {other_path} only in letter case (one file on some file systems)")
            }),
            _ => None,
        }
    }

    /// Tells the session that these files of ours are not in it (and why), and remembers them for reconnects.
    pub(super) fn unshared_here(&mut self, files: Vec<UnsharedFile>, io: &Io) {
        if files.is_empty() {
            return;
        }
        for file in &files {
            self.unshared_here.retain(|mine| mine.path != file.path);
        }
        self.unshared_here.extend(files.iter().cloned());
        io.send(ClientMsg::Unshared { files });
    }

    /// The files holding edits the server has not acknowledged yet (sent or not), and files created here that it
    /// does not hold yet; sorted.
    pub fn unsent(&self) -> Vec<String> {
        let docs = self.docs.values().filter(|d| !d.ot.is_synchronized()).map(|d| d.path.clone());
        let mut paths: Vec<String> = docs.chain(self.pending_opens.keys().cloned()).collect();
        paths.sort_unstable();
        paths.dedup();
        paths
    }

    /// The connection dropped: every document waits to resume, and a removal in progress is answered.
    pub fn disconnected(&mut self) {
        self.retries = 0;
        if let Some((_, reply)) = self.removing.take() {
            let _ = reply.send(Err(rpc_error("the connection to the server dropped; try again")));
        }
        for doc in self.docs.values_mut() {
            doc.ot.disconnected();
            doc.retry = false;
        }
    }

    /// Welcomed again after a reconnect: resumes every document from where it was, fetches the ones added
    /// meanwhile, and asks again for the files our editor opened that the session does not hold yet.
    pub fn resume(&mut self, welcome: Welcome, docs: Vec<DocInfo>, io: &Io) -> Result<(), Ended> {
        self.peer = welcome.peer;
        self.peers = welcome.peers.into_iter().map(|p| (p.peer, p)).collect();
        self.limits = welcome.limits.unwrap_or(DEFAULT_LIMITS);
        self.host = welcome.host;
        self.unshared = unshared_map(welcome.unshared);
        if !self.unshared_here.is_empty() {
            io.send(ClientMsg::Unshared { files: self.unshared_here.clone() });
        }
        // Renames sent on the lost connection were carried out or lost with it: the list in `welcome` says which.
        self.renames_in_flight.clear();
        self.catch_up_on_files(&docs, io);
        // Presence from before the drop names peers by their old connections' ids, which a restarted server may
        // have handed to someone else: it is dropped, and arrives again from the peers still here.
        self.last_doc.clear();
        for (&doc, d) in self.docs.iter_mut() {
            let had_presence = !d.presence.is_empty();
            d.forget_presence();
            if had_presence {
                io.editor.cursors(d, &self.peers);
            }
            io.send(ClientMsg::Subscribe { doc, since: Some(d.ot.revision()) });
        }
        // What was created, renamed or deleted here meanwhile: after the documents it names are resumed.
        for msg in std::mem::take(&mut self.queued_file_ops) {
            self.send_file_op(msg, io);
        }
        io.editor.peers(Some(self));
        for doc in docs {
            if !self.docs.contains_key(&doc.doc) {
                self.fetch(doc, io);
            }
        }
        let creates: Vec<String> = self.pending_opens.keys().cloned().collect();
        for path in creates {
            self.create(&path, io);
        }
        self.go_on(io)
    }

    /// The renames and deletions others made while we were away, which no broadcast told us: the session's list
    /// in `welcome` is the truth for every document, except those whose rename or deletion of ours is still to be
    /// sent (made here while the server was out of reach).
    fn catch_up_on_files(&mut self, listed: &[DocInfo], io: &Io) {
        let ours_pending: HashSet<DocId> = self
            .queued_file_ops
            .iter()
            .filter_map(|msg| match msg {
                ClientMsg::Rename { doc, .. } | ClientMsg::Delete { doc } => Some(*doc),
                _ => None,
            })
            .collect();
        let listed: HashMap<DocId, &str> = listed.iter().map(|d| (d.doc, d.path.as_str())).collect();
        let mut changes: Vec<(DocId, Option<String>)> = Vec::new();
        for (&doc, d) in &self.docs {
            if ours_pending.contains(&doc) {
                continue;
            }
            match listed.get(&doc) {
                None => changes.push((doc, None)),
                Some(path) if *path != d.path => changes.push((doc, Some((*path).to_owned()))),
                Some(_) => {}
            }
        }
        for (doc, path) in changes {
            match path {
                Some(path) => self.renamed(doc, path, io),
                None => self.deleted(doc, io),
            }
        }
    }

    /// A message from the server, in the session: the document it is about is warmed first, and what that and the
    /// message brought into memory is counted against the budget after.
    pub fn server_message(&mut self, message: ServerMsg, io: &Io) -> Result<(), Ended> {
        self.warm_for(&message, io);
        let handled = self.handle_server_message(message, io);
        self.cool();
        handled
    }

    fn handle_server_message(&mut self, message: ServerMsg, io: &Io) -> Result<(), Ended> {
        match message {
            ServerMsg::Snapshot { doc, path, revision, text, last_seq } => {
                return self.snapshot(doc, path, revision, text, last_seq, io)
            }
            ServerMsg::Subscribed { doc, revision: _ } => {
                if let Some(out) = self.docs.get_mut(&doc).and_then(|d| d.ot.resumed()) {
                    io.send_op(doc, out);
                }
                self.flush_cursor(doc, io);
            }
            ServerMsg::Ack { doc, seq, revision } => {
                let Some(d) = self.docs.get_mut(&doc) else { return Ok(()) };
                let acked = d.ack(seq, revision);
                self.apply(doc, acked, io)?;
                self.flush_cursor(doc, io);
            }
            ServerMsg::Op { doc, revision, peer, op } => {
                let author = self.peers.get(&peer).map_or("someone", |p| p.name.as_str()).to_owned();
                let Some(d) = self.docs.get_mut(&doc) else { return Ok(()) };
                let applied = d.remote_op(revision, op, &author);
                self.apply(doc, applied, io)?;
            }
            ServerMsg::Presence { doc, peer, revision: _, selections } => {
                let Some(d) = self.docs.get_mut(&doc) else { return Ok(()) };
                if !selections.is_empty() {
                    self.last_doc.insert(peer, doc);
                }
                d.presence(peer, selections);
                io.editor.cursors(d, &self.peers);
                io.editor.peers(Some(self));
            }
            ServerMsg::Created { doc, peer } => {
                // If our editor opened the same new path, our own Create (which the server answers for an existing
                // path by subscribing us) brings the snapshot: subscribing again would fetch the text twice.
                if self.pending_opens.contains_key(&doc.path) || self.created_here.contains_key(&doc.path) {
                    return Ok(());
                }
                if let Some(name) = peer.and_then(|p| self.peers.get(&p)).map(|p| p.name.clone()) {
                    self.created_by.insert(doc.doc, name);
                }
                self.announced.insert(doc.doc);
                self.fetch(doc, io);
            }
            ServerMsg::Deleted { doc } => self.deleted(doc, io),
            ServerMsg::Renamed { doc, path } => self.renamed(doc, path, io),
            ServerMsg::PeerJoined { peer } => {
                self.peers.insert(peer.peer, peer);
                io.editor.peers(Some(self));
            }
            ServerMsg::PeerLeft { peer } => {
                self.peers.remove(&peer);
                self.last_doc.remove(&peer);
                for d in self.docs.values_mut() {
                    if d.presence.remove(&peer).is_some() {
                        io.editor.cursors(d, &self.peers);
                    }
                }
                io.editor.peers(Some(self));
            }
            ServerMsg::Unshared { files } => {
                let new: Vec<String> = files
                    .iter()
                    .filter(|f| !self.unshared.contains_key(&f.path))
                    .filter(|f| !self.unshared_here.iter().any(|mine| mine.path == f.path))
                    .map(|f| format!("{} ({})", f.path, f.reason))
                    .collect();
                self.unshared = unshared_map(files);
                if !new.is_empty() && self.starting.is_none() {
                    io.editor.message(
                        tower_lsp_server::lsp_types::MessageType::INFO,
                        format!("not in the session (they stay with whoever has them): {}", new.join(", ")),
                    );
                }
            }
            ServerMsg::PeerRemoved { name } => match self.removing.take() {
                Some((waiting, reply)) if waiting == name => {
                    let _ = reply.send(Ok(()));
                }
                other => self.removing = other,
            },
            ServerMsg::Error { code, message, doc } => return self.server_error(code, message, doc, io),
            // The connection's own business.
            ServerMsg::SessionCreated { .. } | ServerMsg::Welcome { .. } => {}
        }
        Ok(())
    }

    /// Carries out what a document's transition asked for, or deals with the trouble it is in.
    fn apply(&mut self, doc: DocId, result: Result<Effects, Trouble>, io: &Io) -> Result<(), Ended> {
        match result {
            Ok(effects) => {
                if effects.stored {
                    self.retries = 0;
                }
                for (uri, edit) in effects.edits {
                    io.editor.edit(uri, edit);
                }
                if let Some(out) = effects.send {
                    io.send_op(doc, out);
                }
                for (kind, text) in effects.messages {
                    io.editor.message(kind, text);
                }
            }
            Err(Trouble::Resync(reason)) => {
                tracing::warn!(doc, %reason, "out of step with the server; reloading the document");
                io.send(ClientMsg::Subscribe { doc, since: None });
            }
            Err(Trouble::Leave(why)) => {
                if let Some(d) = self.remove_doc(doc) {
                    self.release(&d.path);
                    io.send(ClientMsg::Unsubscribe { doc });
                    self.refused_on_disk(&d.path, &why, io);
                }
            }
            Err(Trouble::End(reason)) => return Err(Ended::Lost(reason)),
        }
        Ok(())
    }

    fn server_error(&mut self, code: ErrorCode, message: String, doc: Option<DocId>, io: &Io) -> Result<(), Ended> {
        tracing::warn!(?code, %message, ?doc, "the server refused");
        match (code, doc) {
            // The outstanding operation's base left the server's history before it arrived: nothing was applied,
            // and it is already transformed up to our revision. Send it again on that.
            (ErrorCode::ResyncNeeded, Some(doc)) => {
                if let Some(out) = self.docs.get_mut(&doc).and_then(|d| d.ot.resend()) {
                    io.send_op(doc, out);
                }
            }
            (ErrorCode::Forbidden | ErrorCode::StorageFailure, None) if self.removing.is_some() => {
                if let Some((_, reply)) = self.removing.take() {
                    let _ = reply.send(Err(rpc_error(message)));
                }
            }
            // Nothing was applied, and it may work later: keep it and send it again after a while (the connection
            // stays; a document with nothing outstanding has nothing to send again).
            (ErrorCode::StorageFailure | ErrorCode::RateLimited, doc) => {
                if let Some(d) = doc.and_then(|doc| self.docs.get_mut(&doc)) {
                    d.retry = !d.ot.is_synchronized();
                }
                if code == ErrorCode::StorageFailure && self.retries == 0 {
                    io.editor
                        .warning("the server cannot store changes right now; yours are kept and will be sent again");
                }
                self.schedule_retry(io);
            }
            (ErrorCode::Unauthorized, _) => return Err(Ended::Lost(message)),
            // A rename of ours refused (the path was taken meanwhile, or the document deleted): no broadcast of it
            // will come back.
            (ErrorCode::InvalidPath | ErrorCode::UnknownDocument, Some(doc))
                if self.renames_in_flight.contains_key(&doc) =>
            {
                self.rename_answered(doc);
                io.editor.warning(message);
            }
            // Refused for good: undo the operation, here and in the editor, and say so.
            (
                ErrorCode::DocumentTooLarge
                | ErrorCode::BaseLengthMismatch
                | ErrorCode::FutureRevision
                | ErrorCode::Forbidden,
                Some(doc),
            ) => {
                let Some(d) = self.docs.get_mut(&doc) else { return Ok(()) };
                let rejected = d.reject(&message);
                return self.apply(doc, rejected, io);
            }
            _ => io.editor.warning(message),
        }
        Ok(())
    }

    /// Schedules an [`Event::Retry`] on this connection, after a delay that doubles with each refusal in a row
    /// (0.25 s to 8 s), unless one is scheduled already.
    fn schedule_retry(&mut self, io: &Io) {
        self.retries += 1;
        if std::mem::replace(&mut self.retry_scheduled, true) {
            return;
        }
        let delay = Duration::from_millis(125u64.saturating_mul(1 << self.retries.min(6)).min(8_000));
        let (epoch, events) = (io.epoch, io.events.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::Retry { epoch });
        });
    }

    /// Sends again what the server could not store: the outstanding operations marked for it, and the files our
    /// editor opened that the session does not hold yet. Without a connection, the reconnect sends them anyway.
    pub fn retry(&mut self, io: &Io) {
        self.retry_scheduled = false;
        if io.relay.is_none() {
            return;
        }
        for (&doc, d) in self.docs.iter_mut() {
            if std::mem::take(&mut d.retry) {
                if let Some(out) = d.ot.resend() {
                    io.send_op(doc, out);
                }
            }
        }
        let creates: Vec<String> = self.pending_opens.keys().cloned().collect();
        for path in creates {
            self.create(&path, io);
        }
    }

    /// Asks for the whole of a document we do not hold yet; until its snapshot arrives, an editor opening its path
    /// waits for it instead of creating the file again.
    fn fetch(&mut self, doc: DocInfo, io: &Io) {
        if self.docs.len() + self.fetching.len() >= MAX_DOCUMENTS {
            let why = format!("this session lists more than {MAX_DOCUMENTS} files, the most a daemon takes");
            return self.refused_on_disk("the rest of the files", &why, io);
        }
        if let Some(why) = self.refusal_of(&doc.path, Some(doc.doc)) {
            return self.refused_on_disk(&doc.path, &why, io);
        }
        self.claim(doc.doc, &doc.path);
        self.fetching.insert(doc.path, doc.doc);
        io.send(ClientMsg::Subscribe { doc: doc.doc, since: None });
    }

    /// Sends our selections in `doc` once every local edit is acknowledged (so they are in the server's
    /// coordinates), if connected.
    fn flush_cursor(&mut self, doc: DocId, io: &Io) {
        if io.relay.is_none() {
            return;
        }
        if let Some((revision, selections)) = self.docs.get_mut(&doc).and_then(Doc::take_cursor) {
            io.send(ClientMsg::Cursor { doc, revision, selections });
        }
    }

    /// `collab/removePeer`: asks the server to remove the peer named `name`; answers once it has.
    pub fn remove_peer(&mut self, name: String, reply: Reply<()>, io: &Io) {
        if !self.host {
            let _ = reply.send(Err(rpc_error("only the host of the session can remove people")));
            return;
        }
        if self.removing.is_some() {
            let _ = reply.send(Err(rpc_error("a removal is already in progress")));
            return;
        }
        self.removing = Some((name.clone(), reply));
        io.send(ClientMsg::RemovePeer { name });
    }
}
