//! A simulated kubelet (and Deployment/Job controller) for the stand-in
//! cluster: it makes the session manager's Deployments ready and their pods
//! vanish, and completes (or fails) backup Jobs, after a configurable delay.
//!
//! It works only through a `kube::Client`, so the same code drives an
//! in-process `kube-fake-client` in tests and the stand-in server. Call
//! [`Kubelet::tick`] to make one pass (tests), or [`Kubelet::run`] to tick
//! on an interval until shutdown. Only objects labelled
//! `app.kubernetes.io/managed-by=session-manager` are touched.
//!
//! What one pass does:
//! - Deployment with `replicas > 0` and fewer pods than that: once the
//!   Deployment has wanted them for `delay`, create the pods (labels and spec
//!   from the pod template, phase `Running`, `Ready`), then set
//!   `status.replicas/readyReplicas/availableReplicas/updatedReplicas`.
//! - Deployment with `replicas == 0` and pods left: after `delay`, delete
//!   the pods and zero the status.
//! - Job without a finished condition: after `delay`, mark it `Complete`
//!   (`succeeded: 1`), or `Failed` (`BackoffLimitExceeded`) when
//!   `fail_backups` is set.
//!
//! Cost: a pass lists Deployments, Jobs and (all) pods once each and groups the pods by
//! label in memory, so it is linear in the number of sessions; converged objects cause
//! no writes. When the last pass wrote nothing, nothing is waiting out its delay and the
//! Deployments and Jobs are unchanged (count and highest resourceVersion), a pass stops
//! after listing those two; every 11th pass is full anyway, so pods
//! deleted by someone else come back within about a second.
//!
//! Status is written through the status subresource (merge patch on
//! `/status`), which the fake accepts whether or not the kind registered one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::time::Instant;

/// Label selector of the objects the kubelet manages.
pub const MANAGED: &str = "app.kubernetes.io/managed-by=session-manager";

/// Kubelet settings.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// How long a Deployment or Job waits before the kubelet acts on it.
    pub delay: Duration,
    /// Fail backup Jobs instead of completing them.
    pub fail_backups: bool,
    /// Only this namespace; `None` watches all namespaces.
    pub namespace: Option<String>,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        Self { delay: Duration::from_millis(200), fail_backups: false, namespace: None }
    }
}

/// A failed Kubernetes call of the kubelet.
#[derive(Debug, thiserror::Error)]
#[error("kubelet: {what}: {source}")]
pub struct KubeletError {
    /// The call, e.g. `create pod workspaces/ws-abc-0`.
    pub what: String,
    /// The client error.
    #[source]
    pub source: kube::Error,
}

/// What one [`Kubelet::tick`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Pods created.
    pub pods_created: usize,
    /// Pods deleted.
    pub pods_deleted: usize,
    /// Jobs marked succeeded.
    pub jobs_succeeded: usize,
    /// Jobs marked failed.
    pub jobs_failed: usize,
}

/// Identifies a pending change: (kind, namespace, name).
type Key = (&'static str, String, String);

/// The simulated kubelet.
pub struct Kubelet {
    client: Client,
    config: KubeletConfig,
    fail_backups: AtomicBool,
    /// Each pending change: its goal and when it was first seen.
    seen: Mutex<HashMap<Key, (String, Instant)>>,
    /// The Deployments/Jobs fingerprint of the last idle pass, and how many passes were
    /// skipped since.
    idle: Mutex<(Option<Fingerprint>, u32)>,
}

/// Idle passes skipped in a row before a full pass anyway (one that lists pods too, and so
/// notices pods changed by someone else).
const MAX_SKIPPED: u32 = 10;

/// Count and highest resourceVersion of a list: the fake's resourceVersions come from one
/// counter, so any create or update raises the highest and any delete lowers the count.
type Fingerprint = [(usize, u64); 2];

fn fingerprint<K: kube::Resource>(items: &[K]) -> Option<(usize, u64)> {
    let mut max = 0;
    for item in items {
        max = max.max(item.meta().resource_version.as_deref()?.parse::<u64>().ok()?);
    }
    Some((items.len(), max))
}

fn err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeletError {
    let what = what.into();
    move |source| KubeletError { what, source }
}

/// The pods of one tick's list, indexed by (namespace, label key, label value), so a
/// Deployment's selector finds its pods without another list call.
struct PodIndex<'a> {
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a Pod>>,
}

impl<'a> PodIndex<'a> {
    fn new(pods: &'a [Pod]) -> Self {
        let mut by_label: HashMap<_, Vec<&Pod>> = HashMap::new();
        for pod in pods {
            let Some(ns) = pod.metadata.namespace.as_deref() else { continue };
            for (k, v) in pod.metadata.labels.iter().flatten() {
                by_label.entry((ns, k.as_str(), v.as_str())).or_default().push(pod);
            }
        }
        Self { by_label }
    }

    /// The pods in `ns` carrying every label of the (non-empty) `selector`.
    fn select(&self, ns: &str, selector: &BTreeMap<String, String>) -> Vec<&'a Pod> {
        let Some((k, v)) = selector.iter().next() else { return Vec::new() };
        let Some(candidates) = self.by_label.get(&(ns, k.as_str(), v.as_str())) else { return Vec::new() };
        candidates
            .iter()
            .copied()
            .filter(|p| {
                let labels = p.metadata.labels.as_ref();
                selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            })
            .collect()
    }
}

impl Kubelet {
    /// A kubelet acting through `client`.
    pub fn new(client: Client, config: KubeletConfig) -> Self {
        let fail = config.fail_backups;
        Self {
            client,
            config,
            fail_backups: AtomicBool::new(fail),
            seen: Mutex::new(HashMap::new()),
            idle: Mutex::new((None, 0)),
        }
    }

    /// Switches backup Jobs between failing and succeeding from now on.
    pub fn set_fail_backups(&self, fail: bool) {
        self.fail_backups.store(fail, Ordering::SeqCst);
    }

    fn api<K>(&self, ns: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        match ns {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// Whether `key` has been pending towards `goal` for at least the delay (recording when
    /// it was first seen; a new goal restarts the clock).
    fn due(&self, key: Key, goal: &str) -> bool {
        let mut seen = self.seen.lock().expect("kubelet state lock poisoned");
        let entry = seen.entry(key).or_insert_with(|| (goal.to_owned(), Instant::now()));
        if entry.0 != goal {
            *entry = (goal.to_owned(), Instant::now());
        }
        entry.1.elapsed() >= self.config.delay
    }

    fn forget(&self, key: &Key) {
        let mut seen = self.seen.lock().expect("kubelet state lock poisoned");
        if !seen.is_empty() {
            seen.remove(key);
        }
    }

    /// One pass over managed Deployments and Jobs: one list each of Deployments, pods and
    /// Jobs, and writes only for objects that are not yet where they should be. When the
    /// last pass changed nothing, nothing is pending and the Deployments and Jobs are
    /// unchanged, the pass stops after those two lists (every 11th pass is full anyway).
    pub async fn tick(&self) -> Result<TickReport, KubeletError> {
        let mut report = TickReport::default();
        let lp = ListParams::default().labels(MANAGED);
        let ns = self.config.namespace.as_deref();
        let deployments = self.api::<Deployment>(ns).list(&lp).await.map_err(err("list deployments"))?;
        let jobs = self.api::<Job>(ns).list(&lp).await.map_err(err("list jobs"))?;
        let print = fingerprint(&deployments.items).zip(fingerprint(&jobs.items)).map(|(d, j)| [d, j]);
        if self.skip(print) {
            return Ok(report);
        }
        if !deployments.items.is_empty() {
            // All pods, not only managed ones: a template without labels gives its pods just the
            // selector's labels.
            let pods = self.api::<Pod>(ns).list(&ListParams::default()).await.map_err(err("list pods"))?;
            let index = PodIndex::new(&pods.items);
            for d in &deployments.items {
                self.deployment(d, &index, &mut report).await?;
            }
        }
        for j in &jobs.items {
            self.job(j, &mut report).await?;
        }
        self.prune(&deployments.items, &jobs.items);
        let pending = !self.seen.lock().expect("kubelet state lock poisoned").is_empty();
        let idle = report == TickReport::default() && !pending;
        // A pass that wrote only a status still changed the fingerprint: the next pass is full.
        *self.idle.lock().expect("kubelet state lock poisoned") = (print.filter(|_| idle), 0);
        Ok(report)
    }

    /// Whether this pass can stop early: the last pass was idle with the same fingerprint
    /// and fewer than `MAX_SKIPPED` passes were skipped since.
    fn skip(&self, print: Option<Fingerprint>) -> bool {
        let mut idle = self.idle.lock().expect("kubelet state lock poisoned");
        let same = print.is_some() && idle.0 == print;
        if same && idle.1 < MAX_SKIPPED {
            idle.1 += 1;
            return true;
        }
        false
    }

    /// Drops pending entries of objects that no longer exist.
    fn prune(&self, deployments: &[Deployment], jobs: &[Job]) {
        let mut seen = self.seen.lock().expect("kubelet state lock poisoned");
        if seen.is_empty() {
            return;
        }
        let names: HashSet<(&str, String, String)> = deployments
            .iter()
            .map(|d| ("Deployment", d.namespace().unwrap_or_default(), d.name_any()))
            .chain(jobs.iter().map(|j| ("Job", j.namespace().unwrap_or_default(), j.name_any())))
            .collect();
        seen.retain(|k, _| names.contains(&(k.0, k.1.clone(), k.2.clone())));
    }

    /// Ticks every `interval` until `shutdown` completes; errors are logged
    /// and the next tick tries again.
    pub async fn run(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "kubelet tick failed");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn deployment(
        &self,
        d: &Deployment,
        index: &PodIndex<'_>,
        report: &mut TickReport,
    ) -> Result<(), KubeletError> {
        let (Some(ns), name) = (d.namespace(), d.name_any()) else { return Ok(()) };
        let Some(spec) = d.spec.as_ref() else { return Ok(()) };
        let want = spec.replicas.unwrap_or(1).max(0);
        let Some(selector) = spec.selector.match_labels.as_ref().filter(|s| !s.is_empty()) else { return Ok(()) };
        let pods = index.select(&ns, selector);
        let have = i32::try_from(pods.len()).unwrap_or(i32::MAX);
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        let seen = d.status.as_ref().and_then(|s| s.observed_generation);
        let current = seen.is_none_or(|g| d.metadata.generation.is_none_or(|cur| g >= cur));
        let key: Key = ("Deployment", ns.clone(), name.clone());
        if have == want && ready == want && current {
            self.forget(&key);
            return Ok(());
        }
        if !self.due(key.clone(), &want.to_string()) {
            return Ok(());
        }
        let pods_api = self.api::<Pod>(Some(&ns));
        if have < want {
            let template = &spec.template;
            let labels: BTreeMap<String, String> =
                template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_else(|| selector.clone());
            for i in 0..want {
                let pod_name = format!("{name}-{i}");
                if pods.iter().any(|p| p.metadata.name.as_deref() == Some(pod_name.as_str())) {
                    continue;
                }
                let pod = Pod {
                    metadata: ObjectMeta {
                        name: Some(pod_name.clone()),
                        namespace: Some(ns.clone()),
                        labels: Some(labels.clone()),
                        ..Default::default()
                    },
                    spec: template.spec.clone(),
                    status: serde_json::from_value(json!({
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True"}],
                    }))
                    .ok(),
                };
                match pods_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => report.pods_created += 1,
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(err(format!("create pod {ns}/{pod_name}"))(e)),
                }
            }
        } else if have > want {
            let mut sorted: Vec<_> = pods.iter().map(|p| p.name_any()).collect();
            sorted.sort();
            for pod_name in sorted.into_iter().skip(usize::try_from(want).unwrap_or(0)) {
                match pods_api.delete(&pod_name, &DeleteParams::default()).await {
                    Ok(_) => report.pods_deleted += 1,
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(err(format!("delete pod {ns}/{pod_name}"))(e)),
                }
            }
        }
        let status = json!({"status": {
            "observedGeneration": d.metadata.generation,
            "replicas": want,
            "readyReplicas": want,
            "availableReplicas": want,
            "updatedReplicas": want,
        }});
        self.api::<Deployment>(Some(&ns))
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(err(format!("patch deployment status {ns}/{name}")))?;
        self.forget(&key);
        Ok(())
    }

    async fn job(&self, j: &Job, report: &mut TickReport) -> Result<(), KubeletError> {
        let (Some(ns), name) = (j.namespace(), j.name_any()) else { return Ok(()) };
        let finished =
            j.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                c.iter().any(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
            });
        let key: Key = ("Job", ns.clone(), name.clone());
        if finished {
            self.forget(&key);
            return Ok(());
        }
        if !self.due(key.clone(), "finish") {
            return Ok(());
        }
        let now = jiff::Timestamp::now().to_string();
        let fail = self.fail_backups.load(Ordering::SeqCst);
        let status = if fail {
            let limit = j.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6);
            json!({"status": {
                "startTime": now, "failed": limit + 1, "active": 0,
                "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit", "lastTransitionTime": now}],
            }})
        } else {
            json!({"status": {
                "startTime": now, "completionTime": now, "succeeded": 1, "active": 0,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "lastTransitionTime": now},
                ],
            }})
        };
        self.api::<Job>(Some(&ns))
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(err(format!("patch job status {ns}/{name}")))?;
        if fail {
            report.jobs_failed += 1;
        } else {
            report.jobs_succeeded += 1;
        }
        self.forget(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/managed-by".to_owned(), "session-manager".to_owned()),
            ("session-uuid".to_owned(), "abc".to_owned()),
        ])
    }

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ws".into()),
            labels: Some(labels()),
            ..Default::default()
        }
    }

    fn pod_spec() -> Option<PodSpec> {
        Some(PodSpec { containers: vec![Container { name: "c".into(), ..Default::default() }], ..Default::default() })
    }

    fn deployment(replicas: i32) -> Deployment {
        Deployment {
            metadata: meta("ws-abc"),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("session-uuid".to_owned(), "abc".to_owned())])),
                    match_expressions: None,
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(labels()), ..Default::default() }),
                    spec: pod_spec(),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn job(name: &str) -> Job {
        Job {
            metadata: meta(name),
            spec: Some(JobSpec {
                backoff_limit: Some(2),
                template: PodTemplateSpec { metadata: None, spec: pod_spec() },
                ..Default::default()
            }),
            status: None,
        }
    }

    async fn cluster() -> Client {
        kube_fake_client::ClientBuilder::new()
            .with_status_subresource::<Deployment>()
            .with_status_subresource::<Job>()
            .with_object(deployment(1))
            .with_object(job("backup-1"))
            .build()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn deployments_become_ready_after_the_delay_and_scale_to_zero() {
        let client = cluster().await;
        let k = Kubelet::new(
            client.clone(),
            KubeletConfig { delay: Duration::from_millis(50), fail_backups: false, namespace: None },
        );
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ws");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "ws");
        assert_eq!(k.tick().await.unwrap().pods_created, 0, "nothing before the delay");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(k.tick().await.unwrap().pods_created, 1);
        let d = deployments.get("ws-abc").await.unwrap();
        assert_eq!(d.status.unwrap().ready_replicas, Some(1));
        let pod = pods.get("ws-abc-0").await.unwrap();
        assert_eq!(pod.labels().get("session-uuid").map(String::as_str), Some("abc"));
        assert_eq!(k.tick().await.unwrap(), TickReport::default(), "converged: nothing to do");

        let patch = json!({"spec": {"replicas": 0}});
        deployments.patch("ws-abc", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        k.tick().await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(k.tick().await.unwrap().pods_deleted, 1);
        assert!(pods.list(&ListParams::default()).await.unwrap().items.is_empty());
        let d = deployments.get("ws-abc").await.unwrap();
        assert_eq!(d.status.unwrap().ready_replicas, Some(0));
    }

    #[tokio::test]
    async fn jobs_complete_or_fail_on_the_knob() {
        let client = cluster().await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), "ws");
        let k = Kubelet::new(client.clone(), KubeletConfig { delay: Duration::ZERO, ..KubeletConfig::default() });
        assert_eq!(k.tick().await.unwrap().jobs_succeeded, 1);
        let j = jobs.get("backup-1").await.unwrap().status.unwrap();
        assert_eq!(j.succeeded, Some(1));
        assert!(j.conditions.unwrap().iter().any(|c| c.type_ == "Complete" && c.status == "True"));

        k.set_fail_backups(true);
        jobs.create(&PostParams::default(), &job("backup-2")).await.unwrap();
        assert_eq!(k.tick().await.unwrap().jobs_failed, 1);
        let j = jobs.get("backup-2").await.unwrap().status.unwrap();
        assert_eq!(j.failed, Some(3));
        assert!(
            j.conditions
                .unwrap()
                .iter()
                .any(|c| c.type_ == "Failed" && c.reason.as_deref() == Some("BackoffLimitExceeded"))
        );
        // Finished Jobs are left alone.
        assert_eq!(k.tick().await.unwrap(), TickReport::default());
    }

    fn session_deployment(session: &str, replicas: i32) -> Deployment {
        let mut d = deployment(replicas);
        let mut l = labels();
        l.insert("session-uuid".to_owned(), session.to_owned());
        d.metadata.name = Some(format!("ws-{session}"));
        d.metadata.labels = Some(l.clone());
        let spec = d.spec.as_mut().unwrap();
        spec.selector.match_labels = Some(BTreeMap::from([("session-uuid".to_owned(), session.to_owned())]));
        spec.template.metadata = Some(ObjectMeta { labels: Some(l), ..Default::default() });
        d
    }

    #[tokio::test]
    async fn each_deployment_counts_only_its_own_pods() {
        let client = kube_fake_client::ClientBuilder::new()
            .with_status_subresource::<Deployment>()
            .with_object(session_deployment("a", 2))
            .with_object(session_deployment("b", 1))
            .build()
            .await
            .unwrap();
        let k = Kubelet::new(client.clone(), KubeletConfig { delay: Duration::ZERO, ..KubeletConfig::default() });
        assert_eq!(k.tick().await.unwrap().pods_created, 3);
        assert_eq!(k.tick().await.unwrap(), TickReport::default(), "converged: nothing to do");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ws");
        let patch = json!({"spec": {"replicas": 0}});
        deployments.patch("ws-b", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        assert_eq!(k.tick().await.unwrap().pods_deleted, 1);
        let pods: Api<Pod> = Api::namespaced(client.clone(), "ws");
        let mut names: Vec<_> =
            pods.list(&ListParams::default()).await.unwrap().items.iter().map(ResourceExt::name_any).collect();
        names.sort();
        assert_eq!(names, ["ws-a-0", "ws-a-1"]);
        assert_eq!(deployments.get("ws-a").await.unwrap().status.unwrap().ready_replicas, Some(2));
        assert_eq!(deployments.get("ws-b").await.unwrap().status.unwrap().ready_replicas, Some(0));
    }

    #[tokio::test]
    async fn a_pod_deleted_by_someone_else_comes_back_within_a_few_idle_passes() {
        let client = cluster().await;
        let k = Kubelet::new(client.clone(), KubeletConfig { delay: Duration::ZERO, ..KubeletConfig::default() });
        assert_eq!(k.tick().await.unwrap().pods_created, 1);
        assert_eq!(k.tick().await.unwrap().jobs_succeeded, 0);
        let pods: Api<Pod> = Api::namespaced(client.clone(), "ws");
        pods.delete("ws-abc-0", &DeleteParams::default()).await.unwrap();
        let mut created = 0;
        for _ in 0..=MAX_SKIPPED + 1 {
            created += k.tick().await.unwrap().pods_created;
        }
        assert_eq!(created, 1);
        assert!(pods.get("ws-abc-0").await.is_ok());
    }
}
