//! The share or join that starts a session: the files going up (a share) or coming down (a join), its progress,
//! going on after a reconnect, and, for a join, its conflicts with local files that differ from the session's.

use codecollab_protocol::wire::{ClientMsg, DocInfo};
use tower_lsp_server::jsonrpc;

use super::{Ended, Io, Session};
use crate::lsp_ext::{BackupInfo, JoinResult, OnConflict, ShareResult, Unshared, JOIN_CONFLICTS};
use crate::main_loop::{rpc_error, Reply};
use crate::output::Progress;
use crate::workspace;

/// The share or join this session started with, answered once every file is up (or down).
#[derive(Debug)]
pub enum Starting {
    Share { reply: Reply<ShareResult>, uploads: usize, invites: (String, String) },
    Join { reply: Reply<JoinResult>, waiting: usize, on_conflict: OnConflict, conflicts: Vec<String> },
}

impl Session {
    /// A snapshot arrived: counts it toward the share or join in progress, and answers that once all are in.
    pub(super) fn received(&mut self, io: &Io) -> Result<(), Ended> {
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
            Some(Starting::Join { waiting, .. }) => {
                *waiting = waiting.saturating_sub(1);
                let (left, done) = (*waiting, self.docs.len());
                if done % 25 == 0 && left > 0 {
                    let token = "codecollab/join".into();
                    io.editor.progress(Progress::Report { token, done, total: done + left });
                }
            }
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
                let (web_invite, web_view_invite) =
                    (crate::connection::web_invite(&invite), crate::connection::web_invite(&view_invite));
                let result = ShareResult { session: self.id.clone(), invite, view_invite, web_invite, web_view_invite };
                let _ = reply.send(Ok(result));
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
                let unshared = self.unshared.iter().map(|(path, reason)| Unshared::new(path, reason)).collect();
                let _ = reply.send(Ok(JoinResult { session: self.id.clone(), files, backup, unshared }));
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
                d.forget_disk();
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
        let scan = workspace::scan(&self.root)?;
        let files: Vec<(String, String)> =
            scan.files.into_iter().filter(|(path, _)| !held.contains(path.as_str())).collect();
        self.unshared_here(scan.unshared, io);
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
}
