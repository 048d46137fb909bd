//! The first minutes in Neovim: the invite reaches the user with or without a clipboard (and never through the
//! unnamed register), and `:help codecollab` works however the plugin is installed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use codecollab_tests::fixtures::nvim::messages;
use codecollab_tests::harness::{ServerProcess, TempDir};
use codecollab_tests::nvim::{nvim_binary, plugin_dir, Nvim};
use serde_json::json;

fn share(nvim: &mut Nvim) -> String {
    nvim.lua("require('codecollab').share()", json!([])).expect("share");
    nvim.wait_for("the share", Duration::from_secs(20), |n| {
        Ok(n.lua("return require('codecollab').state.invite ~= nil", json!([]))? == json!(true))
    })
    .expect("shared");
    nvim.lua("return require('codecollab').state.invite", json!([])).expect("invite").as_str().expect("s").to_owned()
}

#[test]
fn the_invite_is_copied_when_there_is_a_clipboard_and_shown_in_a_window_when_not() {
    let data = TempDir::new("nvim-invite");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let setup = format!("{{ server = '{}', name = 'ana' }}", server.url());

    // A clipboard (a provider as g:clipboard): the invite goes there, and the message says so.
    let dir = TempDir::new("with-clipboard");
    let mut with = Nvim::start(dir.path(), &setup, true).expect("nvim");
    with.lua(
        "vim.g.clipboard = { name = 'test', copy = { ['+'] = function(l) vim.g.copied = l end, \
           ['*'] = function(l) end }, paste = { ['+'] = function() return {} end, ['*'] = function() return {} end } }",
        json!([]),
    )
    .expect("clipboard");
    let invite = share(&mut with);
    assert_eq!(with.lua("return vim.g.copied", json!([])).expect("copied"), json!([invite]));
    assert!(messages(&mut with).contains("invite copied to the clipboard (test)"), "{}", messages(&mut with));
    let floats = "local n = 0 for _, w in ipairs(vim.api.nvim_list_wins()) do \
                    if vim.api.nvim_win_get_config(w).relative ~= '' then n = n + 1 end end return n";
    assert_eq!(with.lua(floats, json!([])).expect("windows"), json!(0), "no window needed");
    assert_ne!(with.lua("return vim.fn.getreg('\"')", json!([])).expect("reg"), json!(invite), "\" left alone");

    // No clipboard here: the invite is shown in a window the user can yank from, and the message says so and how
    // to get it again, instead of claiming it was copied.
    let dir = TempDir::new("without-clipboard");
    let mut without = Nvim::start(dir.path(), &setup, true).expect("nvim");
    assert_eq!(without.lua("return vim.fn.has('clipboard')", json!([])).expect("has"), json!(0));
    let invite = share(&mut without);
    let shown = without
        .lua("return { vim.api.nvim_win_get_config(0).relative, vim.api.nvim_get_current_line() }", json!([]))
        .expect("window");
    assert_eq!(shown, json!(["editor", invite]), "the invite, in a floating window that has the focus");
    let said = messages(&mut without);
    assert!(said.contains("no clipboard here") && said.contains(":CodeCollab invite"), "{said}");
    assert!(!said.contains("copied"), "{said}");
    assert_ne!(without.lua("return vim.fn.getreg('\"')", json!([])).expect("reg"), json!(invite), "\" left alone");
    // yy takes it; q closes the window; :CodeCollab invite shows it again.
    without.input("yyq").expect("keys");
    without.settle_input().expect("settled");
    assert_eq!(without.lua("return vim.fn.getreg('\"')", json!([])).expect("reg"), json!(format!("{invite}\n")));
    assert_eq!(without.lua("return vim.api.nvim_win_get_config(0).relative", json!([])).expect("w"), json!(""));
    without.command("CodeCollab invite view").expect("invite");
    let view = without.lua("return require('codecollab').state.view_invite", json!([])).expect("view");
    assert_eq!(without.lua("return vim.api.nvim_get_current_line()", json!([])).expect("line"), view);
}

/// Runs a fresh headless Neovim with `args` and the given XDG_DATA_HOME; returns what it wrote to stdout.
fn run_nvim(data_home: &Path, args: &[&str]) -> String {
    let output = Command::new(nvim_binary().expect("nvim"))
        .args(["--headless", "-n", "-i", "NONE"])
        .args(args)
        .env("XDG_DATA_HOME", data_home)
        .env("XDG_CONFIG_HOME", data_home)
        .env("XDG_STATE_HOME", data_home)
        .output()
        .expect("nvim runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const OPEN_HELP: &str = "lua local ok, err = pcall(vim.cmd, 'help :CodeCollab-follow') \
                         io.stdout:write(ok and vim.fn.expand('%:t') or ('error: ' .. tostring(err)))";

#[test]
fn help_works_from_the_runtimepath_and_from_a_package_with_no_helptags_run() {
    let home = TempDir::new("nvim-help");
    // A plain runtimepath entry (what lazy.nvim's `dir` and manual installs do).
    let rtp = format!("set rtp^={}", plugin_dir().display());
    let out = run_nvim(home.path(), &["-u", "NONE", "--cmd", &rtp, "-c", OPEN_HELP, "-c", "qa!"]);
    assert_eq!(out, "codecollab.txt", "from the runtimepath");
    // A package under packpath's start/ (what native packages and most plugin managers do).
    let start = home.path().join("nvim/site/pack/plugins/start");
    std::fs::create_dir_all(&start).expect("mkdir");
    std::os::unix::fs::symlink(plugin_dir(), start.join("codecollab")).expect("link");
    let out = run_nvim(home.path(), &["-u", "NORC", "-c", OPEN_HELP, "-c", "qa!"]);
    assert_eq!(out, "codecollab.txt", "from a package");
    // The tags file in the repository is the one :helptags makes of the help file today.
    let copy = TempDir::new("nvim-helptags");
    std::fs::copy(plugin_dir().join("doc/codecollab.txt"), copy.path().join("codecollab.txt")).expect("copy");
    let helptags = format!("helptags {}", copy.path().display());
    run_nvim(home.path(), &["-u", "NONE", "-c", &helptags, "-c", "qa!"]);
    let fresh = std::fs::read_to_string(copy.path().join("tags")).expect("tags made");
    let committed = std::fs::read_to_string(plugin_dir().join("doc/tags")).expect("doc/tags is committed");
    assert_eq!(committed, fresh, "editors/nvim/doc/tags is stale: run :helptags editors/nvim/doc");
}

#[test]
fn a_joiner_is_told_which_files_stay_with_the_host_and_why() {
    let data = TempDir::new("nvim-unshared");
    let server = ServerProcess::spawn("127.0.0.1:0", data.path(), &[]).expect("server");
    let (host, guest) = (TempDir::new("unshared-host"), TempDir::new("unshared-guest"));
    std::fs::write(host.path().join("notes.txt"), "text\n").expect("write");
    std::fs::write(host.path().join("photo.jpg"), b"\xff\xd8\xff\xe0\0\x10JFIF").expect("write");
    let (_ana, invite) = Nvim::share(host.path(), &server.url(), "ana").expect("share");
    let mut ben = Nvim::join(&invite, guest.path(), "ben").expect("join");
    ben.wait_for("the message", Duration::from_secs(10), |n| Ok(messages(n).contains("photo.jpg (binary)")))
        .expect("told");
    assert!(messages(&mut ben).contains("1 file is not in the session"), "{}", messages(&mut ben));
    assert!(!guest.path().join("photo.jpg").exists());
}
