//! A bare WebSocket relay: the floor the load generator measures the server against, on the same machine and in
//! the same run. It speaks just enough of the wire protocol for the load generator's clients (subscribe, operation,
//! acknowledgement, broadcast) with the server's transport habits (a queue and a writer per connection, batches
//! of frames per flush), and nothing else: no authentication, no transformation, no storage.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use codecollab_protocol::wire::{ClientMsg, DocId, ServerMsg, SUBPROTOCOL};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Frames written before one flush, at most (as the server does).
const WRITE_BATCH: usize = 256;

#[derive(Default)]
struct Room {
    revision: u64,
    members: HashMap<u64, mpsc::UnboundedSender<Bytes>>,
}

type Rooms = Arc<Mutex<HashMap<DocId, Room>>>;

/// Starts the relay on a thread of its own with `workers` runtime threads (the server's count, for a fair floor);
/// returns its `ws://` URL. It runs until the process ends.
pub fn start(workers: usize) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers.max(1)).enable_all().build()?;
    let (bound, address) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            match TcpListener::bind("127.0.0.1:0").await {
                Ok(listener) => {
                    let _ = bound.send(listener.local_addr());
                    serve(listener).await;
                }
                Err(error) => drop(bound.send(Err(error))),
            }
        })
    });
    let addr = address.recv()??;
    Ok(format!("ws://{addr}"))
}

async fn serve(listener: TcpListener) {
    let rooms: Rooms = Arc::default();
    let mut next_peer = 0;
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        next_peer += 1;
        tokio::spawn(connection(stream, next_peer, rooms.clone()));
    }
}

async fn connection(stream: tokio::net::TcpStream, peer: u64, rooms: Rooms) {
    // tungstenite's callback type fixes the error response's size.
    #[allow(clippy::result_large_err)]
    let offer = |request: &Request, mut response: Response| {
        let offered = request.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        if offered.is_some_and(|o| o.split(',').any(|p| p.trim() == SUBPROTOCOL)) {
            response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
        }
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, offer).await else { return };
    let (mut sink, mut stream) = ws.split();
    let (outbox, mut queued) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        while let Some(first) = queued.recv().await {
            let mut next = Some(first);
            let mut written = 0;
            while let Some(frame) = next.take() {
                if sink.feed(Message::Binary(frame)).await.is_err() {
                    return;
                }
                written += 1;
                if written < WRITE_BATCH {
                    next = queued.try_recv().ok();
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut joined = Vec::new();
    while let Some(Ok(message)) = stream.next().await {
        let Message::Binary(frame) = message else { continue };
        let Ok(msg) = ClientMsg::decode(&frame, 1 << 20) else { continue };
        match msg {
            ClientMsg::Subscribe { doc, .. } => {
                rooms.lock().expect("rooms").entry(doc).or_default().members.insert(peer, outbox.clone());
                joined.push(doc);
            }
            ClientMsg::Op { doc, seq, op, .. } => {
                let mut rooms = rooms.lock().expect("rooms");
                let room = rooms.entry(doc).or_default();
                room.revision += 1;
                let revision = room.revision;
                let encode = |msg: &ServerMsg| Bytes::from(msg.encode().expect("server messages encode"));
                let _ = outbox.send(encode(&ServerMsg::Ack { doc, seq, revision }));
                let broadcast = encode(&ServerMsg::Op { doc, revision, peer, op });
                for (_, member) in room.members.iter().filter(|(p, _)| **p != peer) {
                    let _ = member.send(broadcast.clone());
                }
            }
            _ => {}
        }
    }
    let mut rooms = rooms.lock().expect("rooms");
    for doc in joined {
        if let Some(room) = rooms.get_mut(&doc) {
            room.members.remove(&peer);
        }
    }
    drop(rooms);
    writer.abort();
}
