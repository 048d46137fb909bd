//! The editor protocol's custom methods, declared once as types (docs/editor-protocol.md).
//! Field names are camelCase on the wire; nothing here may be renamed.

use serde::{Deserialize, Serialize};
use tower_lsp_server::lsp_types::notification::Notification;
use tower_lsp_server::lsp_types::Range;

/// `collab/share` params.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareParams {
    pub root: String,
    pub server: Option<String>,
    pub name: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShareResult {
    pub session: String,
    pub invite: String,
    pub view_invite: String,
    /// The same invites as links to the web client the server serves (addition).
    #[serde(default)]
    pub web_invite: String,
    #[serde(default)]
    pub web_view_invite: String,
}

/// `collab/join` params.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinParams {
    pub invite: String,
    pub root: String,
    pub name: Option<String>,
    /// What to do with local files that differ from the session's (addition).
    #[serde(default)]
    pub on_conflict: OnConflict,
}

/// A join into a folder holding files that differ from the session's: never overwritten without consent.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum OnConflict {
    /// Write nothing and answer with [`JOIN_CONFLICTS`], listing them.
    #[default]
    Refuse,
    /// Move each aside into a backup folder beside the root, then write the session's.
    Backup,
}

/// The error code of a join refused because local files differ from the session's; its `data` is
/// `{conflicts: string[]}` (paths relative to the root).
pub const JOIN_CONFLICTS: i64 = -32010;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JoinResult {
    pub session: String,
    /// Paths relative to the root.
    pub files: Vec<String>,
    /// Where local files that differed were moved, with `onConflict: "backup"` (addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupInfo>,
    /// Files of the session's folder that are not in the session (binary, too large, not UTF-8), and why
    /// (addition): they stay with whoever has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unshared: Vec<Unshared>,
}

/// A file that is in the shared folder but not in the session, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unshared {
    pub path: String,
    pub reason: String,
}

impl Unshared {
    pub fn new(path: &str, reason: &str) -> Unshared {
        Unshared { path: path.to_owned(), reason: reason.to_owned() }
    }
}

/// Local files a join moved aside: the folder (a path) and the files in it, relative to it and to the root alike.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupInfo {
    pub folder: String,
    pub files: Vec<String>,
}

/// A peer as the editor sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub id: u64,
    pub name: String,
    pub color: String,
    pub role: String,
    /// The file this peer's cursor is in, if known (an addition to the first protocol).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// True on the entry that is this editor itself (an addition to the first protocol).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub you: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusResult {
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub peers: Vec<Peer>,
    /// Files (paths relative to the shared folder) holding edits the server has not acknowledged yet, sorted (an
    /// addition to the first protocol): leaving now would keep them in this folder only.
    #[serde(default)]
    pub unsent: Vec<String>,
}

/// `collab/leave`'s params (all optional: `{}` leaves at once).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaveParams {
    /// Leave only once the server has acknowledged every edit (the answer comes then); a later `collab/leave`
    /// without it leaves at once. An addition to the first protocol.
    #[serde(default)]
    pub when_sent: bool,
}

/// A change, LSP `didChange` style: applied in order, each relative to the text left by the previous one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    pub range: Range,
    pub text: String,
}

/// `collab/open`, editor → daemon.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenParams {
    pub uri: String,
    pub text: String,
}

/// `collab/edit`, both directions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EditParams {
    pub uri: String,
    pub revision: u64,
    pub changes: Vec<Change>,
    /// Editor → daemon, an addition: `true` if this edit starts a new undo step of the editor's, `false` if it
    /// belongs to the step of the edit before it. An editor that does not send it has each edit undone on its own.
    #[serde(default, rename = "undoStop", skip_serializing_if = "Option::is_none")]
    pub undo_stop: Option<bool>,
}

/// `collab/undo` and `collab/redo`, editor → daemon (requests).
#[derive(Debug, Clone, Deserialize)]
pub struct UndoParams {
    pub uri: String,
}

/// The answer to `collab/undo` and `collab/redo`: whether a step was undone (redone); `false` when none is left.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UndoResult {
    pub done: bool,
}

/// `collab/cursor`, editor → daemon.
#[derive(Debug, Clone, Deserialize)]
pub struct CursorParams {
    pub uri: String,
    pub ranges: Vec<Range>,
}

/// `collab/close`, editor → daemon.
#[derive(Debug, Clone, Deserialize)]
pub struct CloseParams {
    pub uri: String,
}

/// One remote peer's selections in `collab/cursors`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RemoteCursor {
    pub peer: u64,
    pub name: String,
    pub color: String,
    pub ranges: Vec<Range>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CursorsParams {
    pub uri: String,
    pub cursors: Vec<RemoteCursor>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeersParams {
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateParams {
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `collab/approval`, daemon → editor (an addition): a file that editors or shells run by themselves when a folder
/// opens (`.vscode/tasks.json`, `.nvim.lua`, `.envrc`, ...) was created or changed by others, and is not written to
/// disk until the user allows it with `collab/allow`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalParams {
    pub uri: String,
    /// The session path, for showing.
    pub path: String,
    /// Who changed it since it was last written (names; "the session" for what arrived with a join).
    pub by: Vec<String>,
    /// True if the file does not exist on disk yet.
    pub created: bool,
}

/// `collab/allow` params (an addition): write this file now, as the session has it.
#[derive(Debug, Clone, Deserialize)]
pub struct AllowParams {
    pub uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AllowResult {
    /// False if there was nothing waiting for this file.
    pub written: bool,
}

/// `collab/removePeer` params (an addition, host only): remove the peer named `name` from the session; the
/// answer comes once the server has removed them.
#[derive(Debug, Clone, Deserialize)]
pub struct RemovePeerParams {
    pub name: String,
}

/// Daemon → editor notifications.
#[derive(Debug)]
pub enum ApprovalNotification {}
impl Notification for ApprovalNotification {
    type Params = ApprovalParams;
    const METHOD: &'static str = "collab/approval";
}

#[derive(Debug)]
pub enum EditNotification {}
impl Notification for EditNotification {
    type Params = EditParams;
    const METHOD: &'static str = "collab/edit";
}

#[derive(Debug)]
pub enum CursorsNotification {}
impl Notification for CursorsNotification {
    type Params = CursorsParams;
    const METHOD: &'static str = "collab/cursors";
}

/// The editor protocol this daemon speaks, announced in `initialize` as
/// `capabilities.experimental.codecollab.editorProtocol`: 1 is shared/DESIGN.md's; 2 adds `collab/files`,
/// `collab/leave {whenSent}`, `collab/status`'s `unsent` and `collab/join`'s `unshared`. A plugin that needs more
/// than a daemon announces tells its user to update the daemon.
pub const EDITOR_PROTOCOL: u32 = 2;

/// `collab/files`: file operations from peers or from the disk, carried out on disk here, so that open buffers
/// follow (shared/DESIGN.md §2, additions).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FilesParams {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renamed: Vec<RenamedFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RenamedFile {
    pub old_uri: String,
    pub new_uri: String,
}

#[derive(Debug)]
pub enum FilesNotification {}
impl Notification for FilesNotification {
    type Params = FilesParams;
    const METHOD: &'static str = "collab/files";
}

#[derive(Debug)]
pub enum PeersNotification {}
impl Notification for PeersNotification {
    type Params = PeersParams;
    const METHOD: &'static str = "collab/peers";
}

#[derive(Debug)]
pub enum StateNotification {}
impl Notification for StateNotification {
    type Params = StateParams;
    const METHOD: &'static str = "collab/state";
}
