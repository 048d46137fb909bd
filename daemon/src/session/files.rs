//! A session's files and buffers: a document arriving (a snapshot: new, taken up by a buffer that waited for it,
//! or a resync), the editor opening, editing, pointing into and closing buffers, files created from the editor,
//! writing what no editor shows to disk (files that run by themselves only on the user's yes), never over a local
//! file that differs (a join's conflicts, a peer's file landing on one of ours), and the progress of the share or
//! join that started the session.

use codecollab_protocol::wire::{ClientMsg, DocId, DocInfo, Role};
use codecollab_protocol::Revision;
use tower_lsp_server::jsonrpc;

use super::{op_bytes, Ended, Io, Session, Starting};
use crate::document::{Doc, PendingOpen, Unapproved, MAX_DOCUMENT_CHARS};
use crate::lsp_ext::{
    ApprovalParams, BackupInfo, CloseParams, CursorParams, EditParams, JoinResult, OnConflict, OpenParams, ShareResult,
    JOIN_CONFLICTS,
};
use crate::main_loop::rpc_error;
use crate::output::Progress;
use crate::workspace;

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
        let ours = self.created_here.remove(&path);
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
        } else if ours {
            // Created from our disk: already there, unless a peer created the same path first and the server gave
            // us theirs, in which case ours is moved aside.
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
        let adopted = self.pending_opens.remove(&path).map(|open| entry.adopt(open, io.editor.encoding));
        self.claim(doc, &path);
        self.docs.insert(doc, entry);
        if let Some(effects) = adopted {
            self.apply(doc, Ok(effects), io)?;
        }
        self.received(io)
    }

    /// A snapshot arrived: counts it toward the share or join in progress, and answers that once all are in.
    fn received(&mut self, io: &Io) -> Result<(), Ended> {
        match &mut self.starting {
            Some(Starting::Share { uploads, .. }) => {
                *uploads = uploads.saturating_sub(1);
                let (left, done) = (*uploads, self.docs.len());
                if done % 25 == 0 && left > 0 {
                    let token = "codecollab/share".into();
                    io.editor.progress(Progress::Report { token, done, total: done + left });
                }
            }
            // Nothing is written until every file is in and the conflicts are settled.
            Some(Starting::Join { waiting, .. }) => *waiting = waiting.saturating_sub(1),
            None => {}
        }
        self.check_started(io)
    }

    /// Starts sending the files up (a share) or asking for them (a join). `Err` if the shared folder cannot be read.
    pub fn begin(&mut self, docs: Vec<DocInfo>, io: &Io) -> anyhow::Result<()> {
        let count = match self.starting {
            Some(Starting::Share { .. }) => self.upload(io)?,
            Some(Starting::Join { .. }) => self.download(docs, io),
            None => return Ok(()),
        };
        self.set_remaining(count);
        Ok(())
    }

    /// After a reconnect, a share or join interrupted before every file was up or down goes on: what the server
    /// has not sent back is sent again (a share), and what is still being fetched is counted again (a join).
    pub(super) fn go_on(&mut self, io: &Io) -> Result<(), Ended> {
        let count = match self.starting {
            Some(Starting::Share { .. }) => match self.upload(io) {
                Ok(count) => count,
                Err(error) => {
                    let root = self.root.display().to_string();
                    if let Some(starting) = self.starting.take() {
                        starting.refuse(format!("reading {root}: {error:#}"));
                    }
                    return Ok(());
                }
            },
            Some(Starting::Join { .. }) => self.fetching.len(),
            None => return Ok(()),
        };
        self.set_remaining(count);
        self.check_started(io)
    }

    /// How many files the share or join in progress still waits for.
    fn set_remaining(&mut self, count: usize) {
        match &mut self.starting {
            Some(Starting::Share { uploads, .. }) => *uploads = count,
            Some(Starting::Join { waiting, .. }) => *waiting = count,
            None => {}
        }
    }

    /// Answers the share or join that started the session once every file is up (or down). A join whose folder
    /// holds files that differ from the session's writes nothing and is refused, listing them, unless the user
    /// chose to have them moved aside first ([`OnConflict::Backup`]).
    pub fn check_started(&mut self, io: &Io) -> Result<(), Ended> {
        match self.starting.take() {
            Some(Starting::Share { reply, uploads: 0, invites: (invite, view_invite) }) => {
                let message = format!("{} files shared", self.docs.len());
                io.editor.progress(Progress::End { token: "codecollab/share".into(), message });
                let _ = reply.send(Ok(ShareResult { session: self.id.clone(), invite, view_invite }));
                self.watch(io);
            }
            Some(Starting::Join { reply, waiting: 0, on_conflict, mut conflicts }) => {
                conflicts.sort();
                let backup = match self.settle_conflicts(conflicts, on_conflict) {
                    Ok(backup) => backup,
                    Err(error) => {
                        io.editor
                            .progress(Progress::End { token: "codecollab/join".into(), message: "refused".into() });
                        for d in self.docs.values_mut() {
                            d.dirty = false;
                        }
                        let _ = reply.send(Err(error));
                        return Err(Ended::JoinRefused);
                    }
                };
                self.flush_disk(io);
                let message = format!("{} files received", self.docs.len());
                io.editor.progress(Progress::End { token: "codecollab/join".into(), message });
                let mut files: Vec<String> = self.docs.values().map(|d| d.path.clone()).collect();
                files.sort();
                let _ = reply.send(Ok(JoinResult { session: self.id.clone(), files, backup }));
                self.watch(io);
            }
            other => self.starting = other,
        }
        Ok(())
    }

    /// Local files that differ from the session's, at the end of a join: an error listing them, or (with
    /// [`OnConflict::Backup`]) each moved into a backup folder beside the root, to be written as the session has it.
    fn settle_conflicts(
        &mut self,
        conflicts: Vec<String>,
        on_conflict: OnConflict,
    ) -> Result<Option<BackupInfo>, jsonrpc::Error> {
        if conflicts.is_empty() {
            return Ok(None);
        }
        if on_conflict == OnConflict::Refuse {
            const SHOWN: usize = 10;
            let mut listed = conflicts.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
            if conflicts.len() > SHOWN {
                listed.push_str(&format!(" and {} more", conflicts.len() - SHOWN));
            }
            let message = format!(
                "not joined: {} local file{} in {} differ{} from the session's and would be overwritten: {listed}. \
                 Nothing was written. Join again choosing to move them aside (they are kept in a backup folder \
                 beside it), or into an empty folder",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                self.root.display(),
                if conflicts.len() == 1 { "s" } else { "" },
            );
            let mut error = rpc_error(message);
            error.code = jsonrpc::ErrorCode::ServerError(JOIN_CONFLICTS);
            error.data = Some(serde_json::json!({ "conflicts": conflicts }));
            return Err(error);
        }
        let folder = workspace::backup_folder(&self.root);
        for path in &conflicts {
            workspace::back_up(&self.root, path, &folder).map_err(|error| {
                rpc_error(format!("not joined: moving {path} aside into {} failed: {error:#}", folder.display()))
            })?;
            if let Some(d) = self.docs.values_mut().find(|d| &d.path == path) {
                d.dirty = true;
            }
        }
        tracing::info!(folder = %folder.display(), files = conflicts.len(), "local files moved aside");
        Ok(Some(BackupInfo { folder: folder.display().to_string(), files: conflicts }))
    }

    /// Shares the files of the shared folder: asks the server to create each (its snapshot comes back). `Err` if
    /// the folder cannot be read.
    fn upload(&mut self, io: &Io) -> anyhow::Result<usize> {
        // After a reconnect in the middle of a share, what the server already sent back is not sent again.
        let held: std::collections::HashSet<&str> = self.docs.values().map(|d| d.path.as_str()).collect();
        let files = workspace::scan(&self.root)?;
        let files: Vec<(String, String)> =
            files.into_iter().filter(|(path, _)| !held.contains(path.as_str())).collect();
        let count = files.len();
        if count > 0 {
            let title = format!("CodeCollab: sharing {count} files");
            io.editor.progress(Progress::Begin { token: "codecollab/share".into(), title, total: count });
        }
        for (path, text) in files {
            io.send(ClientMsg::Create { path, text });
        }
        Ok(count)
    }

    /// Joins: asks for every document the session holds. Returns how many were asked for (files the daemon
    /// refuses are not).
    fn download(&mut self, docs: Vec<DocInfo>, io: &Io) -> usize {
        for doc in docs {
            if !self.docs.contains_key(&doc.doc) {
                self.fetch(doc, io);
            }
        }
        let waiting = self.fetching.len();
        if waiting > 0 {
            let title = format!("CodeCollab: receiving {waiting} files");
            io.editor.progress(Progress::Begin { token: "codecollab/join".into(), title, total: waiting });
        }
        waiting
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
        match self.docs.iter().find(|(_, d)| d.path == path).map(|(&id, _)| id) {
            Some(doc) => {
                let Some(d) = self.docs.get_mut(&doc) else { return };
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

    /// Asks the server to create `path` with the text our editor opened it with: whole if it fits in a frame, else
    /// its start, the rest following as edits once the document exists (merged in when its snapshot arrives). A
    /// file larger than a document may be is refused here, with a message.
    pub(super) fn create(&mut self, path: &str, io: &Io) {
        let Some(open) = self.pending_opens.get_mut(path) else { return };
        let chars = open.text.chars().count() as u64;
        let limit = self.limits.max_document_chars;
        if chars > limit {
            self.pending_opens.remove(path);
            return io
                .editor
                .error(format!("{path} is not shared: {chars} chars is over the server's limit of {limit}"));
        }
        let mut cut = open.text.len().min(op_bytes(&self.limits));
        while !open.text.is_char_boundary(cut) {
            cut -= 1;
        }
        let text = open.text[..cut].to_owned();
        open.sent = Some(text.clone());
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

    /// `collab/cursor`: the editor's selections in a buffer.
    pub fn editor_cursor(&mut self, params: CursorParams, io: &Io) {
        let Some(doc) = self.doc_for_uri(&params.uri) else { return };
        let Some(d) = self.docs.get_mut(&doc) else { return };
        if !d.cursor(&params.ranges, io.editor.encoding) {
            tracing::warn!(uri = %params.uri, "cursor ignored: position past the end");
            return;
        }
        self.flush_cursor(doc, io);
    }

    /// `collab/close`: the editor closed a buffer; the daemon writes its file from now on.
    pub fn close(&mut self, params: CloseParams) {
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
        for d in self.docs.values_mut() {
            if !d.dirty || d.editor.is_some() {
                continue;
            }
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
            // A failure is told once and not retried on every tick; the next change tries again.
            d.dirty = false;
            d.unapproved = None;
            match workspace::write(&self.root, &d.path, &d.text.to_string()) {
                Ok(()) => d.disk = Some(d.text.clone()),
                Err(error) => refused.push((d.path.clone(), format!("{error:#}"))),
            }
        }
        for (path, why) in refused {
            self.refused_on_disk(&path, &why, io);
        }
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
                true
            }
            Err(error) => {
                self.refused_on_disk(&path, &format!("{error:#}"), io);
                false
            }
        }
    }

    /// The server deleted a document: its file goes too, unless an editor has it open.
    pub(super) fn deleted(&mut self, doc: DocId, io: &Io) {
        self.fetching.retain(|_, fetched| *fetched != doc);
        let Some(d) = self.docs.remove(&doc) else { return };
        self.release(&d.path);
        // A file an editor has open stays: its user decides.
        if d.editor.is_none() {
            if let Err(error) = workspace::remove(&self.root, &d.path) {
                self.refused_on_disk(&d.path, &format!("{error:#}"), io);
            }
        }
    }

    /// The server moved a document: its file follows, if the new path is one we take.
    pub(super) fn renamed(&mut self, doc: DocId, path: String, io: &Io) {
        let Some(from) = self.docs.get(&doc).map(|d| d.path.clone()) else { return };
        if from == path {
            return; // Our own rename, already carried out here (see `files_renamed`).
        }
        if let Some(why) = self.refusal_of(&path, Some(doc)) {
            // Moved where we do not follow: it leaves our session, and its file stays where it was.
            self.docs.remove(&doc);
            self.release(&from);
            io.send(ClientMsg::Unsubscribe { doc });
            return self.refused_on_disk(&path, &why, io);
        }
        // Moved onto a file of ours the session does not hold: ours is moved aside first, or, if it cannot be, the
        // document leaves our session and nothing is moved.
        let text = self.docs.get(&doc).map(|d| d.text.to_string()).unwrap_or_default();
        if let Err(why) = self.move_aside(&path, &text, io) {
            self.docs.remove(&doc);
            self.release(&from);
            io.send(ClientMsg::Unsubscribe { doc });
            return self.refused_on_disk(&path, &why, io);
        }
        let result = workspace::rename(&self.root, &from, &path);
        self.release(&from);
        self.claim(doc, &path);
        if let Some(d) = self.docs.get_mut(&doc) {
            d.path = path.clone();
        }
        if let Err(error) = result {
            self.refused_on_disk(&path, &format!("{error:#}"), io);
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
