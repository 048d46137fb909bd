//! The accept loop: TLS, the connection limit, one task per connection, and shutdown. `run` takes the listener and
//! a shutdown future, so tests drive the same code as the binary.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use codecollab_protocol::wire::ErrorCode;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::Secret;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::store::sqlite::SqliteStore;
use crate::store::writer::StoreHandle;
use crate::{connection, http, tls};

/// How long shutdown waits for connections to close and for the store to finish writing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    let shared = Arc::new(Shared::new(config, secret, store, metrics, session_count, shutdown_receiver));
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
