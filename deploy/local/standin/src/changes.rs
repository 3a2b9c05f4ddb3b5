//! The change feed that wakes the simulated kubelet: every successful write that reaches the
//! fake cluster through [`NotifyingClient`] (the HTTP server's and the tests' client) marks what
//! it touched, so the kubelet acts on those objects at once instead of re-listing every object
//! of the cluster on a timer.
//!
//! - a write to one Deployment or Job (its spec, status or scale) marks that object;
//! - any other write that may change what the kubelet should do (a Pod written by someone
//!   else, a Deployment or Job created by `POST` with the name only in the body, a collection
//!   delete) asks for one full pass;
//! - a write to a VolumeSnapshot or a PersistentVolumeClaim asks for a snapshot pass (see
//!   `snapshots.rs`);
//! - writes to other kinds (Services, KEDA objects, ...) are ignored.
//!
//! The kubelet's own writes go to the fake directly, so they do not wake it again. Every
//! successful write also wakes [`Changes::written`], the state file's cue (see `persist.rs`).

use crate::route::{self, Route};
use http::{Method, Request, Response};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Kind of object the kubelet reconciles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `batch/v1` Job.
    Job,
}

/// One object the kubelet reconciles: (kind, namespace, name).
pub type Key = (Kind, String, String);

/// What one write means for the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Reconcile this one object.
    Object(Key),
    /// Run the snapshot pass.
    Snapshots,
    /// Make a full pass.
    Everything,
    /// Nothing for the kubelet.
    Nothing,
}

/// What a successful request with `method` on `path` changed (pure).
pub fn classify(method: &Method, path: &str) -> Change {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Change::Nothing;
    }
    let Route::Resource(r) = route::parse(path, None) else { return Change::Nothing };
    let kind = match (r.group.as_str(), r.resource.as_str()) {
        ("apps", "deployments") => Kind::Deployment,
        ("batch", "jobs") => Kind::Job,
        ("", "pods") => return Change::Everything,
        ("", "persistentvolumeclaims") | ("snapshot.storage.k8s.io", "volumesnapshots") => return Change::Snapshots,
        _ => return Change::Nothing,
    };
    match (r.namespace, r.name) {
        (Some(ns), Some(name)) => Change::Object((kind, ns, name)),
        _ => Change::Everything,
    }
}

#[derive(Debug, Default)]
struct Pending {
    keys: HashSet<Key>,
    everything: bool,
    snapshots: bool,
}

/// The shared feed: writers [`note`](Changes::note), the kubelet [`take`](Changes::take)s
/// and waits on [`changed`](Changes::changed).
#[derive(Debug, Default)]
pub struct Changes {
    pending: Mutex<Pending>,
    notify: tokio::sync::Notify,
    /// Woken by every successful write of any kind (the state file's cue).
    written: tokio::sync::Notify,
}

impl Changes {
    /// Record one change and wake the kubelet.
    pub fn note(&self, change: Change) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match change {
                Change::Nothing => return,
                Change::Everything => pending.everything = true,
                Change::Snapshots => pending.snapshots = true,
                Change::Object(key) => {
                    pending.keys.insert(key);
                }
            }
        }
        // `notify_one` keeps a permit when nobody waits yet, so a change noted between the
        // kubelet's `take` and its next wait still wakes it.
        self.notify.notify_one();
    }

    /// Everything noted since the last call: the objects, and whether a full pass is due.
    pub fn take(&self) -> (HashSet<Key>, bool) {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (std::mem::take(&mut pending.keys), std::mem::take(&mut pending.everything))
    }

    /// Whether a snapshot pass was asked for since the last call.
    pub fn take_snapshots(&self) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut pending.snapshots)
    }

    /// Completes when something was noted (possibly before this call).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Records that some object (of any kind) was written.
    pub fn wrote(&self) {
        self.written.notify_one();
    }

    /// Completes when something was written since the last wait (possibly before this call).
    pub async fn written(&self) {
        self.written.notified().await;
    }
}

/// A `tower::Service` over the fake cluster's client that notes every successful write in
/// [`Changes`]. Wrap it back into a `kube::Client` with [`notifying_client`].
#[derive(Clone)]
pub struct NotifyingClient {
    inner: kube::Client,
    changes: Arc<Changes>,
}

/// `inner` as a `kube::Client` whose successful writes are noted in `changes`.
pub fn notifying_client(inner: kube::Client, changes: Arc<Changes>) -> kube::Client {
    let namespace = inner.default_namespace().to_owned();
    kube::Client::new(NotifyingClient { inner, changes }, namespace)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<Request<kube::client::Body>> for NotifyingClient {
    type Response = Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let change = classify(req.method(), req.uri().path());
        let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let inner = self.inner.clone();
        let changes = Arc::clone(&self.changes);
        Box::pin(async move {
            let resp = inner.send(req).await?;
            if resp.status().is_success() {
                changes.note(change);
                if write {
                    changes.wrote();
                }
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: Kind, name: &str) -> Change {
        Change::Object((kind, "ws".to_owned(), name.to_owned()))
    }

    #[test]
    fn writes_to_one_deployment_or_job_mark_that_object() {
        let d = "/apis/apps/v1/namespaces/ws/deployments/ws-a";
        assert_eq!(classify(&Method::PATCH, d), key(Kind::Deployment, "ws-a"));
        assert_eq!(classify(&Method::PATCH, &format!("{d}/status")), key(Kind::Deployment, "ws-a"));
        assert_eq!(classify(&Method::PUT, &format!("{d}/scale")), key(Kind::Deployment, "ws-a"));
        assert_eq!(classify(&Method::DELETE, d), key(Kind::Deployment, "ws-a"));
        let j = "/apis/batch/v1/namespaces/ws/jobs/backup-a";
        assert_eq!(classify(&Method::PATCH, j), key(Kind::Job, "backup-a"));
    }

    #[test]
    fn reads_and_other_kinds_change_nothing() {
        assert_eq!(classify(&Method::GET, "/apis/apps/v1/namespaces/ws/deployments/ws-a"), Change::Nothing);
        assert_eq!(classify(&Method::PATCH, "/api/v1/namespaces/ws/services/ws-a"), Change::Nothing);
        assert_eq!(classify(&Method::POST, "/apis/keda.sh/v1alpha1/namespaces/ws/scaledobjects"), Change::Nothing);
        assert_eq!(classify(&Method::POST, "/api/v1/namespaces"), Change::Nothing);
    }

    #[test]
    fn pod_writes_and_nameless_writes_ask_for_a_full_pass() {
        assert_eq!(classify(&Method::DELETE, "/api/v1/namespaces/ws/pods/ws-a-0"), Change::Everything);
        assert_eq!(classify(&Method::POST, "/apis/apps/v1/namespaces/ws/deployments"), Change::Everything);
        assert_eq!(classify(&Method::DELETE, "/apis/batch/v1/namespaces/ws/jobs"), Change::Everything);
    }

    #[test]
    fn claim_and_snapshot_writes_ask_for_a_snapshot_pass() {
        let vs = "/apis/snapshot.storage.k8s.io/v1/namespaces/ws/volumesnapshots";
        assert_eq!(classify(&Method::POST, vs), Change::Snapshots);
        assert_eq!(classify(&Method::DELETE, "/api/v1/namespaces/ws/persistentvolumeclaims/ws-a"), Change::Snapshots);
        let changes = Changes::default();
        changes.note(Change::Snapshots);
        assert!(changes.take_snapshots());
        assert!(!changes.take_snapshots());
    }

    #[tokio::test]
    async fn a_change_noted_before_the_wait_still_wakes() {
        let changes = Changes::default();
        changes.note(key(Kind::Job, "b"));
        changes.note(Change::Nothing);
        tokio::time::timeout(std::time::Duration::from_secs(5), changes.changed()).await.unwrap_or_else(|_| {
            panic!("a noted change did not wake the waiter");
        });
        let (keys, everything) = changes.take();
        assert_eq!(keys.len(), 1);
        assert!(!everything);
        assert_eq!(changes.take(), (HashSet::new(), false), "take drains");
    }
}
