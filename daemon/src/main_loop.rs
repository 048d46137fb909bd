//! The daemon's main loop: the one owner of all state, driven by a closed [`Event`] enum. LSP handlers and the
//! relay task only convert and forward; everything that can happen is handled here, in order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use codecollab_protocol::wire::{ClientMsg, DocId, DocInfo, ErrorCode, Limits, PeerId, PeerInfo, Role, ServerMsg};
use codecollab_protocol::{Bias, Client, ClientId, Outgoing, Revision, Selection, TextOperation, MAX_OP_BYTES};
use ropey::Rope;
use tokio::sync::{mpsc, oneshot};
use tower_lsp_server::jsonrpc;
use tower_lsp_server::lsp_types::{MessageType, Range};

use crate::editor_ot::{DaemonEdit, EditorBuffer};
use crate::lsp_ext::*;
use crate::position::{self, Encoding};
use crate::relay::{self, RelayEvent};
use crate::workspace;

type Reply<T> = oneshot::Sender<jsonrpc::Result<T>>;

/// Everything that can happen to the daemon.
#[derive(Debug)]
pub enum Event {
    Initialized {
        encoding: Encoding,
        ca_file: Option<PathBuf>,
        /// Write others' changes to files that run by themselves without asking (`initializationOptions`).
        allow_runnable_files: bool,
    },
    Share {
        params: ShareParams,
        reply: Reply<ShareResult>,
    },
    Join {
        params: JoinParams,
        reply: Reply<JoinResult>,
    },
    Leave {
        reply: Reply<()>,
    },
    Status {
        reply: Reply<StatusResult>,
    },
    Allow {
        params: AllowParams,
        reply: Reply<AllowResult>,
    },
    RemovePeer {
        params: RemovePeerParams,
        reply: Reply<()>,
    },
    Open(OpenParams),
    Edit(EditParams),
    Cursor(CursorParams),
    Close(CloseParams),
    Relay(RelayEvent),
    /// Time to try connecting again (if `epoch` is still the current attempt).
    Reconnect {
        epoch: u64,
    },
    /// Write changed files that no editor has open.
    FlushDisk,
    /// Send again what the server could not store (if `epoch` is still the current connection).
    Retry {
        epoch: u64,
    },
    /// The editor is gone (`exit`, or its end of stdio closed): write what no editor has open, then stop.
    Shutdown,
}

/// What the daemon sends its editor; the LSP side turns these into notifications.
#[derive(Debug)]
pub enum Output {
    Edit(EditParams),
    Cursors(CursorsParams),
    Peers(PeersParams),
    State(StateParams),
    Approval(ApprovalParams),
    Message(MessageType, String),
    /// Work-done progress (`window/workDoneProgress/create`, then `$/progress`) for long work.
    Progress(Progress),
}

#[derive(Debug)]
pub enum Progress {
    Begin { token: String, title: String, total: usize },
    Report { token: String, done: usize, total: usize },
    End { token: String, message: String },
}

/// A share or join waiting for the server.
enum Pending {
    Share { reply: Reply<ShareResult>, root: PathBuf, name: String, uploads: Option<usize> },
    Join { reply: Reply<JoinResult>, root: PathBuf, name: String, waiting: usize },
}

struct Doc {
    path: String,
    text: Rope,
    /// The server's text at `ot.revision()`: the base of a three-way merge if the server can only send a snapshot,
    /// and what an operation the server refuses for good is undone against. Shares its nodes with `text` (a rope
    /// clone is O(1)) whenever nothing is pending.
    server_text: Rope,
    ot: Client,
    /// The server could not store (or would not yet take) our outstanding operation: it goes again on the next
    /// [`Event::Retry`].
    retry: bool,
    /// Who changed this file since it was last written, if it is one that runs by itself
    /// ([`codecollab_protocol::path::runs_by_itself`]) and others changed it: it is not written until the user
    /// allows it.
    unapproved: Option<Unapproved>,
    editor: Option<EditorBuffer>,
    /// Changed since last written to disk (for documents no editor has open).
    dirty: bool,
    /// Our selections, in `text` coordinates, not yet sent (sent once every local edit is acknowledged).
    my_selections: Option<Vec<Selection>>,
    /// Other peers' selections, in `text` coordinates.
    presence: HashMap<PeerId, Vec<Selection>>,
}

/// A buffer an editor opened before the session held its file (we asked the server to create it, or its snapshot is
/// on its way). What the user types meanwhile is kept here, and merged with the session's text when it arrives.
struct PendingOpen {
    uri: String,
    /// The text the editor opened it with.
    opened: String,
    /// The editor's text now: `opened` with the edits it sent since.
    text: String,
    /// Edits the editor sent since it opened the buffer (its revision pair counts them).
    edits: u64,
    /// What we sent the server to create it with, if we asked it to.
    sent: Option<String>,
}

/// Others' changes to a file that runs by itself, waiting for the user's yes.
#[derive(Debug, Default)]
struct Unapproved {
    by: std::collections::BTreeSet<String>,
    /// The editor was told (once per waiting period).
    told: bool,
}

struct Session {
    id: String,
    server: String,
    /// Personal token, for reconnecting.
    token: String,
    root: PathBuf,
    peer: PeerId,
    role: Role,
    /// May remove others (the server says so in `welcome`).
    host: bool,
    peers: HashMap<PeerId, PeerInfo>,
    docs: HashMap<DocId, Doc>,
    /// Editor opens of files the session does not hold yet, by path: created on the server, then tracked.
    pending_opens: HashMap<String, PendingOpen>,
    uris: HashMap<String, DocId>,
    /// The document each peer last moved its cursor in: where "follow" goes.
    last_doc: HashMap<PeerId, DocId>,
    /// Paths the session holds whose snapshot we asked for and have not received yet: an editor opening one waits
    /// for it instead of creating the file again.
    fetching: HashMap<String, DocId>,
    /// The server's limits, from `welcome`.
    limits: Limits,
    /// Paths we created with only the start of their text (the whole would not fit in a frame): the rest follows
    /// as edits once the server has the document.
    created_partly: std::collections::HashSet<String>,
    /// Refusals in a row that asked us to send again later (the server could not store, or rate limited us):
    /// the delay before the next [`Event::Retry`] doubles with each.
    retries: u32,
    /// An [`Event::Retry`] is on its way.
    retry_scheduled: bool,
    /// Paths the user was told are not written (each is told once).
    warned: std::collections::HashSet<String>,
    /// Who created the documents announced as created while we fetch them (for telling who changed what).
    created_by: HashMap<DocId, String>,
    /// A `collab/removePeer` waiting for the server: the name, and the answer to give.
    removing: Option<(String, Reply<()>)>,
    /// The documents held or being fetched, by case-folded path ([`codecollab_protocol::path::case_key`]): a second
    /// path that differs only in letter case is refused.
    case_keys: HashMap<String, (DocId, String)>,
}

impl PendingOpen {
    fn new(params: OpenParams) -> PendingOpen {
        PendingOpen { uri: params.uri, opened: params.text.clone(), text: params.text, edits: 0, sent: None }
    }
}

impl Session {
    /// Records that `doc` is at `path` (for the letter-case check).
    fn claim(&mut self, doc: DocId, path: &str) {
        self.case_keys.insert(codecollab_protocol::path::case_key(path), (doc, path.to_owned()));
    }

    /// Forgets `path` (its document was deleted, moved or refused).
    fn release(&mut self, path: &str) {
        self.case_keys.remove(&codecollab_protocol::path::case_key(path));
    }
}

/// The most documents a daemon holds: a session listing more (a hostile or broken server) gets the rest refused.
const MAX_DOCUMENTS: usize = 10_000;
/// The largest document a daemon holds, in chars, whatever the server says its limit is.
const MAX_DOCUMENT_CHARS: usize = 64 << 20;

/// Why session path `path` (of document `doc`, if known) is not taken to disk here: the session rules, or a letter
/// case clash with another document (one file on a case-insensitive file system). `None` if it is fine.
fn refusal_of(session: &Session, path: &str, doc: Option<DocId>) -> Option<String> {
    if let Err(why) = codecollab_protocol::path::check(path) {
        return Some(why.to_string());
    }
    match session.case_keys.get(&codecollab_protocol::path::case_key(path)) {
        Some((other, other_path)) if Some(*other) != doc && other_path != path => {
            Some(format!("it differs from {other_path} only in letter case (one file on some file systems)"))
        }
        _ => None,
    }
}

/// The limits a server that does not say assumes (its defaults).
const DEFAULT_LIMITS: Limits = Limits { max_frame_bytes: 16 << 20, max_document_chars: 16 << 20, heartbeat_ms: 15_000 };

/// How long a resync's diff may take before it settles for a coarser one.
const MERGE_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Connection {
    Idle,
    Connecting,
    Connected,
    Reconnecting,
}

pub struct MainLoop {
    events: mpsc::UnboundedSender<Event>,
    output: mpsc::UnboundedSender<Output>,
    encoding: Encoding,
    ca_file: Option<PathBuf>,
    connection: Connection,
    /// The current connection attempt; events of older ones are ignored.
    epoch: u64,
    relay: Option<mpsc::UnboundedSender<ClientMsg>>,
    failures: u32,
    pending: Option<Pending>,
    /// The server of the share or join in progress.
    pending_server: Option<String>,
    /// The invites of the session this daemon created: (edit, view).
    invites: Option<(String, String)>,
    /// This daemon's id toward the server, the same across reconnects.
    client_id: ClientId,
    /// Write others' changes to files that run by themselves without asking.
    allow_runnable_files: bool,
    session: Option<Session>,
}

fn rpc_error(message: impl Into<String>) -> jsonrpc::Error {
    jsonrpc::Error { code: jsonrpc::ErrorCode::ServerError(-32001), message: message.into().into(), data: None }
}

fn random_client_id() -> ClientId {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

fn default_name() -> String {
    std::env::var("USER").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| "anonymous".into())
}

/// `ws://host:port/?session=ID#TOKEN`: the server, the session (for people), and the signed token.
fn invite(server: &str, session: &str, token: &str) -> String {
    let base = server.split(['?', '#']).next().unwrap_or(server).trim_end_matches('/');
    format!("{base}/?session={session}#{token}")
}

fn parse_invite(invite: &str) -> Option<(String, String)> {
    let (url, token) = invite.trim().split_once('#')?;
    let url = url.split('?').next()?.trim_end_matches('/').to_owned();
    (url.starts_with("ws://") || url.starts_with("wss://")).then(|| (url, token.to_owned()))
}

impl MainLoop {
    pub fn new(events: mpsc::UnboundedSender<Event>, output: mpsc::UnboundedSender<Output>) -> MainLoop {
        MainLoop {
            events,
            output,
            encoding: Encoding::Utf16,
            ca_file: None,
            connection: Connection::Idle,
            epoch: 0,
            relay: None,
            failures: 0,
            pending: None,
            pending_server: None,
            invites: None,
            client_id: random_client_id(),
            allow_runnable_files: false,
            session: None,
        }
    }

    pub async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Event>) {
        let flush_events = self.events.clone();
        // How often changed files no editor has open are written: every 200 ms, or what `CODECOLLAB_DISK_FLUSH_MS`
        // says (tests set it long, to see that quitting writes them too).
        let every = std::env::var("CODECOLLAB_DISK_FLUSH_MS").ok().and_then(|ms| ms.parse().ok()).unwrap_or(200);
        let flusher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(every.max(1)));
            loop {
                tick.tick().await;
                if flush_events.send(Event::FlushDisk).is_err() {
                    return;
                }
            }
        });
        while let Some(event) = receiver.recv().await {
            if matches!(event, Event::Shutdown) {
                break;
            }
            self.handle(event);
        }
        flusher.abort();
        self.flush_disk();
    }

    fn out(&self, output: Output) {
        let _ = self.output.send(output);
    }

    fn state_name(&self) -> &'static str {
        match self.connection {
            Connection::Idle => "idle",
            Connection::Connecting => "connecting",
            Connection::Reconnecting => "reconnecting",
            Connection::Connected if self.session.as_ref().is_some_and(|s| s.role == Role::View) => "readonly",
            Connection::Connected => "connected",
        }
    }

    fn set_connection(&mut self, connection: Connection, message: Option<String>) {
        self.connection = connection;
        let session = self.session.as_ref().map(|s| s.id.clone());
        self.out(Output::State(StateParams { state: self.state_name().into(), session, message }));
    }

    fn send(&self, msg: ClientMsg) {
        if let Some(relay) = &self.relay {
            let _ = relay.send(msg);
        }
    }

    fn connect(&mut self, url: String, token: Option<String>) {
        self.epoch += 1;
        self.relay = None;
        let tls = match relay::tls_config(self.ca_file.as_deref()) {
            Ok(tls) => tls,
            Err(error) => {
                self.out(Output::Message(MessageType::ERROR, format!("CodeCollab: TLS setup failed: {error:#}")));
                return;
            }
        };
        relay::spawn(url, token, self.epoch, tls, self.events.clone(), Event::Relay);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Initialized { encoding, ca_file, allow_runnable_files } => {
                self.encoding = encoding;
                self.allow_runnable_files = allow_runnable_files;
                self.ca_file = ca_file.or_else(|| std::env::var_os("CODECOLLAB_CA_FILE").map(PathBuf::from));
            }
            Event::Share { params, reply } => self.share(params, reply),
            Event::Join { params, reply } => self.join(params, reply),
            Event::Leave { reply } => {
                self.leave();
                let _ = reply.send(Ok(()));
            }
            Event::Allow { params, reply } => {
                let _ = reply.send(Ok(AllowResult { written: self.allow(&params.uri) }));
            }
            Event::RemovePeer { params, reply } => self.remove_peer(params.name, reply),
            Event::Status { reply } => {
                let _ = reply.send(Ok(StatusResult {
                    state: self.state_name().into(),
                    session: self.session.as_ref().map(|s| s.id.clone()),
                    peers: self.peer_list(),
                }));
            }
            Event::Open(params) => self.open(params),
            Event::Edit(params) => self.editor_edit(params),
            Event::Cursor(params) => self.editor_cursor(params),
            Event::Close(params) => self.close(params),
            Event::Relay(event) => self.relay_event(event),
            Event::Reconnect { epoch } => {
                if epoch == self.epoch && self.relay.is_none() {
                    if let Some(session) = &self.session {
                        let (server, token) = (session.server.clone(), session.token.clone());
                        self.connect(server, Some(token));
                    }
                }
            }
            Event::FlushDisk => self.flush_disk(),
            Event::Retry { epoch } => {
                if epoch == self.epoch && self.relay.is_some() {
                    self.retry();
                } else if let Some(session) = self.session.as_mut() {
                    // A reconnect resends everything anyway.
                    session.retry_scheduled = false;
                }
            }
            Event::Shutdown => self.flush_disk(),
        }
    }

    // ---- share, join, leave ----

    /// The shared folder of a share or join request, if the daemon may start one now.
    fn session_root(&self, root: &str) -> jsonrpc::Result<PathBuf> {
        if self.session.is_some() || self.pending.is_some() {
            return Err(rpc_error("already in a session: leave it first"));
        }
        workspace::uri_to_path(root)
            .ok_or_else(|| jsonrpc::Error::invalid_params("root must be a file:// URI of a folder"))
    }

    fn share(&mut self, params: ShareParams, reply: Reply<ShareResult>) {
        let root = match self.session_root(&params.root) {
            Ok(root) => root,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let server = params
            .server
            .or_else(|| std::env::var("CODECOLLAB_SERVER").ok())
            .unwrap_or_else(|| "ws://127.0.0.1:7830".into());
        let name = params.name.unwrap_or_else(default_name);
        self.pending = Some(Pending::Share { reply, root, name, uploads: None });
        self.session = None;
        self.set_connection(Connection::Connecting, None);
        self.pending_server = Some(server.clone());
        self.connect(server, params.token);
    }

    fn join(&mut self, params: JoinParams, reply: Reply<JoinResult>) {
        let root = match self.session_root(&params.root) {
            Ok(root) => root,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let Some((server, token)) = parse_invite(&params.invite) else {
            let _ = reply.send(Err(jsonrpc::Error::invalid_params("not an invite (expected ws[s]://...#token)")));
            return;
        };
        let name = params.name.unwrap_or_else(default_name);
        self.pending = Some(Pending::Join { reply, root, name, waiting: 0 });
        self.set_connection(Connection::Connecting, None);
        self.pending_server = Some(server.clone());
        self.connect(server, Some(token));
    }

    fn leave(&mut self) {
        self.flush_disk();
        self.epoch += 1;
        self.relay = None;
        self.session = None;
        self.fail_pending("left the session");
        self.set_connection(Connection::Idle, None);
    }

    fn fail_pending(&mut self, reason: &str) {
        match self.pending.take() {
            Some(Pending::Share { reply, .. }) => {
                let _ = reply.send(Err(rpc_error(format!("could not share: {reason}"))));
            }
            Some(Pending::Join { reply, .. }) => {
                let _ = reply.send(Err(rpc_error(format!("could not join: {reason}"))));
            }
            None => {}
        }
    }

    // ---- the relay ----

    fn relay_event(&mut self, event: RelayEvent) {
        match event {
            RelayEvent::Connected { epoch, sender } if epoch == self.epoch => {
                self.relay = Some(sender);
                match (&self.pending, &self.session) {
                    (Some(Pending::Share { name, .. }), _) => {
                        let name = name.clone();
                        self.send(ClientMsg::CreateSession { name });
                    }
                    (Some(Pending::Join { name, .. }), _) => {
                        let name = Some(name.clone());
                        self.send(ClientMsg::Join { client_id: self.client_id, name });
                    }
                    (None, Some(_)) => self.send(ClientMsg::Join { client_id: self.client_id, name: None }),
                    (None, None) => self.relay = None,
                }
            }
            RelayEvent::BadFrame { epoch, reason } if epoch == self.epoch => {
                self.out(Output::Message(MessageType::WARNING, format!("CodeCollab: {reason}")));
            }
            RelayEvent::Messages { epoch, messages } if epoch == self.epoch => {
                for message in messages {
                    self.server_message(message);
                }
            }
            RelayEvent::Closed { epoch, reason, refused } if epoch == self.epoch => {
                self.relay = None;
                tracing::info!(%reason, refused, "connection to the server lost");
                if self.pending.is_some() && self.session.is_none() {
                    self.fail_pending(&reason);
                    self.set_connection(Connection::Idle, Some(reason));
                    return;
                }
                if refused {
                    return self.end_session(&format!("the server no longer accepts this session ({reason})"));
                }
                let Some(session) = self.session.as_mut() else { return };
                session.retries = 0;
                if let Some((_, reply)) = session.removing.take() {
                    let _ = reply.send(Err(rpc_error("the connection to the server dropped; try again")));
                }
                for doc in session.docs.values_mut() {
                    doc.ot.disconnected();
                    doc.retry = false;
                }
                // Exponential backoff with jitter, capped at a few seconds, for as long as the editor runs.
                self.failures += 1;
                let base = 100u64.saturating_mul(1 << self.failures.min(5)).min(3_000);
                let jitter = random_client_id() % (base / 2 + 1);
                let delay = Duration::from_millis(base / 2 + jitter);
                let epoch = self.epoch;
                let events = self.events.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = events.send(Event::Reconnect { epoch });
                });
                if self.connection != Connection::Reconnecting {
                    self.set_connection(Connection::Reconnecting, Some(reason));
                }
            }
            _ => {} // an old connection's event
        }
    }

    fn server_message(&mut self, message: ServerMsg) {
        match message {
            ServerMsg::SessionCreated { session, url, host_token: _, edit_token, view_token } => {
                let server = url.or_else(|| self.pending_server.clone()).unwrap_or_default();
                self.invites = Some((invite(&server, &session, &edit_token), invite(&server, &session, &view_token)));
                let name = match &self.pending {
                    Some(Pending::Share { name, .. }) => name.clone(),
                    _ => default_name(),
                };
                self.send(ClientMsg::Join { client_id: self.client_id, name: Some(name) });
            }
            ServerMsg::Welcome { session, peer, name: _, role, host, token, peers, docs, limits } => {
                self.welcome(session, peer, role, token, peers, docs);
                if let Some(session) = self.session.as_mut() {
                    session.limits = limits.unwrap_or(DEFAULT_LIMITS);
                    session.host = host;
                }
            }
            ServerMsg::PeerRemoved { name } => {
                if let Some((waiting, reply)) = self.session.as_mut().and_then(|s| s.removing.take()) {
                    if waiting == name {
                        let _ = reply.send(Ok(()));
                    } else if let Some(session) = self.session.as_mut() {
                        session.removing = Some((waiting, reply));
                    }
                }
            }
            ServerMsg::Snapshot { doc, path, revision, text, last_seq } => {
                self.snapshot(doc, path, revision, text, last_seq)
            }
            ServerMsg::Subscribed { doc, revision: _ } => {
                let resend = self.session.as_mut().and_then(|s| s.docs.get_mut(&doc)).and_then(|d| d.ot.resumed());
                if let Some(out) = resend {
                    self.send_op(doc, out);
                }
                self.flush_cursor(doc);
            }
            ServerMsg::Ack { doc, seq, revision } => {
                let Some(session) = self.session.as_mut() else { return };
                let Some(d) = session.docs.get_mut(&doc) else { return };
                let acked = match d.ot.server_ack(seq, revision) {
                    Ok(acked) => acked,
                    Err(error) => return self.resync(doc, &error.to_string()),
                };
                if let Some(committed) = acked.committed {
                    session.retries = 0;
                    if committed.apply_to(&mut d.server_text).is_err() {
                        return self.resync(doc, "an acknowledged operation did not fit the server's text");
                    }
                    if d.ot.is_synchronized() {
                        // Equal again: share the nodes instead of keeping two copies.
                        d.server_text = d.text.clone();
                    }
                }
                if let Some(out) = acked.send {
                    self.send_op(doc, out);
                }
                self.flush_cursor(doc);
            }
            ServerMsg::Op { doc, revision, peer, op } => self.remote_op(doc, revision, op, peer),
            ServerMsg::Presence { doc, peer, revision: _, selections } => {
                let Some(session) = self.session.as_mut() else { return };
                let Some(d) = session.docs.get_mut(&doc) else { return };
                // Presence is at the server's revision; bring it past our own pending edits.
                let mut selections = selections;
                if let Ok(Some(pending)) = d.ot.pending() {
                    for s in selections.iter_mut() {
                        *s = s.transform(&pending, Bias::Before);
                    }
                }
                if selections.is_empty() {
                    d.presence.remove(&peer);
                } else {
                    d.presence.insert(peer, selections);
                    session.last_doc.insert(peer, doc);
                }
                self.send_cursors(doc);
                self.send_peers();
            }
            ServerMsg::Created { doc, peer } => {
                let Some(session) = self.session.as_mut() else { return };
                // If our editor opened the same new path, our own Create (which the server answers for an existing
                // path by subscribing us) brings the snapshot: subscribing again would fetch the text twice.
                if session.pending_opens.contains_key(&doc.path) {
                    return;
                }
                if let Some(name) = peer.and_then(|p| session.peers.get(&p)).map(|p| p.name.clone()) {
                    session.created_by.insert(doc.doc, name);
                }
                self.fetch(doc);
            }
            ServerMsg::Deleted { doc } => {
                let Some(session) = self.session.as_mut() else { return };
                session.fetching.retain(|_, fetched| *fetched != doc);
                let Some(d) = session.docs.remove(&doc) else { return };
                session.release(&d.path);
                if let Some(editor) = &d.editor {
                    session.uris.remove(&editor.uri);
                } else if let Err(error) = workspace::remove(&session.root, &d.path) {
                    self.refused_on_disk(&d.path, &format!("{error:#}"));
                }
            }
            ServerMsg::Renamed { doc, path } => {
                let Some(session) = self.session.as_mut() else { return };
                let Some(d) = session.docs.get(&doc) else { return };
                let from = d.path.clone();
                if let Some(why) = refusal_of(session, &path, Some(doc)) {
                    // Moved where we do not follow: it leaves our session, and its file stays where it was.
                    if let Some(d) = session.docs.remove(&doc) {
                        session.release(&d.path);
                        if let Some(editor) = d.editor {
                            session.uris.remove(&editor.uri);
                        }
                    }
                    self.send(ClientMsg::Unsubscribe { doc });
                    return self.refused_on_disk(&path, &why);
                }
                let result = workspace::rename(&session.root, &from, &path);
                session.release(&from);
                session.claim(doc, &path);
                if let Some(d) = session.docs.get_mut(&doc) {
                    d.path = path.clone();
                }
                if let Err(error) = result {
                    self.refused_on_disk(&path, &format!("{error:#}"));
                }
            }
            ServerMsg::PeerJoined { peer } => {
                if let Some(session) = self.session.as_mut() {
                    session.peers.insert(peer.peer, peer);
                }
                self.send_peers();
            }
            ServerMsg::PeerLeft { peer } => {
                let mut touched = Vec::new();
                if let Some(session) = self.session.as_mut() {
                    session.peers.remove(&peer);
                    session.last_doc.remove(&peer);
                    for (id, d) in session.docs.iter_mut() {
                        if d.presence.remove(&peer).is_some() {
                            touched.push(*id);
                        }
                    }
                }
                for doc in touched {
                    self.send_cursors(doc);
                }
                self.send_peers();
            }
            ServerMsg::Error { code, message, doc } => self.server_error(code, message, doc),
        }
    }

    fn server_error(&mut self, code: ErrorCode, message: String, doc: Option<DocId>) {
        tracing::warn!(?code, %message, ?doc, "the server refused");
        if self.session.is_none() {
            self.fail_pending(&message);
            self.epoch += 1;
            self.relay = None;
            self.set_connection(Connection::Idle, Some(message));
            return;
        }
        match (code, doc) {
            // The outstanding operation's base left the server's history before it arrived: nothing was applied,
            // and it is already transformed up to our revision. Send it again on that.
            (ErrorCode::ResyncNeeded, Some(doc)) => {
                let resend = self.session.as_mut().and_then(|s| s.docs.get_mut(&doc)).and_then(|d| d.ot.resend());
                if let Some(out) = resend {
                    self.send_op(doc, out);
                }
            }
            (ErrorCode::Forbidden | ErrorCode::StorageFailure, None)
                if self.session.as_ref().is_some_and(|s| s.removing.is_some()) =>
            {
                if let Some((_, reply)) = self.session.as_mut().and_then(|s| s.removing.take()) {
                    let _ = reply.send(Err(rpc_error(message)));
                }
            }
            // Nothing was applied, and it may work later: keep it and send it again after a while (the connection
            // stays; a document with nothing outstanding has nothing to send again).
            (ErrorCode::StorageFailure | ErrorCode::RateLimited, doc) => {
                if let (Some(doc), Some(session)) = (doc, self.session.as_mut()) {
                    if let Some(d) = session.docs.get_mut(&doc) {
                        d.retry = !d.ot.is_synchronized();
                    }
                }
                if code == ErrorCode::StorageFailure && self.session.as_ref().is_some_and(|s| s.retries == 0) {
                    let text =
                        "CodeCollab: the server cannot store changes right now; yours are kept and will be sent again";
                    self.out(Output::Message(MessageType::WARNING, text.into()));
                }
                self.schedule_retry();
            }
            (ErrorCode::Unauthorized, _) => self.end_session(&message),
            // Refused for good: undo the operation, here and in the editor, and say so.
            (
                ErrorCode::DocumentTooLarge
                | ErrorCode::BaseLengthMismatch
                | ErrorCode::FutureRevision
                | ErrorCode::Forbidden,
                Some(doc),
            ) => self.reject_outstanding(doc, &message),
            _ => self.out(Output::Message(MessageType::WARNING, format!("CodeCollab: {message}"))),
        }
    }

    /// Schedules an [`Event::Retry`] on this connection, after a delay that doubles with each refusal in a row
    /// (0.25 s to 8 s), unless one is scheduled already.
    fn schedule_retry(&mut self) {
        let Some(session) = self.session.as_mut() else { return };
        session.retries += 1;
        if std::mem::replace(&mut session.retry_scheduled, true) {
            return;
        }
        let delay = Duration::from_millis(125u64.saturating_mul(1 << session.retries.min(6)).min(8_000));
        let (epoch, events) = (self.epoch, self.events.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::Retry { epoch });
        });
    }

    /// Sends again what the server could not store: the outstanding operations marked for it, and the files our
    /// editor opened that the session does not hold yet.
    fn retry(&mut self) {
        let Some(session) = self.session.as_mut() else { return };
        session.retry_scheduled = false;
        let mut resend = Vec::new();
        for (&doc, d) in session.docs.iter_mut() {
            if std::mem::take(&mut d.retry) {
                resend.extend(d.ot.resend().map(|out| (doc, out)));
            }
        }
        let creates: Vec<String> = session.pending_opens.keys().cloned().collect();
        for (doc, out) in resend {
            self.send_op(doc, out);
        }
        for path in creates {
            self.create(&path);
        }
    }

    /// The server refused our outstanding operation in `doc` for good: undo it in our text and the editor's
    /// (what we typed after it stays) and tell the user.
    fn reject_outstanding(&mut self, doc: DocId, reason: &str) {
        let Some(session) = self.session.as_mut() else { return };
        let Some(d) = session.docs.get_mut(&doc) else { return };
        let base = d.server_text.to_string();
        let rebased = match d.ot.reject(&base) {
            Ok(rebased) => rebased,
            Err(error) => return self.resync(doc, &error.to_string()),
        };
        let path = d.path.clone();
        let edit = d.editor.as_mut().map(|e| (e.uri.clone(), e.daemon_edit(rebased.apply.clone(), &d.text)));
        if rebased.apply.apply_to(&mut d.text).is_err() {
            return self.resync(doc, "undoing a refused operation did not fit");
        }
        d.dirty |= d.editor.is_none();
        transform_selections(d, &rebased.apply);
        if let Some((uri, DaemonEdit { revision, changes })) = edit {
            self.out(Output::Edit(EditParams { uri, revision, changes }));
        }
        if let Some(out) = rebased.send {
            self.send_op(doc, out);
        }
        let text = format!("CodeCollab: the server refused an edit of {path} ({reason}); it was undone");
        self.out(Output::Message(MessageType::ERROR, text));
    }

    /// Ends the session for good (the server refused it, or lost what we had): writes every file no editor has
    /// open, stops reconnecting, and tells the user what happened and what is kept.
    fn end_session(&mut self, reason: &str) {
        let root = self.session.as_ref().map(|s| s.root.display().to_string()).unwrap_or_default();
        self.flush_disk();
        let text = format!(
            "CodeCollab: the session ended: {reason}. Your files and the edits not yet sent are kept in {root} \
             (open files in your editor). The host can share the folder again and send a new invite."
        );
        tracing::warn!(%reason, "session ended");
        self.out(Output::Message(MessageType::ERROR, text.clone()));
        self.epoch += 1;
        self.relay = None;
        self.session = None;
        self.fail_pending(reason);
        self.set_connection(Connection::Idle, Some(text));
    }

    fn welcome(
        &mut self,
        session_id: String,
        peer: PeerId,
        role: Role,
        token: String,
        peers: Vec<PeerInfo>,
        docs: Vec<DocInfo>,
    ) {
        self.failures = 0;
        let server = self.pending_server.clone().unwrap_or_default();
        match self.pending.take() {
            Some(Pending::Share { reply, root, name, .. }) => {
                self.session = Some(self.new_session(session_id, server, token, root.clone(), peer, role, peers));
                self.set_connection(Connection::Connected, None);
                let files = match workspace::scan(&root) {
                    Ok(files) => files,
                    Err(error) => {
                        let _ = reply.send(Err(rpc_error(format!("reading {}: {error:#}", root.display()))));
                        self.leave();
                        return;
                    }
                };
                let count = files.len();
                if count > 0 {
                    let title = format!("CodeCollab: sharing {count} files");
                    self.out(Output::Progress(Progress::Begin {
                        token: "codecollab/share".into(),
                        title,
                        total: count,
                    }));
                }
                for (path, text) in files {
                    self.send(ClientMsg::Create { path, text });
                }
                self.pending = Some(Pending::Share { reply, root, name, uploads: Some(count) });
                self.send_peers();
                self.check_share_done();
            }
            Some(Pending::Join { reply, root, name, .. }) => {
                if let Err(error) = std::fs::create_dir_all(&root) {
                    let _ = reply.send(Err(rpc_error(format!("creating {}: {error}", root.display()))));
                    self.leave();
                    return;
                }
                self.session = Some(self.new_session(session_id, server, token, root.clone(), peer, role, peers));
                for doc in docs {
                    self.fetch(doc);
                }
                // What was asked for (files the daemon refuses are not).
                let waiting = self.session.as_ref().map_or(0, |s| s.fetching.len());
                if waiting > 0 {
                    let title = format!("CodeCollab: receiving {waiting} files");
                    self.out(Output::Progress(Progress::Begin {
                        token: "codecollab/join".into(),
                        title,
                        total: waiting,
                    }));
                }
                self.pending = Some(Pending::Join { reply, root, name, waiting });
                self.set_connection(Connection::Connected, None);
                self.send_peers();
                self.check_join_done(None);
            }
            None => {
                // A reconnect: resume every document from where we were.
                let Some(session) = self.session.as_mut() else { return };
                session.peer = peer;
                session.peers = peers.into_iter().map(|p| (p.peer, p)).collect();
                let known: Vec<(DocId, Revision)> = session.docs.iter().map(|(id, d)| (*id, d.ot.revision())).collect();
                let unknown: Vec<DocInfo> = docs.into_iter().filter(|d| !session.docs.contains_key(&d.doc)).collect();
                let creates: Vec<String> = session.pending_opens.keys().cloned().collect();
                for (doc, since) in known {
                    self.send(ClientMsg::Subscribe { doc, since: Some(since) });
                }
                for doc in unknown {
                    self.fetch(doc);
                }
                for path in creates {
                    self.create(&path);
                }
                self.set_connection(Connection::Connected, None);
                self.send_peers();
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_session(
        &self,
        id: String,
        server: String,
        token: String,
        root: PathBuf,
        peer: PeerId,
        role: Role,
        peers: Vec<PeerInfo>,
    ) -> Session {
        Session {
            id,
            server,
            token,
            root,
            peer,
            role,
            host: false,
            peers: peers.into_iter().map(|p| (p.peer, p)).collect(),
            docs: HashMap::new(),
            pending_opens: HashMap::new(),
            uris: HashMap::new(),
            last_doc: HashMap::new(),
            fetching: HashMap::new(),
            limits: DEFAULT_LIMITS,
            created_partly: std::collections::HashSet::new(),
            retries: 0,
            retry_scheduled: false,
            warned: std::collections::HashSet::new(),
            removing: None,
            created_by: HashMap::new(),
            case_keys: HashMap::new(),
        }
    }

    fn check_share_done(&mut self) {
        let done = matches!(&self.pending, Some(Pending::Share { uploads: Some(0), .. }));
        if done {
            if let (Some(Pending::Share { reply, .. }), Some(session)) = (self.pending.take(), &self.session) {
                let message = format!("{} files shared", session.docs.len());
                self.out(Output::Progress(Progress::End { token: "codecollab/share".into(), message }));
                let (invite, view_invite) = self.invites.clone().unwrap_or_default();
                let _ = reply.send(Ok(ShareResult { session: session.id.clone(), invite, view_invite }));
            }
        }
    }

    fn check_join_done(&mut self, received: Option<()>) {
        if let Some(Pending::Join { waiting, .. }) = &mut self.pending {
            if received.is_some() {
                *waiting = waiting.saturating_sub(1);
            }
            if *waiting == 0 {
                if let (Some(Pending::Join { reply, .. }), Some(session)) = (self.pending.take(), &self.session) {
                    let message = format!("{} files received", session.docs.len());
                    self.out(Output::Progress(Progress::End { token: "codecollab/join".into(), message }));
                    let mut files: Vec<String> = session.docs.values().map(|d| d.path.clone()).collect();
                    files.sort();
                    let _ = reply.send(Ok(JoinResult { session: session.id.clone(), files }));
                }
            }
        }
    }

    // ---- documents ----

    fn snapshot(&mut self, doc: DocId, path: String, revision: Revision, text: String, last_seq: Option<u64>) {
        let encoding = self.encoding;
        let Some(session) = self.session.as_mut() else { return };
        let joining = matches!(self.pending, Some(Pending::Join { .. }));
        let sharing = matches!(self.pending, Some(Pending::Share { .. }));
        session.fetching.remove(&path);
        if session.docs.contains_key(&doc) {
            return self.resync_from_snapshot(doc, revision, &text, last_seq);
        }
        let refusal = refusal_of(session, &path, Some(doc)).or_else(|| {
            let chars = text.chars().count();
            (chars > MAX_DOCUMENT_CHARS)
                .then(|| format!("{chars} chars is more than a daemon holds ({MAX_DOCUMENT_CHARS})"))
        });
        if let Some(why) = refusal {
            session.pending_opens.remove(&path);
            if session.case_keys.get(&codecollab_protocol::path::case_key(&path)).is_some_and(|(id, _)| *id == doc) {
                session.release(&path);
            }
            self.send(ClientMsg::Unsubscribe { doc });
            self.refused_on_disk(&path, &why);
            if joining {
                self.check_join_done(Some(()));
            }
            return;
        }
        let max_op_bytes = op_bytes(&session.limits);
        let rope = Rope::from_str(&text);
        let mut entry = Doc {
            path: path.clone(),
            server_text: rope.clone(),
            text: rope,
            ot: Client::new(revision, 1).with_max_op_bytes(max_op_bytes),
            retry: false,
            // Ours when we shared it; otherwise it came from the session, and one that runs by itself waits.
            unapproved: (!sharing && codecollab_protocol::path::runs_by_itself(&path)).then(|| {
                let by = session.created_by.remove(&doc).unwrap_or_else(|| "the session".to_owned());
                Unapproved { by: [by].into(), told: false }
            }),
            editor: None,
            dirty: !sharing,
            my_selections: None,
            presence: HashMap::new(),
        };
        // An editor that opened this path before the session had it is tracked now. What it has that the
        // session does not (the rest of a file we created in part, what the user typed while the server
        // answered) is merged three ways with the session's text, as a resync is: nothing typed is lost, and
        // the editor is brought in line with the rest.
        let mut first_edit = None;
        let mut rest = None;
        if let Some(open) = session.pending_opens.remove(&path) {
            session.created_partly.remove(&path);
            let base = open.sent.as_deref().unwrap_or(&open.opened);
            let ours =
                codecollab_protocol::merge::diff(base, &open.text, Some(std::time::Instant::now() + MERGE_DEADLINE));
            match codecollab_protocol::merge::merge(
                base,
                &ours,
                &text,
                Some(std::time::Instant::now() + MERGE_DEADLINE),
            ) {
                Ok(merged) if !merged.ours.is_noop() => {
                    if merged.ours.apply_to(&mut entry.text).is_ok() {
                        rest = entry.ot.apply_local(merged.ours).ok().flatten();
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%path, %error, "the editor's text could not be merged; the session's wins")
                }
            }
            let (buffer, edit) =
                EditorBuffer::open_after(open.uri.clone(), encoding, &open.text, &entry.text, open.edits);
            session.uris.insert(open.uri.clone(), doc);
            first_edit = edit.map(|e| (open.uri, e));
            entry.editor = Some(buffer);
            entry.dirty = false;
            // The editor shows it, and writes it when its user saves.
            entry.unapproved = None;
        }
        session.claim(doc, &path);
        session.docs.insert(doc, entry);
        if let Some(out) = rest {
            self.send_op(doc, out);
        }
        if let Some((uri, edit)) = first_edit {
            self.out(Output::Edit(EditParams { uri, revision: edit.revision, changes: edit.changes }));
        }
        if let Some(Pending::Share { uploads: Some(n), .. }) = &mut self.pending {
            *n = n.saturating_sub(1);
            let (left, done) = (*n, self.session.as_ref().map_or(0, |s| s.docs.len()));
            if done % 25 == 0 && left > 0 {
                let token = "codecollab/share".into();
                self.out(Output::Progress(Progress::Report { token, done, total: done + left }));
            }
            self.check_share_done();
        } else if joining {
            self.flush_disk();
            self.check_join_done(Some(()));
        }
    }

    /// A snapshot of a document we hold: the server's history (in memory and in its store) no longer reaches back
    /// to our revision. Rebuilds on it with a three-way merge (our base, the snapshot, our pending edits), which
    /// keeps every insertion on both sides; the editor follows through the usual revision pair.
    fn resync_from_snapshot(&mut self, doc: DocId, revision: Revision, text: &str, last_seq: Option<u64>) {
        let Some(d) = self.session.as_mut().and_then(|s| s.docs.get_mut(&doc)) else { return };
        if revision < d.ot.revision() {
            // The server went back in time (restored from an old backup): what it lost, we have. Merging with its
            // older text would delete that; keep ours and stop instead.
            let reason = format!(
                "the server's copy of {} is older than ours (revision {revision}, ours {}): it lost recent changes",
                d.path,
                d.ot.revision()
            );
            return self.end_session(&reason);
        }
        tracing::info!(doc, path = %d.path, from = d.ot.revision(), to = revision, "resync from a snapshot (three-way merge)");
        let base = d.server_text.to_string();
        let deadline = std::time::Instant::now() + MERGE_DEADLINE;
        let rebased = match d.ot.resync(&base, revision, text, last_seq, Some(deadline)) {
            Ok(rebased) => rebased,
            Err(error) => {
                let reason = format!("{} could not be merged with the server's copy ({error})", d.path);
                return self.end_session(&reason);
            }
        };
        let edit = d.editor.as_mut().map(|e| (e.uri.clone(), e.daemon_edit(rebased.apply.clone(), &d.text)));
        if rebased.apply.apply_to(&mut d.text).is_err() {
            let reason = format!("{} could not be merged with the server's copy", d.path);
            return self.end_session(&reason);
        }
        d.server_text =
            if rebased.send.is_none() && d.ot.is_synchronized() { d.text.clone() } else { Rope::from_str(text) };
        d.dirty |= d.editor.is_none();
        d.retry = false;
        if d.editor.is_none() && !rebased.apply.is_noop() && codecollab_protocol::path::runs_by_itself(&d.path) {
            d.unapproved.get_or_insert_with(Unapproved::default).by.insert("someone".into());
        }
        transform_selections(d, &rebased.apply);
        if let Some((uri, DaemonEdit { revision, changes })) = edit {
            self.out(Output::Edit(EditParams { uri, revision, changes }));
        }
        if let Some(out) = rebased.send {
            self.send_op(doc, out);
        }
        self.send_cursors(doc);
    }

    /// Asks for the whole of a document we do not hold yet; until its snapshot arrives, an editor opening its path
    /// waits for it instead of creating the file again.
    fn fetch(&mut self, doc: DocInfo) {
        let Some(session) = self.session.as_mut() else { return };
        if session.docs.len() + session.fetching.len() >= MAX_DOCUMENTS {
            let why = format!("this session lists more than {MAX_DOCUMENTS} files, the most a daemon takes");
            return self.refused_on_disk("the rest of the files", &why);
        }
        if let Some(why) = refusal_of(session, &doc.path, Some(doc.doc)) {
            return self.refused_on_disk(&doc.path, &why);
        }
        session.claim(doc.doc, &doc.path);
        session.fetching.insert(doc.path, doc.doc);
        self.send(ClientMsg::Subscribe { doc: doc.doc, since: None });
    }

    /// Tells the user, once per path, that a file of the session is not taken to disk, and why.
    fn refused_on_disk(&mut self, path: &str, why: &str) {
        let Some(session) = self.session.as_mut() else { return };
        if session.warned.insert(path.to_owned()) {
            tracing::warn!(%path, %why, "not written");
            self.out(Output::Message(MessageType::WARNING, format!("CodeCollab: not writing {path}: {why}")));
        }
    }

    fn send_op(&self, doc: DocId, out: Outgoing) {
        self.send(ClientMsg::Op { doc, seq: out.seq, base_revision: out.base_revision, op: out.op });
    }

    fn resync(&mut self, doc: DocId, reason: &str) {
        tracing::warn!(doc, %reason, "out of step with the server; reloading the document");
        self.send(ClientMsg::Subscribe { doc, since: None });
    }

    fn remote_op(&mut self, doc: DocId, revision: Revision, op: TextOperation, peer: PeerId) {
        let Some(session) = self.session.as_mut() else { return };
        let author = session.peers.get(&peer).map_or_else(|| "someone".to_owned(), |p| p.name.clone());
        let Some(d) = session.docs.get_mut(&doc) else { return };
        if d.editor.is_none() && codecollab_protocol::path::runs_by_itself(&d.path) {
            d.unapproved.get_or_insert_with(Unapproved::default).by.insert(author);
        }
        if op.target_len() > MAX_DOCUMENT_CHARS {
            let path = d.path.clone();
            session.docs.remove(&doc);
            session.release(&path);
            self.send(ClientMsg::Unsubscribe { doc });
            let why =
                format!("it grew past {MAX_DOCUMENT_CHARS} chars, more than a daemon holds; it left this session");
            return self.refused_on_disk(&path, &why);
        }
        let transformed = match d.ot.apply_server(revision, op.clone()) {
            Ok(op) => op,
            Err(error) => return self.resync(doc, &error.to_string()),
        };
        let edit =
            d.editor.as_mut().map(|editor| (editor.uri.clone(), editor.daemon_edit(transformed.clone(), &d.text)));
        if transformed.apply_to(&mut d.text).is_err() {
            return self.resync(doc, "a transformed operation did not fit");
        }
        if d.ot.is_synchronized() {
            // Nothing pending: the two texts are the same, one rope shared.
            d.server_text = d.text.clone();
        } else if op.apply_to(&mut d.server_text).is_err() {
            return self.resync(doc, "an operation did not fit the server's text");
        }
        d.dirty |= d.editor.is_none();
        transform_selections(d, &transformed);
        if let Some((uri, DaemonEdit { revision, changes })) = edit {
            self.out(Output::Edit(EditParams { uri, revision, changes }));
        }
    }

    // ---- the editor ----

    fn doc_for_uri(&self, uri: &str) -> Option<DocId> {
        self.session.as_ref()?.uris.get(uri).copied()
    }

    fn open(&mut self, params: OpenParams) {
        let encoding = self.encoding;
        let Some(session) = self.session.as_mut() else {
            tracing::info!(uri = %params.uri, "open ignored: not in a session");
            return;
        };
        let Some(path) = workspace::uri_to_path(&params.uri).and_then(|p| workspace::relative(&session.root, &p))
        else {
            tracing::info!(uri = %params.uri, "open ignored: outside the shared folder");
            return;
        };
        if let Err(why) = codecollab_protocol::path::check(&path) {
            tracing::info!(%path, %why, "open ignored: not a session path");
            return;
        }
        let existing = session.docs.iter().find(|(_, d)| d.path == path).map(|(id, _)| *id);
        match existing {
            Some(doc) => {
                let d = session.docs.get_mut(&doc).expect("found above");
                let (buffer, edit) = EditorBuffer::open(params.uri.clone(), encoding, &params.text, &d.text);
                d.editor = Some(buffer);
                // The editor shows it now, and writes it when its user saves.
                d.unapproved = None;
                session.uris.insert(params.uri.clone(), doc);
                if let Some(edit) = edit {
                    self.out(Output::Edit(EditParams {
                        uri: params.uri,
                        revision: edit.revision,
                        changes: edit.changes,
                    }));
                }
                self.send_cursors(doc);
            }
            // Another peer's file on its way to us: its snapshot takes this open up.
            None if session.fetching.contains_key(&path) => {
                session.pending_opens.insert(path, PendingOpen::new(params));
            }
            None if session.role == Role::Edit => {
                session.pending_opens.insert(path.clone(), PendingOpen::new(params));
                self.create(&path);
            }
            None => tracing::info!(%path, "open ignored: view-only sessions cannot add files"),
        }
    }

    /// An edit of a buffer whose file the session does not hold yet: kept with the buffer until it does. False if
    /// no such buffer is waiting.
    fn pending_edit(&mut self, params: &EditParams) -> bool {
        let encoding = self.encoding;
        let Some(session) = self.session.as_mut() else { return false };
        let Some(open) = session.pending_opens.values_mut().find(|o| o.uri == params.uri) else { return false };
        // No daemon edit was sent to this buffer yet, so every edit is made on the editor's own text.
        let rope = Rope::from_str(&open.text);
        match position::changes_to_operation(&rope, &params.changes, encoding) {
            Ok((_, after)) => {
                open.text = after.to_string();
                open.edits += 1;
            }
            Err(error) => tracing::warn!(uri = %params.uri, %error, "an edit of a waiting buffer was refused"),
        }
        true
    }

    /// Asks the server to create `path` with the text our editor opened it with: whole if it fits in a frame, else
    /// its start, the rest following as edits once the document exists. A file larger than a document may be is
    /// refused here, with a message.
    fn create(&mut self, path: &str) {
        let Some(session) = self.session.as_mut() else { return };
        let Some(open) = session.pending_opens.get_mut(path) else { return };
        let chars = open.text.chars().count() as u64;
        if chars > session.limits.max_document_chars {
            session.pending_opens.remove(path);
            let limit = session.limits.max_document_chars;
            let text = format!("CodeCollab: {path} is not shared: {chars} chars is over the server's limit of {limit}");
            return self.out(Output::Message(MessageType::ERROR, text));
        }
        let mut cut = open.text.len().min(op_bytes(&session.limits));
        while !open.text.is_char_boundary(cut) {
            cut -= 1;
        }
        let text = open.text[..cut].to_owned();
        open.sent = Some(text.clone());
        if cut < open.text.len() {
            session.created_partly.insert(path.to_owned());
        }
        self.send(ClientMsg::Create { path: path.to_owned(), text });
    }

    fn editor_edit(&mut self, params: EditParams) {
        let Some(doc) = self.doc_for_uri(&params.uri) else {
            if !self.pending_edit(&params) {
                tracing::warn!(uri = %params.uri, "edit refused: unknown document (send collab/open first)");
            }
            return;
        };
        let readonly = self.session.as_ref().is_some_and(|s| s.role == Role::View);
        let Some(session) = self.session.as_mut() else { return };
        let Some(d) = session.docs.get_mut(&doc) else { return };
        let Some(editor) = d.editor.as_mut() else { return };
        let outcome = match editor.editor_edit(params.revision, &params.changes, readonly) {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(uri = %params.uri, %error, "edit refused");
                let message = format!("CodeCollab: an edit was refused ({error}); reopen the file to resynchronize");
                self.out(Output::Message(MessageType::WARNING, message));
                return;
            }
        };
        let uri = editor.uri.clone();
        if readonly && !params.changes.is_empty() {
            let _ = self
                .output
                .send(Output::Message(MessageType::WARNING, "CodeCollab: this session is view-only for you".into()));
        }
        let mut send = None;
        let limit = session.limits.max_document_chars;
        if let Some(op) = outcome.apply {
            if op.target_len() as u64 > limit && op.target_len() > op.base_len() {
                // Over the server's limit, which would refuse it: undo it in the editor now, and say so.
                let Ok(undo) = op.invert_in(&d.text) else { return };
                let _ = op.apply_to(&mut d.text);
                let undo_edit = editor.daemon_edit(undo.clone(), &d.text);
                let _ = undo.apply_to(&mut d.text);
                if let Some(edit) = outcome.resend {
                    self.out(Output::Edit(EditParams {
                        uri: uri.clone(),
                        revision: edit.revision,
                        changes: edit.changes,
                    }));
                }
                self.out(Output::Edit(EditParams { uri, revision: undo_edit.revision, changes: undo_edit.changes }));
                let text = format!(
                    "CodeCollab: that edit was undone: it would make the file {} chars long, over the server's limit of {limit}",
                    op.target_len()
                );
                return self.out(Output::Message(MessageType::ERROR, text));
            }
            if op.apply_to(&mut d.text).is_err() {
                tracing::error!("an editor edit did not fit the daemon's text");
                return;
            }
            for selections in d.presence.values_mut() {
                for s in selections.iter_mut() {
                    *s = s.transform(&op, Bias::Before);
                }
            }
            if !op.is_noop() {
                match d.ot.apply_local(op) {
                    Ok(out) => send = out,
                    Err(error) => tracing::error!(%error, "the OT client refused a local edit"),
                }
            }
        }
        if let Some(edit) = outcome.resend {
            self.out(Output::Edit(EditParams { uri, revision: edit.revision, changes: edit.changes }));
        }
        if let Some(out) = send {
            self.send_op(doc, out);
        }
    }

    fn editor_cursor(&mut self, params: CursorParams) {
        let Some(doc) = self.doc_for_uri(&params.uri) else { return };
        let encoding = self.encoding;
        let Some(d) = self.session.as_mut().and_then(|s| s.docs.get_mut(&doc)) else { return };
        let mut selections = Vec::with_capacity(params.ranges.len());
        for range in &params.ranges {
            let (Ok(anchor), Ok(head)) =
                (position::offset(&d.text, range.start, encoding), position::offset(&d.text, range.end, encoding))
            else {
                tracing::warn!(uri = %params.uri, "cursor ignored: position past the end");
                return;
            };
            selections.push(Selection { anchor, head });
        }
        d.my_selections = Some(selections);
        self.flush_cursor(doc);
    }

    /// Sends our selections once every local edit is acknowledged (so they are in the server's coordinates).
    fn flush_cursor(&mut self, doc: DocId) {
        let connected = self.relay.is_some() && self.connection == Connection::Connected;
        let Some(d) = self.session.as_mut().and_then(|s| s.docs.get_mut(&doc)) else { return };
        if !connected || !d.ot.is_synchronized() {
            return;
        }
        if let Some(selections) = d.my_selections.take() {
            let revision = d.ot.revision();
            self.send(ClientMsg::Cursor { doc, revision, selections });
        }
    }

    fn close(&mut self, params: CloseParams) {
        let Some(session) = self.session.as_mut() else { return };
        // Closed before the session held it: nothing to track any more (a Create already sent still creates it).
        session.pending_opens.retain(|_, open| open.uri != params.uri);
        if let Some(doc) = session.uris.remove(&params.uri) {
            if let Some(d) = session.docs.get_mut(&doc) {
                d.editor = None;
                d.dirty = true;
            }
        }
    }

    fn send_cursors(&self, doc: DocId) {
        let Some(session) = &self.session else { return };
        let Some(d) = session.docs.get(&doc) else { return };
        let Some(editor) = &d.editor else { return };
        let cursors = d
            .presence
            .iter()
            .filter_map(|(peer, selections)| {
                let info = session.peers.get(peer)?;
                let ranges: Vec<Range> = selections
                    .iter()
                    .map(|s| Range {
                        start: position::position(&d.text, s.anchor, self.encoding),
                        end: position::position(&d.text, s.head, self.encoding),
                    })
                    .collect();
                Some(RemoteCursor { peer: *peer, name: info.name.clone(), color: info.color.clone(), ranges })
            })
            .collect();
        self.out(Output::Cursors(CursorsParams { uri: editor.uri.clone(), cursors }));
    }

    fn peer_list(&self) -> Vec<Peer> {
        let Some(session) = &self.session else { return Vec::new() };
        let root = &session.root;
        let mut peers: Vec<Peer> = session
            .peers
            .values()
            .map(|p| {
                let uri = session
                    .last_doc
                    .get(&p.peer)
                    .and_then(|doc| session.docs.get(doc))
                    .filter(|d| d.presence.contains_key(&p.peer))
                    .or_else(|| session.docs.values().find(|d| d.presence.contains_key(&p.peer)))
                    .and_then(|d| workspace::resolve(root, &d.path).ok())
                    .map(|path| workspace::path_to_uri(&path));
                Peer {
                    id: p.peer,
                    name: p.name.clone(),
                    color: p.color.clone(),
                    role: match p.role {
                        Role::Edit => "edit".into(),
                        Role::View => "view".into(),
                    },
                    uri,
                    you: p.peer == session.peer,
                }
            })
            .collect();
        peers.sort_by_key(|p| p.id);
        peers
    }

    fn send_peers(&self) {
        self.out(Output::Peers(PeersParams { peers: self.peer_list() }));
    }

    fn flush_disk(&mut self) {
        let allow_runnable = self.allow_runnable_files;
        let Some(session) = self.session.as_mut() else { return };
        let mut refused = Vec::new();
        let mut approvals = Vec::new();
        for d in session.docs.values_mut() {
            if !d.dirty || d.editor.is_some() {
                continue;
            }
            if let Some(unapproved) = d.unapproved.as_mut().filter(|_| !allow_runnable) {
                // Others changed a file that runs by itself: it waits for the user's yes (`collab/allow`).
                if !std::mem::replace(&mut unapproved.told, true) {
                    let path = workspace::resolve(&session.root, &d.path).ok();
                    let created = path.as_ref().is_none_or(|p| !p.exists());
                    let uri = path.map(|p| workspace::path_to_uri(&p)).unwrap_or_default();
                    let by = unapproved.by.iter().cloned().collect();
                    approvals.push(ApprovalParams { uri, path: d.path.clone(), by, created });
                }
                continue;
            }
            // A failure is told once and not retried on every tick; the next change tries again.
            d.dirty = false;
            d.unapproved = None;
            if let Err(error) = workspace::write(&session.root, &d.path, &d.text.to_string()) {
                refused.push((d.path.clone(), format!("{error:#}")));
            }
        }
        for approval in approvals {
            tracing::info!(path = %approval.path, by = ?approval.by, "waiting for the user's yes to write");
            self.out(Output::Approval(approval));
        }
        for (path, why) in refused {
            self.refused_on_disk(&path, &why);
        }
    }

    /// The user allowed writing the file at `uri` (`collab/allow`): writes it now, as the session has it, if it was
    /// waiting. Later changes by others wait again.
    fn allow(&mut self, uri: &str) -> bool {
        let Some(session) = self.session.as_mut() else { return false };
        let Some(path) = workspace::uri_to_path(uri).and_then(|p| workspace::relative(&session.root, &p)) else {
            return false;
        };
        let Some(d) = session.docs.values_mut().find(|d| d.path == path && d.unapproved.is_some()) else {
            return false;
        };
        d.unapproved = None;
        d.dirty = false;
        if d.editor.is_some() {
            return true;
        }
        match workspace::write(&session.root, &d.path, &d.text.to_string()) {
            Ok(()) => true,
            Err(error) => {
                let why = format!("{error:#}");
                self.refused_on_disk(&path, &why);
                false
            }
        }
    }

    /// `collab/removePeer`: asks the server to remove the peer named `name`; answers once it has.
    fn remove_peer(&mut self, name: String, reply: Reply<()>) {
        let Some(session) = self.session.as_mut() else {
            let _ = reply.send(Err(rpc_error("not in a session")));
            return;
        };
        if !session.host {
            let _ = reply.send(Err(rpc_error("only the host of the session can remove people")));
            return;
        }
        if session.removing.is_some() {
            let _ = reply.send(Err(rpc_error("a removal is already in progress")));
            return;
        }
        session.removing = Some((name.clone(), reply));
        self.send(ClientMsg::RemovePeer { name });
    }
}

/// The most text one operation (or a created file's first frame) carries toward this server: a quarter of its frame
/// limit, at most [`MAX_OP_BYTES`], so a frame always has room for its envelope.
fn op_bytes(limits: &Limits) -> usize {
    (limits.max_frame_bytes / 4).clamp(1, MAX_OP_BYTES as u64) as usize
}

/// Moves our unsent selections and everyone's presence in `doc` through `op`, applied to its text.
fn transform_selections(doc: &mut Doc, op: &TextOperation) {
    if let Some(mine) = doc.my_selections.as_mut() {
        for s in mine.iter_mut() {
            *s = s.transform(op, Bias::Before);
        }
    }
    for selections in doc.presence.values_mut() {
        for s in selections.iter_mut() {
            *s = s.transform(op, Bias::Before);
        }
    }
}

impl std::fmt::Debug for MainLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MainLoop").field("connection", &self.connection).finish()
    }
}
