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

use anyhow::{bail, Context};
use codecollab_protocol::wire::{ClientMsg, ServerMsg, FRAGMENT_BYTES, SUBPROTOCOL};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};

/// Largest frame accepted from the server (a snapshot of the largest document a daemon holds, in 4-byte chars).
/// A larger one ends the connection before it is read into memory: tungstenite refuses it from its header.
pub const MAX_FRAME: usize = 256 << 20;
/// The server's heartbeat interval until its `welcome` says otherwise (the server's own default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Slack on top of two heartbeat intervals before a silent connection is taken for dead.
const HEARTBEAT_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub enum RelayEvent {
    /// Connected; send messages through `sender`.
    Connected {
        epoch: u64,
        sender: mpsc::UnboundedSender<ClientMsg>,
    },
    Messages {
        epoch: u64,
        messages: Vec<ServerMsg>,
    },
    /// The server sent a frame that does not decode (a broken or hostile server): it was dropped, the connection
    /// goes on.
    BadFrame {
        epoch: u64,
        reason: String,
    },
    /// The connection failed or ended. With `refused`, the server refused this session for good: retrying with
    /// the same token will not help.
    Closed {
        epoch: u64,
        reason: String,
        refused: bool,
    },
}

/// The server refused the upgrade for good (HTTP 401 or 403).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

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
            Err(error) => (format!("{error:#}"), error.downcast_ref::<Refused>().is_some()),
        };
        let _ = events.send(wrap(RelayEvent::Closed { epoch, reason, refused }));
    });
}

async fn connect(
    url: &str,
    token: Option<&str>,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<Box<dyn Io>>> {
    let (secure, rest) = if let Some(rest) = url.strip_prefix("wss://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("ws://") {
        (false, rest)
    } else {
        bail!("the server address must start with ws:// or wss://: {url}");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let tcp = TcpStream::connect(authority).await.with_context(|| format!("connecting to {authority}"))?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Io> = if secure {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).trim_matches(['[', ']']).to_owned();
        let name = rustls::pki_types::ServerName::try_from(host)?;
        Box::new(tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.context("TLS handshake")?)
    } else {
        Box::new(tcp)
    };
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
    if let Some(token) = token {
        request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(FRAGMENT_BYTES)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                let body =
                    response.body().as_ref().map(|b| String::from_utf8_lossy(b).trim().to_owned()).unwrap_or_default();
                let message = format!("the server refused the connection ({}): {body}", response.status());
                match response.status().as_u16() {
                    401 | 403 if body.is_empty() => anyhow::Error::new(Refused(format!("HTTP {}", response.status()))),
                    401 | 403 => anyhow::Error::new(Refused(body)),
                    _ => anyhow::anyhow!(message),
                }
            }
            other => other.into(),
        })?;
    Ok(ws)
}

/// Queues one binary message, in fragments of [`FRAGMENT_BYTES`] if it is longer.
async fn feed<S>(ws: &mut S, frame: Vec<u8>) -> Result<(), WsError>
where
    S: futures_util::Sink<Message, Error = WsError> + Unpin,
{
    let frame = Bytes::from(frame);
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

async fn run<E>(
    url: &str,
    token: Option<&str>,
    epoch: u64,
    tls: Arc<rustls::ClientConfig>,
    events: &mpsc::UnboundedSender<E>,
    wrap: fn(RelayEvent) -> E,
) -> anyhow::Result<String> {
    let mut ws = tokio::time::timeout(Duration::from_secs(10), connect(url, token, tls))
        .await
        .context("connecting timed out")??;
    let (sender, mut outgoing) = mpsc::unbounded_channel::<ClientMsg>();
    if events.send(wrap(RelayEvent::Connected { epoch, sender })).is_err() {
        return Ok("daemon stopping".into());
    }
    let mut heartbeat = DEFAULT_HEARTBEAT;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(last_heard + heartbeat * 2 + HEARTBEAT_GRACE) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return Ok(format!("no heartbeat from the server for {}s", (heartbeat * 2).as_secs()));
            }
            msg = outgoing.recv() => {
                let Some(msg) = msg else {
                    let _ = ws.close(None).await;
                    return Ok("closed by the daemon".into());
                };
                feed(&mut ws, msg.encode()?).await?;
                // Everything queued goes out in one flush.
                while let Ok(msg) = outgoing.try_recv() {
                    feed(&mut ws, msg.encode()?).await?;
                }
                ws.flush().await?;
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Binary(frame))) => {
                    last_heard = tokio::time::Instant::now();
                    let messages = match ServerMsg::decode_all(&frame, MAX_FRAME) {
                        Ok(messages) => messages,
                        Err(error) => {
                            tracing::warn!(%error, bytes = frame.len(), "a frame from the server does not decode; dropped");
                            let reason = format!("a message from the server did not decode ({error}) and was dropped");
                            if events.send(wrap(RelayEvent::BadFrame { epoch, reason })).is_err() {
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
                    if events.send(wrap(RelayEvent::Messages { epoch, messages })).is_err() {
                        return Ok("daemon stopping".into());
                    }
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
