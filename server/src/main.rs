//! The `codecollab-server` binary: parses flags, sets up logging, binds, and runs the server until SIGINT or
//! SIGTERM; or, with `token`, prints a host token.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use codecollab_server::auth::{Secret, TokenKind};
use codecollab_server::config::{Cli, Command};
use codecollab_server::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token { data_dir, name, ttl, database_url }) => {
            print_token(&data_dir, database_url.as_deref(), &name, ttl)
        }
        None => serve(&cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("codecollab-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_token(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    name: &str,
    ttl: std::time::Duration,
) -> anyhow::Result<()> {
    let secret = match (Secret::from_environment()?, database_url) {
        (Some(secret), _) => secret,
        (None, Some(url)) => {
            let hex = codecollab_server::store::postgres::secret_in(url, &Secret::fresh_hex()?)?;
            Secret::from_bytes(hex.as_bytes())
        }
        (None, None) => Secret::load_or_create(data_dir)?,
    };
    let mut claims = secret.claims(TokenKind::Host, ttl);
    claims.name = Some(name.to_owned());
    #[allow(clippy::print_stdout)] // The token is this command's output.
    {
        println!("{}", secret.sign(&claims));
    }
    Ok(())
}

fn serve(args: &codecollab_server::config::ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = Config::load(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(config.workers).enable_all().build()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let address = listener.local_addr()?;
        let scheme = if config.tls.is_some() { "wss" } else { "ws" };
        let store = if config.database_url.is_some() { "postgresql" } else { "sqlite" };
        tracing::info!(data_dir = %config.data_dir.display(), store, "listening on {scheme}://{address}");
        codecollab_server::run(listener, config, shutdown_signal()).await
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
