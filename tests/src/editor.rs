//! An editor-like client of one document: joins a session, opens a document, edits it through the protocol's
//! OT client and applies what the server sends, as a daemon does. Also creates sessions.

use std::time::Duration;

use anyhow::{bail, Context};
use codecollab_protocol::wire::{ClientMsg, DocId, DocInfo, PeerId, ServerMsg};
use codecollab_protocol::{Client, ClientId, Outgoing, Revision, TextOperation};
use ropey::Rope;

use crate::client::{Connect, WsClient};

/// The tokens of a new session.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    pub session: String,
    pub host_token: String,
    pub edit_token: String,
    pub view_token: String,
}

/// Creates a session as `name` (no token: the server must listen on loopback), on a connection of its own.
pub async fn create_session(url: &str, host_token: Option<&str>, name: &str) -> anyhow::Result<SessionTokens> {
    let mut ws = WsClient::connect(url, host_token).await?;
    ws.send(&ClientMsg::CreateSession { name: name.into() }).await?;
    let tokens = match ws.recv().await? {
        ServerMsg::SessionCreated { session, host_token, edit_token, view_token, .. } => {
            SessionTokens { session, host_token, edit_token, view_token }
        }
        other => bail!("expected SessionCreated, got {other:?}"),
    };
    ws.close().await;
    Ok(tokens)
}

#[derive(Debug)]
pub struct Editor {
    /// `None` while offline: edits are then buffered by the OT client until [`Editor::reconnect`].
    pub ws: Option<WsClient>,
    pub client_id: ClientId,
    pub peer: PeerId,
    /// The personal token from `Welcome`, used to reconnect.
    pub token: String,
    pub doc: DocId,
    pub ot: Client,
    pub text: Rope,
    /// Operations this editor made that the server acknowledged.
    pub acknowledged: u64,
    connect: Connect,
}

/// Joins the session `token` grants and waits for `Welcome`.
pub async fn join(
    url: &str,
    connect: &Connect,
    client_id: ClientId,
    name: &str,
) -> anyhow::Result<(WsClient, ServerMsg)> {
    let mut ws = WsClient::connect_with(url, connect.clone()).await?;
    ws.send(&ClientMsg::Join { client_id, name: Some(name.into()) }).await?;
    let welcome = ws.recv().await?;
    if !matches!(welcome, ServerMsg::Welcome { .. }) {
        bail!("expected Welcome, got {welcome:?}");
    }
    Ok((ws, welcome))
}

impl Editor {
    /// Joins with `token` as `name`, and opens `path` (created with `initial` if the session lacks it).
    pub async fn open(url: &str, token: &str, name: &str, path: &str, initial: &str) -> anyhow::Result<Editor> {
        Self::open_with(url, Connect { token: Some(token.into()), ..Default::default() }, name, path, initial).await
    }

    pub async fn open_with(
        url: &str,
        connect: Connect,
        name: &str,
        path: &str,
        initial: &str,
    ) -> anyhow::Result<Editor> {
        let client_id = random_client_id();
        let (mut ws, welcome) = join(url, &connect, client_id, name).await?;
        let ServerMsg::Welcome { peer, token, .. } = welcome else { unreachable!("checked by join") };
        ws.send(&ClientMsg::Create { path: path.into(), text: initial.into() }).await?;
        let (doc, revision, text) = ws
            .recv_until(|m| match m {
                ServerMsg::Snapshot { doc, revision, text, .. } => Some((*doc, *revision, text.clone())),
                _ => None,
            })
            .await?;
        Ok(Editor {
            ws: Some(ws),
            client_id,
            peer,
            token,
            doc,
            ot: Client::new(revision, 1),
            text: Rope::from_str(&text),
            acknowledged: 0,
            connect,
        })
    }

    fn op_msg(&self, out: Outgoing) -> ClientMsg {
        ClientMsg::Op { doc: self.doc, seq: out.seq, base_revision: out.base_revision, op: out.op }
    }

    /// Sends an operation; a transport failure takes the editor offline (the op is resent after reconnecting).
    async fn send_op(&mut self, out: Outgoing) {
        let msg = self.op_msg(out);
        let failed = match self.ws.as_mut() {
            Some(ws) => ws.send(&msg).await.is_err(),
            None => true,
        };
        if failed {
            self.disconnect();
        }
    }

    pub fn is_online(&self) -> bool {
        self.ws.is_some()
    }

    /// Drops the connection without a goodbye, as a network failure would.
    pub fn disconnect(&mut self) {
        self.ws = None;
        self.ot.disconnected();
    }

    /// A local edit: applied here at once, sent when the OT client allows.
    pub async fn edit(&mut self, op: TextOperation) -> anyhow::Result<()> {
        op.apply_to(&mut self.text)?;
        if let Some(out) = self.ot.apply_local(op)? {
            self.send_op(out).await;
        }
        Ok(())
    }

    /// Handles one message from the server. Errors from the server are errors here.
    pub async fn handle(&mut self, msg: ServerMsg) -> anyhow::Result<()> {
        match msg {
            ServerMsg::Ack { doc, seq, revision } if doc == self.doc => {
                let before = self.ot.revision();
                if let Some(out) = self.ot.server_ack(seq, revision)?.send {
                    self.send_op(out).await;
                }
                if self.ot.revision() > before {
                    self.acknowledged += 1;
                }
            }
            ServerMsg::Op { doc, revision, op, .. } if doc == self.doc => {
                let op = self.ot.apply_server(revision, op)?;
                op.apply_to(&mut self.text)?;
            }
            ServerMsg::Subscribed { doc, revision } if doc == self.doc => {
                anyhow::ensure!(
                    revision == self.ot.revision(),
                    "replay ended at {revision}, client at {}",
                    self.ot.revision()
                );
                if let Some(out) = self.ot.resumed() {
                    self.send_op(out).await;
                }
            }
            ServerMsg::Error { code, message, .. } => bail!("server refused: {code:?}: {message}"),
            _ => {}
        }
        Ok(())
    }

    /// Handles whatever arrives within `timeout`. Returns false if nothing did (or the editor is offline; a
    /// transport failure takes it offline).
    pub async fn pump(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let Some(ws) = self.ws.as_mut() else { return Ok(false) };
        match ws.try_recv(timeout).await {
            Ok(Some(msg)) => {
                self.handle(msg).await?;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(_) => {
                self.disconnect();
                Ok(false)
            }
        }
    }

    /// Receives until every local edit is acknowledged and the client has seen `revision`.
    pub async fn sync_to(&mut self, revision: Revision) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !(self.ot.is_synchronized() && self.ot.revision() >= revision) {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "not in sync with revision {revision} after 60s");
            let ws = self.ws.as_mut().context("offline")?;
            let msg = ws.recv().await?;
            self.handle(msg).await?;
        }
        Ok(())
    }

    /// Receives until every local edit is acknowledged.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.sync_to(0).await
    }

    /// [`Editor::reconnect`], tried again as a daemon would (every 200 ms) until it works or `within` has passed:
    /// for a server that is still starting, or a cluster whose node for the session is being replaced.
    pub async fn reconnect_within(&mut self, url: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.reconnect(url).await {
                Ok(()) => return Ok(()),
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing_free_note(&error);
                    self.disconnect();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(error.context(format!("no resume within {within:?}"))),
            }
        }
    }

    /// Reconnects to `url` with the personal token, resubscribes from the last revision seen, processes the
    /// replay and resends what was in flight.
    pub async fn reconnect(&mut self, url: &str) -> anyhow::Result<()> {
        self.ot.disconnected();
        let connect = Connect { token: Some(self.token.clone()), ..self.connect.clone() };
        let (mut ws, _) = join(url, &connect, self.client_id, "ignored").await.context("rejoining")?;
        ws.send(&ClientMsg::Subscribe { doc: self.doc, since: Some(self.ot.revision()) }).await?;
        self.ws = Some(ws);
        loop {
            let msg = self.ws.as_mut().context("offline")?.recv().await?;
            let done = matches!(msg, ServerMsg::Subscribed { doc, .. } if doc == self.doc);
            if let ServerMsg::Snapshot { .. } = msg {
                bail!("the server sent a snapshot: history does not reach back to {}", self.ot.revision());
            }
            self.handle(msg).await?;
            if done {
                return Ok(());
            }
        }
    }
}

/// Says on stderr why an attempt failed (kept with a failing test's output).
fn tracing_free_note(error: &anyhow::Error) {
    eprintln!("[editor] trying again after: {error:#}");
}

/// [`server_text`], tried again every 200 ms until it works or `within` has passed.
pub async fn server_text_within(
    url: &str,
    token: &str,
    path: &str,
    within: Duration,
) -> anyhow::Result<(String, Revision)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match server_text(url, token, path).await {
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing_free_note(&error);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            outcome => return outcome,
        }
    }
}

/// A fresh client id, distinct across editors and processes.
pub fn random_client_id() -> ClientId {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

/// The error of reading a document the session does not hold.
#[derive(Debug)]
pub struct NoSuchDocument(pub String);

impl std::fmt::Display for NoSuchDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the session has no {}", self.0)
    }
}

impl std::error::Error for NoSuchDocument {}

/// Opens a fresh connection and returns the server's current text and revision of `path`; [`NoSuchDocument`] if
/// the session has no such document (looking never creates one).
pub async fn server_text(url: &str, token: &str, path: &str) -> anyhow::Result<(String, Revision)> {
    let connect = Connect { token: Some(token.into()), ..Default::default() };
    let (mut ws, welcome) = join(url, &connect, random_client_id(), "observer").await?;
    let ServerMsg::Welcome { docs, .. } = welcome else { unreachable!("checked by join") };
    let Some(doc) = docs.iter().find(|d| d.path == path).map(|d| d.doc) else {
        ws.close().await;
        return Err(NoSuchDocument(path.to_owned()).into());
    };
    ws.send(&ClientMsg::Subscribe { doc, since: None }).await?;
    let snapshot = ws
        .recv_until(|m| match m {
            ServerMsg::Snapshot { doc: d, text, revision, .. } if *d == doc => Some((text.clone(), *revision)),
            _ => None,
        })
        .await;
    ws.close().await;
    snapshot
}

/// The server's text of `path` in the session of `invite` (an editor's invite string), and its revision.
pub async fn invite_server_state(invite: &str, path: &str) -> anyhow::Result<(String, Revision)> {
    let (url, token) = invite.split_once('#').context("an invite ends in #TOKEN")?;
    let url = url.split('?').next().unwrap_or(url).trim_end_matches('/');
    server_text(url, token, path).await
}

/// Renames `from` to `to` in the session of `invite`, as a peer with a plain wire-protocol client would; returns
/// once the server has done it.
pub async fn invite_rename(invite: &str, from: &str, to: &str) -> anyhow::Result<()> {
    invite_file_op(invite, from, Some(to)).await
}

/// Deletes `path` from the session of `invite`, as a peer with a plain wire-protocol client would; returns once the
/// server has done it.
pub async fn invite_delete(invite: &str, path: &str) -> anyhow::Result<()> {
    invite_file_op(invite, path, None).await
}

/// Renames `path` to `to`, or deletes it (`None`), in the session of `invite`; returns once the server has done it.
async fn invite_file_op(invite: &str, path: &str, to: Option<&str>) -> anyhow::Result<()> {
    let (url, token) = invite.split_once('#').context("an invite ends in #TOKEN")?;
    let url = url.split('?').next().unwrap_or(url).trim_end_matches('/');
    let mut editor = Editor::open(url, token, "renamer", path, "").await?;
    let doc = editor.doc;
    let ws = editor.ws.as_mut().context("connected")?;
    match to {
        Some(to) => {
            ws.send(&ClientMsg::Rename { doc, path: to.to_owned() }).await?;
            ws.recv_until(|m| matches!(m, ServerMsg::Renamed { doc: d, .. } if *d == doc).then_some(())).await?;
        }
        None => {
            ws.send(&ClientMsg::Delete { doc }).await?;
            ws.recv_until(|m| matches!(m, ServerMsg::Deleted { doc: d } if *d == doc).then_some(())).await?;
        }
    }
    if let Some(ws) = editor.ws.take() {
        ws.close().await;
    }
    Ok(())
}

/// The paths of the documents the session of `invite` holds, sorted, as the server's `welcome` lists them.
pub async fn invite_server_paths(invite: &str) -> anyhow::Result<Vec<String>> {
    let mut paths: Vec<String> = invite_server_docs(invite).await?.into_iter().map(|d| d.path).collect();
    paths.sort();
    Ok(paths)
}

/// The documents the session of `invite` holds (ids and paths), as the server's `welcome` lists them.
pub async fn invite_server_docs(invite: &str) -> anyhow::Result<Vec<DocInfo>> {
    let (url, token) = invite.split_once('#').context("an invite ends in #TOKEN")?;
    let url = url.split('?').next().unwrap_or(url).trim_end_matches('/');
    let connect = Connect { token: Some(token.into()), ..Default::default() };
    let (ws, welcome) = join(url, &connect, random_client_id(), "lister").await?;
    let ServerMsg::Welcome { docs, .. } = welcome else { unreachable!("checked by join") };
    ws.close().await;
    Ok(docs)
}

/// The server's text of `path` in the session of `invite` (an editor's invite string).
pub async fn invite_server_text(invite: &str, path: &str) -> anyhow::Result<String> {
    Ok(invite_server_state(invite, path).await?.0)
}

/// [`invite_server_text`] from synchronous code.
pub fn server_text_of_invite(invite: &str, path: &str) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(invite_server_text(invite, path))
}
