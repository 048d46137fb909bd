//! A session's files and buffers: a document arriving (a snapshot: new, taken up by a buffer that waited for it,
//! or a resync), the editor opening, editing, pointing into and closing buffers, files created from the editor,
//! and writing what no editor shows to disk (files that run by themselves only on the user's yes), never over a
//! local file that differs (a peer's file landing on one of ours is moved aside first).

use codecollab_protocol::wire::{ClientMsg, DocId, Role};
use codecollab_protocol::Revision;

use super::{op_bytes, Ended, Io, Session, Starting};
use crate::document::{Doc, PendingOpen, Unapproved, MAX_DOCUMENT_CHARS};
use crate::lsp_ext::{ApprovalParams, CloseParams, CursorParams, EditParams, FilesParams, OpenParams, RenamedFile};
use crate::workspace;

/// How many moves by peers `Session::moved_away` remembers: past it, it starts again (a peer renaming without end
/// does not grow our memory).
const MOVES_REMEMBERED: usize = 4096;

impl Session {
    /// The document an editor buffer shows.
    fn doc_for_uri(&self, uri: &str) -> Option<DocId> {
        self.docs.iter().find(|(_, d)| d.editor.as_ref().is_some_and(|e| e.uri == uri)).map(|(&id, _)| id)
    }

    /// A document's whole text: one we fetched or created, or, for one we hold, a resync.
    pub(super) fn snapshot(
        &mut self,
        doc: DocId,
        path: String,
        revision: Revision,
        text: String,
        last_seq: Option<u64>,
        io: &Io,
    ) -> Result<(), Ended> {
        let sharing = matches!(self.starting, Some(Starting::Share { .. }));
        let joining = matches!(self.starting, Some(Starting::Join { .. }));
        tracing::debug!(%doc, %path, "snapshot");
        let ours = self.created_here.remove(&path);
        // Our own creation from disk won (the server holds what we read): the file is ours as we read it.
        let ours_won = ours.as_ref().is_some_and(|sent| *sent == text);
        let ours = ours.is_some();
        self.fetching.remove(&path);
        if let Some(d) = self.docs.get_mut(&doc) {
            let resynced = d.resync(revision, &text, last_seq);
            self.apply(doc, resynced, io)?;
            if let Some(d) = self.docs.get(&doc) {
                io.editor.cursors(d, &self.peers);
            }
            return Ok(());
        }
        let refusal = self.refusal_of(&path, Some(doc)).or_else(|| {
            let chars = text.chars().count();
            (chars > MAX_DOCUMENT_CHARS)
                .then(|| format!("{chars} chars is more than a daemon holds ({MAX_DOCUMENT_CHARS})"))
        });
        if let Some(why) = refusal {
            self.pending_opens.remove(&path);
            if self.case_keys.get(&codecollab_protocol::path::case_key(&path)).is_some_and(|(id, _)| *id == doc) {
                self.release(&path);
            }
            io.send(ClientMsg::Unsubscribe { doc });
            self.refused_on_disk(&path, &why, io);
            return self.received(io);
        }
        let mut entry = Doc::new(path.clone(), revision, &text, op_bytes(&self.limits));
        // Ours when we shared it; otherwise it came from the session, and one that runs by itself waits.
        entry.dirty = !sharing;
        if joining {
            // A local file is never overwritten by a join without the user's consent: one that differs is a
            // conflict, settled once every file is in (see `check_started`); one that is the same stays as it is.
            if let Some(local) = workspace::existing(&self.root, &path) {
                entry.dirty = false;
                let differs = local != text.as_bytes();
                if let (true, Some(Starting::Join { conflicts, .. })) = (differs, &mut self.starting) {
                    conflicts.push(path.clone());
                }
            }
        } else if ours_won {
            // Created from our disk, with what we read. If the file holds more now (written again since, or read
            // half-written), that is a change on disk, merged against what we read (below, or at the editor's
            // open), never a conflict: the file is not moved aside, and not written over.
            entry.dirty = false;
            entry.fresh_from_disk = true;
        } else if ours {
            // Created from our disk, but a peer created the same path first and the server gave us theirs: ours is
            // moved aside.
            entry.dirty = workspace::existing(&self.root, &path).is_none_or(|local| local != text.as_bytes());
            if let Err(why) = self.move_aside(&path, &text, io) {
                entry.dirty = false;
                self.refused_on_disk(&path, &why, io);
            }
        } else if !sharing && !self.pending_opens.contains_key(&path) {
            // A file another peer created where ours (not in the session) already was: ours is moved aside, or,
            // if it cannot be, the session's is not written.
            if let Err(why) = self.move_aside(&path, &text, io) {
                entry.dirty = false;
                self.refused_on_disk(&path, &why, io);
            }
        }
        if !sharing && !ours && codecollab_protocol::path::runs_by_itself(&path) {
            let by = self.created_by.remove(&doc).unwrap_or_else(|| "the session".to_owned());
            entry.unapproved = Some(Unapproved { by: [by].into(), told: false });
        }
        if !entry.dirty {
            // On disk as it is (we shared it, or it was there already).
            entry.disk = Some(entry.text.clone());
        }
        let mut pending = self.pending_opens.remove(&path);
        if let (true, Some(open)) = (ours_won, pending.as_mut()) {
            // The editor's own create was answered with ours from disk: what it holds beyond that is its own.
            open.sent = Some(text.clone());
        }
        let cursor = pending.as_ref().and_then(|open| open.cursor.clone());
        let opened = pending.is_some();
        let adopted = pending.map(|open| entry.adopt(open, io.editor.encoding));
        self.claim(doc, &path);
        entry.last_used = self.cache.tick();
        self.grew(entry.hot_bytes());
        self.docs.insert(doc, entry);
        if let Some(effects) = adopted {
            self.apply(doc, Ok(effects), io)?;
        }
        if ours_won && !opened {
            // Written again since we read it: the watch's batch for that may have come while the creation was on
            // its way (queued offline, or a slow answer) and found the path taken. Merged now, as it would be then.
            let now = workspace::existing(&self.root, &path).and_then(|bytes| String::from_utf8(bytes).ok());
            if let (Some(now), Some(d)) = (now, self.docs.get_mut(&doc)) {
                if d.disk.as_ref().is_some_and(|read| *read != now.as_str()) {
                    tracing::debug!(%path, "changed on disk while its creation was on its way: merged");
                    let effects = d.disk_changed(now);
                    self.apply(doc, Ok(effects), io)?;
                }
            }
        }
        // Where the editor's cursor was meanwhile: where others see this peer.
        if let (Some(ranges), Some(d)) = (cursor, self.docs.get_mut(&doc)) {
            if d.cursor(&ranges, io.editor.encoding) {
                self.flush_cursor(doc, io);
            }
        }
        self.received(io)
    }

    /// `collab/open`: the editor opened a file of the shared folder.
    pub fn open(&mut self, params: OpenParams, io: &Io) {
        let Some(path) = workspace::uri_to_path(&params.uri).and_then(|p| workspace::relative(&self.root, &p)) else {
            tracing::info!(uri = %params.uri, "open ignored: outside the shared folder");
            return;
        };
        if let Err(why) = codecollab_protocol::path::check(&path) {
            tracing::info!(%path, %why, "open ignored: not a session path");
            return;
        }
        let moved = self.moved_away.remove(&path);
        let known = self.docs.iter().find(|(_, d)| d.path == path).map(|(&id, _)| id);
        let known = known.or_else(|| moved.filter(|&doc| self.opened_before_the_move(doc, &path, &params, io)));
        tracing::debug!(%path, ?known, fetching = self.fetching.contains_key(&path), "editor opened");
        match known {
            Some(doc) => {
                self.moved_away.retain(|_, moved| *moved != doc); // The editor knows it now.
                self.warm(doc, io);
                let Some(d) = self.docs.get_mut(&doc) else {
                    // Its cold text could not be read back and it is being fetched again: its snapshot takes this
                    // open up, as for a file on its way.
                    if self.fetching.contains_key(&path) {
                        self.pending_opens.insert(path, PendingOpen::new(params));
                    }
                    return;
                };
                let effects = d.open(params, io.editor.encoding);
                let _ = self.apply(doc, Ok(effects), io);
                if let Some(d) = self.docs.get(&doc) {
                    io.editor.cursors(d, &self.peers);
                }
            }
            // Another peer's file on its way to us: its snapshot takes this open up.
            None if self.fetching.contains_key(&path) => {
                self.pending_opens.insert(path, PendingOpen::new(params));
            }
            None if self.role == Role::Edit => {
                self.pending_opens.insert(path.clone(), PendingOpen::new(params));
                self.create(&path, io);
            }
            None => tracing::info!(%path, "open ignored: view-only sessions cannot add files"),
        }
    }

    /// Whether the editor's open of `path`, which a peer moved document `doc` away from, was sent before the editor
    /// heard of the move: the file is gone from our disk (we moved it), no buffer has the document, and the buffer
    /// holds its text. Such a buffer is the document's under its old name (the editor renames it on `collab/files`),
    /// not a new file: creating one would bring the old name back for everyone. A file really created at the old
    /// name is on disk or starts with other text.
    fn opened_before_the_move(&mut self, doc: DocId, path: &str, params: &OpenParams, io: &Io) -> bool {
        if workspace::existing(&self.root, path).is_some() {
            return false;
        }
        self.warm(doc, io);
        self.docs.get(&doc).is_some_and(|d| d.editor.is_none() && d.text == params.text.as_str())
    }

    /// Asks the server to create `path` with the text our editor opened it with: whole if it fits in a frame, else
    /// its start, the rest following as edits once the document exists (merged in when its snapshot arrives). A
    /// file larger than a document may be is refused here, with a message.
    pub(super) fn create(&mut self, path: &str, io: &Io) {
        let Some(open) = self.pending_opens.get_mut(path) else { return };
        let chars = open.text.len_chars() as u64;
        let limit = self.limits.max_document_chars;
        if chars > limit {
            self.pending_opens.remove(path);
            return io
                .editor
                .error(format!("{path} is not shared: {chars} chars is over the server's limit of {limit}"));
        }
        // At most a frame's worth of bytes, ending on a character boundary.
        let cut = open.text.byte_to_char(open.text.len_bytes().min(op_bytes(&self.limits)));
        let text = open.text.slice(..cut).to_string();
        open.sent = Some(text.clone());
        tracing::debug!(%path, "create");
        io.send(ClientMsg::Create { path: path.to_owned(), text });
    }

    /// `collab/edit`: the editor changed a buffer.
    pub fn editor_edit(&mut self, params: EditParams, io: &Io) {
        let Some(doc) = self.doc_for_uri(&params.uri) else {
            // A buffer whose file the session does not hold yet: the edit is kept with it until it does.
            match self.pending_opens.values_mut().find(|o| o.uri == params.uri) {
                Some(open) => {
                    if let Err(error) = open.edit(&params.changes, io.editor.encoding) {
                        tracing::warn!(uri = %params.uri, %error, "an edit of a waiting buffer was refused");
                    }
                }
                None => tracing::warn!(uri = %params.uri, "edit refused: unknown document (send collab/open first)"),
            }
            return;
        };
        let readonly = self.role == Role::View;
        let limit = self.limits.max_document_chars;
        let Some(d) = self.docs.get_mut(&doc) else { return };
        match d.editor_edit(&params, readonly, limit) {
            Ok(effects) => {
                let _ = self.apply(doc, Ok(effects), io);
            }
            Err(message) => io.editor.warning(message),
        }
    }

    /// `collab/undo` and `collab/redo`: the editor's own most recent step in the buffer at `uri` is undone (redone)
    /// for everyone. False if there was none (or the session is view-only).
    pub fn undo(&mut self, uri: &str, redo: bool, io: &Io) -> bool {
        if self.role == Role::View {
            return false;
        }
        let Some(doc) = self.doc_for_uri(uri) else { return false };
        let Some(effects) = self.docs.get_mut(&doc).and_then(|d| d.undo(redo)) else { return false };
        self.apply(doc, Ok(effects), io).is_ok()
    }

    /// `collab/cursor`: the editor's selections in a buffer.
    pub fn editor_cursor(&mut self, params: CursorParams, io: &Io) {
        let Some(doc) = self.doc_for_uri(&params.uri) else {
            // A buffer whose file the session does not hold yet: its cursor is sent once it does.
            if let Some(open) = self.pending_opens.values_mut().find(|o| o.uri == params.uri) {
                open.cursor = Some(params.ranges);
            }
            return;
        };
        let Some(d) = self.docs.get_mut(&doc) else { return };
        if !d.cursor(&params.ranges, io.editor.encoding) {
            tracing::warn!(uri = %params.uri, "cursor ignored: position past the end");
            return;
        }
        self.flush_cursor(doc, io);
    }

    /// `collab/close`: the editor closed a buffer; the daemon writes its file from now on.
    pub fn close(&mut self, params: CloseParams) {
        tracing::debug!(uri = %params.uri, "editor closed");
        // Closed before the session held it: nothing to track any more (a Create already sent still creates it).
        self.pending_opens.retain(|_, open| open.uri != params.uri);
        if let Some(doc) = self.doc_for_uri(&params.uri) {
            if let Some(d) = self.docs.get_mut(&doc) {
                d.close();
            }
        }
    }

    /// Writes changed files no editor has open. One that runs by itself and was changed by others waits for the
    /// user's yes (`collab/approval`, told once per waiting period).
    pub fn flush_disk(&mut self, io: &Io) {
        let mut refused = Vec::new();
        // Files a peer is in that are on disk for the first time: the peer list can point editors at them now.
        let mut first_written = false;
        // Files peers created, on this disk for the first time: `collab/files`.
        let mut created = Vec::new();
        // Cold documents whose text could not be read back for their write.
        let mut lost = Vec::new();
        for (id, d) in self.docs.iter_mut() {
            // A file our editor is moving is written once the move is done: written at its new path before it,
            // the editor's move would put the older text over ours, and that would read as a change on disk.
            if !d.dirty || d.editor.is_some() || super::file_ops::editor_is_moving(&self.editor_moving, &d.path) {
                continue;
            }
            // Gone from disk since we last wrote or read it: deleted here (by the editor, a terminal, a tool), and
            // that deletion is on its way (`didDeleteFiles`, the watch). Written now, the file would come back, and
            // the watch would create it again for everyone.
            let gone = || workspace::resolve(&self.root, &d.path).is_ok_and(|f| std::fs::symlink_metadata(f).is_err());
            if d.disk.is_some() && gone() {
                tracing::debug!(path = %d.path, "deleted on disk: not written again");
                continue;
            }
            // A cold one (a join's files go cold before they are written) is read back for the write, and goes
            // cold again after it: its text did not change.
            let cold = match d.is_cold().then(|| self.cache.file(*id).and_then(|f| d.warm(&f).map(|()| f))) {
                None => None,
                Some(Ok(file)) => Some(file),
                Some(Err(error)) => {
                    lost.push((*id, error));
                    continue;
                }
            };
            if let Some(unapproved) = d.unapproved.as_mut().filter(|_| !io.allow_runnable_files) {
                if !std::mem::replace(&mut unapproved.told, true) {
                    let path = workspace::resolve(&self.root, &d.path).ok();
                    let created = path.as_ref().is_none_or(|p| !p.exists());
                    let uri = path.map(|p| workspace::path_to_uri(&p)).unwrap_or_default();
                    let by = unapproved.by.iter().cloned().collect();
                    tracing::info!(path = %d.path, ?by, "waiting for the user's yes to write");
                    io.editor.approval(ApprovalParams { uri, path: d.path.clone(), by, created });
                }
                continue;
            }
            // The file may have changed on disk since we last knew it, its watcher's batch still on its way: that
            // change is merged in first, never written over.
            let root = &self.root;
            let changed = d.disk.as_ref().and_then(|known| {
                let now = String::from_utf8(workspace::existing(root, &d.path)?).ok()?;
                (*known != now.as_str()).then_some(now)
            });
            if let Some(now) = changed {
                tracing::debug!(path = %d.path, "changed on disk just before our write: merged first");
                if let Some(out) = d.disk_changed(now).send {
                    io.send_op(*id, out);
                }
            }
            // A failure is told once and not retried on every tick; the next change tries again.
            d.dirty = false;
            d.unapproved = None;
            match workspace::write(&self.root, &d.path, &d.text.to_string()) {
                Ok(()) => {
                    let first = d.disk.replace(d.text.clone()).is_none();
                    d.fresh_from_disk = false;
                    first_written |= first && !d.presence.is_empty();
                    if self.announced.remove(id) {
                        created
                            .extend(workspace::resolve(&self.root, &d.path).ok().map(|f| workspace::path_to_uri(&f)));
                    }
                }
                Err(error) => refused.push((d.path.clone(), format!("{error:#}"))),
            }
            if let Some(file) = cold.filter(|_| d.could_be_cold()) {
                if let Err(error) = d.go_cold(&file) {
                    tracing::warn!(path = %d.path, %error, "keeping text in memory: the cache cannot be written");
                }
            }
        }
        for (doc, error) in lost {
            self.lost_cold_text(doc, &error, io);
        }
        self.cool();
        for (path, why) in refused {
            self.refused_on_disk(&path, &why, io);
        }
        if first_written {
            io.editor.peers(Some(self));
        }
        io.editor.files(FilesParams { created, ..FilesParams::default() });
    }

    /// The user allowed writing the file at `uri` (`collab/allow`): writes it now, as the session has it, if it was
    /// waiting. Later changes by others wait again.
    pub fn allow(&mut self, uri: &str, io: &Io) -> bool {
        let Some(path) = workspace::uri_to_path(uri).and_then(|p| workspace::relative(&self.root, &p)) else {
            return false;
        };
        let Some(d) = self.docs.values_mut().find(|d| d.path == path && d.unapproved.is_some()) else {
            return false;
        };
        d.unapproved = None;
        d.dirty = false;
        if d.editor.is_some() {
            return true;
        }
        match workspace::write(&self.root, &d.path, &d.text.to_string()) {
            Ok(()) => {
                d.disk = Some(d.text.clone());
                d.fresh_from_disk = false;
                true
            }
            Err(error) => {
                self.refused_on_disk(&path, &format!("{error:#}"), io);
                false
            }
        }
    }

    /// The server deleted a document: its file goes too, and the editor is told (`collab/files`). A buffer an
    /// editor has open keeps its text (everything in it is what the session had) and leaves the session: its user
    /// is told, and saving it creates the file again, for everyone.
    pub(super) fn deleted(&mut self, doc: DocId, io: &Io) {
        self.fetching.retain(|_, fetched| *fetched != doc);
        self.announced.remove(&doc);
        let Some(d) = self.remove_doc(doc) else { return };
        self.release(&d.path);
        let Ok(file) = workspace::resolve(&self.root, &d.path) else { return };
        let existed = file.exists();
        if let Err(error) = workspace::remove(&self.root, &d.path) {
            return self.refused_on_disk(&d.path, &format!("{error:#}"), io);
        }
        if existed || d.editor.is_some() {
            let uri = d.editor.as_ref().map_or_else(|| workspace::path_to_uri(&file), |e| e.uri.clone());
            io.editor.files(FilesParams { deleted: vec![uri], ..FilesParams::default() });
        }
    }

    /// The server moved a document: its file follows, if the new path is one we take.
    ///
    /// While renames of ours are in flight for `doc`, the server broadcasts each back to us in the order we sent
    /// them: our own is already carried out here, and a peer's that comes before them is overridden by ours, which
    /// the server applies after it. Neither moves anything (moving back to an older name would race the editor,
    /// which moves the file itself).
    pub(super) fn renamed(&mut self, doc: DocId, path: String, io: &Io) {
        if let Some(ours) = self.renames_in_flight.get(&doc) {
            let own = ours.front() == Some(&path);
            tracing::debug!(%doc, to = %path, own, "renamed while renames of ours are in flight");
            if own {
                self.rename_answered(doc);
            }
            return;
        }
        self.warm(doc, io);
        let Some(from) = self.docs.get(&doc).map(|d| d.path.clone()) else { return };
        tracing::debug!(%doc, %from, to = %path, "renamed by a peer");
        if from == path {
            return; // Our own rename, already carried out here (see `files_renamed`).
        }
        if let Some(why) = self.refusal_of(&path, Some(doc)) {
            // Moved where we do not follow: it leaves our session, and its file stays where it was.
            self.remove_doc(doc);
            self.release(&from);
            io.send(ClientMsg::Unsubscribe { doc });
            return self.refused_on_disk(&path, &why, io);
        }
        // Moved onto a file of ours the session does not hold: ours is moved aside first, or, if it cannot be, the
        // document leaves our session and nothing is moved.
        let text = self.docs.get(&doc).map(|d| d.text.to_string()).unwrap_or_default();
        if let Err(why) = self.move_aside(&path, &text, io) {
            self.remove_doc(doc);
            self.release(&from);
            io.send(ClientMsg::Unsubscribe { doc });
            return self.refused_on_disk(&path, &why, io);
        }
        let result = workspace::rename(&self.root, &from, &path);
        self.release(&from);
        self.claim(doc, &path);
        let mut editor_uri = None;
        if let Some(d) = self.docs.get_mut(&doc) {
            d.path = path.clone();
            editor_uri = d.editor.as_ref().map(|e| e.uri.clone());
        }
        match result {
            Err(error) => {
                // Not moved, so not on disk at its new path: its next write there makes a new file.
                if let Some(d) = self.docs.get_mut(&doc) {
                    d.forget_disk();
                }
                self.refused_on_disk(&path, &format!("{error:#}"), io)
            }
            Ok(()) => {
                if editor_uri.is_none() {
                    if self.moved_away.len() >= MOVES_REMEMBERED {
                        self.moved_away.clear();
                    }
                    self.moved_away.insert(from.clone(), doc);
                }
                let uri_of = |p: &str| workspace::resolve(&self.root, p).ok().map(|f| workspace::path_to_uri(&f));
                // The buffer showing it (by the URI the editor opened it with) is to follow it.
                if let (Some(old_uri), Some(new_uri)) = (editor_uri.or_else(|| uri_of(&from)), uri_of(&path)) {
                    io.editor
                        .files(FilesParams { renamed: vec![RenamedFile { old_uri, new_uri }], ..Default::default() });
                }
            }
        }
    }

    /// Moves our file at `path` into the session's backup folder beside the root, and says so, if it is there and
    /// differs from `text`, the session's file about to be written there: a local file is never overwritten.
    /// `Err` (why, for the user) if it could not be moved: then nothing may be written there.
    fn move_aside(&mut self, path: &str, text: &str, io: &Io) -> Result<(), String> {
        if workspace::existing(&self.root, path).is_none_or(|local| local == text.as_bytes()) {
            return Ok(());
        }
        let folder = self.backup.get_or_insert_with(|| workspace::backup_folder(&self.root)).clone();
        match workspace::back_up(&self.root, path, &folder) {
            Ok(()) => {
                let moved = folder.join(path);
                io.editor.warning(format!(
                    "your {path}, not in the session, differed from the session's file of that name: moved to {}",
                    moved.display()
                ));
                Ok(())
            }
            Err(error) => Err(format!("your own {path} is there and could not be moved aside ({error:#})")),
        }
    }

    /// Tells the user, once per path, that a file of the session is not taken to disk, and why.
    pub(super) fn refused_on_disk(&mut self, path: &str, why: &str, io: &Io) {
        if self.warned.insert(path.to_owned()) {
            tracing::warn!(%path, %why, "not written");
            io.editor.warning(format!("not writing {path}: {why}"));
        }
    }
}
