//! [`Resync`]: drift repair at worker start and every `RESYNC_INTERVAL`
//! (with jitter, under a lock so one worker resyncs per interval). It reads
//! every live session from Redis, lists the session objects with one call
//! per kind by label, and enqueues a converge job (origin `drift`) for each
//! session that differs ([`super::drift::compare`] decides: objects
//! missing, replicas wrong, or a workspace pod not ready for longer than
//! `READY_TIMEOUT`, from one list of pods by label). Objects of unknown or
//! deleted sessions are reported (log line with names, metric, and an
//! `orphaned` notice per session on the events stream), and deleted only
//! with `RESYNC_DELETE_ORPHANS=true` ([`super::reap`], a claim only after
//! its backup).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, ListParams};
use proto_types::scripts::enqueue::EnqueueReply;
use proto_types::scripts::sweep::SweepReply;
use proto_types::{Notice, NoticeKind, Origin, SessionId, SessionState, keys};
use tokio::sync::watch;

use super::drift::{Cluster, Kind, Listed, Live, compare, is_ready, unready_since};
use super::reap::Reaper;
use super::store::{DueSession, Store, StoreError};
use crate::clock::SharedClock;
use crate::k8s::gate::fence_of;
use crate::k8s::{K8sConfig, names};
use crate::metrics::sweep::SweepMetrics;

/// Sessions read from Redis per pipeline.
const READ_CHUNK: usize = 500;

/// A resync failed.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A list call.
    #[error("listing {kind} failed")]
    List {
        /// Which kind.
        kind: &'static str,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// What one resync found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncReport {
    /// Live sessions compared.
    pub live: usize,
    /// Converge jobs enqueued.
    pub converged: usize,
    /// `kind/name` of orphaned objects (reported; deleted only with the switch).
    pub orphans: Vec<String>,
    /// `kind/name` of orphaned objects deleted (`RESYNC_DELETE_ORPHANS=true`).
    pub deleted: Vec<String>,
    /// Orphaned sessions whose claim's backup Job was started this resync.
    pub backups_started: usize,
    /// `kind/name` of orphaned claims kept because their backup failed, with the reason.
    pub backups_failed: Vec<(String, String)>,
}

/// The drift repairer of one worker process.
#[derive(Clone)]
pub struct Resync {
    store: Store,
    kube: kube::Client,
    namespace: String,
    interval: Duration,
    clock: SharedClock,
    owner: String,
    metrics: Option<SweepMetrics>,
    ready_timeout: Duration,
    reaper: Option<Reaper>,
}

impl std::fmt::Debug for Resync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resync").field("namespace", &self.namespace).field("interval", &self.interval).finish()
    }
}

impl Resync {
    /// A resync of `namespace` every `interval` (zero: only when called).
    pub fn new(
        redis: redis::Client,
        kube: kube::Client,
        namespace: String,
        interval: Duration,
        clock: SharedClock,
        owner: String,
    ) -> Result<Self, StoreError> {
        let store = Store::new(redis)?;
        Ok(Self {
            store,
            kube,
            namespace,
            interval,
            clock,
            owner,
            metrics: None,
            ready_timeout: Duration::ZERO,
            reaper: None,
        })
    }

    /// Counts a running session whose pods have not been ready for longer
    /// than `timeout` as drift (zero, the default here: never).
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Deletes orphaned objects (`RESYNC_DELETE_ORPHANS=true`), backing up
    /// claims first with `config`'s backup settings (its namespace is this
    /// resync's). Logs a warning: this is the switch that can delete data.
    pub fn deleting_orphans(mut self, mut config: K8sConfig) -> Self {
        tracing::warn!("RESYNC_DELETE_ORPHANS=true: orphaned objects are deleted (a PVC after its backup)");
        config.namespace = self.namespace.clone();
        self.reaper = Some(Reaper::new(self.store.clone(), self.kube.clone(), config));
        self
    }

    /// Records into `metrics`.
    pub fn with_metrics(mut self, metrics: SweepMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One resync if this worker gets the resync lock (`None`: another one has it).
    pub async fn resync_once(&self) -> Result<Option<ResyncReport>, ResyncError> {
        let ttl = self.interval.max(Duration::from_secs(1));
        if !self.store.try_lock_key(keys::RESYNC_LOCK, &self.owner, ttl).await? {
            return Ok(None);
        }
        self.resync_unlocked().await.map(Some)
    }

    /// One resync without the lock.
    pub async fn resync_unlocked(&self) -> Result<ResyncReport, ResyncError> {
        let members = self.store.all_sessions().await?;
        let mut live: Vec<DueSession> = Vec::new();
        for chunk in members.chunks(READ_CHUNK) {
            let (read, _) = self.store.read(chunk).await?;
            // A session being deleted is known: its delete job handles its objects.
            live.extend(
                read.into_iter().filter(|s| s.record.as_ref().is_some_and(|r| r.status != SessionState::Deleted)),
            );
        }
        let views: Vec<Live> = live
            .iter()
            .filter_map(|s| s.record.as_ref().map(|r| Live { id: s.id.clone(), status: r.status, desired: r.desired }))
            .collect();
        let cluster = self.cluster().await?;
        let now = self.clock.now_ms();
        let timeout_ms = u64::try_from(self.ready_timeout.as_millis()).unwrap_or(u64::MAX);
        let plan = compare(&views, &cluster, now, timeout_ms);
        let live_count = views.iter().filter(|v| v.status != SessionState::Deleting).count();
        let mut report = ResyncReport { live: live_count, orphans: plan.orphans, ..ResyncReport::default() };
        for (id, command) in &plan.converge {
            let Some(session) = live.iter().find(|s| &s.id == id) else { continue };
            let reply = self.store.enqueue(session, *command, Origin::Drift, None, now).await?;
            if let SweepReply::Enqueue(EnqueueReply::Ok { .. }) = reply {
                tracing::warn!(session.id = id.as_str(), command = command.as_str(), "drift: converge job enqueued");
                report.converged += 1;
                if let Some(m) = &self.metrics {
                    m.action("converge");
                }
            }
        }
        if !report.orphans.is_empty() {
            let deleting = self.reaper.is_some();
            tracing::warn!(orphans = ?report.orphans, deleting, "drift: objects of unknown or deleted sessions");
        }
        if let Some(m) = &self.metrics {
            m.orphans(report.orphans.len() as i64);
        }
        for session in &plan.orphan_sessions {
            let objects = cluster.names.get(session).map(Vec::as_slice).unwrap_or_default();
            self.orphaned(session, objects, now, &mut report).await?;
        }
        Ok(report)
    }

    /// Reports one orphaned session's objects as a notice and, with the
    /// switch, reaps them (a failure is logged and left to the next resync).
    async fn orphaned(
        &self,
        session: &str,
        objects: &[Listed],
        now: u64,
        report: &mut ResyncReport,
    ) -> Result<(), ResyncError> {
        let Ok(id) = SessionId::parse(session) else {
            tracing::warn!(label = session, "drift: orphans with an invalid session label (left alone)");
            return Ok(());
        };
        let notice = Notice {
            session_id: id.clone(),
            kind: NoticeKind::Orphaned,
            at_ms: now,
            action_at_ms: now,
            origin: Origin::Drift,
            objects: objects.iter().map(Listed::to_string).collect(),
        };
        self.store.notify(&notice).await?;
        let Some(reaper) = &self.reaper else { return Ok(()) };
        match reaper.reap(&id, objects, now).await {
            Ok(r) if r.skipped => tracing::info!(session.id = session, "drift: session known again; orphans kept"),
            Ok(r) => {
                if !r.deleted.is_empty() {
                    tracing::warn!(session.id = session, deleted = ?r.deleted, "drift: orphaned objects deleted");
                }
                if r.backup_started {
                    tracing::info!(session.id = session, "drift: orphaned claim's backup started; deleted once done");
                    report.backups_started += 1;
                }
                if let Some((claim, why)) = r.backup_failed {
                    tracing::error!(
                        session.id = session,
                        claim,
                        reason = why,
                        "drift: orphaned claim's backup failed; kept"
                    );
                    report.backups_failed.push((claim, why));
                }
                report.deleted.extend(r.deleted);
            }
            Err(e) => {
                tracing::warn!(session.id = session, error = %e, "drift: reaping orphans failed; next resync retries")
            }
        }
        Ok(())
    }

    /// The session objects, one list call per kind.
    async fn cluster(&self) -> Result<Cluster, ResyncError> {
        let lp = ListParams::default().labels(&format!("{}={}", names::MANAGED_BY, names::SYSTEM));
        let mut c = Cluster::default();
        let session_of = |labels: Option<&std::collections::BTreeMap<String, String>>| {
            labels.and_then(|l| l.get(names::SESSION_LABEL)).cloned()
        };
        let note =
            |names: &mut HashMap<String, Vec<Listed>>, session: &str, kind: Kind, meta: &kube::api::ObjectMeta| {
                let listed = Listed {
                    kind,
                    name: meta.name.clone().unwrap_or_default(),
                    uid: meta.uid.clone(),
                    fence: fence_of(meta),
                };
                names.entry(session.to_owned()).or_default().push(listed);
            };
        let list_err = |kind| move |source| ResyncError::List { kind, source };
        let deployments = Api::<Deployment>::namespaced(self.kube.clone(), &self.namespace)
            .list(&lp)
            .await
            .map_err(list_err("deployments"))?;
        for d in deployments {
            let Some(s) = session_of(d.metadata.labels.as_ref()) else { continue };
            note(&mut c.names, &s, Kind::Deployment, &d.metadata);
            c.deployments.insert(s, d.spec.and_then(|spec| spec.replicas).unwrap_or(1));
        }
        let pvcs = Api::<PersistentVolumeClaim>::namespaced(self.kube.clone(), &self.namespace)
            .list(&lp)
            .await
            .map_err(list_err("persistentvolumeclaims"))?;
        for p in pvcs {
            let Some(s) = session_of(p.metadata.labels.as_ref()) else { continue };
            note(&mut c.names, &s, Kind::PersistentVolumeClaim, &p.metadata);
            c.pvcs.insert(s);
        }
        let services = Api::<Service>::namespaced(self.kube.clone(), &self.namespace)
            .list(&lp)
            .await
            .map_err(list_err("services"))?;
        for svc in services {
            let Some(s) = session_of(svc.metadata.labels.as_ref()) else { continue };
            note(&mut c.names, &s, Kind::Service, &svc.metadata);
            c.services.insert(s);
        }
        if !self.ready_timeout.is_zero() {
            self.pods(&mut c).await?;
        }
        Ok(c)
    }

    /// Notes, per session, since when all its workspace pods have not been
    /// ready (one list call, by label).
    async fn pods(&self, c: &mut Cluster) -> Result<(), ResyncError> {
        let selector = format!("{}={},{}=workspace", names::MANAGED_BY, names::SYSTEM, names::COMPONENT);
        let pods = Api::<Pod>::namespaced(self.kube.clone(), &self.namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| ResyncError::List { kind: "pods", source })?;
        let mut ready: std::collections::HashSet<String> = std::collections::HashSet::new();
        for p in pods {
            let Some(s) = p.metadata.labels.as_ref().and_then(|l| l.get(names::SESSION_LABEL)).cloned() else {
                continue;
            };
            if is_ready(&p) {
                ready.insert(s);
            } else if let Some(since) = unready_since(&p) {
                let e = c.unready_since.entry(s).or_insert(since);
                *e = (*e).min(since);
            }
        }
        c.unready_since.retain(|s, _| !ready.contains(s));
        Ok(())
    }

    /// Resyncs at start and then every interval (plus up to a fifth of it,
    /// random) until `stop` turns true; a zero interval does nothing.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if self.interval.is_zero() {
            return;
        }
        loop {
            if let Err(e) = self.resync_once().await {
                tracing::warn!(error = %e, "resync failed; retrying next interval");
            }
            let jitter = self.interval.mul_f64((crate::random::jitter_seed() % 1000) as f64 / 5000.0);
            tokio::select! {
                _ = tokio::time::sleep(self.interval + jitter) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
