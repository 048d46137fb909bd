//! The WebSocket plumbing the server, the daemon and the tests share: one way to connect (ws:// or wss://, the
//! bearer token and the subprotocol in the upgrade, a refusal told apart from a failure), one set of buffer
//! settings, and one way to send a large frame (in fragments of [`FRAGMENT_BYTES`]).

use std::sync::Arc;

use anyhow::{bail, Context};
use codecollab_protocol::wire::FRAGMENT_BYTES;
use futures_util::{Sink, SinkExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// A byte stream a WebSocket runs over: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client's WebSocket, over TCP or TLS.
pub type Socket = WebSocketStream<Box<dyn Io>>;

/// The server refused the upgrade for good (HTTP 401 or 403: a bad, expired or revoked token, a session it does
/// not know): connecting again with the same token will not help. Found with `anyhow::Error::downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The WebSocket settings of both ends: frames up to `max_frame` bytes, small buffers.
///
/// tungstenite zero-fills up to `read_buffer_size` before every socket read; with the default 128 KiB and
/// keystroke-sized frames that memset was the server's largest cost (large frames still arrive, in pieces). It
/// also keeps its write buffer at its largest size for the life of the connection, and by default fills it to
/// 128 KiB before writing: writing whenever it passes one fragment keeps it small on every connection (a thousand
/// peers joining one session had left each holding 22 KB).
pub fn config(max_frame: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(FRAGMENT_BYTES)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct Connect<'a> {
    /// `ws://host:port/...` or `wss://...`; the host may be an IPv6 address in brackets; the port defaults to 80
    /// or 443.
    pub url: &'a str,
    /// Sent as `Authorization: Bearer ...`.
    pub token: Option<&'a str>,
    /// The subprotocols offered, in `Sec-WebSocket-Protocol` (none if empty).
    pub protocols: &'a [&'a str],
    /// Needed for wss://.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The largest frame accepted from the server.
    pub max_frame: usize,
    /// A server node relaying its client to the node that serves the session (sent as [`RELAYED_HEADER`]): the
    /// other node serves it or refuses, and never relays it further.
    pub relayed: bool,
}

/// The header a relaying server node adds to its upgrade request.
pub const RELAYED_HEADER: &str = "x-codecollab-relayed";

/// The parts of a ws:// or wss:// URL a connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub secure: bool,
    /// `host:port`, as `TcpStream::connect` takes it (an IPv6 address keeps its brackets).
    pub authority: String,
    /// The host alone (an IPv6 address without brackets), for TLS.
    pub host: String,
}

/// Splits a ws:// or wss:// URL into what connecting needs.
pub fn address(url: &str) -> anyhow::Result<Address> {
    let (secure, rest) = if let Some(rest) = url.strip_prefix("wss://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("ws://") {
        (false, rest)
    } else {
        bail!("the server address must start with ws:// or wss://: {url}");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if authority.is_empty() || authority.contains('@') {
        bail!("no host (or a user name, which is not supported) in {url}");
    }
    // The port follows the last colon, unless that colon is inside an IPv6 address's brackets.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() || (host.contains(':') && !authority.starts_with('[')) {
        bail!("an IPv6 address goes in brackets, as in ws://[::1]:7830: {url}");
    }
    let port = match port {
        Some(port) => port.parse::<u16>().with_context(|| format!("not a port: {port:?} in {url}"))?,
        None if secure => 443,
        None => 80,
    };
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    Ok(Address { secure, authority, host })
}

/// Connects and upgrades. A refusal for good is a [`Refused`] inside the error; other refusals name the HTTP
/// status and the server's reason.
pub async fn connect(options: Connect<'_>) -> anyhow::Result<Socket> {
    let Address { secure, authority, host } = address(options.url)?;
    let tcp = TcpStream::connect(&authority).await.with_context(|| format!("connecting to {authority}"))?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Io> = if secure {
        let tls = options.tls.clone().context("wss:// needs a TLS configuration")?;
        let name = rustls::pki_types::ServerName::try_from(host)?;
        Box::new(tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.context("TLS handshake")?)
    } else {
        Box::new(tcp)
    };
    let mut request = options.url.into_client_request()?;
    if !options.protocols.is_empty() {
        let offered = HeaderValue::from_str(&options.protocols.join(", "))?;
        request.headers_mut().insert("sec-websocket-protocol", offered);
    }
    if let Some(token) = options.token {
        request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
    }
    if options.relayed {
        request.headers_mut().insert(RELAYED_HEADER, HeaderValue::from_static("1"));
    }
    let upgraded = tokio_tungstenite::client_async_with_config(request, stream, Some(config(options.max_frame))).await;
    match upgraded {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(response)) => {
            let status = response.status();
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).trim().to_owned());
            let body = body.unwrap_or_default();
            match status.as_u16() {
                401 | 403 if body.is_empty() => Err(Refused(format!("HTTP {status}")).into()),
                401 | 403 => Err(Refused(format!("{body} (HTTP {status})")).into()),
                _ => bail!("the server refused the connection ({status}): {body}"),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// Queues one binary message, in fragments of [`FRAGMENT_BYTES`] if it is longer (a snapshot of a large
/// document, say), so neither end's buffers grow to the size of the whole message. Flushing is the caller's.
pub async fn feed<S>(ws: &mut S, frame: Bytes) -> Result<(), WsError>
where
    S: Sink<Message, Error = WsError> + Unpin,
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

#[cfg(test)]
mod tests {
    use super::{address, Address};

    fn parts(url: &str) -> (bool, String, String) {
        let Address { secure, authority, host } = address(url).expect(url);
        (secure, authority, host)
    }

    #[test]
    fn addresses_with_names_ports_and_ipv6() {
        assert_eq!(parts("ws://127.0.0.1:7830/"), (false, "127.0.0.1:7830".into(), "127.0.0.1".into()));
        assert_eq!(parts("wss://example.org/?session=1#t"), (true, "example.org:443".into(), "example.org".into()));
        assert_eq!(parts("ws://localhost#token"), (false, "localhost:80".into(), "localhost".into()));
        assert_eq!(parts("ws://[::1]:7830/x"), (false, "[::1]:7830".into(), "::1".into()));
        assert_eq!(parts("wss://[fe80::1]"), (true, "[fe80::1]:443".into(), "fe80::1".into()));
    }

    #[test]
    fn refuses_what_is_not_a_server_address() {
        for url in ["http://x:1", "ws://", "ws://::1:7830", "ws://host:port", "ws://user@host:1", "ws://host:99999"] {
            assert!(address(url).is_err(), "{url}");
        }
    }
}
