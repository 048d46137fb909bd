//! One task per connection: the HTTP request head (health, metrics, or an authenticated WebSocket upgrade),
//! then the WebSocket loop: decode frames and forward them to the session or document task, write what those
//! tasks queue, keep the heartbeat, enforce the rate limit, and close cleanly on shutdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codecollab_protocol::wire::{ClientMsg, DocId, ErrorCode, PeerId, Role, ServerMsg, FRAGMENT_BYTES, SUBPROTOCOL};
use codecollab_protocol::{ClientId, DecodeError};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::auth::{unix_now, Claims, TokenKind};
use crate::document::{DocCommand, DocHandle};
use crate::http::{self, RequestHead, Rewind};
use crate::outbox::{Outbound, Outbox, OutboxReceiver};
use crate::server::Shared;
use crate::session::{Identity, Refusal, SessionCommand, SessionHandle};

/// Close codes beyond the standard ones; documented in docs/wire-protocol.md.
pub const CLOSE_HEARTBEAT: u16 = 4000;
pub const CLOSE_UNSUPPORTED_VERSION: u16 = 4002;
pub const CLOSE_REMOVED: u16 = 4003;
pub const CLOSE_TOO_SLOW: u16 = 4008;

/// The longest a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end, as authenticated at the upgrade.
enum Auth {
    /// No token, on a server that lets loopback users create sessions.
    Anonymous,
    Token(Claims),
}

/// A connection that has joined a session.
struct Member {
    session_id: String,
    session: SessionHandle,
    peer: PeerId,
    client: ClientId,
    name: String,
    role: Role,
    docs: HashMap<DocId, DocHandle>,
}

/// Token bucket for operations and cursor updates.
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    updated: Instant,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        RateLimit { tokens: f64::from(burst), rate: f64::from(rate), burst: f64::from(burst), updated: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.updated).as_secs_f64() * self.rate).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves one accepted stream (plain TCP or TLS) to the end.
pub async fn serve<S>(mut stream: S, address: std::net::IpAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The request head and the handshake are boxed: their futures would otherwise stay part of this one, held by
    // every connection for its whole life.
    let head = match tokio::time::timeout(HEAD_TIMEOUT, Box::pin(http::read_head(&mut stream))).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => return,
        Ok(Err(error)) => {
            tracing::debug!(%error, "bad request head");
            let _ = http::respond(&mut stream, "400 Bad Request", "text/plain", "bad request\n").await;
            return;
        }
        Err(_) => return,
    };
    if !head.is_websocket_upgrade() {
        let (status, content_type, body) = match (head.method.as_str(), head.path.as_str()) {
            ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
            ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", shared.metrics.render()),
            _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        };
        let _ = http::respond(&mut stream, status, content_type, &body).await;
        return;
    }
    if let Some(left) = shared.auth_throttle.blocked(address) {
        shared.metrics.refused(ErrorCode::RateLimited);
        let body = format!("too many failed attempts from this address; try again in {}s\n", left.as_secs() + 1);
        let _ = http::respond(&mut stream, "429 Too Many Requests", "text/plain", &body).await;
        return;
    }
    let auth = match authenticate(&head, &shared) {
        Ok(auth) => auth,
        Err(message) => {
            shared.metrics.refused(ErrorCode::Unauthorized);
            shared.auth_throttle.failed(address);
            tracing::info!(reason = %message, %address, "upgrade refused");
            let body = format!("{message}\n");
            let _ = http::respond(&mut stream, "401 Unauthorized", "text/plain", &body).await;
            return;
        }
    };
    let offered = head.subprotocols();
    let version_ok = offered.iter().any(|p| p == SUBPROTOCOL);
    // A client that names another version gets it echoed so the handshake completes and it can read the close
    // frame explaining the refusal; one that names none gets a plain HTTP refusal.
    let echo = if version_ok {
        Some(SUBPROTOCOL.to_owned())
    } else {
        offered.iter().find(|p| p.starts_with("codecollab.")).cloned()
    };
    let Some(echo) = echo else {
        shared.metrics.refused(ErrorCode::UnsupportedVersion);
        let body = format!("WebSocket subprotocol {SUBPROTOCOL} required\n");
        let _ = http::respond(&mut stream, "400 Bad Request", "text/plain", &body).await;
        return;
    };
    // tungstenite zero-fills up to `read_buffer_size` before every socket read; with the default 128 KiB and
    // keystroke-sized frames that memset was the server's largest cost. Large frames still arrive in pieces.
    // tungstenite keeps its write buffer at its largest size for the life of the connection; by default it fills
    // to 128 KiB before writing. Writing whenever it passes one fragment keeps it small on every connection (a
    // thousand peers joining one session had left each holding 22 KB).
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(FRAGMENT_BYTES)
        .max_message_size(Some(shared.config.limits.max_frame_bytes))
        .max_frame_size(Some(shared.config.limits.max_frame_bytes));
    // The error type is tungstenite's, large by its design; this callback never returns it.
    #[allow(clippy::result_large_err)]
    let callback = |_: &Request, mut response: Response| {
        if let Ok(value) = HeaderValue::from_str(&echo) {
            response.headers_mut().insert("sec-websocket-protocol", value);
        }
        Ok(response)
    };
    let stream = Rewind::new(head.raw, stream);
    let mut ws = match Box::pin(tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config))).await {
        Ok(ws) => ws,
        Err(error) => {
            tracing::debug!(%error, "WebSocket handshake failed");
            return;
        }
    };
    if !version_ok {
        let reason = format!("unsupported protocol version; this server speaks {SUBPROTOCOL}");
        let _ = ws.close(Some(close_frame(CLOSE_UNSUPPORTED_VERSION, &reason))).await;
        return;
    }
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let (outbox, receiver) = Outbox::new(shared.config.limits.outbound_queue);
    let limits = &shared.config.limits;
    let mut connection = Connection {
        rate: RateLimit::new(limits.ops_per_second, limits.ops_burst),
        shared: shared.clone(),
        auth,
        outbox,
        member: None,
    };
    connection.run(&mut ws, receiver).await;
    connection.leave().await;
    shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

fn authenticate(head: &RequestHead, shared: &Shared) -> Result<Auth, String> {
    match head.bearer_token() {
        Some(token) => shared.secret.verify(token, unix_now()).map(Auth::Token).map_err(|e| e.to_string()),
        None if shared.config.open_session_creation() => Ok(Auth::Anonymous),
        None => Err("a token is required (Authorization: Bearer ...)".into()),
    }
}

/// Queues one binary message, in fragments of [`FRAGMENT_BYTES`] if it is longer (a snapshot of a large
/// document, say), so the connection's write buffer and the client's read buffer stay small.
async fn feed<S>(ws: &mut WebSocketStream<S>, frame: Bytes) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if frame.len() <= FRAGMENT_BYTES {
        return ws.feed(Message::Binary(frame)).await;
    }
    let mut start = 0;
    while start < frame.len() {
        let end = (start + FRAGMENT_BYTES).min(frame.len());
        let opcode = OpCode::Data(if start == 0 { Data::Binary } else { Data::Continue });
        ws.feed(Message::Frame(Frame::message(frame.slice(start..end), opcode, end == frame.len()))).await?;
        start = end;
    }
    Ok(())
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() }
}

struct Connection {
    shared: Arc<Shared>,
    auth: Auth,
    outbox: Outbox,
    member: Option<Member>,
    rate: RateLimit,
}

impl Connection {
    async fn run<S>(&mut self, ws: &mut WebSocketStream<S>, mut receiver: OutboxReceiver)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let interval = self.shared.config.heartbeat;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut shutdown = self.shared.shutdown.clone();
        let mut last_heard = Instant::now();
        let close = loop {
            tokio::select! {
                _ = shutdown.changed() => break Some((CloseCode::Away.into(), "server shutting down".to_owned())),
                _ = receiver.overflow.notified() => {
                    break Some((CLOSE_TOO_SLOW, "connection too slow to keep up; reconnect to resume".to_owned()));
                }
                outbound = receiver.frames.recv() => {
                    let Some(outbound) = outbound else { break None };
                    match self.write(ws, outbound, &mut receiver).await {
                        Ok(None) => {}
                        Ok(Some(close)) => break Some(close),
                        Err(_) => break None,
                    }
                }
                incoming = ws.next() => {
                    match incoming {
                        Some(Ok(Message::Binary(frame))) => {
                            last_heard = Instant::now();
                            self.shared.metrics.bytes_in.fetch_add(frame.len() as u64, Ordering::Relaxed);
                            self.handle_frame(&frame).await;
                        }
                        Some(Ok(Message::Text(_))) => {
                            last_heard = Instant::now();
                            self.refuse(ErrorCode::Malformed, "frames must be binary MessagePack", None);
                        }
                        Some(Ok(Message::Close(_))) | None => break None,
                        Some(Ok(_)) => last_heard = Instant::now(), // ping, pong
                        Some(Err(WsError::Capacity(error))) => {
                            self.shared.metrics.refused(ErrorCode::FrameTooLarge);
                            tracing::info!(%error, "frame over the size limit");
                            break Some((CloseCode::Size.into(), format!(
                                "frame exceeds the limit of {} bytes", self.shared.config.limits.max_frame_bytes
                            )));
                        }
                        Some(Err(error)) => {
                            tracing::debug!(%error, "connection error");
                            break None;
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > interval * 2 {
                        tracing::info!(peer = ?self.member.as_ref().map(|m| &m.name), "heartbeat missed twice; dropping");
                        break Some((CLOSE_HEARTBEAT, "no heartbeat for two intervals".to_owned()));
                    }
                    if ws.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                }
            }
        };
        if let Some((code, reason)) = close {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(close_frame(code, &reason)))).await;
        }
    }

    /// Writes one queued frame and whatever else is queued, then flushes once.
    async fn write<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        first: Outbound,
        receiver: &mut OutboxReceiver,
    ) -> Result<Option<(u16, String)>, WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(outbound) = next.take() {
            match outbound {
                Outbound::Frame(frame) => {
                    self.shared.metrics.bytes_out.fetch_add(frame.len() as u64, Ordering::Relaxed);
                    feed(ws, frame).await?;
                }
                Outbound::Close(code, reason) => {
                    ws.flush().await?;
                    return Ok(Some((code, reason)));
                }
            }
            written += 1;
            if written < 256 {
                next = receiver.frames.try_recv().ok();
            }
        }
        ws.flush().await?;
        Ok(None)
    }

    fn send(&self, msg: &ServerMsg) {
        self.outbox.send(msg);
    }

    fn refuse(&self, code: ErrorCode, message: impl Into<String>, doc: Option<DocId>) {
        let message = message.into();
        self.shared.metrics.refused(code);
        tracing::info!(?code, %message, peer = ?self.member.as_ref().map(|m| &m.name), "refused");
        self.send(&ServerMsg::Error { code, message, doc });
    }

    fn refuse_with(&self, refusal: Refusal, doc: Option<DocId>) {
        self.refuse(refusal.code, refusal.message, doc);
    }

    async fn handle_frame(&mut self, frame: &[u8]) {
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
            ClientMsg::Op { doc, seq, base_revision, op } if self.member.is_some() => {
                self.op(doc, seq, base_revision, op).await
            }
            other => Box::pin(self.handle_control(other)).await,
        }
    }

    /// Every message but an operation from a member.
    async fn handle_control(&mut self, msg: ClientMsg) {
        match msg {
            ClientMsg::CreateSession { name } => self.create_session(name).await,
            ClientMsg::Join { client_id, name } => self.join(client_id, name).await,
            other => {
                let Some(member) = self.member.as_ref() else {
                    return self.refuse(ErrorCode::ProtocolViolation, "join a session first", None);
                };
                let (session, peer) = (member.session.clone(), member.peer);
                match other {
                    ClientMsg::Create { path, text } => {
                        let result = session.ask(|reply| SessionCommand::Create { peer, path, text, reply }).await;
                        match result {
                            Ok(handle) => self.subscribe_handle(handle, None).await,
                            Err(refusal) => self.refuse_with(refusal, None),
                        }
                    }
                    ClientMsg::Subscribe { doc, since } => self.subscribe(doc, since).await,
                    ClientMsg::Unsubscribe { doc } => {
                        if let Some(handle) = self.member.as_mut().and_then(|m| m.docs.remove(&doc)) {
                            handle.send(DocCommand::Unsubscribe { peer }).await;
                        }
                    }
                    ClientMsg::Op { doc, seq, base_revision, op } => self.op(doc, seq, base_revision, op).await,
                    ClientMsg::Cursor { doc, revision, selections } => {
                        if !self.rate.take() {
                            return self.refuse(ErrorCode::RateLimited, "too many updates per second", Some(doc));
                        }
                        if let Some(handle) = self.member.as_ref().and_then(|m| m.docs.get(&doc)) {
                            handle.send(DocCommand::Cursor { peer, revision, selections }).await;
                        }
                    }
                    ClientMsg::Delete { doc } => {
                        if let Err(refusal) = session.ask(|reply| SessionCommand::Delete { peer, doc, reply }).await {
                            self.refuse_with(refusal, Some(doc));
                        }
                    }
                    ClientMsg::Rename { doc, path } => {
                        let result = session.ask(|reply| SessionCommand::Rename { peer, doc, path, reply }).await;
                        if let Err(refusal) = result {
                            self.refuse_with(refusal, Some(doc));
                        }
                    }
                    ClientMsg::RemovePeer { name } => {
                        if let Err(refusal) =
                            session.ask(|reply| SessionCommand::RemovePeer { peer, name, reply }).await
                        {
                            self.refuse_with(refusal, None);
                        }
                    }
                    ClientMsg::CreateSession { .. } | ClientMsg::Join { .. } => {}
                }
            }
        }
    }

    async fn create_session(&mut self, name: String) {
        if self.member.is_some() {
            return self.refuse(ErrorCode::ProtocolViolation, "already in a session", None);
        }
        let allowed = match &self.auth {
            Auth::Anonymous => true,
            Auth::Token(claims) => claims.kind == TokenKind::Host,
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
                self.auth = Auth::Token(host_claims);
                self.send(&created);
            }
            Err(refusal) => self.refuse_with(refusal, None),
        }
    }

    async fn join(&mut self, client: ClientId, name: Option<String>) {
        if self.member.is_some() {
            return self.refuse(ErrorCode::ProtocolViolation, "already in a session", None);
        }
        let Auth::Token(claims) = &self.auth else {
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
        let exp = claims.exp;
        let session = match self.shared.session(&session_id).await {
            Ok(Some(session)) => session,
            Ok(None) => return self.refuse(ErrorCode::Unauthorized, "this session does not exist", None),
            Err(refusal) => return self.refuse_with(refusal, None),
        };
        // A personal token for reconnecting: same session, name and role, and never longer-lived than the token
        // it was obtained with.
        let mut personal = self.shared.secret.claims(TokenKind::Peer, Duration::ZERO);
        personal.session = Some(session_id.clone());
        personal.name = Some(name.clone());
        personal.role = Some(role);
        personal.host = host;
        personal.exp = exp;
        let token = self.shared.secret.sign(&personal);
        let identity = Identity { name: name.clone(), role, host };
        let outbox = self.outbox.clone();
        let joined = match session.ask(|reply| SessionCommand::Join { identity, token, outbox, reply }).await {
            Ok(joined) => joined,
            Err(refusal) => return self.refuse_with(refusal, None),
        };
        tracing::info!(session = %session_id, %name, ?role, peer = joined.peer, "joined");
        self.member = Some(Member { session_id, session, peer: joined.peer, client, name, role, docs: HashMap::new() });
    }

    async fn subscribe(&mut self, doc: DocId, since: Option<u64>) {
        let Some(member) = self.member.as_ref() else { return };
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
        let Some(member) = self.member.as_mut() else { return };
        let command =
            DocCommand::Subscribe { peer: member.peer, client: member.client, since, outbox: self.outbox.clone() };
        member.docs.insert(handle.doc, handle.clone());
        if !handle.send(command).await {
            member.docs.remove(&handle.doc);
            self.refuse(ErrorCode::UnknownDocument, "the document was deleted", Some(handle.doc));
        }
    }

    async fn op(&mut self, doc: DocId, seq: u64, base_revision: u64, op: codecollab_protocol::TextOperation) {
        let Some(member) = self.member.as_ref() else { return };
        if member.role != Role::Edit {
            return self.refuse(ErrorCode::Forbidden, "this session is view-only for you", Some(doc));
        }
        if !self.rate.take() {
            return self.refuse(ErrorCode::RateLimited, "too many operations per second", Some(doc));
        }
        let Some(handle) = member.docs.get(&doc) else {
            return self.refuse(ErrorCode::UnknownDocument, "subscribe to the document before editing it", Some(doc));
        };
        let command = DocCommand::Op {
            peer: member.peer,
            client: member.client,
            seq,
            base_revision,
            op,
            outbox: self.outbox.clone(),
        };
        if !handle.send(command).await {
            self.refuse(ErrorCode::UnknownDocument, "the document was deleted", Some(doc));
        }
    }

    /// Leaves the session and every document: presence removed, others told.
    async fn leave(&mut self) {
        if let Some(member) = self.member.take() {
            for handle in member.docs.values() {
                handle.send(DocCommand::Unsubscribe { peer: member.peer }).await;
            }
            member.session.tell(SessionCommand::Leave { peer: member.peer }).await;
            tracing::info!(session = %member.session_id, name = %member.name, "left");
        }
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
