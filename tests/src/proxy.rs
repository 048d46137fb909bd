//! A fault-injection TCP proxy for tests: real TCP between a client (a daemon) and the server, with latency and
//! jitter, stalls (no bytes either way, so only a heartbeat notices), resets, refused connections and cuts of any
//! length, each switchable while traffic flows.
//!
//! Bytes keep their order in each direction whatever the faults: a delayed chunk is never overtaken, a stalled one
//! is delivered when the stall ends (if the connection still exists then), as TCP would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::random::Rng;

/// What the proxy does to traffic, from the moment it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Hold every chunk for `latency` plus up to `jitter` more (order kept).
    Delay { latency: Duration, jitter: Duration },
    /// Forward nothing, either way, on open connections; bytes wait. New connections are accepted and stall too.
    Stall,
    /// Reset every new connection as soon as it is accepted (open ones are left alone).
    Refuse,
}

/// What the proxy has done, for a test's report.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    /// Open connections reset (by [`FaultProxy::reset`] or [`FaultProxy::cut`]).
    pub resets: AtomicU64,
    pub bytes: AtomicU64,
}

/// A proxy on `127.0.0.1:0` in front of `upstream`. Stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    mode: watch::Sender<Mode>,
    /// Bumped to reset every open connection.
    kills: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.kills.send_modify(|n| *n += 1);
    }
}

impl FaultProxy {
    /// Starts a proxy toward `upstream`, passing traffic through. `seed` drives the jitter.
    pub async fn start(upstream: SocketAddr, seed: u64) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Pass);
        let (kills, _) = watch::channel(0u64);
        let counters = Arc::new(Counters::default());
        let accept = {
            let (mode, kills, counters) = (mode.clone(), kills.clone(), counters.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let Ok((client, _)) = listener.accept().await else { return };
                    n += 1;
                    if *mode.borrow() == Mode::Refuse {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        reset_on_close(&client);
                        drop(client);
                        continue;
                    }
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let rng = Rng::new(seed.wrapping_add(n));
                    tokio::spawn(relay(client, upstream, mode.subscribe(), kills.subscribe(), counters.clone(), rng));
                }
            })
        };
        Ok(FaultProxy { addr, counters, mode, kills, accept })
    }

    /// `ws://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Switches what the proxy does, for open connections and new ones.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Resets every open connection now (TCP RST both ways).
    pub fn reset(&self) {
        self.kills.send_modify(|n| *n += 1);
    }

    /// A cut: every open connection is reset and new ones are refused, until the mode is set again.
    pub fn cut(&self) {
        self.set(Mode::Refuse);
        self.reset();
    }
}

/// One proxied connection: a pump each way, until either side closes or the connection is reset.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    mut kills: watch::Receiver<u64>,
    counters: Arc<Counters>,
    rng: Rng,
) {
    let generation = *kills.borrow_and_update();
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset_on_close(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Handles on the same sockets, kept to reset them: with a zero linger, the last close sends RST.
    let (Ok(client_handle), Ok(server_handle)) = (duplicate(&client), duplicate(&server)) else { return };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, mode.clone(), counters.clone(), rng.clone());
    let down = pump(server_read, client_write, mode, counters.clone(), Rng::new(rng.clone().next_u64()));
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = kills.wait_for(|n| *n != generation) => {
            counters.resets.fetch_add(1, Ordering::Relaxed);
            reset_on_close(&client_handle);
            reset_on_close(&server_handle);
        }
    }
}

/// Makes the last close of `stream`'s socket send RST instead of FIN.
// Deprecated because a positive linger blocks the closing thread; a zero linger never does (it resets at once).
#[allow(deprecated)]
fn reset_on_close(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// A second handle on the socket of `stream`.
fn duplicate(stream: &TcpStream) -> std::io::Result<TcpStream> {
    let fd = std::os::fd::AsFd::as_fd(stream).try_clone_to_owned()?;
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true)?;
    TcpStream::from_std(std)
}

/// Copies one direction, applying the proxy's mode to each chunk; ends (shutting the other side's write half)
/// when the reading side does.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
    mut rng: Rng,
) {
    // Chunks with the time they may be delivered; `None` is the end of the stream.
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let reader = {
        let mode = mode.clone();
        async move {
            let mut buffer = vec![0u8; 16 * 1024];
            let mut last = Instant::now();
            loop {
                let n = from.read(&mut buffer).await.unwrap_or(0);
                let delay = match *mode.borrow() {
                    Mode::Delay { latency, jitter } => {
                        let extra = jitter.as_micros() as u64;
                        latency + Duration::from_micros(if extra == 0 { 0 } else { rng.next_u64() % (extra + 1) })
                    }
                    _ => Duration::ZERO,
                };
                // Never before the chunk read earlier: order is kept.
                last = last.max(Instant::now() + delay);
                let chunk = (n > 0).then(|| buffer[..n].to_vec());
                if queue.send((last, chunk)).is_err() || n == 0 {
                    return;
                }
            }
        }
    };
    let writer = async move {
        let mut mode = mode;
        while let Some((at, chunk)) = queued.recv().await {
            tokio::time::sleep_until(at).await;
            // A stall holds every byte until it ends.
            let _ = mode.wait_for(|m| *m != Mode::Stall).await;
            let Some(chunk) = chunk else {
                let _ = to.shutdown().await;
                return;
            };
            counters.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
        stream.write_all(bytes).await?;
        let mut back = vec![0; bytes.len()];
        match tokio::time::timeout(timeout, stream.read_exact(&mut back)).await {
            Ok(read) => read.map(|_| back),
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    #[tokio::test]
    async fn faults_switch_while_traffic_flows() {
        let proxy = FaultProxy::start(echo().await, 1).await.expect("starts");
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connects");
        assert_eq!(round_trip(&mut stream, b"pass", Duration::from_secs(5)).await.expect("echo"), b"pass");

        proxy.set(Mode::Delay { latency: Duration::from_millis(150), jitter: Duration::from_millis(50) });
        let started = Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow", Duration::from_secs(5)).await.expect("echo"), b"slow");
        assert!(started.elapsed() >= Duration::from_millis(300), "delayed both ways");

        proxy.set(Mode::Stall);
        stream.write_all(b"held").await.expect("writes");
        let mut back = [0u8; 4];
        assert!(tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut back)).await.is_err());
        proxy.set(Mode::Pass);
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
            .await
            .expect("released")
            .expect("reads");
        assert_eq!(&back, b"held", "a stall delays bytes, it does not lose them");

        proxy.reset();
        let mut byte = [0u8; 1];
        let after_reset = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await.expect("ends");
        assert!(matches!(after_reset, Err(_) | Ok(0)), "the connection is gone: {after_reset:?}");
        assert_eq!(proxy.counters.resets.load(Ordering::Relaxed), 1);

        proxy.cut();
        let mut refused = TcpStream::connect(proxy.addr).await.expect("the port accepts");
        let outcome = round_trip(&mut refused, b"x", Duration::from_secs(5)).await;
        assert!(outcome.is_err(), "a refused connection carries nothing: {outcome:?}");
        proxy.set(Mode::Pass);
        let mut again = TcpStream::connect(proxy.addr).await.expect("connects");
        assert_eq!(round_trip(&mut again, b"back", Duration::from_secs(5)).await.expect("echo"), b"back");
        assert!(proxy.counters.refused.load(Ordering::Relaxed) >= 1);
    }
}
