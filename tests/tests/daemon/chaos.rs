//! The chaos test: four daemons with mixed position encodings, each behind its own fault-injection proxy, type
//! unique tokens into two shared files (and delete some they see) for a minute while the proxies delay, stall,
//! reset, refuse and cut at random, with a server history and retention so small that returning peers are often
//! beyond them and merge three ways with a snapshot. At the end every token typed and not deleted is in every copy
//! exactly once, and every copy equals the server's.
//!
//! Seeded: `CODECOLLAB_SEED=<n>` reruns the same choices (the seed is printed); `CODECOLLAB_CHAOS_SECONDS` sets
//! how long the faults go on (60 by default); with `CODECOLLAB_TEST_DAEMON_LOG_DIR` each daemon logs to a file of its
//! own there (`daemon-<n>.log`, n the peer) and the test says who deleted which token when.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use codecollab_server::config::Retention;
use codecollab_tests::harness::{TempDir, TestServer};
use codecollab_tests::lsp::{Encoding, ScriptedEditor};
use codecollab_tests::proxy::{FaultProxy, Mode};
use codecollab_tests::random::Rng;
use codecollab_tests::tokens;
use tokio::time::Instant;

use codecollab_tests::fixtures::scripted::until_explained;
use codecollab_tests::fixtures::scripted::{join, server_revision, server_text, share};
use codecollab_tests::fixtures::uri;
use codecollab_tests::fixtures::{metric, through, token_set};

const FILES: [&str; 2] = ["one.txt", "two.txt"];

/// Faults injected, by kind.
#[derive(Debug, Default)]
struct Faults {
    delays: u32,
    stalls: u32,
    long_stalls: u32,
    resets: u32,
    refusals: u32,
    cuts: u32,
}

/// Revisions a peer must miss to be beyond the history and the retention window (16 + 32), with room to spare for
/// the store's compaction, which follows the snapshots.
const BEYOND_RETENTION: u64 = 100;

/// Misbehaves at random on the proxies until `end`, then lets everything through. Returns what it did. The first
/// fault is a cut that lasts until its peer has missed [`BEYOND_RETENTION`] revisions of the session's first file
/// (asked of the server, in `invite`'s session), so the snapshot path is taken whatever the seed.
async fn misbehave(
    proxies: Vec<Arc<FaultProxy>>,
    mut rng: Rng,
    end: Instant,
    heartbeat: Duration,
    invite: String,
) -> Faults {
    let mut faults = Faults { cuts: 1, ..Faults::default() };
    let proxy = &proxies[rng.below(proxies.len())];
    let cut_at = server_revision(&invite, FILES[0]).await;
    proxy.cut();
    while server_revision(&invite, FILES[0]).await < cut_at + BEYOND_RETENTION {
        assert!(Instant::now() < end, "the others did not type past the retention window during the faults");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.set(Mode::Pass);
    while Instant::now() < end {
        let proxy = &proxies[rng.below(proxies.len())];
        let hold = Duration::from_millis(rng.between(100, 3_000) as u64);
        match rng.below(6) {
            0 => {
                faults.delays += 1;
                let latency = Duration::from_millis(rng.between(1, 150) as u64);
                let jitter = Duration::from_millis(rng.below(100) as u64);
                proxy.set(Mode::Delay { latency, jitter });
            }
            1 => {
                // Sometimes longer than two heartbeats, so only the heartbeat can tell.
                let hold = if rng.chance(0.5) { heartbeat * 3 } else { hold / 4 };
                faults.stalls += 1;
                if hold > heartbeat * 2 {
                    faults.long_stalls += 1;
                }
                proxy.set(Mode::Stall);
                tokio::time::sleep(hold).await;
                proxy.set(Mode::Pass);
                continue;
            }
            2 => {
                faults.resets += 1;
                proxy.reset();
            }
            3 => {
                faults.refusals += 1;
                proxy.set(Mode::Refuse);
            }
            4 => {
                // A cut of any length, up to several seconds (long enough for the others to type past the history
                // and the retention).
                faults.cuts += 1;
                proxy.cut();
                tokio::time::sleep(hold * 2).await;
                proxy.set(Mode::Pass);
                continue;
            }
            _ => proxy.set(Mode::Pass),
        }
        tokio::time::sleep(hold).await;
        proxy.set(Mode::Pass);
    }
    for proxy in &proxies {
        proxy.set(Mode::Pass);
    }
    faults
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_daemons_behind_misbehaving_networks_lose_nothing() {
    let seed = std::env::var("CODECOLLAB_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64 % 100_000)
    });
    let seconds = std::env::var("CODECOLLAB_CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    eprintln!("chaos: seed {seed} (rerun with CODECOLLAB_SEED={seed}), {seconds}s of faults");
    // With the daemons' logs in files of their own, say who deleted what when, to follow a deletion through them.
    let trace = std::env::var_os("CODECOLLAB_TEST_DAEMON_LOG_DIR").is_some();
    let heartbeat = Duration::from_millis(500);
    let server = TestServer::start(|c| {
        c.heartbeat = heartbeat;
        c.history = 16;
        c.snapshot_every = 8;
        c.retention = Retention { ops: 32, age: Duration::from_secs(3600) };
    })
    .await;
    let encodings = [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32, Encoding::Utf16];
    let dirs: Vec<TempDir> = (0..4).map(|i| TempDir::new(&format!("chaos{i}"))).collect();
    for file in FILES {
        std::fs::write(dirs[0].path().join(file), "").expect("writes");
    }
    let mut proxies = Vec::new();
    for i in 0..4 {
        proxies.push(Arc::new(FaultProxy::start(server.addr, seed + i).await.expect("proxy")));
    }
    let mut editors = Vec::new();
    for (i, encoding) in encodings.into_iter().enumerate() {
        let mut editor = ScriptedEditor::start(encoding, &[]).await.expect("daemon");
        editor.seed(seed * 10 + i as u64);
        editors.push(editor);
    }
    let (invite, _) = share(&mut editors[0], dirs[0].path(), &proxies[0].url(), "peer0").await;
    for i in 1..4 {
        let invite = through(&invite, &proxies[i]);
        join(&mut editors[i], &invite, dirs[i].path(), &format!("peer{i}")).await;
    }
    let uris: Vec<Vec<String>> = dirs.iter().map(|d| FILES.iter().map(|f| uri(&d.path().join(f))).collect()).collect();
    for (editor, uris) in editors.iter_mut().zip(&uris) {
        for uri in uris {
            editor.open(uri, "").await.expect("opens");
        }
    }

    let mut rng = Rng::new(seed);
    let end = Instant::now() + Duration::from_secs(seconds);
    // The invite names the host's proxy; the fault task asks the server itself.
    let direct = invite.replacen(&proxies[0].url(), &server.url(), 1);
    assert_ne!(direct, invite, "the invite names the host's proxy");
    let chaos = tokio::spawn(misbehave(proxies.clone(), Rng::new(seed ^ 0xC4A05), end, heartbeat, direct));
    let mut inserted: [BTreeSet<String>; 2] = Default::default();
    let mut deleted: [BTreeSet<String>; 2] = Default::default();
    let mut counters = [0u64; 4];
    while Instant::now() < end {
        let who = rng.below(4);
        let file = rng.below(2);
        let editor = &mut editors[who];
        let uri = &uris[who][file];
        if rng.chance(0.1) {
            if let Some(token) = editor.delete_token(uri).await.expect("deletes") {
                if trace {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    eprintln!("chaos: at {:.6} peer{who} deletes {token} in {}", now.as_secs_f64(), FILES[file]);
                }
                deleted[file].insert(token);
            }
        } else {
            let author = char::from(b'a' + who as u8);
            inserted[file].insert(editor.type_token(uri, author, &mut counters[who]).await.expect("types"));
        }
        for editor in editors.iter_mut() {
            while editor.pump(Duration::ZERO).await.expect("the daemon runs") {}
        }
        tokio::time::sleep(Duration::from_millis(rng.between(2, 12) as u64)).await;
    }
    let faults = chaos.await.expect("the fault task");
    let calm = Instant::now();

    for file in 0..2 {
        let expected: BTreeSet<String> = inserted[file].difference(&deleted[file]).cloned().collect();
        let file_uris: Vec<&str> = uris.iter().map(|u| u[file].as_str()).collect();
        let mut all: Vec<&mut ScriptedEditor> = editors.iter_mut().collect();
        let texts = until_explained(
            &mut all,
            &file_uris,
            Duration::from_secs(180),
            &format!("{} to converge (seed {seed})", FILES[file]),
            |texts| {
                texts.windows(2).all(|w| w[0] == w[1])
                    && tokens::parse(&texts[0]).is_some_and(|t| t.len() == expected.len())
            },
            |texts| explain(texts, &expected, &deleted[file]),
        )
        .await;
        assert_eq!(
            token_set(&texts[0]),
            expected,
            "{}: every token typed and not deleted, once (seed {seed})",
            FILES[file]
        );
        assert_eq!(
            server_text(&invite, FILES[file]).await,
            texts[0],
            "{}: the server's copy (seed {seed})",
            FILES[file]
        );
    }
    let converged = calm.elapsed();
    let typed: usize = inserted.iter().map(BTreeSet::len).sum();
    let removed: usize = deleted.iter().map(BTreeSet::len).sum();
    let reconnects: usize = editors.iter().map(|e| e.states.iter().filter(|s| *s == "reconnecting").count()).sum();
    eprintln!(
        "chaos: seed {seed}: {typed} tokens typed, {removed} deleted; faults {faults:?}; {reconnects} reconnects; \
         resumes replayed from memory {}, from the store {}, snapshot merges {}; converged {:.1}s after the last fault",
        metric(server.addr, "codecollab_replays_from_memory_total").await,
        metric(server.addr, "codecollab_replays_from_store_total").await,
        metric(server.addr, "codecollab_snapshot_resyncs_total").await,
        converged.as_secs_f64()
    );
    assert!(
        metric(server.addr, "codecollab_snapshot_resyncs_total").await > 0,
        "the snapshot path was taken (seed {seed})"
    );
}

/// What is wrong with `texts` (one copy per peer) against the tokens `expected` in them: for each copy, the
/// tokens missing and the tokens extra (with whether they were deleted), and whether the copies differ.
fn explain(texts: &[String], expected: &BTreeSet<String>, deleted: &BTreeSet<String>) -> String {
    let mut report = String::new();
    for (peer, text) in texts.iter().enumerate() {
        let Some(found) = tokens::parse(text) else {
            report += &format!("peer{peer}: a token is torn apart: {text:?}\n");
            continue;
        };
        let set: BTreeSet<String> = found.iter().cloned().collect();
        let twice = found.len() - set.len();
        let missing: Vec<&String> = expected.difference(&set).collect();
        let extra: Vec<String> = set
            .difference(expected)
            .map(|t| if deleted.contains(t) { format!("{t} (deleted)") } else { format!("{t} (never typed)") })
            .collect();
        report += &format!("peer{peer}: {} tokens, {twice} twice, missing {missing:?}, extra {extra:?}\n", found.len());
    }
    let same = texts.windows(2).all(|w| w[0] == w[1]);
    report += &format!("the copies are {}\n", if same { "equal" } else { "not all equal" });
    report
}
