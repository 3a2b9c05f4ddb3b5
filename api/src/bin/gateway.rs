//! The gateway binary: parse configuration (exit 64 on a bad one), install
//! telemetry, serve until SIGTERM or Ctrl-C, drain within the grace, exit.

use api::config::LogFormat;
use clap::Parser as _;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_telemetry(format: LogFormat) -> Result<sm_telemetry::TelemetryGuard, String> {
    let oneline = |e: sm_telemetry::TelemetryError| format!("{:#}", anyhow::Error::from(e));
    let mut config = sm_telemetry::TelemetryConfig::from_env("sm-gateway").map_err(|e| oneline(e.into()))?;
    config.log_format = match format {
        LogFormat::Text => sm_telemetry::LogFormat::Human,
        LogFormat::Json => sm_telemetry::LogFormat::Json,
    };
    match sm_telemetry::init_with(&config) {
        Ok(guard) => Ok(guard),
        Err(e) if e.is_config() => Err(oneline(e)),
        Err(e) => {
            eprintln!("gateway: {e}");
            std::process::exit(1);
        }
    }
}

fn exit_config(reason: impl std::fmt::Display) -> ! {
    eprintln!("gateway: {reason}");
    std::process::exit(64);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match api::gateway::GatewayArgs::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => exit_config(e.to_string().lines().next().unwrap_or("invalid arguments")),
    };
    let config = args.into_config().unwrap_or_else(|e| exit_config(e));
    let _telemetry = init_telemetry(config.log_format).unwrap_or_else(|e| exit_config(e));
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
    api::gateway::serve(config, listener, sm_telemetry::shutdown_signal()).await?;
    Ok(())
}
