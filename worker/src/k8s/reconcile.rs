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
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::core::NamespaceResourceScope;
use kube::{Client, Resource};
use proto_types::{SessionId, SessionState};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;

use super::backup;
use super::error::{exec_error, is_not_found};
use super::k8s_config::K8sConfig;
use super::keda::{self, ScaledObject};
use super::names;
use super::objects;
use super::plan::{BackupView, DeploymentView, Observed, Step, Wait, plan};
use crate::executor::{ExecError, Executor, Outcome, Target};

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

    /// Observes every object of the session.
    pub async fn observe(&self, target: &Target) -> Result<Observed, ExecError> {
        let id = &target.session_id;
        let ws = names::workspace(id);
        let pvc_name = names::pvc(id);
        let job_name = names::backup_job(id, target.generation);
        let pods = ListParams::default().labels(&names::workspace_pod_selector(id));
        let want_backup = target.desired == proto_types::DesiredState::Deleted;
        let (pvc, deploy, svc, ing, so, pods, job) = tokio::try_join!(
            get_opt(self.api::<PersistentVolumeClaim>(), &pvc_name),
            get_opt(self.api::<Deployment>(), &ws),
            get_opt(self.api::<Service>(), &ws),
            get_opt(self.api::<Ingress>(), &ws),
            get_opt(self.api::<ScaledObject>(), &ws),
            traced("list", "Pod", &ws, async { self.api::<Pod>().list(&pods).await }),
            async { if want_backup { get_opt(self.api::<Job>(), &job_name).await } else { Ok(None) } },
        )?;
        Ok(Observed {
            pvc_uid: pvc.map(|p| p.metadata.uid.unwrap_or_default()),
            deployment: deploy.as_ref().map(deployment_view),
            upstream: svc.as_ref().and_then(service_upstream),
            service: svc.is_some(),
            ingress: ing.is_some(),
            scaled_object_paused: so.as_ref().map(keda::is_paused),
            // A terminating pod still holds the volume, so it counts.
            pods: pods.items.len(),
            backup: job.map(|j| BackupView { file: backup::file_of(&j), outcome: backup::outcome(&j) }),
        })
    }

    /// Performs one action step.
    pub async fn act(&self, target: &Target, step: &Step) -> Result<(), ExecError> {
        let cfg = &*self.config;
        let id = &target.session_id;
        let ws = names::workspace(id);
        match step {
            Step::ApplyPvc => apply(self.api(), &names::pvc(id), &objects::pvc(cfg, id)).await,
            Step::ApplyDeployment { replicas } => {
                apply(self.api(), &ws, &objects::deployment(cfg, id, *replicas)).await
            }
            Step::ApplyService => apply(self.api(), &ws, &objects::service(cfg, id)).await,
            Step::ApplyIngress => {
                apply(self.api(), &ws, &objects::ingress(cfg, id, target.workspace_url.as_deref())).await
            }
            Step::ApplyScaledObject { paused } => apply(self.api(), &ws, &keda::scaled_object(cfg, id, *paused)).await,
            Step::UnpauseScaledObject => {
                let patch = serde_json::json!({"metadata": {"annotations": {names::PAUSED_REPLICAS: null}}});
                let api = self.api::<ScaledObject>();
                let pp = PatchParams::default();
                traced("patch", "ScaledObject", &ws, async { api.patch(&ws, &pp, &Patch::Merge(&patch)).await })
                    .await
                    .map(drop)
            }
            Step::CreateBackup => {
                let file = backup::file_name(id, jiff::Timestamp::now());
                let job = backup::job(cfg, id, target.generation, &file);
                apply(self.api(), &names::backup_job(id, target.generation), &job).await
            }
            Step::DeleteScaledObject => delete(self.api::<ScaledObject>(), &ws, DeleteParams::default()).await,
            Step::DeleteIngress => delete(self.api::<Ingress>(), &ws, DeleteParams::default()).await,
            Step::DeleteService => delete(self.api::<Service>(), &ws, DeleteParams::default()).await,
            Step::DeleteDeployment => delete(self.api::<Deployment>(), &ws, DeleteParams::background()).await,
            Step::DeletePvc { uid } => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..DeleteParams::default()
                };
                delete(self.api::<PersistentVolumeClaim>(), &names::pvc(id), dp).await
            }
            Step::Wait(_) | Step::Done(_) | Step::Fail { .. } => Ok(()),
        }
    }

    fn bound(&self, wait: Wait) -> Duration {
        match wait {
            Wait::Ready => self.config.ready_timeout,
            Wait::PodsGone => self.config.pod_gone_timeout,
            Wait::Backup => self.config.backup_timeout,
        }
    }

    async fn run(&self, target: &Target) -> Result<Outcome, ExecError> {
        let mut waiting_since: HashMap<Wait, Instant> = HashMap::new();
        loop {
            let observed = self.observe(target).await?;
            let steps = plan(target.desired, &observed, self.config.routing);
            tracing::debug!(?observed, ?steps, "planned");
            for step in steps {
                match step {
                    Step::Done(outcome) => return Ok(outcome),
                    Step::Fail { reason } => {
                        return Err(ExecError::permanent(reason, SessionState::Failed));
                    }
                    Step::Wait(wait) => {
                        let since = *waiting_since.entry(wait).or_insert_with(Instant::now);
                        let bound = self.bound(wait);
                        if since.elapsed() > bound {
                            return Err(timed_out(wait, &target.session_id, target.generation, bound));
                        }
                        tokio::time::sleep(self.config.poll_interval).await;
                        break;
                    }
                    action => self.act(target, &action).await?,
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

/// `clusterIP:port` of a Service (its first port), once it has a cluster
/// IP; `None` for a headless Service or one not yet allocated.
fn service_upstream(svc: &Service) -> Option<String> {
    let spec = svc.spec.as_ref()?;
    let ip = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None")?;
    let port = spec.ports.as_ref()?.first()?.port;
    // An IPv6 cluster IP needs brackets to be a socket address.
    Some(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") })
}

fn timed_out(wait: Wait, id: &SessionId, generation: u64, bound: Duration) -> ExecError {
    let secs = bound.as_secs_f64();
    let message = match wait {
        Wait::Ready => format!("workspace {} did not become ready within {secs}s", names::workspace(id)),
        Wait::PodsGone => format!("workspace pods of {} still exist after {secs}s", names::workspace(id)),
        Wait::Backup => format!(
            "backup job {} did not finish within {secs}s; volume kept, delete again to retry",
            names::backup_job(id, generation)
        ),
    };
    ExecError::permanent(message, SessionState::Failed)
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

/// Runs one Kubernetes call in a span, classifying its error.
async fn traced<T>(
    verb: &'static str,
    kind: &str,
    name: &str,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, ExecError> {
    let span = tracing::debug_span!("k8s.request", k8s.verb = verb, k8s.kind = kind, k8s.name = name);
    fut.instrument(span).await.map_err(|e| exec_error(&format!("{verb} {kind} {name}"), e))
}

async fn get_opt<K>(api: Api<K>, name: &str) -> Result<Option<K>, ExecError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = kind_of::<K>();
    traced("get", &kind, name, async { api.get_opt(name).await }).await
}

async fn apply<K>(api: Api<K>, name: &str, obj: &K) -> Result<(), ExecError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let pp = PatchParams::apply(names::FIELD_MANAGER).force();
    traced("apply", &kind_of::<K>(), name, async { api.patch(name, &pp, &Patch::Apply(obj)).await }).await.map(drop)
}

async fn delete<K>(api: Api<K>, name: &str, dp: DeleteParams) -> Result<(), ExecError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = kind_of::<K>();
    traced("delete", &kind, name, async {
        match api.delete(name, &dp).await {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map(drop),
        }
    })
    .await
}

fn kind_of<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).into_owned()
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
