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
//!
//! Beyond ot.js: an operation that inserts more than [`MAX_OP_BYTES`] is sent in pieces that each fit (a large
//! paste travels as several operations, each well inside a frame); [`Client::resync`] rebuilds the pending edits
//! on a snapshot when the server's history no longer reaches back (a three-way merge, [`crate::merge`]); and
//! [`Client::reject`] undoes an outstanding operation the server refused for good.

use std::time::Instant;

use crate::merge;
use crate::ot::{transform, Component, OpError, TextOperation};

/// The most text, in bytes, one operation sent to the server inserts: larger edits are sent in pieces of this
/// size. A frame then stays far below any sensible frame limit (16 MiB by default), and one large paste does not
/// hold the connection for the time it takes to send tens of megabytes.
pub const MAX_OP_BYTES: usize = 1 << 20;

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

/// What an acknowledgement leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// The operation the server committed, as it applies to the server's text at the revision before it (`None`
    /// for a repeated acknowledgement): a client that keeps the server's text applies it there.
    pub committed: Option<TextOperation>,
    /// The next operation to send, if any.
    pub send: Option<Outgoing>,
}

/// What a rebuild on a snapshot, or the undoing of a refused operation, leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebased {
    /// To apply to the local text.
    pub apply: TextOperation,
    /// The next operation to send, if any.
    pub send: Option<Outgoing>,
}

/// The client side of one document.
#[derive(Debug, Clone)]
pub struct Client {
    revision: Revision,
    next_seq: ClientSeq,
    connected: bool,
    state: State,
    /// Operations are sent in pieces inserting at most this many bytes ([`MAX_OP_BYTES`] unless set).
    max_op_bytes: usize,
}

impl Client {
    /// A client in sync with the server at `revision`, connected. `next_seq` is the sequence number for the next
    /// operation; it must exceed every number this client id used before (start at 1 for a new client id).
    pub fn new(revision: Revision, next_seq: ClientSeq) -> Self {
        Client { revision, next_seq, connected: true, state: State::Synchronized, max_op_bytes: MAX_OP_BYTES }
    }

    /// Sends operations in pieces that each insert at most `bytes` (at least one char each).
    pub fn with_max_op_bytes(mut self, bytes: usize) -> Self {
        self.max_op_bytes = bytes;
        self
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
            State::Synchronized => self.send_next(op),
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

    /// The server committed this client's outstanding operation as `revision`. Returns the operation committed
    /// and the next one to send (the buffer), if any.
    pub fn server_ack(&mut self, seq: ClientSeq, revision: Revision) -> Result<Acked, ClientError> {
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
            return Ok(Acked { committed: None, send: None });
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
        let (committed, send) = match state {
            State::AwaitingWithBuffer { outstanding, buffer } => {
                let (next, send) = self.send_next(buffer);
                self.state = next;
                (outstanding.op, send)
            }
            State::AwaitingConfirm { outstanding } => (outstanding.op, None),
            // Refused above (no operation is outstanding): kept as a value, not a panic.
            State::Synchronized => return Ok(Acked { committed: None, send: None }),
        };
        Ok(Acked { committed: Some(committed), send })
    }

    /// The state with `op` (on the server's text at `revision()`) outstanding, or its first piece outstanding and
    /// the rest buffered if it inserts more than `max_op_bytes`; and the operation to send now, if connected.
    fn send_next(&mut self, op: TextOperation) -> (State, Option<Outgoing>) {
        let (first, rest) = split(&op, self.max_op_bytes);
        let outstanding = InFlight { seq: self.next_seq, op: first, sent: self.connected };
        self.next_seq += 1;
        let send = outstanding.sent.then(|| self.outgoing(&outstanding));
        let next = match rest {
            Some(buffer) => State::AwaitingWithBuffer { outstanding, buffer },
            None => State::AwaitingConfirm { outstanding },
        };
        (next, send)
    }

    /// The server refused the outstanding operation for good (the document would grow past its limit, say):
    /// nothing of it was applied. Undoes it locally: returns the operation that removes it from the local text
    /// (edits made after it stay, transformed past its removal) and the next operation to send, the buffer.
    /// `base` is the server's text at `revision()`, which a client that may be refused keeps.
    pub fn reject(&mut self, base: &str) -> Result<Rebased, ClientError> {
        let (outstanding, buffer) = match &self.state {
            State::Synchronized => {
                return Ok(Rebased { apply: TextOperation::identity(base.chars().count()), send: None })
            }
            State::AwaitingConfirm { outstanding } => (outstanding, None),
            State::AwaitingWithBuffer { outstanding, buffer } => (outstanding, Some(buffer)),
        };
        //  base --outstanding--> local without buffer --buffer--> local
        //  undo = outstanding inverted; undo' (past buffer) applies to local; buffer' (past undo) applies to base.
        let undo = outstanding.op.invert(base)?;
        let (apply, rest) = match buffer {
            Some(buffer) => {
                let (undo, buffer) = transform(&undo, buffer)?;
                (undo, Some(buffer).filter(|b| !b.is_noop()))
            }
            None => (undo, None),
        };
        let (next, send) = match rest {
            Some(rest) => self.send_next(rest),
            None => (State::Synchronized, None),
        };
        self.state = next;
        Ok(Rebased { apply, send })
    }

    /// The server sent `snapshot`, its text at `revision`, because its history no longer reaches back to ours:
    /// rebuilds on it with a three-way merge of `base` (the server's text at `revision()`, which a client that may
    /// need this keeps), the snapshot and our pending edits ([`merge::merge`]). `last_seq` is the last of our
    /// operations the server has committed: if it includes the outstanding one, that one is in the snapshot
    /// already and only the buffer is ours to merge. Returns what to apply to the local text and what to send;
    /// the pending edits go out again under new sequence numbers (the old one was either committed, and is in the
    /// snapshot, or not, and then never will be: its base is older than the server's history).
    pub fn resync(
        &mut self,
        base: &str,
        revision: Revision,
        snapshot: &str,
        last_seq: Option<ClientSeq>,
        deadline: Option<Instant>,
    ) -> Result<Rebased, ClientError> {
        let committed = |seq: ClientSeq| last_seq.is_some_and(|last| last >= seq);
        let included_base;
        let (base, ours) = match &self.state {
            State::Synchronized => (base, None),
            State::AwaitingConfirm { outstanding } if committed(outstanding.seq) => {
                included_base = outstanding.op.apply(base)?;
                (included_base.as_str(), None)
            }
            State::AwaitingWithBuffer { outstanding, buffer } if committed(outstanding.seq) => {
                included_base = outstanding.op.apply(base)?;
                (included_base.as_str(), Some(buffer.clone()))
            }
            State::AwaitingConfirm { .. } | State::AwaitingWithBuffer { .. } => (base, self.pending()?),
        };
        let ours = ours.unwrap_or_else(|| TextOperation::identity(base.chars().count()));
        let merged = merge::merge(base, &ours, snapshot, deadline)?;
        self.revision = revision;
        // The snapshot is the answer to a subscription: from here on the server sends this client every change.
        self.connected = true;
        let (next, send) =
            if merged.ours.is_noop() { (State::Synchronized, None) } else { self.send_next(merged.ours) };
        self.state = next;
        Ok(Rebased { apply: merged.theirs, send })
    }

    /// The outstanding operation again, at the current revision, to send on the same connection: the server
    /// refused it without applying it (it could not store it, or its base had left the server's history).
    pub fn resend(&mut self) -> Option<Outgoing> {
        match &self.state {
            State::AwaitingConfirm { outstanding } | State::AwaitingWithBuffer { outstanding, .. }
                if outstanding.sent =>
            {
                Some(self.outgoing(outstanding))
            }
            _ => None,
        }
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

/// `op` as two operations to apply one after the other, the first inserting at most `max_bytes` (but at least one
/// char, so that a piece always makes progress), or `op` whole (and `None`) if it fits. Deletions and retains all
/// go in the first: they cost nothing on the wire.
fn split(op: &TextOperation, max_bytes: usize) -> (TextOperation, Option<TextOperation>) {
    if op.inserted_bytes() <= max_bytes {
        return (op.clone(), None);
    }
    let mut first = TextOperation::new();
    let mut rest = TextOperation::new();
    let mut budget = max_bytes;
    for component in op.components() {
        match component {
            Component::Retain(n) => {
                first.retain(*n);
                rest.retain(*n);
            }
            Component::Delete(n) => {
                first.delete(*n);
            }
            Component::Insert(text) => {
                let mut cut = budget.min(text.len());
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                if cut == 0 && first.inserted_bytes() == 0 {
                    cut = text.chars().next().map_or(0, char::len_utf8);
                }
                let (now, later) = text.split_at(cut);
                first.insert(now);
                rest.retain(now.chars().count());
                rest.insert(later);
                budget -= cut.min(budget);
            }
        }
    }
    (first, Some(rest))
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
        let next = client.server_ack(1, 2).expect("valid").send.expect("buffer goes out");
        assert_eq!((next.seq, next.base_revision), (2, 2));
        assert_eq!(next.op.apply("aX").expect("ok"), "abX");
        assert_eq!(client.server_ack(2, 3).expect("valid").send, None);
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
        assert_eq!(client.server_ack(1, 6).expect("valid").committed, Some(insert_at(0, 0, "a")));
        // The same acknowledgement again (a resend answered twice) is ignored.
        assert_eq!(client.server_ack(1, 6).expect("repeat is harmless"), Acked { committed: None, send: None });
        assert_eq!(client.revision(), 6);
    }

    #[test]
    fn large_edits_go_out_in_pieces_that_compose_to_the_edit() {
        let mut client = Client::new(0, 1).with_max_op_bytes(4);
        let edit = insert_at(2, 1, "日本語abcdefé");
        let first = client.apply_local(edit.clone()).expect("valid").expect("sent");
        assert!(first.op.inserted_bytes() <= 4, "{:?}", first.op);
        let mut text = first.op.apply("xy").expect("fits");
        let mut revision = 1;
        let mut acked = client.server_ack(first.seq, revision).expect("valid");
        while let Some(next) = acked.send {
            assert!(next.op.inserted_bytes() <= 4 && next.op.inserted_chars() > 0, "{:?}", next.op);
            text = next.op.apply(&text).expect("fits");
            revision += 1;
            acked = client.server_ack(next.seq, revision).expect("valid");
        }
        assert_eq!(text, edit.apply("xy").expect("fits"));
        assert!(client.is_synchronized());
        // A piece makes progress even when one char is larger than the limit.
        let (first, rest) = split(&insert_at(0, 0, "😀😀"), 1);
        assert_eq!((first.inserted_chars(), rest.map(|r| r.inserted_chars())), (1, Some(1)));
    }

    #[test]
    fn a_refused_operation_is_undone_and_later_edits_stay() {
        let mut client = Client::new(0, 1);
        client.apply_local(insert_at(3, 3, "X")).expect("valid"); // "abcX", outstanding
        client.apply_local(insert_at(4, 0, "Y")).expect("valid"); // "YabcX", buffered
        let rebased = client.reject("abc").expect("undoes");
        assert_eq!(rebased.apply.apply("YabcX").expect("fits"), "Yabc");
        let next = rebased.send.expect("the buffer goes out");
        assert_eq!((next.seq, next.op.apply("abc").expect("fits").as_str()), (2, "Yabc"));
    }

    #[test]
    fn a_snapshot_merges_with_pending_edits_and_the_committed_one_is_not_sent_again() {
        // Base "ab" at revision 2; we typed X (outstanding, seq 1, committed though its ack was lost), then Y.
        let mut client = Client::new(2, 1);
        client.apply_local(insert_at(2, 0, "X")).expect("valid");
        client.apply_local(insert_at(3, 3, "Y")).expect("valid");
        // The snapshot at revision 9 holds our X and someone's Z.
        let rebased = client.resync("ab", 9, "XaZb", Some(1), None).expect("merges");
        assert_eq!(rebased.apply.apply("XabY").expect("fits"), "XaZbY");
        let next = rebased.send.expect("Y goes out");
        assert_eq!((next.seq, next.base_revision), (2, 9));
        assert_eq!(next.op.apply("XaZb").expect("fits"), "XaZbY");
        // Had X not been committed, it would be merged (and sent) again.
        let mut client = Client::new(2, 1);
        client.apply_local(insert_at(2, 0, "X")).expect("valid");
        let rebased = client.resync("ab", 9, "aZb", None, None).expect("merges");
        assert_eq!(rebased.apply.apply("Xab").expect("fits"), "XaZb");
        assert_eq!(rebased.send.expect("sent").op.apply("aZb").expect("fits"), "XaZb");
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
