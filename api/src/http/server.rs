//! The connection layer: accept loop with a cap on concurrent connections
//! (a semaphore; excess connections wait in the listen backlog), HTTP/1.1
//! with a header read timeout and header-count / buffer caps, and graceful
//! shutdown: stop accepting, let in-flight requests finish within the
//! grace period, then drop what is left.
//!
//! Every connection task lives in a `JoinSet` owned by [`serve`], so none
//! outlives it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::http::service::serve_request;
use crate::http::state::AppState;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Most header lines accepted in one request (more: 431).
pub const MAX_HEADERS: usize = 64;
/// Largest read buffer, which bounds the request head (more: 431).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be built (bad URL).
    #[error("cannot use REDIS_URL")]
    Store(#[source] StoreError),
}

/// Waits for a connection slot, then for a connection (backing off on
/// accept errors such as EMFILE). Shared with the gateway.
pub(crate) async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, TcpStream, SocketAddr) {
    let permit = slots.clone().acquire_owned().await.expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (permit, stream, peer),
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves the api on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let store = Store::new(&config.redis_url, config.redis_timeout).map_err(ServeError::Store)?;
    let grace = config.shutdown_grace;
    let header_timeout = config.header_read_timeout;
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let state = Arc::new(AppState { config, store, metrics: Metrics::new() });
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "api listening");
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            (permit, stream, peer) = accept(&listener, &slots) => {
                let state = state.clone();
                let svc = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(serve_request(state, peer, req).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .max_headers(MAX_HEADERS)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(stream), svc);
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
    tracing::info!(in_flight = graceful.count(), "shutting down; draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    tasks.shutdown().await;
    Ok(())
}
