//! A hostile server for tests: it completes the WebSocket handshake (subprotocol `codecollab.v1`) and then sends
//! whatever a test scripts in answer to each client message, lies included: forbidden paths, enormous file lists,
//! frames that do not decode, frames too large to read. What a daemon does with them is the test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use codecollab_protocol::wire::{ClientMsg, ServerMsg, SUBPROTOCOL};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// One thing the hostile server sends.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A well-formed message.
    Msg(ServerMsg),
    /// A binary WebSocket message with these bytes as its payload (a frame that does not decode, say).
    Raw(Vec<u8>),
    /// The header of a binary frame claiming `len` bytes of payload, then a few bytes and nothing more: a client must
    /// refuse it from the header, without trying to hold it.
    HugeFrame(u64),
    /// A close frame with this code and reason (the connection ends).
    Close(u16, String),
}

/// What the server answers each client message with.
pub type Script = Box<dyn FnMut(&ClientMsg) -> Vec<Reply> + Send>;

/// The server on `127.0.0.1:0`; stops when dropped. Every connection is served by the same script.
pub struct HostileServer {
    pub addr: SocketAddr,
    /// Every message clients sent, in order.
    pub received: Arc<Mutex<Vec<ClientMsg>>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for HostileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostileServer({})", self.addr)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileServer {
    pub async fn start(script: Script) -> anyhow::Result<HostileServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let script = Arc::new(tokio::sync::Mutex::new(script));
        let received = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let received = received.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, script.clone(), received.clone()));
                }
            })
        };
        Ok(HostileServer { addr, received, task })
    }

    /// An invite to this server (its token means nothing to it).
    pub fn invite(&self) -> String {
        format!("ws://{}/?session=hostile#hostile-token", self.addr)
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    script: Arc<tokio::sync::Mutex<Script>>,
    received: Arc<Mutex<Vec<ClientMsg>>>,
) {
    #[allow(clippy::result_large_err)]
    let callback = |_: &Request, mut response: Response| {
        response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
        Ok(response)
    };
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        let Message::Binary(frame) = message else { continue };
        let Ok(msg) = ClientMsg::decode(&frame, 64 << 20) else { continue };
        received.lock().expect("not poisoned").push(msg.clone());
        let replies = (script.lock().await)(&msg);
        for reply in replies {
            let sent = match reply {
                Reply::Msg(msg) => ws.send(Message::Binary(Bytes::from(msg.encode().expect("encodes")))).await,
                Reply::Raw(bytes) => ws.send(Message::Binary(Bytes::from(bytes))).await,
                Reply::Close(code, reason) => {
                    let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: code.into(),
                        reason: reason.into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                    return;
                }
                Reply::HugeFrame(len) => {
                    if ws.flush().await.is_err() {
                        return;
                    }
                    let mut header = vec![0x82, 127];
                    header.extend_from_slice(&len.to_be_bytes());
                    header.extend_from_slice(&[0u8; 1024]);
                    let raw = ws.get_mut();
                    let _ = raw.write_all(&header).await;
                    let _ = raw.flush().await;
                    // Nothing more on this connection: it is not a WebSocket any longer.
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    }
}
