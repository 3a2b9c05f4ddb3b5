//! The in-memory cluster behind the server: a `kube_fake_client` client with the KEDA kinds
//! and CSI snapshot kinds
//! registered and the status subresource on Deployments, Jobs and Pods.
//!
//! It is only construction; requests reach it through `handler.rs`. Namespaces live in
//! `namespaces.rs`, because the fake cannot route cluster-scoped namespace paths.

use crate::keda::{ScaledObject, TriggerAuthentication};
use crate::snapshot::{VolumeSnapshot, VolumeSnapshotClass};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

/// Building the fake cluster failed.
#[derive(Debug, thiserror::Error)]
#[error("building the fake cluster: {0}")]
pub struct BuildError(#[source] pub kube_fake_client::Error);

/// Build the fake cluster holding `objects` (each with `apiVersion` and `kind`).
pub async fn build(objects: Vec<serde_json::Value>) -> Result<kube::Client, BuildError> {
    kube_fake_client::ClientBuilder::new()
        .with_runtime_objects(objects)
        .with_resource::<ScaledObject>()
        .with_resource::<TriggerAuthentication>()
        .with_resource::<VolumeSnapshot>()
        .with_resource::<VolumeSnapshotClass>()
        .with_status_subresource::<Deployment>()
        .with_status_subresource::<Job>()
        .with_status_subresource::<Pod>()
        .build()
        .await
        .map_err(BuildError)
}
