//! The accept loop and the state every connection shares: configuration, token secret, store, metrics and the
//! registry of live sessions. `run` takes the listener and a shutdown future, so tests drive the same code as
//! the binary.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use codecollab_protocol::wire::{ErrorCode, Limits, Role, ServerMsg};
use codecollab_protocol::DocumentLimits;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Claims, Secret, TokenKind};
use crate::config::Config;
use crate::document::DocSettings;
use crate::metrics::Metrics;
use crate::session::{self, Refusal, SessionContext, SessionHandle};
use crate::store::sqlite::SqliteStore;
use crate::store::writer::StoreHandle;
use crate::store::{SessionRecord, Write};
use crate::{connection, http, tls};

/// How long shutdown waits for connections to close and for the store to finish writing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub secret: Secret,
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    /// Sessions with a running task. A std mutex: held only to look up or insert, never across an await.
    sessions: Mutex<HashMap<String, SessionHandle>>,
    /// Sessions ever created (stored), for the sessions limit.
    session_count: AtomicUsize,
    /// Failed authentications per address.
    pub auth_throttle: crate::throttle::AuthThrottle,
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn session_context(&self) -> SessionContext {
        SessionContext {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            doc_settings: DocSettings {
                limits: DocumentLimits {
                    history: self.config.history,
                    max_chars: self.config.limits.max_document_chars,
                },
                snapshot_every: self.config.snapshot_every,
                retention: self.config.retention,
            },
            max_documents: self.config.limits.max_documents_per_session,
            limits: Limits {
                max_frame_bytes: self.config.limits.max_frame_bytes as u64,
                max_document_chars: self.config.limits.max_document_chars as u64,
                heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            },
        }
    }

    /// The task of session `id`, started from the store if it is not running. `None` if it does not exist.
    pub async fn session(&self, id: &str) -> Result<Option<SessionHandle>, Refusal> {
        if let Some(handle) = self.sessions.lock().expect("sessions lock").get(id) {
            return Ok(Some(handle.clone()));
        }
        let record = self.store.load_session(id).await.map_err(|error| {
            tracing::error!(%error, "loading a session failed");
            Refusal::new(ErrorCode::StorageFailure, "the server could not load the session")
        })?;
        let Some(record) = record else { return Ok(None) };
        let mut sessions = self.sessions.lock().expect("sessions lock");
        // Another connection may have started it meanwhile; there is only ever one task per session.
        let handle = sessions
            .entry(id.to_owned())
            .or_insert_with(|| session::spawn(id.to_owned(), record, self.session_context()))
            .clone();
        Ok(Some(handle))
    }

    /// Creates a session hosted by `name`; returns the `SessionCreated` message and the host's claims.
    pub async fn create_session(&self, name: &str) -> Result<(ServerMsg, Claims), Refusal> {
        let limit = self.config.limits.max_sessions;
        if self.session_count.fetch_add(1, Ordering::SeqCst) >= limit {
            self.session_count.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::new(
                ErrorCode::LimitReached,
                format!("this server holds {limit} sessions, its limit"),
            ));
        }
        let id = self.secret.random_hex(16);
        let write =
            Write::CreateSession { session: id.clone(), host: name.to_owned(), created: crate::auth::unix_now() };
        let stored =
            self.store.commit(vec![write]).await.ok().and_then(|o| o.into_iter().next()).is_some_and(|o| o.is_ok());
        if !stored {
            self.session_count.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::new(ErrorCode::StorageFailure, "the server could not store the session"));
        }
        let record = SessionRecord { host: name.to_owned(), removed: Vec::new(), documents: Vec::new() };
        let handle = session::spawn(id.clone(), record, self.session_context());
        self.sessions.lock().expect("sessions lock").insert(id.clone(), handle);
        let ttl = self.config.invite_ttl;
        let mut host = self.secret.claims(TokenKind::Peer, ttl);
        host.session = Some(id.clone());
        host.name = Some(name.to_owned());
        host.role = Some(Role::Edit);
        host.host = true;
        let invite = |role| {
            let mut claims = self.secret.claims(TokenKind::Invite, ttl);
            claims.session = Some(id.clone());
            claims.role = Some(role);
            self.secret.sign(&claims)
        };
        let created = ServerMsg::SessionCreated {
            session: id.clone(),
            url: self.config.public_url.clone(),
            host_token: self.secret.sign(&host),
            edit_token: invite(Role::Edit),
            view_token: invite(Role::View),
        };
        tracing::info!(session = %id, host = %name, "session created");
        Ok((created, host))
    }
}

/// Serves `listener` until `shutdown` completes: then stops accepting, closes every connection with a close
/// frame, lets the store finish its writes, and returns.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let secret = Secret::load_or_create(&config.data_dir).context("loading the token secret")?;
    let store = SqliteStore::open(&config.data_dir, config.durability)
        .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
    let (store, store_thread) = StoreHandle::spawn(Box::new(store), metrics.clone());
    let tls: Option<TlsAcceptor> =
        config.tls.as_ref().map(|files| tls::acceptor(&files.cert, &files.key)).transpose()?;
    let session_count = store.session_count().await.context("counting sessions")?;
    let (shutdown_sender, shutdown_receiver) = watch::channel(false);
    let connection_limit = Arc::new(Semaphore::new(config.limits.max_connections));
    let auth_throttle = crate::throttle::AuthThrottle::new(config.limits.failed_auth_per_minute);
    let shared = Arc::new(Shared {
        config,
        secret,
        store,
        metrics,
        sessions: Mutex::new(HashMap::new()),
        session_count: AtomicUsize::new(session_count),
        auth_throttle,
        shutdown: shutdown_receiver,
    });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer_address) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let tls = tls.clone();
                let permit = connection_limit.clone().try_acquire_owned();
                connections.spawn(async move {
                    let Ok(_permit) = permit else {
                        shared.metrics.refused(ErrorCode::LimitReached);
                        let mut stream = stream;
                        let _ = http::respond(&mut stream, "503 Service Unavailable", "text/plain", "connection limit reached\n").await;
                        return;
                    };
                    match tls {
                        Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => connection::serve(stream, peer_address.ip(), shared).await,
                            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        },
                        None => connection::serve(stream, peer_address.ip(), shared).await,
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    tracing::info!("shutting down: closing connections");
    drop(listener);
    let _ = shutdown_sender.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!("some connections did not close in time");
        connections.abort_all();
    }
    // Session and document tasks end once nothing refers to them; the store thread once they are gone.
    shared.sessions.lock().expect("sessions lock").clear();
    drop(shared);
    let joined = tokio::task::spawn_blocking(move || store_thread.join());
    match tokio::time::timeout(SHUTDOWN_GRACE, joined).await {
        Ok(_) => tracing::info!("store flushed; bye"),
        Err(_) => tracing::warn!("the store did not finish in time"),
    }
    Ok(())
}
