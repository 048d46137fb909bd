//! One task per connection, from its first byte: the HTTP request head (the plain routes, or a WebSocket upgrade),
//! the failed-authentication throttle, authentication and subprotocol negotiation, the handshake; then the
//! [`socket`] loop runs the WebSocket, and the [`handler`] acts on each message.
//!
//! - [`handler`]: what each message does, with the connection's state (authenticated, or a member of a session);
//! - [`socket`]: reading, writing (what the session and document tasks queue), heartbeat, closing;
//! - [`rate`]: the token bucket for operations and cursor updates;
//! - [`relay`]: passing a client through to the node that serves its session (several nodes on PostgreSQL).

mod handler;
mod rate;
mod relay;
mod socket;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use codecollab_protocol::wire::{close, ErrorCode, SUBPROTOCOL};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

use crate::auth::{unix_now, Claims, TokenKind};
use crate::http::{self, RequestHead, Rewind};
use crate::outbox::Outbox;
use crate::shared::Shared;
use crate::store::SessionHome;

/// The longest a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end, as authenticated at the upgrade.
#[derive(Debug)]
enum Auth {
    /// No token, on a server that lets loopback users create sessions.
    Anonymous,
    Token(Claims),
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
        if let Some(page) = crate::web::page(&head) {
            let _ = http::respond_page(&mut stream, &page, head.method == "HEAD").await;
            return;
        }
        // Health is whether this node can read its store (a PostgreSQL cluster's database may be out of reach).
        let health = if head.path == "/healthz" { shared.store_health().await } else { Ok(()) };
        let (status, content_type, body) = http::route(&head, &shared.metrics, health);
        let _ = http::respond(&mut stream, status, content_type, &body).await;
        return;
    }
    if let Some(left) = shared.auth_throttle.blocked(address) {
        shared.metrics.refused(ErrorCode::RateLimited);
        let why = format!("too many failed attempts from this address; try again in {}s", left.as_secs() + 1);
        refuse(stream, head, "429 Too Many Requests", close::UNAUTHORIZED, &why, &shared).await;
        return;
    }
    let auth = match authenticate(&head, &shared) {
        Ok(auth) => auth,
        Err(message) => {
            shared.metrics.refused(ErrorCode::Unauthorized);
            shared.auth_throttle.failed(address);
            tracing::info!(reason = %message, %address, "upgrade refused");
            refuse(stream, head, "401 Unauthorized", close::UNAUTHORIZED, &message, &shared).await;
            return;
        }
    };
    // Several nodes: a session is served by one of them; the others relay its clients there.
    let home = match &auth {
        Auth::Token(claims) => match (&claims.session, claims.kind) {
            (Some(session), TokenKind::Invite | TokenKind::Peer) => match shared.session_home(session).await {
                Ok(home) => home,
                Err(refusal) => {
                    refuse(stream, head, "503 Service Unavailable", close::TRY_AGAIN_LATER, &refusal.message, &shared)
                        .await;
                    return;
                }
            },
            _ => SessionHome::Here,
        },
        Auth::Anonymous => SessionHome::Here,
    };
    let relayed = head.header(codecollab_net::RELAYED_HEADER).is_some();
    let token = head.bearer_token().unwrap_or_default().to_owned();
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
    let mut ws = match handshake(stream, head.raw, &echo, &shared).await {
        Ok(ws) => ws,
        Err(error) => {
            tracing::debug!(%error, "WebSocket handshake failed");
            return;
        }
    };
    if !version_ok {
        let reason = format!("unsupported protocol version; this server speaks {SUBPROTOCOL}");
        let _ = ws.close(Some(socket::close_frame(close::UNSUPPORTED_VERSION, &reason))).await;
        return;
    }
    if let SessionHome::Node(owner) = home {
        if relayed {
            // Relayed here by a node that took this one for the session's: it moved meanwhile. The client
            // reconnects and is routed afresh.
            let _ = ws.close(Some(socket::close_frame(close::MOVED, "the session moved to another server"))).await;
            return;
        }
        relay::run(&mut ws, &owner, &token, &shared).await;
        return;
    }
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let (outbox, receiver) = Outbox::new(shared.config.limits.outbound_queue);
    let mut handler = handler::Handler::new(shared.clone(), auth, outbox);
    socket::run(&mut ws, receiver, &mut handler).await;
    handler.leave().await;
    shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

/// Refuses an upgrade. A browser (it brings its token as a subprotocol, and cannot read an HTTP refusal's body)
/// gets the handshake and then a close frame with `code` and the reason; any other client a plain HTTP `status`.
async fn refuse<S>(mut stream: S, head: RequestHead, status: &str, code: u16, why: &str, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let browser = head.subprotocol_bearer().is_some() && head.subprotocols().iter().any(|p| p == SUBPROTOCOL);
    if !browser {
        let _ = http::respond(&mut stream, status, "text/plain", &format!("{why}\n")).await;
        return;
    }
    if let Ok(Ok(mut ws)) = tokio::time::timeout(HEAD_TIMEOUT, handshake(stream, head.raw, SUBPROTOCOL, shared)).await {
        let _ = ws.close(Some(socket::close_frame(code, why))).await;
    }
}

/// The WebSocket handshake on `stream`, whose first bytes (`raw`, the request head) were read already, answering
/// with the subprotocol `protocol`.
async fn handshake<S>(
    stream: S,
    raw: Vec<u8>,
    protocol: &str,
    shared: &Shared,
) -> Result<WebSocketStream<Rewind<S>>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The error type is tungstenite's, large by its design; this callback never returns it.
    #[allow(clippy::result_large_err)]
    let callback = |_: &Request, mut response: Response| {
        if let Ok(value) = HeaderValue::from_str(protocol) {
            response.headers_mut().insert("sec-websocket-protocol", value);
        }
        Ok(response)
    };
    let config = codecollab_net::config(shared.config.limits.max_frame_bytes);
    // Boxed: the handshake's future would otherwise stay part of the connection's, held for its whole life.
    Box::pin(tokio_tungstenite::accept_hdr_async_with_config(Rewind::new(raw, stream), callback, Some(config))).await
}

fn authenticate(head: &RequestHead, shared: &Shared) -> Result<Auth, String> {
    match head.bearer_token() {
        Some(token) => shared.secret.verify(token, unix_now()).map(Auth::Token).map_err(|e| e.to_string()),
        None if shared.config.open_session_creation() => Ok(Auth::Anonymous),
        None => Err("a token is required (Authorization: Bearer ...): a host token to create a session here, or an invite's to join one".into()),
    }
}
