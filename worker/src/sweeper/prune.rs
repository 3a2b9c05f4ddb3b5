//! [`Pruner`]: one backup retention pass (lock, read, plan, remove, mark)
//! and the loop that runs one at start and every
//! `BACKUP_PRUNE_INTERVAL_SECS`.
//!
//! Under `{sm}:prune-lock` (`SET NX PX` for one interval, never released:
//! one pass per interval among all workers), a pass reads every backup
//! record and its session ([`super::retention_store`]), asks
//! [`super::retention::plan`], and works through the plan in parts of at
//! most [`prune::MAX_FILES`] files: it creates that part's prune Job
//! (`sm-backup-prune-{pass_ms}-{part}`), waits for it (polling every
//! `K8S_POLL_INTERVAL_MS`, at most `BACKUP_TIMEOUT_SECS`), and only once it
//! succeeded marks the part's records `deleted` with `deleted_reason` and
//! `removed_at_ms`; a snapshot backup's VolumeSnapshot is deleted through
//! the API first (404 counts as done; a failed delete leaves its record for
//! the next pass). A Job that fails or does not finish in time changes no
//! record; the next pass plans those records again (a removed file is then
//! simply missing, which the Job accepts). A part with no file to remove
//! is marked without a Job.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, PostParams};
use proto_types::keys;
use tokio::sync::watch;

use super::retention::{Prune, Reason, RetentionPolicy, StoredBackup, deleted_at, plan};
use super::retention_store::RetentionStore;
use super::store::{Store, StoreError};
use crate::clock::SharedClock;
use crate::k8s::backup::{JobOutcome, outcome};
use crate::k8s::snapshot::VolumeSnapshot;
use crate::k8s::{K8sConfig, prune};

/// How the pruner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneConfig {
    /// What to keep.
    pub policy: RetentionPolicy,
    /// Time between passes (`BACKUP_PRUNE_INTERVAL_SECS`); also the lock's TTL.
    pub interval: Duration,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self { policy: RetentionPolicy::default(), interval: Duration::from_secs(3600) }
    }
}

/// A pass failed before it could plan (Redis).
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Backup records read.
    pub read: usize,
    /// Records marked deleted, with why, in plan order.
    pub marked: Vec<(String, Reason)>,
    /// Prune Jobs that succeeded.
    pub jobs: Vec<String>,
    /// Prune Jobs that failed or timed out, with the reason (their records unchanged).
    pub failed_jobs: Vec<(String, String)>,
    /// VolumeSnapshots deleted (or found gone).
    pub snapshots: Vec<String>,
    /// VolumeSnapshots that could not be deleted, with the reason (their records unchanged).
    pub failed_snapshots: Vec<(String, String)>,
    /// Records left alone because their location is not a plain file name.
    pub refused: Vec<String>,
}

/// The backup pruner of one worker process.
#[derive(Clone)]
pub struct Pruner {
    store: Store,
    records: RetentionStore,
    kube: kube::Client,
    k8s: K8sConfig,
    config: PruneConfig,
    clock: SharedClock,
    owner: String,
}

impl std::fmt::Debug for Pruner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pruner").field("config", &self.config).finish()
    }
}

impl Pruner {
    /// A pruner of `k8s.namespace`'s backup volume (`k8s.backup_pvc`),
    /// named `owner` (the consumer name).
    pub fn new(
        redis: redis::Client,
        kube: kube::Client,
        k8s: K8sConfig,
        config: PruneConfig,
        clock: SharedClock,
        owner: String,
    ) -> Result<Self, StoreError> {
        let store = Store::new(redis)?;
        let records = RetentionStore::new(&store);
        Ok(Self { store, records, kube, k8s, config, clock, owner })
    }

    /// One pass if this worker gets the prune lock (`None`: another one has it).
    pub async fn prune_once(&self) -> Result<Option<PruneReport>, PruneError> {
        let ttl = self.config.interval.max(Duration::from_secs(1));
        if !self.store.try_lock_key(keys::PRUNE_LOCK, &self.owner, ttl).await? {
            return Ok(None);
        }
        self.prune_unlocked().await.map(Some)
    }

    /// The plan of a pass now, without acting on it.
    pub async fn plan_now(&self) -> Result<(Vec<StoredBackup>, Prune), PruneError> {
        let backups = self.records.backups().await?;
        let sessions: Vec<String> =
            backups.iter().map(|b| b.session_id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let seen = self.records.sessions(&sessions).await?;
        let deleted = sessions
            .iter()
            .filter_map(|s| {
                let of_session = backups.iter().filter(|b| &b.session_id == s);
                let fate = seen.get(s).copied().unwrap_or(super::retention::SessionSeen::Gone);
                deleted_at(fate, of_session).map(|at| (s.clone(), at))
            })
            .collect();
        let prune = plan(&backups, &deleted, self.clock.now_ms(), &self.config.policy);
        Ok((backups, prune))
    }

    /// One pass without the lock.
    pub async fn prune_unlocked(&self) -> Result<PruneReport, PruneError> {
        let pass_ms = self.clock.now_ms();
        let (backups, prune) = self.plan_now().await?;
        let mut report = PruneReport { read: backups.len(), refused: prune.refused.clone(), ..PruneReport::default() };
        for id in &prune.refused {
            tracing::warn!(backup.id = id.as_str(), "retention: backup location is not a plain file name; left alone");
        }
        for (part, batch) in prune.batches(prune::MAX_FILES).into_iter().enumerate() {
            if !batch.files_to_remove.is_empty() {
                let name = prune::job_name(pass_ms, part);
                match self.run_job(&name, &batch.files_to_remove).await {
                    Ok(()) => report.jobs.push(name),
                    Err(why) => {
                        tracing::warn!(
                            job = name.as_str(),
                            reason = why.as_str(),
                            "retention: prune job failed; records unchanged, next pass retries"
                        );
                        report.failed_jobs.push((name, why));
                        continue;
                    }
                }
            }
            let now = self.clock.now_ms();
            for m in &batch.records_to_mark {
                if let Some(snap) = &m.snapshot {
                    match self.delete_snapshot(snap).await {
                        Ok(()) => report.snapshots.push(snap.clone()),
                        Err(why) => {
                            tracing::warn!(
                                snapshot = snap.as_str(),
                                reason = why.as_str(),
                                "retention: deleting the snapshot failed; record unchanged, next pass retries"
                            );
                            report.failed_snapshots.push((snap.clone(), why));
                            continue;
                        }
                    }
                }
                if self.records.mark(&m.backup_id, m.reason.as_str(), now).await? {
                    report.marked.push((m.backup_id.clone(), m.reason));
                }
            }
        }
        if !report.marked.is_empty() || !report.failed_jobs.is_empty() || !report.failed_snapshots.is_empty() {
            tracing::info!(
                read = report.read,
                marked = report.marked.len(),
                jobs = report.jobs.len(),
                failed = report.failed_jobs.len(),
                snapshots = report.snapshots.len(),
                failed_snapshots = report.failed_snapshots.len(),
                "backup retention pass"
            );
        }
        Ok(report)
    }

    /// Deletes VolumeSnapshot `name` of a snapshot backup (already gone
    /// counts as done); the reason when it could not.
    async fn delete_snapshot(&self, name: &str) -> Result<(), String> {
        let api: Api<VolumeSnapshot> = Api::namespaced(self.kube.clone(), &self.k8s.namespace);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(format!("delete VolumeSnapshot/{name}: {e}")),
        }
    }

    /// Creates prune Job `name` for `files` and waits for it; the reason
    /// when it did not succeed.
    async fn run_job(&self, name: &str, files: &[String]) -> Result<(), String> {
        let job = prune::job(&self.k8s, name, files).map_err(|e| e.to_string())?;
        let api: Api<Job> = Api::namespaced(self.kube.clone(), &self.k8s.namespace);
        match api.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            // Created by an earlier try of this very part: wait for it.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(format!("create Job/{name}: {e}")),
        }
        let wait = async {
            loop {
                match api.get_opt(name).await {
                    Ok(Some(j)) => match outcome(&j) {
                        JobOutcome::Succeeded => return Ok(()),
                        JobOutcome::Failed(why) => return Err(why),
                        JobOutcome::Running => {}
                    },
                    Ok(None) => return Err(format!("Job/{name} disappeared")),
                    // A failed read is retried until the bound.
                    Err(e) => tracing::debug!(job = name, error = %e, "reading the prune job failed"),
                }
                tokio::time::sleep(self.k8s.poll_interval).await;
            }
        };
        let bound = self.k8s.backup_timeout;
        tokio::time::timeout(bound, wait)
            .await
            .unwrap_or_else(|_| Err(format!("Job/{name} did not finish within {}s", bound.as_secs())))
    }

    /// Prunes at start and then every interval (plus up to a fifth of it,
    /// random) until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                r = self.prune_once() => if let Err(e) = r {
                    tracing::warn!(error = %e, "backup retention pass failed; retrying next interval");
                },
                _ = stop.wait_for(|s| *s) => return,
            }
            let jitter = self.config.interval.mul_f64((crate::random::jitter_seed() % 1000) as f64 / 5000.0);
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval + jitter) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
