//! A WebSocket client that speaks the wire protocol: plain or TLS, with the bearer token and the subprotocol in
//! the upgrade request, and typed send and receive with timeouts (a hung test fails instead of hanging).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use codecollab_protocol::wire::{ClientMsg, ServerMsg, SUBPROTOCOL};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Default wait for one message.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(20);

/// What arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Msg(ServerMsg),
    /// The server closed the connection, with this code and reason if it sent a close frame.
    Closed(Option<(u16, String)>),
}

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    pub token: Option<String>,
    /// Subprotocols offered; defaults to the current one.
    pub protocols: Option<Vec<String>>,
    /// TLS client configuration for wss:// URLs.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

pub struct WsClient {
    ws: codecollab_net::Socket,
    /// Messages of the last frame not handed out yet (a server frame may carry several).
    pending: std::collections::VecDeque<ServerMsg>,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsClient")
    }
}

impl WsClient {
    /// Connects with the current protocol and an optional token.
    pub async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<WsClient> {
        Self::connect_with(url, Connect { token: token.map(str::to_owned), ..Default::default() }).await
    }

    /// Connects, giving up after ten seconds (a test fails rather than hangs).
    pub async fn connect_with(url: &str, options: Connect) -> anyhow::Result<WsClient> {
        tokio::time::timeout(Duration::from_secs(10), Self::connect_inner(url, options))
            .await
            .map_err(|_| anyhow!("connecting to {url} timed out"))?
    }

    async fn connect_inner(url: &str, options: Connect) -> anyhow::Result<WsClient> {
        let protocols = options.protocols.unwrap_or_else(|| vec![SUBPROTOCOL.to_owned()]);
        let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
        let ws = codecollab_net::connect(codecollab_net::Connect {
            url,
            token: options.token.as_deref(),
            protocols: &protocols,
            tls: options.tls,
            max_frame: 256 << 20,
            relayed: false,
        })
        .await?;
        Ok(WsClient { ws, pending: Default::default() })
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        self.send_raw(msg.encode()?).await
    }

    /// Sends arbitrary bytes as one binary message.
    pub async fn send_raw(&mut self, frame: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(Bytes::from(frame))).await?;
        Ok(())
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next message or close, within `timeout`.
    pub async fn next_event_within(&mut self, timeout: Duration) -> anyhow::Result<Event> {
        if let Some(msg) = self.pending.pop_front() {
            return Ok(Event::Msg(msg));
        }
        // One deadline for the whole wait: pings from the server must not keep restarting it.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no message within {timeout:?}"))?;
            match next {
                Some(Ok(Message::Binary(frame))) => {
                    self.pending.extend(ServerMsg::decode_all(&frame, usize::MAX)?);
                    match self.pending.pop_front() {
                        Some(msg) => return Ok(Event::Msg(msg)),
                        None => continue,
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Event::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string()))))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Event::Closed(None)),
            }
        }
    }

    pub async fn next_event(&mut self) -> anyhow::Result<Event> {
        self.next_event_within(RECV_TIMEOUT).await
    }

    /// The next message; a close is an error.
    pub async fn recv(&mut self) -> anyhow::Result<ServerMsg> {
        match self.next_event().await? {
            Event::Msg(msg) => Ok(msg),
            Event::Closed(close) => bail!("connection closed: {close:?}"),
        }
    }

    /// A message if one arrives within `timeout`, else `None`.
    pub async fn try_recv(&mut self, timeout: Duration) -> anyhow::Result<Option<ServerMsg>> {
        if let Some(msg) = self.pending.pop_front() {
            return Ok(Some(msg));
        }
        match tokio::time::timeout(timeout, self.ws.next()).await {
            Err(_) => Ok(None),
            Ok(Some(Ok(Message::Binary(frame)))) => {
                self.pending.extend(ServerMsg::decode_all(&frame, usize::MAX)?);
                Ok(self.pending.pop_front())
            }
            Ok(Some(Ok(Message::Close(frame)))) => bail!("connection closed: {frame:?}"),
            Ok(Some(Ok(_))) => Ok(None),
            Ok(Some(Err(e))) => Err(e.into()),
            Ok(None) => bail!("connection closed"),
        }
    }

    /// Receives until `pick` returns something, discarding the messages before it.
    pub async fn recv_until<T>(&mut self, mut pick: impl FnMut(&ServerMsg) -> Option<T>) -> anyhow::Result<T> {
        loop {
            let msg = self.recv().await?;
            if let Some(found) = pick(&msg) {
                return Ok(found);
            }
        }
    }

    /// Waits for the server to close the connection; returns the close code and reason.
    pub async fn expect_close(&mut self) -> anyhow::Result<Option<(u16, String)>> {
        loop {
            if let Event::Closed(close) = self.next_event().await? {
                return Ok(close);
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
