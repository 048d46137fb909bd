//! One task per session: the owner of who is in it (peers, names, removals) and which documents it holds (by
//! path); it starts document tasks on demand and announces joins, leaves, creations, renames and deletions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use codecollab_protocol::path;
use codecollab_protocol::wire::{
    close, DocId, DocInfo, ErrorCode, Limits, PeerId, PeerInfo, Role, ServerMsg, UnsharedFile, MAX_UNSHARED,
    MAX_UNSHARED_REASON,
};
use tokio::sync::{mpsc, oneshot};

use crate::document::{self, DocCommand, DocHandle, DocSettings};
use crate::metrics::Metrics;
use crate::outbox::{encode, Outbox};
use crate::refusal::Refusal;
use crate::store::writer::StoreHandle;
use crate::store::{SessionRecord, StoreError, Write, Written};

/// Who a connection is, as its token says.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    pub host: bool,
}

/// What a successful join returns to the connection (which has been sent `Welcome` already).
#[derive(Debug)]
pub struct Joined {
    pub peer: PeerId,
}

type Reply<T> = oneshot::Sender<Result<T, Refusal>>;

#[derive(Debug)]
pub enum SessionCommand {
    /// Joins; the session sends `Welcome` (carrying `token`) itself, so it precedes every later broadcast.
    Join {
        identity: Identity,
        token: String,
        outbox: Outbox,
        reply: Reply<Joined>,
    },
    Leave {
        peer: PeerId,
    },
    Create {
        peer: PeerId,
        path: String,
        text: String,
        reply: Reply<DocHandle>,
    },
    Open {
        doc: DocId,
        reply: Reply<DocHandle>,
    },
    Delete {
        peer: PeerId,
        doc: DocId,
        reply: Reply<()>,
    },
    Rename {
        peer: PeerId,
        doc: DocId,
        path: String,
        reply: Reply<()>,
    },
    RemovePeer {
        peer: PeerId,
        name: String,
        reply: Reply<()>,
    },
    Unshared {
        peer: PeerId,
        files: Vec<UnsharedFile>,
        reply: Reply<()>,
    },
    /// Another node serves the session now: every peer's connection is closed (they reconnect, and are relayed
    /// there), and the task ends.
    Moved,
}

#[derive(Debug, Clone)]
pub struct SessionHandle {
    commands: mpsc::Sender<SessionCommand>,
}

impl SessionHandle {
    /// Sends a command and waits for its reply.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> SessionCommand) -> Result<T, Refusal> {
        let (reply, answer) = oneshot::channel();
        let gone = || Refusal::new(ErrorCode::ProtocolViolation, "the session has ended");
        self.commands.send(make(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub async fn tell(&self, command: SessionCommand) {
        let _ = self.commands.send(command).await;
    }
}

/// Everything a session task needs from the server.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    pub doc_settings: DocSettings,
    pub max_documents: usize,
    /// What `Welcome` tells clients of the server's limits.
    pub limits: Limits,
}

struct PeerEntry {
    info: PeerInfo,
    outbox: Outbox,
}

struct DocEntry {
    path: String,
    /// Started on first use.
    handle: Option<DocHandle>,
}

struct SessionTask {
    id: String,
    host: String,
    removed: HashSet<String>,
    peers: HashMap<PeerId, PeerEntry>,
    docs: HashMap<DocId, DocEntry>,
    /// Documents by path, case folded ([`path::case_key`]): two paths that differ only in letter case would be one
    /// file on a case-insensitive file system, so the second is refused.
    paths: HashMap<String, DocId>,
    /// Files of the session's folder that are not in the session, by path, with why (memory only: a sharer sends
    /// its list again when it reconnects).
    unshared: BTreeMap<String, String>,
    /// The last peer id handed out: see [`SessionTask::new_peer_id`].
    last_peer: PeerId,
    context: SessionContext,
}

/// Cursor colours: a peer gets the first one no one in the session has, so every editor shows it in the same colour
/// and, up to eight people, no two share one.
const COLORS: &[&str] = &["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];

/// Starts the task of a session whose record was loaded from the store.
pub fn spawn(id: String, record: SessionRecord, context: SessionContext) -> SessionHandle {
    let (commands, receiver) = mpsc::channel(1_024);
    let mut task = SessionTask {
        id,
        host: record.host,
        removed: record.removed.into_iter().collect(),
        peers: HashMap::new(),
        docs: HashMap::new(),
        paths: HashMap::new(),
        last_peer: 0,
        unshared: BTreeMap::new(),
        context,
    };
    for doc in record.documents {
        // A document stored by an older server under a path the rules now refuse is not served.
        if let Err(refusal) = validate_path(&doc.path) {
            tracing::warn!(session = %task.id, doc = doc.doc, message = %refusal.message, "document not served");
            continue;
        }
        task.paths.insert(path::case_key(&doc.path), doc.doc);
        task.docs.insert(doc.doc, DocEntry { path: doc.path, handle: None });
    }
    task.context.metrics.sessions.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(task.run(receiver));
    SessionHandle { commands }
}

/// A path as a session stores it: the rules of [`codecollab_protocol::path`] (relative, plain components, no
/// version-control internals, bounded length and depth).
pub fn validate_path(path: &str) -> Result<String, Refusal> {
    codecollab_protocol::path::check(path)
        .map(|()| path.to_owned())
        .map_err(|why| Refusal::new(ErrorCode::InvalidPath, format!("invalid path {path:?}: {why}")))
}

impl SessionTask {
    async fn run(mut self, mut receiver: mpsc::Receiver<SessionCommand>) {
        while let Some(command) = receiver.recv().await {
            if let SessionCommand::Moved = command {
                tracing::warn!(session = %self.id, "another node serves the session now; its peers reconnect");
                for entry in self.peers.values() {
                    entry.outbox.close(close::MOVED, "another server serves this session now");
                }
                break;
            }
            self.handle(command).await;
        }
        self.context.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
    }

    fn broadcast(&self, msg: &ServerMsg, except: Option<PeerId>) {
        let frame = encode(msg);
        for (peer, entry) in &self.peers {
            if Some(*peer) != except {
                entry.outbox.send_frame(frame.clone());
            }
        }
    }

    /// Refuses a command from a connection that is not (or no longer) a peer of this session. Whether it may edit
    /// was checked by the connection, from its token.
    fn is_peer(&self, peer: PeerId) -> Result<(), Refusal> {
        match self.peers.contains_key(&peer) {
            true => Ok(()),
            false => Err(Refusal::new(ErrorCode::ProtocolViolation, "join the session first")),
        }
    }

    fn doc_info(&self, doc: DocId) -> DocInfo {
        DocInfo { doc, path: self.docs.get(&doc).map(|d| d.path.clone()).unwrap_or_default() }
    }

    async fn handle(&mut self, command: SessionCommand) {
        match command {
            SessionCommand::Join { identity, token, outbox, reply } => {
                let _ = reply.send(self.join(identity, token, outbox));
            }
            SessionCommand::Leave { peer } => {
                if self.peers.remove(&peer).is_some() {
                    self.broadcast(&ServerMsg::PeerLeft { peer }, None);
                }
            }
            SessionCommand::Create { peer, path, text, reply } => {
                let _ = reply.send(self.create(peer, path, text).await);
            }
            SessionCommand::Open { doc, reply } => {
                let _ = reply.send(self.open(doc).await);
            }
            SessionCommand::Delete { peer, doc, reply } => {
                let _ = reply.send(self.delete(peer, doc).await);
            }
            SessionCommand::Rename { peer, doc, path, reply } => {
                let _ = reply.send(self.rename(peer, doc, path).await);
            }
            SessionCommand::RemovePeer { peer, name, reply } => {
                let _ = reply.send(self.remove_peer(peer, name).await);
            }
            SessionCommand::Unshared { peer, files, reply } => {
                let _ = reply.send(self.add_unshared(peer, files));
            }
            SessionCommand::Moved => {}
        }
    }

    fn join(&mut self, identity: Identity, token: String, outbox: Outbox) -> Result<Joined, Refusal> {
        if self.removed.contains(&identity.name) {
            return Err(Refusal::new(ErrorCode::Unauthorized, "you were removed from this session"));
        }
        let peer = self.new_peer_id();
        let color = self.free_color();
        let info = PeerInfo { peer, name: identity.name.clone(), role: identity.role, color };
        self.broadcast(&ServerMsg::PeerJoined { peer: info.clone() }, None);
        self.peers.insert(peer, PeerEntry { info, outbox: outbox.clone() });
        outbox.send(&ServerMsg::Welcome {
            session: self.id.clone(),
            peer,
            name: identity.name,
            role: identity.role,
            host: identity.host,
            token,
            peers: self.peers.values().map(|p| p.info.clone()).collect(),
            docs: self.docs.iter().map(|(&doc, entry)| DocInfo { doc, path: entry.path.clone() }).collect(),
            limits: Some(self.context.limits),
            unshared: self.unshared_list(),
        });
        Ok(Joined { peer })
    }

    /// An id for a new peer that no other connection to this session ever had, on this server process or on one
    /// before it: daemons that reconnect after a restart still know the old ids, so a reused one would put another
    /// person's name on an old cursor. Ids are the microseconds since the Unix epoch (later than any id an earlier
    /// process handed out, unless the clock went back), one more than the last when joins come faster, so they keep
    /// join order; they stay below 2^53, exact as JSON numbers in JavaScript, until the year 2255.
    fn new_peer_id(&mut self) -> PeerId {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        self.last_peer = (now as PeerId).max(self.last_peer + 1);
        self.last_peer
    }

    /// The first colour no peer in the session has (in palette order), or the least used one.
    fn free_color(&self) -> String {
        let uses = |color: &&&str| self.peers.values().filter(|p| p.info.color == **color).count();
        COLORS.iter().min_by_key(uses).map_or("#888888", |c| c).to_owned()
    }

    async fn create(&mut self, peer: PeerId, path: String, text: String) -> Result<DocHandle, Refusal> {
        self.is_peer(peer)?;
        let path = validate_path(&path)?;
        if let Some(&doc) = self.paths.get(&path::case_key(&path)) {
            if self.docs.get(&doc).is_some_and(|entry| entry.path != path) {
                return Err(self.case_clash(&path, doc));
            }
            return self.open(doc).await;
        }
        if self.docs.len() >= self.context.max_documents {
            return Err(Refusal::new(
                ErrorCode::LimitReached,
                format!("this session already holds {} documents, the limit", self.docs.len()),
            ));
        }
        let chars = text.chars().count();
        if chars > self.context.doc_settings.limits.max_chars {
            return Err(Refusal::new(
                ErrorCode::DocumentTooLarge,
                format!("{chars} chars is over the limit of {}", self.context.doc_settings.limits.max_chars),
            ));
        }
        let write = Write::CreateDocument { session: self.id.clone(), path: path.clone(), text };
        let outcome = self.context.store.commit(vec![write]).await.map_err(Refusal::storage)?;
        let doc = match outcome.into_iter().next() {
            Some(Ok(Written::DocumentCreated(doc))) => doc,
            Some(Err(error)) => return Err(Refusal::storage(error)),
            _ => return Err(Refusal::storage(StoreError::Backend("no outcome for the document".into()))),
        };
        self.paths.insert(path::case_key(&path), doc);
        self.docs.insert(doc, DocEntry { path, handle: None });
        let handle = self.open(doc).await?;
        self.broadcast(&ServerMsg::Created { doc: self.doc_info(doc), peer: Some(peer) }, Some(peer));
        if self.unshared.remove(&self.docs[&doc].path).is_some() {
            self.broadcast(&ServerMsg::Unshared { files: self.unshared_list() }, None);
        }
        Ok(handle)
    }

    /// The refusal of `path`, which is `existing`'s or differs from it only in letter case.
    fn case_clash(&self, path: &str, existing: DocId) -> Refusal {
        let other = self.docs.get(&existing).map_or("another document", |entry| entry.path.as_str());
        let why = if other == path {
            format!("a document already exists at {path}")
        } else {
            format!("{path} differs from {other} only in letter case: on some file systems they are one file")
        };
        Refusal::new(ErrorCode::InvalidPath, why)
    }

    async fn open(&mut self, doc: DocId) -> Result<DocHandle, Refusal> {
        let Some(entry) = self.docs.get_mut(&doc) else {
            return Err(Refusal::new(ErrorCode::UnknownDocument, format!("no document {doc} in this session")));
        };
        // A stopped task (another node took the document over) is started again: this node may get it back.
        if let Some(handle) = entry.handle.as_ref().filter(|handle| !handle.is_stopped()) {
            return Ok(handle.clone());
        }
        let handle = document::spawn(
            doc,
            entry.path.clone(),
            self.context.doc_settings,
            self.context.store.clone(),
            self.context.metrics.clone(),
        )
        .await
        .map_err(Refusal::storage)?;
        entry.handle = Some(handle.clone());
        Ok(handle)
    }

    async fn delete(&mut self, peer: PeerId, doc: DocId) -> Result<(), Refusal> {
        self.is_peer(peer)?;
        let Some(entry) = self.docs.get(&doc) else {
            return Err(Refusal::new(ErrorCode::UnknownDocument, format!("no document {doc} in this session")));
        };
        let path = entry.path.clone();
        self.context.store.commit(vec![Write::DeleteDocument { doc }]).await.map_err(Refusal::storage)?;
        // Dropping the handle stops the document's task once its queue is drained.
        self.docs.remove(&doc);
        self.paths.remove(&path::case_key(&path));
        self.broadcast(&ServerMsg::Deleted { doc }, None);
        Ok(())
    }

    async fn rename(&mut self, peer: PeerId, doc: DocId, path: String) -> Result<(), Refusal> {
        self.is_peer(peer)?;
        let path = validate_path(&path)?;
        if !self.docs.contains_key(&doc) {
            return Err(Refusal::new(ErrorCode::UnknownDocument, format!("no document {doc} in this session")));
        }
        if let Some(&other) = self.paths.get(&path::case_key(&path)) {
            if other != doc {
                return Err(self.case_clash(&path, other));
            }
        }
        let outcome = self.context.store.commit(vec![Write::RenameDocument { doc, path: path.clone() }]).await;
        match outcome.map_err(Refusal::storage)?.into_iter().next() {
            Some(Ok(_)) => {}
            Some(Err(StoreError::PathTaken(p))) => {
                return Err(Refusal::new(ErrorCode::InvalidPath, format!("a document already exists at {p}")))
            }
            Some(Err(error)) => return Err(Refusal::storage(error)),
            None => return Err(Refusal::storage(StoreError::Backend("no outcome for the rename".into()))),
        }
        if let Some(entry) = self.docs.get_mut(&doc) {
            self.paths.remove(&path::case_key(&entry.path));
            entry.path = path.clone();
            if let Some(handle) = &entry.handle {
                handle.send(DocCommand::Rename { path: path.clone() }).await;
            }
        }
        self.paths.insert(path::case_key(&path), doc);
        self.broadcast(&ServerMsg::Renamed { doc, path }, None);
        Ok(())
    }

    fn unshared_list(&self) -> Vec<UnsharedFile> {
        self.unshared.iter().map(|(path, reason)| UnsharedFile { path: path.clone(), reason: reason.clone() }).collect()
    }

    /// Adds to the list of files not in the session (paths as for documents, reasons cut to a bound, at most
    /// [`MAX_UNSHARED`] entries) and sends everyone the list if it changed.
    fn add_unshared(&mut self, peer: PeerId, files: Vec<UnsharedFile>) -> Result<(), Refusal> {
        self.is_peer(peer)?;
        // All or nothing: one path no document may have refuses the message.
        let files: Vec<(String, String)> =
            files.into_iter().map(|f| Ok((validate_path(&f.path)?, f.reason))).collect::<Result<_, Refusal>>()?;
        let mut changed = false;
        for (path, reason) in files {
            if self.paths.contains_key(&path::case_key(&path)) {
                continue; // A document after all.
            }
            if self.unshared.len() >= MAX_UNSHARED && !self.unshared.contains_key(&path) {
                break;
            }
            let reason: String = reason.chars().filter(|c| !c.is_control()).take(MAX_UNSHARED_REASON).collect();
            changed |= self.unshared.insert(path, reason.clone()).is_none_or(|old| old != reason);
        }
        if changed {
            self.broadcast(&ServerMsg::Unshared { files: self.unshared_list() }, None);
        }
        Ok(())
    }

    async fn remove_peer(&mut self, peer: PeerId, name: String) -> Result<(), Refusal> {
        let is_host = self.peers.get(&peer).is_some_and(|p| p.info.name == self.host && p.info.role == Role::Edit);
        if !is_host {
            return Err(Refusal::new(ErrorCode::Forbidden, "only the session's host can remove peers"));
        }
        if name == self.host {
            return Err(Refusal::new(ErrorCode::Forbidden, "the host cannot remove themselves"));
        }
        self.context
            .store
            .commit(vec![Write::RemovePeer { session: self.id.clone(), name: name.clone() }])
            .await
            .map_err(Refusal::storage)?;
        self.removed.insert(name.clone());
        let removed: Vec<PeerId> = self.peers.iter().filter(|(_, p)| p.info.name == name).map(|(&id, _)| id).collect();
        for id in removed {
            if let Some(entry) = self.peers.remove(&id) {
                entry.outbox.send(&ServerMsg::Error {
                    code: ErrorCode::Unauthorized,
                    message: "you were removed from this session".into(),
                    doc: None,
                });
                entry.outbox.close(codecollab_protocol::wire::close::REMOVED, "removed from the session");
            }
            self.broadcast(&ServerMsg::PeerLeft { peer: id }, None);
        }
        tracing::info!(session = %self.id, %name, "peer removed");
        if let Some(host) = self.peers.get(&peer) {
            host.outbox.send(&ServerMsg::PeerRemoved { name });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::validate_path;

    #[test]
    fn refusals_name_the_path_and_the_rule() {
        assert_eq!(validate_path("src/a.rs").map_err(|r| r.message), Ok("src/a.rs".to_owned()));
        let refusal = validate_path(".git/hooks/post-checkout").expect_err("refused");
        assert!(refusal.message.contains(".git") && refusal.message.contains("version-control"), "{}", refusal.message);
    }
}
