//! The bounded queue of frames toward one connection, shared by the actors that send to it. A connection that
//! cannot keep up is dropped (it resumes where it left off) rather than letting its queue grow without bound.

use std::sync::Arc;
use std::time::Instant;

use codecollab_protocol::wire::ServerMsg;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Bytes;

/// What the connection task writes to its socket.
#[derive(Debug)]
pub enum Outbound {
    /// A frame, and when it was queued.
    Frame(Bytes, Instant),
    /// Send a close frame with this code and reason, then end the connection.
    Close(u16, String),
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: mpsc::Sender<Outbound>,
    overflow: Arc<Notify>,
}

/// The connection task's side.
#[derive(Debug)]
pub struct OutboxReceiver {
    pub frames: mpsc::Receiver<Outbound>,
    /// Notified when a sender found the queue full.
    pub overflow: Arc<Notify>,
}

/// Encodes a message once; the bytes can then go to any number of connections.
pub fn encode(msg: &ServerMsg) -> Bytes {
    Bytes::from(msg.encode().expect("server messages always encode"))
}

impl Outbox {
    pub fn new(capacity: usize) -> (Outbox, OutboxReceiver) {
        let (sender, frames) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Notify::new());
        (Outbox { sender, overflow: overflow.clone() }, OutboxReceiver { frames, overflow })
    }

    /// Queues an encoded frame. Returns false if the connection is gone or too slow (and is being dropped).
    pub fn send_frame(&self, frame: Bytes) -> bool {
        match self.sender.try_send(Outbound::Frame(frame, Instant::now())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn send(&self, msg: &ServerMsg) -> bool {
        self.send_frame(encode(msg))
    }

    /// Asks the connection to close with `code` and `reason`.
    pub fn close(&self, code: u16, reason: impl Into<String>) {
        if self.sender.try_send(Outbound::Close(code, reason.into())).is_err() {
            self.overflow.notify_one();
        }
    }

    /// True if both outboxes lead to the same connection.
    pub fn same_connection(&self, other: &Outbox) -> bool {
        self.sender.same_channel(&other.sender)
    }
}
