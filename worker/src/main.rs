//! `worker`: parse config, init telemetry, connect, run until SIGTERM.
//! Everything testable lives in the library.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use worker::admin::{self, Admin, MetricsRender};
use worker::cli::{Cli, Sub};
use worker::clock::SystemClock;
use worker::k8s::{K8sExecutor, render_session_objects, render_worker_objects};
use worker::metrics::{Metrics, backlog::Backlog};
use worker::runner::Runner;
use worker::sweeper::{Pruner, Resync, Sweeper};

const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => return config_error(&e.to_string().lines().next().unwrap_or("invalid arguments")),
    };
    let args = &cli.args;
    let (runner_cfg, k8s_cfg, sweep_cfg, prune_cfg) =
        match (args.runner(&worker::random::unique_suffix()), args.k8s(), args.sweeper(), args.prune()) {
            (Ok(r), Ok(k), Ok(s), Ok(p)) => (r, k, s, p),
            (Err(e), _, _, _) => return config_error(&e),
            (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => return config_error(&e),
        };
    if let Some(Sub::RenderObjects { session }) = &cli.command {
        let Ok(id) = proto_types::SessionId::parse(session) else {
            return config_error(&format!("invalid session id {session:?}"));
        };
        let mut objects = render_session_objects(&k8s_cfg, &id, None);
        objects.extend(render_worker_objects(&k8s_cfg));
        let text = serde_json::Value::Array(objects).to_string();
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(std::io::stdout().lock(), "{text}");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fatal(&e.into()),
    };
    // Inside the runtime (the gRPC exporter spawns there); dropped before `rt`, flushing spans.
    let _telemetry = match rt.block_on(async { sm_telemetry::init("sm-worker") }) {
        Ok(guard) => guard,
        Err(e) if e.is_config() => return config_error(&format!("{:#}", anyhow::Error::from(e))),
        Err(e) => return fatal(&e.into()),
    };
    match rt.block_on(run(cli, runner_cfg, k8s_cfg, (sweep_cfg, prune_cfg))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e),
    }
}

async fn run(
    cli: Cli,
    runner_cfg: worker::runner::RunnerConfig,
    k8s_cfg: worker::k8s::K8sConfig,
    (sweep_cfg, prune_cfg): (worker::sweeper::SweepConfig, worker::sweeper::PruneConfig),
) -> anyhow::Result<()> {
    // kube's rustls needs one process-wide crypto provider (ring and aws-lc-rs are both linked).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());
    let kube = worker::k8s::client(metrics.kube())
        .await
        .context("building the Kubernetes client (KUBECONFIG or in-cluster)")?;
    let redis = redis::Client::open(cli.args.redis_url.as_str()).context("REDIS_URL")?;
    let backlog = Arc::new(Backlog::new(redis.clone(), metrics.backlog_gauges()));
    let sweeper = Arc::new(
        Sweeper::new(redis.clone(), sweep_cfg, clock(), runner_cfg.queue.consumer.clone())?
            .with_metrics(metrics.sweep()),
    );
    let owner = runner_cfg.queue.consumer.clone();
    let resync =
        Resync::new(redis.clone(), kube.clone(), k8s_cfg.namespace.clone(), cli.args.resync(), clock(), owner)?
            .with_ready_timeout(cli.args.drift_ready_timeout());
    let resync = if cli.args.resync_delete_orphans { resync.deleting_orphans(k8s_cfg.clone()) } else { resync };
    let resync = Arc::new(resync.with_metrics(metrics.sweep()));
    let pruner = Arc::new(Pruner::new(
        redis.clone(),
        kube.clone(),
        k8s_cfg.clone(),
        prune_cfg,
        clock(),
        runner_cfg.queue.consumer.clone(),
    )?);
    let runner =
        Runner::new(redis, Arc::new(K8sExecutor::new(kube, k8s_cfg)), runner_cfg)?.with_metrics(Arc::clone(&metrics));
    let render: MetricsRender = Arc::new(move || {
        let (metrics, backlog) = (Arc::clone(&metrics), Arc::clone(&backlog));
        Box::pin(async move {
            backlog.refresh().await;
            metrics.render()
        })
    });
    let admin = Admin::new(render);
    let listener = admin::bind(cli.args.metrics_addr).await.context("binding WORKER_METRICS_ADDR")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_task = tokio::spawn(admin.clone().serve(listener, stop_rx.clone()));
    admin.set_ready(true);
    tokio::spawn(async move {
        sm_telemetry::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let sweep_task = tokio::spawn(sweeper.run(stop_rx.clone()));
    let resync_task = tokio::spawn(resync.run(stop_rx.clone()));
    let prune_task = tokio::spawn(pruner.run(stop_rx.clone()));
    runner.run(stop_rx).await;
    let _ = tokio::join!(sweep_task, resync_task, prune_task);
    admin_task.abort();
    Ok(())
}

fn clock() -> worker::clock::SharedClock {
    Arc::new(SystemClock)
}

fn config_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("worker: {e}");
    ExitCode::from(EX_CONFIG)
}

fn fatal(e: &anyhow::Error) -> ExitCode {
    eprintln!("worker: {e:#}");
    ExitCode::FAILURE
}
