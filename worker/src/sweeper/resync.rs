//! [`Resync`]: drift repair at worker start and every `RESYNC_INTERVAL`
//! (with jitter, under a lock so one worker resyncs per interval). It reads
//! every live session from Redis, lists the session objects with one call
//! per kind by label, and enqueues a converge job (origin `drift`) for each
//! session that differs ([`super::drift::compare`] decides). Objects of
//! unknown sessions are reported (log line with names, metric), never
//! deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, ListParams};
use proto_types::scripts::enqueue::EnqueueReply;
use proto_types::scripts::sweep::SweepReply;
use proto_types::{Origin, SessionState, keys};
use tokio::sync::watch;

use super::drift::{Cluster, Live, compare};
use super::store::{DueSession, Store, StoreError};
use crate::clock::SharedClock;
use crate::k8s::names;
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
    /// `kind/name` of orphaned objects (reported, not deleted).
    pub orphans: Vec<String>,
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
        Ok(Self { store: Store::new(redis)?, kube, namespace, interval, clock, owner, metrics: None })
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
            live.extend(read.into_iter().filter(|s| {
                s.record.as_ref().is_some_and(|r| !matches!(r.status, SessionState::Deleted | SessionState::Deleting))
            }));
        }
        let views: Vec<Live> = live
            .iter()
            .filter_map(|s| s.record.as_ref().map(|r| Live { id: s.id.clone(), status: r.status, desired: r.desired }))
            .collect();
        let plan = compare(&views, &self.cluster().await?);
        let now = self.clock.now_ms();
        let mut report = ResyncReport { live: views.len(), orphans: plan.orphans, ..ResyncReport::default() };
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
            tracing::warn!(orphans = ?report.orphans, "drift: objects of unknown or deleted sessions (not deleted)");
        }
        if let Some(m) = &self.metrics {
            m.orphans(report.orphans.len() as i64);
        }
        Ok(report)
    }

    /// The session objects, one list call per kind.
    async fn cluster(&self) -> Result<Cluster, ResyncError> {
        let lp = ListParams::default().labels(&format!("{}={}", names::MANAGED_BY, names::SYSTEM));
        let mut c = Cluster::default();
        let session_of = |labels: Option<&std::collections::BTreeMap<String, String>>| {
            labels.and_then(|l| l.get(names::SESSION_LABEL)).cloned()
        };
        let note = |names: &mut HashMap<String, Vec<String>>, session: &str, kind: &str, name: Option<&String>| {
            names.entry(session.to_owned()).or_default().push(format!("{kind}/{}", name.map_or("", String::as_str)));
        };
        let list_err = |kind| move |source| ResyncError::List { kind, source };
        let deployments = Api::<Deployment>::namespaced(self.kube.clone(), &self.namespace)
            .list(&lp)
            .await
            .map_err(list_err("deployments"))?;
        for d in deployments {
            let Some(s) = session_of(d.metadata.labels.as_ref()) else { continue };
            note(&mut c.names, &s, "Deployment", d.metadata.name.as_ref());
            c.deployments.insert(s, d.spec.and_then(|spec| spec.replicas).unwrap_or(1));
        }
        let pvcs = Api::<PersistentVolumeClaim>::namespaced(self.kube.clone(), &self.namespace)
            .list(&lp)
            .await
            .map_err(list_err("persistentvolumeclaims"))?;
        for p in pvcs {
            let Some(s) = session_of(p.metadata.labels.as_ref()) else { continue };
            note(&mut c.names, &s, "PersistentVolumeClaim", p.metadata.name.as_ref());
            c.pvcs.insert(s);
        }
        let services = Api::<Service>::namespaced(self.kube.clone(), &self.namespace)
            .list(&lp)
            .await
            .map_err(list_err("services"))?;
        for svc in services {
            let Some(s) = session_of(svc.metadata.labels.as_ref()) else { continue };
            note(&mut c.names, &s, "Service", svc.metadata.name.as_ref());
            c.services.insert(s);
        }
        Ok(c)
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
