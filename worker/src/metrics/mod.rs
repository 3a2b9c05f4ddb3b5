//! The worker's Prometheus metrics (`/metrics` on `WORKER_METRICS_ADDR`),
//! kept in a `prometheus-client` registry: what the runner did to jobs
//! (started, finished by state, duration, retries, reclaims, lease
//! contention), what the sweeper did ([`sweep`]), the queue backlog (sampled from `XINFO GROUPS` and
//! `XPENDING` by [`backlog`] on scrape) and the latency of every
//! Kubernetes API call (recorded by [`crate::k8s::telemetry`]).
//!
//! Names carry their unit, counters end in `_total`, and labels come from
//! fixed sets (command, job state, verb, status code): never a session or
//! job id. This module only records and renders; it does no I/O.

pub mod backlog;
pub mod sweep;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use proto_types::{Command, JobState, Origin};

/// The terminal job states (`state` label of `worker_jobs_finished_total`).
const FINAL_STATES: [JobState; 4] = [JobState::Succeeded, JobState::Failed, JobState::Superseded, JobState::Dead];

/// Label value for jobs whose payload could not be decoded.
pub const UNKNOWN_COMMAND: &str = "unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StartedLabels {
    command: &'static str,
    origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    command: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KubeLabels {
    verb: &'static str,
    status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn job_histogram() -> Histogram {
    // 10 ms .. ~82 s: a sleep takes milliseconds, a delete with backup minutes at worst.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

fn kube_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Latency of Kubernetes API calls by verb and status; cheap to clone
/// (shared storage), handed to the kube client's telemetry layer.
#[derive(Clone, Debug)]
pub struct KubeRequestMetrics {
    latency: HistogramFamily<KubeLabels>,
}

impl KubeRequestMetrics {
    /// Records one finished call. `verb` is kube's request verb (`get`,
    /// `list`, `patch`, `delete`, ...), `status` the HTTP status, or `None`
    /// when no response came back (connection error, timeout).
    pub fn observe(&self, verb: &'static str, status: Option<u16>, seconds: f64) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.latency.get_or_create(&KubeLabels { verb, status }).observe(seconds);
    }
}

/// Gauges describing the `jobs` stream backlog, set by [`backlog::Backlog`].
#[derive(Clone, Debug, Default)]
pub struct BacklogGauges {
    pub(crate) pending: Gauge,
    pub(crate) lag: Gauge,
    pub(crate) oldest_pending_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub(crate) consumers: Gauge,
    pub(crate) scrape_errors: Counter,
}

/// Every metric of the worker process.
pub struct Metrics {
    registry: Registry,
    started: Family<StartedLabels, Counter>,
    finished: Family<FinishedLabels, Counter>,
    duration: HistogramFamily<FinishedLabels>,
    retries: Family<CommandLabels, Counter>,
    in_flight: Gauge,
    reclaimed: Counter,
    lease_contention: Counter,
    left_pending: Counter,
    abandoned: Family<OutcomeLabels, Counter>,
    kube: KubeRequestMetrics,
    backlog: BacklogGauges,
    sweep: sweep::SweepMetrics,
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

impl Metrics {
    /// Registers every metric (all start at zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("worker");
        let started = Family::<StartedLabels, Counter>::default();
        registry.register(
            "jobs_started",
            "Delivery attempts that started executing a job, by command and origin (api, gateway, idle, ttl, drift)",
            started.clone(),
        );
        let finished = Family::<FinishedLabels, Counter>::default();
        registry.register(
            "jobs_finished",
            "Jobs that reached a terminal state (succeeded, failed, superseded, dead), by command and state",
            finished.clone(),
        );
        let duration: HistogramFamily<FinishedLabels> = Family::new_with_constructor(job_histogram);
        registry.register(
            "job_duration_seconds",
            "Time from the start of the delivery attempt that finished a job to its terminal state",
            duration.clone(),
        );
        let retries = Family::<CommandLabels, Counter>::default();
        registry.register(
            "job_retries",
            "Retries of retryable Kubernetes failures within a delivery, by command",
            retries.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("jobs_in_flight", "Stream entries this process is working on", in_flight.clone());
        let reclaimed = Counter::default();
        registry.register(
            "entries_reclaimed",
            "Entries taken over from idle consumers (XAUTOCLAIM)",
            reclaimed.clone(),
        );
        let lease_contention = Counter::default();
        registry.register(
            "lease_contention",
            "Times a job found its session lease held by another worker and waited",
            lease_contention.clone(),
        );
        let left_pending = Counter::default();
        registry.register(
            "entries_left_pending",
            "Deliveries that ended without finishing the job (retries exhausted, undecodable, Redis errors)",
            left_pending.clone(),
        );
        let abandoned = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jobs_abandoned",
            "Deliveries abandoned without a finish, by outcome (fenced: stopped before a Kubernetes write it was no longer entitled to)",
            abandoned.clone(),
        );
        abandoned.get_or_create_owned(&OutcomeLabels { outcome: "fenced" });
        let kube = KubeRequestMetrics { latency: Family::new_with_constructor(kube_histogram) };
        registry.register(
            "kube_request_duration_seconds",
            "Latency of Kubernetes API calls until the response headers, by verb and HTTP status",
            kube.latency.clone(),
        );
        let backlog = BacklogGauges::default();
        registry.register(
            "queue_pending_entries",
            "Entries of the jobs stream delivered to the group and not yet acknowledged (XINFO GROUPS pending)",
            backlog.pending.clone(),
        );
        registry.register(
            "queue_lag_entries",
            "Entries of the jobs stream not yet delivered to the group (XINFO GROUPS lag)",
            backlog.lag.clone(),
        );
        registry.register(
            "queue_oldest_pending_age_seconds",
            "Age of the oldest pending entry of the jobs stream (0 when none is pending)",
            backlog.oldest_pending_age.clone(),
        );
        registry.register("queue_consumers", "Consumers known in the workers group", backlog.consumers.clone());
        registry.register(
            "queue_scrape_errors",
            "Failed reads of the queue backlog (the backlog gauges keep their last value)",
            backlog.scrape_errors.clone(),
        );
        let sweep = sweep::SweepMetrics::register(&mut registry);
        // Counters start at 0 for every command and end state, so `rate()`
        // and `increase()` see the first job rather than a new series.
        for command in Command::ALL {
            for origin in Origin::ALL {
                started.get_or_create_owned(&StartedLabels { command: command.as_str(), origin: origin.as_str() });
            }
            retries.get_or_create_owned(&CommandLabels { command: command.as_str() });
            for state in FINAL_STATES {
                finished.get_or_create_owned(&FinishedLabels { command: command.as_str(), state: state.as_str() });
            }
        }
        Self {
            registry,
            started,
            finished,
            duration,
            retries,
            in_flight,
            reclaimed,
            lease_contention,
            left_pending,
            abandoned,
            kube,
            backlog,
            sweep,
        }
    }

    /// A delivery attempt started executing `command` (the start script ran).
    pub fn job_started(&self, command: Command, origin: Origin) {
        self.started.get_or_create_owned(&StartedLabels { command: command.as_str(), origin: origin.as_str() }).inc();
    }

    /// A job reached terminal `state` after `seconds` of its finishing
    /// delivery attempt. `command` is `None` for undecodable payloads.
    pub fn job_finished(&self, command: Option<Command>, state: JobState, seconds: f64) {
        let labels =
            FinishedLabels { command: command.map_or(UNKNOWN_COMMAND, Command::as_str), state: state.as_str() };
        self.finished.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(seconds);
    }

    /// A retryable failure of `command` is being retried.
    pub fn job_retried(&self, command: Command) {
        self.retries.get_or_create(&CommandLabels { command: command.as_str() }).inc();
    }

    /// Marks one entry in progress until the returned guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// `n` entries were taken over from idle consumers.
    pub fn reclaimed(&self, n: u64) {
        self.reclaimed.inc_by(n);
    }

    /// A job waited for another worker's session lease.
    pub fn lease_contended(&self) {
        self.lease_contention.inc();
    }

    /// A delivery ended with the entry left pending.
    pub fn left_pending(&self) {
        self.left_pending.inc();
    }

    /// A delivery was fenced: abandoned before a write it was no longer entitled to.
    pub fn fenced(&self) {
        self.abandoned.get_or_create_owned(&OutcomeLabels { outcome: "fenced" }).inc();
    }

    /// The Kubernetes latency histogram, for the kube client's layer.
    pub fn kube(&self) -> KubeRequestMetrics {
        self.kube.clone()
    }

    /// The backlog gauges, for [`backlog::Backlog`].
    pub fn backlog_gauges(&self) -> BacklogGauges {
        self.backlog.clone()
    }

    /// The sweeper's counters.
    pub fn sweep(&self) -> sweep::SweepMetrics {
        self.sweep.clone()
    }

    /// The text exposition (OpenMetrics text, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements `worker_jobs_in_flight` when dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_series_are_labelled_by_command_and_state_only() {
        let m = Metrics::new();
        m.job_started(Command::Create, Origin::Idle);
        m.job_finished(Some(Command::Create), JobState::Succeeded, 0.2);
        m.job_finished(None, JobState::Dead, 0.0);
        m.job_retried(Command::Create);
        m.reclaimed(2);
        let text = m.render();
        assert!(text.contains(r#"worker_jobs_started_total{command="create",origin="idle"} 1"#), "{text}");
        assert!(text.contains(r#"worker_jobs_finished_total{command="create",state="succeeded"} 1"#), "{text}");
        assert!(text.contains(r#"worker_jobs_finished_total{command="unknown",state="dead"} 1"#), "{text}");
        assert!(text.contains(r#"worker_job_duration_seconds_count{command="create",state="succeeded"} 1"#), "{text}");
        assert!(text.contains(r#"worker_job_retries_total{command="create"} 1"#), "{text}");
        assert!(text.contains("worker_entries_reclaimed_total 2"), "{text}");
        assert!(text.contains("# TYPE worker_job_duration_seconds histogram"), "{text}");
    }

    #[test]
    fn kube_latency_by_verb_and_status_and_in_flight_gauge() {
        let m = Metrics::new();
        let kube = m.kube();
        kube.observe("get", Some(404), 0.003);
        kube.observe("patch", None, 1.0);
        {
            let _a = m.in_flight();
            let _b = m.in_flight();
            assert!(m.render().contains("worker_jobs_in_flight 2"));
        }
        let text = m.render();
        assert!(text.contains("worker_jobs_in_flight 0"), "{text}");
        assert!(text.contains(r#"worker_kube_request_duration_seconds_count{verb="get",status="404"} 1"#), "{text}");
        assert!(
            text.contains(r#"worker_kube_request_duration_seconds_count{verb="patch",status="error"} 1"#),
            "{text}"
        );
    }
}
