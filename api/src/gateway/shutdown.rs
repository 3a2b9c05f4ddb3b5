//! The stop signal the gateway's long-running tasks (events reader,
//! activity flush, WebSocket tunnels) select on: a `watch` of `bool`.

use tokio::sync::watch;

/// Completes once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
