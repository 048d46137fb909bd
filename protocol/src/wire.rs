//! The wire messages between daemon and server (`ClientMsg` up, `ServerMsg` down), protocol version 1.
//!
//! Every frame is one WebSocket binary message holding one MessagePack-encoded message (see [`crate::codec`]).
//! `docs/wire-protocol.md` describes the handshake, the exchanges and the error codes in prose.

use serde::{Deserialize, Serialize};

use crate::client::{ClientSeq, Revision};
use crate::document::ClientId;
use crate::ot::{Selection, TextOperation};

/// The version of the messages below. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
/// The WebSocket subprotocol that names [`PROTOCOL_VERSION`].
pub const SUBPROTOCOL: &str = "codecollab.v1";
/// A frame longer than this is sent as WebSocket fragments of this size (RFC 6455 section 5.4), and senders write
/// out whenever this much is buffered, so that neither end's buffers grow to the size of a whole document or a
/// long peer list: tungstenite keeps a buffer at its largest size for the life of the connection. Receivers see
/// one message either way.
pub const FRAGMENT_BYTES: usize = 8 * 1024;

/// The WebSocket close codes the server sends beyond the standard ones (RFC 6455 leaves 4000-4999 to
/// applications); `docs/wire-protocol.md` says what a client does on each.
pub mod close {
    /// Nothing arrived for two heartbeat intervals.
    pub const HEARTBEAT: u16 = 4000;
    /// The token was refused (missing, expired, forged, revoked), or this address failed too often: sent to
    /// browsers, which cannot read an HTTP refusal, after the handshake; other clients get HTTP 401 or 429.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The client offered a protocol version the server does not speak.
    pub const UNSUPPORTED_VERSION: u16 = 4002;
    /// The host removed this peer from the session.
    pub const REMOVED: u16 = 4003;
    /// The client read too slowly: its queue overflowed. Reconnecting resumes where it was.
    pub const TOO_SLOW: u16 = 4008;
    /// Another server node sequences a document of this connection now (several nodes on one database).
    /// Reconnecting resumes where it was; operations not acknowledged are sent again.
    pub const MOVED: u16 = 4009;
    /// The server cannot serve this connection right now (its store is out of reach); try again later. The
    /// standard code (RFC 6455 section 7.4.1, "Try Again Later"); sent to browsers instead of HTTP 503.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// A document's id within its session, assigned by the server. Paths can change (renames); ids do not.
pub type DocId = u64;
/// A peer's id within its session, assigned by the server per connection.
pub type PeerId = u64;

/// What a token lets its bearer do in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and edit every document.
    Edit,
    /// Read every document and show a cursor; edits are refused.
    View,
}

/// A person in the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer: PeerId,
    pub name: String,
    pub role: Role,
    /// Colour for this peer's cursor, `#rrggbb`, assigned by the server so every editor agrees.
    pub color: String,
}

/// The server's limits and timing that a client needs to know to stay within them, sent in `Welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame the server accepts, in bytes.
    pub max_frame_bytes: u64,
    /// Largest document, in chars.
    pub max_document_chars: u64,
    /// The server pings every this many milliseconds; a client that has heard nothing for two of them (a ping
    /// included) may take the connection for dead.
    pub heartbeat_ms: u64,
}

/// A document as listed in the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocInfo {
    pub doc: DocId,
    /// Path relative to the shared folder, `/`-separated, never absolute and never containing `..`.
    pub path: String,
}

/// A file of the shared folder that is not in the session (binary, too large, not UTF-8 text), listed so that every
/// peer sees it exists and why it is not there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsharedFile {
    /// Path relative to the shared folder, as a document's.
    pub path: String,
    /// Why it is not shared, for people ("binary", "larger than 4 MiB").
    pub reason: String,
}

/// The most entries a session lists in [`UnsharedFile`]s; more are left out.
pub const MAX_UNSHARED: usize = 10_000;
/// The longest reason kept for an [`UnsharedFile`], in chars.
pub const MAX_UNSHARED_REASON: usize = 200;

/// Messages from a client (a daemon) to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// First message on a connection authenticated by a host token (or on loopback): create a session.
    /// Answered by [`ServerMsg::SessionCreated`].
    CreateSession { name: String },
    /// First message on a connection authenticated by an invite or personal token (or right after
    /// `CreateSession` on the same connection): join the session. `client_id` is the same across reconnects of
    /// one daemon, which is what makes resent operations idempotent. `name` is how others see this peer when the
    /// token is an invite (a personal token already names its peer).
    Join { client_id: ClientId, name: Option<String> },
    /// Create a document at `path` with `text`, or open it if it exists. Answered by [`ServerMsg::Snapshot`].
    Create { path: String, text: String },
    /// Subscribe to a document. With `since`, the server replays what came after that revision (the client's
    /// own operations as [`ServerMsg::Ack`]) then sends [`ServerMsg::Subscribed`]; without it, or when the history
    /// no longer reaches back that far, it sends a [`ServerMsg::Snapshot`].
    Subscribe { doc: DocId, since: Option<Revision> },
    /// Stop receiving a document's operations and presence.
    Unsubscribe { doc: DocId },
    /// An edit of `doc` made on `base_revision`.
    Op { doc: DocId, seq: ClientSeq, base_revision: Revision, op: TextOperation },
    /// This peer's selections in `doc`, at `revision`.
    Cursor { doc: DocId, revision: Revision, selections: Vec<Selection> },
    /// Delete a document from the session.
    Delete { doc: DocId },
    /// Move a document to a new path.
    Rename { doc: DocId, path: String },
    /// Host only: remove a peer by name; tokens issued to that name are refused from now on.
    RemovePeer { name: String },
    /// Files of this peer's folder that are not in the session, and why: added to (or updated in) the session's
    /// list, which every peer receives as [`ServerMsg::Unshared`]. Kept while the server runs; a sharer sends its
    /// list again when it reconnects.
    Unshared { files: Vec<UnsharedFile> },
}

/// Messages from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The answer to [`ClientMsg::CreateSession`]: the session, the server's public URL (if configured), the
    /// host's own token and the two invite tokens. The connection may go on with `Join` as the host.
    SessionCreated {
        session: String,
        url: Option<String>,
        host_token: String,
        edit_token: String,
        view_token: String,
    },
    /// The answer to [`ClientMsg::Join`]. `token` is this peer's personal token, to use when reconnecting; `host`
    /// says whether this peer may remove others.
    Welcome {
        session: String,
        peer: PeerId,
        name: String,
        role: Role,
        host: bool,
        token: String,
        peers: Vec<PeerInfo>,
        docs: Vec<DocInfo>,
        /// The server's limits (absent from servers older than this field; clients then assume the defaults).
        #[serde(default)]
        limits: Option<Limits>,
        /// Files in the session's folder that are not in the session, and why (absent from older servers).
        #[serde(default)]
        unshared: Vec<UnsharedFile>,
    },
    /// A document's full text at `revision`. `last_seq` is the last sequence number of this client committed to
    /// it, if the server still knows it, so a client can tell whether its outstanding operation is included.
    Snapshot {
        doc: DocId,
        path: String,
        revision: Revision,
        text: String,
        last_seq: Option<ClientSeq>,
    },
    /// The replay after `Subscribe { since }` is complete; the client is live at `revision`.
    Subscribed {
        doc: DocId,
        revision: Revision,
    },
    /// The client's operation `seq` was committed (durably) as `revision`.
    Ack {
        doc: DocId,
        seq: ClientSeq,
        revision: Revision,
    },
    /// Another client's operation, committed as `revision`.
    Op {
        doc: DocId,
        revision: Revision,
        peer: PeerId,
        op: TextOperation,
    },
    /// A peer's selections in `doc`, transformed to `revision`.
    Presence {
        doc: DocId,
        peer: PeerId,
        revision: Revision,
        selections: Vec<Selection>,
    },
    /// A document appeared in the session, created by `peer` (absent from older servers).
    Created {
        doc: DocInfo,
        #[serde(default)]
        peer: Option<PeerId>,
    },
    Deleted {
        doc: DocId,
    },
    Renamed {
        doc: DocId,
        path: String,
    },
    PeerJoined {
        peer: PeerInfo,
    },
    PeerLeft {
        peer: PeerId,
    },
    /// The answer to [`ClientMsg::RemovePeer`], to the host who asked: `name` is removed (its connections closed,
    /// its tokens refused from now on).
    PeerRemoved {
        name: String,
    },
    /// The session's whole list of files that are not in it, after a change.
    Unshared {
        files: Vec<UnsharedFile>,
    },
    /// A refusal. The connection stays open unless a close frame follows.
    Error {
        code: ErrorCode,
        message: String,
        doc: Option<DocId>,
    },
}

/// Why the server refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be decoded.
    Malformed,
    /// The frame names a protocol version the server does not speak.
    UnsupportedVersion,
    /// The frame is larger than the server accepts.
    FrameTooLarge,
    /// Missing, expired, forged or revoked token, or one for another session.
    Unauthorized,
    /// The role does not allow this (a viewer's edit, a guest removing a peer).
    Forbidden,
    /// The operation does not fit the document at its base revision.
    BaseLengthMismatch,
    /// The base revision is ahead of the document.
    FutureRevision,
    /// The base revision is older than the history kept; subscribe again for a snapshot.
    ResyncNeeded,
    /// No such document.
    UnknownDocument,
    /// A path that is absolute, contains `..`, or is otherwise not a plain relative path.
    InvalidPath,
    /// Too many operations per second on this connection.
    RateLimited,
    /// The document would exceed its size limit.
    DocumentTooLarge,
    /// Too many documents in this session, sessions on the server, or connections.
    LimitReached,
    /// A message out of order (for example an edit before joining).
    ProtocolViolation,
    /// The server could not store the change; nothing was applied.
    StorageFailure,
}
