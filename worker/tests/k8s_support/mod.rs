//! Shared harness of the `k8s_*` tests: an in-process kube-fake-client
//! cluster with the KEDA kind registered, the simulated kubelet from the
//! stand-in crate, and a fault-injecting layer between the executor and the
//! fake (statuses the fake's interceptors cannot produce, such as 403/429,
//! and "every write fails from call k on" crash points).
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::client::Body;
use kube_fake_client::{ClientBuilder, interceptor};
use kube_standin::changes::{Changes, notifying_client};
use kube_standin::kubelet::{Kubelet, KubeletConfig};
use proto_types::{Command, DesiredState, JobId, SessionId};
use worker::executor::{ExecError, Executor, Outcome, Target};
use worker::k8s::keda::ScaledObject;
use worker::k8s::{K8sConfig, K8sExecutor};

pub const NS: &str = "workspaces";

/// A rule of the fault layer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer this status to the first `n` requests matching `method`
    /// (`None`: any method).
    FirstN { method: Option<http::Method>, n: usize, code: u16, message: String },
    /// Let `k` writes (POST/PUT/PATCH/DELETE) through, then fail every request with 500.
    CrashAfterWrites { k: usize },
}

/// Shared state of the fault layer: the rule and counters.
#[derive(Default)]
pub struct Faults {
    rule: Mutex<Option<Fault>>,
    matched: AtomicUsize,
    writes: AtomicUsize,
    /// Every request that reached the layer.
    pub requests: AtomicUsize,
    /// Requests answered with an injected error.
    pub injected: AtomicUsize,
}

impl Faults {
    pub fn set(&self, fault: Option<Fault>) {
        *self.rule.lock().unwrap() = fault;
        self.matched.store(0, Ordering::SeqCst);
        self.writes.store(0, Ordering::SeqCst);
        self.injected.store(0, Ordering::SeqCst);
        self.requests.store(0, Ordering::SeqCst);
    }

    fn decide(&self, method: &http::Method) -> Option<(u16, String)> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let rule = self.rule.lock().unwrap().clone()?;
        let is_write = !matches!(*method, http::Method::GET | http::Method::HEAD);
        match rule {
            Fault::FirstN { method: m, n, code, message } => {
                if m.as_ref().is_none_or(|m| m == method) && self.matched.fetch_add(1, Ordering::SeqCst) < n {
                    return Some((code, message));
                }
                None
            }
            Fault::CrashAfterWrites { k } => {
                if self.writes.load(Ordering::SeqCst) >= k {
                    return Some((500, "simulated worker crash".into()));
                }
                if is_write {
                    self.writes.fetch_add(1, Ordering::SeqCst);
                }
                None
            }
        }
    }
}

/// tower service: consult [`Faults`], else forward to the fake.
#[derive(Clone)]
struct FaultLayer {
    inner: Client,
    faults: Arc<Faults>,
}

impl tower::Service<http::Request<Body>> for FaultLayer {
    type Response = http::Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if let Some((code, message)) = this.faults.decide(req.method()) {
                this.faults.injected.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": message, "reason": "Injected", "code": code,
                });
                return Ok(http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string().into_bytes()))
                    .unwrap());
            }
            this.inner.send(req).await
        })
    }
}

/// One in-process cluster.
pub struct Cluster {
    /// The fake as tests see it: writes through it wake the kubelet (which itself works on
    /// the fake directly).
    pub raw: Client,
    /// The executor under test, going through the fault layer.
    pub exec: K8sExecutor,
    pub faults: Arc<Faults>,
    pub kubelet: Arc<Kubelet>,
    changes: Arc<Changes>,
    kubelet_task: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

pub fn config() -> K8sConfig {
    K8sConfig {
        poll_interval: Duration::from_millis(10),
        ready_timeout: Duration::from_secs(30),
        pod_gone_timeout: Duration::from_secs(30),
        backup_timeout: Duration::from_secs(30),
        ..K8sConfig::default()
    }
}

pub async fn fake(interceptors: Option<interceptor::Funcs>) -> Client {
    let mut b = ClientBuilder::new()
        .with_resource::<ScaledObject>()
        .with_resource::<worker::k8s::snapshot::VolumeSnapshot>()
        .with_status_subresource::<Deployment>()
        .with_status_subresource::<Job>();
    if let Some(f) = interceptors {
        b = b.with_interceptor_funcs(f);
    }
    b.build().await.unwrap()
}

impl Cluster {
    /// A cluster with a running kubelet (delay 20 ms).
    pub async fn start() -> Self {
        Self::with(None, config(), true).await
    }

    pub async fn with(interceptors: Option<interceptor::Funcs>, cfg: K8sConfig, kubelet_running: bool) -> Self {
        let raw = fake(interceptors).await;
        let faults = Arc::new(Faults::default());
        // Writes by the executor and by the tests wake the kubelet, as in the stand-in server.
        let changes = Arc::new(Changes::default());
        let notifying = notifying_client(raw.clone(), changes.clone());
        let layered = Client::new(FaultLayer { inner: notifying.clone(), faults: faults.clone() }, NS);
        let kubelet = Arc::new(Kubelet::new(
            raw.clone(),
            KubeletConfig { delay: Duration::from_millis(20), fail_backups: false, namespace: None },
        ));
        let mut c = Cluster {
            raw: notifying,
            exec: K8sExecutor::new(layered, cfg),
            faults,
            kubelet,
            changes,
            kubelet_task: None,
            stop: None,
        };
        if kubelet_running {
            c.start_kubelet();
        }
        c
    }

    pub fn start_kubelet(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let k = self.kubelet.clone();
        let changes = self.changes.clone();
        self.kubelet_task = Some(tokio::spawn(async move {
            k.run(&changes, Duration::from_secs(1), async {
                let _ = rx.await;
            })
            .await;
        }));
        self.stop = Some(tx);
    }

    /// Stops the kubelet (returns once it is stopped).
    pub fn kubelet_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.kubelet_task.take() {
            t.abort();
        }
    }

    pub async fn converge(&self, t: &Target) -> Result<Outcome, ExecError> {
        self.exec.converge(t).await
    }

    /// Converges like the runner does: retry retryable errors (up to 20 times).
    pub async fn converge_retrying(&self, t: &Target) -> (Result<Outcome, ExecError>, usize) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let r = self.exec.converge(t).await;
            match &r {
                Err(e) if e.is_retryable() && attempts < 20 => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ => return (r, attempts),
            }
        }
    }

    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        kube::Api::namespaced(self.raw.clone(), NS)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.kubelet_task.take() {
            t.abort();
        }
    }
}

pub fn sid(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

pub fn target(id: &SessionId, desired: DesiredState, generation: u64) -> Target {
    let command = match desired {
        DesiredState::Running => Command::Create,
        DesiredState::Sleeping => Command::Sleep,
        DesiredState::Deleted => Command::Delete,
    };
    Target {
        session_id: id.clone(),
        desired,
        generation,
        job_id: JobId::from_random([generation as u8; 16]),
        command,
        attempt: 1,
        workspace_url: None,
        lease: worker::entitlement::LeaseGuard::unbounded(1),
        restore: None,
    }
}
