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
//!   (`succeeded: 1`, with a `Succeeded` pod whose termination message is a
//!   made-up archive report), or `Failed` (`BackoffLimitExceeded`) when
//!   `fail_backups` is set.
//!
//! When it acts: [`Kubelet::run`] waits on the [`Changes`] feed. A write to one Deployment or
//! Job through the server makes it reconcile just that object (one get, plus one pod list by
//! the Deployment's selector, or one pod list per namespace when several Deployments are due
//! in the same pass), so its cost per change does not grow with the number of sessions; a pod written by someone else, or a nameless write, asks for a full pass. Objects
//! still waiting out their delay are re-checked when it is up, and a full pass runs every
//! `resync` anyway. A full pass ([`Kubelet::tick`]) lists Deployments, Jobs and (all) pods
//! once each and groups the pods by label in memory, so it is linear in the number of
//! sessions; converged objects cause no writes.
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

use crate::changes::{Changes, Key, Kind};

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

/// The simulated kubelet.
pub struct Kubelet {
    client: Client,
    config: KubeletConfig,
    fail_backups: AtomicBool,
    /// Each pending change: its goal and when it was first seen.
    seen: Mutex<HashMap<Key, (String, Instant)>>,
}

/// A periodic full pass may take at most 1/`FULL_PASS_SHARE` of the kubelet's time.
const FULL_PASS_SHARE: u32 = 20;

/// How long the run loop waits after a failed pass before a full one.
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(100);

/// Whether `meta` carries the [`MANAGED`] label.
fn managed(meta: &ObjectMeta) -> bool {
    let (k, v) = MANAGED.split_once('=').unwrap_or((MANAGED, ""));
    meta.labels.as_ref().and_then(|l| l.get(k)).is_some_and(|have| have == v)
}

/// The `matchLabels` of a Deployment's selector, when it has some.
fn selector_of(d: &Deployment) -> Option<&BTreeMap<String, String>> {
    d.spec.as_ref()?.selector.match_labels.as_ref().filter(|s| !s.is_empty())
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
        Self { client, config, fail_backups: AtomicBool::new(fail), seen: Mutex::new(HashMap::new()) }
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

    /// One full pass over managed Deployments and Jobs: one list each of Deployments, pods
    /// and Jobs, and writes only for objects that are not yet where they should be.
    pub async fn tick(&self) -> Result<TickReport, KubeletError> {
        let mut report = TickReport::default();
        let lp = ListParams::default().labels(MANAGED);
        let ns = self.config.namespace.as_deref();
        let deployments = self.api::<Deployment>(ns).list(&lp).await.map_err(err("list deployments"))?;
        let jobs = self.api::<Job>(ns).list(&lp).await.map_err(err("list jobs"))?;
        if !deployments.items.is_empty() {
            // All pods, not only managed ones: a template without labels gives its pods just the
            // selector's labels.
            let pods = self.api::<Pod>(ns).list(&ListParams::default()).await.map_err(err("list pods"))?;
            let index = PodIndex::new(&pods.items);
            for d in &deployments.items {
                let (Some(dns), Some(selector)) = (d.metadata.namespace.as_deref(), selector_of(d)) else { continue };
                self.deployment(d, &index.select(dns, selector), &mut report).await?;
            }
        }
        for j in &jobs.items {
            self.job(j, &mut report).await?;
        }
        self.prune(&deployments.items, &jobs.items);
        self.snapshots().await?;
        Ok(report)
    }

    /// The snapshot pass (see `snapshots.rs`): snapshots of existing claims become ready.
    pub async fn snapshots(&self) -> Result<(), KubeletError> {
        let ns = self.config.namespace.as_deref();
        crate::snapshots::pass(&self.client, ns, |_| Ok(())).await.map_err(err("snapshot pass"))?;
        Ok(())
    }

    /// A pass over just `keys` (and nothing else): each object is read by name. A Deployment's
    /// pods are listed by its selector; when several Deployments of one namespace are due in
    /// the same pass, that namespace's pods are listed once for all of them (kube-fake-client
    /// clones every pod of the namespace on any pod list, selector or not).
    pub async fn reconcile(&self, keys: impl IntoIterator<Item = Key>) -> Result<TickReport, KubeletError> {
        let keys: Vec<Key> = keys
            .into_iter()
            .filter(|(_, ns, _)| self.config.namespace.as_ref().is_none_or(|only| only == ns))
            .collect();
        let mut per_ns: HashMap<&str, usize> = HashMap::new();
        for (kind, ns, _) in &keys {
            if *kind == Kind::Deployment {
                *per_ns.entry(ns.as_str()).or_default() += 1;
            }
        }
        let mut listed: HashMap<&str, Vec<Pod>> = HashMap::new();
        for (ns, _) in per_ns.into_iter().filter(|(_, n)| *n > 1) {
            let pods = self.api::<Pod>(Some(ns)).list(&ListParams::default()).await.map_err(err("list pods"))?;
            listed.insert(ns, pods.items);
        }
        let indexes: HashMap<&str, PodIndex<'_>> = listed.iter().map(|(ns, pods)| (*ns, PodIndex::new(pods))).collect();

        let mut report = TickReport::default();
        for key in &keys {
            let (kind, ns, name) = key;
            match kind {
                Kind::Deployment => {
                    let api = self.api::<Deployment>(Some(ns));
                    let got = api.get_opt(name).await.map_err(err(format!("get deployment {ns}/{name}")))?;
                    let Some((d, selector)) =
                        got.as_ref().filter(|d| managed(&d.metadata)).and_then(|d| Some((d, selector_of(d)?)))
                    else {
                        self.forget(key);
                        continue;
                    };
                    if let Some(index) = indexes.get(ns.as_str()) {
                        self.deployment(d, &index.select(ns, selector), &mut report).await?;
                        continue;
                    }
                    let wanted = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
                    let pods = self
                        .api::<Pod>(Some(ns))
                        .list(&ListParams::default().labels(&wanted))
                        .await
                        .map_err(err(format!("list pods of {ns}/{name}")))?;
                    self.deployment(d, &pods.items.iter().collect::<Vec<_>>(), &mut report).await?;
                }
                Kind::Job => {
                    let api = self.api::<Job>(Some(ns));
                    match api.get_opt(name).await.map_err(err(format!("get job {ns}/{name}")))? {
                        Some(j) if managed(&j.metadata) => self.job(&j, &mut report).await?,
                        _ => self.forget(key),
                    }
                }
            }
        }
        Ok(report)
    }

    /// Objects still waiting out their delay.
    fn pending(&self) -> Vec<Key> {
        self.seen.lock().expect("kubelet state lock poisoned").keys().cloned().collect()
    }

    /// How long until the first pending object's delay is up (`None`: nothing pending).
    fn next_due(&self) -> Option<Duration> {
        let seen = self.seen.lock().expect("kubelet state lock poisoned");
        seen.values().map(|(_, since)| self.config.delay.saturating_sub(since.elapsed())).min()
    }

    /// Drops pending entries of objects that no longer exist.
    fn prune(&self, deployments: &[Deployment], jobs: &[Job]) {
        let mut seen = self.seen.lock().expect("kubelet state lock poisoned");
        if seen.is_empty() {
            return;
        }
        let names: HashSet<Key> = deployments
            .iter()
            .map(|d| (Kind::Deployment, d.namespace().unwrap_or_default(), d.name_any()))
            .chain(jobs.iter().map(|j| (Kind::Job, j.namespace().unwrap_or_default(), j.name_any())))
            .collect();
        seen.retain(|k, _| names.contains(k));
    }

    /// Acts on `changes` as they come (see the module docs) until `shutdown` completes, with a
    /// full pass at start and every `resync` (or, when a full pass takes long because the
    /// cluster holds many objects, every `FULL_PASS_SHARE`-th of the time at most). Errors are
    /// logged and answered with a full pass.
    pub async fn run(&self, changes: &Changes, resync: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_full: Option<Instant> = None;
        let mut every = resync;
        loop {
            let (mut keys, everything) = changes.take();
            let full = everything || last_full.is_none_or(|t| t.elapsed() >= every);
            let result = if full {
                let started = Instant::now();
                last_full = Some(started);
                let result = self.tick().await;
                every = resync.max(started.elapsed() * FULL_PASS_SHARE);
                tracing::debug!(took_ms = started.elapsed().as_millis(), next_in_ms = every.as_millis(), "full pass");
                result
            } else {
                keys.extend(self.pending());
                let result = self.reconcile(keys).await;
                match changes.take_snapshots() {
                    true => result.and(self.snapshots().await.map(|()| TickReport::default())),
                    false => result,
                }
            };
            let mut wait = last_full.map_or(Duration::ZERO, |t| every.saturating_sub(t.elapsed()));
            if let Err(e) = result {
                tracing::warn!(error = %e, "kubelet pass failed; a full pass follows");
                last_full = None;
                wait = RETRY_AFTER_ERROR;
            }
            if let Some(due) = self.next_due() {
                wait = wait.min(due.max(Duration::from_millis(1)));
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = changes.changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Converge one Deployment given its current `pods`.
    async fn deployment(&self, d: &Deployment, pods: &[&Pod], report: &mut TickReport) -> Result<(), KubeletError> {
        let (Some(ns), name) = (d.namespace(), d.name_any()) else { return Ok(()) };
        let (Some(spec), Some(selector)) = (d.spec.as_ref(), selector_of(d)) else { return Ok(()) };
        let want = spec.replicas.unwrap_or(1).max(0);
        let have = i32::try_from(pods.len()).unwrap_or(i32::MAX);
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        let seen = d.status.as_ref().and_then(|s| s.observed_generation);
        let current = seen.is_none_or(|g| d.metadata.generation.is_none_or(|cur| g >= cur));
        let key: Key = (Kind::Deployment, ns.clone(), name.clone());
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

    /// The pod of a succeeded Job, `<job>-0`: labelled as the Job controller labels it
    /// (`job-name`, `batch.kubernetes.io/job-name`), phase `Succeeded`, its container
    /// terminated with exit 0 and a plausible termination message, as the backup program
    /// writes it (`{"size_bytes":N,"sha256":"..."}`, made up from the Job's name).
    async fn succeeded_pod(&self, j: &Job, ns: &str, name: &str, now: &str) -> Result<(), KubeletError> {
        let template = j.spec.as_ref().map(|s| &s.template);
        let mut labels = template.and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
        labels.insert("job-name".into(), name.to_owned());
        labels.insert("batch.kubernetes.io/job-name".into(), name.to_owned());
        let container = template
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let message = json!({"size_bytes": 1024 + name.len(), "sha256": fake_sha256(name)}).to_string();
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(format!("{name}-0")),
                namespace: Some(ns.to_owned()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: template.and_then(|t| t.spec.clone()),
            status: serde_json::from_value(json!({
                "phase": "Succeeded",
                "containerStatuses": [{"name": container, "image": "", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                    "message": message, "finishedAt": now}}}],
            }))
            .ok(),
        };
        match self.api::<Pod>(Some(ns)).create(&PostParams::default(), &pod).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(err(format!("create pod {ns}/{name}-0"))(e)),
        }
    }

    async fn job(&self, j: &Job, report: &mut TickReport) -> Result<(), KubeletError> {
        let (Some(ns), name) = (j.namespace(), j.name_any()) else { return Ok(()) };
        let finished =
            j.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                c.iter().any(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
            });
        let key: Key = (Kind::Job, ns.clone(), name.clone());
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
            self.succeeded_pod(j, &ns, &name, &now).await?;
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

/// 64 lower-case hex digits derived from `seed` (FNV-1a rounds): stands in for an archive's
/// SHA-256 where no archive is written.
fn fake_sha256(seed: &str) -> String {
    (0u8..8)
        .map(|round| {
            let mut h: u32 = 0x811c_9dc5 ^ u32::from(round);
            for b in seed.bytes() {
                h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
            }
            format!("{h:08x}")
        })
        .collect()
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
            .with_resource::<crate::snapshot::VolumeSnapshot>()
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
        assert!(pods.list(&ListParams::default().labels("session-uuid=abc")).await.unwrap().items.is_empty());
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
        // Its pod says what a backup program says, as the worker reads it.
        let pods: Api<Pod> = Api::namespaced(client.clone(), "ws");
        let pod = pods.list(&ListParams::default().labels("job-name=backup-1")).await.unwrap().items.remove(0);
        let status = pod.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        let terminated = status.container_statuses.unwrap().remove(0).state.unwrap().terminated.unwrap();
        assert_eq!(terminated.exit_code, 0);
        let message: serde_json::Value = serde_json::from_str(&terminated.message.unwrap()).unwrap();
        assert!(message["size_bytes"].as_u64().is_some(), "{message}");
        let sha = message["sha256"].as_str().unwrap();
        assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{sha}");

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

    /// A fake cluster holding one session Deployment per `(session, replicas)`, and a kubelet
    /// with no delay over it.
    async fn sessions(specs: &[(&str, i32)]) -> (Client, Kubelet) {
        let mut b = kube_fake_client::ClientBuilder::new()
            .with_resource::<crate::snapshot::VolumeSnapshot>()
            .with_status_subresource::<Deployment>();
        for (session, replicas) in specs {
            b = b.with_object(session_deployment(session, *replicas));
        }
        let client = b.build().await.unwrap();
        let k = Kubelet::new(client.clone(), KubeletConfig { delay: Duration::ZERO, ..KubeletConfig::default() });
        (client, k)
    }

    /// Names of every pod in `ws`, sorted.
    async fn pod_names(client: &Client) -> Vec<String> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "ws");
        let mut names: Vec<_> =
            pods.list(&ListParams::default()).await.unwrap().items.iter().map(ResourceExt::name_any).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn each_deployment_counts_only_its_own_pods() {
        let (client, k) = sessions(&[("a", 2), ("b", 1)]).await;
        assert_eq!(k.tick().await.unwrap().pods_created, 3);
        assert_eq!(k.tick().await.unwrap(), TickReport::default(), "converged: nothing to do");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ws");
        let patch = json!({"spec": {"replicas": 0}});
        deployments.patch("ws-b", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        assert_eq!(k.tick().await.unwrap().pods_deleted, 1);
        assert_eq!(pod_names(&client).await, ["ws-a-0", "ws-a-1"]);
        assert_eq!(deployments.get("ws-a").await.unwrap().status.unwrap().ready_replicas, Some(2));
        assert_eq!(deployments.get("ws-b").await.unwrap().status.unwrap().ready_replicas, Some(0));
    }

    #[tokio::test]
    async fn reconciling_one_key_touches_only_that_object() {
        let (client, k) = sessions(&[("a", 1), ("b", 1)]).await;
        let key = (Kind::Deployment, "ws".to_owned(), "ws-a".to_owned());
        assert_eq!(k.reconcile([key.clone()]).await.unwrap().pods_created, 1);
        assert_eq!(pod_names(&client).await, ["ws-a-0"]);
        assert_eq!(k.reconcile([key]).await.unwrap(), TickReport::default(), "converged: nothing to do");
        let gone = (Kind::Deployment, "ws".to_owned(), "ws-missing".to_owned());
        assert_eq!(k.reconcile([gone]).await.unwrap(), TickReport::default(), "a missing object is no error");
    }

    #[tokio::test]
    async fn several_deployments_in_one_pass_each_count_only_their_own_pods() {
        let (client, k) = sessions(&[("a", 2), ("b", 1), ("c", 1)]).await;
        let key = |s: &str| (Kind::Deployment, "ws".to_owned(), format!("ws-{s}"));
        assert_eq!(k.reconcile([key("a"), key("b")]).await.unwrap().pods_created, 3);
        assert_eq!(k.reconcile([key("a"), key("b")]).await.unwrap(), TickReport::default(), "converged");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ws");
        let patch = json!({"spec": {"replicas": 0}});
        deployments.patch("ws-a", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let report = k.reconcile([key("a"), key("b"), key("c")]).await.unwrap();
        assert_eq!((report.pods_deleted, report.pods_created), (2, 1), "a loses 2, b keeps 1, c gets 1");
        assert_eq!(pod_names(&client).await, ["ws-b-0", "ws-c-0"]);
    }

    /// Polls `check` for up to 5 s.
    async fn eventually<F, Fut>(what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..500 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn the_run_loop_acts_on_noted_writes_without_waiting_for_a_resync() {
        let raw = cluster().await;
        let changes = std::sync::Arc::new(Changes::default());
        let client = crate::changes::notifying_client(raw.clone(), std::sync::Arc::clone(&changes));
        let k = Kubelet::new(raw, KubeletConfig { delay: Duration::ZERO, ..KubeletConfig::default() });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let changes_for_run = std::sync::Arc::clone(&changes);
        let run = tokio::spawn(async move {
            // A resync far beyond the test: only the first pass and the change feed can act.
            k.run(&changes_for_run, Duration::from_secs(3600), async move {
                let _ = stopped.await;
            })
            .await;
        });
        let pods: Api<Pod> = Api::namespaced(client.clone(), "ws");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ws");
        eventually("the first pass to start the pod", || async { pods.get_opt("ws-abc-0").await.unwrap().is_some() })
            .await;

        let patch = json!({"spec": {"replicas": 0}});
        deployments.patch("ws-abc", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        eventually("the pod to go after scaling to 0", || async { pods.get_opt("ws-abc-0").await.unwrap().is_none() })
            .await;

        let patch = json!({"spec": {"replicas": 1}});
        deployments.patch("ws-abc", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        eventually("the pod to come back after scaling to 1", || async {
            pods.get_opt("ws-abc-0").await.unwrap().is_some()
        })
        .await;

        // Someone else deletes the pod: the kubelet notices and starts it again.
        pods.delete("ws-abc-0", &DeleteParams::default()).await.unwrap();
        eventually("a deleted pod to come back", || async { pods.get_opt("ws-abc-0").await.unwrap().is_some() }).await;
        let _ = stop.send(());
        run.await.unwrap();
    }
}
