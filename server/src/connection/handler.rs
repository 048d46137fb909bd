//! What each message from a client does. The connection is first authenticated but outside any session (it may
//! create one, or join one), then a member of one session: its messages go to the session task (files, peers) or
//! straight to a document task (operations, cursors). Permissions are checked here, once, from the signed token:
//! a view-only member changes nothing; only the host removes peers (the session checks who its host is).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use codecollab_protocol::wire::{ClientMsg, DocId, ErrorCode, PeerId, Role, ServerMsg};
use codecollab_protocol::{ClientId, DecodeError, TextOperation};

use super::rate::RateLimit;
use super::Auth;
use crate::auth::TokenKind;
use crate::document::{DocCommand, DocHandle};
use crate::outbox::Outbox;
use crate::refusal::Refusal;
use crate::session::{Identity, SessionCommand, SessionHandle};
use crate::shared::Shared;

/// Where the connection is.
#[derive(Debug)]
enum State {
    /// Authenticated, in no session yet.
    Outside(Auth),
    /// Joined a session.
    Member(Member),
}

/// A connection that has joined a session.
#[derive(Debug)]
struct Member {
    session_id: String,
    session: SessionHandle,
    peer: PeerId,
    client: ClientId,
    name: String,
    role: Role,
    docs: HashMap<DocId, DocHandle>,
}

impl Member {
    /// Refuses a change to the session's text or files from a view-only member.
    fn may_edit(&self) -> Result<(), Refusal> {
        match self.role {
            Role::Edit => Ok(()),
            Role::View => Err(Refusal::new(ErrorCode::Forbidden, "this session is view-only for you")),
        }
    }
}

#[derive(Debug)]
pub struct Handler {
    shared: Arc<Shared>,
    outbox: Outbox,
    rate: RateLimit,
    state: State,
}

impl Handler {
    pub(super) fn new(shared: Arc<Shared>, auth: Auth, outbox: Outbox) -> Handler {
        let limits = &shared.config.limits;
        let rate = RateLimit::new(limits.ops_per_second, limits.ops_burst);
        Handler { shared, outbox, rate, state: State::Outside(auth) }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The member's name, for the log.
    pub fn name(&self) -> Option<&str> {
        match &self.state {
            State::Member(member) => Some(&member.name),
            State::Outside(_) => None,
        }
    }

    fn member(&self) -> Option<&Member> {
        match &self.state {
            State::Member(member) => Some(member),
            State::Outside(_) => None,
        }
    }

    fn member_mut(&mut self) -> Option<&mut Member> {
        match &mut self.state {
            State::Member(member) => Some(member),
            State::Outside(_) => None,
        }
    }

    fn send(&self, msg: &ServerMsg) {
        self.outbox.send(msg);
    }

    pub fn refuse(&self, code: ErrorCode, message: impl Into<String>, doc: Option<DocId>) {
        let message = message.into();
        self.shared.metrics.refused(code);
        tracing::info!(?code, %message, peer = ?self.name(), "refused");
        self.send(&ServerMsg::Error { code, message, doc });
    }

    fn refuse_with(&self, refusal: Refusal, doc: Option<DocId>) {
        self.refuse(refusal.code, refusal.message, doc);
    }

    pub async fn handle_frame(&mut self, frame: &[u8]) {
        let received = Instant::now();
        let msg = match ClientMsg::decode(frame, self.shared.config.limits.max_frame_bytes) {
            Ok(msg) => msg,
            Err(DecodeError::TooLarge { len, limit }) => {
                return self.refuse(ErrorCode::FrameTooLarge, format!("frame of {len} bytes is over {limit}"), None)
            }
            Err(error @ DecodeError::UnsupportedVersion(_)) => {
                return self.refuse(ErrorCode::UnsupportedVersion, error.to_string(), None)
            }
            Err(error) => return self.refuse(ErrorCode::Malformed, error.to_string(), None),
        };
        match msg {
            // The hot path stays inline; everything else is boxed (below), so the connection's future, which
            // every idle connection holds, is not as large as the largest of those handlers.
            ClientMsg::Op { doc, seq, base_revision, op } => self.op(doc, seq, base_revision, op, received).await,
            other => Box::pin(self.handle_control(other)).await,
        }
    }

    /// Every message but an operation.
    async fn handle_control(&mut self, msg: ClientMsg) {
        let member = match &self.state {
            State::Outside(_) => {
                return match msg {
                    ClientMsg::CreateSession { name } => self.create_session(name).await,
                    ClientMsg::Join { client_id, name } => self.join(client_id, name).await,
                    _ => self.refuse(ErrorCode::ProtocolViolation, "join a session first", None),
                }
            }
            State::Member(member) => member,
        };
        let (session, peer) = (member.session.clone(), member.peer);
        let may_edit = member.may_edit();
        match msg {
            ClientMsg::CreateSession { .. } | ClientMsg::Join { .. } => {
                self.refuse(ErrorCode::ProtocolViolation, "already in a session", None)
            }
            ClientMsg::Create { path, text } => {
                if let Err(refusal) = may_edit {
                    return self.refuse_with(refusal, None);
                }
                match session.ask(|reply| SessionCommand::Create { peer, path, text, reply }).await {
                    Ok(handle) => self.subscribe_handle(handle, None).await,
                    Err(refusal) => self.refuse_with(refusal, None),
                }
            }
            ClientMsg::Subscribe { doc, since } => self.subscribe(doc, since).await,
            ClientMsg::Unsubscribe { doc } => {
                if let Some(handle) = self.member_mut().and_then(|m| m.docs.remove(&doc)) {
                    handle.send(DocCommand::Unsubscribe { peer }).await;
                }
            }
            ClientMsg::Op { doc, seq, base_revision, op } => self.op(doc, seq, base_revision, op, Instant::now()).await,
            ClientMsg::Cursor { doc, revision, selections } => {
                if !self.rate.take() {
                    return self.refuse(ErrorCode::RateLimited, "too many updates per second", Some(doc));
                }
                if let Some(handle) = self.member().and_then(|m| m.docs.get(&doc)) {
                    handle.send(DocCommand::Cursor { peer, revision, selections }).await;
                }
            }
            ClientMsg::Delete { doc } => {
                let result = match may_edit {
                    Ok(()) => session.ask(|reply| SessionCommand::Delete { peer, doc, reply }).await,
                    Err(refusal) => Err(refusal),
                };
                if let Err(refusal) = result {
                    self.refuse_with(refusal, Some(doc));
                }
            }
            ClientMsg::Rename { doc, path } => {
                let result = match may_edit {
                    Ok(()) => session.ask(|reply| SessionCommand::Rename { peer, doc, path, reply }).await,
                    Err(refusal) => Err(refusal),
                };
                if let Err(refusal) = result {
                    self.refuse_with(refusal, Some(doc));
                }
            }
            ClientMsg::Unshared { files } => {
                let result = match may_edit {
                    Ok(()) => session.ask(|reply| SessionCommand::Unshared { peer, files, reply }).await,
                    Err(refusal) => Err(refusal),
                };
                if let Err(refusal) = result {
                    self.refuse_with(refusal, None);
                }
            }
            ClientMsg::RemovePeer { name } => {
                if let Err(refusal) = session.ask(|reply| SessionCommand::RemovePeer { peer, name, reply }).await {
                    self.refuse_with(refusal, None);
                }
            }
        }
    }

    async fn create_session(&mut self, name: String) {
        let allowed = match &self.state {
            State::Outside(Auth::Anonymous) => true,
            State::Outside(Auth::Token(claims)) => claims.kind == TokenKind::Host,
            State::Member(_) => false,
        };
        if !allowed {
            return self.refuse(ErrorCode::Unauthorized, "creating a session needs a host token", None);
        }
        let name = match validate_name(&name) {
            Ok(name) => name,
            Err(refusal) => return self.refuse_with(refusal, None),
        };
        match self.shared.create_session(&name).await {
            Ok((created, host_claims)) => {
                // The host joins next, with the token it was just given.
                self.state = State::Outside(Auth::Token(host_claims));
                self.send(&created);
            }
            Err(refusal) => self.refuse_with(refusal, None),
        }
    }

    async fn join(&mut self, client: ClientId, name: Option<String>) {
        let State::Outside(Auth::Token(claims)) = &self.state else {
            return self.refuse(ErrorCode::Unauthorized, "joining a session needs an invite token", None);
        };
        let (Some(session_id), Some(role), TokenKind::Invite | TokenKind::Peer) =
            (claims.session.clone(), claims.role, claims.kind)
        else {
            return self.refuse(ErrorCode::Unauthorized, "this token does not grant access to a session", None);
        };
        let name = match (claims.kind, &claims.name) {
            (TokenKind::Peer, Some(name)) => name.clone(),
            _ => match validate_name(name.as_deref().unwrap_or("guest")) {
                Ok(name) => name,
                Err(refusal) => return self.refuse_with(refusal, None),
            },
        };
        let host = claims.kind == TokenKind::Peer && claims.host;
        let token = self.shared.secret.personal_token(claims, &session_id, &name, role);
        let session = match self.shared.session(&session_id).await {
            Ok(Some(session)) => session,
            Ok(None) => return self.refuse(ErrorCode::Unauthorized, "this session does not exist", None),
            Err(refusal) => return self.refuse_with(refusal, None),
        };
        let identity = Identity { name: name.clone(), role, host };
        let outbox = self.outbox.clone();
        let joined = match session.ask(|reply| SessionCommand::Join { identity, token, outbox, reply }).await {
            Ok(joined) => joined,
            Err(refusal) => return self.refuse_with(refusal, None),
        };
        tracing::info!(session = %session_id, %name, ?role, peer = joined.peer, "joined");
        let member = Member { session_id, session, peer: joined.peer, client, name, role, docs: HashMap::new() };
        self.state = State::Member(member);
    }

    async fn subscribe(&mut self, doc: DocId, since: Option<u64>) {
        let Some(member) = self.member() else { return };
        let handle = match member.docs.get(&doc) {
            Some(handle) => handle.clone(),
            None => match member.session.ask(|reply| SessionCommand::Open { doc, reply }).await {
                Ok(handle) => handle,
                Err(refusal) => return self.refuse_with(refusal, Some(doc)),
            },
        };
        self.subscribe_handle(handle, since).await;
    }

    async fn subscribe_handle(&mut self, handle: DocHandle, since: Option<u64>) {
        let outbox = self.outbox.clone();
        let Some(member) = self.member_mut() else { return };
        let command = DocCommand::Subscribe { peer: member.peer, client: member.client, since, outbox };
        member.docs.insert(handle.doc, handle.clone());
        if !handle.send(command).await {
            member.docs.remove(&handle.doc);
            self.refuse(ErrorCode::UnknownDocument, "the document was deleted", Some(handle.doc));
        }
    }

    /// An operation, read off the socket at `received`.
    async fn op(&mut self, doc: DocId, seq: u64, base_revision: u64, op: TextOperation, received: Instant) {
        let State::Member(member) = &self.state else {
            return self.refuse(ErrorCode::ProtocolViolation, "join a session first", None);
        };
        if let Err(refusal) = member.may_edit() {
            return self.refuse_with(refusal, Some(doc));
        }
        if !self.rate.take() {
            return self.refuse(ErrorCode::RateLimited, "too many operations per second", Some(doc));
        }
        let Some(handle) = member.docs.get(&doc) else {
            return self.refuse(ErrorCode::UnknownDocument, "subscribe to the document before editing it", Some(doc));
        };
        let (peer, client, outbox) = (member.peer, member.client, self.outbox.clone());
        if !handle.send(DocCommand::Op { peer, client, seq, base_revision, op, outbox, received }).await {
            self.refuse(ErrorCode::UnknownDocument, "the document was deleted", Some(doc));
        }
    }

    /// Leaves the session and every document: presence removed, others told.
    pub async fn leave(&mut self) {
        let State::Member(member) = std::mem::replace(&mut self.state, State::Outside(Auth::Anonymous)) else {
            return;
        };
        for handle in member.docs.values() {
            handle.send(DocCommand::Unsubscribe { peer: member.peer }).await;
        }
        member.session.tell(SessionCommand::Leave { peer: member.peer }).await;
        tracing::info!(session = %member.session_id, name = %member.name, "left");
    }
}

/// A display name: 1 to 64 characters, no control characters.
fn validate_name(name: &str) -> Result<String, Refusal> {
    let trimmed = name.trim();
    let count = trimmed.chars().count();
    if count == 0 || count > 64 || trimmed.chars().any(char::is_control) {
        return Err(Refusal::new(ErrorCode::ProtocolViolation, "a name is 1 to 64 characters, no control characters"));
    }
    Ok(trimmed.to_owned())
}
