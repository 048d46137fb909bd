//! Files the editor created, renamed or deleted (LSP's `workspace/didCreateFiles`, `willRenameFiles`,
//! `didRenameFiles` and `didDeleteFiles`), carried into the session: a new file is created there with its text, a
//! rename (of a file or a folder) moves the session's documents, a deletion deletes them.

use codecollab_protocol::wire::{ClientMsg, Role};

use super::{op_bytes, Io, Session};
use crate::workspace;

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
            io.editor.warning(format!(
                "{path} was {what} while the server is out of reach: the others do not see it (do it again once \
                 reconnected)"
            ));
            return false;
        }
        true
    }

    /// `workspace/didCreateFiles`: files new on disk, created from the editor, join the session with their text.
    pub fn files_created(&mut self, uris: Vec<String>, io: &Io) {
        for uri in uris {
            let Some(path) = self.session_path(&uri) else { continue };
            if self.docs.values().any(|d| d.path == path) || self.pending_opens.contains_key(&path) {
                continue; // Already in the session (the editor opened it, or a peer created it).
            }
            if let Some(why) = self.refusal_of(&path, None) {
                self.refused_on_disk(&path, &why, io);
                continue;
            }
            let Some(bytes) = workspace::existing(&self.root, &path) else { continue }; // A folder, or gone.
            let Ok(text) = String::from_utf8(bytes) else {
                io.editor.warning(format!("{path} is not shared: it is not UTF-8 text"));
                continue;
            };
            if text.len() > op_bytes(&self.limits) || text.len() as u64 > workspace::MAX_FILE_BYTES {
                io.editor.warning(format!("{path} is not shared: it is too large to create in one piece"));
                continue;
            }
            if !self.may_change_files("created", &path, io) {
                continue;
            }
            self.created_here.insert(path.clone());
            io.send(ClientMsg::Create { path, text });
        }
    }

    /// `workspace/willRenameFiles` and `didRenameFiles`: the session's documents at `from` (a file, or every file
    /// under a folder) move to `to`. Done once: a rename already carried out (the `will` before the `did`) is not
    /// done again. The file on disk is the editor's to move.
    pub fn files_renamed(&mut self, renames: Vec<(String, String)>, io: &Io) {
        for (old_uri, new_uri) in renames {
            let (Some(from), Some(to)) = (self.session_path(&old_uri), self.session_path(&new_uri)) else {
                continue; // Into or out of the shared folder: the creation or deletion that it is follows.
            };
            let prefix = format!("{from}/");
            let moves: Vec<(u64, String)> = self
                .docs
                .iter()
                .filter_map(|(&doc, d)| {
                    let rest = if d.path == from { Some("") } else { d.path.strip_prefix(&prefix) };
                    rest.map(|rest| (doc, if rest.is_empty() { to.clone() } else { format!("{to}/{rest}") }))
                })
                .collect();
            if moves.is_empty() || !self.may_change_files("renamed", &from, io) {
                continue;
            }
            for (doc, path) in moves {
                if let Some(why) = self.refusal_of(&path, Some(doc)) {
                    io.editor.warning(format!("{path} is not renamed in the session: {why}"));
                    continue;
                }
                let Some(d) = self.docs.get_mut(&doc) else { continue };
                let old = std::mem::replace(&mut d.path, path.clone());
                self.release(&old);
                self.claim(doc, &path);
                io.send(ClientMsg::Rename { doc, path });
            }
        }
    }

    /// `workspace/didDeleteFiles`: the session's documents at each path (a file, or every file under a folder) are
    /// deleted for everyone.
    pub fn files_deleted(&mut self, uris: Vec<String>, io: &Io) {
        for uri in uris {
            let Some(path) = self.session_path(&uri) else { continue };
            let prefix = format!("{path}/");
            let gone: Vec<u64> = self
                .docs
                .iter()
                .filter(|(_, d)| d.path == path || d.path.starts_with(&prefix))
                .map(|(&doc, _)| doc)
                .collect();
            if gone.is_empty() || !self.may_change_files("deleted", &path, io) {
                continue;
            }
            for doc in gone {
                if let Some(d) = self.docs.remove(&doc) {
                    self.release(&d.path);
                    io.send(ClientMsg::Delete { doc });
                }
            }
        }
    }
}
