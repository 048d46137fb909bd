//! The session half of `scripts/readme-test`: once the script has followed the README's install steps in an empty
//! home folder, a Neovim user (the README's `init.lua`, the plugin unpacked as a package) shares a folder with
//! `:CodeCollab share`, a VS Code user (the extension installed from the `.vsix`) joins it with CodeCollab: Join
//! Session, both type into the same file, and every word reaches the server and both editors. Each side must run
//! the daemon its install brought, not one from this checkout. Prints how long it all took.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use clap::Parser;
use codecollab_tests::fixtures::until_server_text;
use codecollab_tests::nvim::Nvim;
use codecollab_tests::vscode::VsCode;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The home folder the README's steps were followed in.
    #[arg(long)]
    home: PathBuf,
    /// The server the README's step 1 started (ws://...).
    #[arg(long)]
    server: String,
    /// When the script started (seconds since the Unix epoch).
    #[arg(long)]
    started: f64,
    /// When the install steps were done.
    #[arg(long)]
    installed: f64,
}

const TEXT: &str = "notes of the team\n";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shared = args.home.join("projects/shared");
    let joined = args.home.join("projects/joined");
    std::fs::create_dir_all(&shared)?;
    std::fs::create_dir_all(&joined)?;
    std::fs::write(shared.join("notes.txt"), TEXT)?;

    // Ada, in Neovim as the README set it up: the plugin finds the daemon it was unpacked with.
    let mut nvim = Nvim::start_as_user(&shared, &args.home).context("Neovim")?;
    let daemon = nvim.lua("return require('codecollab.config').daemon()", json!([]))?;
    let package = args.home.join(".local/share/nvim/site/pack/codecollab/start/codecollab.nvim/bin/codecollab-daemon");
    ensure!(daemon == json!(package), "Neovim's plugin runs {daemon}, not the daemon it was unpacked with");
    nvim.command("CodeCollab share")?;
    let invite = nvim.invite().context(":CodeCollab share")?;
    let server = args.server.trim_start_matches("ws://");
    ensure!(invite.contains(server), "the invite {invite} is not on the README's server {}", args.server);

    // Bea, in VS Code with the extension the README installed: it runs the daemon bundled in it.
    let mut vscode = VsCode::start_as_user(&joined, &args.home).context("VS Code")?;
    vscode.join_from_palette(&invite).context("CodeCollab: Join Session")?;
    let output = vscode.output_channel();
    let started = output.lines().find(|l| l.starts_with("starting ")).unwrap_or_default().to_owned();
    ensure!(
        started.contains(&args.home.join(".local/share/code-server/extensions").display().to_string())
            && started.ends_with(", bundled)"),
        "VS Code's extension did not run the daemon it bundles: {started:?}"
    );

    // Both type into the shared file at once.
    vscode.open("notes.txt")?;
    vscode.call("focus", json!({ "keys": ["Control+End"] }))?;
    vscode.send("type", json!({ "text": "bea was here\n" }))?;
    nvim.command("edit notes.txt")?;
    nvim.input("ggIada was here <Esc>")?;
    vscode.recv()?;
    nvim.settle_input()?;
    let both = |t: &str| t.contains("ada was here notes of the team\n") && t.contains("bea was here\n");
    let text = until_server_text(&invite, "notes.txt", both);
    let timeout = Duration::from_secs(30);
    vscode.wait_for("VS Code to show both", timeout, |v| Ok(both(&format!("{}\n", v.visible_text()?))))?;
    nvim.wait_for("Neovim to show both", timeout, |n| Ok(n.text()? == text))?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    println!(
        "readme-test: from nothing to two people typing in {:.1} s: the README's install steps {:.1} s, then \
         sharing from Neovim, joining from VS Code and typing {:.1} s",
        now - args.started,
        args.installed - args.started,
        now - args.installed
    );
    Ok(())
}
