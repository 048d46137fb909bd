//! Servers for tests: in-process on 127.0.0.1:0 (`TestServer`), or the real binary as a child process
//! (`ServerProcess`) where process death matters; temporary directories; building binaries on demand.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use codecollab_server::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("codecollab-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server running inside the test process, on its own temporary data directory.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with the default configuration adjusted by `configure`.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = TempDir::new("server");
        let mut config = Config { data_dir: data_dir.path().to_owned(), ..Config::default() };
        config.listen = "127.0.0.1:0".parse().expect("address");
        configure(&mut config);
        let tls = config.tls.is_some();
        // A test may choose its own data directory (to restart a server on it).
        let dir = config.data_dir.clone();
        let listener = tokio::net::TcpListener::bind(config.listen).await.expect("binding a test port");
        let addr = listener.local_addr().expect("local address");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(codecollab_server::run(listener, config, async move {
            let _ = stopped.await;
        }));
        let server = TestServer { addr, data_dir, shutdown: Some(shutdown), task: Some(task) };
        // Ready once its secret and database exist (it creates them before it accepts connections), and, for a
        // plain server, once it answers /healthz.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(dir.join("secret").exists() && dir.join("codecollab.sqlite3").exists())
            || (!tls && !http_get(server.addr, "/healthz").await.is_ok_and(|(status, _)| status == 200))
        {
            assert!(std::time::Instant::now() < deadline, "the test server did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Shuts the server down as SIGTERM would, and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task.await.context("server task panicked")?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The target directory's profile folder holding this test binary's sibling binaries.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    let deps = exe.parent().expect("deps folder");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("profile folder").to_owned()
    } else {
        deps.to_owned()
    }
}

/// The path of a workspace binary, built (once per test process) in the same profile as the tests.
pub fn binary(package: &str, name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let dir = profile_dir();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().expect("build lock");
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet", "-p", package, "--bin", name]);
        if dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("running cargo build");
        assert!(status.success(), "building {name} failed");
        built.push(name.to_owned());
    }
    dir.join(name)
}

/// The real `codecollab-server` binary as a child process.
#[derive(Debug)]
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: Child,
    /// Every line the server logged, for tests that check what it says (and does not say).
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the binary on `listen` (use port 0 for any) with `data_dir`, and waits until it listens.
    pub fn spawn(listen: &str, data_dir: &Path, extra: &[&str]) -> anyhow::Result<ServerProcess> {
        Self::spawn_logging(listen, data_dir, extra, "info")
    }

    /// [`ServerProcess::spawn`] logging at `level` (`RUST_LOG`).
    pub fn spawn_logging(listen: &str, data_dir: &Path, extra: &[&str], level: &str) -> anyhow::Result<ServerProcess> {
        let mut child = Command::new(binary("codecollab-server", "codecollab-server"))
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting codecollab-server")?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut listening = || -> anyhow::Result<SocketAddr> {
            loop {
                let Some(line) = lines.next() else { bail!("codecollab-server exited before listening") };
                let line = line?;
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let addr = url.trim_start_matches("ws://").trim_start_matches("wss://");
                    return addr.parse().with_context(|| format!("parsing the address in {line:?}"));
                }
            }
        };
        let addr = match listening() {
            Ok(addr) => addr,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        // Keep draining the log so the server never blocks on a full pipe; echo it for failing tests.
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("[server] {line}");
                sink.lock().expect("log lock").push(line);
            }
        });
        Ok(ServerProcess { addr, child, log })
    }

    /// The server's log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. "TERM") and waits up to `timeout` for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill").args([format!("-{signal}"), self.pid().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!("the server did not exit within {timeout:?} of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on the server's port; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response)).await??;
    parse_response(&response)
}

/// Splits an HTTP response into status code and body.
pub fn parse_response(response: &str) -> anyhow::Result<(u16, String)> {
    let status = response.split_whitespace().nth(1).context("no status line")?.parse()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

/// Polls `check` every `every` until it holds; fails with "timed out waiting for {what}" after `timeout`.
pub fn poll_until(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// Waits up to `grace` for `child` to exit by itself, then kills it; always reaps it.
pub fn reap(child: &mut std::process::Child, grace: Duration) {
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A field of `/proc/PID/status` in kB (`VmRSS:`, `VmHWM:`), or 0 if the process or field is gone.
pub fn proc_status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
