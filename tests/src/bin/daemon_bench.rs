//! Benchmarks of the whole editing path through real processes: scripted editors → codecollab-daemon →
//! codecollab-server → codecollab-daemon → scripted editor.
//!
//! - replay of the automerge-paper trace (259,778 edits) typed into one editor, until the other editor's text
//!   equals the trace's final text;
//! - keystroke latency editor → editor with 10 peers typing 10 edits/s each;
//! - the daemon's memory with a 10 MB file open;
//! - sharing and joining a tree of 5,000 files (50 MB), against a tree of 500 (5 MB) in the same run: times, and
//!   both daemons' peak memory; and the joiner's peak against one whose memory budget holds every text;
//! - a keystroke in a real Neovim in files of 10 KB, 1 MB and 10 MB, shared against plain, in the same run.
//!
//! Run: `cargo run --release -p codecollab-tests --bin daemon_bench` (`-- --only replay|latency|memory|tree|nvim`).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use codecollab_tests::harness::{proc_status_kb, ServerProcess, TempDir};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use codecollab_tests::nvim::Nvim;
use ropey::Rope;
use serde_json::{json, Value};

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// UTF-16 LSP position of char `offset` in `rope`.
#[derive(serde::Serialize)]
struct Position {
    line: usize,
    character: usize,
}

#[derive(serde::Serialize)]
struct Range {
    start: Position,
    end: Position,
}

#[derive(serde::Serialize)]
struct Change<'a> {
    range: Range,
    text: &'a str,
}

#[derive(serde::Serialize)]
struct Edit<'a> {
    uri: &'a str,
    revision: u64,
    changes: Vec<Change<'a>>,
}

fn lsp_position(rope: &Rope, offset: usize) -> Position {
    let line = rope.char_to_line(offset);
    let start = rope.line_to_char(line);
    let character = rope.char_to_utf16_cu(offset) - rope.char_to_utf16_cu(start);
    Position { line, character }
}

fn lsp_offset(rope: &Rope, position: &Value) -> usize {
    let line = position["line"].as_u64().unwrap_or(0) as usize;
    let mut units = position["character"].as_u64().unwrap_or(0) as usize;
    let mut offset = rope.line_to_char(line.min(rope.len_lines().saturating_sub(1)));
    for c in rope.line(line.min(rope.len_lines().saturating_sub(1))).chars() {
        if units == 0 || c == '\n' || c == '\r' {
            break;
        }
        units = units.saturating_sub(c.len_utf16());
        offset += 1;
    }
    offset
}

/// Applies a daemon `collab/edit` to `rope`.
fn apply(rope: &mut Rope, changes: &[Value]) {
    for change in changes {
        let start = lsp_offset(rope, &change["range"]["start"]);
        let end = lsp_offset(rope, &change["range"]["end"]);
        rope.remove(start..end);
        rope.insert(start, change["text"].as_str().unwrap_or_default());
    }
}

async fn pair(
    server: &str,
    file: &str,
    content: &str,
) -> anyhow::Result<(ScriptedEditor, ScriptedEditor, String, String, TempDir, TempDir)> {
    let (host, guest) = (TempDir::new("bench-host"), TempDir::new("bench-guest"));
    std::fs::write(host.path().join(file), content)?;
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await?;
    let mut b = ScriptedEditor::start(Encoding::Utf16, &[]).await?;
    let shared = a.request("collab/share", json!({"root": uri(host.path()), "server": server, "name": "a"})).await?;
    let invite = shared["invite"].as_str().context("invite")?.to_owned();
    b.request("collab/join", json!({"invite": invite, "root": uri(guest.path()), "name": "b"})).await?;
    let (ua, ub) = (uri(&host.path().join(file)), uri(&guest.path().join(file)));
    a.open(&ua, content).await?;
    b.open(&ub, content).await?;
    Ok((a, b, ua, ub, host, guest))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trace {
    end_content: String,
    txns: Vec<Txn>,
}

#[derive(serde::Deserialize)]
struct Txn {
    patches: Vec<(usize, usize, String)>,
}

async fn replay(server: &str) -> anyhow::Result<()> {
    let dir = std::env::var("CODECOLLAB_TRACES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/traces").into());
    let mut json = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(Path::new(&dir).join("automerge-paper.json.gz"))?)
        .read_to_string(&mut json)?;
    let trace: Trace = serde_json::from_str(&json)?;
    let edits: usize = trace.txns.iter().map(|t| t.patches.len()).sum();
    let (mut a, mut b, ua, ub, _h, _g) = pair(server, "paper.tex", "").await?;
    a.drain(Duration::from_millis(200)).await?;
    b.drain(Duration::from_millis(200)).await?;
    let target = trace.end_content.chars().count();
    let end_content = trace.end_content.clone();
    // The receiver applies what its daemon sends, concurrently with the typing.
    let receiver = tokio::spawn(async move {
        let (mut text, mut sent, mut applied, mut notifications) = (Rope::new(), 0u64, 0u64, 0u64);
        let _ = &mut sent;
        loop {
            let Some(message) = b.next_message(Duration::from_secs(30)).await? else {
                anyhow::bail!("the receiver stalled")
            };
            if message["method"] == "collab/edit" && message["params"]["uri"] == json!(ub) {
                if message["params"]["revision"].as_u64() == Some(sent) {
                    apply(&mut text, message["params"]["changes"].as_array().context("changes")?);
                    applied += 1;
                }
                notifications += 1;
                // The trace passes through the final length before its end: compare the text itself.
                if text.len_chars() == target && text == end_content.as_str() {
                    return Ok::<_, anyhow::Error>((text, Instant::now(), notifications, applied));
                }
            }
        }
    });
    let started = Instant::now();
    let mut text = Rope::new();
    for txn in &trace.txns {
        let mut changes = Vec::with_capacity(txn.patches.len());
        for (at, deleted, inserted) in &txn.patches {
            let range = Range { start: lsp_position(&text, *at), end: lsp_position(&text, at + deleted) };
            text.remove(*at..at + deleted);
            text.insert(*at, inserted);
            changes.push(Change { range, text: inserted });
        }
        a.notify("collab/edit", Edit { uri: &ua, revision: 0, changes }).await?;
    }
    let typed = started.elapsed();
    let (received, finished, notifications, _) = receiver.await??;
    let total = finished - started;
    anyhow::ensure!(received == trace.end_content.as_str(), "the receiving editor's text differs from the trace");
    println!("replay: automerge-paper, {edits} edits typed in {:.2} s; receiving editor identical after {:.2} s ({notifications} daemon edits)", typed.as_secs_f64(), total.as_secs_f64());
    println!(
        "replay: {:.0} edits/s end to end (target: the whole trace under 3 s)",
        edits as f64 / total.as_secs_f64()
    );
    drop(a);
    Ok(())
}

async fn latency(server: &str, peers: usize, rate: u32, seconds: u64) -> anyhow::Result<()> {
    let host = TempDir::new("lat-host");
    std::fs::write(host.path().join("l.txt"), "")?;
    let mut editors = Vec::new();
    let mut dirs = Vec::new();
    let mut first = ScriptedEditor::start(Encoding::Utf16, &[]).await?;
    let shared =
        first.request("collab/share", json!({"root": uri(host.path()), "server": server, "name": "p0"})).await?;
    let invite = shared["invite"].as_str().context("invite")?.to_owned();
    editors.push((first, uri(&host.path().join("l.txt"))));
    for i in 1..peers {
        let dir = TempDir::new("lat-peer");
        let mut editor = ScriptedEditor::start(Encoding::Utf16, &[]).await?;
        editor
            .request("collab/join", json!({"invite": invite, "root": uri(dir.path()), "name": format!("p{i}")}))
            .await?;
        editors.push((editor, uri(&dir.path().join("l.txt"))));
        dirs.push(dir);
    }
    for (editor, u) in editors.iter_mut() {
        editor.open(u, "").await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each peer types a unique marker at the start of its buffer every 1/rate s; every other editor records when
    // the marker arrives. Markers are inserted at 0 and never deleted, so each arrives in one piece.
    let start = Instant::now() + Duration::from_millis(200);
    let tasks: Vec<_> = editors
        .into_iter()
        .enumerate()
        .map(|(i, (mut editor, u))| {
            tokio::spawn(async move {
                let mut sent_at: Vec<(String, Instant)> = Vec::new();
                let mut seen: Vec<(String, Instant)> = Vec::new();
                // A dropped daemon edit is re-sent: count each marker's first arrival only.
                let mut arrived_once = std::collections::HashSet::new();
                let period = Duration::from_secs_f64(1.0 / f64::from(rate));
                let offset = period.mul_f64(i as f64 / 10.0);
                let mut next = start + offset;
                let end = start + Duration::from_secs(seconds);
                let mut k = 0;
                loop {
                    let now = Instant::now();
                    if now >= end + Duration::from_secs(1) {
                        break;
                    }
                    if now >= next && now < end {
                        let marker = format!("«{i}:{k}»");
                        k += 1;
                        editor.type_at(&u, 0, 0, &marker).await?;
                        sent_at.push((marker, Instant::now()));
                        next += period;
                    }
                    let wait = next.saturating_duration_since(Instant::now()).min(Duration::from_millis(20));
                    if let Some(message) = editor.next_message(wait).await? {
                        let arrived = Instant::now();
                        if message["method"] == "collab/edit" {
                            for change in message["params"]["changes"].as_array().into_iter().flatten() {
                                let text = change["text"].as_str().unwrap_or_default();
                                for part in text.split('»').filter(|p| p.contains('«')) {
                                    let marker = format!("{}»", &part[part.find('«').unwrap_or(0)..]);
                                    if arrived_once.insert(marker.clone()) {
                                        seen.push((marker, arrived));
                                    }
                                }
                            }
                            // Keep the counters right so later edits are applied, not dropped.
                            let buffer = editor.buffers.get_mut(&u).context("open")?;
                            if message["params"]["revision"].as_u64() == Some(buffer.sent) {
                                codecollab_tests::lsp::apply_changes(
                                    &mut buffer.text,
                                    message["params"]["changes"].as_array().context("changes")?,
                                    Encoding::Utf16,
                                )?;
                                buffer.applied += 1;
                            }
                        }
                    }
                }
                Ok::<_, anyhow::Error>((sent_at, seen))
            })
        })
        .collect();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut seen = Vec::new();
    for task in tasks {
        let (s, r) = task.await??;
        sent.extend(s);
        seen.extend(r);
    }
    // Steady state: markers sent after the first second. The first keystrokes after everyone joined are reported
    // on their own (a cold start: see the closing note of the daemon issue).
    let warm = start + Duration::from_secs(1);
    let mut steady = Vec::new();
    let mut cold = Vec::new();
    for (marker, at) in &seen {
        if let Some(sent_at) = sent.get(marker) {
            let latency = at.saturating_duration_since(*sent_at);
            if *sent_at >= warm {
                steady.push(latency)
            } else {
                cold.push(latency)
            }
        }
    }
    steady.sort();
    cold.sort();
    let pick = |v: &[Duration], p: f64| v.get(((v.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
    let expected = sent.len() * (peers - 1);
    println!(
        "latency: {peers} peers typing {rate} edits/s for {seconds} s, steady state (after the first second): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} deliveries)",
        pick(&steady, 0.5).as_secs_f64() * 1e3,
        pick(&steady, 0.99).as_secs_f64() * 1e3,
        steady.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        steady.len()
    );
    println!(
        "latency: first second (cold start): p50 {:.2} ms, max {:.2} ms ({} deliveries); all {} of {expected} deliveries arrived",
        pick(&cold, 0.5).as_secs_f64() * 1e3,
        cold.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        cold.len(),
        steady.len() + cold.len()
    );
    Ok(())
}

async fn memory(server: &str) -> anyhow::Result<()> {
    let size = 10_000_000;
    let content: String =
        (0..size).map(|i| if i % 100 == 99 { '\n' } else { (b'a' + (i % 26) as u8) as char }).collect();
    let (mut a, mut b, ua, _ub, _h, _g) = pair(server, "big.txt", &content).await?;
    a.drain(Duration::from_millis(500)).await?;
    b.drain(Duration::from_millis(500)).await?;
    // Some editing, so the buffer is not just the loaded text.
    for i in 0..200 {
        a.type_at(&ua, i * 1000, i * 1000, "x").await?;
    }
    a.drain(Duration::from_millis(500)).await?;
    b.drain(Duration::from_millis(500)).await?;
    for (who, editor) in [("sharing daemon (the file came from its editor)", &a), ("joining daemon", &b)] {
        let pid = editor.pid().context("pid")?;
        let (rss, peak) = (proc_status_kb(pid, "VmRSS:") * 1024, proc_status_kb(pid, "VmHWM:") * 1024);
        println!(
            "memory: {who}, {} MB file open: RSS {:.1} MB = {:.2}x the file (target under 3x); peak {:.1} MB",
            size / 1_000_000,
            rss as f64 / 1e6,
            rss as f64 / size as f64,
            peak as f64 / 1e6
        );
    }
    Ok(())
}

/// Per-keystroke time in a real Neovim (`ax<Esc>` at the end of the file, answered once Neovim is back in normal
/// mode and has run what the keystroke scheduled): plain Neovim and the same file shared, for 10 KB, 1 MB and
/// 10 MB files. Both Neovims run side by side and take turns, several rounds each, and each figure is the median
/// of its rounds: a noisy machine slows both alike, and one slow moment shifts one round, not the result.
fn nvim_keystrokes(server: &str) -> anyhow::Result<()> {
    const ROUNDS: usize = 5;
    // Keystrokes per round (CODECOLLAB_BENCH_KEYS for steadier figures on a noisy machine).
    let keys: u32 = std::env::var("CODECOLLAB_BENCH_KEYS").ok().and_then(|k| k.parse().ok()).unwrap_or(200);
    let median = |rounds: &[Keystroke], part: fn(&Keystroke) -> Duration| {
        let mut times: Vec<Duration> = rounds.iter().map(part).collect();
        times.sort();
        times[times.len() / 2]
    };
    let mut rows = Vec::new();
    for size in [10_000usize, 1_000_000, 10_000_000] {
        let dir = TempDir::new("nvim-bench");
        let text: String =
            (0..size).map(|i| if i % 100 == 99 { '\n' } else { (b'a' + (i % 26) as u8) as char }).collect();
        std::fs::write(dir.path().join("big.txt"), &text)?;
        let mut plain = Nvim::start(dir.path(), "{}", true)?;
        plain.command("edit big.txt")?;
        let (mut shared, _invite) = Nvim::share(dir.path(), server, "bench")?;
        shared.command("edit big.txt")?;
        let tracked = shared.lua("return next(require('codecollab.buffer').tracked) ~= nil", json!([]))?;
        anyhow::ensure!(tracked == json!(true), "the shared file's buffer is tracked");
        let (mut plain_rounds, mut shared_rounds) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            plain_rounds.push(keystrokes(&mut plain, keys)?);
            shared_rounds.push(keystrokes(&mut shared, keys)?);
        }
        let wall = |r: &Keystroke| r.wall;
        let cpu = |r: &Keystroke| r.cpu;
        rows.push((
            size,
            [median(&plain_rounds, wall), median(&shared_rounds, wall)],
            [median(&plain_rounds, cpu), median(&shared_rounds, cpu)],
        ));
    }
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let (small_wall, small_cpu) = (rows[0].1[1], rows[0].2[1]);
    for (size, [plain, shared], [plain_cpu, shared_cpu]) in rows {
        println!(
            "neovim keystroke, {:>6} KB file: plain {}, shared {} = {:.2}x plain (target under 1.5x), {:.2}x the \
             shared 10 KB file; Neovim's own CPU: plain {}, shared {} = {:.2}x plain, {:.2}x the shared 10 KB file",
            size / 1000,
            ms(plain),
            ms(shared),
            ratio(shared, plain),
            ratio(shared, small_wall),
            ms(plain_cpu),
            ms(shared_cpu),
            ratio(shared_cpu, plain_cpu),
            ratio(shared_cpu, small_cpu),
        );
        let file = format!("{} KB", size / 1000);
        let row = codecollab_tests::bench::row;
        row(
            &format!("Neovim keystroke, shared {file} file, against plain Neovim"),
            &ms(shared),
            &ms(plain),
            ratio(shared, plain),
            "under 1.5x",
        );
        row(
            &format!("Neovim's CPU per keystroke, shared {file} file, against plain Neovim"),
            &ms(shared_cpu),
            &ms(plain_cpu),
            ratio(shared_cpu, plain_cpu),
            "under 1.5x",
        );
        if size != 10_000 {
            row(
                &format!("Neovim keystroke, shared {file} file, against the shared 10 KB file"),
                &ms(shared),
                &ms(small_wall),
                ratio(shared, small_wall),
                "under 1.5x",
            );
            row(
                &format!("Neovim's CPU per keystroke, shared {file} file, against the shared 10 KB file"),
                &ms(shared_cpu),
                &ms(small_cpu),
                ratio(shared_cpu, small_cpu),
                "under 1.5x",
            );
        }
    }
    Ok(())
}

/// Types keys as typed ones and returns when Neovim has run them ('x'), without the driver polling Neovim (which
/// would take a core of this 2-core machine from what the keystroke sets going).
const TYPE: &str = "vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(..., true, false, true), 'tx', false)";

/// One measurement of `n` keystrokes: the mean wall-clock time of each, and the mean CPU time Neovim itself spent
/// on each (all its threads, from the scheduler's own accounting).
#[derive(Clone, Copy, Debug)]
struct Keystroke {
    wall: Duration,
    cpu: Duration,
}

/// The CPU time the process `pid` has run so far, all threads (nanoseconds, from `/proc/<pid>/task/*/schedstat`).
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        total += stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(Duration::from_nanos(total))
}

/// `n` keystrokes `ax<Esc>` at the end of the current buffer, each typed through [`TYPE`] (which returns once
/// Neovim has run the keys) and followed by a request Neovim answers only after what the keys scheduled has run.
fn keystrokes(nvim: &mut Nvim, n: u32) -> anyhow::Result<Keystroke> {
    nvim.input("G$")?;
    nvim.settle_input()?;
    let cpu_before = cpu_time(nvim.pid())?;
    let started = Instant::now();
    for _ in 0..n {
        nvim.lua(TYPE, json!(["ax<Esc>"]))?;
        nvim.lua("return 1", json!([]))?;
    }
    let wall = started.elapsed() / n;
    Ok(Keystroke { wall, cpu: cpu_time(nvim.pid())?.saturating_sub(cpu_before) / n })
}

/// Shares a folder of `files` files of about 10 KB (in 50 folders) from one daemon and joins it from another (with
/// `joiner_env`), each on a fresh server; returns (share time, join time, sharing daemon's peak, joining daemon's
/// peak, bytes).
async fn share_and_join(
    files: usize,
    joiner_env: &[(&str, &str)],
) -> anyhow::Result<(Duration, Duration, u64, u64, usize)> {
    let data = TempDir::new("tree-bench");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[])?;
    let (host, guest) = (TempDir::new("tree-host"), TempDir::new("tree-guest"));
    let mut bytes = 0;
    for i in 0..files {
        let dir = host.path().join(format!("module{}", i % 50));
        std::fs::create_dir_all(&dir)?;
        let line = format!("fn item_{i}() -> usize {{ {i} }} // some code that fills a line\n");
        let text = line.repeat(10_000 / line.len() + 1);
        bytes += text.len();
        std::fs::write(dir.join(format!("file{i}.rs")), text)?;
    }
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await?;
    let mut b = ScriptedEditor::start(Encoding::Utf16, joiner_env).await?;
    let started = Instant::now();
    let shared =
        a.request("collab/share", json!({"root": uri(host.path()), "server": server.url(), "name": "host"})).await?;
    let share_time = started.elapsed();
    let invite = shared["invite"].as_str().context("invite")?;
    let started = Instant::now();
    let joined =
        b.request("collab/join", json!({"invite": invite, "root": uri(guest.path()), "name": "guest"})).await?;
    let join_time = started.elapsed();
    anyhow::ensure!(joined["files"].as_array().map(Vec::len) == Some(files), "every file joined");
    let last = format!("module{}/file{}.rs", (files - 1) % 50, files - 1);
    anyhow::ensure!(std::fs::read(host.path().join(&last))? == std::fs::read(guest.path().join(&last))?);
    let peak = |e: &ScriptedEditor| e.pid().map_or(0, |pid| proc_status_kb(pid, "VmHWM:") * 1024);
    Ok((share_time, join_time, peak(&a), peak(&b), bytes))
}

async fn tree() -> anyhow::Result<()> {
    let (small_share, small_join, _, small_peak, small_bytes) = share_and_join(500, &[]).await?;
    let (share, join, host_peak, guest_peak, bytes) = share_and_join(5_000, &[]).await?;
    // The baseline in the same run: a joiner whose budget holds every text (none goes cold).
    let everything = [("CODECOLLAB_HOT_TEXT_BYTES", "1000000000000")];
    let (_, hot_join, _, hot_peak, _) = share_and_join(5_000, &everything).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "tree: 500 files ({:.1} MB): share {:.0} ms, join {:.0} ms, joining daemon's peak {:.1} MB",
        small_bytes as f64 / 1e6,
        ms(small_share),
        ms(small_join),
        small_peak as f64 / 1e6
    );
    println!(
        "tree: 5,000 files ({:.1} MB): share {:.0} ms ({:.1}x the 500), join {:.0} ms ({:.1}x the 500); peak memory: \
         sharing daemon {:.1} MB ({:.2}x the tree), joining daemon {:.1} MB ({:.2}x the tree)",
        bytes as f64 / 1e6,
        ms(share),
        ms(share) / ms(small_share),
        ms(join),
        ms(join) / ms(small_join),
        host_peak as f64 / 1e6,
        host_peak as f64 / bytes as f64,
        guest_peak as f64 / 1e6,
        guest_peak as f64 / bytes as f64
    );
    println!(
        "tree: 5,000 files, joiner holding every text (no budget): join {:.0} ms, peak {:.1} MB; the budget's \
         joiner peaks at {:.2}x that and joins in {:.2}x the time",
        ms(hot_join),
        hot_peak as f64 / 1e6,
        guest_peak as f64 / hot_peak as f64,
        ms(join) / ms(hot_join)
    );
    codecollab_tests::bench::row(
        "joining 5,000 files: joiner's peak memory, against no memory budget",
        &format!("{:.1} MB", guest_peak as f64 / 1e6),
        &format!("{:.1} MB", hot_peak as f64 / 1e6),
        guest_peak as f64 / hot_peak as f64,
        "-",
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    // The daemons Neovim starts log as a user's would (the daemon's default level): their stderr goes to Neovim's
    // LSP log, which the tests' debug level would make part of every keystroke's cost.
    if std::env::var_os("CODECOLLAB_TEST_DAEMON_LOG").is_none() {
        std::env::set_var("CODECOLLAB_TEST_DAEMON_LOG", "info");
    }
    let data = TempDir::new("daemon-bench");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[])?;
    let url = server.url();
    if only.as_deref().is_none_or(|o| o == "replay") {
        replay(&url).await?;
    }
    if only.as_deref().is_none_or(|o| o == "latency") {
        latency(&url, 10, 10, 10).await?;
    }
    if only.as_deref().is_none_or(|o| o == "memory") {
        memory(&url).await?;
    }
    if only.as_deref().is_none_or(|o| o == "tree") {
        tree().await?;
    }
    if only.as_deref().is_none_or(|o| o == "nvim") {
        nvim_keystrokes(&url)?;
    }
    Ok(())
}
