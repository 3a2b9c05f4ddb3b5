//! The sweeper's counters: sweeps run (by outcome), actions taken (by
//! kind) and due sessions seen. Registered by [`super::Metrics::new`];
//! the sweeper records through a cheap clone ([`SweepMetrics`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

/// Sweep outcomes (`outcome` label of `worker_sweeps_total`).
pub const OUTCOMES: [&str; 3] = ["swept", "locked", "error"];
/// Sweep actions (`action` label of `worker_sweep_actions_total`).
pub const ACTIONS: [&str; 7] = ["sleep", "delete", "warn", "reschedule", "forget", "skip", "converge"];

/// The sweeper's counters; clones share them.
#[derive(Clone, Debug, Default)]
pub struct SweepMetrics {
    sweeps: Family<OutcomeLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    due: Counter,
    orphans: Gauge,
}

impl SweepMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "sweeps",
            "Sweeper runs: swept (this worker held the sweep lock), locked (another one did), error",
            m.sweeps.clone(),
        );
        registry.register(
            "sweep_actions",
            "What sweeps did: sleep, delete (ttl or max age), warn, reschedule, forget, skip (re-check refused), converge (drift)",
            m.actions.clone(),
        );
        registry.register("sweep_due_sessions", "Due sessions read by sweeps", m.due.clone());
        registry.register(
            "drift_orphaned_objects",
            "Objects labelled as ours whose session is unknown or deleted, at the last resync (reported, never deleted)",
            m.orphans.clone(),
        );
        for outcome in OUTCOMES {
            m.sweeps.get_or_create_owned(&OutcomeLabels { outcome });
        }
        for action in ACTIONS {
            m.actions.get_or_create_owned(&ActionLabels { action });
        }
        m
    }

    /// One sweep ended with `outcome` (one of [`OUTCOMES`]).
    pub fn swept(&self, outcome: &'static str) {
        self.sweeps.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// One action of kind `action` (one of [`ACTIONS`]).
    pub fn action(&self, action: &'static str) {
        self.actions.get_or_create(&ActionLabels { action }).inc();
    }

    /// The last resync found `n` orphaned objects.
    pub fn orphans(&self, n: i64) {
        self.orphans.set(n);
    }

    /// `n` due sessions were read.
    pub fn due(&self, n: u64) {
        self.due.inc_by(n);
    }
}
