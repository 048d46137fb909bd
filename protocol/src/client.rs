//! The OT client state machine (Synchronized / AwaitingConfirm / AwaitingWithBuffer, as in ot.js), which returns
//! the effects to perform (send this, apply that) instead of doing any IO.
//!
//! At most one operation is in flight to the server (the *outstanding* one); edits made meanwhile are composed
//! into one *buffer*. Each operation sent carries a client sequence number: after a reconnect the outstanding
//! operation is sent again with the same number, and the server recognizes it if it already committed it.
//!
//! ```text
//!                 local edit                     local edit
//!  Synchronized ─────────────▶ AwaitingConfirm ─────────────▶ AwaitingWithBuffer ◀─┐ local edit
//!       ▲                          │    ▲                        │          └─────┘ (composed into buffer)
//!       └──────── ack ─────────────┘    └──────── ack ───────────┘ (buffer sent)
//! ```
//! A server operation is transformed against the outstanding and buffer operations before it is applied
//! locally, and they against it, in every state.

use crate::ot::{transform, OpError, TextOperation};

/// A document revision: the number of operations the server has committed to the document.
pub type Revision = u64;
/// A client's sequence number for the operations it sends, increasing from 1.
pub type ClientSeq = u64;

/// An operation to send to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: ClientSeq,
    /// The revision the operation applies to.
    pub base_revision: Revision,
    pub op: TextOperation,
}

/// The operation in flight, and whether it has been sent on the current connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    seq: ClientSeq,
    op: TextOperation,
    sent: bool,
}

/// The three states of ot.js's client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Synchronized,
    AwaitingConfirm { outstanding: InFlight },
    AwaitingWithBuffer { outstanding: InFlight, buffer: TextOperation },
}

/// A protocol violation seen by the client: the caller should resynchronize the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("acknowledgement for op {seq} at revision {revision}, but {expected}")]
    UnexpectedAck { seq: ClientSeq, revision: Revision, expected: String },
    #[error("server op for revision {revision}, expected revision {expected}")]
    RevisionGap { revision: Revision, expected: Revision },
    #[error(transparent)]
    Op(#[from] OpError),
}

/// The client side of one document.
#[derive(Debug, Clone)]
pub struct Client {
    revision: Revision,
    next_seq: ClientSeq,
    connected: bool,
    state: State,
}

impl Client {
    /// A client in sync with the server at `revision`, connected. `next_seq` is the sequence number for the next
    /// operation; it must exceed every number this client id used before (start at 1 for a new client id).
    pub fn new(revision: Revision, next_seq: ClientSeq) -> Self {
        Client { revision, next_seq, connected: true, state: State::Synchronized }
    }

    /// The last server revision this client has seen (its own acknowledged operations included).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The sequence number the next new operation will carry.
    pub fn next_seq(&self) -> ClientSeq {
        self.next_seq
    }

    /// Name of the current state, for logs and tests.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Synchronized => "synchronized",
            State::AwaitingConfirm { .. } => "awaiting-confirm",
            State::AwaitingWithBuffer { .. } => "awaiting-with-buffer",
        }
    }

    /// True when every local edit has been acknowledged by the server.
    pub fn is_synchronized(&self) -> bool {
        matches!(self.state, State::Synchronized)
    }

    /// Local edits not yet acknowledged, composed into one operation on the server's text at `revision()`.
    pub fn pending(&self) -> Result<Option<TextOperation>, OpError> {
        match &self.state {
            State::Synchronized => Ok(None),
            State::AwaitingConfirm { outstanding } => Ok(Some(outstanding.op.clone())),
            State::AwaitingWithBuffer { outstanding, buffer } => Ok(Some(outstanding.op.compose(buffer)?)),
        }
    }

    /// The user edited the document (already applied locally). Returns the operation to send now, if any.
    pub fn apply_local(&mut self, op: TextOperation) -> Result<Option<Outgoing>, ClientError> {
        let state = std::mem::replace(&mut self.state, State::Synchronized);
        let (next, send) = match state {
            State::Synchronized => {
                let outstanding = InFlight { seq: self.next_seq, op, sent: self.connected };
                self.next_seq += 1;
                let send = outstanding.sent.then(|| self.outgoing(&outstanding));
                (State::AwaitingConfirm { outstanding }, send)
            }
            State::AwaitingConfirm { outstanding } => (State::AwaitingWithBuffer { outstanding, buffer: op }, None),
            State::AwaitingWithBuffer { outstanding, buffer } => match buffer.compose(&op) {
                Ok(buffer) => (State::AwaitingWithBuffer { outstanding, buffer }, None),
                Err(error) => {
                    self.state = State::AwaitingWithBuffer { outstanding, buffer };
                    return Err(error.into());
                }
            },
        };
        self.state = next;
        Ok(send)
    }

    /// The server committed another client's operation at `revision`. Returns the operation to apply to the
    /// local document (transformed past the local pending edits).
    pub fn apply_server(&mut self, revision: Revision, op: TextOperation) -> Result<TextOperation, ClientError> {
        if revision != self.revision + 1 {
            return Err(ClientError::RevisionGap { revision, expected: self.revision + 1 });
        }
        // Compute everything first so an error leaves the state untouched.
        let (next, to_apply) = match &self.state {
            State::Synchronized => (State::Synchronized, op),
            State::AwaitingConfirm { outstanding } => {
                let (outstanding_prime, op_prime) = transform(&outstanding.op, &op)?;
                let outstanding = InFlight { op: outstanding_prime, ..outstanding.clone() };
                (State::AwaitingConfirm { outstanding }, op_prime)
            }
            State::AwaitingWithBuffer { outstanding, buffer } => {
                //        op                       (server)
                //   o /     \ op'                 o  = outstanding, b = buffer
                //    /  o'   \                    o' then b' is the local pending edit on the new revision,
                //    \      / op''                op'' is what the local document must apply.
                //   b \    / b'
                let (outstanding_prime, op_prime) = transform(&outstanding.op, &op)?;
                let (buffer_prime, op_prime_prime) = transform(buffer, &op_prime)?;
                let outstanding = InFlight { op: outstanding_prime, ..outstanding.clone() };
                (State::AwaitingWithBuffer { outstanding, buffer: buffer_prime }, op_prime_prime)
            }
        };
        self.state = next;
        self.revision = revision;
        Ok(to_apply)
    }

    /// The server committed this client's outstanding operation as `revision`. Returns the next operation to
    /// send (the buffer), if any.
    pub fn server_ack(&mut self, seq: ClientSeq, revision: Revision) -> Result<Option<Outgoing>, ClientError> {
        let expected_seq = match &self.state {
            State::Synchronized => None,
            State::AwaitingConfirm { outstanding } | State::AwaitingWithBuffer { outstanding, .. } => {
                Some(outstanding.seq)
            }
        };
        // An acknowledgement repeated for an operation already acknowledged (the server answers a resend of a
        // committed operation with another ack) changes nothing.
        let already_acknowledged = seq < expected_seq.unwrap_or(self.next_seq) && revision <= self.revision;
        if already_acknowledged {
            return Ok(None);
        }
        if expected_seq != Some(seq) || revision != self.revision + 1 {
            let expected = match expected_seq {
                Some(s) => format!("expected op {s} at revision {}", self.revision + 1),
                None => "no op is outstanding".to_owned(),
            };
            return Err(ClientError::UnexpectedAck { seq, revision, expected });
        }
        self.revision = revision;
        let state = std::mem::replace(&mut self.state, State::Synchronized);
        let send = match state {
            State::AwaitingWithBuffer { buffer, .. } => {
                let outstanding = InFlight { seq: self.next_seq, op: buffer, sent: self.connected };
                self.next_seq += 1;
                let send = outstanding.sent.then(|| self.outgoing(&outstanding));
                self.state = State::AwaitingConfirm { outstanding };
                send
            }
            State::Synchronized | State::AwaitingConfirm { .. } => None,
        };
        Ok(send)
    }

    /// The connection to the server was lost: whatever was in flight must be sent again after resuming.
    pub fn disconnected(&mut self) {
        self.connected = false;
        if let State::AwaitingConfirm { outstanding } | State::AwaitingWithBuffer { outstanding, .. } = &mut self.state
        {
            outstanding.sent = false;
        }
    }

    /// The connection is back and the server has replayed everything this client missed (the client's own
    /// committed operations arrive in that replay as acknowledgements). Returns the operation to (re)send: the
    /// outstanding one, with its original sequence number, rebased on the current revision.
    pub fn resumed(&mut self) -> Option<Outgoing> {
        self.connected = true;
        let revision = self.revision;
        match &mut self.state {
            State::AwaitingConfirm { outstanding } | State::AwaitingWithBuffer { outstanding, .. }
                if !outstanding.sent =>
            {
                outstanding.sent = true;
                Some(Outgoing { seq: outstanding.seq, base_revision: revision, op: outstanding.op.clone() })
            }
            _ => None,
        }
    }

    fn outgoing(&self, in_flight: &InFlight) -> Outgoing {
        Outgoing { seq: in_flight.seq, base_revision: self.revision, op: in_flight.op.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert_at(len: usize, at: usize, text: &str) -> TextOperation {
        TextOperation::replace(len, at, at, text).expect("in bounds")
    }

    #[test]
    fn walks_through_the_three_states() {
        let mut client = Client::new(0, 1);
        let sent = client.apply_local(insert_at(0, 0, "a")).expect("valid").expect("sends at once");
        assert_eq!((sent.seq, sent.base_revision), (1, 0));
        assert_eq!(client.state_name(), "awaiting-confirm");
        assert_eq!(client.apply_local(insert_at(1, 1, "b")).expect("valid"), None);
        assert_eq!(client.state_name(), "awaiting-with-buffer");
        // A server op arrives: it is transformed past "a" and "b", which win the tie at offset 0.
        let to_apply = client.apply_server(1, insert_at(0, 0, "X")).expect("valid");
        assert_eq!(to_apply.apply("ab").expect("ok"), "abX");
        let next = client.server_ack(1, 2).expect("valid").expect("buffer goes out");
        assert_eq!((next.seq, next.base_revision), (2, 2));
        assert_eq!(next.op.apply("aX").expect("ok"), "abX");
        assert_eq!(client.server_ack(2, 3).expect("valid"), None);
        assert!(client.is_synchronized());
    }

    #[test]
    fn bad_acks_and_gaps_are_errors_that_change_nothing() {
        let mut client = Client::new(5, 1);
        assert!(client.server_ack(1, 6).is_err());
        assert!(client.server_ack(1, 5).is_err(), "nothing was ever sent with seq 1");
        client.apply_local(insert_at(0, 0, "a")).expect("valid");
        assert!(client.server_ack(2, 6).is_err());
        assert!(client.server_ack(1, 7).is_err());
        assert!(client.apply_server(7, TextOperation::identity(0)).is_err());
        assert_eq!(client.revision(), 5);
        assert_eq!(client.server_ack(1, 6).expect("valid"), None);
        // The same acknowledgement again (a resend answered twice) is ignored.
        assert_eq!(client.server_ack(1, 6).expect("repeat is harmless"), None);
        assert_eq!(client.revision(), 6);
    }

    #[test]
    fn resend_after_reconnect_keeps_the_sequence_number() {
        let mut client = Client::new(0, 7);
        client.apply_local(insert_at(0, 0, "a")).expect("valid");
        client.disconnected();
        // Offline edits are buffered, not sent.
        assert_eq!(client.apply_local(insert_at(1, 1, "b")).expect("valid"), None);
        client.apply_server(1, insert_at(0, 0, "Z")).expect("valid");
        let resent = client.resumed().expect("outstanding op is resent");
        assert_eq!((resent.seq, resent.base_revision), (7, 1));
        assert_eq!(resent.op.apply("Z").expect("ok"), "aZ");
        assert_eq!(client.resumed(), None, "sent once per connection");
    }
}
