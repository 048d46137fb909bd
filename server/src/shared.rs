//! The state every connection shares: configuration, token secret, store, metrics, the failed-authentication
//! throttle, the shutdown signal, and the registry of live sessions (one task each, started on first use).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use codecollab_protocol::wire::{ErrorCode, Limits, Role, ServerMsg};
use codecollab_protocol::DocumentLimits;
use tokio::sync::watch;

use crate::auth::{Claims, Secret};
use crate::config::Config;
use crate::document::DocSettings;
use crate::metrics::Metrics;
use crate::refusal::Refusal;
use crate::session::{self, SessionCommand, SessionContext, SessionHandle};
use crate::store::writer::StoreHandle;
use crate::store::{SessionHome, SessionRecord, Write};
use crate::throttle::AuthThrottle;

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
    pub auth_throttle: AuthThrottle,
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub fn new(
        config: Config,
        secret: Secret,
        store: StoreHandle,
        metrics: Arc<Metrics>,
        session_count: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Shared {
        let auth_throttle = AuthThrottle::new(config.limits.failed_auth_per_minute);
        Shared {
            config,
            secret,
            store,
            metrics,
            sessions: Mutex::new(HashMap::new()),
            session_count: AtomicUsize::new(session_count),
            auth_throttle,
            shutdown,
        }
    }

    /// Whether the store answers a read within two seconds.
    pub async fn store_health(&self) -> Result<(), String> {
        match tokio::time::timeout(std::time::Duration::from_secs(2), self.store.session_count()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("no answer within 2s".into()),
        }
    }

    /// Lets go of every session task (at shutdown: they end once no connection refers to them either).
    pub fn release_sessions(&self) {
        self.sessions.lock().expect("sessions lock").clear();
    }

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
                claim_patience: self.config.lease * 2 + std::time::Duration::from_secs(1),
            },
            max_documents: self.config.limits.max_documents_per_session,
            limits: Limits {
                max_frame_bytes: self.config.limits.max_frame_bytes as u64,
                max_document_chars: self.config.limits.max_document_chars as u64,
                heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            },
        }
    }

    /// Which node serves session `id`'s clients: this one if its task runs here; else the store says (taking the
    /// session for this node when no other holds it).
    pub async fn session_home(&self, id: &str) -> Result<SessionHome, Refusal> {
        if self.sessions.lock().expect("sessions lock").contains_key(id) {
            return Ok(SessionHome::Here);
        }
        self.store.claim_session(id).await.map_err(|error| {
            tracing::error!(%error, "finding the session's node failed");
            Refusal::new(ErrorCode::StorageFailure, "the server could not find which node serves the session")
        })
    }

    /// Another node took session `id` over: its task here ends, closing its peers' connections (they reconnect
    /// and are relayed to the new node).
    pub async fn session_moved(&self, id: &str) {
        let handle = self.sessions.lock().expect("sessions lock").remove(id);
        if let Some(handle) = handle {
            handle.tell(SessionCommand::Moved).await;
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
        // This node serves it (with several nodes, before any other can be asked for it).
        match self.store.claim_session(&id).await {
            Ok(SessionHome::Here) => {}
            other => {
                tracing::error!(?other, "a new session is held elsewhere");
                self.session_count.fetch_sub(1, Ordering::SeqCst);
                return Err(Refusal::new(ErrorCode::StorageFailure, "the server could not take the new session"));
            }
        }
        let record = SessionRecord { host: name.to_owned(), removed: Vec::new(), documents: Vec::new() };
        let handle = session::spawn(id.clone(), record, self.session_context());
        self.sessions.lock().expect("sessions lock").insert(id.clone(), handle);
        let ttl = self.config.invite_ttl;
        let host = self.secret.peer_claims(&id, name, Role::Edit, true, ttl);
        let created = ServerMsg::SessionCreated {
            session: id.clone(),
            url: self.config.public_url.clone(),
            host_token: self.secret.sign(&host),
            edit_token: self.secret.invite(&id, Role::Edit, ttl),
            view_token: self.secret.invite(&id, Role::View, ttl),
        };
        tracing::info!(session = %id, host = %name, "session created");
        Ok((created, host))
    }
}
