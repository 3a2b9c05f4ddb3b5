//! The api binary: parse configuration (exit 64 on a bad one), install
//! telemetry (logs, and OTLP span export when configured; exit 64 on a bad
//! `OTEL_*`/`RUST_LOG`), serve until SIGTERM or Ctrl-C, drain, exit.

use api::config::LogFormat;
use clap::Parser as _;

/// `sm_telemetry` from the environment, with the api's `--log-format`;
/// the reason as a one-line message when a setting is unusable.
fn init_telemetry(format: LogFormat) -> Result<sm_telemetry::TelemetryGuard, String> {
    let oneline = |e: sm_telemetry::TelemetryError| format!("{:#}", anyhow::Error::from(e));
    let mut config = sm_telemetry::TelemetryConfig::from_env("sm-api").map_err(|e| oneline(e.into()))?;
    config.log_format = match format {
        LogFormat::Text => sm_telemetry::LogFormat::Human,
        LogFormat::Json => sm_telemetry::LogFormat::Json,
    };
    match sm_telemetry::init_with(&config) {
        Ok(guard) => Ok(guard),
        Err(e) if e.is_config() => Err(oneline(e)),
        Err(e) => {
            eprintln!("api: {e}");
            std::process::exit(1);
        }
    }
}

/// mimalloc instead of glibc malloc: allocation was the largest item of the api's CPU profile
/// under enqueue load, and mimalloc cut api CPU per enqueue by 22% in the loadtest A/B.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match api::Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("api: {}", e.to_string().lines().next().unwrap_or("invalid arguments"));
            std::process::exit(64);
        }
    };
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("api: {e}");
            std::process::exit(64);
        }
    };
    // Flushes pending spans when main returns.
    let _telemetry = match init_telemetry(config.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("api: {e}");
            std::process::exit(64);
        }
    };
    if config.workspace_auth == api::config::WorkspaceAuth::None {
        tracing::warn!("WORKSPACE_AUTH=none: access links are the plain workspace URL, open to anyone who has it");
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
    api::serve(config, listener, sm_telemetry::shutdown_signal()).await?;
    Ok(())
}
