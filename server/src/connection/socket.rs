//! The WebSocket of one connection: reading hands each binary frame to the handler; writing, beside it, sends
//! what the session and document tasks queue (in batches, one flush each), pings every heartbeat interval and
//! drops a silent peer; a close frame ends it on shutdown, on a slow reader, and on a frame over the limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codecollab_protocol::wire::{close, ErrorCode};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::handler::Handler;
use crate::outbox::{Outbound, OutboxReceiver};
use crate::shared::Shared;

/// Frames written before one flush, at most (the rest wait for the next turn of the loop).
const WRITE_BATCH: usize = 256;

pub fn close_frame(code: u16, reason: &str) -> CloseFrame {
    // A close frame's reason holds at most 123 bytes (RFC 6455 section 5.5): cut longer ones at a char boundary.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame { code: CloseCode::from(code), reason: reason[..end].to_owned().into() }
}

/// Runs the connection until either side ends it. Reading and writing are two futures polled side by side, so
/// neither waits on the other: a client that writes much before it reads (a share's creates, whose snapshots come
/// back) is always read, and one that never reads fills its queue and is closed as too slow.
pub async fn run<S>(ws: &mut WebSocketStream<S>, mut receiver: OutboxReceiver, handler: &mut Handler)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = handler.shared().clone();
    let mut shutdown = shared.shutdown.clone();
    let (mut sink, mut stream) = ws.split();
    let started = Instant::now();
    // When the peer was last heard from, in milliseconds since `started`: set by reading, checked by writing.
    let heard = AtomicU64::new(0);
    let close = tokio::select! {
        _ = shutdown.changed() => Some((CloseCode::Away.into(), "server shutting down".to_owned())),
        close = read(&mut stream, handler, || heard.store(millis(started), Ordering::Relaxed)) => close,
        close = write_and_ping(&mut sink, &mut receiver, &shared, || millis(started) - heard.load(Ordering::Relaxed)) => close,
    };
    if let Some((code, reason)) = close {
        let closing = async {
            sink.send(Message::Close(Some(close_frame(code, &reason)))).await?;
            sink.close().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

fn millis(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// Hands each frame to the handler until the peer closes, fails, or sends a frame over the limit.
async fn read<S>(
    stream: &mut SplitStream<&mut WebSocketStream<S>>,
    handler: &mut Handler,
    heard: impl Fn(),
) -> Option<(u16, String)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = handler.shared().clone();
    loop {
        match stream.next().await {
            Some(Ok(Message::Binary(frame))) => {
                heard();
                shared.metrics.bytes_in.fetch_add(frame.len() as u64, Ordering::Relaxed);
                handler.handle_frame(&frame).await;
            }
            Some(Ok(Message::Text(_))) => {
                heard();
                handler.refuse(ErrorCode::Malformed, "frames must be binary MessagePack", None);
            }
            Some(Ok(Message::Close(_))) | None => return None,
            Some(Ok(_)) => heard(), // ping, pong
            Some(Err(WsError::Capacity(error))) => {
                shared.metrics.refused(ErrorCode::FrameTooLarge);
                tracing::info!(%error, "frame over the size limit");
                let limit = shared.config.limits.max_frame_bytes;
                return Some((CloseCode::Size.into(), format!("frame exceeds the limit of {limit} bytes")));
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "connection error");
                return None;
            }
        }
    }
}

/// Writes what the session and document tasks queue, pings every heartbeat interval, and ends the connection
/// when the peer has been silent for two intervals (`silent` says for how many milliseconds), when its queue
/// overflowed, or when a close is queued.
async fn write_and_ping<S>(
    sink: &mut SplitSink<&mut WebSocketStream<S>, Message>,
    receiver: &mut OutboxReceiver,
    shared: &Shared,
    silent: impl Fn() -> u64,
) -> Option<(u16, String)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let interval = shared.config.heartbeat;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = receiver.overflow.notified() => {
                return Some((close::TOO_SLOW, "connection too slow to keep up; reconnect to resume".to_owned()));
            }
            outbound = receiver.frames.recv() => {
                let outbound = outbound?;
                match write(sink, outbound, receiver, shared).await {
                    Ok(None) => {}
                    Ok(Some(close)) => return Some(close),
                    Err(_) => return None,
                }
            }
            _ = heartbeat.tick() => {
                if Duration::from_millis(silent()) > interval * 2 {
                    tracing::info!("heartbeat missed twice; dropping");
                    return Some((close::HEARTBEAT, "no heartbeat for two intervals".to_owned()));
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return None;
                }
            }
        }
    }
}

/// Writes one queued frame and whatever else is queued, then flushes once. A queued close ends the connection.
async fn write<S>(
    ws: &mut SplitSink<&mut WebSocketStream<S>, Message>,
    first: Outbound,
    receiver: &mut OutboxReceiver,
    shared: &Shared,
) -> Result<Option<(u16, String)>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let mut next = Some(first);
    let mut written = 0;
    while let Some(outbound) = next.take() {
        match outbound {
            Outbound::Frame(frame, queued) => {
                if written == 0 {
                    shared.metrics.outbox_wait.observe(started.saturating_duration_since(queued));
                }
                shared.metrics.bytes_out.fetch_add(frame.len() as u64, Ordering::Relaxed);
                codecollab_net::feed(ws, frame).await?;
            }
            Outbound::Close(code, reason) => {
                ws.flush().await?;
                return Ok(Some((code, reason)));
            }
        }
        written += 1;
        if written < WRITE_BATCH {
            next = receiver.frames.try_recv().ok();
        }
    }
    ws.flush().await?;
    shared.metrics.socket_write.observe(started.elapsed());
    Ok(None)
}
