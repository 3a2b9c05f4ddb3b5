//! Prometheus text for the worker's `/metrics`, rendered from the runner's
//! counters. Names follow Prometheus conventions (`_total` counters, no
//! session ids as labels).

use std::fmt::Write as _;

use crate::runner::StatsSnapshot;

/// The exposition text for one snapshot.
pub fn render(s: &StatsSnapshot) -> String {
    let mut out = String::with_capacity(1024);
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n");
    };
    counter("worker_jobs_succeeded_total", "Jobs finished succeeded.", s.succeeded);
    counter("worker_jobs_failed_total", "Jobs finished failed.", s.failed);
    counter("worker_jobs_superseded_total", "Jobs finished superseded by a newer job.", s.superseded);
    counter("worker_jobs_dead_lettered_total", "Entries moved to the dead-letter stream.", s.dead_lettered);
    counter(
        "worker_lease_contention_total",
        "Times a job waited for another worker's session lease.",
        s.lease_contention,
    );
    counter("worker_retries_total", "Retries of retryable Kubernetes failures.", s.retries);
    counter("worker_reclaimed_total", "Entries taken over from idle consumers.", s.reclaimed);
    counter("worker_left_pending_total", "Entries left pending for redelivery.", s.left_pending);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_every_counter() {
        let s = crate::runner::StatsSnapshot { succeeded: 3, dead_lettered: 1, ..Default::default() };
        let text = super::render(&s);
        assert!(text.contains("worker_jobs_succeeded_total 3\n"));
        assert!(text.contains("worker_jobs_dead_lettered_total 1\n"));
        assert!(text.contains("# TYPE worker_retries_total counter"));
    }
}
