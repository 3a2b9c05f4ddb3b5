//! The kubelets' snapshot pass: every VolumeSnapshot not yet ready gets the status that
//! `snapshot::wanted_status` decides from its source claim. The process kubelet passes a
//! `take` hook that copies the claim's files first (see `volumes.rs`); the simulated kubelet
//! passes none. All snapshots are handled, labelled or not.

use crate::snapshot::{self, VolumeSnapshot};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// One pass over the snapshots of `ns` (all namespaces: `None`). `take(snapshot)` runs just
/// before a snapshot is marked ready; an `Err(message)` marks it not ready with that message
/// instead (and it is tried again next pass). Returns the snapshots as listed, with the
/// statuses written in this pass.
pub async fn pass(
    client: &Client,
    ns: Option<&str>,
    mut take: impl FnMut(&VolumeSnapshot) -> Result<(), String>,
) -> Result<Vec<VolumeSnapshot>, kube::Error> {
    let api: Api<VolumeSnapshot> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut snapshots = api.list(&ListParams::default()).await?.items;
    for s in snapshots.iter_mut().filter(|s| !s.ready()) {
        let Some(sns) = s.namespace() else { continue };
        let claim = match s.source_claim() {
            Some(c) => Api::<PersistentVolumeClaim>::namespaced(client.clone(), &sns).get_opt(c).await?,
            None => None,
        };
        let now = jiff::Timestamp::now().to_string();
        let Some(mut status) = snapshot::wanted_status(s, claim.as_ref(), &now) else { continue };
        if status["readyToUse"] == true
            && let Err(message) = take(s)
        {
            status = json!({ "readyToUse": false, "error": { "message": message, "time": now } });
            if s.status["error"]["message"] == status["error"]["message"] {
                continue;
            }
        }
        tracing::info!(ns = %sns, snapshot = %s.name_any(), ready = %status["readyToUse"], "snapshot status");
        let patch = json!({ "status": status });
        let api: Api<VolumeSnapshot> = Api::namespaced(client.clone(), &sns);
        *s = api.patch(&s.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(snapshots)
}
