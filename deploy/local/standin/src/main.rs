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
    sm_telemetry::shutdown_signal().await;
    tracing::info!("shutting down");
    standin.shutdown().await;
    Ok(())
}
