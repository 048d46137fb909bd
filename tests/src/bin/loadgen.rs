//! The load generator: drives a real `codecollab-server` (started here on a temporary data directory, or one
//! given by `--url`) with editing clients and reports committed ops/s, acknowledgement and fan-out latency, the
//! server's CPU time per op and its peak memory.
//!
//! The clients run on one thread, so that the load generator takes one core of the machine it shares with the
//! server; the server it starts gets the others (`--workers`, one less than the CPUs).
//!
//! Examples:
//!   loadgen --clients 10 --docs 1 --seconds 10                 # closed loop: one op in flight per client
//!   loadgen --clients 10 --rate 10 --seconds 10                # each client types 10 ops/s
//!   loadgen --clients 10 --doc-size 10000000 --seconds 10      # a 10 MB document
//!   loadgen --idle 1000 --seconds 10 --heartbeat 1s            # idle connections: server memory

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use codecollab_protocol::wire::{ClientMsg, ServerMsg};
use codecollab_protocol::{Client, Revision, TextOperation};
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
    /// Worker threads of the server started here [default: one less than the CPUs, at least one: this load
    /// generator takes one core].
    #[arg(long)]
    server_workers: Option<usize>,
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
async fn edit(
    url: String,
    tokens: Arc<SessionTokens>,
    index: usize,
    args: Arc<Args>,
    barrier: Arc<Barrier>,
) -> anyhow::Result<ClientReport> {
    let doc_index = index % args.docs;
    let path = format!("doc{doc_index}.txt");
    let opened = open_doc(&url, &tokens.edit_token, 1000 + index as u64, &path, &initial_text(args.doc_size)).await;
    // Everyone reaches the barrier, even a client that failed to open, so a failure is reported, not a hang.
    barrier.wait().await;
    // A client needs the document's length to make valid operations, and the OT client to rebase its own on
    // others'; not the text itself (real clients' buffers are the daemon benchmark's business).
    let (mut ws, doc, revision, mut len) = opened?;
    let mut ot = Client::new(revision, 1);
    let mut rng = Rng::new(index as u64);
    let mut report = ClientReport::default();
    // When each in-flight sequence number was sent.
    let mut in_flight: HashMap<u64, Instant> = HashMap::new();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let period = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    let mut next_tick = started;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = match period {
            None => ot.is_synchronized(),
            Some(_) => now >= next_tick,
        };
        if due {
            if let Some(period) = period {
                next_tick += period;
            }
            let at = rng.below(len + 1);
            let op = TextOperation::replace(len, at, at, "x")?;
            len = op.target_len();
            if let Some(out) = ot.apply_local(op)? {
                in_flight.insert(out.seq, Instant::now());
                ws.send(&ClientMsg::Op { doc, seq: out.seq, base_revision: out.base_revision, op: out.op }).await?;
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
                if let Some(out) = ot.server_ack(seq, revision)?.send {
                    in_flight.insert(out.seq, Instant::now());
                    ws.send(&ClientMsg::Op { doc, seq: out.seq, base_revision: out.base_revision, op: out.op }).await?;
                }
            }
            ServerMsg::Op { revision, op, .. } => {
                report.received.push((doc_index, revision, arrived));
                len = ot.apply_server(revision, op)?.target_len();
            }
            ServerMsg::Error { code, message, .. } => bail!("client {index}: server refused: {code:?}: {message}"),
            _ => {}
        }
    }
    ws.close().await;
    Ok(report)
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let data = TempDir::new("loadgen");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = args.server_workers.unwrap_or(cpus.saturating_sub(1)).max(1).to_string();
    let (server, url) = match &args.url {
        Some(url) => (None, url.clone()),
        None => {
            let extra = [
                "--heartbeat",
                args.heartbeat.as_str(),
                "--durability",
                args.durability.as_str(),
                "--workers",
                workers.as_str(),
            ];
            let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &extra)?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let pid = args.pid.or(server.as_ref().map(ServerProcess::pid));
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
    let barrier = Arc::new(Barrier::new(args.clients + 1));
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| tokio::spawn(edit(url.clone(), tokens.clone(), i, args.clone(), barrier.clone())))
        .collect();
    barrier.wait().await;
    let cpu_before = pid.map(process_usage).transpose()?;
    let own_before = process_usage(std::process::id())?.0;
    let started = Instant::now();
    let mut reports = Vec::new();
    for task in tasks {
        reports.push(task.await??);
    }
    let elapsed = started.elapsed();
    let cpu_after = pid.map(process_usage).transpose()?;
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
    let mode = if args.rate == 0 { "closed loop".to_owned() } else { format!("{} ops/s per client", args.rate) };
    let server_config = match &args.url {
        Some(url) => format!("server at {url}"),
        None => format!("durability {}, {workers} server worker thread(s)", args.durability),
    };
    println!(
        "load: {} clients, {} document(s) of {} bytes, {mode}, {:.1} s, {server_config}",
        args.clients,
        args.docs,
        args.doc_size,
        elapsed.as_secs_f64(),
    );
    println!("committed ops/s: {:.0} ({committed} acknowledged)", committed as f64 / elapsed.as_secs_f64());
    println!(
        "ack latency: p50 {:.3} ms, p99 {:.3} ms",
        percentile(&acks, 0.5).as_secs_f64() * 1e3,
        percentile(&acks, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "fan-out latency: p50 {:.3} ms, p99 {:.3} ms ({} deliveries)",
        percentile(&fanout, 0.5).as_secs_f64() * 1e3,
        percentile(&fanout, 0.99).as_secs_f64() * 1e3,
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
        "load generator CPU: {:.2} s, {:.1} µs per op (the clients share the machine with the server)",
        own.as_secs_f64(),
        own.as_secs_f64() * 1e6 / committed.max(1) as f64
    );
    drop(server);
    Ok(())
}
