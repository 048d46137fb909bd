//! Files created, renamed or deleted by the editor (LSP's `workspace/didCreateFiles`, `willRenameFiles`,
//! `didRenameFiles` and `didDeleteFiles`) or on disk (the watcher), carried into the session: a new file is created
//! there with its text, a rename (of a file or a folder) moves the session's documents, a deletion deletes them,
//! and a change on disk to a file no editor has open is merged in as an edit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use codecollab_protocol::wire::{ClientMsg, DocId, Role, UnsharedFile};

use super::{op_bytes, Ended, Io, Session};
use crate::workspace;

/// How long a rename the editor announced (`willRenameFiles`) may take before the watch looks at its paths again,
/// if the editor never says it is done.
const EDITOR_MOVE_WINDOW: Duration = Duration::from_secs(10);

/// Whether `path` is, or is under, a path our editor is moving now (`moving`: `Session::editor_moving`).
pub(super) fn editor_is_moving(moving: &HashMap<String, Instant>, path: &str) -> bool {
    moving.iter().any(|(moving, since)| {
        since.elapsed() < EDITOR_MOVE_WINDOW
            && path.strip_prefix(moving.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

impl Session {
    /// The session path of `uri`, if it is under the shared folder.
    fn session_path(&self, uri: &str) -> Option<String> {
        workspace::uri_to_path(uri).and_then(|p| workspace::relative(&self.root, &p))
    }

    /// Whether this peer may change the session's files now; tells the user why not, once per kind of refusal.
    fn may_change_files(&mut self, what: &str, path: &str, io: &Io) -> bool {
        if self.role == Role::View {
            io.editor.warning(format!("{path} was {what} here only: this session is view-only"));
            return false;
        }
        if io.relay.is_none() {
            io.editor.message(
                tower_lsp_server::lsp_types::MessageType::INFO,
                format!("{path} was {what} while the server is out of reach: the others see it once it is back"),
            );
        }
        true
    }

    /// Sends a file operation (create, rename, delete), or keeps it for the reconnect if the server is out of
    /// reach: sent, in order, right after the documents are resumed.
    pub(super) fn send_file_op(&mut self, msg: ClientMsg, io: &Io) {
        if io.relay.is_some() {
            if let ClientMsg::Rename { doc, path } = &msg {
                self.renames_in_flight.entry(*doc).or_default().push_back(path.clone());
            }
            io.send(msg);
        } else {
            self.queued_file_ops.push(msg);
        }
    }

    /// The server answered the oldest rename of `doc` we have in flight (broadcast it, or refused it).
    pub(super) fn rename_answered(&mut self, doc: DocId) {
        if let Some(queue) = self.renames_in_flight.get_mut(&doc) {
            queue.pop_front();
            if queue.is_empty() {
                self.renames_in_flight.remove(&doc);
            }
        }
    }

    /// `workspace/didCreateFiles`: files new on disk, created from the editor, join the session with their text.
    pub fn files_created(&mut self, uris: Vec<String>, io: &Io) {
        for uri in uris {
            let Some(path) = self.session_path(&uri) else { continue };
            self.create_from_disk(path, io);
        }
    }

    /// Creates `path` in the session with its text on disk, unless the session holds it or is getting it, or it is
    /// not a text file we share.
    fn create_from_disk(&mut self, path: String, io: &Io) {
        let known = self.docs.values().any(|d| d.path == path)
            || self.pending_opens.contains_key(&path)
            || self.fetching.contains_key(&path)
            || self.created_here.contains_key(&path);
        if known {
            return; // The editor opened it, a peer created it, or we are creating it.
        }
        if let Some(why) = self.refusal_of(&path, None) {
            return self.refused_on_disk(&path, &why, io);
        }
        let Some(bytes) = workspace::existing(&self.root, &path) else { return }; // A folder, a link, or gone.
        if let Some(reason) = workspace::not_text(&bytes) {
            tracing::info!(%path, reason, "not shared");
            return self.unshared_here(vec![UnsharedFile { path, reason: reason.into() }], io);
        }
        if bytes.len() as u64 > workspace::MAX_FILE_BYTES {
            let reason = workspace::too_large(bytes.len() as u64);
            return self.unshared_here(vec![UnsharedFile { path, reason }], io);
        }
        let text = String::from_utf8(bytes).expect("checked by not_text");
        if text.len() > op_bytes(&self.limits) {
            return io.editor.warning(format!("{path} is not shared: it is too large to create in one piece"));
        }
        if !self.may_change_files("created", &path, io) {
            return;
        }
        self.created_here.insert(path.clone(), text.clone());
        self.send_file_op(ClientMsg::Create { path, text }, io);
    }

    /// Starts watching the shared folder for changes on disk (once the share or join is done).
    pub(super) fn watch(&mut self, io: &Io) {
        match crate::watcher::watch(&self.root, io.events.clone()) {
            Ok(watcher) => self.watcher = Some(watcher),
            Err(error) => io.editor.warning(format!(
                "changes made on disk outside an editor are not shared: watching {} failed ({error:#})",
                self.root.display()
            )),
        }
    }

    /// Paths under the shared folder changed on disk: a file no editor has open that differs from what it last
    /// held is merged in as an edit; a new file is created in the session; a file gone is deleted, or renamed if
    /// a new file holds exactly its text. Our own writes hold what we wrote, so they are no change. The session
    /// rules and the folder's top `.gitignore` apply, as to a share.
    pub fn disk_changed(&mut self, paths: Vec<PathBuf>, io: &Io) -> Result<(), Ended> {
        if self.role == Role::View {
            return Ok(());
        }
        let ignore = workspace::top_ignore(&self.root);
        let (mut created, mut gone) = (Vec::new(), Vec::<DocId>::new());
        for full in paths {
            let Some(path) = workspace::relative(&self.root, &full) else { continue };
            let temporary = path.rsplit('/').next().is_some_and(|name| name.ends_with(".codecollab-tmp"));
            if temporary || codecollab_protocol::path::check(&path).is_err() || ignore.ignored(&full) {
                continue;
            }
            if editor_is_moving(&self.editor_moving, &path) {
                tracing::debug!(%path, "changed on disk while the editor moves it; left to the editor's rename");
                continue;
            }
            let held = self.docs.iter().find(|(_, d)| d.path == path).map(|(&doc, _)| doc);
            let Some(doc) = held else {
                match std::fs::symlink_metadata(&full) {
                    Ok(meta) if meta.is_file() => created.push(path),
                    // A folder moved or copied in: its files are new (the watch reports the folder alone).
                    Ok(meta) if meta.is_dir() => match workspace::scan(&full) {
                        Ok(scan) => created.extend(scan.files.into_iter().map(|(inner, _)| format!("{path}/{inner}"))),
                        Err(error) => tracing::warn!(%path, error = %format!("{error:#}"), "reading a new folder"),
                    },
                    Ok(_) => {}
                    // A folder moved away or deleted: the files under it we hold that are gone with it.
                    Err(_) => {
                        let prefix = format!("{path}/");
                        let root = &self.root;
                        gone.extend(self.docs.iter().filter_map(|(&doc, d)| {
                            let lost = d.path.starts_with(&prefix) && d.editor.is_none();
                            (lost && workspace::existing(root, &d.path).is_none()).then_some(doc)
                        }));
                    }
                }
                continue;
            };
            self.warm(doc, io);
            let Some(d) = self.docs.get_mut(&doc) else { continue };
            if d.editor.is_some() {
                continue; // The editor's: it reloads the file, and its edits carry the change.
            }
            match workspace::existing(&self.root, &path) {
                Some(bytes) => {
                    let Ok(text) = String::from_utf8(bytes) else { continue };
                    if d.disk.as_ref().is_some_and(|disk| *disk == text.as_str()) {
                        continue; // Our own write, or no change.
                    }
                    tracing::debug!(%path, "changed on disk");
                    let effects = d.disk_changed(text);
                    self.apply(doc, Ok(effects), io)?;
                }
                None if std::fs::symlink_metadata(&full).is_err() => gone.push(doc),
                None => {}
            }
        }
        gone.sort_unstable();
        gone.dedup();
        for &doc in &gone {
            self.warm(doc, io); // Its text is what a new file holding it would be compared with.
        }
        created.sort();
        created.dedup();
        // A file gone and a new one holding exactly its text: moved (`mv`, `git mv`), kept as one document.
        created.retain(|path| {
            let Some(text) = workspace::existing(&self.root, path).and_then(|b| String::from_utf8(b).ok()) else {
                return true;
            };
            let held =
                |doc: &DocId| self.docs.get(doc).and_then(|d| d.disk.as_ref()).is_some_and(|r| *r == text.as_str());
            let Some(at) = gone.iter().position(held) else {
                return true;
            };
            let doc = gone.swap_remove(at);
            self.rename_doc(doc, path.clone(), io);
            false
        });
        for doc in gone {
            self.delete_doc(doc, io);
        }
        for path in created {
            self.create_from_disk(path, io);
        }
        Ok(())
    }

    /// Moves document `doc` to `path` in the session (carried out here already: the file is there).
    fn rename_doc(&mut self, doc: DocId, path: String, io: &Io) {
        if let Some(why) = self.refusal_of(&path, Some(doc)) {
            return io.editor.warning(format!("{path} is not renamed in the session: {why}"));
        }
        let Some(from) = self.docs.get(&doc).map(|d| d.path.clone()) else { return };
        if !self.may_change_files("renamed", &from, io) {
            return;
        }
        if let Some(d) = self.docs.get_mut(&doc) {
            d.path = path.clone();
        }
        self.release(&from);
        self.claim(doc, &path);
        self.send_file_op(ClientMsg::Rename { doc, path }, io);
    }

    /// Deletes document `doc` for everyone (its file is gone here already).
    fn delete_doc(&mut self, doc: DocId, io: &Io) {
        let Some(path) = self.docs.get(&doc).map(|d| d.path.clone()) else { return };
        if !self.may_change_files("deleted", &path, io) {
            return;
        }
        if let Some(d) = self.remove_doc(doc) {
            self.release(&d.path);
            self.send_file_op(ClientMsg::Delete { doc }, io);
        }
    }

    /// Forgets the renames our editor announced and did not say are done (see `files_renamed`).
    pub fn editor_moves_done(&mut self) {
        self.editor_moving.clear();
    }

    /// `workspace/willRenameFiles` and `didRenameFiles` (`done`): the session's documents at `from` (a file, or
    /// every file under a folder) move to `to`. Done once: a rename already carried out (the `will` before the
    /// `did`) is not done again. The file on disk is the editor's to move: from the `will` to the `did`, the watch
    /// leaves both paths alone.
    pub fn files_renamed(&mut self, renames: Vec<(String, String)>, done: bool, io: &Io) {
        let now = Instant::now();
        self.editor_moving.retain(|_, since| now.duration_since(*since) < EDITOR_MOVE_WINDOW);
        for (old_uri, new_uri) in renames {
            let (Some(from), Some(to)) = (self.session_path(&old_uri), self.session_path(&new_uri)) else {
                continue; // Into or out of the shared folder: the creation or deletion that it is follows.
            };
            for path in [&from, &to] {
                match done {
                    false => self.editor_moving.insert(path.clone(), now),
                    true => self.editor_moving.remove(path),
                };
            }
            let prefix = format!("{from}/");
            let moves: Vec<(DocId, String)> = self
                .docs
                .iter()
                .filter_map(|(&doc, d)| {
                    let rest = if d.path == from { Some("") } else { d.path.strip_prefix(&prefix) };
                    rest.map(|rest| (doc, if rest.is_empty() { to.clone() } else { format!("{to}/{rest}") }))
                })
                .collect();
            tracing::debug!(%from, %to, ?moves, "renamed by the editor");
            for (doc, path) in moves {
                self.rename_doc(doc, path, io);
            }
        }
    }

    /// `workspace/didDeleteFiles`: the session's documents at each path (a file, or every file under a folder) are
    /// deleted for everyone.
    pub fn files_deleted(&mut self, uris: Vec<String>, io: &Io) {
        for uri in uris {
            let Some(path) = self.session_path(&uri) else { continue };
            let prefix = format!("{path}/");
            let gone: Vec<DocId> = self
                .docs
                .iter()
                .filter(|(_, d)| d.path == path || d.path.starts_with(&prefix))
                .map(|(&doc, _)| doc)
                .collect();
            for doc in gone {
                self.delete_doc(doc, io);
            }
        }
    }
}
