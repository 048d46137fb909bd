//! The pure core of CodeCollab: everything about convergence, with no IO, no async runtime and no panics on
//! peer input.
//!
//! - [`ot`]: the text operation algebra (retain / insert / delete over Unicode scalar values): apply, compose,
//!   transform, invert, cursor transformation, conversion from editor replacement lists.
//! - [`client`]: the OT client state machine (Synchronized / AwaitingConfirm / AwaitingWithBuffer) with client
//!   sequence numbers for idempotent resends.
//! - [`document`]: the server-side document: text, revision, bounded history, exactly-once `receive`;
//!   [`tree`]: its text, a B+ tree of chunks indexed by chars.
//! - [`merge`]: the three-way merge a client falls back on when only a snapshot can resynchronize it.
//! - [`fuzzing`]: the checks the fuzz targets run, shared with the tests that replay their corpus.
//! - [`path`]: the rules every session path follows, checked by the server and again by the daemon.
//! - [`wire`]: the versioned messages between daemon and server; [`codec`]: their bounded binary encoding.

pub mod client;
pub mod codec;
pub mod document;
pub mod fuzzing;
pub mod merge;
pub mod ot;
pub mod path;
pub mod tree;
pub mod undo;
pub mod wire;

pub use client::{Acked, Client, ClientError, ClientSeq, Outgoing, Rebased, Revision, MAX_OP_BYTES};
pub use codec::{frame_of_bodies, DecodeError, EncodeError};
pub use document::{ClientId, Document, DocumentLimits, HistoryEntry, ReceiveError, Received};
pub use ot::{transform, Bias, Component, EditText, OpError, Replacement, Selection, Text, TextOperation};
pub use tree::TextTree;
pub use undo::UndoHistory;

/// The commit this build was made from, when the build recorded one (`scripts/release` sets `CODECOLLAB_COMMIT`).
pub const BUILD_COMMIT: Option<&str> = option_env!("CODECOLLAB_COMMIT");

/// A package `version` as the binaries report it (`--version`, the daemon's `serverInfo`): with the commit it was
/// built from when the build recorded one, e.g. `0.1.0 (commit 1a2b3c4d)`.
pub fn version_with_commit(version: &str) -> String {
    match BUILD_COMMIT {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version.to_owned(),
    }
}
