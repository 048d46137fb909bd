//! One task per connection, from its first byte: the HTTP request head (the plain routes, or a WebSocket upgrade),
//! the failed-authentication throttle, authentication and subprotocol negotiation, the handshake; then the
//! [`socket`] loop runs the WebSocket, and the [`handler`] acts on each message.
//!
//! - [`handler`]: what each message does, with the connection's state (authenticated, or a member of a session);
//! - [`socket`]: reading, writing (what the session and document tasks queue), heartbeat, closing;
//! - [`rate`]: the token bucket for operations and cursor updates.

mod handler;
mod rate;
mod socket;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use codecollab_protocol::wire::{close, ErrorCode, SUBPROTOCOL};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::auth::{unix_now, Claims};
use crate::http::{self, RequestHead, Rewind};
use crate::outbox::Outbox;
use crate::shared::Shared;

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
        let (status, content_type, body) = http::route(&head, &shared.metrics);
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
    // The error type is tungstenite's, large by its design; this callback never returns it.
    #[allow(clippy::result_large_err)]
    let callback = |_: &Request, mut response: Response| {
        if let Ok(value) = HeaderValue::from_str(&echo) {
            response.headers_mut().insert("sec-websocket-protocol", value);
        }
        Ok(response)
    };
    let stream = Rewind::new(head.raw, stream);
    let config = codecollab_net::config(shared.config.limits.max_frame_bytes);
    let mut ws = match Box::pin(tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config))).await {
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
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let (outbox, receiver) = Outbox::new(shared.config.limits.outbound_queue);
    let mut handler = handler::Handler::new(shared.clone(), auth, outbox);
    socket::run(&mut ws, receiver, &mut handler).await;
    handler.leave().await;
    shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

fn authenticate(head: &RequestHead, shared: &Shared) -> Result<Auth, String> {
    match head.bearer_token() {
        Some(token) => shared.secret.verify(token, unix_now()).map(Auth::Token).map_err(|e| e.to_string()),
        None if shared.config.open_session_creation() => Ok(Auth::Anonymous),
        None => Err("a token is required (Authorization: Bearer ...): a host token to create a session here, or an invite's to join one".into()),
    }
}
