//! The connection's lifecycle, one enum: idle; connecting for a share or join; connected, with its session;
//! reconnecting, with its session and backoff. Every transition is here: starting a share or join, the relay's
//! events (connected, messages, closed), `welcome` (a new session, or the old one resumed), leaving, and ending a
//! session for good. Each connection attempt has an epoch: events of an older attempt are ignored.

use std::path::PathBuf;
use std::time::Duration;

use codecollab_protocol::wire::{ClientMsg, DocInfo, Role, ServerMsg};
use tower_lsp_server::jsonrpc;

use crate::lsp_ext::{JoinParams, JoinResult, OnConflict, ShareParams, ShareResult};
use crate::main_loop::{rpc_error, Event, MainLoop, Reply};
use crate::relay::{self, Relay, RelayEvent};
use crate::session::{Ended, Session, Starting, Welcome};
use crate::workspace;

/// Where the daemon is with the server.
#[derive(Debug)]
pub enum Connection {
    /// In no session.
    Idle,
    /// A share or join on its way: connecting (`relay` once connected), then waiting for `welcome`.
    Connecting { start: Start, relay: Option<Relay> },
    /// In a session, connected and welcomed.
    Connected { session: Session, relay: Relay },
    /// In a session whose connection dropped: the next attempt comes after a backoff that grows with `failures`
    /// (`relay` once connected, until `welcome`). Edits go on locally meanwhile.
    Reconnecting { session: Session, failures: u32, relay: Option<Relay> },
}

/// A share or join before the server's `welcome`.
#[derive(Debug)]
pub struct Start {
    reply: StartReply,
    root: PathBuf,
    name: String,
    server: String,
    /// The invites to the session a share created: (edit, view).
    invites: Option<(String, String)>,
    /// A join's choice for local files that differ from the session's.
    on_conflict: OnConflict,
}

#[derive(Debug)]
enum StartReply {
    Share(Reply<ShareResult>),
    Join(Reply<JoinResult>),
}

impl StartReply {
    /// Answers the share or join with `message` as its error.
    fn refuse(self, message: String) {
        match self {
            StartReply::Share(reply) => {
                let _ = reply.send(Err(rpc_error(message)));
            }
            StartReply::Join(reply) => {
                let _ = reply.send(Err(rpc_error(message)));
            }
        }
    }

    /// Answers the share or join with an error: `could not share: {reason}`.
    fn fail(self, reason: &str) {
        let verb = match self {
            StartReply::Share(_) => "share",
            StartReply::Join(_) => "join",
        };
        self.refuse(format!("could not {verb}: {reason}"));
    }
}

impl Start {
    fn fail(self, reason: &str) {
        self.reply.fail(reason);
    }
}

impl Starting {
    fn reply(self) -> StartReply {
        match self {
            Starting::Share { reply, .. } => StartReply::Share(reply),
            Starting::Join { reply, .. } => StartReply::Join(reply),
        }
    }

    pub(crate) fn fail(self, reason: &str) {
        self.reply().fail(reason);
    }

    /// Answers the share or join with `message` as its error.
    pub(crate) fn refuse(self, message: String) {
        self.reply().refuse(message);
    }
}

impl Connection {
    pub fn session(&self) -> Option<&Session> {
        match self {
            Connection::Connected { session, .. } | Connection::Reconnecting { session, .. } => Some(session),
            Connection::Idle | Connection::Connecting { .. } => None,
        }
    }

    /// What the editor is told the state is.
    pub fn state_name(&self) -> &'static str {
        match self {
            Connection::Idle => "idle",
            Connection::Connecting { .. } => "connecting",
            Connection::Reconnecting { .. } => "reconnecting",
            Connection::Connected { session, .. } if session.role == Role::View => "readonly",
            Connection::Connected { .. } => "connected",
        }
    }
}

pub fn random_client_id() -> u64 {
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

/// The web client's link for an invite: `http(s)://host:port/s/ID#TOKEN` for `ws(s)://host:port/?session=ID#TOKEN`
/// (the server serves the session page beside its WebSocket).
pub(crate) fn web_invite(invite: &str) -> String {
    let (url, token) = invite.split_once('#').unwrap_or((invite, ""));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let session = query.split('&').find_map(|p| p.strip_prefix("session=")).unwrap_or_default();
    let base = base.trim_end_matches('/');
    let base = match base.split_once("://") {
        Some(("wss", rest)) => format!("https://{rest}"),
        Some(("ws", rest)) => format!("http://{rest}"),
        _ => base.to_owned(),
    };
    format!("{base}/s/{session}#{token}")
}

fn parse_invite(invite: &str) -> Option<(String, String)> {
    let (url, token) = invite.trim().split_once('#')?;
    let url = url.split('?').next()?.trim_end_matches('/').to_owned();
    (url.starts_with("ws://") || url.starts_with("wss://")).then(|| (url, token.to_owned()))
}

impl MainLoop {
    pub(crate) fn set_state(&self, message: Option<String>) {
        let session = self.connection.session().map(|s| s.id.clone());
        self.editor.state(self.connection.state_name(), session, message);
    }

    /// Starts a connection attempt (a new epoch).
    fn connect(&mut self, url: String, token: Option<String>) {
        self.epoch += 1;
        match relay::tls_config(self.ca_file.as_deref()) {
            Ok(tls) => relay::spawn(url, token, self.epoch, tls, self.events.clone(), Event::Relay),
            // A CA file that cannot be read will not be readable on the next attempt either.
            Err(error) => self.closed(format!("TLS setup failed: {error:#}"), true),
        }
    }

    /// The shared folder of a share or join request, if the daemon may start one now.
    fn session_root(&self, root: &str) -> jsonrpc::Result<PathBuf> {
        if !matches!(self.connection, Connection::Idle) {
            return Err(rpc_error("already in a session: leave it first"));
        }
        workspace::uri_to_path(root)
            .ok_or_else(|| jsonrpc::Error::invalid_params("root must be a file:// URI of a folder"))
    }

    pub(crate) fn share(&mut self, params: ShareParams, reply: Reply<ShareResult>) {
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
        let start = Start {
            reply: StartReply::Share(reply),
            root,
            name,
            server: server.clone(),
            invites: None,
            on_conflict: OnConflict::Refuse,
        };
        self.connection = Connection::Connecting { start, relay: None };
        self.set_state(None);
        self.connect(server, params.token);
    }

    pub(crate) fn join(&mut self, params: JoinParams, reply: Reply<JoinResult>) {
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
        let start = Start {
            reply: StartReply::Join(reply),
            root,
            name,
            server: server.clone(),
            invites: None,
            on_conflict: params.on_conflict,
        };
        self.connection = Connection::Connecting { start, relay: None };
        self.set_state(None);
        self.connect(server, Some(token));
    }

    /// Leaves whatever session or start is in progress: files no editor has open are written, the connection
    /// closes (its relay task ends when its sender drops).
    pub(crate) fn leave(&mut self) {
        self.flush_disk_at_end();
        self.stop("left the session");
        self.set_state(None);
    }

    /// Drops the connection and the session, answering a share or join still waiting with `reason`.
    fn stop(&mut self, reason: &str) {
        self.epoch += 1;
        match std::mem::replace(&mut self.connection, Connection::Idle) {
            Connection::Connecting { start, .. } => start.fail(reason),
            Connection::Connected { session, .. } | Connection::Reconnecting { session, .. } => {
                if let Some(starting) = session.starting {
                    starting.fail(reason);
                }
            }
            Connection::Idle => {}
        }
    }

    /// Ends the session for good (the server refused it, or lost what we had): writes every file no editor has
    /// open, stops reconnecting, and tells the user what happened and what is kept.
    pub(crate) fn end_session(&mut self, reason: &str) {
        let root = self.connection.session().map(|s| s.root.display().to_string()).unwrap_or_default();
        self.flush_disk_at_end();
        let text = format!(
            "the session ended: {reason}. Your files and the edits not yet sent are kept in {root} \
             (open files in your editor). The host can share the folder again and send a new invite."
        );
        tracing::warn!(%reason, "session ended");
        self.editor.error(&text);
        self.stop(reason);
        self.set_state(Some(format!("CodeCollab: {text}")));
    }

    pub(crate) fn relay_event(&mut self, event: RelayEvent) {
        match event {
            RelayEvent::Connected { epoch, sender } if epoch == self.epoch => match &mut self.connection {
                Connection::Connecting { start, relay } => {
                    let first = match &start.reply {
                        StartReply::Share(_) => ClientMsg::CreateSession { name: start.name.clone() },
                        StartReply::Join(_) => {
                            ClientMsg::Join { client_id: self.client_id, name: Some(start.name.clone()) }
                        }
                    };
                    let _ = sender.send(first);
                    *relay = Some(sender);
                }
                Connection::Reconnecting { relay, .. } => {
                    let _ = sender.send(ClientMsg::Join { client_id: self.client_id, name: None });
                    *relay = Some(sender);
                }
                // Nothing to connect for any more: dropping the sender ends the attempt.
                Connection::Idle | Connection::Connected { .. } => {}
            },
            RelayEvent::BadFrame { epoch, reason, .. } if epoch == self.epoch => self.editor.warning(reason),
            RelayEvent::Messages { epoch, messages, .. } if epoch == self.epoch => {
                for message in messages {
                    self.server_message(message);
                }
            }
            RelayEvent::Closed { epoch, reason, refused } if epoch == self.epoch => {
                tracing::info!(%reason, refused, "connection to the server lost");
                self.closed(reason, refused);
            }
            _ => {} // an old connection's event
        }
    }

    /// The connection ended (or could not start). A start fails; a session refused for good ends; any other
    /// session reconnects, after a backoff with jitter that grows with each failure in a row (to 3 s), for as
    /// long as the editor runs.
    fn closed(&mut self, reason: String, refused: bool) {
        let (session, failures) = match std::mem::replace(&mut self.connection, Connection::Idle) {
            Connection::Idle => return,
            Connection::Connecting { start, .. } => {
                // A share refused at the door: the server wants a host token (none given, or this one refused).
                let reason = match &start.reply {
                    StartReply::Share(_) if refused => format!(
                        "{reason}: creating a session on this server needs a host token, and none was given or this \
                         one was refused (VS Code: CodeCollab: Set Host Token; Neovim: setup({{ token = ... }}); the \
                         server's `codecollab-server token --name <you>` makes one)"
                    ),
                    _ => reason,
                };
                start.fail(&reason);
                self.epoch += 1;
                return self.set_state(Some(reason));
            }
            Connection::Connected { session, .. } => (session, 0),
            Connection::Reconnecting { session, failures, .. } => (session, failures),
        };
        if refused {
            self.connection = Connection::Reconnecting { session, failures, relay: None };
            return self.end_session(&format!("the server no longer accepts this session ({reason})"));
        }
        let mut session = session;
        session.disconnected();
        let failures = failures + 1;
        let base = 100u64.saturating_mul(1 << failures.min(5)).min(3_000);
        let jitter = random_client_id() % (base / 2 + 1);
        let delay = Duration::from_millis(base / 2 + jitter);
        let (epoch, events) = (self.epoch, self.events.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::Reconnect { epoch });
        });
        self.connection = Connection::Reconnecting { session, failures, relay: None };
        // Told once per outage, not once per attempt.
        if failures == 1 {
            self.set_state(Some(reason));
        }
    }

    /// Time to try again, if nothing else happened meanwhile.
    pub(crate) fn reconnect(&mut self, epoch: u64) {
        if epoch != self.epoch {
            return;
        }
        if let Connection::Reconnecting { session, relay: None, .. } = &self.connection {
            let (server, token) = (session.server.clone(), session.token.clone());
            self.connect(server, Some(token));
        }
    }

    fn server_message(&mut self, message: ServerMsg) {
        match message {
            ServerMsg::SessionCreated { session, url, host_token: _, edit_token, view_token } => {
                let Connection::Connecting { start, relay: Some(relay) } = &mut self.connection else { return };
                let server = url.unwrap_or_else(|| start.server.clone());
                start.invites = Some((invite(&server, &session, &edit_token), invite(&server, &session, &view_token)));
                let _ = relay.send(ClientMsg::Join { client_id: self.client_id, name: Some(start.name.clone()) });
            }
            ServerMsg::Welcome { session, peer, name: _, role, host, token, peers, docs, limits, unshared } => {
                let welcome = Welcome { id: session, token, peer, role, host, peers, limits, unshared };
                self.welcome(welcome, docs);
            }
            ServerMsg::Error { code, message, doc } if self.connection.session().is_none() => {
                tracing::warn!(?code, %message, ?doc, "the server refused");
                self.stop(&message);
                self.set_state(Some(message));
            }
            message => {
                let Some((session, io)) = self.session_io() else { return };
                if let Err(ended) = session.server_message(message, &io) {
                    self.ended(ended);
                }
            }
        }
    }

    /// `welcome`: a share or join becomes a session (its files go up, or come down), or a session resumes.
    fn welcome(&mut self, welcome: Welcome, docs: Vec<DocInfo>) {
        let start = match std::mem::replace(&mut self.connection, Connection::Idle) {
            Connection::Connecting { start, relay: Some(relay) } => {
                let session = Session::new(start.server.clone(), start.root.clone(), welcome);
                self.connection = Connection::Connected { session, relay };
                start
            }
            Connection::Reconnecting { session, relay: Some(relay), .. } | Connection::Connected { session, relay } => {
                self.connection = Connection::Connected { session, relay };
                if let Some((session, io)) = self.session_io() {
                    if let Err(ended) = session.resume(welcome, docs, &io) {
                        return self.ended(ended);
                    }
                }
                self.set_state(None);
                return self.editor.peers(self.connection.session());
            }
            other => {
                self.connection = other;
                return;
            }
        };
        let Start { reply, root, invites, on_conflict, .. } = start;
        let starting = match reply {
            StartReply::Share(reply) => {
                self.set_state(None);
                Starting::Share { reply, uploads: 0, invites: invites.unwrap_or_default() }
            }
            StartReply::Join(reply) => {
                if let Err(error) = std::fs::create_dir_all(&root) {
                    let _ = reply.send(Err(rpc_error(format!("creating {}: {error}", root.display()))));
                    return self.leave();
                }
                Starting::Join { reply, waiting: 0, on_conflict, conflicts: Vec::new() }
            }
        };
        let joining = matches!(starting, Starting::Join { .. });
        let Some((session, io)) = self.session_io() else { return };
        session.starting = Some(starting);
        if let Err(error) = session.begin(docs, &io) {
            if let Some(starting) = session.starting.take() {
                starting.refuse(format!("reading {}: {error:#}", root.display()));
            }
            return self.leave();
        }
        if joining {
            self.set_state(None);
        }
        self.editor.peers(self.connection.session());
        if let Some((session, io)) = self.session_io() {
            if let Err(ended) = session.check_started(&io) {
                self.ended(ended);
            }
        }
    }

    /// The session cannot go on: ended for good with a word to the user, or a join refused (already answered).
    pub(crate) fn ended(&mut self, ended: Ended) {
        match ended {
            Ended::Lost(reason) => self.end_session(&reason),
            Ended::JoinRefused => {
                self.stop("join refused");
                self.set_state(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_invite_is_the_invite_as_a_link_to_the_session_page() {
        let plain = invite("ws://127.0.0.1:7830/", "ab12", "cc1.x.y");
        assert_eq!(web_invite(&plain), "http://127.0.0.1:7830/s/ab12#cc1.x.y");
        let behind_a_proxy = invite("wss://collab.example.com/team", "ab12", "t");
        assert_eq!(web_invite(&behind_a_proxy), "https://collab.example.com/team/s/ab12#t");
    }
}
