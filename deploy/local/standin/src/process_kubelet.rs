//! The process kubelet (`STANDIN_KUBELET=process`, dev only): the session manager's pods run
//! as real local processes.
//!
//! - A Deployment's pod `<deployment>-<i>` runs its container as a process (see `launch.rs`
//!   for the mapping and the private root), on a loopback address of its own from
//!   127.0.0.0/8 that is the same for every pod of that Deployment (`status.podIP`). It is
//!   `Ready` while its readiness probe answers (code-server's `GET /healthz`). A process that
//!   exits on its own is started again (Deployment pods restart `Always`) after a back-off of
//!   1 s, 2 s, 4 s ... (at most 30 s), and the pod's `restartCount` grows. Fewer replicas (or
//!   a deleted Deployment) stop the pod: SIGTERM to its process group, SIGKILL once the pod's
//!   `terminationGracePeriodSeconds` (default 30) is over, then the pod object goes.
//! - A Job runs pod `<job>-<attempt>` once per attempt (restart policy `Never`): exit 0 marks
//!   the Job `Complete`, a failure starts the next attempt until `backoffLimit` is spent, then
//!   the Job is `Failed`. Its pods carry `job-name` labels as the Job controller's do, and
//!   what the container wrote to its termination message file (at most 4096 bytes) becomes
//!   `containerStatuses[].state.terminated.message`. A deleted Job's pods are stopped and
//!   removed.
//! - A Service gets `spec.clusterIP` = the address of the Deployment whose pods it selects,
//!   and its ports equal the container ports in what the worker builds (8080 → `http` =
//!   8080), so `clusterIP:port` reaches the workspace as a Service does in a cluster.
//! - Each PersistentVolumeClaim is a directory (see `volumes.rs`), made when the claim is
//!   seen or first mounted, removed when a claim that was seen is deleted.
//! - A VolumeSnapshot of an existing claim whose directory is made becomes `readyToUse` once
//!   the claim's directory is copied to `<volumes>/.snapshots/<ns>/<snapshot>` (see
//!   `snapshots.rs`); a deleted snapshot's copy is removed. A claim with a `dataSourceRef` to a
//!   VolumeSnapshot gets its directory made as a copy of that snapshot; until the snapshot is
//!   ready (and its copy here), the claim has no directory and a pod mounting it is created
//!   with `phase: Pending` and no process (started by the first pass after the restore).
//!
//! One pass looks at everything (a handful of real processes, not thousands of sessions);
//! passes run every 250 ms and on every write through the server. [`ProcessKubelet::stop_all`]
//! ends every process at shutdown; dropping a process kills its group anyway.

use crate::changes::Changes;
use crate::config::ProcessSettings;
use crate::kubelet::MANAGED;
use crate::launch::{self, Launch};
use crate::pod_logs::PodLogs;
use crate::pod_process::{self, PodProcess};
use crate::volumes::Volumes;
use crate::{snapshot, snapshots};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// How often a pass runs when nothing is written.
const PASS_EVERY: Duration = Duration::from_millis(250);
/// Longest restart back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long [`ProcessKubelet::stop_all`] waits for SIGTERM before SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// (namespace, name).
type Key = (String, String);

/// Who a pod belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Deployment(String),
    Job(String),
}

/// A pod this kubelet runs.
struct RunPod {
    owner: Owner,
    ip: Ipv4Addr,
    launch: Launch,
    container: String,
    image: String,
    process: Option<PodProcess>,
    restarts: i32,
    ready: bool,
    /// When the process last exited on its own (for the restart back-off).
    exited_at: Option<Instant>,
    /// Set once stopping: when SIGKILL follows.
    kill_at: Option<Instant>,
    grace: Duration,
    /// The pod status last written (to write only changes).
    written: Value,
    /// The host file bind-mounted at the container's `terminationMessagePath`.
    termination_log: Option<PathBuf>,
}

/// The most of a termination message a kubelet keeps (4096 bytes).
const TERMINATION_MESSAGE_MAX: u64 = 4096;

/// The termination message a container left in `file`: at most
/// [`TERMINATION_MESSAGE_MAX`] bytes, `None` when there is none.
fn termination_message(file: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file).ok()?.take(TERMINATION_MESSAGE_MAX).read_to_end(&mut bytes).ok()?;
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// The process kubelet.
pub struct ProcessKubelet {
    client: Client,
    code_server: PathBuf,
    volumes: Volumes,
    logs: PodLogs,
    pods_dir: PathBuf,
    pods: HashMap<Key, RunPod>,
    ips: HashMap<Key, Ipv4Addr>,
    claims: HashSet<Key>,
    /// Claims waiting for the snapshot they are restored from.
    waiting: HashSet<Key>,
    /// Snapshots ready (with their copy) as of the last pass.
    ready_snapshots: HashSet<Key>,
}

/// The loopback address of `ns/name`: a hash into 127.1.0.1 ..= 127.254.255.254, moved on
/// past addresses `taken` by others (pure).
pub fn loopback_ip(ns: &str, name: &str, taken: impl Fn(Ipv4Addr) -> bool) -> Ipv4Addr {
    // FNV-1a: stable across runs and builds, so a Service keeps its address over restarts.
    let mut h: u32 = 0x811c_9dc5;
    for b in ns.bytes().chain([b'/']).chain(name.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    const SPAN: u32 = 254 * 256 * 254;
    for step in 0..SPAN {
        let n = (h.wrapping_add(step)) % SPAN;
        let ip = Ipv4Addr::new(127, 1 + (n / (256 * 254)) as u8, ((n / 254) % 256) as u8, 1 + (n % 254) as u8);
        if !taken(ip) {
            return ip;
        }
    }
    Ipv4Addr::new(127, 0, 0, 1)
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn err_log(what: &str) -> impl FnOnce(kube::Error) {
    let what = what.to_owned();
    move |error| tracing::warn!(%error, "process kubelet: {what}")
}

impl ProcessKubelet {
    /// A kubelet acting through `client` with `settings`.
    pub fn new(client: Client, settings: &ProcessSettings) -> Self {
        Self {
            client,
            code_server: settings.code_server.clone(),
            volumes: Volumes::new(&settings.volumes_dir),
            logs: PodLogs::new(&settings.pod_logs_dir),
            pods_dir: std::path::absolute(&settings.pods_dir).unwrap_or_else(|_| settings.pods_dir.clone()),
            pods: HashMap::new(),
            ips: HashMap::new(),
            claims: HashSet::new(),
            waiting: HashSet::new(),
            ready_snapshots: HashSet::new(),
        }
    }

    /// Whether this machine can give a process a private mount namespace (root, or
    /// `CAP_SYS_ADMIN`, and `unshare`, `setpriv`, `chroot` on `PATH`).
    pub async fn supported() -> bool {
        let (program, args) = launch::PRIVATE.split_first().expect("PRIVATE is not empty");
        tokio::process::Command::new(program)
            .args(args)
            .args(["sh", "-c"])
            .arg("command -v chroot >/dev/null && mount -t tmpfs standin-check /mnt")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
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

    /// Runs passes until `shutdown` completes, then stops every process.
    pub async fn run(mut self, changes: &Changes, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.forget_stale_pods().await;
        loop {
            let _ = changes.take();
            self.pass().await;
            tokio::select! {
                () = &mut shutdown => break,
                () = changes.changed() => {}
                () = tokio::time::sleep(PASS_EVERY) => {}
            }
        }
        self.stop_all().await;
    }

    /// Pods left from an earlier run have no process: remove their objects (the Deployments
    /// make them again).
    async fn forget_stale_pods(&self) {
        let Ok(pods) = self.api::<Pod>(None).list(&ListParams::default().labels(MANAGED)).await else { return };
        for p in pods.items {
            if let Some(ns) = p.namespace() {
                let _ = self.api::<Pod>(Some(&ns)).delete(&p.name_any(), &DeleteParams::default()).await;
            }
        }
    }

    /// SIGTERM to every process, SIGKILL to those still there after [`SHUTDOWN_GRACE`].
    pub async fn stop_all(&mut self) {
        for pod in self.pods.values() {
            if let Some(p) = &pod.process {
                p.terminate();
            }
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        for pod in self.pods.values_mut() {
            if let Some(p) = pod.process.as_mut()
                && tokio::time::timeout_at(deadline, p.wait()).await.is_err()
            {
                p.kill();
                p.wait().await;
            }
        }
        self.pods.clear();
    }

    /// One pass over claims, Deployments, Jobs and Services.
    pub async fn pass(&mut self) {
        let lp = ListParams::default().labels(MANAGED);
        let (Ok(deployments), Ok(jobs), Ok(services), Ok(claims), Ok(pod_objects)) = (
            self.api::<Deployment>(None).list(&lp).await,
            self.api::<Job>(None).list(&lp).await,
            self.api::<Service>(None).list(&lp).await,
            self.api::<PersistentVolumeClaim>(None).list(&lp).await,
            self.api::<Pod>(None).list(&lp).await,
        ) else {
            tracing::warn!("process kubelet: listing the cluster failed");
            return;
        };
        self.claims(&claims.items);
        self.snapshots().await;
        let present: HashSet<Key> =
            pod_objects.items.iter().filter_map(|p| Some((p.namespace()?, p.name_any()))).collect();
        // A pod object deleted by someone else: its process goes too (the owner makes a new one).
        let deleted: Vec<Key> =
            self.pods.keys().filter(|k| !present.contains(*k) && self.pods[*k].kill_at.is_none()).cloned().collect();
        for key in deleted {
            tracing::info!(pod = %key.1, "pod object deleted: stopping its process");
            self.pods.remove(&key);
        }

        let mut wanted: HashSet<Key> = HashSet::new();
        for d in &deployments.items {
            self.deployment(d, &mut wanted).await;
        }
        for j in &jobs.items {
            self.job(j, &mut wanted).await;
        }
        self.stop_unwanted(&wanted).await;
        self.supervise().await;
        for d in &deployments.items {
            self.deployment_status(d).await;
        }
        for s in &services.items {
            self.service(s, &deployments.items).await;
        }
    }

    fn claims(&mut self, claims: &[PersistentVolumeClaim]) {
        let by_key: HashMap<Key, &PersistentVolumeClaim> =
            claims.iter().filter_map(|c| Some(((c.namespace()?, c.name_any()), c))).collect();
        let now: HashSet<Key> = by_key.keys().cloned().collect();
        let mut waiting = HashSet::new();
        for key in now.difference(&self.claims) {
            let (ns, claim) = key;
            let made = match by_key.get(key).and_then(|c| snapshot::restore_source(c)) {
                None => self.volumes.ensure(ns, claim).map(Some),
                Some(snap) if !self.ready_snapshots.contains(&(ns.clone(), snap.to_owned())) => Ok(None),
                Some(snap) => self.volumes.restore(ns, claim, snap),
            };
            match made {
                Ok(Some(_)) => {}
                Ok(None) => {
                    waiting.insert(key.clone());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "process kubelet: volume");
                    waiting.insert(key.clone());
                }
            }
        }
        for (ns, claim) in self.claims.difference(&now) {
            tracing::info!(%ns, %claim, "claim deleted: removing its directory");
            if let Err(e) = self.volumes.remove(ns, claim) {
                tracing::warn!(error = %e, "process kubelet: volume");
            }
        }
        self.claims = now.difference(&waiting).cloned().collect();
        self.waiting = waiting;
    }

    /// The snapshot pass: copies a claim's directory before its snapshot is marked ready, and
    /// removes the copies of deleted snapshots.
    async fn snapshots(&mut self) {
        let volumes = self.volumes.clone();
        let take = |s: &snapshot::VolumeSnapshot| {
            let (ns, name, claim) = (s.namespace().unwrap_or_default(), s.name_any(), s.source_claim().unwrap_or(""));
            volumes.take_snapshot(&ns, claim, &name).map(|_| ()).map_err(|e| format!("copying the claim: {e}"))
        };
        match snapshots::pass(&self.client, None, take).await {
            Ok(list) => {
                let key = |s: &snapshot::VolumeSnapshot| Some((s.namespace()?, s.name_any()));
                let all: HashSet<Key> = list.iter().filter_map(key).collect();
                self.ready_snapshots = list.iter().filter(|s| s.ready()).filter_map(key).collect();
                if let Err(e) = self.volumes.prune_snapshots(&all) {
                    tracing::warn!(error = %e, "process kubelet: snapshot copies");
                }
            }
            Err(e) => err_log("snapshot pass")(e),
        }
    }

    fn ip_of(&mut self, ns: &str, owner: &str) -> Ipv4Addr {
        let key = (ns.to_owned(), owner.to_owned());
        if let Some(ip) = self.ips.get(&key) {
            return *ip;
        }
        let ip = loopback_ip(ns, owner, |ip| self.ips.values().any(|have| *have == ip));
        self.ips.insert(key, ip);
        ip
    }

    /// Starts pod `ns/name` of `owner` from `spec` (and creates its object).
    async fn start(&mut self, ns: &str, name: &str, owner: Owner, ip: Ipv4Addr, meta: ObjectMeta, spec: &PodSpec) {
        let launch = match launch::plan(spec, ns, ip, &self.code_server, &self.volumes) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, pod = name, "process kubelet cannot run this pod");
                return;
            }
        };
        let container = spec.containers.first().map(|c| c.name.clone()).unwrap_or_default();
        let image = spec.containers.first().and_then(|c| c.image.clone()).unwrap_or_default();
        let grace = Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).clamp(0, 3600) as u64);
        let pod = Pod { metadata: meta, spec: Some(spec.clone()), status: None };
        let created = match self.api::<Pod>(Some(ns)).create(&PostParams::default(), &pod).await {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 409 => false,
            Err(e) => return err_log(&format!("create pod {ns}/{name}"))(e),
        };
        let claims = spec.volumes.iter().flatten().filter_map(|v| v.persistent_volume_claim.as_ref());
        if let Some(c) = claims.into_iter().find(|c| self.waiting.contains(&(ns.to_owned(), c.claim_name.clone()))) {
            tracing::debug!(pod = name, claim = %c.claim_name, "pod pending: its claim waits for its snapshot");
            let pending = json!({ "status": { "phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "WaitingForSnapshot",
                "message": format!("claim {} waits for the VolumeSnapshot it is restored from", c.claim_name) }] } });
            let api = self.api::<Pod>(Some(ns));
            // Written once, when the pod is made: later passes find it Pending already.
            if created && let Err(e) = api.patch_status(name, &PatchParams::default(), &Patch::Merge(&pending)).await {
                err_log(&format!("pod {ns}/{name} status"))(e);
            }
            return;
        }
        let mut run = RunPod {
            owner,
            ip,
            launch,
            container,
            image,
            process: None,
            restarts: 0,
            ready: false,
            exited_at: None,
            kill_at: None,
            grace,
            written: Value::Null,
            termination_log: None,
        };
        self.spawn(ns, name, &mut run);
        self.pods.insert((ns.to_owned(), name.to_owned()), run);
    }

    fn spawn(&self, ns: &str, name: &str, run: &mut RunPod) {
        let root = self.pods_dir.join(format!("{ns}_{name}"));
        let mut launch = run.launch.clone();
        if let Some(path) = &run.launch.termination_log {
            let file = self.pods_dir.join(format!("{ns}_{name}.termination-log"));
            let made = std::fs::create_dir_all(&self.pods_dir).and_then(|()| std::fs::write(&file, b""));
            match made {
                Ok(()) => {
                    launch.mounts.push(launch::Mount { host: file.clone(), path: path.clone(), read_only: false });
                    run.termination_log = Some(file);
                }
                Err(e) => tracing::warn!(error = %e, pod = name, "process kubelet: termination log"),
            }
        }
        match PodProcess::spawn(&launch, &root, &self.logs.path(ns, name)) {
            Ok(p) => {
                tracing::info!(pod = name, ip = %run.ip, "process started");
                run.process = Some(p);
                run.exited_at = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, pod = name, "process kubelet: spawn");
                run.exited_at = Some(Instant::now());
            }
        }
    }

    async fn deployment(&mut self, d: &Deployment, wanted: &mut HashSet<Key>) {
        let (Some(ns), name) = (d.namespace(), d.name_any()) else { return };
        let Some(spec) = d.spec.as_ref() else { return };
        let Some(pod_spec) = spec.template.spec.as_ref() else { return };
        let want = spec.replicas.unwrap_or(1).max(0);
        let labels: BTreeMap<String, String> = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .or_else(|| spec.selector.match_labels.clone())
            .unwrap_or_default();
        let ip = self.ip_of(&ns, &name);
        for i in 0..want {
            let pod = format!("{name}-{i}");
            let key = (ns.clone(), pod.clone());
            wanted.insert(key.clone());
            if self.pods.get(&key).is_some_and(|p| p.kill_at.is_none()) {
                continue;
            }
            if self.pods.contains_key(&key) {
                continue; // still stopping: start again once it is gone
            }
            let meta = ObjectMeta {
                name: Some(pod.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            self.start(&ns, &pod, Owner::Deployment(name.clone()), ip, meta, pod_spec).await;
        }
    }

    async fn job(&mut self, j: &Job, wanted: &mut HashSet<Key>) {
        let (Some(ns), name) = (j.namespace(), j.name_any()) else { return };
        let status = j.status.clone().unwrap_or_default();
        let finished = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"));
        let failed = status.failed.unwrap_or(0);
        let attempt = format!("{name}-{failed}");
        let key = (ns.clone(), attempt.clone());
        // Every attempt's pod stays (as in a cluster) until the Job goes.
        for k in self.pods.iter().filter(|(_, p)| p.owner == Owner::Job(name.clone())).map(|(k, _)| k.clone()) {
            wanted.insert(k);
        }
        if finished {
            return;
        }
        wanted.insert(key.clone());
        let Some(run) = self.pods.get_mut(&key) else {
            let Some(spec) = j.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else { return };
            let mut labels = j
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            // As the Job controller labels its pods.
            labels.insert("job-name".into(), name.clone());
            labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
            let labels = Some(labels);
            let meta =
                ObjectMeta { name: Some(attempt.clone()), namespace: Some(ns.clone()), labels, ..Default::default() };
            let spec = spec.clone();
            self.start(&ns, &attempt, Owner::Job(name.clone()), Ipv4Addr::LOCALHOST, meta, &spec).await;
            let patch =
                json!({"status": {"startTime": status.start_time.map_or_else(now, |t| t.0.to_string()), "active": 1}});
            let _ =
                self.api::<Job>(Some(&ns)).patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            return;
        };
        let Some(exit) = run.process.as_mut().and_then(PodProcess::exited) else { return };
        run.ready = false;
        let t = now();
        let limit = j.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6);
        let patch = if exit.success() {
            tracing::info!(job = %name, "job succeeded");
            json!({"status": {"completionTime": t, "succeeded": 1, "active": 0, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": t},
                {"type": "Complete", "status": "True", "lastTransitionTime": t}]}})
        } else if failed + 1 > limit {
            tracing::warn!(job = %name, %exit, "job failed: backoff limit reached");
            json!({"status": {"failed": failed + 1, "active": 0, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastTransitionTime": t}]}})
        } else {
            tracing::warn!(job = %name, %exit, "job attempt failed: retrying");
            json!({"status": {"failed": failed + 1, "active": 0}})
        };
        let phase = if exit.success() { "Succeeded" } else { "Failed" };
        let mut terminated = json!({"exitCode": exit.code().unwrap_or(-1), "finishedAt": t});
        if let Some(message) = run.termination_log.as_deref().and_then(termination_message) {
            terminated["message"] = Value::String(message);
        }
        let pod_status = json!({"status": {"phase": phase, "containerStatuses": [{"name": run.container, "image": run.image,
            "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": terminated}}]}});
        run.process = None;
        run.kill_at = None;
        let _ = self
            .api::<Pod>(Some(&ns))
            .patch_status(&attempt, &PatchParams::default(), &Patch::Merge(&pod_status))
            .await;
        self.api::<Job>(Some(&ns))
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .unwrap_or_else(err_log(&format!("patch job status {ns}/{name}")));
    }

    /// Stops pods nobody wants any more; removes them once their process is gone.
    async fn stop_unwanted(&mut self, wanted: &HashSet<Key>) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (key, pod) in self.pods.iter_mut().filter(|(k, _)| !wanted.contains(*k)) {
            let Some(process) = pod.process.as_mut() else {
                gone.push(key.clone());
                continue;
            };
            match pod.kill_at {
                None => {
                    tracing::info!(pod = %key.1, grace_s = pod.grace.as_secs(), "stopping: SIGTERM");
                    process.terminate();
                    pod.kill_at = Some(now + pod.grace);
                    pod.ready = false;
                }
                Some(_) if process.exited().is_some() => gone.push(key.clone()),
                Some(at) if now >= at => {
                    tracing::info!(pod = %key.1, "grace period over: SIGKILL");
                    process.kill();
                }
                Some(_) => {}
            }
        }
        for key in gone {
            if let Some(file) = self.pods.remove(&key).and_then(|p| p.termination_log) {
                let _ = std::fs::remove_file(file);
            }
            match self.api::<Pod>(Some(&key.0)).delete(&key.1, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => err_log(&format!("delete pod {}/{}", key.0, key.1))(e),
            }
        }
    }

    /// Restarts Deployment pods whose process exited, probes readiness, writes pod status.
    async fn supervise(&mut self) {
        let now = Instant::now();
        let keys: Vec<Key> = self.pods.keys().cloned().collect();
        for key in &keys {
            let Some(mut run) = self.pods.remove(key) else { continue };
            if matches!(run.owner, Owner::Deployment(_)) && run.kill_at.is_none() {
                if let Some(exit) = run.process.as_mut().and_then(PodProcess::exited) {
                    tracing::warn!(pod = %key.1, %exit, "process exited on its own");
                    run.process = None;
                    run.ready = false;
                    run.exited_at = Some(now);
                }
                let backoff = Duration::from_secs(1u64 << run.restarts.clamp(0, 5)).min(MAX_BACKOFF);
                if run.process.is_none() && run.exited_at.is_none_or(|t| now >= t + backoff) {
                    run.restarts += 1;
                    self.spawn(&key.0, &key.1, &mut run);
                }
            }
            self.pods.insert(key.clone(), run);
        }
        let probes = self.pods.iter().filter(|(_, p)| p.process.is_some() && p.kill_at.is_none()).map(|(k, p)| {
            let (k, ip, probe) = (k.clone(), p.ip, p.launch.probe.clone());
            async move {
                let ready = match probe {
                    Some(probe) => pod_process::probe(ip, &probe).await,
                    None => true,
                };
                (k, ready)
            }
        });
        for (k, ready) in futures::future::join_all(probes.collect::<Vec<_>>()).await {
            if let Some(p) = self.pods.get_mut(&k)
                && matches!(p.owner, Owner::Deployment(_))
            {
                p.ready = ready;
            }
        }
        for (key, run) in self.pods.iter_mut() {
            if !matches!(run.owner, Owner::Deployment(_)) && run.process.is_none() {
                continue;
            }
            let ready = if run.ready { "True" } else { "False" };
            let state = if run.process.is_some() {
                json!({"running": {}})
            } else {
                json!({"waiting": {"reason": "CrashLoopBackOff"}})
            };
            let status = json!({"status": {
                "phase": "Running", "podIP": run.ip.to_string(), "podIPs": [{"ip": run.ip.to_string()}],
                "hostIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": ready}, {"type": "ContainersReady", "status": ready}],
                "containerStatuses": [{"name": run.container, "image": run.image, "imageID": "",
                    "ready": run.ready, "started": run.process.is_some(), "restartCount": run.restarts, "state": state}],
            }});
            if status == run.written {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
            if api.patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&status)).await.is_ok() {
                run.written = status;
            }
        }
    }

    async fn deployment_status(&self, d: &Deployment) {
        let (Some(ns), name) = (d.namespace(), d.name_any()) else { return };
        let mine = || self.pods.values().filter(|p| p.owner == Owner::Deployment(name.clone()));
        let replicas = i32::try_from(mine().count()).unwrap_or(i32::MAX);
        let ready = i32::try_from(mine().filter(|p| p.ready).count()).unwrap_or(i32::MAX);
        let s = d.status.clone().unwrap_or_default();
        let current = (s.replicas.unwrap_or(0), s.ready_replicas.unwrap_or(0), s.observed_generation);
        if current == (replicas, ready, d.metadata.generation) {
            return;
        }
        let status = json!({"status": {"observedGeneration": d.metadata.generation, "replicas": replicas,
            "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": replicas}});
        self.api::<Deployment>(Some(&ns))
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map(drop)
            .unwrap_or_else(err_log(&format!("patch deployment status {ns}/{name}")));
    }

    async fn service(&self, s: &Service, deployments: &[Deployment]) {
        let (Some(ns), name) = (s.namespace(), s.name_any()) else { return };
        let Some(selector) = s.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) else {
            return;
        };
        let target = deployments.iter().find(|d| {
            d.namespace().as_deref() == Some(ns.as_str())
                && d.spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.labels.as_ref())
                    .is_some_and(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
        });
        let Some(ip) = target.and_then(|d| self.ips.get(&(ns.clone(), d.name_any()))) else { return };
        let ip = ip.to_string();
        if s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some(ip.as_str()) {
            return;
        }
        let patch = json!({"spec": {"clusterIP": ip, "clusterIPs": [ip]}});
        self.api::<Service>(Some(&ns))
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .unwrap_or_else(err_log(&format!("set clusterIP of {ns}/{name}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_stable_local_and_distinct() {
        let a = loopback_ip("workspaces", "ws-a", |_| false);
        assert_eq!(a, loopback_ip("workspaces", "ws-a", |_| false), "the same name, the same address");
        assert_eq!(a.octets()[0], 127);
        assert!(a.octets()[1] >= 1 && a.octets()[3] >= 1 && a.octets()[3] <= 254);
        let b = loopback_ip("workspaces", "ws-a", |ip| ip == a);
        assert_ne!(a, b, "a taken address is skipped");
        assert_ne!(a, loopback_ip("workspaces", "ws-b", |_| false));
    }
}
