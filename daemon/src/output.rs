//! What the daemon tells its editor, built here and nowhere else: the notifications (`collab/edit`,
//! `collab/cursors`, `collab/peers`, `collab/files`, `collab/state`, `collab/approval`), messages and work-done progress. The LSP
//! side ([`crate::lsp_server::forward_output`]) sends them, in order.

use std::collections::HashMap;

use codecollab_protocol::wire::{PeerId, PeerInfo, Role};
use tokio::sync::mpsc;
use tower_lsp_server::lsp_types::{MessageType, Range};

use crate::document::Doc;
use crate::editor_ot::DaemonEdit;
use crate::lsp_ext::*;
use crate::position::{self, Encoding};
use crate::session::Session;
use crate::workspace;

/// What the daemon sends its editor; the LSP side turns these into notifications.
#[derive(Debug)]
pub enum Output {
    Edit(EditParams),
    Cursors(CursorsParams),
    Peers(PeersParams),
    Files(FilesParams),
    State(StateParams),
    Approval(ApprovalParams),
    Message(MessageType, String),
    /// Work-done progress (`window/workDoneProgress/create`, then `$/progress`) for long work.
    Progress(Progress),
    /// Answered once the editor has everything queued before it (or after two seconds): the answer to a request
    /// whose changes go out as notifications first (`collab/undo`) waits for it.
    Then(tokio::sync::oneshot::Sender<()>),
}

#[derive(Debug)]
pub enum Progress {
    Begin { token: String, title: String, total: usize },
    Report { token: String, done: usize, total: usize },
    End { token: String, message: String },
}

/// The way to the editor, and how it counts positions.
///
/// The channel is unbounded on purpose: the main loop never waits (it owns every document, and an editor that
/// waits for it while it waits for the editor would deadlock both), and what it queues is what the editor and the
/// server sent it, already bounded at their doors.
#[derive(Debug, Clone)]
pub struct Editor {
    output: mpsc::UnboundedSender<Output>,
    /// The position encoding negotiated at `initialize`.
    pub encoding: Encoding,
}

impl Editor {
    pub fn new(output: mpsc::UnboundedSender<Output>) -> Editor {
        Editor { output, encoding: Encoding::Utf16 }
    }

    /// Answers `then` once the editor has received everything sent to it so far.
    pub fn then(&self, then: tokio::sync::oneshot::Sender<()>) {
        self.send(Output::Then(then));
    }

    fn send(&self, output: Output) {
        // Closed only once the editor is gone, when nothing is left to tell it.
        let _ = self.output.send(output);
    }

    /// `collab/edit`: a change to the buffer of `uri`, counted by its revision pair.
    pub fn edit(&self, uri: String, edit: DaemonEdit) {
        self.send(Output::Edit(EditParams { uri, revision: edit.revision, changes: edit.changes, undo_stop: None }));
    }

    /// A message shown to the user, prefixed with the product's name.
    pub fn message(&self, kind: MessageType, text: impl std::fmt::Display) {
        self.send(Output::Message(kind, format!("CodeCollab: {text}")));
    }

    pub fn warning(&self, text: impl std::fmt::Display) {
        self.message(MessageType::WARNING, text);
    }

    pub fn error(&self, text: impl std::fmt::Display) {
        self.message(MessageType::ERROR, text);
    }

    /// `collab/state`: `idle`, `connecting`, `connected`, `readonly` or `reconnecting`, and why if it changed.
    pub fn state(&self, state: &str, session: Option<String>, message: Option<String>) {
        self.send(Output::State(StateParams { state: state.into(), session, message }));
    }

    /// `collab/files`: files created, renamed or deleted here by the session (peers, or the disk seen by us).
    pub fn files(&self, files: FilesParams) {
        if !(files.created.is_empty() && files.renamed.is_empty() && files.deleted.is_empty()) {
            self.send(Output::Files(files));
        }
    }

    /// `collab/approval`: others changed or created a file that runs by itself; it waits for the user's yes.
    pub fn approval(&self, approval: ApprovalParams) {
        self.send(Output::Approval(approval));
    }

    pub fn progress(&self, progress: Progress) {
        self.send(Output::Progress(progress));
    }

    /// `collab/cursors`: everyone else's selections in `doc`, if an editor shows it.
    pub fn cursors(&self, doc: &Doc, peers: &HashMap<PeerId, PeerInfo>) {
        let Some(editor) = &doc.editor else { return };
        let range = |anchor, head| Range {
            start: position::position(&doc.text, anchor, self.encoding),
            end: position::position(&doc.text, head, self.encoding),
        };
        let cursors = doc
            .presence
            .iter()
            .filter_map(|(peer, selections)| {
                let info = peers.get(peer)?;
                let ranges = selections.iter().map(|s| range(s.anchor, s.head)).collect();
                Some(RemoteCursor { peer: *peer, name: info.name.clone(), color: info.color.clone(), ranges })
            })
            .collect();
        self.send(Output::Cursors(CursorsParams { uri: editor.uri.clone(), cursors }));
    }

    /// `collab/peers`: who is in the session.
    pub fn peers(&self, session: Option<&Session>) {
        self.send(Output::Peers(PeersParams { peers: peer_list(session) }));
    }
}

/// Who is in the session, with the file each was last seen in (where "follow" goes), in join order.
pub fn peer_list(session: Option<&Session>) -> Vec<Peer> {
    let Some(session) = session else { return Vec::new() };
    let seen_in = |peer: PeerId| {
        let docs = &session.docs;
        let last = session.last_doc.get(&peer).and_then(|doc| docs.get(doc));
        let doc = last.filter(|d| d.presence.contains_key(&peer));
        let doc = doc.or_else(|| docs.values().find(|d| d.presence.contains_key(&peer)))?;
        // A file that is not on disk here yet (its first write is due) is not one an editor can open.
        if doc.editor.is_none() && doc.disk.is_none() {
            return None;
        }
        let path = workspace::resolve(&session.root, &doc.path).ok()?;
        Some(workspace::path_to_uri(&path))
    };
    let mut peers: Vec<Peer> = session
        .peers
        .values()
        .map(|p| Peer {
            id: p.peer,
            name: p.name.clone(),
            color: p.color.clone(),
            role: match p.role {
                Role::Edit => "edit".into(),
                Role::View => "view".into(),
            },
            uri: seen_in(p.peer),
            you: p.peer == session.peer,
        })
        .collect();
    peers.sort_by_key(|p| p.id);
    peers
}
