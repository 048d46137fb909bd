//! One shared document in the daemon: its text (a rope), the server's text, the OT client toward the server, the
//! revision pair toward the editor showing it, and everyone's selections. Each transition (an operation from the
//! server, an acknowledgement, an edit from the editor, a refusal, a snapshot) updates it and returns [`Effects`]
//! (what to send the server and the editor) or the [`Trouble`] it is in; the session carries them out.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use codecollab_protocol::wire::PeerId;
use codecollab_protocol::{merge, Bias, Client, ClientSeq, Outgoing, Revision, Selection, TextOperation, UndoHistory};
use ropey::Rope;
use tower_lsp_server::lsp_types::{MessageType, Range};

use crate::editor_ot::{DaemonEdit, EditorBuffer};
use crate::lsp_ext::{Change, EditParams, OpenParams};
use crate::position::{self, Encoding};

mod cold;
pub use cold::TextCache;

/// The largest document a daemon holds, in chars, whatever the server says its limit is.
pub const MAX_DOCUMENT_CHARS: usize = 64 << 20;

/// Undo steps kept per document for the editor showing it.
const UNDO_STEPS: usize = 1_000;

/// How long a three-way merge's diff may take before it settles for a coarser one.
const MERGE_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Doc {
    pub path: String,
    pub text: Rope,
    /// The server's text at `ot.revision()`: the base of a three-way merge if the server can only send a snapshot,
    /// and what an operation the server refuses for good is undone against. Shares its nodes with `text` (a rope
    /// clone is O(1)) whenever nothing is pending.
    server_text: Rope,
    pub ot: Client,
    /// The server could not store (or would not yet take) our outstanding operation: it goes again on the next
    /// retry.
    pub retry: bool,
    /// Who changed this file since it was last written, if it is one that runs by itself
    /// ([`codecollab_protocol::path::runs_by_itself`]) and others changed it: it is not written until the user
    /// allows it.
    pub unapproved: Option<Unapproved>,
    pub editor: Option<EditorBuffer>,
    /// Changed since last written to disk (for documents no editor has open).
    pub dirty: bool,
    /// The text the file on disk was last known to hold (we wrote it, read it, or shared it): a change on disk is
    /// what differs from it, merged as an edit of ours (see [`Doc::disk_changed`]); our own writes are not changes.
    /// A rope cloned from `text` when written, so it shares every node `text` has not changed since.
    pub disk: Option<Rope>,
    /// Our latest selections, in `text` coordinates: sent once every local edit is acknowledged, and again after a
    /// reconnect (the server forgets a peer's presence when its connection drops).
    my_selections: Option<Vec<Selection>>,
    /// `my_selections` changed since the server last heard them.
    cursor_unsent: bool,
    /// Other peers' selections, in `text` coordinates.
    pub presence: HashMap<PeerId, Vec<Selection>>,
    /// Its text is in the cache file, not in memory (`text`, `server_text` and `disk` are empty): see [`cold`].
    cold: Option<cold::Cold>,
    /// The revision whose text the cache file holds, if it holds one.
    cached: Option<Revision>,
    /// When it was last used, in the cache's use count: the least recently used go cold first.
    pub last_used: u64,
    /// The editor's own undo steps here (`collab/undo`), kept while it shows the document.
    history: UndoHistory,
    /// Created in the session from our disk with `disk`'s text, and neither shown by an editor nor written by us
    /// since: an editor opening it with other text read the file after we did (written again since, or read by us
    /// half-written), so its text is merged in against `disk` instead of being replaced by the session's.
    pub fresh_from_disk: bool,
}

/// Others' changes to a file that runs by itself, waiting for the user's yes.
#[derive(Debug, Default)]
pub struct Unapproved {
    pub by: BTreeSet<String>,
    /// The editor was told (once per waiting period).
    pub told: bool,
}

/// A buffer an editor opened before the session held its file (we asked the server to create it, or its snapshot is
/// on its way). What the user types meanwhile is kept here, and merged with the session's text when it arrives.
#[derive(Debug)]
pub struct PendingOpen {
    pub uri: String,
    /// The text the editor opened it with.
    opened: String,
    /// The editor's text now: `opened` with the edits it sent since (a rope: each edit costs O(log n), so typing
    /// into a large file while the server answers does not copy it per keystroke).
    pub text: Rope,
    /// Edits the editor sent since it opened the buffer (its revision pair counts them).
    edits: u64,
    /// What we sent the server to create it with, if we asked it to.
    pub sent: Option<String>,
    /// The editor's latest selections in it (in its positions), sent once the session holds the file.
    pub cursor: Option<Vec<Range>>,
}

/// What a transition asks of the daemon.
#[derive(Debug, Default)]
pub struct Effects {
    /// Edits for the editor showing the document, in order.
    pub edits: Vec<(String, DaemonEdit)>,
    /// An operation for the server.
    pub send: Option<Outgoing>,
    /// What to tell the user.
    pub messages: Vec<(MessageType, String)>,
    /// The server stored one of our operations (refusals in a row are over).
    pub stored: bool,
}

/// A document out of step.
#[derive(Debug)]
pub enum Trouble {
    /// Our copy no longer fits the server's: load it again (the reason, for the log).
    Resync(String),
    /// It cannot stay in this session (grew past what a daemon holds): it leaves, its file stays as it is.
    Leave(String),
    /// Continuing could lose someone's work: the session ends (the reason, for the user).
    End(String),
}

impl PendingOpen {
    pub fn new(params: OpenParams) -> PendingOpen {
        PendingOpen {
            uri: params.uri,
            text: Rope::from_str(&params.text),
            opened: params.text,
            edits: 0,
            sent: None,
            cursor: None,
        }
    }

    /// An edit the editor made to this buffer. No daemon edit was sent to it yet, so every edit is made on the
    /// editor's own text.
    pub fn edit(&mut self, changes: &[Change], encoding: Encoding) -> Result<(), position::PositionError> {
        let (_, after) = position::changes_to_operation(&self.text, changes, encoding)?;
        self.text = after;
        self.edits += 1;
        Ok(())
    }
}

impl Doc {
    /// A document from the server's snapshot of it.
    pub fn new(path: String, revision: Revision, text: &str, max_op_bytes: usize) -> Doc {
        let rope = Rope::from_str(text);
        Doc {
            path,
            server_text: rope.clone(),
            text: rope,
            ot: Client::new(revision, 1).with_max_op_bytes(max_op_bytes),
            retry: false,
            unapproved: None,
            editor: None,
            dirty: false,
            disk: None,
            my_selections: None,
            cursor_unsent: false,
            presence: HashMap::new(),
            cold: None,
            cached: None,
            last_used: 0,
            history: UndoHistory::new(UNDO_STEPS),
            fresh_from_disk: false,
        }
    }

    /// Records that `who` changed this file, if it runs by itself and no editor shows it: it waits for a yes.
    fn changed_by(&mut self, who: &str) {
        if self.editor.is_none() && codecollab_protocol::path::runs_by_itself(&self.path) {
            self.unapproved.get_or_insert_with(Unapproved::default).by.insert(who.to_owned());
        }
    }

    /// Applies `op` (in `text` coordinates) to our text: the editor is sent it, the disk will be, and every
    /// selection moves through it.
    fn apply(&mut self, op: &TextOperation, effects: &mut Effects) -> Result<(), ()> {
        let edit = self.editor.as_mut().map(|e| (e.uri.clone(), e.daemon_edit(op.clone(), &self.text)));
        op.apply_to(&mut self.text).map_err(|_| ())?;
        self.dirty |= self.editor.is_none();
        if let Some(mine) = self.my_selections.as_mut() {
            Selection::transform_all(mine, op, Bias::Before);
        }
        for selections in self.presence.values_mut() {
            Selection::transform_all(selections, op, Bias::Before);
        }
        effects.edits.extend(edit);
        Ok(())
    }

    /// The editor that opened this path before the session held it is tracked now. What it has that the session
    /// does not (the rest of a file we created in part, what the user typed while the server answered) is merged
    /// three ways with the session's text, as a resync is: nothing typed is lost, and the editor is brought in
    /// line with the rest.
    pub fn adopt(&mut self, open: PendingOpen, encoding: Encoding) -> Effects {
        let mut effects = Effects::default();
        let server = self.text.to_string();
        let base = match open.sent.as_deref() {
            // Our own creation: the server's answer to it holds what we sent and nothing since (nobody else can
            // have had the document before it was answered), so only what the editor typed after is ours to merge.
            Some(sent) if self.ot.revision() == 0 && server == sent => sent,
            // Another peer created the same path first: the server answered our creation with theirs. Everything
            // the editor has is ours, kept beside theirs.
            Some(_) => "",
            // A file the session held before we opened it: the editor opened what the disk had of it.
            None => &open.opened,
        };
        let text = open.text.to_string();
        effects.send = self.merge_editor_text(base, &text, &server);
        let (buffer, edit) = EditorBuffer::open_after(open.uri.clone(), encoding, &text, &self.text, open.edits);
        effects.edits.extend(edit.map(|e| (open.uri, e)));
        self.editor = Some(buffer);
        self.history = UndoHistory::new(UNDO_STEPS);
        self.dirty = false;
        // The editor shows it, and writes it when its user saves.
        self.unapproved = None;
        effects
    }

    /// The file changed on disk (no editor has it open) from `base`, what it was last known to hold, to `disk`:
    /// that change is ours, merged into the text (which may hold others' changes not yet written) and sent.
    pub fn disk_changed(&mut self, disk: String) -> Effects {
        let mut effects = Effects::default();
        let current = self.text.to_string();
        let base = self.disk.take().map_or_else(|| current.clone(), String::from);
        let deadline = Some(Instant::now() + MERGE_DEADLINE);
        let ours = merge::diff(&base, &disk, deadline);
        match merge::merge(&base, &ours, &current, deadline) {
            Ok(merged) if !merged.ours.is_noop() => {
                let history = self.history.transform(&merged.ours);
                if merged.ours.apply_to(&mut self.text).is_ok() {
                    if history.is_err() {
                        self.history = UndoHistory::new(UNDO_STEPS);
                    }
                    for selections in self.presence.values_mut() {
                        Selection::transform_all(selections, &merged.ours, Bias::Before);
                    }
                    match self.ot.apply_local(merged.ours) {
                        Ok(out) => effects.send = out,
                        Err(error) => tracing::error!(%error, "the OT client refused a change on disk"),
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(path = %self.path, %error, "a change on disk could not be merged"),
        }
        // What others changed meanwhile is written back around it.
        self.dirty = self.text != disk.as_str();
        self.disk = Some(if self.dirty { Rope::from_str(&disk) } else { self.text.clone() });
        effects
    }

    /// An editor opened this document's file: it shows the session's text from now on.
    pub fn open(&mut self, params: OpenParams, encoding: Encoding) -> Effects {
        let mut send = None;
        if std::mem::take(&mut self.fresh_from_disk) {
            // Just created from what we read on disk: other text in the editor is the file read after us.
            let disk = self.disk.as_ref().map(Rope::to_string);
            if let Some(disk) = disk.filter(|disk| *disk != params.text) {
                tracing::debug!(path = %self.path, "opened with newer text than we created it from: merged in");
                let current = self.text.to_string();
                send = self.merge_editor_text(&disk, &params.text, &current);
                self.disk = Some(Rope::from_str(&params.text));
            }
        }
        let (buffer, edit) = EditorBuffer::open(params.uri.clone(), encoding, &params.text, &self.text);
        self.editor = Some(buffer);
        self.history = UndoHistory::new(UNDO_STEPS);
        // The editor shows it now, and writes it when its user saves.
        self.unapproved = None;
        Effects { edits: edit.map(|e| (params.uri, e)).into_iter().collect(), send, ..Effects::default() }
    }

    /// Merges what the editor's `text` changed from `base` into our text, `current` (base with others' changes),
    /// three ways: the merged change is applied here and returned to be sent. If it cannot be merged in time, the
    /// session's text stays (and says so in the log).
    fn merge_editor_text(&mut self, base: &str, text: &str, current: &str) -> Option<Outgoing> {
        let ours = merge::diff(base, text, Some(Instant::now() + MERGE_DEADLINE));
        match merge::merge(base, &ours, current, Some(Instant::now() + MERGE_DEADLINE)) {
            Ok(merged) if !merged.ours.is_noop() => {
                if merged.ours.apply_to(&mut self.text).is_ok() {
                    return self.ot.apply_local(merged.ours).ok().flatten();
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(path = %self.path, %error, "the editor's text could not be merged; the session's wins")
            }
        }
        None
    }

    /// The editor closed it: the daemon writes it from now on.
    pub fn close(&mut self) {
        self.fresh_from_disk = false;
        self.editor = None;
        self.history = UndoHistory::new(UNDO_STEPS);
        self.dirty = true;
    }

    /// Another peer's operation at `revision`, by `author`.
    pub fn remote_op(&mut self, revision: Revision, op: TextOperation, author: &str) -> Result<Effects, Trouble> {
        self.changed_by(author);
        if op.target_len() > MAX_DOCUMENT_CHARS {
            let why =
                format!("it grew past {MAX_DOCUMENT_CHARS} chars, more than a daemon holds; it left this session");
            return Err(Trouble::Leave(why));
        }
        let transformed = self.ot.apply_server(revision, op.clone()).map_err(|e| Trouble::Resync(e.to_string()))?;
        tracing::debug!(path = %self.path, revision, op = %brief(&op), applied = %brief(&transformed), "remote operation");
        let mut effects = Effects::default();
        if self.history.transform(&transformed).is_err() {
            self.history = UndoHistory::new(UNDO_STEPS);
        }
        self.apply(&transformed, &mut effects)
            .map_err(|()| Trouble::Resync("a transformed operation did not fit".into()))?;
        if self.ot.is_synchronized() {
            // Nothing pending: the two texts are the same, one rope shared.
            self.server_text = self.text.clone();
        } else if op.apply_to(&mut self.server_text).is_err() {
            return Err(Trouble::Resync("an operation did not fit the server's text".into()));
        }
        Ok(effects)
    }

    /// The server stored our operation `seq` as `revision`.
    pub fn ack(&mut self, seq: ClientSeq, revision: Revision) -> Result<Effects, Trouble> {
        let acked = self.ot.server_ack(seq, revision).map_err(|e| Trouble::Resync(e.to_string()))?;
        tracing::debug!(path = %self.path, seq, revision, next = ?acked.send.as_ref().map(|o| o.seq), "acknowledged");
        let mut effects = Effects { send: acked.send, ..Effects::default() };
        if let Some(committed) = acked.committed {
            effects.stored = true;
            if committed.apply_to(&mut self.server_text).is_err() {
                return Err(Trouble::Resync("an acknowledged operation did not fit the server's text".into()));
            }
            if self.ot.is_synchronized() {
                // Equal again: share the nodes instead of keeping two copies.
                self.server_text = self.text.clone();
            }
        }
        Ok(effects)
    }

    /// Where `peer`'s selections are, at the server's revision; empty if it has none here any more.
    pub fn presence(&mut self, peer: PeerId, mut selections: Vec<Selection>) {
        // Presence is at the server's revision; bring it past our own pending edits.
        if let Ok(Some(pending)) = self.ot.pending() {
            Selection::transform_all(&mut selections, &pending, Bias::Before);
        }
        if selections.is_empty() {
            self.presence.remove(&peer);
        } else {
            self.presence.insert(peer, selections);
        }
    }

    /// An edit from the editor showing this document, limited to `limit` chars. `readonly` in a view-only
    /// session: the editor is told, and its edit undone. `Err` if the edit does not fit its buffer (the message to
    /// show).
    pub fn editor_edit(&mut self, params: &EditParams, readonly: bool, limit: u64) -> Result<Effects, String> {
        let Some(editor) = self.editor.as_mut() else { return Ok(Effects::default()) };
        let outcome = editor.editor_edit(params.revision, &params.changes, readonly).map_err(|error| {
            tracing::warn!(uri = %params.uri, %error, "edit refused");
            format!("an edit was refused ({error}); reopen the file to resynchronize")
        })?;
        let uri = editor.uri.clone();
        tracing::debug!(
            path = %self.path,
            revision = params.revision,
            apply = ?outcome.apply.as_ref().map(brief),
            resend = outcome.resend.is_some(),
            "editor edit"
        );
        let mut effects = Effects::default();
        if readonly && !params.changes.is_empty() {
            effects.messages.push((MessageType::WARNING, "this session is view-only for you".into()));
        }
        effects.edits.extend(outcome.resend.map(|edit| (uri.clone(), edit)));
        let Some(op) = outcome.apply else { return Ok(effects) };
        // What this edit adds to the server's text (our other pending edits are the server's to judge: one that
        // is refused is undone then, and must not take a later, small edit down with it).
        let growth = op.target_len().saturating_sub(op.base_len());
        if growth > 0 && (self.server_text.len_chars() + growth) as u64 > limit {
            // Over the server's limit, which would refuse it: undo it in the editor now, and say so.
            let Ok(undo) = op.invert_in(&self.text) else { return Ok(effects) };
            let _ = op.apply_to(&mut self.text);
            effects.edits.push((uri, editor.daemon_edit(undo.clone(), &self.text)));
            let _ = undo.apply_to(&mut self.text);
            let text = format!(
                "that edit was undone: it would make the file {} chars long, over the server's limit of {limit}",
                self.server_text.len_chars() + growth
            );
            effects.messages.push((MessageType::ERROR, text));
            return Ok(effects);
        }
        // Its undo step: its own (an editor that does not say), the next one, or the one before's.
        if params.undo_stop != Some(false) {
            self.history.close_step();
        }
        if let Err(error) = self.history.record(&op, &self.text) {
            tracing::warn!(%error, "an edit could not be recorded for undo; the undo history starts again");
            self.history = UndoHistory::new(UNDO_STEPS);
        }
        if params.undo_stop.is_none() {
            self.history.close_step();
        }
        if op.apply_to(&mut self.text).is_err() {
            tracing::error!("an editor edit did not fit the daemon's text");
            return Ok(effects);
        }
        if let Some(mine) = self.my_selections.as_mut() {
            Selection::transform_all(mine, &op, Bias::Before);
        }
        for selections in self.presence.values_mut() {
            Selection::transform_all(selections, &op, Bias::Before);
        }
        if !op.is_noop() {
            match self.ot.apply_local(op) {
                Ok(out) => effects.send = out,
                Err(error) => tracing::error!(%error, "the OT client refused a local edit"),
            }
        }
        Ok(effects)
    }

    /// The editor's selections (in its positions). False if one is past the end of the text.
    pub fn cursor(&mut self, ranges: &[Range], encoding: Encoding) -> bool {
        let mut selections = Vec::with_capacity(ranges.len());
        for range in ranges {
            let (Ok(anchor), Ok(head)) = (
                position::offset(&self.text, range.start, encoding),
                position::offset(&self.text, range.end, encoding),
            ) else {
                return false;
            };
            selections.push(Selection { anchor, head });
        }
        self.my_selections = Some(selections);
        self.cursor_unsent = true;
        true
    }

    /// Our selections to send, once every local edit is acknowledged (so they are in the server's coordinates).
    pub fn take_cursor(&mut self) -> Option<(Revision, Vec<Selection>)> {
        if !self.ot.is_synchronized() {
            return None;
        }
        if !self.cursor_unsent {
            return None;
        }
        self.cursor_unsent = false;
        Some((self.ot.revision(), self.my_selections.clone()?))
    }

    /// The connection was resumed, perhaps on a restarted server: others' presence is forgotten (it arrives again,
    /// under the peers' ids on the new connection, never relabelled), and ours is sent again.
    pub fn forget_presence(&mut self) {
        self.presence.clear();
        self.cursor_unsent = self.my_selections.is_some();
    }

    /// `collab/undo` (or, with `redo`, `collab/redo`): the editor's most recent own step that still changes
    /// something is undone (redone) as an edit of ours: the editor is sent it like a peer's edit, the server gets
    /// it like a keystroke. `None` if there is no such step.
    pub fn undo(&mut self, redo: bool) -> Option<Effects> {
        self.editor.as_ref()?;
        let step = if redo { self.history.redo(&self.text) } else { self.history.undo(&self.text) };
        let op = match step {
            Ok(op) => op?,
            Err(error) => {
                tracing::warn!(path = %self.path, %error, "an undo step did not fit; the undo history starts again");
                self.history = UndoHistory::new(UNDO_STEPS);
                return None;
            }
        };
        tracing::debug!(path = %self.path, redo, op = %brief(&op), "undo");
        let mut effects = Effects::default();
        self.apply(&op, &mut effects).ok()?;
        match self.ot.apply_local(op) {
            Ok(out) => effects.send = out,
            Err(error) => tracing::error!(%error, "the OT client refused an undo"),
        }
        Some(effects)
    }

    /// The server refused our outstanding operation for good: undo it in our text and the editor's (what we typed
    /// after it stays), and tell the user.
    pub fn reject(&mut self, reason: &str) -> Result<Effects, Trouble> {
        let base = self.server_text.to_string();
        let rebased = self.ot.reject(&base).map_err(|e| Trouble::Resync(e.to_string()))?;
        tracing::debug!(path = %self.path, undo = %brief(&rebased.apply), next = ?rebased.send.as_ref().map(|o| (o.seq, brief(&o.op))), "refused for good");
        let mut effects = Effects { send: rebased.send, ..Effects::default() };
        // What the undo steps undid is partly gone: they start again.
        self.history = UndoHistory::new(UNDO_STEPS);
        self.apply(&rebased.apply, &mut effects)
            .map_err(|()| Trouble::Resync("undoing a refused operation did not fit".into()))?;
        let text = format!("the server refused an edit of {} ({reason}); it was undone", self.path);
        effects.messages.push((MessageType::ERROR, text));
        Ok(effects)
    }

    /// A snapshot of this document: the server's history (in memory and in its store) no longer reaches back to
    /// our revision. Rebuilds on it with a three-way merge (our base, the snapshot, our pending edits), which keeps
    /// every insertion on both sides; the editor follows through the usual revision pair.
    pub fn resync(&mut self, revision: Revision, text: &str, last_seq: Option<u64>) -> Result<Effects, Trouble> {
        if revision < self.ot.revision() {
            // The server went back in time (restored from an old backup): what it lost, we have. Merging with its
            // older text would delete that; keep ours and stop instead.
            return Err(Trouble::End(format!(
                "the server's copy of {} is older than ours (revision {revision}, ours {}): it lost recent changes",
                self.path,
                self.ot.revision()
            )));
        }
        let from = self.ot.revision();
        tracing::info!(path = %self.path, from, to = revision, "resync from a snapshot (three-way merge)");
        let base = self.server_text.to_string();
        let deadline = Instant::now() + MERGE_DEADLINE;
        let path = self.path.clone();
        let unmerged =
            |error: String| Trouble::End(format!("{path} could not be merged with the server's copy{error}"));
        let rebased = match self.ot.resync(&base, revision, text, last_seq, Some(deadline)) {
            Ok(rebased) => rebased,
            Err(error) => return Err(unmerged(format!(" ({error})"))),
        };
        let mut effects = Effects { send: rebased.send, ..Effects::default() };
        if self.history.transform(&rebased.apply).is_err() {
            self.history = UndoHistory::new(UNDO_STEPS);
        }
        if self.apply(&rebased.apply, &mut effects).is_err() {
            return Err(unmerged(String::new()));
        }
        self.server_text =
            if effects.send.is_none() && self.ot.is_synchronized() { self.text.clone() } else { Rope::from_str(text) };
        self.retry = false;
        if !rebased.apply.is_noop() {
            self.changed_by("someone");
        }
        Ok(effects)
    }
}

/// An operation in a few words, for the log: its components, long inserts shortened.
pub(crate) fn brief(op: &TextOperation) -> String {
    use codecollab_protocol::Component;
    let parts: Vec<String> = op
        .components()
        .iter()
        .map(|c| match c {
            Component::Retain(n) => format!("r{n}"),
            Component::Delete(n) => format!("d{n}"),
            Component::Insert(text) if text.len() > 24 => {
                format!("i{}:{:?}..", text.chars().count(), text.chars().take(12).collect::<String>())
            }
            Component::Insert(text) => format!("i{:?}", &**text),
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests;
