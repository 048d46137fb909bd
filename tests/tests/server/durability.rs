//! Durability through the real binary: SIGKILL in the middle of a burst, restart on the same data directory,
//! every acknowledged operation is there, and the clients resume and converge with nothing lost, with SQLite and
//! with PostgreSQL. Also SIGTERM.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use codecollab_protocol::TextOperation;
use codecollab_server::store::postgres::ScratchDatabase;
use codecollab_tests::editor::{self, Editor};
use codecollab_tests::harness::{ServerProcess, TempDir};
use codecollab_tests::random::Rng;

/// Inserts `token` between two tokens at random: inserts only and never inside another token, so every token
/// ever typed must appear intact, exactly once.
pub fn insert_token(rng: &mut Rng, editor: &Editor, token: &str) -> TextOperation {
    let len = editor.text.len_chars();
    let boundaries: Vec<usize> = std::iter::once(0)
        .chain(editor.text.chars().enumerate().filter(|(_, c)| *c == '>').map(|(i, _)| i + 1))
        .collect();
    let at = *rng.pick(&boundaries);
    TextOperation::replace(len, at, at, token).expect("in bounds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_nothing_acknowledged_and_clients_converge() {
    let data = TempDir::new("sigkill");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server starts");
    let restart = |killed: SocketAddr| ServerProcess::spawn(&killed.to_string(), data.path(), &[]);
    sigkill_mid_burst(server, restart).await;
    let sqlite = data.path().join(codecollab_server::store::sqlite::DATABASE_FILE);
    assert!(sqlite.exists(), "SQLite holds the data when no database URL is given");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_on_postgresql_loses_nothing_acknowledged_and_clients_converge() {
    let database = ScratchDatabase::create("sigkill").expect("PostgreSQL");
    let data = TempDir::new("sigkill-pg");
    let flags = ["--database-url", database.url()];
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &flags).expect("server starts");
    let restart = |killed: SocketAddr| ServerProcess::spawn(&killed.to_string(), data.path(), &flags);
    sigkill_mid_burst(server, restart).await;
    let sqlite = data.path().join(codecollab_server::store::sqlite::DATABASE_FILE);
    assert!(!sqlite.exists(), "everything is in PostgreSQL");
}

/// Two editors type on `server`; it is killed mid-burst, and they resume on the server `resume` gives (started
/// given the killed one's address): every acknowledged token is there, and every token typed ends up there once.
pub async fn sigkill_mid_burst(
    mut server: ServerProcess,
    resume: impl FnOnce(SocketAddr) -> anyhow::Result<ServerProcess>,
) {
    let url = server.url();
    let tokens = editor::create_session(&url, None, "host").await.expect("session");
    let mut editors = Vec::new();
    for i in 0..2 {
        editors
            .push(Editor::open(&url, &tokens.edit_token, &format!("typist{i}"), "burst.txt", "").await.expect("open"));
    }
    // Both type; the server is killed while they do. Each remembers which tokens were acknowledged: all of
    // them whenever it is fully synchronized.
    let kill_after = Duration::from_millis(400);
    let tasks: Vec<_> = editors
        .into_iter()
        .enumerate()
        .map(|(i, mut editor)| {
            tokio::spawn(async move {
                let mut rng = Rng::new(7 + i as u64);
                let mut typed = Vec::new();
                let mut acknowledged = 0;
                let started = tokio::time::Instant::now();
                // Type until well after the kill, going offline when the connection dies.
                while started.elapsed() < kill_after * 2 || typed.len() < 50 {
                    let token = format!("<{i}:{}>", typed.len());
                    let op = insert_token(&mut rng, &editor, &token);
                    editor.edit(op).await.expect("local edit");
                    typed.push(token);
                    while editor.pump(Duration::from_millis(1)).await.expect("pump") {}
                    if editor.ot.is_synchronized() {
                        acknowledged = typed.len();
                    }
                    if !editor.is_online() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                (editor, typed, acknowledged)
            })
        })
        .collect();
    tokio::time::sleep(kill_after).await;
    server.kill();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("typist"));
    }
    let acknowledged: Vec<String> = results.iter().flat_map(|(_, typed, n)| typed[..*n].to_vec()).collect();
    assert!(acknowledged.len() >= 10, "too few acknowledged before the kill to prove anything: {}", acknowledged.len());
    let server = resume(server.addr).expect("a server to resume on");
    let url = server.url();
    let within = Duration::from_secs(60);
    let (text, _) =
        editor::server_text_within(&url, &tokens.edit_token, "burst.txt", within).await.expect("text after the kill");
    for token in &acknowledged {
        assert!(text.contains(token.as_str()), "acknowledged {token} was lost");
    }
    // The clients resume: what was in flight or typed offline is resent, nothing twice.
    let mut editors = Vec::new();
    let mut all_typed = Vec::new();
    for (mut editor, typed, _) in results {
        editor.reconnect_within(&url, within).await.expect("resume");
        editor.flush().await.expect("flush");
        all_typed.extend(typed);
        editors.push(editor);
    }
    let text =
        codecollab_tests::fixtures::wire::assert_converged(&url, &tokens.edit_token, "burst.txt", &mut editors).await;
    let mut seen = HashSet::new();
    for token in &all_typed {
        assert_eq!(text.matches(token.as_str()).count(), 1, "{token} must appear exactly once");
        seen.insert(token);
    }
    assert_eq!(text.len(), all_typed.iter().map(String::len).sum::<usize>(), "nothing but the typed tokens");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_connections_with_a_close_code_and_exits_zero() {
    let data = TempDir::new("sigterm");
    let mut server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server starts");
    let url = server.url();
    let tokens = editor::create_session(&url, None, "host").await.expect("session");
    let mut editor = Editor::open(&url, &tokens.edit_token, "a", "f.txt", "x").await.expect("open");
    editor.edit(TextOperation::replace(1, 1, 1, "y").expect("op")).await.expect("edit");
    editor.flush().await.expect("flush");
    let status = tokio::task::spawn_blocking(move || {
        let status = server.signal_and_wait("TERM", Duration::from_secs(15));
        (status, server)
    });
    let close = editor.ws.as_mut().expect("online").expect_close().await.expect("close frame");
    assert_eq!(close.map(|(code, _)| code), Some(1001), "going away");
    let (status, server) = status.await.expect("join");
    assert!(status.expect("exits").success(), "exit status 0");
    drop(server);
    // And what was acknowledged is there after a restart.
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("restarts");
    let (text, _) = editor::server_text(&server.url(), &tokens.edit_token, "f.txt").await.expect("text");
    assert_eq!(text, "xy");
}
