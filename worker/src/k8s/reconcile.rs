//! [`K8sExecutor`]: the production [`Executor`], converging one session on
//! Kubernetes through a `kube::Client` built by the caller.
//!
//! It loops *observe → [`plan`] → act*: observe the session's objects, plan,
//! run the leading actions (server-side apply under one field manager,
//! deletes where 404 counts as done), and on a wait pause for the poll
//! interval and observe again, within the wait's bound. All decisions are in
//! [`super::plan`]; this module only performs them. It is not the runner's
//! job loop (`crate::runner`), which decides about deliveries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::NamespaceResourceScope;
use kube::{Client, Resource};
use proto_types::scripts::start::RestoreSource;
use proto_types::{BackupKind, DesiredState, SessionId, SessionState};
use tokio::time::Instant;
use tracing::Instrument;

use super::call::{get_opt, traced};
use super::k8s_config::BackupMode;
use super::k8s_config::K8sConfig;
use super::keda::{self, ScaledObject};
use super::plan::{BackupView, DeploymentView, Observed, RestoreProgress, RestoreView, Stale, Step, Wait, plan};
use super::snapshot::{self, VolumeSnapshot};
use super::{backup, gate, names, objects, restore};
use crate::entitlement::CreatePurpose;
use crate::executor::{ExecError, Executor, FailedBackup, Outcome, Target};

/// Converges sessions on Kubernetes. Cheap to clone.
#[derive(Clone)]
pub struct K8sExecutor {
    client: Client,
    config: Arc<K8sConfig>,
}

impl K8sExecutor {
    /// An executor acting through `client` (already configured: kubeconfig
    /// or in-cluster) with `config`.
    pub fn new(client: Client, config: K8sConfig) -> Self {
        Self { client, config: Arc::new(config) }
    }

    /// The configuration in use.
    pub fn config(&self) -> &K8sConfig {
        &self.config
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// Observes every object of the session. Fenced when one of them
    /// already carries a newer lease's token than ours.
    pub async fn observe(&self, target: &Target) -> Result<Observed, ExecError> {
        let id = &target.session_id;
        let ws = names::workspace(id);
        let pvc_name = names::pvc(id);
        let job_name = names::backup_job(id, target.generation);
        let pods = ListParams::default().labels(&names::workspace_pod_selector(id));
        let want_backup = target.desired == proto_types::DesiredState::Deleted || target.on_demand_backup();
        let (pvc_api, deploy_api, svc_api, ing_api, so_api) = (
            self.api::<PersistentVolumeClaim>(),
            self.api::<Deployment>(),
            self.api::<Service>(),
            self.api::<Ingress>(),
            self.api::<ScaledObject>(),
        );
        let job_api = self.api::<Job>();
        let snap_api = self.api::<VolumeSnapshot>();
        let snap_name = names::backup_snapshot(id, target.generation);
        let mode = self.config.backup_mode;
        let (pvc, deploy, svc, ing, so, pods, job, snap) = tokio::try_join!(
            get_opt(&pvc_api, &pvc_name),
            get_opt(&deploy_api, &ws),
            get_opt(&svc_api, &ws),
            get_opt(&ing_api, &ws),
            get_opt(&so_api, &ws),
            traced("list", "Pod", &ws, async { self.api::<Pod>().list(&pods).await }),
            async {
                match want_backup && mode == BackupMode::Archive {
                    true => get_opt(&job_api, &job_name).await,
                    false => Ok(None),
                }
            },
            async {
                match want_backup && mode == BackupMode::Snapshot {
                    true => get_opt(&snap_api, &snap_name).await,
                    false => Ok(None),
                }
            },
        )?;
        let lease = &target.lease;
        let behind = |meta: Option<&kube::api::ObjectMeta>| meta.is_some_and(|m| gate::fence_of(m) < lease.token());
        if let Some(o) = &pvc {
            gate::not_newer(o, lease)?
        }
        if let Some(o) = &deploy {
            gate::not_newer(o, lease)?
        }
        if let Some(o) = &svc {
            gate::not_newer(o, lease)?
        }
        if let Some(o) = &ing {
            gate::not_newer(o, lease)?
        }
        if let Some(o) = &so {
            gate::not_newer(o, lease)?
        }
        let stale = Stale {
            pvc: behind(pvc.as_ref().map(Resource::meta)),
            deployment: behind(deploy.as_ref().map(Resource::meta)),
            service: behind(svc.as_ref().map(Resource::meta)),
            ingress: behind(ing.as_ref().map(Resource::meta)),
            scaled_object: behind(so.as_ref().map(Resource::meta)),
        };
        let backup_id = names::backup_id(id, target.generation);
        let backup = match (job, snap) {
            (Some(j), _) => Some(self.backup_view(&j, backup_id, &job_name).await?),
            (None, Some(s)) => Some(snapshot_backup_view(&s, backup_id, &snap_name)),
            (None, None) => None,
        };
        let restore = match &target.restore {
            None => None,
            Some(source) => Some(RestoreView {
                backup_id: source.backup_id.clone(),
                progress: self.restore_progress(id, source, deploy.is_some(), pvc.is_some()).await?,
            }),
        };
        Ok(Observed {
            pvc_uid: pvc.map(|p| p.metadata.uid.unwrap_or_default()),
            deployment: deploy.as_ref().map(deployment_view),
            upstream: svc.as_ref().and_then(service_upstream),
            service: svc.is_some(),
            ingress: ing.is_some(),
            scaled_object_paused: so.as_ref().map(keda::is_paused),
            // A terminating pod still holds the volume, so it counts.
            pods: pods.items.len(),
            backup,
            on_demand_backup: target.on_demand_backup(),
            restore,
            stale,
        })
    }

    /// The backup Job as the planner sees it; once it succeeded, with what
    /// its pod reported (one pod list by the Job's `job-name` label).
    async fn backup_view(&self, job: &Job, id: String, job_name: &str) -> Result<BackupView, ExecError> {
        let outcome = backup::outcome(job);
        let report = if outcome == backup::JobOutcome::Succeeded {
            let lp = ListParams::default().labels(&format!("{}={job_name}", names::JOB_NAME_LABEL));
            let pods = traced("list", "Pod", job_name, async { self.api::<Pod>().list(&lp).await }).await?;
            Some(backup::report_of(&pods.items))
        } else {
            None
        };
        Ok(BackupView { id, kind: BackupKind::Archive, file: backup::file_of(job), outcome, report, error: None })
    }

    /// How far the restore from `source` is. Nothing is read once the
    /// Deployment exists (the restore is done), nor a snapshot once the
    /// volume exists (it was made from it).
    async fn restore_progress(
        &self,
        id: &SessionId,
        source: &RestoreSource,
        deployed: bool,
        volume: bool,
    ) -> Result<RestoreProgress, ExecError> {
        match source.kind {
            BackupKind::Archive if deployed => Ok(RestoreProgress::Job(Some(backup::JobOutcome::Succeeded))),
            BackupKind::Archive => {
                let name = names::restore_job(id);
                Ok(RestoreProgress::Job(match get_opt(&self.api::<Job>(), &name).await? {
                    None => None,
                    Some(j) => Some(self.restore_outcome(&j, &name).await?),
                }))
            }
            BackupKind::Snapshot if deployed || volume => Ok(RestoreProgress::Snapshot(Some(true))),
            BackupKind::Snapshot => {
                let s = get_opt(&self.api::<VolumeSnapshot>(), &source.location).await?;
                Ok(RestoreProgress::Snapshot(s.map(|s| snapshot::view(&s).ready)))
            }
        }
    }

    /// Where the restore Job is; a failure carries the reason its pod
    /// reported (one pod list by `job-name`), else the Job's condition.
    async fn restore_outcome(&self, job: &Job, job_name: &str) -> Result<backup::JobOutcome, ExecError> {
        let outcome = backup::outcome(job);
        let backup::JobOutcome::Failed(condition) = outcome else { return Ok(outcome) };
        let lp = ListParams::default().labels(&format!("{}={job_name}", names::JOB_NAME_LABEL));
        let pods = traced("list", "Pod", job_name, async { self.api::<Pod>().list(&lp).await }).await?;
        Ok(backup::JobOutcome::Failed(restore::failure_of(&pods.items).unwrap_or(condition)))
    }

    /// Performs one action step, through the write gate (`gate.rs`).
    pub async fn act(&self, target: &Target, step: &Step) -> Result<(), ExecError> {
        let cfg = &*self.config;
        let id = &target.session_id;
        let ws = names::workspace(id);
        let lease = &target.lease;
        // A delete never creates a workspace object: its steps only update existing ones.
        let create = (target.desired != DesiredState::Deleted).then_some(CreatePurpose::Workspace);
        match step {
            Step::ApplyPvc => {
                let claim = match &target.restore {
                    Some(r) if r.kind == BackupKind::Snapshot => {
                        objects::pvc_from_snapshot(cfg, id, &r.location, r.size_bytes)
                    }
                    _ => objects::pvc(cfg, id),
                };
                gate::apply(&self.api(), lease, &names::pvc(id), claim, create).await
            }
            Step::ApplyDeployment { replicas } => {
                gate::apply(&self.api(), lease, &ws, objects::deployment(cfg, id, *replicas), create).await
            }
            Step::ApplyService => gate::apply(&self.api(), lease, &ws, objects::service(cfg, id), create).await,
            Step::ApplyIngress => {
                let ing = objects::ingress(cfg, id, target.workspace_url.as_deref());
                gate::apply(&self.api(), lease, &ws, ing, create).await
            }
            Step::ApplyScaledObject { paused } => {
                gate::apply(&self.api(), lease, &ws, keda::scaled_object(cfg, id, *paused), create).await
            }
            Step::UnpauseScaledObject => {
                let patch = serde_json::json!({"metadata": {"annotations": {names::PAUSED_REPLICAS: null}}});
                gate::merge(&self.api::<ScaledObject>(), lease, &ws, patch).await
            }
            Step::CreateBackup if cfg.backup_mode == BackupMode::Snapshot => {
                let snap = snapshot::snapshot(cfg, id, target.generation);
                let name = names::backup_snapshot(id, target.generation);
                let purpose = CreatePurpose::Backup(BackupKind::Snapshot);
                gate::create_once(&self.api(), lease, &name, snap, purpose).await
            }
            Step::CreateBackup => {
                let now = jiff::Timestamp::now();
                let file = backup::file_name(id, target.generation, now);
                let job = backup::job(cfg, id, target.generation, &file);
                let name = names::backup_job(id, target.generation);
                let purpose = CreatePurpose::Backup(BackupKind::Archive);
                gate::create_once(&self.api(), lease, &name, job, purpose).await
            }
            Step::CreateRestore => {
                let Some(source) = &target.restore else {
                    return Err(ExecError::permanent(
                        "restore planned without a backup to restore",
                        SessionState::Failed,
                    ));
                };
                let job = restore::job(cfg, id, source);
                gate::create_once(&self.api(), lease, &names::restore_job(id), job, CreatePurpose::Workspace).await
            }
            Step::DeleteScaledObject => {
                gate::delete(&self.api::<ScaledObject>(), lease, &ws, None, DeleteParams::default()).await
            }
            Step::DeleteIngress => {
                gate::delete(&self.api::<Ingress>(), lease, &ws, None, DeleteParams::default()).await
            }
            Step::DeleteService => {
                gate::delete(&self.api::<Service>(), lease, &ws, None, DeleteParams::default()).await
            }
            Step::DeleteDeployment => {
                gate::delete(&self.api::<Deployment>(), lease, &ws, None, DeleteParams::background()).await
            }
            Step::DeletePvc { uid } => {
                let api = self.api::<PersistentVolumeClaim>();
                gate::delete(&api, lease, &names::pvc(id), Some(uid), DeleteParams::default()).await
            }
            Step::Wait(_) | Step::Done(_) | Step::Fail { .. } => Ok(()),
        }
    }

    fn bound(&self, wait: Wait) -> Duration {
        match wait {
            Wait::Ready => self.config.ready_timeout,
            Wait::PodsGone => self.config.pod_gone_timeout,
            Wait::Backup | Wait::Restore => self.config.backup_timeout,
        }
    }

    async fn run(&self, target: &Target) -> Result<Outcome, ExecError> {
        let mut waiting_since: HashMap<Wait, Instant> = HashMap::new();
        loop {
            // Boxed: the observation's future is large, and a worker thread's stack is not.
            let observed = Box::pin(self.observe(target)).await?;
            let steps = plan(target.desired, &observed, self.config.routing);
            let failed_backup = observed.backup.as_ref().map(|b| FailedBackup {
                id: b.id.clone(),
                kind: b.kind,
                location: b.file.clone().unwrap_or_default(),
            });
            let snapshot_error = observed.backup.as_ref().and_then(|b| b.error.clone());
            tracing::debug!(?observed, ?steps, "planned");
            for step in steps {
                match step {
                    Step::Done(outcome) => return Ok(outcome),
                    Step::Fail { reason } => {
                        // A delete fails only over its backup once the Job
                        // exists; a failed on-demand backup leaves the
                        // session asleep.
                        let err = ExecError::permanent(reason, fail_status(target));
                        return Err(match failed_backup {
                            Some(b) => err.with_failed_backup(b),
                            None => err,
                        });
                    }
                    Step::Wait(wait) => {
                        let since = *waiting_since.entry(wait).or_insert_with(Instant::now);
                        let bound = self.bound(wait);
                        if since.elapsed() > bound {
                            let err = timed_out(wait, target, bound, self.config.backup_mode, snapshot_error);
                            return Err(match (wait, failed_backup) {
                                (Wait::Backup, Some(b)) => err.with_failed_backup(b),
                                _ => err,
                            });
                        }
                        tokio::time::sleep(self.config.poll_interval).await;
                        break;
                    }
                    action => Box::pin(self.act(target, &action)).await?,
                }
            }
        }
    }
}

impl Executor for K8sExecutor {
    fn converge(&self, target: &Target) -> impl Future<Output = Result<Outcome, ExecError>> + Send {
        // Debug level: the runner's `job.converge` span carries the same at info.
        let span = tracing::debug_span!(
            "k8s.converge",
            session.uuid = %target.session_id,
            desired = %target.desired,
            generation = target.generation,
            job.id = %target.job_id,
            attempt = target.attempt,
        );
        self.run(target).instrument(span)
    }
}

/// A VolumeSnapshot as the planner sees a backup: ready is a succeeded
/// backup reporting its `restoreSize` (no checksum), anything else is one
/// still being taken (the snapshot controller retries its errors).
fn snapshot_backup_view(s: &VolumeSnapshot, id: String, name: &str) -> BackupView {
    let v = snapshot::view(s);
    let (outcome, report) = match v.ready {
        true => (
            backup::JobOutcome::Succeeded,
            Some(Ok(backup::ArchiveReport { size_bytes: v.size_bytes, sha256: String::new() })),
        ),
        false => (backup::JobOutcome::Running, None),
    };
    BackupView { id, kind: BackupKind::Snapshot, file: Some(name.to_owned()), outcome, report, error: v.error }
}

/// `clusterIP:port` of a Service (its first port), once it has a cluster
/// IP; `None` for a headless Service or one not yet allocated.
fn service_upstream(svc: &Service) -> Option<String> {
    let spec = svc.spec.as_ref()?;
    let ip = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None")?;
    let port = spec.ports.as_ref()?.first()?.port;
    // An IPv6 cluster IP needs brackets to be a socket address.
    Some(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") })
}

/// The session status a failed converge records: `failed`, except that a
/// failed on-demand backup leaves the session asleep (only the job fails).
fn fail_status(target: &Target) -> SessionState {
    if target.on_demand_backup() { SessionState::Sleeping } else { SessionState::Failed }
}

fn timed_out(
    wait: Wait,
    target: &Target,
    bound: Duration,
    mode: BackupMode,
    snapshot_error: Option<String>,
) -> ExecError {
    let (id, generation) = (&target.session_id, target.generation);
    let secs = bound.as_secs_f64();
    let then =
        if target.on_demand_backup() { "the session stays asleep" } else { "volume kept, delete again to retry" };
    let last = snapshot_error.map(|e| format!(" (last error: {e})")).unwrap_or_default();
    let message = match (wait, mode, &target.restore) {
        (Wait::Ready, ..) => format!("workspace {} did not become ready within {secs}s", names::workspace(id)),
        (Wait::PodsGone, ..) => format!("workspace pods of {} still exist after {secs}s", names::workspace(id)),
        (Wait::Backup, BackupMode::Snapshot, _) => format!(
            "volume snapshot {} was not ready to use within {secs}s{last}; {then}",
            names::backup_snapshot(id, generation)
        ),
        (Wait::Backup, BackupMode::Archive, _) => {
            format!("backup job {} did not finish within {secs}s; {then}", names::backup_job(id, generation))
        }
        (Wait::Restore, _, Some(r)) if r.kind == BackupKind::Snapshot => {
            format!("volume snapshot {} of backup {} was not ready to use within {secs}s", r.location, r.backup_id)
        }
        (Wait::Restore, ..) => format!("restore job {} did not finish within {secs}s", names::restore_job(id)),
    };
    ExecError::permanent(message, fail_status(target))
}

/// Ready replicas count only once the controller has seen the current spec:
/// right after a scale change the status still describes the old one.
fn deployment_view(d: &Deployment) -> DeploymentView {
    let status = d.status.as_ref();
    let stale = match (status.and_then(|s| s.observed_generation), d.metadata.generation) {
        (Some(seen), Some(current)) => seen < current,
        _ => false,
    };
    DeploymentView {
        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: if stale { 0 } else { status.and_then(|s| s.ready_replicas).unwrap_or(0) },
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    use super::*;

    fn dep(generation: Option<i64>, observed: Option<i64>, ready: i32) -> Deployment {
        Deployment {
            metadata: kube::api::ObjectMeta { generation, ..Default::default() },
            spec: Some(DeploymentSpec { replicas: Some(1), ..Default::default() }),
            status: Some(DeploymentStatus {
                observed_generation: observed,
                ready_replicas: Some(ready),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn ready_replicas_of_an_old_spec_do_not_count() {
        // Woken again before the old pod was gone: status still shows it.
        assert_eq!(deployment_view(&dep(Some(3), Some(2), 1)).ready, 0);
        assert_eq!(deployment_view(&dep(Some(3), Some(3), 1)).ready, 1);
        assert_eq!(deployment_view(&dep(None, None, 1)).ready, 1);
    }

    #[test]
    fn the_upstream_is_the_cluster_ip_and_first_port() {
        use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
        let svc = |ip: Option<&str>| Service {
            spec: Some(ServiceSpec {
                cluster_ip: ip.map(str::to_owned),
                ports: Some(vec![ServicePort { port: 8080, ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(service_upstream(&svc(Some("10.96.0.7"))).as_deref(), Some("10.96.0.7:8080"));
        assert_eq!(service_upstream(&svc(Some("fd00::7"))).as_deref(), Some("[fd00::7]:8080"));
        for none in [None, Some(""), Some("None")] {
            assert_eq!(service_upstream(&svc(none)), None, "{none:?}");
        }
    }
}
