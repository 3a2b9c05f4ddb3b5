//! Prometheus metrics (`GET /metrics`, text exposition via
//! `prometheus-client`): requests and latencies by route template, method
//! and status; rate-limit rejections by scope; enqueue failures by reason;
//! rate-limiter errors (fail-open events).
//!
//! Labels are bounded: the route *template* (never a session id or raw
//! path), the method of a matched route, the status code, a fixed reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The api's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    rate_limited: Family<ScopeLabels, Counter>,
    enqueue_failures: Family<ReasonLabels, Counter>,
    limiter_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A method name from a fixed set, so clients cannot invent label values.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("session_api");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register("http_request_duration_seconds", "Time to answer a request", latency.clone());
        let rate_limited = Family::<ScopeLabels, Counter>::default();
        registry.register("rate_limited", "Requests refused by the rate limit", rate_limited.clone());
        let enqueue_failures = Family::<ReasonLabels, Counter>::default();
        registry.register("enqueue_failures", "Commands that were not enqueued", enqueue_failures.clone());
        let limiter_errors = Counter::default();
        registry.register(
            "rate_limiter_errors",
            "Rate-limit checks that failed open because Redis was unavailable",
            limiter_errors.clone(),
        );
        Self { registry, requests, latency, rate_limited, enqueue_failures, limiter_errors }
    }

    /// Records one answered request.
    pub fn observe(&self, route: &'static str, method: &'static str, status: u16, seconds: f64) {
        let labels = RequestLabels { route, method, status };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Records a rate-limit refusal (`scope` = `ip` or `key`).
    pub fn rate_limited(&self, scope: &'static str) {
        self.rate_limited.get_or_create(&ScopeLabels { scope }).inc();
    }

    /// Records a command that was not enqueued.
    pub fn enqueue_failed(&self, reason: &'static str) {
        self.enqueue_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Records a rate-limit check that failed open.
    pub fn limiter_error(&self) {
        self.limiter_errors.inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_template() {
        let m = Metrics::new();
        m.observe("/session/{uuid}", "GET", 200, 0.01);
        m.rate_limited("ip");
        m.enqueue_failed("store_unavailable");
        let text = m.render();
        assert!(
            text.contains(r#"session_api_http_requests_total{route="/session/{uuid}",method="GET",status="200"} 1"#)
        );
        assert!(text.contains(r#"session_api_rate_limited_total{scope="ip"} 1"#));
        assert!(text.contains(
            r#"session_api_http_request_duration_seconds_count{route="/session/{uuid}",method="GET",status="200"} 1"#
        ));
        assert!(text.contains("session_api_enqueue_failures_total"));
    }
}
