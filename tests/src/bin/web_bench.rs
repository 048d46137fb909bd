//! Benchmarks of the web client in a real Chromium, against baselines measured in the same run:
//!
//! - what the session page downloads, gzipped as served (target under 250 KB);
//! - the time from navigation to an editable document, against the time the server's plain home page takes to
//!   load in the same browser;
//! - keystroke latency browser → Neovim (p50, p99) with 10 peers typing, against Neovim → Neovim measured at the
//!   same time in the same session.
//!
//! Run: `cargo run --release -p codecollab-tests --bin web_bench` (`-- --only load|latency`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use codecollab_protocol::TextOperation;
use codecollab_tests::bench::{row, row_alone};
use codecollab_tests::browser::{web_invite, Browser};
use codecollab_tests::editor::Editor;
use codecollab_tests::harness::{ServerProcess, TempDir};
use codecollab_tests::nvim::Nvim;
use serde_json::{json, Value};

/// Page loads measured (each in a fresh browser with an empty profile); the median is reported.
const LOADS: usize = 5;
/// Markers each typist types, one every [`INTERVAL`]; the first [`WARM_UP`] are left out. The browser types each
/// marker's keys [`KEY_DELAY_MS`] apart, as a fast typist would (33 keys/s); the latency is its last key's.
const MARKERS: u32 = 100;
const INTERVAL: Duration = Duration::from_millis(250);
const KEY_DELAY_MS: u64 = 30;
const WARM_UP: usize = 10;
/// Peers beside Ana (who measures), Ben (Neovim) and Bea (the browser): wire clients typing at the file's start.
const OTHERS: usize = 7;

/// Records, in the current buffer of a Neovim, the wall-clock time (ms) at which each marker `[<kind><n>]` first
/// appears in the text.
const RECORD_MARKERS: &str = "_G.cc_marks = {} \
    vim.api.nvim_buf_attach(0, false, { on_bytes = function(_, buf, _, srow, _, _, _, _, _, nrow) \
      local sec, usec = vim.uv.gettimeofday() \
      local now = sec * 1e3 + usec / 1e3 \
      for _, line in ipairs(vim.api.nvim_buf_get_lines(buf, srow, srow + nrow + 1, false)) do \
        for kind, k in line:gmatch('%[([bn])(%d+)%]') do \
          local key = kind .. k \
          if not _G.cc_marks[key] then _G.cc_marks[key] = now end \
        end \
      end \
    end })";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

/// The page's weight and the time to an editable document, against the home page's load.
fn load(invite: &str) -> anyhow::Result<()> {
    let web = web_invite(invite);
    let origin = web.split("/s/").next().context("a web invite")?.to_owned();
    let (mut ready, mut home, mut bytes) = (Vec::new(), Vec::new(), 0);
    let mut files = Value::Null;
    for _ in 0..LOADS {
        let mut browser = Browser::start()?;
        let loaded = browser.call("goto", json!({ "url": format!("{origin}/") }))?;
        home.push(loaded["load"].as_f64().context("the home page's load time")?);
        browser.call("goto", json!({ "url": web, "name": "loader" }))?;
        browser.wait_for("an editable document", Duration::from_secs(30), |b| {
            Ok(b.call("readyAt", json!({}))?["ms"].is_number())
        })?;
        ready.push(browser.call("readyAt", json!({}))?["ms"].as_f64().context("ms")?);
        let metrics = browser.call("metrics", json!({}))?;
        bytes = metrics["transferred"].as_u64().context("bytes")?;
        files = metrics["files"].clone();
    }
    for file in files.as_array().into_iter().flatten() {
        eprintln!(
            "  {:>7} B gzipped, {:>7} B: {}",
            file["encoded"],
            file["decoded"],
            file["name"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default()
        );
    }
    let (ready, home) = (median(ready), median(home));
    println!("web: the session page loads {:.1} KB gzipped (target under 250 KB)", bytes as f64 / 1024.0);
    println!(
        "web: navigation to an editable document {ready:.0} ms; the home page's load {home:.0} ms (medians of {LOADS})"
    );
    row_alone(
        "web client: what the session page loads, gzipped",
        &format!("{:.1} KB", bytes as f64 / 1024.0),
        "under 250 KB",
    );
    row(
        "web client: navigation to an editable document, against the home page's load",
        &format!("{ready:.0} ms"),
        &format!("{home:.0} ms"),
        ready / home,
        "-",
    );
    Ok(())
}

/// Keystroke latency browser → Neovim with 10 peers typing, against Neovim → Neovim at the same time.
fn latency(server: &str, invite: &str, ana: &mut Nvim) -> anyhow::Result<()> {
    let guest = TempDir::new("web-bench-ben");
    let mut ben = Nvim::join(invite, guest.path(), "ben")?;
    ben.command("edit doc.txt")?;
    ana.lua(RECORD_MARKERS, json!([]))?;
    ben.lua(RECORD_MARKERS, json!([]))?;

    // The other peers: wire clients each inserting a character at the file's start, 10 times a second.
    let token = invite.split_once('#').context("token")?.1.to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let others = {
        let (server, stop) = (server.to_owned(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for i in 0..OTHERS {
                    let (server, token, stop) = (server.clone(), token.clone(), stop.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut editor = Editor::open(&server, &token, &format!("peer{i}"), "doc.txt", "").await?;
                        let mut next = tokio::time::Instant::now();
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            if tokio::time::Instant::now() >= next {
                                let len = editor.text.len_chars();
                                editor.edit(TextOperation::replace(len, 0, 0, ".")?).await?;
                                next += Duration::from_millis(100);
                            }
                            editor.pump(Duration::from_millis(10)).await?;
                        }
                        Ok::<_, anyhow::Error>(())
                    }));
                }
                for task in tasks {
                    task.await??;
                }
                Ok(())
            })
        })
    };

    let mut browser = Browser::join(&web_invite(invite), "bea")?;
    browser.wait_for(
        "doc.txt",
        Duration::from_secs(30),
        |b| Ok(b.state(None)?.active.as_deref() == Some("doc.txt")),
    )?;
    browser.caret_to_end()?;
    browser.call("markKeys", json!({ "key": "]" }))?;
    ben.input("2G")?;
    std::thread::sleep(Duration::from_secs(1));

    // Both type a marker every 250 ms: the browser at the end of the file, Ben at the end of line 2.
    let interval = INTERVAL.as_millis() as u64;
    browser.send(
        "typeMarkers",
        json!({ "prefix": "[b", "suffix": "]", "count": MARKERS, "interval": interval, "keyDelay": KEY_DELAY_MS }),
    )?;
    let started = Instant::now();
    for k in 0..MARKERS {
        ben.input(&format!("A[n{k}]<Esc>"))?;
        let next = started + INTERVAL * (k + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    browser.recv().context("the browser typed")?;
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    others.join().map_err(|_| anyhow::anyhow!("the other peers panicked"))??;

    let typed: Vec<f64> = browser.call("marks", json!({}))?["marks"]
        .as_array()
        .context("marks")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let arrived: HashMap<String, f64> = serde_json::from_value(ana.lua("return _G.cc_marks", json!([]))?)?;
    let ben_typed: HashMap<String, f64> = serde_json::from_value(ben.lua("return _G.cc_marks", json!([]))?)?;
    let mut from_browser = Vec::new();
    let mut from_nvim = Vec::new();
    let mut missing = 0;
    for k in WARM_UP..MARKERS as usize {
        match (typed.get(k), arrived.get(&format!("b{k}"))) {
            (Some(t), Some(a)) => from_browser.push(a - t),
            _ => missing += 1,
        }
        match (ben_typed.get(&format!("n{k}")), arrived.get(&format!("n{k}"))) {
            (Some(t), Some(a)) => from_nvim.push(a - t),
            _ => missing += 1,
        }
    }
    anyhow::ensure!(missing == 0, "{missing} markers never arrived in Ana's Neovim");
    from_browser.sort_by(f64::total_cmp);
    from_nvim.sort_by(f64::total_cmp);
    let (b50, b99) = (percentile(&from_browser, 0.5), percentile(&from_browser, 0.99));
    let (n50, n99) = (percentile(&from_nvim, 0.5), percentile(&from_nvim, 0.99));
    println!(
        "web: keystroke browser → Neovim with 10 peers typing: p50 {b50:.2} ms, p99 {b99:.2} ms; Neovim → Neovim in \
         the same run: p50 {n50:.2} ms, p99 {n99:.2} ms ({} markers each)",
        from_browser.len()
    );
    let ms = |v: f64| format!("{v:.2} ms");
    row(
        "keystroke browser → Neovim, 10 peers typing, p50 (against Neovim → Neovim)",
        &ms(b50),
        &ms(n50),
        b50 / n50,
        "-",
    );
    row(
        "keystroke browser → Neovim, 10 peers typing, p99 (against Neovim → Neovim)",
        &ms(b99),
        &ms(n99),
        b99 / n99,
        "-",
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let data = TempDir::new("web-bench");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[])?;
    let host = TempDir::new("web-bench-host");
    let text: String = (0..200).map(|i| format!("line {i} of a shared file, some code-like text here\n")).collect();
    std::fs::write(host.path().join("doc.txt"), text)?;
    let (mut ana, invite) = Nvim::share(host.path(), &server.url(), "ana")?;
    ana.command("edit doc.txt")?;
    if only.as_deref().is_none_or(|o| o == "load") {
        load(&invite)?;
    }
    if only.as_deref().is_none_or(|o| o == "latency") {
        latency(&server.url(), &invite, &mut ana)?;
    }
    Ok(())
}
