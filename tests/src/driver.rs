//! A Node.js driver process (Playwright) commanded with one JSON object per line on stdin and answering each with
//! one JSON line on stdout, `{ok: true, ...}` or `{ok: false, error}`: what the VS Code and browser harnesses share.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::harness::reap;

pub struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// What it drives, for messages ("VS Code", "browser").
    what: &'static str,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Driver({}, pid {})", self.what, self.child.id())
    }
}

impl Driver {
    /// Starts `node script CONFIG_JSON`; its stderr is the test's.
    pub fn spawn(script: &Path, config: &Value, what: &'static str) -> anyhow::Result<Driver> {
        let mut child = Command::new("node")
            .arg(script)
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting node (the {what} driver); is Node.js installed?"))?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Driver { child, stdin: Some(stdin), stdout, what })
    }

    /// Sends one command without waiting for its answer.
    pub fn send(&mut self, op: &str, mut args: Value) -> anyhow::Result<()> {
        args["op"] = json!(op);
        let stdin = self.stdin.as_mut().context("the driver is closed")?;
        writeln!(stdin, "{args}")?;
        stdin.flush()?;
        Ok(())
    }

    /// The answer to the oldest command sent; an error if it failed or the driver exited.
    pub fn recv(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the {} driver exited", self.what);
        }
        let reply: Value = serde_json::from_str(&line).with_context(|| format!("driver said {line:?}"))?;
        if reply["ok"] != json!(true) {
            bail!("{} driver: {}", self.what, reply["error"]);
        }
        Ok(reply)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Closing stdin makes the driver close what it started (Chromium, code-server) and exit.
        drop(self.stdin.take());
        reap(&mut self.child, Duration::from_secs(10));
    }
}
