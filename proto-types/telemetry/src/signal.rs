//! The one shutdown signal every session-manager binary waits on: SIGTERM
//! (Kubernetes stopping the pod) or Ctrl-C (a developer), whichever comes
//! first. It lives beside telemetry because both are what a binary sets up
//! around its work; it knows nothing about what shutting down means.

/// Resolves on SIGTERM or Ctrl-C (SIGINT). If a handler cannot be installed
/// the error is logged and that signal is simply never seen.
pub async fn shutdown_signal() {
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
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
