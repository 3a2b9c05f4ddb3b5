//! The api binary: parse configuration (exit 64 on a bad one), install
//! tracing, serve until SIGTERM or Ctrl-C, drain, exit.

use api::config::LogFormat;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// `fmt` tracing (text or JSON lines), filtered by `RUST_LOG` (default `info`).
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match api::Args::parse().into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("api: {e}");
            std::process::exit(64);
        }
    };
    init_tracing(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
    api::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}
