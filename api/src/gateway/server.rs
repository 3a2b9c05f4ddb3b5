//! The gateway's connection layer: the api's accept loop (connection cap,
//! header read timeout, header caps) with upgrades enabled, the two
//! background tasks (the events subscription and the activity flush), and
//! graceful shutdown: stop accepting, let requests finish and WebSockets
//! close within `GATEWAY_SHUTDOWN_GRACE`, close what is left, flush
//! activity one last time.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::gateway::activity::Activity;
use crate::gateway::config::{AuthMode, GatewayConfig};
use crate::gateway::events::Events;
use crate::gateway::metrics::GatewayMetrics;
use crate::gateway::service::serve_request;
use crate::gateway::sessions::{Sessions, SessionsError};
use crate::gateway::shutdown::stopped;
use crate::gateway::state::{Clock, Gateway, Tunnels, system_clock};
use crate::http::server::{MAX_HEAD_BYTES, MAX_HEADERS, accept};

/// The gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayServeError {
    /// The Redis adapter could not be built (bad URL).
    #[error("cannot use REDIS_URL")]
    Store(#[source] SessionsError),
}

/// Serves on `listener` until `shutdown` completes, on the system clock.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayServeError> {
    serve_with_clock(config, listener, shutdown, system_clock()).await
}

/// Flushes what `activity` holds; puts it back when Redis refuses.
async fn flush(gw: &Gateway) {
    let entries = gw.activity.take();
    if entries.is_empty() {
        return;
    }
    if let Err(e) = gw.sessions.flush_activity(&entries).await {
        tracing::warn!(error = %e, sessions = entries.len(), "activity flush failed; kept for the next one");
        gw.metrics.flush_error();
        gw.activity.restore(entries);
    }
}

/// [`serve`] with the clock tokens, cookies and activity are stamped by.
pub async fn serve_with_clock(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    clock: Clock,
) -> Result<(), GatewayServeError> {
    let sessions = Sessions::new(&config.redis_url, config.session_cache).map_err(GatewayServeError::Store)?;
    match config.auth {
        AuthMode::None => tracing::warn!("WORKSPACE_AUTH=none: every workspace is open to anyone who can reach it"),
        AuthMode::Header => {
            tracing::info!(header = %config.auth_header, "trusting the identity header from TRUSTED_PROXIES")
        }
        AuthMode::Token => {}
    }
    let grace = config.shutdown_grace;
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let gw = Arc::new(Gateway {
        sessions,
        events: Events::new(),
        activity: Activity::default(),
        metrics: GatewayMetrics::new(),
        clock,
        tunnels: Tunnels::default(),
        config,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    {
        let gw2 = gw.clone();
        let events = gw.events.clone();
        let url = gw.config.redis_url.clone();
        background.spawn(events.run(url, stop_rx.clone(), move |e| gw2.sessions.invalidate(&e.session_id)));
    }
    {
        let gw2 = gw.clone();
        let mut stop = stop_rx.clone();
        background.spawn(async move {
            let mut tick = tokio::time::interval(gw2.config.activity_flush);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => flush(&gw2).await,
                    () = stopped(&mut stop) => return,
                }
            }
        });
    }
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gateway listening");
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            (permit, stream, peer) = accept(&listener, &slots) => {
                let gw = gw.clone();
                let svc = service_fn(move |req| {
                    let gw = gw.clone();
                    async move { Ok::<_, Infallible>(serve_request(gw, peer, req).await) }
                });
                let _ = stream.set_nodelay(true);
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tasks.spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tracing::info!(in_flight = graceful.count(), websockets = gw.tunnels.count(), "shutting down; draining");
    let drain = async {
        graceful.shutdown().await;
        gw.tunnels.drained().await;
    };
    tokio::select! {
        () = drain => tracing::info!("drained"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    gw.tunnels.close_all();
    tasks.shutdown().await;
    stop_tx.send_replace(true);
    while background.join_next().await.is_some() {}
    flush(&gw).await;
    Ok(())
}
