//! `kube-standin` binary: parse config, start the stand-in API server, run until SIGTERM or
//! Ctrl-C.

use anyhow::Context;
use clap::Parser;
use kube_standin::{Args, Config, Standin};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kube_standin::install_crypto_provider();
    let config = match Config::try_from(Args::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kube-standin: {e}");
            std::process::exit(64);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let standin = Standin::start(&config).await.context("starting kube-standin")?;
    println!(
        "kube-standin listening on http://{} (kubeconfig: {})",
        standin.addr(),
        standin.kubeconfig_path().display()
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    standin.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
