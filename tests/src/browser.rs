//! The web client in a real browser (Debian's Chromium through Playwright), driven through `web/test/driver.js`
//! over a pipe: it opens a session page, types, and reports what the page holds and shows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::driver::Driver;
use crate::harness::{poll_until, TempDir};

/// The web invite for an editor's invite (`ws://host:port/?session=ID#TOKEN` → `http://host:port/s/ID#TOKEN`).
pub fn web_invite(invite: &str) -> String {
    let (url, token) = invite.split_once('#').expect("an invite ends in #TOKEN");
    let session = url.split("session=").nth(1).expect("an invite names its session");
    let base = url.split('?').next().unwrap_or(url).trim_end_matches('/');
    let base = base.replacen("wss://", "https://", 1).replacen("ws://", "http://", 1);
    format!("{base}/s/{session}#{token}")
}

/// What the page holds (`window.codecollab`).
#[derive(Debug, Clone, Default)]
pub struct PageState {
    pub loaded: bool,
    pub text: Option<String>,
    pub active: Option<String>,
    pub connection: String,
    pub synced: bool,
    pub role: Option<String>,
    /// Remote cursors in the shown document: (name, head position in UTF-16 units).
    pub cursors: Vec<(String, u64)>,
}

pub struct Browser {
    /// Declared before `work`: dropped (Chromium closed) before the folder goes.
    driver: Driver,
    /// Chromium's profile and screenshots; kept when a test fails.
    work: Option<TempDir>,
    work_path: PathBuf,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Browser({})", self.work_path.display())
    }
}

impl Browser {
    /// Starts Chromium with an empty profile.
    pub fn start() -> anyhow::Result<Browser> {
        let work = TempDir::new("browser");
        let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/test/driver.js");
        let driver = Driver::spawn(&driver, &json!({ "work": work.path() }), "browser")?;
        let work_path = work.path().to_owned();
        let mut browser = Browser { driver, work: Some(work), work_path };
        browser.recv().map_err(|error| error.context("starting Chromium"))?;
        Ok(browser)
    }

    /// Starts Chromium and opens `web_invite` as `name`; waits until the page is connected.
    pub fn join(web_invite: &str, name: &str) -> anyhow::Result<Browser> {
        let mut browser = Browser::start()?;
        browser.call("goto", json!({ "url": web_invite, "name": name }))?;
        browser
            .wait_for("the page to join", Duration::from_secs(30), |b| Ok(b.state(None)?.connection == "connected"))?;
        Ok(browser)
    }

    /// Sends one driver command without waiting for its answer (to type while another editor does).
    pub fn send(&mut self, op: &str, args: Value) -> anyhow::Result<()> {
        self.driver.send(op, args)
    }

    /// The answer to the oldest command sent.
    pub fn recv(&mut self) -> anyhow::Result<Value> {
        let work = self.work_path.display().to_string();
        self.driver.recv().map_err(|error| error.context(format!("browser work directory {work}")))
    }

    pub fn call(&mut self, op: &str, args: Value) -> anyhow::Result<Value> {
        self.send(op, args)?;
        self.recv().map_err(|error| error.context(format!("driver op {op}")))
    }

    /// What the page holds; with `path`, that file's text (if the page has it open).
    pub fn state(&mut self, path: Option<&str>) -> anyhow::Result<PageState> {
        let v = self.call("state", json!({ "path": path }))?;
        let cursors = v["cursors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["name"].as_str()?.to_owned(), c["selections"][0]["head"].as_u64()?)))
            .collect();
        Ok(PageState {
            loaded: v["loaded"].as_bool().unwrap_or(false),
            text: v["text"].as_str().map(str::to_owned),
            active: v["active"].as_str().map(str::to_owned),
            connection: v["connection"].as_str().unwrap_or_default().to_owned(),
            synced: v["synced"].as_bool().unwrap_or(false),
            role: v["role"].as_str().map(str::to_owned),
            cursors,
        })
    }

    /// The page's text of `path` (empty until it has it).
    pub fn text(&mut self, path: &str) -> anyhow::Result<String> {
        Ok(self.state(Some(path))?.text.unwrap_or_default())
    }

    /// What the page shows: `connection`, `ended`, `messages`, `viewOnly`, `tabs`, `people`, `files`, `carets`,
    /// `editable`.
    pub fn screen(&mut self) -> anyhow::Result<Value> {
        self.call("screen", json!({}))
    }

    /// Clicks `path` in the file tree and waits until it is the shown document.
    pub fn open(&mut self, path: &str) -> anyhow::Result<()> {
        self.call("openFile", json!({ "path": path }))?;
        self.wait_for("the file to show", Duration::from_secs(20), |b| {
            let state = b.state(Some(path))?;
            Ok(state.active.as_deref() == Some(path) && state.text.is_some())
        })
    }

    /// Puts the caret at the end of the shown document.
    pub fn caret_to_end(&mut self) -> anyhow::Result<()> {
        self.call("caret", json!({ "to": "end" })).map(drop)
    }

    /// Types `text` key by key.
    pub fn type_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.call("type", json!({ "text": text })).map(drop)
    }

    /// Inserts `text` at the caret as one input (what an input method does).
    pub fn insert(&mut self, text: &str) -> anyhow::Result<()> {
        self.call("insert", json!({ "text": text })).map(drop)
    }

    pub fn press(&mut self, key: &str) -> anyhow::Result<()> {
        self.call("press", json!({ "key": key })).map(drop)
    }

    /// Waits until `check` holds, polling; screenshots the page if it never does.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&mut Browser) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let result = poll_until(what, timeout, Duration::from_millis(100), || check(self));
        result.map_err(|error| {
            let _ = self.call("screenshot", json!({ "file": self.work_path.join("timeout.png") }));
            error.context(format!("browser work directory {}", self.work_path.display()))
        })
    }

    pub fn screenshot(&mut self, file: &Path) -> anyhow::Result<()> {
        self.call("screenshot", json!({ "file": file })).map(drop)
    }

    pub fn work_path(&self) -> &Path {
        &self.work_path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping the browser work directory {} (failure.png, timeout.png)", self.work_path.display());
            std::mem::forget(self.work.take());
        }
    }
}
