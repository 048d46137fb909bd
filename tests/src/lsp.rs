//! A scripted editor: runs the real `codecollab-daemon` binary over stdio (LSP framing, JSON-RPC) and follows the
//! editor protocol the way a plugin must (two counters per buffer, stale daemon edits dropped, the empty-edit
//! resend), with its own position arithmetic, independent of the daemon's.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::harness::binary;

/// The position encodings the protocol supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
    Utf32,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16 => "utf-16",
            Encoding::Utf32 => "utf-32",
        }
    }

    fn units(self, c: char) -> usize {
        match self {
            Encoding::Utf8 => c.len_utf8(),
            Encoding::Utf16 => c.len_utf16(),
            Encoding::Utf32 => 1,
        }
    }
}

/// Char index of LSP `(line, character)` in `chars` (lines end at `\n`, `\r\n` or `\r`).
pub fn to_index(chars: &[char], line: u64, character: u64, encoding: Encoding) -> anyhow::Result<usize> {
    let mut index = 0;
    for _ in 0..line {
        loop {
            match chars.get(index) {
                None => bail!("line {line} past the end"),
                Some('\n') => {
                    index += 1;
                    break;
                }
                Some('\r') => {
                    index += if chars.get(index + 1) == Some(&'\n') { 2 } else { 1 };
                    break;
                }
                Some(_) => index += 1,
            }
        }
    }
    let mut units = 0u64;
    while units < character {
        match chars.get(index) {
            None | Some('\n') | Some('\r') => break,
            Some(c) => {
                units += encoding.units(*c) as u64;
                index += 1;
            }
        }
    }
    Ok(index)
}

/// LSP position of char `index`.
pub fn to_position(chars: &[char], index: usize, encoding: Encoding) -> (u64, u64) {
    let (mut line, mut start) = (0u64, 0usize);
    for i in 0..index {
        // A line ends after `\n`, or after a `\r` not followed by `\n`.
        let ends_line = chars[i] == '\n' || (chars[i] == '\r' && chars.get(i + 1) != Some(&'\n'));
        if ends_line {
            line += 1;
            start = i + 1;
        }
    }
    let character = chars[start..index].iter().map(|c| encoding.units(*c) as u64).sum();
    (line, character)
}

fn range_json(chars: &[char], start: usize, end: usize, encoding: Encoding) -> Value {
    let (sl, sc) = to_position(chars, start, encoding);
    let (el, ec) = to_position(chars, end, encoding);
    json!({"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}})
}

/// Applies LSP changes (in order) to `chars`.
pub fn apply_changes(chars: &mut Vec<char>, changes: &[Value], encoding: Encoding) -> anyhow::Result<()> {
    let mut working = chars.clone();
    for change in changes {
        let r = &change["range"];
        let start = to_index(
            &working,
            r["start"]["line"].as_u64().context("line")?,
            r["start"]["character"].as_u64().context("character")?,
            encoding,
        )?;
        let end = to_index(
            &working,
            r["end"]["line"].as_u64().context("line")?,
            r["end"]["character"].as_u64().context("character")?,
            encoding,
        )?;
        anyhow::ensure!(start <= end, "reversed range");
        let text: Vec<char> = change["text"].as_str().context("text")?.chars().collect();
        working.splice(start..end, text);
    }
    *chars = working;
    Ok(())
}

/// One open buffer with the protocol's two counters.
#[derive(Debug, Clone)]
pub struct Buffer {
    pub text: Vec<char>,
    pub sent: u64,
    pub applied: u64,
}

impl Buffer {
    pub fn string(&self) -> String {
        self.text.iter().collect()
    }
}

/// Counters of what the editor saw, to prove the paths under test were taken.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub applied: u64,
    pub stale_dropped: u64,
    pub refused: u64,
}

pub struct ScriptedEditor {
    child: Child,
    stdin: ChildStdin,
    incoming: mpsc::UnboundedReceiver<Value>,
    next_id: u64,
    pub encoding: Encoding,
    pub buffers: HashMap<String, Buffer>,
    pub states: Vec<String>,
    pub cursors: HashMap<String, Value>,
    pub peers: Value,
    pub messages: Vec<String>,
    /// `collab/approval` notifications received (files that run by themselves, waiting for a yes).
    pub approvals: Vec<Value>,
    /// `collab/files` notifications received (files created, renamed or deleted by the session), in order.
    pub files: Vec<Value>,
    /// `$/progress` values received (begin, report, end), in order.
    pub progress: Vec<Value>,
    /// Notifications that arrived while waiting for a response.
    backlog: VecDeque<Value>,
    /// Fraction of applicable daemon edits to refuse (as VS Code's applyEdit sometimes does).
    pub refuse_rate: f64,
    rng: crate::random::Rng,
    pub stats: Stats,
}

impl std::fmt::Debug for ScriptedEditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedEditor").field("encoding", &self.encoding).finish()
    }
}

impl ScriptedEditor {
    /// Starts the daemon and initializes it, offering only `encoding`.
    pub async fn start(encoding: Encoding, env: &[(&str, &str)]) -> anyhow::Result<ScriptedEditor> {
        Self::start_with(encoding, env, json!({})).await
    }

    /// [`ScriptedEditor::start`] with `initializationOptions`.
    pub async fn start_with(
        encoding: Encoding,
        env: &[(&str, &str)],
        initialization_options: Value,
    ) -> anyhow::Result<ScriptedEditor> {
        let mut command = Command::new(binary("codecollab-daemon", "codecollab-daemon"));
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(daemon_log()?).kill_on_drop(true);
        // Warnings only, unless a run asks for more (`CODECOLLAB_TEST_DAEMON_LOG=debug` to diagnose a failure).
        command.env("CODECOLLAB_LOG", std::env::var("CODECOLLAB_TEST_DAEMON_LOG").unwrap_or_else(|_| "warn".into()));
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().context("starting codecollab-daemon")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (sender, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(value) = line.strip_prefix("Content-Length: ") {
                        length = value.parse::<usize>().ok();
                    }
                }
                let Some(length) = length else { return };
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).await.is_err() {
                    return;
                }
                match serde_json::from_slice::<Value>(&body) {
                    Ok(value) => {
                        if sender.send(value).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let mut editor = ScriptedEditor {
            child,
            stdin,
            incoming,
            next_id: 1,
            encoding,
            buffers: HashMap::new(),
            states: Vec::new(),
            cursors: HashMap::new(),
            peers: Value::Null,
            messages: Vec::new(),
            approvals: Vec::new(),
            files: Vec::new(),
            progress: Vec::new(),
            backlog: VecDeque::new(),
            refuse_rate: 0.0,
            rng: crate::random::Rng::new(7),
            stats: Stats::default(),
        };
        let result = editor
            .request("initialize", json!({"processId": null, "rootUri": null, "initializationOptions": initialization_options, "capabilities": {"general": {"positionEncodings": [encoding.name()]}}}))
            .await?;
        let negotiated = result["capabilities"]["positionEncoding"].as_str().unwrap_or("utf-16");
        anyhow::ensure!(negotiated == encoding.name(), "the daemon chose {negotiated}, not {}", encoding.name());
        editor.notify("initialized", json!({})).await?;
        Ok(editor)
    }

    pub fn seed(&mut self, seed: u64) {
        self.rng = crate::random::Rng::new(seed);
    }

    /// Sends one message, framed, in one write.
    pub async fn send_raw(&mut self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        let body = serde_json::to_vec(value)?;
        let mut frame = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        frame.extend_from_slice(&body);
        self.send_bytes(&frame).await
    }

    /// Writes bytes to the daemon's stdin as they are (for tests of broken framing).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stdin.write_all(bytes).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub async fn notify(&mut self, method: &str, params: impl serde::Serialize) -> anyhow::Result<()> {
        #[derive(serde::Serialize)]
        struct Notification<'a, P> {
            jsonrpc: &'static str,
            method: &'a str,
            params: P,
        }
        self.send_raw(&Notification { jsonrpc: "2.0", method, params }).await
    }

    /// Messages of `method` that came while a request waited for its answer, not handled yet (they are, on the
    /// next `pump` or `drain`).
    pub fn waiting(&self, method: &str) -> usize {
        self.backlog.iter().filter(|m| m.get("method") == Some(&json!(method))).count()
    }

    /// Sends a request and waits for its response (keeping the messages that come meanwhile, in order, for the
    /// next `pump` or `drain`). A JSON-RPC error is `Err`.
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let message = tokio::time::timeout_at(deadline, self.incoming.recv())
                .await
                .map_err(|_| anyhow!("no response to {method}"))?
                .ok_or_else(|| anyhow!("the daemon exited"))?;
            if message.get("id") == Some(&json!(id)) && message.get("method").is_none() {
                if let Some(error) = message.get("error") {
                    bail!("{method} failed: {error}");
                }
                return Ok(message["result"].clone());
            }
            // A request from the daemon is answered at once, as an editor does while it waits for an answer.
            if let (Some(request), Some(_)) = (message.get("id"), message.get("method")) {
                self.send_raw(&json!({"jsonrpc": "2.0", "id": request, "result": null})).await?;
                continue;
            }
            self.backlog.push_back(message);
        }
    }

    /// The next raw message from the daemon within `timeout`, not handled (for benchmarks that keep their own
    /// text).
    pub async fn next_message(&mut self, timeout: Duration) -> anyhow::Result<Option<Value>> {
        if let Some(message) = self.backlog.pop_front() {
            return Ok(Some(message));
        }
        match tokio::time::timeout(timeout, self.incoming.recv()).await {
            Err(_) => Ok(None),
            Ok(None) => bail!("the daemon exited"),
            Ok(Some(message)) => Ok(Some(message)),
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Handles one incoming message within `timeout`; false if none came.
    pub async fn pump(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let message = match self.backlog.pop_front() {
            Some(message) => message,
            None => match tokio::time::timeout(timeout, self.incoming.recv()).await {
                Err(_) => return Ok(false),
                Ok(None) => bail!("the daemon exited"),
                Ok(Some(message)) => message,
            },
        };
        self.handle(message).await?;
        Ok(true)
    }

    /// Handles everything that arrives until nothing has for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> anyhow::Result<()> {
        while self.pump(quiet).await? {}
        Ok(())
    }

    async fn handle(&mut self, message: Value) -> anyhow::Result<()> {
        let method = message["method"].as_str().unwrap_or_default().to_owned();
        let params = &message["params"];
        match method.as_str() {
            "collab/edit" => {
                let uri = params["uri"].as_str().context("uri")?.to_owned();
                let revision = params["revision"].as_u64().context("revision")?;
                let changes = params["changes"].as_array().context("changes")?.clone();
                let refuse = self.refuse_rate > 0.0 && self.rng.chance(self.refuse_rate);
                let encoding = self.encoding;
                let Some(buffer) = self.buffers.get_mut(&uri) else { return Ok(()) };
                if revision != buffer.sent {
                    self.stats.stale_dropped += 1;
                } else if refuse {
                    // Could not apply it: say so with an empty edit, which counts as an edit.
                    self.stats.refused += 1;
                    let params = json!({"uri": uri, "revision": buffer.applied, "changes": []});
                    buffer.sent += 1;
                    self.notify("collab/edit", params).await?;
                } else {
                    apply_changes(&mut buffer.text, &changes, encoding)?;
                    buffer.applied += 1;
                    self.stats.applied += 1;
                }
            }
            "collab/state" => self.states.push(params["state"].as_str().unwrap_or_default().to_owned()),
            "collab/cursors" => {
                self.cursors.insert(params["uri"].as_str().unwrap_or_default().to_owned(), params["cursors"].clone());
            }
            "collab/peers" => self.peers = params["peers"].clone(),
            "collab/approval" => self.approvals.push(params.clone()),
            "collab/files" => self.files.push(params.clone()),
            "$/progress" => self.progress.push(params["value"].clone()),
            "window/showMessage" | "window/logMessage" => {
                self.messages.push(params["message"].as_str().unwrap_or_default().to_owned())
            }
            _ => {
                // A request from the daemon (e.g. progress): answer it.
                if let Some(id) = message.get("id") {
                    if !method.is_empty() {
                        self.send_raw(&json!({"jsonrpc": "2.0", "id": id, "result": null})).await?;
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn open(&mut self, uri: &str, text: &str) -> anyhow::Result<()> {
        self.buffers.insert(uri.to_owned(), Buffer { text: text.chars().collect(), sent: 0, applied: 0 });
        self.notify("collab/open", json!({"uri": uri, "text": text})).await
    }

    /// The user replaces chars `start..end` with `text` (an undo step of its own: the edit says nothing of steps).
    pub async fn type_at(&mut self, uri: &str, start: usize, end: usize, text: &str) -> anyhow::Result<()> {
        self.edit(uri, start, end, text, None).await
    }

    /// [`ScriptedEditor::type_at`] saying where undo steps end: `new_step` starts one, else it joins the last.
    pub async fn type_in_step(
        &mut self,
        uri: &str,
        (start, end): (usize, usize),
        text: &str,
        new_step: bool,
    ) -> anyhow::Result<()> {
        self.edit(uri, start, end, text, Some(new_step)).await
    }

    async fn edit(
        &mut self,
        uri: &str,
        start: usize,
        end: usize,
        text: &str,
        stop: Option<bool>,
    ) -> anyhow::Result<()> {
        let encoding = self.encoding;
        let buffer = self.buffers.get_mut(uri).context("not open")?;
        let range = range_json(&buffer.text, start, end, encoding);
        buffer.text.splice(start..end, text.chars());
        let mut params = json!({"uri": uri, "revision": buffer.applied, "changes": [{"range": range, "text": text}]});
        if let Some(stop) = stop {
            params["undoStop"] = json!(stop);
        }
        buffer.sent += 1;
        self.notify("collab/edit", params).await
    }

    /// A random keystroke-like edit with non-ASCII text. Like a real editor, it never puts the caret between
    /// the `\r` and `\n` of a line break (LSP has no position there) and types `\n` rather than a lone `\r`.
    pub async fn type_randomly(&mut self, uri: &str) -> anyhow::Result<()> {
        let text = &self.buffers.get(uri).context("not open")?.text;
        let len = text.len();
        let inside_crlf = |i: usize| i > 0 && i < len && text[i - 1] == '\r' && text[i] == '\n';
        let mut start = self.rng.below(len + 1);
        if inside_crlf(start) {
            start -= 1;
        }
        let (mut end, typed) = if len > 0 && self.rng.chance(0.25) {
            ((start + self.rng.between(1, 3)).min(len), String::new())
        } else {
            (start, crate::random::nonempty_text(&mut self.rng, 2).replace("\r\n", "\n"))
        };
        if inside_crlf(end) {
            end += 1;
        }
        // Inserting `\n` right after a `\r`, or `\r` right before a `\n`, would merge two breaks into one.
        let before = start.checked_sub(1).map(|i| text[i]);
        let after = text.get(end).copied();
        let typed =
            if (before == Some('\r') && typed.starts_with('\n')) || (after == Some('\n') && typed.ends_with('\r')) {
                format!("x{typed}x")
            } else {
                typed
            };
        self.type_at(uri, start, end, &typed).await
    }

    /// Types a new token of `author` (see [`crate::tokens`]) between two tokens of `uri`; returns its name.
    pub async fn type_token(&mut self, uri: &str, author: char, counter: &mut u64) -> anyhow::Result<String> {
        let text = self.text(uri);
        let at = *self.rng.pick(&crate::tokens::boundaries(&text));
        let token = crate::tokens::token(author, counter, &mut self.rng);
        let name = token.trim_end().to_owned();
        self.type_at(uri, at, at, &token).await?;
        Ok(name)
    }

    /// Deletes one whole token of `uri`, chosen at random; returns its name, or `None` if there is none.
    pub async fn delete_token(&mut self, uri: &str) -> anyhow::Result<Option<String>> {
        let text = self.text(uri);
        let cuts = crate::tokens::boundaries(&text);
        if cuts.len() < 2 {
            return Ok(None);
        }
        let i = self.rng.below(cuts.len() - 1);
        let deleted: String = text.chars().skip(cuts[i]).take(cuts[i + 1] - cuts[i]).collect();
        let name = crate::tokens::parse(&deleted).and_then(|t| t.into_iter().next());
        self.type_at(uri, cuts[i], cuts[i + 1], "").await?;
        Ok(name)
    }

    pub fn text(&self, uri: &str) -> String {
        self.buffers.get(uri).map(Buffer::string).unwrap_or_default()
    }

    /// Waits until the connection state `state` has been reported.
    pub async fn wait_state(&mut self, state: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.states.last().map(String::as_str) != Some(state) {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "state {state:?} never came; saw {:?}",
                self.states
            );
            self.pump(Duration::from_millis(50)).await?;
        }
        Ok(())
    }

    /// Sends `exit` and waits for the process to end.
    pub async fn exit(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let _ = self.request("shutdown", Value::Null).await;
        self.notify("exit", Value::Null).await?;
        Ok(tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await??)
    }

    /// Closes stdin (the editor died) and waits for the process to end.
    pub async fn close_stdin(mut self) -> anyhow::Result<std::process::ExitStatus> {
        drop(self.stdin);
        Ok(tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await??)
    }
}

/// Where a daemon started here logs: the test's stderr, or with `CODECOLLAB_TEST_DAEMON_LOG_DIR` a file of its own
/// there, `daemon-<n>.log` numbered in the order the daemons start (to tell apart several daemons' debug logs).
fn daemon_log() -> anyhow::Result<Stdio> {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let Some(dir) = std::env::var_os("CODECOLLAB_TEST_DAEMON_LOG_DIR") else {
        return Ok(Stdio::inherit());
    };
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::path::Path::new(&dir).join(format!("daemon-{n}.log"));
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Stdio::from(file))
}
