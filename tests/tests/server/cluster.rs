//! Several server nodes on one PostgreSQL database (a scratch database per test): a node killed mid-burst is
//! taken over by another once its lease runs out, and a node paused past its lease can never commit again.

use std::collections::HashSet;
use std::time::Duration;

use codecollab_protocol::wire::{ErrorCode, ServerMsg};
use codecollab_server::store::postgres::ScratchDatabase;
use codecollab_tests::editor::{self, Editor};
use codecollab_tests::harness::{http_get, ServerProcess, TempDir};
use codecollab_tests::random::Rng;

use super::durability::{insert_token, sigkill_mid_burst};

/// A node on `database` with a lease of `lease`, and its own data directory (the cluster's token secret is in the
/// database: a token one node made is good on every other). Tests of a node's death take a short lease, to be
/// quick; the others keep the default, which no stall of a loaded machine outlasts.
fn node(database: &ScratchDatabase, lease: &str, extra: &[&str]) -> (ServerProcess, TempDir) {
    let data = TempDir::new("node");
    let mut flags = vec!["--database-url", database.url(), "--lease", lease];
    flags.extend(extra);
    (ServerProcess::spawn("127.0.0.1:0", data.path(), &flags).expect("a node starts"), data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_burst_is_taken_over_by_another_and_nothing_acknowledged_is_lost() {
    let database = ScratchDatabase::create("failover").expect("PostgreSQL");
    let ((a, _a_data), (b, _b_data)) = (node(&database, "1s", &[]), node(&database, "1s", &[]));
    // The typists are on a; a is killed; they resume on b, which takes the document once a's lease runs out.
    sigkill_mid_burst(a, |_| Ok(b)).await;
}

/// Types a token at a random boundary and returns it.
async fn type_token(editor: &mut Editor, rng: &mut Rng, token: String) -> String {
    let op = insert_token(rng, editor, &token);
    editor.edit(op).await.expect("local edit");
    token
}

fn signal(server: &ServerProcess, name: &str) {
    let status = std::process::Command::new("kill").args([format!("-{name}"), server.pid().to_string()]).status();
    assert!(status.expect("kill runs").success(), "kill -{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_never_commits_again_and_its_clients_resume_elsewhere() {
    let database = ScratchDatabase::create("fencing").expect("PostgreSQL");
    let ((a, _a_data), (b, _b_data)) = (node(&database, "2s", &[]), node(&database, "2s", &[]));
    let tokens = editor::create_session(&a.url(), None, "host").await.expect("session");
    let mut early = Editor::open(&a.url(), &tokens.edit_token, "early", "doc.txt", "").await.expect("open on a");
    let mut late = Editor::open(&a.url(), &tokens.edit_token, "late", "doc.txt", "").await.expect("open on a");
    let mut rng = Rng::new(21);
    let mut typed = Vec::new();
    for i in 0..5 {
        typed.push(type_token(&mut early, &mut rng, format!("<e{i}>")).await);
        early.flush().await.expect("acknowledged by a");
    }
    late.sync_to(early.ot.revision()).await.expect("late sees them");

    // a freezes (a VM paused, a long GC): its lease runs out. `late` moves to b, which takes the document over
    // and loads what a committed; `late` does not type yet, so the revision a would write next is still free.
    signal(&a, "STOP");
    late.disconnect();
    // (b first relays it to a, whose lease is still good, and a does not answer: `late` tries again, as a daemon
    // would, until b serves the session itself.)
    late.reconnect_within(&b.url(), Duration::from_secs(60)).await.expect("late resumes on b once a's lease ran out");
    // Meanwhile `early` typed into its connection to the frozen a.
    typed.push(type_token(&mut early, &mut rng, "<frozen>".into()).await);

    // a wakes up and gets `early`'s operation: its commit is fenced (another node holds the document now), so it
    // is not stored, and a closes `early`'s connection, which resumes on b and sends the operation again.
    signal(&a, "CONT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while early.is_online() {
        assert!(tokio::time::Instant::now() < deadline, "a kept serving a document it no longer holds");
        early.pump(Duration::from_millis(100)).await.expect("nothing refused");
    }
    assert!(!early.ot.is_synchronized(), "a never acknowledged the operation typed while it was frozen");
    early.reconnect_within(&b.url(), Duration::from_secs(60)).await.expect("early resumes on b");
    early.flush().await.expect("b stores it");
    for i in 0..5 {
        typed.push(type_token(&mut late, &mut rng, format!("<l{i}>")).await);
        late.flush().await.expect("acknowledged by b");
    }
    let mut editors = vec![early, late];
    let text =
        codecollab_tests::fixtures::wire::assert_converged(&b.url(), &tokens.edit_token, "doc.txt", &mut editors).await;
    let mut seen = HashSet::new();
    for token in &typed {
        assert_eq!(text.matches(token.as_str()).count(), 1, "{token} must appear exactly once in {text}");
        seen.insert(token);
    }
    assert_eq!(text.len(), typed.iter().map(String::len).sum::<usize>(), "nothing but the typed tokens");
    // The ops table: every revision once, none missing, as many as the revision everyone is at.
    let twice = "SELECT count(*) FROM (SELECT doc, revision FROM ops GROUP BY doc, revision HAVING count(*) > 1) t";
    assert_eq!(database.select_i64(twice).expect("reads"), 0, "no revision stored twice");
    let (rows, newest) = (
        database.select_i64("SELECT count(*) FROM ops").expect("reads"),
        database.select_i64("SELECT max(revision) FROM ops").expect("reads"),
    );
    assert_eq!((rows, newest as u64), (newest, editors[0].ot.revision()), "revisions 1 to the last, each once");
    let metric = |body: &str, name: &str| -> u64 {
        body.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or_default()
    };
    let (_, a_metrics) = http_get(a.addr, "/metrics").await.expect("a's metrics");
    let (_, b_metrics) = http_get(b.addr, "/metrics").await.expect("b's metrics");
    assert!(metric(&a_metrics, "codecollab_leases_lost_total ") >= 2, "the document and the session: {a_metrics}");
    assert!(metric(&b_metrics, "codecollab_leases_taken_total ") >= 1, "{b_metrics}");
    assert_eq!(metric(&b_metrics, "codecollab_leases_held "), 2, "the session and its document: {b_metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_whether_the_node_reaches_its_database() {
    let database = ScratchDatabase::create("health").expect("PostgreSQL");
    let (a, _data) = node(&database, "5s", &[]);
    assert_eq!(http_get(a.addr, "/healthz").await.expect("answers"), (200, "ok\n".to_owned()));
    // The database goes away (its connections ended, then renamed): the node says so.
    let (name, away) = (database.name().to_owned(), format!("{}_away", database.name()));
    let end = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
    database.admin(&[&end, &format!("ALTER DATABASE {name} RENAME TO {away}")]).expect("renamed");
    let (status, body) = http_get(a.addr, "/healthz").await.expect("answers");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("the store does not answer: "), "{body}");
    // And keeps saying so while it is away (the first failure found the connection closed; the next ones cannot
    // connect).
    let (status, body) = http_get(a.addr, "/healthz").await.expect("answers");
    assert!(status == 503 && body.contains("does not exist"), "{status} {body}");
    // It is back: so is the node, without a restart.
    database.admin(&[&format!("ALTER DATABASE {away} RENAME TO {name}")]).expect("renamed back");
    assert_eq!(http_get(a.addr, "/healthz").await.expect("answers"), (200, "ok\n".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_and_the_token_command_share_the_clusters_secret() {
    let database = ScratchDatabase::create("secret").expect("PostgreSQL");
    let (a, _a_data) = node(&database, "5s", &["--require-host-token"]);
    // Minted with the cluster's database and an empty data directory of its own.
    let elsewhere = TempDir::new("token-elsewhere");
    let output =
        std::process::Command::new(codecollab_tests::harness::binary("codecollab-server", "codecollab-server"))
            .args(["token", "--name", "ops", "--data-dir"])
            .arg(elsewhere.path())
            .args(["--database-url", database.url()])
            .output()
            .expect("token command runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let host_token = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    assert!(!elsewhere.path().join("secret").exists(), "no secret file: the cluster's is in the database");
    let tokens = editor::create_session(&a.url(), Some(&host_token), "ops").await.expect("a takes the host token");
    // A node started later, with a data directory of its own, takes the invite a made.
    let (b, _b_data) = node(&database, "5s", &[]);
    let mut on_b =
        Editor::open(&b.url(), &tokens.edit_token, "guest", "doc.txt", "hi").await.expect("b takes a's invite");
    on_b.flush().await.expect("flushed");
    let (text, _) = editor::server_text(&b.url(), &tokens.edit_token, "doc.txt").await.expect("b reads it");
    assert_eq!(text, "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_different_nodes_share_a_session_through_the_node_that_serves_it() {
    let database = ScratchDatabase::create("relay").expect("PostgreSQL");
    let ((a, _a_data), (b, _b_data)) = (node(&database, "5s", &[]), node(&database, "5s", &[]));
    let tokens = editor::create_session(&a.url(), None, "host").await.expect("session on a");
    // One editor through each node: b relays its client to a, which serves the session.
    let mut on_a = Editor::open(&a.url(), &tokens.edit_token, "ana", "doc.txt", "").await.expect("open on a");
    let mut on_b = Editor::open(&b.url(), &tokens.edit_token, "ben", "doc.txt", "").await.expect("open on b");
    let mut rng = Rng::new(5);
    let mut typed = Vec::new();
    for i in 0..20 {
        typed.push(type_token(&mut on_a, &mut rng, format!("<a{i}>")).await);
        typed.push(type_token(&mut on_b, &mut rng, format!("<b{i}>")).await);
        on_a.pump(Duration::from_millis(1)).await.expect("pump");
        on_b.pump(Duration::from_millis(1)).await.expect("pump");
    }
    on_a.flush().await.expect("a's acknowledged");
    on_b.flush().await.expect("b's acknowledged");
    let mut editors = vec![on_a, on_b];
    for server in [&a, &b] {
        let text = codecollab_tests::fixtures::wire::assert_converged(
            &server.url(),
            &tokens.edit_token,
            "doc.txt",
            &mut editors,
        )
        .await;
        for token in &typed {
            assert_eq!(text.matches(token.as_str()).count(), 1, "{token} must appear exactly once in {text}");
        }
    }
    // One session, one peer list: each node's clients see the others, whichever node they came through.
    let connect = codecollab_tests::client::Connect { token: Some(tokens.edit_token.clone()), ..Default::default() };
    let (_watcher, welcome) =
        editor::join(&b.url(), &connect, editor::random_client_id(), "watcher").await.expect("joins through b");
    let ServerMsg::Welcome { peers, .. } = welcome else { panic!("{welcome:?}") };
    let names: HashSet<String> = peers.iter().map(|p| p.name.clone()).collect();
    assert!(names.contains("ana") && names.contains("ben"), "{names:?}");
    let (_, b_metrics) = http_get(b.addr, "/metrics").await.expect("b's metrics");
    let relayed =
        b_metrics.lines().find_map(|l| l.strip_prefix("codecollab_relayed_messages_total ")?.parse::<u64>().ok());
    // At least ben's join and welcome, an operation and its acknowledgement (the editor composes what it types while
    // an operation is in flight, so how many depends on timing).
    assert!(relayed.is_some_and(|n| n >= 4), "b relayed ben's messages: {b_metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_under_load_loses_no_edit() {
    let database = ScratchDatabase::create("rolling").expect("PostgreSQL");
    let mut nodes: Vec<(ServerProcess, TempDir)> = (0..3).map(|_| node(&database, "5s", &[])).collect();
    let urls: Vec<String> = nodes.iter().map(|(n, _)| n.url()).collect();
    let tokens = editor::create_session(&urls[0], None, "host").await.expect("session");
    // One typist through each node. Whenever its connection ends it resumes through the next node, as a client
    // behind a load balancer would.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut typists = Vec::new();
    for i in 0..3 {
        let mut editor =
            Editor::open(&urls[i], &tokens.edit_token, &format!("t{i}"), "doc.txt", "").await.expect("open");
        let (urls, stop) = (urls.clone(), stop.clone());
        typists.push(tokio::spawn(async move {
            let mut rng = Rng::new(40 + i as u64);
            let (mut typed, mut resumed, mut next) = (Vec::new(), 0, i);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                typed.push(type_token(&mut editor, &mut rng, format!("<{i}:{}>", typed.len())).await);
                while editor.pump(Duration::from_millis(2)).await.expect("nothing refused") {}
                if !editor.is_online() {
                    next = (next + 1) % urls.len();
                    editor.reconnect_within(&urls[next], Duration::from_secs(60)).await.expect("resumes");
                    resumed += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (editor, typed, resumed)
        }));
    }
    // Each node in turn: stopped (SIGTERM: its clients are closed, it lets its sessions and documents go), then
    // started again on its address, while everyone types.
    for (server, data) in nodes.iter_mut() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let addr = server.addr;
        let stopped = tokio::task::block_in_place(|| server.signal_and_wait("TERM", Duration::from_secs(30)));
        assert!(stopped.expect("stops").success(), "a clean stop");
        let flags = ["--database-url", database.url(), "--lease", "5s"];
        *server = ServerProcess::spawn(&addr.to_string(), data.path(), &flags).expect("starts again");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut editors, mut typed, mut resumes) = (Vec::new(), Vec::new(), 0);
    for typist in typists {
        let (mut editor, tokens_typed, resumed) = typist.await.expect("typist");
        if !editor.is_online() {
            editor.reconnect_within(&urls[0], Duration::from_secs(60)).await.expect("resumes");
        }
        editor.flush().await.expect("every edit acknowledged");
        typed.extend(tokens_typed);
        resumes += resumed;
        editors.push(editor);
    }
    assert!(resumes >= 3, "every restart sent someone elsewhere: {resumes} resumes");
    let text =
        codecollab_tests::fixtures::wire::assert_converged(&urls[1], &tokens.edit_token, "doc.txt", &mut editors).await;
    for token in &typed {
        assert_eq!(text.matches(token.as_str()).count(), 1, "{token} must appear exactly once");
    }
    assert_eq!(text.len(), typed.iter().map(String::len).sum::<usize>(), "nothing but the typed tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_its_database_refuses_operations_with_a_typed_error_and_recovers_by_itself() {
    let database = ScratchDatabase::create("dbloss").expect("PostgreSQL");
    let (a, _data) = node(&database, "5s", &[]);
    let tokens = editor::create_session(&a.url(), None, "host").await.expect("session");
    let mut editor = Editor::open(&a.url(), &tokens.edit_token, "ana", "doc.txt", "").await.expect("open");
    let mut rng = Rng::new(3);
    let mut typed = vec![type_token(&mut editor, &mut rng, "<before>".into()).await];
    editor.flush().await.expect("stored");

    // The database goes away: the operation typed now is refused with storage_failure, and nothing else happens
    // to the connection.
    let (name, away) = (database.name().to_owned(), format!("{}_away", database.name()));
    let end = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
    database.admin(&[&end, &format!("ALTER DATABASE {name} RENAME TO {away}")]).expect("renamed");
    typed.push(type_token(&mut editor, &mut rng, "<during>".into()).await);
    let ws = editor.ws.as_mut().expect("online");
    let refused = ws
        .recv_until(|msg| match msg {
            ServerMsg::Error { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        })
        .await
        .expect("a refusal");
    assert_eq!(refused.0, ErrorCode::StorageFailure, "{refused:?}");
    assert!(editor.is_online(), "the connection stays");

    // It is back: the operation, sent again, is stored, and so is the next; the document's lease is still this
    // node's (nobody else could take it), so nothing had to move.
    database.admin(&[&format!("ALTER DATABASE {away} RENAME TO {name}")]).expect("renamed back");
    editor.reconnect_within(&a.url(), Duration::from_secs(60)).await.expect("sent again");
    editor.flush().await.expect("stored now");
    typed.push(type_token(&mut editor, &mut rng, "<after>".into()).await);
    editor.flush().await.expect("stored");
    let (text, _) = editor::server_text(&a.url(), &tokens.edit_token, "doc.txt").await.expect("text");
    for token in &typed {
        assert_eq!(text.matches(token.as_str()).count(), 1, "{token} in {text}");
    }
}

/// `invite` pointing at the node at `url` instead of the one it was made on.
fn invite_through(invite: &str, url: &str) -> String {
    let (_, token) = invite.split_once('#').expect("an invite ends in #TOKEN");
    format!("{url}#{token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_spread_over_three_nodes_type_through_the_serving_nodes_death_and_lose_nothing() {
    use codecollab_tests::fixtures::scripted::{join, share, until};
    use codecollab_tests::fixtures::{token_set, uri};
    use codecollab_tests::lsp::{Encoding, ScriptedEditor};

    let database = ScratchDatabase::create("daemons").expect("PostgreSQL");
    let mut nodes: Vec<(ServerProcess, TempDir)> = (0..3).map(|_| node(&database, "1s", &[])).collect();
    let urls: Vec<String> = nodes.iter().map(|(n, _)| n.url()).collect();
    let folders: Vec<TempDir> = ["ada", "bob", "cy"].iter().map(|n| TempDir::new(n)).collect();
    const FILES: [&str; 2] = ["notes.txt", "todo.txt"];
    for (i, file) in FILES.iter().enumerate() {
        std::fs::write(folders[0].path().join(file), format!("<s{i}>\n")).expect("writes");
    }
    let mut a = ScriptedEditor::start(Encoding::Utf16, &[]).await.expect("a");
    let mut b = ScriptedEditor::start(Encoding::Utf8, &[]).await.expect("b");
    let mut c = ScriptedEditor::start(Encoding::Utf32, &[]).await.expect("c");
    // ada shares through node 0, which then serves the session; bob and cy join through nodes 1 and 2.
    let (invite, _) = share(&mut a, folders[0].path(), &urls[0], "ada").await;
    join(&mut b, &invite_through(&invite, &urls[1]), folders[1].path(), "bob").await;
    join(&mut c, &invite_through(&invite, &urls[2]), folders[2].path(), "cy").await;
    // uris[file][daemon]
    let uris: Vec<Vec<String>> =
        FILES.iter().map(|f| folders.iter().map(|d| uri(&d.path().join(f))).collect()).collect();
    for (i, file_uris) in uris.iter().enumerate() {
        for (editor, uri) in [(&mut a, &file_uris[0]), (&mut b, &file_uris[1]), (&mut c, &file_uris[2])] {
            editor.open(uri, &format!("<s{i}>\n")).await.expect("opens");
        }
    }
    let mut expected: Vec<std::collections::BTreeSet<String>> =
        (0..FILES.len()).map(|i| std::collections::BTreeSet::from([format!("<s{i}>")])).collect();
    let (mut na, mut nb, mut nc, mut round) = (0, 0, 0, 0);
    // Each round, each daemon types a token into one of the files, in turn.
    let mut type_round = async |a: &mut ScriptedEditor, b: &mut ScriptedEditor, c: &mut ScriptedEditor| {
        let f = round % FILES.len();
        round += 1;
        expected[f].insert(a.type_token(&uris[f][0], 'a', &mut na).await.expect("a types"));
        expected[f].insert(b.type_token(&uris[f][1], 'b', &mut nb).await.expect("b types"));
        expected[(f + 1) % FILES.len()]
            .insert(c.type_token(&uris[(f + 1) % FILES.len()][2], 'c', &mut nc).await.expect("c types"));
        for editor in [&mut *a, &mut *b, &mut *c] {
            while editor.pump(Duration::ZERO).await.expect("the daemon runs") {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for _ in 0..20 {
        type_round(&mut a, &mut b, &mut c).await;
    }
    // The serving node dies mid-burst; everyone keeps typing. bob's and cy's nodes take the session over once its
    // lease runs out (their daemons reconnect by themselves); ada's node comes back after a while, and her daemon
    // with it.
    let through_b = invite_through(&invite, &urls[1]);
    let at_death = codecollab_tests::fixtures::scripted::server_revision(&through_b, "notes.txt").await;
    let dead = nodes[0].0.addr;
    let died = std::time::Instant::now();
    nodes[0].0.kill();
    // Typing until the cluster commits again (through node 1): the failover time, printed for the record.
    let mut rounds = 0;
    loop {
        type_round(&mut a, &mut b, &mut c).await;
        rounds += 1;
        if rounds % 5 == 0 {
            let state = codecollab_tests::editor::invite_server_state(&through_b, "notes.txt").await;
            if state.is_ok_and(|(_, revision)| revision > at_death) {
                break;
            }
        }
        assert!(died.elapsed() < Duration::from_secs(60), "the cluster never committed again");
    }
    eprintln!("failover: the cluster committed again {:?} after the serving node died", died.elapsed());
    for _ in 0..20 {
        type_round(&mut a, &mut b, &mut c).await;
    }
    let flags = ["--database-url", database.url(), "--lease", "1s"];
    nodes[0].0 = ServerProcess::spawn(&dead.to_string(), nodes[0].1.path(), &flags).expect("node 0 restarts");
    for _ in 0..20 {
        type_round(&mut a, &mut b, &mut c).await;
    }
    for (f, file) in FILES.iter().enumerate() {
        let texts = until(
            &mut [&mut a, &mut b, &mut c],
            &[&uris[f][0], &uris[f][1], &uris[f][2]],
            Duration::from_secs(120),
            "every daemon to hold every token",
            |texts| texts.iter().all(|t| holds_exactly(t, &expected[f])),
        )
        .await;
        eprintln!("{file}: every copy whole {:?} after the serving node died", died.elapsed());
        let server = codecollab_tests::fixtures::scripted::server_text(&through_b, file).await;
        assert_eq!(token_set(&server), expected[f], "the cluster's copy of {file}");
        assert!(texts.iter().all(|t| *t == server), "every copy of {file} equals the cluster's");
    }
}

/// Whether `text` holds exactly the tokens `expected`, none torn or twice.
fn holds_exactly(text: &str, expected: &std::collections::BTreeSet<String>) -> bool {
    codecollab_tests::tokens::parse(text).is_some_and(|found| {
        found.len() == expected.len() && found.iter().cloned().collect::<std::collections::BTreeSet<_>>() == *expected
    })
}
