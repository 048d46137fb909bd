//! The `codecollab-daemon` binary: speaks the editor protocol on stdin/stdout (`--version` prints the version,
//! `--help` what it is and how it is used).
//! Logs go to stderr, never stdout, which is the protocol.
#![deny(clippy::print_stdout)]

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        // The version is this flag's output (no protocol runs), so it goes to stdout.
        use std::io::Write;
        let version = codecollab_protocol::version_with_commit(env!("CARGO_PKG_VERSION"));
        let _ = writeln!(std::io::stdout(), "codecollab-daemon {version}");
        return std::process::ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        use std::io::Write;
        let _ = write!(std::io::stdout(), "{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    // `--stdio` is what many LSP clients pass; stdio is the only transport, so it changes nothing.
    if let Some(unknown) = args.iter().find(|a| *a != "--stdio") {
        eprintln!("codecollab-daemon: unknown argument {unknown:?}; it takes none (the editor speaks to it on stdio)");
        return std::process::ExitCode::FAILURE;
    }
    return_large_blocks_to_the_system();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CODECOLLAB_LOG").unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("codecollab-daemon: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(codecollab_daemon::run(tokio::io::stdin(), tokio::io::stdout()));
    // Exit at once: background tasks (the relay, timers) must not keep the process alive after the editor left.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::ExitCode::SUCCESS
}

/// What `--help` prints.
const USAGE: &str = "\
codecollab-daemon: real-time collaborative editing for your editor (CodeCollab).

Your editor's plugin starts it and speaks to it on stdin/stdout (LSP framing, JSON-RPC); you do not run it by
hand. The Neovim plugin (:CodeCollab share, :CodeCollab join {invite}) and the VS Code extension (CodeCollab:
Share Folder, CodeCollab: Join Session) do.

Usage: codecollab-daemon [--stdio]
       codecollab-daemon --version | --help

Environment:
  CODECOLLAB_SERVER   the server a share uses when the editor names none (default ws://127.0.0.1:7830)
  CODECOLLAB_CA_FILE  PEM certificates to trust for wss://, beside the system's
  CODECOLLAB_LOG      log filter (default info); logs go to stderr
";

/// Makes glibc give every block of 128 KiB or more back to the system when it is freed.
///
/// By default glibc raises that threshold each time such a block is freed, up to 32 MiB; from then on blocks of
/// that size come from the heap and stay resident after they are freed. The daemon's large blocks are the
/// transient copies of a whole file (the JSON text of `collab/open`, the encoded upload, the decoded snapshot):
/// with the default, a 10 MB file left the daemon at 5-8x its size; with the fixed threshold, about 2x (see
/// `daemon_bench --only memory`). Setting `MALLOC_MMAP_THRESHOLD_` in the environment overrides this.
#[allow(unsafe_code)]
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: `mallopt` only changes allocator parameters and is documented as safe to call at any time;
        // it is called here before the process starts any other thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}
