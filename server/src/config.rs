//! Server configuration: command-line flags, `CODECOLLAB_*` environment variables and an optional TOML file,
//! merged in that order of precedence over built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// `codecollab-server`: the CodeCollab relay.
#[derive(Debug, Parser)]
#[command(name = "codecollab-server", version = version(), about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `--version`'s answer: the package version, with the commit when the build recorded one.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| codecollab_protocol::version_with_commit(env!("CARGO_PKG_VERSION")))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a host token, needed to create sessions on a server that does not listen on loopback.
    Token {
        /// Data directory of the server the token is for (its secret signs the token).
        #[arg(long, env = "CODECOLLAB_DATA_DIR", default_value = "./codecollab-data")]
        data_dir: PathBuf,
        /// Who the token is for; shown to others and in the server's log.
        #[arg(long)]
        name: String,
        /// How long the token is valid, e.g. `12h`, `30d`.
        #[arg(long, default_value = "30d", value_parser = parse_duration)]
        ttl: Duration,
        /// The cluster's database, for nodes on PostgreSQL: their secret is kept there, not in a data directory.
        #[arg(long, env = "CODECOLLAB_DATABASE_URL")]
        database_url: Option<String>,
    },
}

/// Flags of the server itself. Each may also come from the environment or the TOML file.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7830].
    #[arg(long, env = "CODECOLLAB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory holding the database and the token secret [default: ./codecollab-data].
    #[arg(long, env = "CODECOLLAB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file (see docs/operations.md for its keys).
    #[arg(long, env = "CODECOLLAB_CONFIG")]
    pub config: Option<PathBuf>,
    /// PEM certificate chain: serve wss:// and https:// (needs --tls-key).
    #[arg(long, env = "CODECOLLAB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "CODECOLLAB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// URL under which clients reach this server, put in invites (e.g. wss://collab.example.com).
    #[arg(long, env = "CODECOLLAB_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Interval between heartbeat pings; a peer silent for two intervals is dropped [default: 15s].
    #[arg(long, env = "CODECOLLAB_HEARTBEAT", value_parser = parse_duration)]
    pub heartbeat: Option<Duration>,
    /// `process` (survives a crash of the server process) or `fsync` (also survives power loss, slower)
    /// [default: process].
    #[arg(long, env = "CODECOLLAB_DURABILITY")]
    pub durability: Option<Durability>,
    /// Threads running connections and documents [default: one per CPU]. On a small machine shared with other
    /// busy processes fewer can be faster (docs/operations.md).
    #[arg(long, env = "CODECOLLAB_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
    /// Operations kept in the store per document for peers that come back after a long disconnect, at most
    /// [default: 1000000]. See docs/operations.md, "Retention".
    #[arg(long, env = "CODECOLLAB_RETENTION_OPS")]
    pub retention_ops: Option<u64>,
    /// How long operations are kept in the store for peers that come back, at most, e.g. `7d` [default: 7d].
    #[arg(long, env = "CODECOLLAB_RETENTION_AGE", value_parser = parse_duration)]
    pub retention_age: Option<Duration>,
    /// Creating a session needs a host token even on a loopback address (a machine shared by several users).
    #[arg(long, env = "CODECOLLAB_REQUIRE_HOST_TOKEN")]
    pub require_host_token: bool,
    /// Keep sessions and documents in PostgreSQL instead of SQLite in the data directory, e.g.
    /// `postgres://codecollab@db.example.com/codecollab` (docs/operations.md, "PostgreSQL").
    #[arg(long, env = "CODECOLLAB_DATABASE_URL")]
    pub database_url: Option<String>,
    /// How the other nodes on the same database reach this one, and its name among them; the same across its
    /// restarts [default: ws://LISTEN-ADDRESS].
    #[arg(long, env = "CODECOLLAB_NODE_URL")]
    pub node_url: Option<String>,
    /// With PostgreSQL: how long a node's hold on a document lasts unless renewed; another node takes the
    /// document over this long after its node stopped [default: 5s].
    #[arg(long, env = "CODECOLLAB_LEASE", value_parser = parse_duration)]
    pub lease: Option<Duration>,
}

/// How long the store keeps each document's operations after they are committed, so that a peer that comes
/// back after a long disconnect is replayed what it missed instead of merging with a snapshot. An operation stays
/// while it is among the newest `ops` of its document and younger than `age`.
///
/// The defaults cover a laptop closed from a Friday evening to a Monday morning (about 64 hours) in an active
/// session with days to spare: seven days of age, the same as an invite's default lifetime (a peer whose token
/// has expired cannot come back anyway), and a million operations per document, about ten working days of four
/// people typing at once (a keystroke is an operation; 3 per second per person for 2 hours of actual typing a
/// day is about 90,000 a day). At 40 to 60 bytes an operation in SQLite, that is at most 60 MB per document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub ops: u64,
    pub age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { ops: 1_000_000, age: Duration::from_secs(7 * 86_400) }
    }
}

/// What "acknowledged" promises. See docs/operations.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Committed to SQLite's write-ahead log (in the OS page cache): survives the server process being killed.
    Process,
    /// Committed and fsynced: also survives the machine losing power.
    Fsync,
}

/// Bounds on everything a peer controls, each with a typed refusal.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket message accepted from a client, in bytes.
    pub max_frame_bytes: usize,
    /// Largest document, in chars.
    pub max_document_chars: usize,
    pub max_documents_per_session: usize,
    pub max_sessions: usize,
    pub max_connections: usize,
    /// Sustained operations (edits and cursor moves) per second per connection, and the burst above it.
    pub ops_per_second: u32,
    pub ops_burst: u32,
    /// Messages queued toward one connection before it is considered too slow and dropped (it can resume).
    pub outbound_queue: usize,
    /// Failed authentications one address may make in a minute before it is refused (HTTP 429) for the rest of
    /// it; 0: no limit.
    pub failed_auth_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 << 20,
            max_document_chars: 16 << 20,
            max_documents_per_session: 10_000,
            max_sessions: 1_000,
            max_connections: 10_000,
            // Far above what a daemon can send (it has one op in flight, so at most one per round trip), far
            // below a flood.
            ops_per_second: 10_000,
            ops_burst: 20_000,
            outbound_queue: 8_192,
            // Far more than a person mistyping or a daemon retrying with an expired token, far fewer than guessing.
            failed_auth_per_minute: 20,
        }
    }
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    public_url: Option<String>,
    heartbeat: Option<String>,
    durability: Option<Durability>,
    workers: Option<u16>,
    snapshot_every: Option<u64>,
    history: Option<usize>,
    retention_ops: Option<u64>,
    retention_age: Option<String>,
    invite_ttl: Option<String>,
    limits: Option<Limits>,
    require_host_token: Option<bool>,
    database_url: Option<String>,
    node_url: Option<String>,
    lease: Option<String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: Option<TlsFiles>,
    pub public_url: Option<String>,
    pub heartbeat: Duration,
    pub durability: Durability,
    /// Worker threads of the async runtime.
    pub workers: usize,
    /// A snapshot is stored every this many operations of a document.
    pub snapshot_every: u64,
    /// Operations each document keeps in memory for late operations and resuming clients.
    pub history: usize,
    /// Operations each document keeps in the store for clients that come back after a long disconnect.
    pub retention: Retention,
    /// How long invite tokens minted for a new session are valid.
    pub invite_ttl: Duration,
    pub limits: Limits,
    /// Creating a session needs a host token on any address, loopback included.
    pub require_host_token: bool,
    /// PostgreSQL instead of SQLite; `None`: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// This node's URL for the other nodes; `None`: `ws://` (or `wss://`) and the address it listens on.
    pub node_url: Option<String>,
    /// How long a node's lease on a document lasts unless renewed (PostgreSQL).
    pub lease: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7830)),
            data_dir: PathBuf::from("./codecollab-data"),
            tls: None,
            public_url: None,
            heartbeat: Duration::from_secs(15),
            durability: Durability::Process,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            snapshot_every: 1_000,
            history: 1_024,
            retention: Retention::default(),
            invite_ttl: Duration::from_secs(7 * 24 * 3600),
            limits: Limits::default(),
            require_host_token: false,
            database_url: None,
            node_url: None,
            lease: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Merges flags and environment (already combined by clap) over the TOML file over the defaults.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        if let Some(listen) = args.listen.or(file.listen) {
            config.listen = listen;
        }
        if let Some(dir) = args.data_dir.clone().or(file.data_dir) {
            config.data_dir = dir;
        }
        let cert = args.tls_cert.clone().or(file.tls_cert);
        let key = args.tls_key.clone().or(file.tls_key);
        config.tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("TLS needs both a certificate and a key (--tls-cert and --tls-key)"),
        };
        config.public_url = args.public_url.clone().or(file.public_url);
        if let Some(heartbeat) = args.heartbeat {
            config.heartbeat = heartbeat;
        } else if let Some(text) = file.heartbeat {
            config.heartbeat = parse_duration(&text).map_err(anyhow::Error::msg).context("heartbeat")?;
        }
        if let Some(durability) = args.durability.or(file.durability) {
            config.durability = durability;
        }
        match args.workers.or(file.workers) {
            Some(0) => bail!("workers must be at least 1"),
            Some(n) => config.workers = usize::from(n),
            None => {}
        }
        if let Some(n) = file.snapshot_every {
            config.snapshot_every = n.max(1);
        }
        if let Some(n) = file.history {
            config.history = n.max(1);
        }
        if let Some(ops) = args.retention_ops.or(file.retention_ops) {
            config.retention.ops = ops;
        }
        if let Some(age) = args.retention_age {
            config.retention.age = age;
        } else if let Some(text) = file.retention_age {
            config.retention.age = parse_duration(&text).map_err(anyhow::Error::msg).context("retention_age")?;
        }
        if config.retention.ops < config.history as u64 {
            bail!(
                "retention_ops ({}) must be at least history ({}): the store keeps at least what memory does",
                config.retention.ops,
                config.history
            );
        }
        if let Some(text) = file.invite_ttl {
            config.invite_ttl = parse_duration(&text).map_err(anyhow::Error::msg).context("invite_ttl")?;
        }
        if let Some(limits) = file.limits {
            config.limits = limits;
        }
        config.require_host_token = args.require_host_token || file.require_host_token.unwrap_or(false);
        config.database_url = args.database_url.clone().or(file.database_url);
        if let Some(url) = &config.database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("the database URL must start with postgres:// or postgresql://");
            }
        }
        config.node_url = args.node_url.clone().or(file.node_url);
        if config.database_url.is_some() {
            // Node-to-node connections are plain WebSocket in this version: TLS ends in front of the nodes.
            if config.tls.is_some() {
                bail!(
                    "several nodes on PostgreSQL relay to each other over plain ws://: end TLS in front of them \
                     (a reverse proxy or load balancer, docs/operations.md) instead of --tls-cert"
                );
            }
            if config.node_url.as_deref().is_some_and(|url| !url.starts_with("ws://")) {
                bail!("--node-url must be a ws:// URL: node-to-node connections are plain WebSocket in this version");
            }
        }
        if let Some(lease) = args.lease {
            config.lease = lease;
        } else if let Some(text) = file.lease {
            config.lease = parse_duration(&text).map_err(anyhow::Error::msg).context("lease")?;
        }
        if config.lease < Duration::from_millis(300) {
            bail!("the lease must be at least 300ms: it is renewed every third of it");
        }
        if config.heartbeat < Duration::from_millis(10) {
            bail!("heartbeat interval must be at least 10ms");
        }
        Ok(config)
    }

    /// Creating sessions without a host token is allowed only on a loopback address, and not there either with
    /// `require_host_token`.
    pub fn open_session_creation(&self) -> bool {
        self.listen.ip().is_loopback() && !self.require_host_token
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Parses `250ms`, `30s`, `5m`, `12h`, `7d` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 30s, 5m, 12h or 7d"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use ms, s, m, h or d)")),
    };
    n.checked_mul(seconds).map(Duration::from_secs).ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_example_configuration_in_deploy_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/server.toml");
        let config = Config::load(&ServeArgs { config: Some(path), ..Default::default() }).expect("valid");
        assert!(config.require_host_token && !config.open_session_creation());
        assert_eq!(config.public_url.as_deref(), Some("wss://collab.example.com"));
    }

    #[test]
    fn a_cluster_node_takes_its_database_node_url_and_lease_and_refuses_what_it_cannot_do() {
        let url = Some("postgres://db.internal/codecollab".to_owned());
        let args = ServeArgs {
            database_url: url.clone(),
            node_url: Some("ws://node1.internal:7830".into()),
            lease: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let config = Config::load(&args).expect("valid");
        assert_eq!(config.database_url, url);
        assert_eq!(
            (config.node_url.as_deref(), config.lease),
            (Some("ws://node1.internal:7830"), Duration::from_secs(2))
        );
        let refused = |args: ServeArgs| Config::load(&args).expect_err("refused").to_string();
        let wss = ServeArgs { database_url: url.clone(), node_url: Some("wss://n:1".into()), ..Default::default() };
        assert!(refused(wss).contains("must be a ws:// URL"));
        let tls = ServeArgs {
            database_url: url.clone(),
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..Default::default()
        };
        assert!(refused(tls).contains("end TLS in front of them"));
        let mysql = ServeArgs { database_url: Some("mysql://x".into()), ..Default::default() };
        assert!(refused(mysql).contains("postgres://"));
        let short = ServeArgs { database_url: url, lease: Some(Duration::from_millis(100)), ..Default::default() };
        assert!(refused(short).contains("at least 300ms"));
    }

    #[test]
    fn file_values_apply_under_flags() {
        let dir = std::env::temp_dir().join(format!("codecollab-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("server.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\nheartbeat = \"2s\"\nworkers = 3\n[limits]\nmax_sessions = 3\n",
        )
        .expect("write");
        let args =
            ServeArgs { config: Some(path.clone()), heartbeat: Some(Duration::from_secs(5)), ..Default::default() };
        let config = Config::load(&args).expect("valid");
        assert_eq!(config.listen, "0.0.0.0:9000".parse().expect("addr"));
        assert_eq!(config.heartbeat, Duration::from_secs(5));
        assert_eq!(config.limits.max_sessions, 3);
        assert_eq!(config.workers, 3);
        assert!(!config.open_session_creation());
        assert_eq!(config.retention, Retention::default());
        let flag = ServeArgs { config: Some(path.clone()), workers: Some(1), ..Default::default() };
        assert_eq!(Config::load(&flag).expect("valid").workers, 1, "the flag wins over the file");
        std::fs::write(&path, "history = 64\nretention_ops = 100\nretention_age = \"2h\"\n").expect("write");
        let config = Config::load(&args).expect("valid");
        assert_eq!(config.retention, Retention { ops: 100, age: Duration::from_secs(7200) });
        std::fs::write(&path, "history = 64\nretention_ops = 10\n").expect("write");
        assert!(Config::load(&args).is_err(), "the store keeps at least the history");
        // Loopback alone lets anyone create sessions, unless host tokens are required (file or flag).
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n").expect("write");
        assert!(Config::load(&args).expect("valid").open_session_creation());
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nrequire_host_token = true\n").expect("write");
        assert!(!Config::load(&args).expect("valid").open_session_creation());
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n").expect("write");
        let required = ServeArgs { config: Some(path.clone()), require_host_token: true, ..Default::default() };
        assert!(!Config::load(&required).expect("valid").open_session_creation());
        std::fs::write(&path, "no_such_key = 1\n").expect("write");
        assert!(Config::load(&args).is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
