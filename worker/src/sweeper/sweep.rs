//! [`Sweeper`]: one sweep (lock, read the due sessions, decide, act) and
//! the loop that runs one every `SWEEP_INTERVAL_MS`, with jitter.
//!
//! Every worker runs the loop; the sweep lock (`SET NX PX` for one
//! interval) lets one of them sweep per interval, so N workers do not do
//! N times the work. Correctness does not rest on the lock: every job is a
//! guarded compare-and-set enqueue, so sweepers that race (a lock that
//! expired mid-sweep) still produce one job per session. The decisions are
//! [`super::decide`]'s; this file only reads, calls it and performs.

use std::sync::Arc;
use std::time::Duration;

use proto_types::scripts::enqueue::EnqueueReply;
use proto_types::scripts::sweep::{SweepReply, WarnReply};
use proto_types::{Command, Origin};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::decide::{Action, Policy, decide};
use super::store::{DueSession, Store, StoreError};
use crate::clock::SharedClock;
use crate::metrics::sweep::SweepMetrics;

/// How the sweeper runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    /// What to do with due sessions.
    pub policy: Policy,
    /// Time between sweeps (`SWEEP_INTERVAL_MS`); also the sweep lock's TTL.
    pub interval: Duration,
    /// Due sessions read per sweep (`SWEEP_BATCH`).
    pub batch: usize,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self { policy: Policy::default(), interval: Duration::from_secs(10), batch: 500 }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Due sessions read.
    pub due: usize,
    /// Sleep jobs enqueued.
    pub slept: usize,
    /// Delete jobs enqueued.
    pub deleted: usize,
    /// Idle warnings published.
    pub warned: usize,
    /// Deadlines moved.
    pub rescheduled: usize,
    /// Sessions dropped from the due set.
    pub forgotten: usize,
    /// Actions the atomic re-check refused (used since, changed, raced).
    pub skipped: usize,
}

/// A sweep with the lock, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepOutcome {
    /// This worker held the lock and swept.
    Swept(SweepReport),
    /// Another worker holds the lock this interval.
    Locked,
}

/// The sweeper of one worker process.
#[derive(Debug, Clone)]
pub struct Sweeper {
    store: Store,
    config: SweepConfig,
    clock: SharedClock,
    owner: String,
    metrics: Option<SweepMetrics>,
}

impl Sweeper {
    /// A sweeper named `owner` (the consumer name) on `client`.
    pub fn new(
        client: redis::Client,
        config: SweepConfig,
        clock: SharedClock,
        owner: String,
    ) -> Result<Self, StoreError> {
        Ok(Self { store: Store::new(client)?, config, clock, owner, metrics: None })
    }

    /// Records into `metrics`.
    pub fn with_metrics(mut self, metrics: SweepMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One sweep if this worker gets the sweep lock.
    pub async fn sweep_once(&self) -> Result<SweepOutcome, StoreError> {
        let outcome = async {
            if !self.store.try_lock(&self.owner, self.config.interval).await? {
                return Ok(SweepOutcome::Locked);
            }
            self.sweep_unlocked().await.map(SweepOutcome::Swept)
        }
        .await;
        if let Some(m) = &self.metrics {
            m.swept(match &outcome {
                Ok(SweepOutcome::Swept(_)) => "swept",
                Ok(SweepOutcome::Locked) => "locked",
                Err(_) => "error",
            });
        }
        outcome
    }

    /// One sweep without the lock: what the lock holder does. Sweepers
    /// that race here still enqueue one job per session (tests race them).
    pub async fn sweep_unlocked(&self) -> Result<SweepReport, StoreError> {
        let now = self.clock.now_ms();
        let members = self.store.due(now, self.config.batch).await?;
        let (due, malformed) = self.store.read(&members).await?;
        for m in &malformed {
            tracing::warn!(member = m.0.as_str(), "dropping a malformed member of the lifecycle-due set");
            self.store.drop_malformed(m).await?;
        }
        let mut report = SweepReport { due: due.len(), ..SweepReport::default() };
        if let Some(m) = &self.metrics {
            m.due(due.len() as u64);
        }
        for session in &due {
            let action = decide(session.facts.as_ref(), &self.config.policy, now);
            let span = tracing::debug_span!("sweep.session", session.id = session.id.as_str(), action = ?action);
            let kind = self.act(session, action, now).instrument(span).await?;
            self.count(&mut report, kind);
        }
        if report != (SweepReport { due: report.due, ..SweepReport::default() }) {
            tracing::info!(?report, "sweep");
        }
        Ok(report)
    }

    async fn act(&self, session: &DueSession, action: Action, now: u64) -> Result<&'static str, StoreError> {
        let sid = session.id.as_str();
        match action {
            Action::Forget => {
                self.store.reschedule(session, None, None).await?;
                Ok("forget")
            }
            Action::Wait { due_ms, next: (planned, at) } => {
                self.store.reschedule(session, Some(due_ms), Some((planned.as_str(), at))).await?;
                Ok("reschedule")
            }
            Action::Warn { last_use_ms, sleep_at_ms } => {
                let reply = self.store.warn(&session.id, last_use_ms, sleep_at_ms, now).await?;
                self.store.reschedule(session, Some(sleep_at_ms), Some(("sleep", sleep_at_ms))).await?;
                Ok(match reply {
                    WarnReply::Warned => {
                        tracing::info!(session.id = sid, sleep_at_ms, "idle warning published");
                        "warn"
                    }
                    WarnReply::Already(_) => "skip",
                })
            }
            Action::Sleep { last_use_ms } => {
                let reply = self.store.enqueue(session, Command::Sleep, Origin::Idle, Some(last_use_ms), now).await?;
                Ok(self.enqueued(sid, "sleep", &reply))
            }
            Action::Delete { last_use_ms } => {
                let reply = self.store.enqueue(session, Command::Delete, Origin::Ttl, last_use_ms, now).await?;
                Ok(self.enqueued(sid, "delete", &reply))
            }
        }
    }

    fn enqueued(&self, sid: &str, kind: &'static str, reply: &SweepReply) -> &'static str {
        match reply {
            SweepReply::Enqueue(EnqueueReply::Ok { stream_id }) => {
                tracing::info!(session.id = sid, stream.id = stream_id.as_str(), command = kind, "sweeper enqueued");
                kind
            }
            other => {
                tracing::debug!(session.id = sid, reply = ?other, "sweep re-check refused");
                "skip"
            }
        }
    }

    fn count(&self, report: &mut SweepReport, kind: &'static str) {
        match kind {
            "sleep" => report.slept += 1,
            "delete" => report.deleted += 1,
            "warn" => report.warned += 1,
            "reschedule" => report.rescheduled += 1,
            "forget" => report.forgotten += 1,
            _ => report.skipped += 1,
        }
        if let Some(m) = &self.metrics {
            m.action(kind);
        }
    }

    /// Sweeps every interval (plus up to a fifth of it, random) until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let jitter = self.config.interval.mul_f64((crate::random::jitter_seed() % 1000) as f64 / 5000.0);
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval + jitter) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "sweep failed; retrying next interval");
            }
        }
    }
}
