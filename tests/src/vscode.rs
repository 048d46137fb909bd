//! A real VS Code workbench (code-server in headless Chromium) with the CodeCollab extension installed from the
//! `.vsix` that `scripts/test` builds, driven through `editors/vscode/test/e2e/driver.js` (Playwright) over a pipe.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::driver::Driver;
use crate::harness::{binary, poll_until, TempDir};

fn extension_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../editors/vscode")
}

/// The packaged extension: `CODECOLLAB_VSIX`, else the one `scripts/test` builds.
pub fn vsix() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("CODECOLLAB_VSIX") {
        return Ok(PathBuf::from(path));
    }
    let path = extension_dir().join("codecollab.vsix");
    anyhow::ensure!(path.exists(), "{} is missing: run ./scripts/test (it packages the extension)", path.display());
    Ok(path)
}

/// Settings for a test workbench: the quiet ones, the user's name, the daemon just built, the server if given.
fn settings(server: Option<&str>, name: &str) -> Value {
    let mut settings = quiet_settings();
    settings["codecollab.name"] = json!(name);
    settings["codecollab.daemon.path"] = json!(binary("codecollab-daemon", "codecollab-daemon"));
    if let Some(server) = server {
        settings["codecollab.server"] = json!(server);
    }
    settings
}

/// What makes a headless test workbench predictable: nothing that types for the user (suggestions, auto-closing,
/// auto-indent) and nothing that reaches for the network; the extension's trace on, and no other CodeCollab setting.
fn quiet_settings() -> Value {
    json!({
        "codecollab.trace.server": "verbose",
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": false,
        "workbench.enableExperiments": false,
        "security.workspace.trust.enabled": false,
        "telemetry.telemetryLevel": "off",
        "extensions.autoCheckUpdates": false,
        "extensions.autoUpdate": false,
        "update.mode": "none",
        "files.autoSave": "off",
        "files.enableTrash": false,
        "files.insertFinalNewline": false,
        "files.trimTrailingWhitespace": false,
        "editor.quickSuggestions": { "other": false, "comments": false, "strings": false },
        "editor.suggestOnTriggerCharacters": false,
        "editor.wordBasedSuggestions": "off",
        "editor.acceptSuggestionOnEnter": "off",
        "editor.autoClosingBrackets": "never",
        "editor.autoClosingQuotes": "never",
        "editor.autoSurround": "never",
        "editor.autoIndent": "none",
        "editor.formatOnType": false,
        "editor.unicodeHighlight.ambiguousCharacters": false,
        "git.enabled": false,
    })
}

pub struct VsCode {
    /// Declared before `work`: dropped (code-server and Chromium stopped) before the folder goes.
    driver: Driver,
    /// The workbench's profile, logs and screenshots; kept when a test fails.
    work: Option<TempDir>,
    work_path: PathBuf,
    /// code-server's user data folder (settings, logs).
    user_data: PathBuf,
    folder: PathBuf,
}

impl std::fmt::Debug for VsCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VsCode({})", self.folder.display())
    }
}

impl VsCode {
    /// Starts code-server on `folder` with the extension, as user `name`, and opens its workbench in Chromium.
    pub fn start(folder: &Path, server: Option<&str>, name: &str) -> anyhow::Result<VsCode> {
        VsCode::start_with_daemon(folder, server, name, None)
    }

    /// [`VsCode::start`], with `daemon` as the `codecollab.daemon.path` setting instead of the one just built.
    pub fn start_with_daemon(
        folder: &Path,
        server: Option<&str>,
        name: &str,
        daemon: Option<&Path>,
    ) -> anyhow::Result<VsCode> {
        let work = TempDir::new("vscode");
        let mut settings = settings(server, name);
        if let Some(daemon) = daemon {
            settings["codecollab.daemon.path"] = json!(daemon);
        }
        let config = json!({ "work": work.path(), "folder": folder, "vsix": vsix()?, "settings": settings });
        let user_data = work.path().join("user-data");
        VsCode::launch(work, folder, config, user_data)
    }

    /// Starts code-server on `folder` as the user whose home is `home` would: with the extensions they installed
    /// and their settings (under `~/.local/share/code-server`), only the quiet-workbench settings added beneath
    /// theirs (no CodeCollab setting: the extension runs the daemon it bundles).
    pub fn start_as_user(folder: &Path, home: &Path) -> anyhow::Result<VsCode> {
        let work = TempDir::new("vscode");
        let config = json!({ "work": work.path(), "folder": folder, "home": home, "settings": quiet_settings() });
        VsCode::launch(work, folder, config, home.join(".local/share/code-server"))
    }

    fn launch(work: TempDir, folder: &Path, config: Value, user_data: PathBuf) -> anyhow::Result<VsCode> {
        let driver = Driver::spawn(&extension_dir().join("test/e2e/driver.js"), &config, "VS Code")?;
        let work_path = work.path().to_owned();
        let mut vscode = VsCode { driver, work: Some(work), work_path, user_data, folder: folder.to_owned() };
        vscode.recv().context("starting VS Code")?;
        Ok(vscode)
    }

    /// Sends one driver command without waiting for its answer (for typing in two editors at once).
    pub fn send(&mut self, op: &str, args: Value) -> anyhow::Result<()> {
        self.driver.send(op, args)
    }

    /// The answer to the oldest command sent.
    pub fn recv(&mut self) -> anyhow::Result<Value> {
        match self.driver.recv() {
            Ok(reply) => Ok(reply),
            Err(error) => bail!("{error}; {}", self.logs()),
        }
    }

    pub fn call(&mut self, op: &str, args: Value) -> anyhow::Result<Value> {
        self.send(op, args)?;
        self.recv().with_context(|| format!("driver op {op}"))
    }

    /// Saves the active editor (focus, Control+S) and waits until its tab is no longer dirty.
    pub fn save(&mut self) -> anyhow::Result<()> {
        self.call("save", json!({})).map(drop)
    }

    /// Runs a command from the command palette by its title.
    pub fn palette(&mut self, title: &str) -> anyhow::Result<()> {
        self.call("palette", json!({ "title": title })).map(drop)
    }

    /// Runs CodeCollab: Join Session from the palette with `invite`; returns the notification that says it joined.
    pub fn join_from_palette(&mut self, invite: &str) -> anyhow::Result<String> {
        self.palette("CodeCollab: Join Session")?;
        self.call("input", json!({ "text": invite, "title": "Join Session" }))?;
        self.notification("joined")
    }

    /// Waits for a notification matching the regular expression `pattern`; returns its text.
    pub fn notification(&mut self, pattern: &str) -> anyhow::Result<String> {
        let reply = self.call("notification", json!({ "pattern": pattern }))?;
        Ok(reply["text"].as_str().unwrap_or_default().to_owned())
    }

    /// Clicks the button `action` on the notification matching `pattern`; returns the notification's text.
    pub fn notification_action(&mut self, pattern: &str, action: &str) -> anyhow::Result<String> {
        let reply = self.call("notificationAction", json!({ "pattern": pattern, "action": action }))?;
        Ok(reply["text"].as_str().unwrap_or_default().to_owned())
    }

    /// Picks the row labelled `label` in the quick pick titled (in part) `title`.
    pub fn pick(&mut self, title: &str, label: &str) -> anyhow::Result<()> {
        self.call("pick", json!({ "title": title, "label": label })).map(drop)
    }

    /// Opens `name` (a file at the top of the folder) from the Explorer.
    pub fn open(&mut self, name: &str) -> anyhow::Result<()> {
        self.call("open", json!({ "name": name })).map(drop)
    }

    /// Waits until `check` holds, polling.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&mut VsCode) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let result = poll_until(what, timeout, Duration::from_millis(100), || check(self));
        result.map_err(|error| {
            let _ = self.call("screenshot", json!({ "file": self.work_path.join("timeout.png") }));
            error.context(self.logs())
        })
    }

    /// The names beside remote carets in the visible editors.
    pub fn cursor_names(&mut self) -> anyhow::Result<Vec<String>> {
        let reply = self.call("decorations", json!({}))?;
        Ok(reply["names"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect())
    }

    /// The lines the active editor shows (all of a short file), joined with `\n`.
    pub fn visible_text(&mut self) -> anyhow::Result<String> {
        Ok(self.call("visibleText", json!({}))?["text"].as_str().unwrap_or_default().to_owned())
    }

    /// The label of the active editor tab (the file name, then its folder).
    /// The labels of every editor tab, in every group, in order.
    pub fn tabs(&mut self) -> anyhow::Result<Vec<String>> {
        let reply = self.call("tabs", json!({}))?;
        Ok(reply["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(str::to_owned)).collect())
    }

    pub fn active_tab(&mut self) -> anyhow::Result<String> {
        Ok(self.call("activeTab", json!({}))?["label"].as_str().unwrap_or_default().to_owned())
    }

    /// Kills (SIGKILL) the codecollab-daemon processes this workbench started; returns how many.
    pub fn kill_daemons(&mut self) -> anyhow::Result<usize> {
        let pgid = self.call("processGroup", json!({}))?["pgid"].as_u64().context("pgid")?;
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'.
            let Some((head, tail)) = stat.rsplit_once(')') else { continue };
            let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
            let fields: Vec<&str> = tail.split_whitespace().collect();
            if comm.starts_with("codecollab-daem") && fields.get(2).and_then(|g| g.parse::<u64>().ok()) == Some(pgid) {
                let pid = entry.file_name().to_string_lossy().into_owned();
                Command::new("kill").args(["-9", &pid]).status()?;
                killed += 1;
            }
        }
        Ok(killed)
    }

    /// The workbench's own directory (its user data, settings and logs).
    pub fn work_path(&self) -> &Path {
        &self.work_path
    }

    /// The active editor's caret as VS Code's status bar shows it: (line, column), both 1-based.
    pub fn caret(&mut self) -> anyhow::Result<Option<(u64, u64)>> {
        let reply = self.call("caret", json!({}))?;
        Ok(reply["line"].as_u64().zip(reply["column"].as_u64()))
    }

    /// The CodeCollab status bar item's text.
    pub fn status(&mut self) -> anyhow::Result<String> {
        Ok(self.call("status", json!({}))?["text"].as_str().unwrap_or_default().trim().to_owned())
    }

    /// Where the logs of this workbench are, and the extension's output channel, for failure messages.
    /// What the extension wrote to its CodeCollab output channel so far.
    pub fn output_channel(&self) -> String {
        find_file(&self.user_data.join("logs"), "CodeCollab.log")
            .and_then(|channel| std::fs::read_to_string(channel).ok())
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut out = format!("work directory {}", self.work_path.display());
        let text = self.output_channel();
        if !text.is_empty() {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str("\nCodeCollab output (last lines):\n");
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

fn find_file(dir: &Path, suffix: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, suffix) {
                return Some(found);
            }
        } else if path.to_string_lossy().ends_with(suffix) {
            return Some(path);
        }
    }
    None
}

impl Drop for VsCode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping the VS Code work directory {} (logs, failure.png)", self.work_path.display());
            std::mem::forget(self.work.take());
        }
    }
}
