//! The HTTP side of the one port: reading a request head (bounded), the plain routes (`/healthz`, `/metrics`),
//! and a stream wrapper that replays the bytes already read to the WebSocket handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::metrics::Metrics;

/// The largest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// The prefix of the subprotocol a browser carries its token in (`codecollab.bearer.<token>`); never echoed.
pub const BEARER_SUBPROTOCOL: &str = "codecollab.bearer.";

#[derive(Debug)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    /// Every byte read so far (the head and anything after it), for the handshake to read again.
    pub raw: Vec<u8>,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    /// The bearer token of the `Authorization` header, or else of a `codecollab.bearer.<token>` subprotocol (what a
    /// browser sends: its WebSocket API cannot set headers), if any.
    pub fn bearer_token(&self) -> Option<&str> {
        if let Some(value) = self.header("authorization") {
            let (scheme, token) = value.split_once(' ')?;
            return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
        }
        self.subprotocol_bearer()
    }

    /// The token of a `codecollab.bearer.<token>` subprotocol, if one is offered.
    pub fn subprotocol_bearer(&self) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "sec-websocket-protocol")
            .flat_map(|(_, v)| v.split(','))
            .find_map(|p| p.trim().strip_prefix(BEARER_SUBPROTOCOL))
            .filter(|token| !token.is_empty())
    }

    /// The subprotocols the client offers, but for a token's.
    pub fn subprotocols(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "sec-websocket-protocol")
            .flat_map(|(_, v)| v.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty() && !p.starts_with(BEARER_SUBPROTOCOL))
            .collect()
    }
}

/// Reads until the end of the request head. `Ok(None)` if the peer closed first; an error if the head is
/// malformed or longer than [`MAX_HEAD`].
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Option<RequestHead>> {
    let mut raw = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        raw.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&raw) {
            Ok(httparse::Status::Complete(_)) => {
                let method = request.method.unwrap_or_default().to_owned();
                let path = request.path.unwrap_or_default().to_owned();
                let headers = request
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                return Ok(Some(RequestHead { method, path, headers, raw }));
            }
            Ok(httparse::Status::Partial) if raw.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"))
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

/// The answer to a plain HTTP request (not a WebSocket upgrade): status, content type and body. `health` is
/// whether the store answers (for `/healthz`).
pub fn route(
    head: &RequestHead,
    metrics: &Metrics,
    health: Result<(), String>,
) -> (&'static str, &'static str, String) {
    match (head.method.as_str(), head.path.as_str()) {
        ("GET", "/healthz") => match health {
            Ok(()) => ("200 OK", "text/plain", "ok\n".to_owned()),
            Err(why) => ("503 Service Unavailable", "text/plain", format!("the store does not answer: {why}\n")),
        },
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    }
}

/// Writes a complete response and shuts the stream down.
pub async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    content_type: &str,
    body: &str,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Writes one of the web client's pages or assets and shuts the stream down (the head alone for `HEAD`).
pub async fn respond_page<S: AsyncWrite + Unpin>(
    stream: &mut S,
    page: &crate::web::Page,
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n", page.status, page.body.len());
    for (name, value) in &page.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    if !head_only {
        stream.write_all(page.body).await?;
    }
    stream.shutdown().await
}

/// A stream that first yields `prefix`, then reads from `inner`.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Vec<u8>,
    position: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Rewind { prefix, position: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.position < self.prefix.len() {
            let rest = &self.prefix[self.position..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.position += n;
            if self.position == self.prefix.len() {
                self.prefix = Vec::new();
                self.position = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
