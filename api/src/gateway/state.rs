//! [`Gateway`]: what every request shares (configuration, the Redis
//! adapter, the event fan-out, activity, metrics, the clock) and the
//! bookkeeping of open WebSocket tunnels for the shutdown grace.

use std::sync::Arc;

use tokio::sync::watch;

use crate::gateway::activity::Activity;
use crate::gateway::config::GatewayConfig;
use crate::gateway::events::Events;
use crate::gateway::metrics::GatewayMetrics;
use crate::gateway::sessions::Sessions;

/// Milliseconds since the epoch; tests pass their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(sm_redis::enqueue::system_now_ms)
}

/// Shared by every request.
pub struct Gateway {
    /// Configuration.
    pub config: GatewayConfig,
    /// Redis.
    pub sessions: Sessions,
    /// The events fan-out.
    pub events: Events,
    /// Activity not yet flushed.
    pub activity: Activity,
    /// Metrics.
    pub metrics: GatewayMetrics,
    /// The clock.
    pub clock: Clock,
    /// Open tunnels.
    pub tunnels: Tunnels,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gateway")
    }
}

/// Counts open tunnels and tells them when the grace period is over.
#[derive(Debug)]
pub struct Tunnels {
    open: watch::Sender<usize>,
    stop: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Self { open: watch::channel(0).0, stop: watch::channel(false).0 }
    }
}

/// Held by a tunnel while it runs.
#[derive(Debug)]
pub struct TunnelGuard(watch::Sender<usize>);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Tunnels {
    /// Registers a tunnel: its guard and the signal that ends it.
    pub fn open(&self) -> (TunnelGuard, watch::Receiver<bool>) {
        self.open.send_modify(|n| *n += 1);
        (TunnelGuard(self.open.clone()), self.stop.subscribe())
    }

    /// Waits until no tunnel is open.
    pub async fn drained(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Ends every tunnel.
    pub fn close_all(&self) {
        self.stop.send_replace(true);
    }

    /// How many are open.
    pub fn count(&self) -> usize {
        *self.open.borrow()
    }
}
