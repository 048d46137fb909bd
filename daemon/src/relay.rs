//! The connection to the server: one task per connection attempt that connects (ws:// or wss:// with rustls:
//! the system's roots plus an optional CA file), then forwards frames both ways. Everything it learns goes to the
//! main loop as events tagged with the attempt's epoch, so events of an old connection are recognized and ignored.
//!
//! A connection on which nothing arrives for two of the server's heartbeat intervals (it pings every interval) is
//! taken for dead and closed, so a stalled network (no bytes, no reset) is noticed as a dropped one would be. A
//! refusal that will not change (HTTP 401 or 403 at the upgrade: a bad, expired or revoked token, a session the
//! server does not know) is reported as such, so the main loop stops retrying.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use codecollab_protocol::wire::{close, ClientMsg, ServerMsg, PROTOCOL_VERSION, SUBPROTOCOL};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};

/// Largest frame accepted from the server (a snapshot of the largest document a daemon holds, in 4-byte chars).
/// A larger one ends the connection before it is read into memory: tungstenite refuses it from its header.
pub const MAX_FRAME: usize = 256 << 20;
/// The server's heartbeat interval until its `welcome` says otherwise (the server's own default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Slack on top of two heartbeat intervals before a silent connection is taken for dead.
const HEARTBEAT_GRACE: Duration = Duration::from_secs(1);

/// The way to the server, for the main loop. Unbounded on purpose: the main loop never waits, and the protocol
/// bounds what it queues (per document one operation in flight and one cursor update; a share's creates, one per
/// file, bounded by the files a share takes).
pub type Relay = mpsc::UnboundedSender<ClientMsg>;

/// Batches of messages from the server handed to the main loop and not yet handled, at most: a server sending
/// faster than the daemon handles waits (in its socket buffer, then TCP's window) instead of filling memory.
const WINDOW: usize = 16;

#[derive(Debug)]
pub enum RelayEvent {
    /// Connected; send messages through `sender`.
    Connected { epoch: u64, sender: Relay },
    Messages {
        epoch: u64,
        messages: Vec<ServerMsg>,
        /// Held until the main loop has handled them (see [`WINDOW`]).
        handled: OwnedSemaphorePermit,
    },
    /// The server sent a frame that does not decode (a broken or hostile server): it was dropped, the connection
    /// goes on.
    BadFrame { epoch: u64, reason: String, handled: OwnedSemaphorePermit },
    /// The connection failed or ended. With `refused`, the server refused this session for good: retrying with
    /// the same token will not help.
    Closed { epoch: u64, reason: String, refused: bool },
}

/// TLS client configuration: the system's trust roots, plus the PEM certificates in `ca_file` if given.
pub fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA file {}", path.display()))?;
        for cert in certs {
            roots.add(cert.with_context(|| format!("parsing {}", path.display()))?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Starts a connection attempt to `url`; its events go to `events` through `wrap`.
pub fn spawn<E: Send + 'static>(
    url: String,
    token: Option<String>,
    epoch: u64,
    tls: Arc<rustls::ClientConfig>,
    events: mpsc::UnboundedSender<E>,
    wrap: fn(RelayEvent) -> E,
) {
    tokio::spawn(async move {
        let (reason, refused) = match run(&url, token.as_deref(), epoch, tls, &events, wrap).await {
            Ok(reason) => (reason, false),
            Err(error) => (format!("{error:#}"), error.downcast_ref::<codecollab_net::Refused>().is_some()),
        };
        let _ = events.send(wrap(RelayEvent::Closed { epoch, reason, refused }));
    });
}

async fn run<E>(
    url: &str,
    token: Option<&str>,
    epoch: u64,
    tls: Arc<rustls::ClientConfig>,
    events: &mpsc::UnboundedSender<E>,
    wrap: fn(RelayEvent) -> E,
) -> anyhow::Result<String> {
    let connect = codecollab_net::Connect {
        url,
        token,
        protocols: &[SUBPROTOCOL],
        tls: Some(tls),
        max_frame: MAX_FRAME,
        relayed: false,
    };
    let ws = tokio::time::timeout(Duration::from_secs(10), codecollab_net::connect(connect))
        .await
        .context("connecting timed out")??;
    let (sender, outgoing) = mpsc::unbounded_channel::<ClientMsg>();
    let window = Arc::new(Semaphore::new(WINDOW));
    // Writing has a task of its own, so reading never waits on a write. Written in one loop, a share of 10 MB
    // hung for good: the daemon blocked writing its creates while the server, blocked writing their snapshots
    // back, had stopped reading (both TCP windows full, each side waiting for the other to read).
    let (sink, mut stream) = ws.split();
    let mut writer = tokio::spawn(write(sink, outgoing));
    let _stop_writer = AbortOnDrop(writer.abort_handle());
    if events.send(wrap(RelayEvent::Connected { epoch, sender })).is_err() {
        return Ok("daemon stopping".into());
    }
    let mut heartbeat = DEFAULT_HEARTBEAT;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(last_heard + heartbeat * 2 + HEARTBEAT_GRACE) => {
                return Ok(format!("no heartbeat from the server for {}s", (heartbeat * 2).as_secs()));
            }
            written = &mut writer => return written.context("the writing task failed")?,
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(frame))) => {
                    last_heard = tokio::time::Instant::now();
                    let messages = match ServerMsg::decode_all(&frame, MAX_FRAME) {
                        Ok(messages) => messages,
                        Err(error) => {
                            tracing::warn!(%error, bytes = frame.len(), "a frame from the server does not decode; dropped");
                            let reason = format!("a message from the server did not decode ({error}) and was dropped");
                            let handled = wait_for_room(&window, &mut last_heard).await;
                            if events.send(wrap(RelayEvent::BadFrame { epoch, reason, handled })).is_err() {
                                return Ok("daemon stopping".into());
                            }
                            continue;
                        }
                    };
                    for message in &messages {
                        if let ServerMsg::Welcome { limits: Some(limits), .. } = message {
                            heartbeat = Duration::from_millis(limits.heartbeat_ms.max(10));
                        }
                    }
                    let handled = wait_for_room(&window, &mut last_heard).await;
                    if events.send(wrap(RelayEvent::Messages { epoch, messages, handled })).is_err() {
                        return Ok("daemon stopping".into());
                    }
                }
                // A server of another protocol version: trying again will not change that.
                Some(Ok(Message::Close(Some(f)))) if u16::from(f.code) == close::UNSUPPORTED_VERSION => {
                    return Err(codecollab_net::Refused(format!(
                        "the server does not speak this daemon's protocol (codecollab-daemon {}, wire protocol \
                         version {PROTOCOL_VERSION}): {}. Update the daemon or the server so that they match (both \
                         say their version with --version)",
                        codecollab_protocol::version_with_commit(env!("CARGO_PKG_VERSION")),
                        f.reason
                    ))
                    .into());
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(match frame {
                        Some(f) => format!("the server closed the connection ({}: {})", u16::from(f.code), f.reason),
                        None => "the server closed the connection".into(),
                    });
                }
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(), // ping, pong
                Some(Err(WsError::Capacity(error))) => {
                    return Ok(format!("the server sent a message over {} MiB ({error}); refused", MAX_FRAME >> 20));
                }
                Some(Err(error)) => return Err(error.into()),
                None => return Ok("the connection ended".into()),
            }
        }
    }
}

/// Writes what the main loop queues until it drops its sender (then closes the connection): everything queued
/// goes out in one flush.
async fn write(
    mut sink: SplitSink<codecollab_net::Socket, Message>,
    mut outgoing: mpsc::UnboundedReceiver<ClientMsg>,
) -> anyhow::Result<String> {
    while let Some(msg) = outgoing.recv().await {
        codecollab_net::feed(&mut sink, Bytes::from(msg.encode()?)).await?;
        while let Ok(msg) = outgoing.try_recv() {
            codecollab_net::feed(&mut sink, Bytes::from(msg.encode()?)).await?;
        }
        sink.flush().await?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    Ok("closed by the daemon".into())
}

/// Stops a task when dropped: the writer of a connection whose reading has ended.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits until the main loop has handled enough of the earlier batches for one more. The time spent waiting is
/// not the server's silence: the heartbeat clock restarts.
async fn wait_for_room(window: &Arc<Semaphore>, last_heard: &mut tokio::time::Instant) -> OwnedSemaphorePermit {
    let permit = window.clone().acquire_owned().await.expect("the window is never closed");
    *last_heard = (*last_heard).max(tokio::time::Instant::now());
    permit
}
