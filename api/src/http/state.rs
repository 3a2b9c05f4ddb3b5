//! [`AppState`]: what every request may use (configuration, the store,
//! metrics), built once by `server` and shared by `service`, `ratelimit`
//! and `handlers`. Holds data only, no behaviour.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a request may use.
#[derive(Debug)]
pub struct AppState {
    /// Validated configuration.
    pub config: Config,
    /// The Redis store.
    pub store: Store,
    /// Metrics.
    pub metrics: Metrics,
}
