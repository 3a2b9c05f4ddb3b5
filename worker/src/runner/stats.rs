//! Counters of what the runner did, for metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared with the job tasks.
#[derive(Debug, Default)]
pub struct Stats {
    succeeded: AtomicU64,
    failed: AtomicU64,
    superseded: AtomicU64,
    dead_lettered: AtomicU64,
    lease_contention: AtomicU64,
    retries: AtomicU64,
    reclaimed: AtomicU64,
    left_pending: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Jobs finished `succeeded`.
    pub succeeded: u64,
    /// Jobs finished `failed`.
    pub failed: u64,
    /// Jobs finished `superseded`.
    pub superseded: u64,
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Times a job found its session lease held by another and waited.
    pub lease_contention: u64,
    /// Executor retries.
    pub retries: u64,
    /// Entries taken over by the reclaimer.
    pub reclaimed: u64,
    /// Entries left pending for redelivery (retries exhausted, undecodable).
    pub left_pending: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Succeeded,
    Failed,
    Superseded,
    DeadLettered,
    LeaseContention,
    Retries,
    Reclaimed,
    LeftPending,
}

impl Stats {
    pub(crate) fn add(&self, c: Counter, n: u64) {
        let field = match c {
            Counter::Succeeded => &self.succeeded,
            Counter::Failed => &self.failed,
            Counter::Superseded => &self.superseded,
            Counter::DeadLettered => &self.dead_lettered,
            Counter::LeaseContention => &self.lease_contention,
            Counter::Retries => &self.retries,
            Counter::Reclaimed => &self.reclaimed,
            Counter::LeftPending => &self.left_pending,
        };
        field.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            succeeded: l(&self.succeeded),
            failed: l(&self.failed),
            superseded: l(&self.superseded),
            dead_lettered: l(&self.dead_lettered),
            lease_contention: l(&self.lease_contention),
            retries: l(&self.retries),
            reclaimed: l(&self.reclaimed),
            left_pending: l(&self.left_pending),
        }
    }
}
