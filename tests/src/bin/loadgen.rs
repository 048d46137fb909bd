//! The load generator: drives a real `codecollab-server` (started here on a temporary data directory, or one
//! given by `--url`) with editing clients and reports committed ops/s, acknowledgement and fan-out latency, the
//! server's CPU time per op and its peak memory.
//!
//! Clients typing at a rate (`--rate`) start at phases spread over one period, not all at once. The clients run on
//! one thread, so that the load generator takes one core of the machine it shares with the server; the server it
//! starts gets the others (`--server-workers`, one less than the CPUs), as does the bare relay of `--versus-relay`.
//! `--threads 2` gives the clients more, to show whether the load generator is what limits a figure.
//!
//! After a run it prints where an operation's time went inside the server, stage by stage, from the server's own
//! histograms (`/metrics`, the difference over the run).
//!
//! Examples:
//!   loadgen --clients 10 --docs 1 --seconds 10                 # closed loop: one op in flight per client
//!   loadgen --clients 10 --rate 10 --seconds 10                # each client types 10 ops/s
//!   loadgen --clients 10 --doc-size 10000000 --seconds 10      # a 10 MB document
//!   loadgen --idle 1000 --seconds 10 --heartbeat 1s            # idle connections: server memory
//!   loadgen --clients 10 --postgres --nodes 3 --seconds 10     # three nodes on PostgreSQL, clients spread

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use codecollab_protocol::wire::{ClientMsg, ServerMsg};
use codecollab_protocol::{Client, Revision, TextOperation};
use codecollab_server::store::postgres::ScratchDatabase;
use codecollab_tests::client::{Connect, WsClient};
use codecollab_tests::editor::{self, SessionTokens};
use codecollab_tests::harness::{proc_status_kb, ServerProcess, TempDir};
use codecollab_tests::random::Rng;
use tokio::sync::Barrier;

#[derive(Debug, Parser)]
#[command(about = "Load generator for codecollab-server")]
struct Args {
    /// Editing clients.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Documents the clients spread over (round robin).
    #[arg(long, default_value_t = 1)]
    docs: usize,
    /// Measured duration.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Ops per second per client; 0 means closed loop (the next op as soon as the last is acknowledged).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Initial size of each document, in bytes.
    #[arg(long, default_value_t = 1_000)]
    doc_size: usize,
    /// Instead of editing: hold this many idle, subscribed connections and report server memory.
    #[arg(long)]
    idle: Option<usize>,
    /// With --idle: spread the connections over this many sessions (one document each).
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Heartbeat interval of the server started here.
    #[arg(long, default_value = "15s")]
    heartbeat: String,
    /// Use a running server instead of starting one (CPU and memory figures need a local pid: --pid).
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    pid: Option<u32>,
    /// `process` or `fsync` (for the server started here).
    #[arg(long, default_value = "process")]
    durability: String,
    /// Worker threads of the server started here, and of the relay [default: one less than the CPUs, at least one:
    /// this load generator takes one core]. On two cores, a second worker halves the closed loop's ops/s of the
    /// server and of the relay alike, and shortens the tails of many clients at a rate.
    #[arg(long)]
    server_workers: Option<usize>,
    /// Run the same shape through a bare relay too, after the server (`codecollab_tests::relay`, in a process of
    /// its own: no OT, no storage, the server's worker count), and print every figure beside that floor, as a ratio.
    #[arg(long)]
    versus_relay: bool,
    /// Internal: serve only the bare relay with this many threads, print its URL, and run until stdin closes
    /// (`--versus-relay` runs it in a process of its own this way).
    #[arg(long, hide = true)]
    serve_relay: Option<usize>,
    /// Threads of the load generator's own runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The server started here keeps its data in PostgreSQL (a scratch database on `CODECOLLAB_TEST_POSTGRES`,
    /// dropped afterwards) instead of SQLite.
    #[arg(long)]
    postgres: bool,
    /// With --postgres: start this many nodes on the database and spread the clients over them (round robin); the
    /// session is served by the first, the others relay to it. CPU figures are the first node's.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
}

/// One of the server's latency histograms: cumulative counts by upper bound (seconds), count and sum.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl Histogram {
    /// What was observed between `before` and `self`.
    fn since(&self, before: &Histogram) -> Histogram {
        let old = |bound: f64| before.buckets.iter().find(|(b, _)| *b == bound).map_or(0, |(_, n)| *n);
        Histogram {
            buckets: self.buckets.iter().map(|&(bound, n)| (bound, n.saturating_sub(old(bound)))).collect(),
            count: self.count.saturating_sub(before.count),
            sum: self.sum - before.sum,
        }
    }

    /// The upper bound of the bucket holding quantile `q` (an over-estimate by at most one bucket).
    fn quantile(&self, q: f64) -> f64 {
        let rank = (self.count as f64 * q).ceil() as u64;
        self.buckets.iter().find(|(_, n)| *n >= rank.max(1)).map_or(f64::INFINITY, |(bound, _)| *bound)
    }
}

/// The server's histograms by name, from its `/metrics` text.
fn parse_histograms(text: &str) -> HashMap<String, Histogram> {
    let mut found: HashMap<String, Histogram> = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        if let Some((name, rest)) = key.split_once("_bucket{le=\"") {
            let bound = rest.trim_end_matches("\"}");
            let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().unwrap_or(f64::NAN) };
            found.entry(name.to_owned()).or_default().buckets.push((bound, value.parse().unwrap_or(0)));
        } else if let Some(name) = key.strip_suffix("_count") {
            found.entry(name.to_owned()).or_default().count = value.parse().unwrap_or(0);
        } else if let Some(name) = key.strip_suffix("_sum") {
            found.entry(name.to_owned()).or_default().sum = value.parse().unwrap_or(0.0);
        }
    }
    found.retain(|_, h| !h.buckets.is_empty());
    found
}

/// The stages of an operation in the server, in the order it passes them: (histogram, what it measures).
const STAGES: &[(&str, &str)] = &[
    ("codecollab_op_queue_seconds", "socket read -> document task"),
    ("codecollab_commit_latency_seconds", "commit of a batch"),
    ("codecollab_op_broadcast_seconds", "socket read -> ack and broadcast queued"),
    ("codecollab_outbox_wait_seconds", "frame queued -> its write starts"),
    ("codecollab_socket_write_seconds", "write and flush of a batch of frames"),
];

async fn server_histograms(addr: Option<std::net::SocketAddr>) -> HashMap<String, Histogram> {
    let Some(addr) = addr else { return HashMap::new() };
    match codecollab_tests::harness::http_get(addr, "/metrics").await {
        Ok((200, body)) => parse_histograms(&body),
        _ => HashMap::new(),
    }
}

/// What one editing client measured.
#[derive(Default)]
struct ClientReport {
    ack_latencies: Vec<Duration>,
    /// Revision of each of this client's acknowledged ops, with when it was sent.
    sent: Vec<(usize, Revision, Instant)>,
    /// When each other client's op arrived, by (document, revision).
    received: Vec<(usize, Revision, Instant)>,
}

/// CPU time (user + system) and peak resident memory of a process, from /proc.
fn process_usage(pid: u32) -> anyhow::Result<(Duration, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(')').context("stat format")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // Clock ticks are 1/100 s on Linux.
    Ok((Duration::from_millis(ticks * 10), proc_status_kb(pid, "VmHWM:"), proc_status_kb(pid, "VmRSS:")))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn initial_text(size: usize) -> String {
    (0..size).map(|i| if i % 80 == 79 { '\n' } else { (b'a' + (i % 26) as u8) as char }).collect()
}

async fn open_doc(
    url: &str,
    token: &str,
    client_id: u64,
    path: &str,
    text: &str,
) -> anyhow::Result<(WsClient, u64, Revision, usize)> {
    let connect = Connect { token: Some(token.to_owned()), ..Default::default() };
    let (mut ws, _) = editor::join(url, &connect, client_id, &format!("load{client_id}")).await?;
    ws.send(&ClientMsg::Create { path: path.into(), text: text.into() }).await?;
    let (doc, revision, text) = ws
        .recv_until(|m| match m {
            ServerMsg::Snapshot { doc, revision, text, .. } => Some((*doc, *revision, text.chars().count())),
            _ => None,
        })
        .await?;
    Ok((ws, doc, revision, text))
}

/// One editing client: types for `duration` after the barrier, in closed loop or at `rate` ops/s.
async fn edit(target: Target, index: usize, args: Arc<Args>, barrier: Arc<Barrier>) -> anyhow::Result<ClientReport> {
    let doc_index = index % args.docs;
    let path = format!("doc{doc_index}.txt");
    let text = initial_text(args.doc_size);
    let opened = match &target {
        Target::Server { urls, tokens } => {
            let url = &urls[index % urls.len()];
            open_doc(url, &tokens.edit_token, 1000 + index as u64, &path, &text).await
        }
        Target::Relay { url } => relay_open(url, doc_index as u64, text.chars().count()).await,
    };
    // Everyone reaches the barrier, even a client that failed to open, so a failure is reported, not a hang.
    barrier.wait().await;
    // A client needs the document's length to make valid operations, and the OT client to rebase its own on
    // others'; not the text itself (real clients' buffers are the daemon benchmark's business). Against the
    // relay, which transforms nothing, it sends the same shape of operation on a length that stays put.
    let relay = matches!(target, Target::Relay { .. });
    let (mut ws, doc, revision, mut len) = opened?;
    let mut ot = Client::new(revision, 1);
    let mut relay_seq = 0;
    let mut rng = Rng::new(index as u64);
    let mut report = ClientReport::default();
    // When each in-flight sequence number was sent.
    let mut in_flight: HashMap<u64, Instant> = HashMap::new();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let period = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    // Clients typing at a rate start at phases spread over one period, as people do: started all at once, they
    // would send in bursts of every client at the same instant, and the figures would measure the bursts' queues.
    let mut next_tick = started + period.map_or(Duration::ZERO, |p| p.mul_f64(rng.below(1000) as f64 / 1000.0));
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = match period {
            None if relay => in_flight.is_empty(),
            None => ot.is_synchronized(),
            Some(_) => now >= next_tick,
        };
        if due {
            if let Some(period) = period {
                next_tick += period;
            }
            let at = rng.below(len + 1);
            let op = TextOperation::replace(len, at, at, "x")?;
            if relay {
                relay_seq += 1;
                in_flight.insert(relay_seq, Instant::now());
                ws.send(&ClientMsg::Op { doc, seq: relay_seq, base_revision: 0, op }).await?;
            } else {
                len = op.target_len();
                if let Some(out) = ot.apply_local(op)? {
                    in_flight.insert(out.seq, Instant::now());
                    let msg = ClientMsg::Op { doc, seq: out.seq, base_revision: out.base_revision, op: out.op };
                    ws.send(&msg).await?;
                }
            }
        }
        let wait = match period {
            None => Duration::from_millis(50),
            Some(_) => next_tick.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)),
        };
        let Some(msg) = ws.try_recv(wait).await? else { continue };
        let arrived = Instant::now();
        match msg {
            ServerMsg::Ack { seq, revision, .. } => {
                if let Some(sent) = in_flight.remove(&seq) {
                    report.ack_latencies.push(arrived - sent);
                    report.sent.push((doc_index, revision, sent));
                }
                if relay {
                    continue;
                }
                if let Some(out) = ot.server_ack(seq, revision)?.send {
                    in_flight.insert(out.seq, Instant::now());
                    ws.send(&ClientMsg::Op { doc, seq: out.seq, base_revision: out.base_revision, op: out.op }).await?;
                }
            }
            ServerMsg::Op { revision, op, .. } => {
                report.received.push((doc_index, revision, arrived));
                if !relay {
                    len = ot.apply_server(revision, op)?.target_len();
                }
            }
            ServerMsg::Error { code, message, .. } => bail!("client {index}: server refused: {code:?}: {message}"),
            _ => {}
        }
    }
    ws.close().await;
    Ok(report)
}

/// A client of the bare relay, subscribed to document `doc` of `len` chars.
async fn relay_open(url: &str, doc: u64, len: usize) -> anyhow::Result<(WsClient, u64, Revision, usize)> {
    let mut ws = WsClient::connect(url, None).await?;
    ws.send(&ClientMsg::Subscribe { doc, since: None }).await?;
    Ok((ws, doc, 0, len))
}

/// Where the clients of one measured run connect.
#[derive(Clone)]
enum Target {
    /// Client `i` connects to `urls[i % urls.len()]` (several nodes of a cluster, or one server).
    Server {
        urls: Vec<String>,
        tokens: Arc<SessionTokens>,
    },
    Relay {
        url: String,
    },
}

/// The headline figures of one run, for the comparison with the relay.
struct Figures {
    ops_per_s: f64,
    ack: [Duration; 2],
    fanout: [Duration; 2],
}

async fn idle(url: &str, sessions: usize, connections: usize, seconds: u64, pid: Option<u32>) -> anyhow::Result<()> {
    let before = pid.map(process_usage).transpose()?;
    let end = Instant::now() + Duration::from_secs(seconds);
    // Each connection reads (which answers the server's pings) from the moment it is open until the end.
    let hold = move |mut ws: WsClient| {
        tokio::spawn(async move {
            while Instant::now() < end {
                if ws.try_recv(Duration::from_millis(500)).await.is_err() {
                    return false;
                }
            }
            true
        })
    };
    let mut tasks = Vec::new();
    let mut docs = Vec::new();
    for _ in 0..sessions.max(1) {
        let tokens = editor::create_session(url, None, "loadgen").await?;
        let (ws, doc, _, _) = open_doc(url, &tokens.edit_token, 1, "idle.txt", "idle").await?;
        tasks.push(hold(ws));
        docs.push((tokens, doc));
    }
    for i in 0..connections {
        let (tokens, doc) = &docs[i % docs.len()];
        let doc = *doc;
        let connect = Connect { token: Some(tokens.edit_token.clone()), ..Default::default() };
        let (mut ws, _) = editor::join(url, &connect, 10_000 + i as u64, &format!("idle{i}")).await?;
        ws.send(&ClientMsg::Subscribe { doc, since: None }).await?;
        ws.recv_until(|m| matches!(m, ServerMsg::Snapshot { .. }).then_some(())).await?;
        tasks.push(hold(ws));
    }
    anyhow::ensure!(Instant::now() < end, "opening the connections took longer than --seconds");
    // Measure while they are all open and idle.
    tokio::time::sleep(end.saturating_duration_since(Instant::now()) / 2).await;
    let during = pid.map(process_usage).transpose()?;
    let mut alive = 0;
    for task in tasks {
        alive += usize::from(task.await?);
    }
    let total = connections + sessions.max(1);
    println!(
        "idle connections: {connections} in {} session(s), held for {seconds} s; {alive} of {total} open at the end",
        sessions.max(1)
    );
    if let (Some((_, _, rss_before)), Some((_, peak, rss))) = (before, during) {
        println!(
            "server RSS: {:.1} MB before, {:.1} MB with the connections open (peak {:.1} MB)",
            rss_before as f64 / 1024.0,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        println!("per idle connection: {:.1} KB", (rss.saturating_sub(rss_before)) as f64 / connections as f64);
    }
    Ok(())
}

/// The bare relay in a child process (this binary with `--serve-relay`), ended when dropped.
struct RelayProcess(std::process::Child);

impl RelayProcess {
    /// Starts it with `workers` threads; returns it and its URL.
    fn start(workers: &str) -> anyhow::Result<(RelayProcess, String)> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve-relay", workers])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the relay process")?;
        let stdout = child.stdout.take().context("the relay's stdout")?;
        let relay = RelayProcess(child);
        let mut url = String::new();
        std::io::BufReader::new(stdout).read_line(&mut url)?;
        anyhow::ensure!(url.starts_with("ws://"), "the relay process printed {url:?} instead of its URL");
        Ok((relay, url.trim().to_owned()))
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if let Some(threads) = args.serve_relay {
        println!("{}", codecollab_tests::relay::start(threads)?);
        // Until the load generator that started this process closes our stdin (or ends).
        std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
        return Ok(());
    }
    let runtime = match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    runtime.block_on(run(args))
}

async fn run(args: Arc<Args>) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = args.server_workers.unwrap_or(cpus.saturating_sub(1)).max(1).to_string();
    anyhow::ensure!(args.nodes == 1 || args.postgres, "--nodes needs --postgres");
    let database = match args.postgres {
        true => Some(ScratchDatabase::create("loadgen")?),
        false => None,
    };
    let mut nodes = Vec::new();
    let urls = match &args.url {
        Some(url) => vec![url.clone()],
        None => {
            let mut extra = vec![
                "--heartbeat",
                args.heartbeat.as_str(),
                "--durability",
                args.durability.as_str(),
                "--workers",
                workers.as_str(),
            ];
            if let Some(database) = &database {
                extra.extend(["--database-url", database.url()]);
            }
            for _ in 0..args.nodes.max(1) {
                let dir = TempDir::new("loadgen-node");
                nodes.push((ServerProcess::spawn("127.0.0.1:0", dir.path(), &extra)?, dir));
            }
            nodes.iter().map(|(node, _)| node.url()).collect()
        }
    };
    let url = urls[0].clone();
    let server = nodes.first().map(|(node, _)| node);
    let pid = args.pid.or(server.map(ServerProcess::pid));
    if let Some(connections) = args.idle {
        return idle(&url, args.sessions, connections, args.seconds, pid).await;
    }
    let tokens = Arc::new(editor::create_session(&url, None, "loadgen").await?);
    // Create the documents first, so every client starts on the same initial text.
    for doc in 0..args.docs {
        let (ws, ..) =
            open_doc(&url, &tokens.edit_token, 1, &format!("doc{doc}.txt"), &initial_text(args.doc_size)).await?;
        ws.close().await;
    }
    let metrics_addr = match &args.url {
        Some(url) => url.trim_start_matches("ws://").split('/').next().and_then(|a| a.parse().ok()),
        None => server.map(|s| s.addr),
    };
    let mode = if args.rate == 0 { "closed loop".to_owned() } else { format!("{} ops/s per client", args.rate) };
    let server_config = match &args.url {
        Some(url) => format!("server at {url}"),
        None if args.postgres => format!(
            "PostgreSQL, {} node(s) (clients spread over them), {workers} worker thread(s) each",
            args.nodes.max(1)
        ),
        None => format!("SQLite, durability {}, {workers} server worker thread(s)", args.durability),
    };
    println!(
        "load: {} clients, {} document(s) of {} bytes, {mode}, {} s, {server_config}, {} load generator thread(s)",
        args.clients,
        args.docs,
        args.doc_size,
        args.seconds,
        args.threads.max(1),
    );
    if args.versus_relay {
        println!("-- codecollab-server:");
    }
    let figures = measure(Target::Server { urls, tokens }, &args, pid, metrics_addr).await?;
    let floor = if args.versus_relay {
        // After the server, in a process of its own. Measured first, the relay left the server's run after it with
        // a fan-out p99 several times its figure measured alone (1,000 clients over 100 documents on 2 cores:
        // 40-90 ms against 5-10 ms; the cause is not found), while the relay's own figures are the same before or
        // after the server's run: this order gives each the figure it has alone.
        let (relay, url) = RelayProcess::start(&workers)?;
        println!("-- the bare relay (no OT, no storage, a process of its own), the floor, measured second:");
        let floor = measure(Target::Relay { url }, &args, None, None).await?;
        drop(relay);
        Some(floor)
    } else {
        None
    };
    let store = match (args.postgres, args.nodes) {
        (false, _) => "SQLite".to_owned(),
        (true, 1) => "PostgreSQL".to_owned(),
        (true, n) => format!("{n} nodes on PostgreSQL"),
    };
    if args.url.is_none() {
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
        for (figure, value) in [
            ("committed ops/s", format!("{:.0}", figures.ops_per_s)),
            ("ack p50", ms(figures.ack[0])),
            ("ack p99", ms(figures.ack[1])),
            ("fan-out p50", ms(figures.fanout[0])),
            ("fan-out p99", ms(figures.fanout[1])),
        ] {
            let shape = format!("{} clients over {} doc(s), {mode}", args.clients, args.docs);
            codecollab_tests::bench::row_alone(&format!("{shape}, {store}: {figure}"), &value, "-");
        }
    }
    let shape = format!("{} clients over {} doc(s), {mode}", args.clients, args.docs);
    if let Some(floor) = &floor {
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        codecollab_tests::bench::row(
            &format!("{shape}: committed ops/s, against the bare relay"),
            &format!("{:.0}", figures.ops_per_s),
            &format!("{:.0}", floor.ops_per_s),
            figures.ops_per_s / floor.ops_per_s.max(f64::MIN_POSITIVE),
            "-",
        );
        codecollab_tests::bench::row(
            &format!("{shape}: fan-out p99, against the bare relay"),
            &ms(figures.fanout[1]),
            &ms(floor.fanout[1]),
            ratio(figures.fanout[1], floor.fanout[1]),
            "-",
        );
    }
    if let Some(floor) = floor {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("server against the relay, same shape, same run:");
        println!(
            "  committed ops/s {:.0} against {:.0}: {:.2}x",
            figures.ops_per_s,
            floor.ops_per_s,
            figures.ops_per_s / floor.ops_per_s.max(f64::MIN_POSITIVE)
        );
        for (what, ours, bare) in [("ack", figures.ack, floor.ack), ("fan-out", figures.fanout, floor.fanout)] {
            for (i, q) in ["p50", "p99"].iter().enumerate() {
                println!(
                    "  {what} {q} {:.3} ms against {:.3} ms: {:.2}x",
                    ms(ours[i]),
                    ms(bare[i]),
                    ms(ours[i]) / ms(bare[i]).max(1e-9)
                );
            }
        }
    }
    drop(nodes);
    drop(database);
    Ok(())
}

/// Runs the clients against `target` for the measured time and prints what they saw (and, for a server with a
/// pid or an address here, its CPU time and its stages).
async fn measure(
    target: Target,
    args: &Arc<Args>,
    pid: Option<u32>,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<Figures> {
    let barrier = Arc::new(Barrier::new(args.clients + 1));
    let tasks: Vec<_> =
        (0..args.clients).map(|i| tokio::spawn(edit(target.clone(), i, args.clone(), barrier.clone()))).collect();
    barrier.wait().await;
    let stages_before = server_histograms(metrics_addr).await;
    let cpu_before = pid.map(process_usage).transpose()?;
    let own_before = process_usage(std::process::id())?.0;
    let started = Instant::now();
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(task.await??);
    }
    let elapsed = started.elapsed();
    let cpu_after = pid.map(process_usage).transpose()?;
    let stages_after = server_histograms(metrics_addr).await;
    let own = process_usage(std::process::id())?.0 - own_before;

    let mut acks: Vec<Duration> = reports.iter().flat_map(|r| r.ack_latencies.iter().copied()).collect();
    acks.sort();
    let committed = acks.len();
    let sent: HashMap<(usize, Revision), Instant> =
        reports.iter().flat_map(|r| r.sent.iter().map(|&(d, rev, at)| ((d, rev), at))).collect();
    let mut fanout: Vec<Duration> = reports
        .iter()
        .flat_map(|r| r.received.iter())
        .filter_map(|(d, rev, at)| sent.get(&(*d, *rev)).map(|s| at.saturating_duration_since(*s)))
        .collect();
    fanout.sort();
    let figures = Figures {
        ops_per_s: committed as f64 / elapsed.as_secs_f64(),
        ack: [percentile(&acks, 0.5), percentile(&acks, 0.99)],
        fanout: [percentile(&fanout, 0.5), percentile(&fanout, 0.99)],
    };
    println!("committed ops/s: {:.0} ({committed} acknowledged in {:.1} s)", figures.ops_per_s, elapsed.as_secs_f64());
    println!(
        "ack latency: p50 {:.3} ms, p99 {:.3} ms",
        figures.ack[0].as_secs_f64() * 1e3,
        figures.ack[1].as_secs_f64() * 1e3
    );
    println!(
        "fan-out latency: p50 {:.3} ms, p99 {:.3} ms ({} deliveries)",
        figures.fanout[0].as_secs_f64() * 1e3,
        figures.fanout[1].as_secs_f64() * 1e3,
        fanout.len()
    );
    if let (Some((cpu0, _, _)), Some((cpu1, peak, _))) = (cpu_before, cpu_after) {
        let per_op = (cpu1 - cpu0).as_secs_f64() / committed.max(1) as f64;
        println!(
            "server CPU: {:.2} s, {:.1} µs per op; peak RSS {:.1} MB",
            (cpu1 - cpu0).as_secs_f64(),
            per_op * 1e6,
            peak as f64 / 1024.0
        );
    }
    println!(
        "load generator CPU: {:.2} s, {:.1} µs per op",
        own.as_secs_f64(),
        own.as_secs_f64() * 1e6 / committed.max(1) as f64
    );
    let stages: Vec<_> = STAGES
        .iter()
        .filter_map(|(name, what)| {
            let after = stages_after.get(*name)?;
            Some((what, after.since(&stages_before.get(*name).cloned().unwrap_or_default())))
        })
        .collect();
    if !stages.is_empty() {
        println!("inside the server (its /metrics over the run; quantiles are bucket upper bounds):");
    }
    for (what, h) in stages {
        println!(
            "  {what:<42} mean {:>8.3} ms, p50 <= {:>6.3} ms, p99 <= {:>6.3} ms ({} observed)",
            h.sum / h.count.max(1) as f64 * 1e3,
            h.quantile(0.5) * 1e3,
            h.quantile(0.99) * 1e3,
            h.count
        );
    }
    Ok(figures)
}
