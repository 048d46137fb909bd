//! The daemon's main loop: the one owner of all state, driven by a closed [`Event`] enum. LSP handlers, the relay
//! task and timers only convert and forward; everything that can happen is handled here, in order, and dispatched
//! to the [`Connection`] lifecycle (`crate::connection`) or the [`Session`] (`crate::session`).

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tower_lsp_server::jsonrpc;

use crate::connection::{random_client_id, Connection};
use crate::lsp_ext::*;
use crate::output::{self, Editor, Output};
use crate::position::Encoding;
use crate::relay::RelayEvent;
use crate::session::{Io, Session};

pub type Reply<T> = oneshot::Sender<jsonrpc::Result<T>>;

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
        when_sent: bool,
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
    /// `collab/undo` (`redo` false) or `collab/redo`.
    Undo {
        params: UndoParams,
        redo: bool,
        reply: Reply<UndoResult>,
    },
    Open(OpenParams),
    Edit(EditParams),
    Cursor(CursorParams),
    Close(CloseParams),
    /// Files the editor created (`workspace/didCreateFiles`), by URI.
    FilesCreated(Vec<String>),
    /// Files or folders the editor renamed, (old URI, new URI); `done` is answered once the session has them
    /// (`workspace/willRenameFiles` waits for it, so the editor's reopening under the new name finds them).
    FilesRenamed {
        renames: Vec<(String, String)>,
        done: Option<oneshot::Sender<()>>,
    },
    /// Files or folders the editor deleted (`workspace/didDeleteFiles`), by URI.
    FilesDeleted(Vec<String>),
    /// Paths under the shared folder that changed on disk (see `crate::watcher`).
    DiskChanged(Vec<PathBuf>),
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

pub fn rpc_error(message: impl Into<String>) -> jsonrpc::Error {
    jsonrpc::Error { code: jsonrpc::ErrorCode::ServerError(-32001), message: message.into().into(), data: None }
}

#[derive(Debug)]
pub struct MainLoop {
    /// Events for the loop itself (timers, the relay). Unbounded on purpose: the editor's notifications are
    /// forwarded to it synchronously, in the order they arrive (a bounded channel would make them wait, and
    /// waiting notifications can resume out of order); the relay's share of it is bounded by the relay
    /// ([`crate::relay`] waits for its earlier messages to be handled).
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) editor: Editor,
    pub(crate) ca_file: Option<PathBuf>,
    /// Write others' changes to files that run by themselves without asking.
    allow_runnable_files: bool,
    /// The current connection attempt; events of older ones are ignored. Counts across sessions, so an old
    /// session's events never pass for a new one's.
    pub(crate) epoch: u64,
    /// This daemon's id toward the server, the same across reconnects.
    pub(crate) client_id: u64,
    pub(crate) connection: Connection,
    /// A `collab/leave {whenSent}` waiting for the server to acknowledge every edit.
    leaving: Option<Reply<()>>,
}

impl MainLoop {
    pub fn new(events: mpsc::UnboundedSender<Event>, output: mpsc::UnboundedSender<Output>) -> MainLoop {
        MainLoop {
            events,
            editor: Editor::new(output),
            ca_file: None,
            allow_runnable_files: false,
            epoch: 0,
            client_id: random_client_id(),
            connection: Connection::Idle,
            leaving: None,
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
            self.leave_once_sent();
        }
        flusher.abort();
        self.flush_disk_at_end();
    }

    /// The session, with the way out of it (the server only while connected).
    pub(crate) fn session_io(&mut self) -> Option<(&mut Session, Io<'_>)> {
        let (session, relay) = match &mut self.connection {
            Connection::Connected { session, relay } => (session, Some(&*relay)),
            Connection::Reconnecting { session, .. } => (session, None),
            Connection::Idle | Connection::Connecting { .. } => return None,
        };
        let io = Io {
            relay,
            editor: &self.editor,
            allow_runnable_files: self.allow_runnable_files,
            events: &self.events,
            epoch: self.epoch,
        };
        Some((session, io))
    }

    /// Leaves, answering the `collab/leave {whenSent}` waiting, once the server has every edit (or at once if the
    /// session is gone).
    fn leave_once_sent(&mut self) {
        if self.leaving.is_none() || self.connection.session().is_some_and(|s| !s.unsent().is_empty()) {
            return;
        }
        self.leave();
        if let Some(reply) = self.leaving.take() {
            let _ = reply.send(Ok(()));
        }
    }

    pub(crate) fn flush_disk(&mut self) {
        if let Some((session, io)) = self.session_io() {
            session.flush_disk(&io);
        }
    }

    /// The last write before the session or the daemon ends: every changed file, even one the editor said it is
    /// moving (it will not say more).
    pub(crate) fn flush_disk_at_end(&mut self) {
        if let Some((session, io)) = self.session_io() {
            session.editor_moves_done();
            session.flush_disk(&io);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Initialized { encoding, ca_file, allow_runnable_files } => {
                self.editor.encoding = encoding;
                self.allow_runnable_files = allow_runnable_files;
                self.ca_file = ca_file.or_else(|| std::env::var_os("CODECOLLAB_CA_FILE").map(PathBuf::from));
            }
            Event::Share { params, reply } => self.share(params, reply),
            Event::Join { params, reply } => self.join(params, reply),
            Event::Leave { when_sent: true, reply } => {
                if let Some(earlier) = self.leaving.replace(reply) {
                    let _ = earlier.send(Err(rpc_error("a later collab/leave replaced this one")));
                }
            }
            Event::Leave { when_sent: false, reply } => {
                self.leave();
                if let Some(waiting) = self.leaving.take() {
                    let _ = waiting
                        .send(Err(rpc_error("left at once (a later collab/leave) before the server had every edit")));
                }
                let _ = reply.send(Ok(()));
            }
            Event::Status { reply } => {
                let session = self.connection.session();
                let _ = reply.send(Ok(StatusResult {
                    state: self.connection.state_name().into(),
                    session: session.map(|s| s.id.clone()),
                    peers: output::peer_list(session),
                    unsent: session.map(Session::unsent).unwrap_or_default(),
                }));
            }
            Event::Allow { params, reply } => {
                let written = self.session_io().is_some_and(|(session, io)| session.allow(&params.uri, &io));
                let _ = reply.send(Ok(AllowResult { written }));
            }
            Event::Undo { params, redo, reply } => {
                let done = self.session_io().is_some_and(|(session, io)| session.undo(&params.uri, redo, &io));
                // The change goes to the editor before the answer.
                let (sent, gone_out) = oneshot::channel();
                self.editor.then(sent);
                tokio::spawn(async move {
                    let _ = gone_out.await;
                    let _ = reply.send(Ok(UndoResult { done }));
                });
            }
            Event::RemovePeer { params, reply } => match self.session_io() {
                Some((session, io)) => session.remove_peer(params.name, reply, &io),
                None => {
                    let _ = reply.send(Err(rpc_error("not in a session")));
                }
            },
            Event::Open(params) => match self.session_io() {
                Some((session, io)) => session.open(params, &io),
                None => tracing::info!(uri = %params.uri, "open ignored: not in a session"),
            },
            Event::Edit(params) => match self.session_io() {
                Some((session, io)) => session.editor_edit(params, &io),
                None => tracing::warn!(uri = %params.uri, "edit refused: not in a session"),
            },
            Event::Cursor(params) => {
                if let Some((session, io)) = self.session_io() {
                    session.editor_cursor(params, &io);
                }
            }
            Event::Close(params) => {
                if let Some((session, _)) = self.session_io() {
                    session.close(params);
                }
            }
            Event::FilesCreated(uris) => {
                if let Some((session, io)) = self.session_io() {
                    session.files_created(uris, &io);
                }
            }
            Event::FilesRenamed { renames, done } => {
                if let Some((session, io)) = self.session_io() {
                    session.files_renamed(renames, done.is_none(), &io);
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Event::FilesDeleted(uris) => {
                if let Some((session, io)) = self.session_io() {
                    session.files_deleted(uris, &io);
                }
            }
            Event::DiskChanged(paths) => {
                if let Some((session, io)) = self.session_io() {
                    if let Err(ended) = session.disk_changed(paths, &io) {
                        self.ended(ended);
                    }
                }
            }
            Event::Relay(event) => self.relay_event(event),
            Event::Reconnect { epoch } => self.reconnect(epoch),
            Event::FlushDisk => self.flush_disk(),
            Event::Shutdown => self.flush_disk_at_end(),
            Event::Retry { epoch } => {
                let current = self.epoch;
                if let Some((session, mut io)) = self.session_io() {
                    if epoch != current {
                        // A reconnect sent everything again already.
                        io.relay = None;
                    }
                    session.retry(&io);
                }
            }
        }
    }
}
