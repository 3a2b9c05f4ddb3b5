//! One Kubernetes API call in its `k8s.request` span, and the typed reads
//! every other module shares ([`get_opt`], [`kind_of`]). Writes are not
//! here: they all go through the write gate (`gate.rs`).

use std::fmt::Debug;
use std::future::Future;

use kube::Resource;
use kube::api::Api;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::error::exec_error;
use crate::executor::ExecError;

/// Runs one Kubernetes call in a span, keeping its raw error.
pub(super) async fn raw<T>(
    verb: &'static str,
    kind: &str,
    name: &str,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    let span = tracing::debug_span!("k8s.request", k8s.verb = verb, k8s.kind = kind, k8s.name = name);
    fut.instrument(span).await
}

/// Runs one Kubernetes call in a span, classifying its error.
pub(super) async fn traced<T>(
    verb: &'static str,
    kind: &str,
    name: &str,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, ExecError> {
    raw(verb, kind, name, fut).await.map_err(|e| exec_error(&format!("{verb} {kind} {name}"), e))
}

/// The object `name`, or `None` when it does not exist.
pub(super) async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, ExecError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = kind_of::<K>();
    traced("get", &kind, name, async { api.get_opt(name).await }).await
}

/// The object kind's name, e.g. `Deployment`.
pub(super) fn kind_of<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).into_owned()
}
