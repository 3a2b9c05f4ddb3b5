//! The gateway's Prometheus metrics (`GET /metrics` on a non-workspace
//! Host): requests by outcome, time spent holding requests for a wake,
//! open WebSockets, upstream errors by kind, activity flushes. Labels are
//! fixed words, never a session id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// What became of a workspace request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded to a running workspace.
    Proxied,
    /// Woke the session (or showed the waking page of a wake in progress).
    Woke,
    /// Held during a wake, then forwarded.
    Held,
    /// Held past `WAKE_HOLD_TIMEOUT`: 503.
    HoldTimeout,
    /// No valid credentials (or a bad Origin on an upgrade).
    Unauthorized,
    /// The workspace refused, reset or timed out: 502/504.
    UpstreamError,
    /// Asleep and not being woken: 503.
    Asleep,
    /// Unknown or deleted session: 404.
    NotFound,
    /// An access link exchanged for a cookie: 303.
    Exchanged,
    /// Redis unavailable: 503.
    StoreError,
    /// The waking page's status poll.
    Status,
}

impl Outcome {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Proxied => "proxied",
            Outcome::Woke => "woke",
            Outcome::Held => "held",
            Outcome::HoldTimeout => "hold_timeout",
            Outcome::Unauthorized => "unauthorized",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Asleep => "asleep",
            Outcome::NotFound => "not_found",
            Outcome::Exchanged => "exchanged",
            Outcome::StoreError => "store_error",
            Outcome::Status => "status",
        }
    }
}

/// The metrics.
pub struct GatewayMetrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    hold: Histogram,
    websockets: Gauge,
    holding: Gauge,
    upstream_errors: Family<KindLabels, Counter>,
    flush_errors: Counter,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayMetrics")
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("session_gateway");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register("requests", "Workspace requests by outcome", requests.clone());
        let hold = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register("hold_duration_seconds", "Time requests were held for a wake", hold.clone());
        let websockets = Gauge::default();
        registry.register("open_websockets", "WebSockets being proxied", websockets.clone());
        let holding = Gauge::default();
        registry.register("holding", "Requests held now, waiting for a wake", holding.clone());
        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register("upstream_errors", "Failures reaching a workspace, by kind", upstream_errors.clone());
        let flush_errors = Counter::default();
        registry.register("activity_flush_errors", "Activity flushes Redis refused", flush_errors.clone());
        Self { registry, requests, hold, websockets, holding, upstream_errors, flush_errors }
    }

    /// Counts one request.
    pub fn request(&self, outcome: Outcome) {
        self.requests.get_or_create(&OutcomeLabels { outcome: outcome.as_str() }).inc();
    }

    /// Records how long a request was held.
    pub fn held_for(&self, seconds: f64) {
        self.hold.observe(seconds);
    }

    /// A WebSocket opened (`+1`) or closed (`-1`).
    pub fn websockets(&self, delta: i64) {
        self.websockets.inc_by(delta);
    }

    /// A request started (`+1`) or stopped (`-1`) being held.
    pub fn holding(&self, delta: i64) {
        self.holding.inc_by(delta);
    }

    /// Counts an upstream failure (`refused`, `connect_timeout`, `reset`, `read_timeout`, ...).
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts a failed activity flush.
    pub fn flush_error(&self) {
        self.flush_errors.inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
