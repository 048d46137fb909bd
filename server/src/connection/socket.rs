//! The WebSocket loop of one connection: hands each binary frame to the handler, writes what the session and
//! document tasks queue (in batches, one flush each), pings every heartbeat interval and drops a silent peer, and
//! closes with a close frame on shutdown, on a slow reader, and on a frame over the limit.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use codecollab_protocol::wire::{close, ErrorCode};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::handler::Handler;
use crate::outbox::{Outbound, OutboxReceiver};

/// Frames written before one flush, at most (the rest wait for the next turn of the loop).
const WRITE_BATCH: usize = 256;

pub fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() }
}

/// Runs the connection until either side ends it.
pub async fn run<S>(ws: &mut WebSocketStream<S>, mut receiver: OutboxReceiver, handler: &mut Handler)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = handler.shared().clone();
    let interval = shared.config.heartbeat;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut shutdown = shared.shutdown.clone();
    let mut last_heard = Instant::now();
    let close = loop {
        tokio::select! {
            _ = shutdown.changed() => break Some((CloseCode::Away.into(), "server shutting down".to_owned())),
            _ = receiver.overflow.notified() => {
                break Some((close::TOO_SLOW, "connection too slow to keep up; reconnect to resume".to_owned()));
            }
            outbound = receiver.frames.recv() => {
                let Some(outbound) = outbound else { break None };
                match write(ws, outbound, &mut receiver, handler).await {
                    Ok(None) => {}
                    Ok(Some(close)) => break Some(close),
                    Err(_) => break None,
                }
            }
            incoming = ws.next() => {
                match incoming {
                    Some(Ok(Message::Binary(frame))) => {
                        last_heard = Instant::now();
                        shared.metrics.bytes_in.fetch_add(frame.len() as u64, Ordering::Relaxed);
                        handler.handle_frame(&frame).await;
                    }
                    Some(Ok(Message::Text(_))) => {
                        last_heard = Instant::now();
                        handler.refuse(ErrorCode::Malformed, "frames must be binary MessagePack", None);
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(_)) => last_heard = Instant::now(), // ping, pong
                    Some(Err(WsError::Capacity(error))) => {
                        shared.metrics.refused(ErrorCode::FrameTooLarge);
                        tracing::info!(%error, "frame over the size limit");
                        break Some((CloseCode::Size.into(), format!(
                            "frame exceeds the limit of {} bytes", shared.config.limits.max_frame_bytes
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
                    tracing::info!(peer = ?handler.name(), "heartbeat missed twice; dropping");
                    break Some((close::HEARTBEAT, "no heartbeat for two intervals".to_owned()));
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

/// Writes one queued frame and whatever else is queued, then flushes once. A queued close ends the connection.
async fn write<S>(
    ws: &mut WebSocketStream<S>,
    first: Outbound,
    receiver: &mut OutboxReceiver,
    handler: &Handler,
) -> Result<Option<(u16, String)>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut next = Some(first);
    let mut written = 0;
    while let Some(outbound) = next.take() {
        match outbound {
            Outbound::Frame(frame) => {
                handler.shared().metrics.bytes_out.fetch_add(frame.len() as u64, Ordering::Relaxed);
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
    Ok(None)
}
