//! The HTTP/1.1 accept loop: one hyper connection task per client, all watched by hyper-util's
//! `GracefulShutdown`, stopped when the shutdown signal flips (in-flight requests finish, with a
//! bounded wait).

use crate::handler::Handler;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long open connections get to finish after shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Serve `listener` until `shutdown` turns `true`.
pub(crate) async fn serve(listener: TcpListener, handler: Arc<Handler>, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let http = hyper::server::conn::http1::Builder::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let h = Arc::clone(&handler);
                    let svc = service_fn(move |req| Arc::clone(&h).handle(req));
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
                    tokio::spawn(async move {
                        if let Err(error) = conn.await {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the drain period; closing anyway");
    }
}
