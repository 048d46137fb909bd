//! Relaying a client to the node that serves its session (several nodes on one PostgreSQL store): this node has
//! authenticated the client and completed its handshake; it opens a WebSocket to the serving node with the
//! client's own token, marked as relayed, and passes every message both ways until either side closes. The
//! serving node sees an ordinary client. If it cannot be reached, or goes away, the client is closed with
//! [`close::MOVED`] and reconnects (to whichever node it reaches, which then serves the session or relays again).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codecollab_protocol::wire::{close, SUBPROTOCOL};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::socket::close_frame;
use crate::shared::Shared;

/// How long connecting to the serving node may take (one that is frozen is taken over once its lease runs out:
/// the client, closed, then reconnects to a node that serves the session itself).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Relays `client` to the node at `owner` until either side ends.
pub async fn run<S>(client: &mut WebSocketStream<S>, owner: &str, token: &str, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connect = codecollab_net::Connect {
        url: owner,
        token: Some(token),
        protocols: &[SUBPROTOCOL],
        tls: None,
        max_frame: shared.config.limits.max_frame_bytes,
        relayed: true,
    };
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, codecollab_net::connect(connect)).await {
        Ok(Ok(upstream)) => upstream,
        outcome => {
            let error = outcome
                .map_or_else(|_| "timed out".to_owned(), |r| r.err().map(|e| format!("{e:#}")).unwrap_or_default());
            tracing::warn!(%owner, %error, "the node serving the session cannot be reached");
            let reason = "the server serving this session cannot be reached; reconnect";
            let _ = client.close(Some(close_frame(close::MOVED, reason))).await;
            return;
        }
    };
    shared.metrics.relayed_connections.fetch_add(1, Ordering::Relaxed);
    let (mut client_sink, mut client_stream) = client.split();
    let (mut owner_sink, mut owner_stream) = upstream.split();
    let mut shutdown = shared.shutdown.clone();
    let heartbeat = shared.config.heartbeat;
    let started = Instant::now();
    let heard = AtomicU64::new(0);
    let metrics = &shared.metrics;
    // The client's messages to the serving node. Ends when the client closes or fails.
    let upward = async {
        while let Some(Ok(message)) = client_stream.next().await {
            heard.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            match message {
                Message::Binary(_) | Message::Text(_) => {
                    metrics.relayed_messages.fetch_add(1, Ordering::Relaxed);
                    if owner_sink.send(message).await.is_err() {
                        return Ending::OwnerGone;
                    }
                }
                Message::Close(frame) => {
                    let _ = owner_sink.send(Message::Close(frame)).await;
                    return Ending::ClientClosed;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
        let _ = owner_sink.close().await;
        Ending::ClientClosed
    };
    // The serving node's messages to the client, and this node's heartbeat toward the client (the serving node's
    // pings reach this node, not the client).
    let downward = async {
        let mut ping = tokio::time::interval(heartbeat);
        ping.tick().await;
        loop {
            tokio::select! {
                message = owner_stream.next() => match message {
                    Some(Ok(Message::Close(frame))) => return Ending::OwnerClosed(frame),
                    Some(Ok(message @ (Message::Binary(_) | Message::Text(_)))) => {
                        metrics.relayed_messages.fetch_add(1, Ordering::Relaxed);
                        if client_sink.send(message).await.is_err() {
                            return Ending::ClientClosed;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ending::OwnerGone,
                },
                _ = ping.tick() => {
                    let silent = started.elapsed().as_millis() as u64 - heard.load(Ordering::Relaxed);
                    if silent > 2 * heartbeat.as_millis() as u64 {
                        return Ending::ClientSilent;
                    }
                    if client_sink.send(Message::Ping(Default::default())).await.is_err() {
                        return Ending::ClientClosed;
                    }
                }
            }
        }
    };
    let ending = tokio::select! {
        ending = upward => ending,
        ending = downward => ending,
        _ = shutdown.changed() => Ending::ShuttingDown,
    };
    shared.metrics.relayed_connections.fetch_sub(1, Ordering::Relaxed);
    let frame = match ending {
        Ending::ClientClosed => return,
        Ending::OwnerClosed(frame) => frame,
        Ending::OwnerGone => Some(close_frame(close::MOVED, "the server serving this session went away; reconnect")),
        Ending::ClientSilent => Some(close_frame(close::HEARTBEAT, "no heartbeat")),
        Ending::ShuttingDown => Some(CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() }),
    };
    let client = client_sink.reunite(client_stream).expect("the halves of one socket");
    let _ = tokio::time::timeout(Duration::from_secs(2), client.close(frame)).await;
}

/// Why a relay ended.
enum Ending {
    ClientClosed,
    /// The serving node closed the connection: its close frame goes to the client.
    OwnerClosed(Option<CloseFrame>),
    /// The serving node's connection failed (it died, or the network between the nodes broke).
    OwnerGone,
    ClientSilent,
    ShuttingDown,
}
