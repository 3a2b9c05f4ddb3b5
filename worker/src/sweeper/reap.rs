//! [`Reaper`]: deletes one orphaned session's objects when the worker runs
//! with `RESYNC_DELETE_ORPHANS=true`, as [`super::orphans::plan`] says: the
//! Deployment and Service at once, the PersistentVolumeClaim only after its
//! backup Job (`ws-{uuid}-backup-orphan`, reusing [`backup::job`]) has
//! succeeded, possibly on a later resync.
//!
//! Every write goes through the write gate ([`gate`]). An orphan has no
//! session lease, so the guard is one with no deadline whose token is the
//! highest fencing token the orphan's objects carried when the resync listed
//! them: if a lease holder writes any of them after that (a session of that
//! id is back), its newer token makes the gate refuse. Before any write, the
//! session is read again from Redis and must still be unknown or deleted;
//! the gate's uid and `resourceVersion` preconditions cover the rest.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams};
use proto_types::SessionId;

use super::drift::{Kind, Listed};
use super::orphans::{OrphanSteps, plan};
use super::store::{Store, StoreError};
use crate::entitlement::{CreatePurpose, LeaseGuard};
use crate::executor::ExecError;
use crate::k8s::backup;
use crate::k8s::{K8sConfig, gate};

/// Reaping one orphaned session failed.
#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    /// The Redis re-check.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the backup Job.
    #[error("reading backup job {name} failed")]
    ReadBackup {
        /// The Job.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// A gated write (create or delete).
    #[error("{what} failed")]
    Write {
        /// What was written.
        what: String,
        /// Cause.
        #[source]
        source: ExecError,
    },
}

/// What reaping one session did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// `kind/name` deleted.
    pub deleted: Vec<String>,
    /// The claim's backup Job was created (the claim goes on a later resync).
    pub backup_started: bool,
    /// `kind/name` of a claim kept because its backup failed, with the reason.
    pub backup_failed: Option<(String, String)>,
    /// The session is known again: nothing was touched.
    pub skipped: bool,
}

/// The name of the backup Job of an orphaned session's claim.
pub fn backup_job_name(id: &SessionId) -> String {
    format!("ws-{id}-backup-orphan")
}

/// Deletes orphaned objects of one namespace.
#[derive(Clone)]
pub struct Reaper {
    store: Store,
    kube: kube::Client,
    config: K8sConfig,
}

impl Reaper {
    /// A reaper of `config.namespace`.
    pub fn new(store: Store, kube: kube::Client, config: K8sConfig) -> Self {
        Self { store, kube, config }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.kube.clone(), &self.config.namespace)
    }

    /// Reaps `objects`, all labelled with session `id`, at `now_ms`.
    pub async fn reap(&self, id: &SessionId, objects: &[Listed], now_ms: u64) -> Result<Reaped, ReapError> {
        if !self.store.session_gone(id).await? {
            return Ok(Reaped { skipped: true, ..Reaped::default() });
        }
        let guard = LeaseGuard::unbounded(objects.iter().map(|o| o.fence).max().unwrap_or(0));
        let jobs = self.api::<Job>();
        let job_name = backup_job_name(id);
        let has_claim = objects.iter().any(|o| o.kind == Kind::PersistentVolumeClaim);
        let outcome = if has_claim {
            jobs.get_opt(&job_name)
                .await
                .map_err(|source| ReapError::ReadBackup { name: job_name.clone(), source })?
                .map(|j| backup::outcome(&j))
        } else {
            None
        };
        let steps: OrphanSteps = plan(objects, outcome.as_ref());
        let mut reaped = Reaped::default();
        for o in &steps.delete {
            let (name, uid, dp) = (o.name.as_str(), o.uid.as_deref(), DeleteParams::default());
            let done = match o.kind {
                Kind::Deployment => gate::delete(&self.api::<Deployment>(), &guard, name, uid, dp).await,
                Kind::Service => gate::delete(&self.api::<Service>(), &guard, name, uid, dp).await,
                Kind::PersistentVolumeClaim => {
                    gate::delete(&self.api::<PersistentVolumeClaim>(), &guard, name, uid, dp).await
                }
            };
            done.map_err(|source| ReapError::Write { what: format!("delete {o}"), source })?;
            reaped.deleted.push(o.to_string());
        }
        if steps.create_backup {
            let at = jiff::Timestamp::from_millisecond(i64::try_from(now_ms).unwrap_or(i64::MAX))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let mut job = backup::job(&self.config, id, 0, &backup::file_name(id, 0, at));
            job.metadata.name = Some(job_name.clone());
            gate::create_once(&jobs, &guard, &job_name, job, CreatePurpose::Backup(proto_types::BackupKind::Archive))
                .await
                .map_err(|source| ReapError::Write { what: format!("create Job/{job_name}"), source })?;
            reaped.backup_started = true;
        }
        if let Some(why) = steps.backup_failed {
            let claim = objects.iter().find(|o| o.kind == Kind::PersistentVolumeClaim).map(Listed::to_string);
            reaped.backup_failed = claim.map(|c| (c, why));
        }
        Ok(reaped)
    }
}
