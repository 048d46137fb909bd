//! The accept loop: TLS, the connection limit, one task per connection, and shutdown. `run` takes the listener and
//! a shutdown future, so tests drive the same code as the binary.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use codecollab_protocol::wire::ErrorCode;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::Secret;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::writer::StoreHandle;
use crate::store::{Lost, Store};
use crate::{connection, http, tls};

/// How long shutdown waits for connections to close and for the store to finish writing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` completes: then stops accepting, closes every connection with a close
/// frame, lets the store finish its writes, and returns.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let node = match &config.node_url {
        Some(url) => url.clone(),
        None => format!("{}://{}", if config.tls.is_some() { "wss" } else { "ws" }, listener.local_addr()?),
    };
    let (store, secret) = open_store(&config, &node).await?;
    let (store, store_thread) = StoreHandle::spawn(store, metrics.clone());
    let tls: Option<TlsAcceptor> =
        config.tls.as_ref().map(|files| tls::acceptor(&files.cert, &files.key)).transpose()?;
    let session_count = store.session_count().await.context("counting sessions")?;
    let (shutdown_sender, shutdown_receiver) = watch::channel(false);
    let connection_limit = Arc::new(Semaphore::new(config.limits.max_connections));
    let shared = Arc::new(Shared::new(config, secret, store, metrics, session_count, shutdown_receiver));
    tokio::spawn(watch_lost_sessions(Arc::downgrade(&shared), shared.store.lost()));
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
    shared.release_sessions();
    drop(shared);
    let joined = tokio::task::spawn_blocking(move || store_thread.join());
    match tokio::time::timeout(SHUTDOWN_GRACE, joined).await {
        Ok(_) => tracing::info!("store flushed; bye"),
        Err(_) => tracing::warn!("the store did not finish in time"),
    }
    Ok(())
}

/// PostgreSQL when the configuration names a database, else SQLite in the data directory; and the token secret:
/// `CODECOLLAB_SECRET` if set, else the cluster's in PostgreSQL, else the data directory's.
async fn open_store(config: &Config, node: &str) -> anyhow::Result<(Box<dyn Store>, Secret)> {
    let from_environment = Secret::from_environment()?;
    match config.database_url.clone() {
        // The PostgreSQL client blocks (it runs a small runtime of its own): off this runtime's threads.
        Some(url) => {
            let (node, lease, candidate) = (node.to_owned(), config.lease, Secret::fresh_hex()?);
            let opened = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut store = PostgresStore::open(&url, &node, lease)?;
                let secret = store.shared_secret(&candidate).context("the cluster's token secret")?;
                Ok((store, secret))
            });
            let (store, secret) = opened.await??;
            tracing::info!(node = store.node(), "sequencing documents for a cluster sharing PostgreSQL");
            Ok((Box::new(store), from_environment.unwrap_or_else(|| Secret::from_bytes(secret.as_bytes()))))
        }
        None => {
            let store = SqliteStore::open(&config.data_dir, config.durability)
                .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
            let secret = match from_environment {
                Some(secret) => secret,
                None => Secret::load_or_create(&config.data_dir).context("loading the token secret")?,
            };
            Ok((Box::new(store), secret))
        }
    }
}

/// Ends the tasks of sessions another node took over (several nodes on PostgreSQL), until the store stops.
async fn watch_lost_sessions(shared: std::sync::Weak<Shared>, mut lost: broadcast::Receiver<Lost>) {
    loop {
        match lost.recv().await {
            Ok(Lost::Session(id)) => match shared.upgrade() {
                Some(shared) => shared.session_moved(&id).await,
                None => return,
            },
            Ok(Lost::Document(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
