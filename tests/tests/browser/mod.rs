//! The web client in a real Chromium, with a real server, daemons, Neovim and VS Code on the other side; one
//! browser (or workbench) at a time.

mod follow;
mod sessions;
mod typing;

use std::time::Duration;

use codecollab_tests::browser::Browser;
use codecollab_tests::fixtures::nvim::server_text;
use codecollab_tests::nvim::Nvim;

/// Waits until the browser, Neovim's buffer and the server's `path` hold the same text; returns it.
fn converge(browser: &mut Browser, nvim: &mut Nvim, invite: &str, path: &str) -> String {
    nvim.settle_input().expect("Neovim settled");
    let mut last = (String::new(), String::new(), String::new());
    let result = browser.wait_for("the browser, Neovim and the server to agree", Duration::from_secs(60), |b| {
        let state = b.state(Some(path))?;
        let (in_browser, in_nvim, on_server) =
            (state.text.unwrap_or_default(), nvim.text()?, server_text(invite, path));
        let same = state.synced && in_browser == in_nvim && in_nvim == on_server;
        last = (in_browser, in_nvim, on_server);
        Ok(same)
    });
    if let Err(error) = result {
        panic!("{error:#}\nbrowser: {:?}\nNeovim:  {:?}\nserver:  {:?}", last.0, last.1, last.2);
    }
    last.0
}
