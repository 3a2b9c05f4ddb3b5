//! The runner's stop signal: a `watch` channel that turns `true` (or whose
//! sender is dropped) when shutdown is requested. Only the waiting lives
//! here; what stops, and how in-flight jobs drain, is in `mod.rs`.

use tokio::sync::watch;

/// Waits until shutdown is requested.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|stop| *stop).await;
}
