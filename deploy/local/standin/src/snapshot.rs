//! Minimal typed CSI snapshot kinds (`snapshot.storage.k8s.io/v1`): VolumeSnapshot
//! (namespaced) and VolumeSnapshotClass (cluster-scoped), registered in the fake cluster like
//! the KEDA kinds, and the pure decision of a snapshot's status (see `snapshots.rs` for the
//! kubelets' pass that writes it).
//!
//! Spec, status and a class's fields are kept as free JSON: the stand-in stores what it is
//! given; schema checks against the CRDs belong to the worker's tests.

use crate::resource::resource_impl;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The CSI snapshot API group.
pub const GROUP: &str = "snapshot.storage.k8s.io";
/// The version served here.
pub const VERSION: &str = "v1";

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

/// A point-in-time copy of a PersistentVolumeClaim (`spec.source.persistentVolumeClaimName`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshot {
    /// Always `snapshot.storage.k8s.io/v1`.
    #[serde(default = "api_version")]
    pub api_version: String,
    /// `VolumeSnapshot`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec, stored as given.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub spec: Value,
    /// The status the kubelets write.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub status: Value,
}

impl VolumeSnapshot {
    /// Kind name.
    pub const KIND: &'static str = "VolumeSnapshot";

    /// A snapshot `name` in `namespace` of the claim `pvc`.
    pub fn of_claim(name: &str, namespace: &str, pvc: &str) -> Self {
        Self {
            api_version: api_version(),
            kind: Self::KIND.to_string(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            spec: json!({ "source": { "persistentVolumeClaimName": pvc } }),
            status: Value::Null,
        }
    }

    /// `spec.source.persistentVolumeClaimName`.
    pub fn source_claim(&self) -> Option<&str> {
        self.spec["source"]["persistentVolumeClaimName"].as_str()
    }

    /// `status.readyToUse`.
    pub fn ready(&self) -> bool {
        self.status["readyToUse"].as_bool() == Some(true)
    }
}

resource_impl!(
    VolumeSnapshot,
    GROUP,
    VERSION,
    "VolumeSnapshot",
    "volumesnapshots",
    k8s_openapi::NamespaceResourceScope
);

/// A class of snapshots (`driver`, `deletionPolicy`, `parameters` at the top level).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotClass {
    /// Always `snapshot.storage.k8s.io/v1`.
    #[serde(default = "api_version")]
    pub api_version: String,
    /// `VolumeSnapshotClass`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The CSI driver name.
    #[serde(default)]
    pub driver: String,
    /// `Delete` or `Retain`.
    #[serde(default)]
    pub deletion_policy: String,
    /// Driver parameters, stored as given.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub parameters: Value,
}

resource_impl!(
    VolumeSnapshotClass,
    GROUP,
    VERSION,
    "VolumeSnapshotClass",
    "volumesnapshotclasses",
    k8s_openapi::ClusterResourceScope
);

/// One custom kind: `(kind, plural, singular, short names, namespaced)`.
pub type KindRow = (&'static str, &'static str, &'static str, &'static [&'static str], bool);

/// Every snapshot kind served.
pub const KINDS: &[KindRow] = &[
    ("VolumeSnapshot", "volumesnapshots", "volumesnapshot", &["vs"], true),
    ("VolumeSnapshotClass", "volumesnapshotclasses", "volumesnapshotclass", &["vsclass", "vsclasses"], false),
];

/// The stable VolumeSnapshotContent name of snapshot `uid` (or `ns/name` without a uid).
pub fn content_name(s: &VolumeSnapshot) -> String {
    let id = s.metadata.uid.clone().unwrap_or_else(|| {
        format!("{}-{}", s.metadata.namespace.as_deref().unwrap_or(""), s.metadata.name.as_deref().unwrap_or(""))
    });
    format!("snapcontent-{id}")
}

/// The status `s` should have given its source claim (`None`: missing), or `None` when the
/// one it has is already right. A ready snapshot stays as it is (a snapshot is taken once).
pub fn wanted_status(s: &VolumeSnapshot, source: Option<&PersistentVolumeClaim>, now: &str) -> Option<Value> {
    if s.ready() {
        return None;
    }
    let ns = s.metadata.namespace.as_deref().unwrap_or("");
    let Some(pvc) = source else {
        let message = match s.source_claim() {
            Some(c) => format!("source PersistentVolumeClaim {ns}/{c} not found"),
            None => "spec.source.persistentVolumeClaimName is not set".to_string(),
        };
        let want = json!({ "readyToUse": false, "error": { "message": message } });
        let same = s.status["readyToUse"] == want["readyToUse"] && s.status["error"]["message"] == message;
        return (!same).then(|| json!({ "readyToUse": false, "error": { "message": message, "time": now } }));
    };
    let size = pvc
        .spec
        .as_ref()
        .and_then(|sp| sp.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    Some(json!({
        "readyToUse": true,
        "creationTime": now,
        "restoreSize": size,
        "boundVolumeSnapshotContentName": content_name(s),
        "error": null,
    }))
}

/// The VolumeSnapshot a claim is to be restored from: its `spec.dataSourceRef` (or
/// `spec.dataSource`) naming kind `VolumeSnapshot` of this group.
pub fn restore_source(pvc: &PersistentVolumeClaim) -> Option<&str> {
    let spec = pvc.spec.as_ref()?;
    let (group, kind, name) = match (&spec.data_source_ref, &spec.data_source) {
        (Some(r), _) => (r.api_group.as_deref(), r.kind.as_str(), r.name.as_str()),
        (None, Some(r)) => (r.api_group.as_deref(), r.kind.as_str(), r.name.as_str()),
        (None, None) => return None,
    };
    (group == Some(GROUP) && kind == VolumeSnapshot::KIND).then_some(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pvc(size: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": { "name": "data", "namespace": "w" },
            "spec": { "resources": { "requests": { "storage": size } } }
        }))
        .unwrap()
    }

    #[test]
    fn a_snapshot_of_an_existing_claim_becomes_ready_once() {
        let mut s = VolumeSnapshot::of_claim("s1", "w", "data");
        let st = wanted_status(&s, Some(&pvc("5Gi")), "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(st["readyToUse"], true);
        assert_eq!(st["restoreSize"], "5Gi");
        assert_eq!(st["creationTime"], "2026-01-01T00:00:00Z");
        assert_eq!(st["boundVolumeSnapshotContentName"], "snapcontent-w-s1");
        s.status = st;
        assert!(wanted_status(&s, None, "later").is_none(), "ready stays ready");
    }

    #[test]
    fn a_claim_names_its_snapshot_in_data_source_ref() {
        let mut c = pvc("1Gi");
        assert_eq!(restore_source(&c), None);
        let spec = c.spec.as_mut().unwrap();
        spec.data_source_ref = Some(
            serde_json::from_value(json!(
            { "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s1" }))
            .unwrap(),
        );
        assert_eq!(restore_source(&c), Some("s1"));
        c.spec.as_mut().unwrap().data_source_ref =
            Some(serde_json::from_value(json!({ "kind": "PersistentVolumeClaim", "name": "other" })).unwrap());
        assert_eq!(restore_source(&c), None);
    }

    #[test]
    fn a_missing_claim_is_reported_once() {
        let mut s = VolumeSnapshot::of_claim("s1", "w", "gone");
        let st = wanted_status(&s, None, "t").unwrap();
        assert_eq!(st["readyToUse"], false);
        assert_eq!(st["error"]["message"], "source PersistentVolumeClaim w/gone not found");
        s.status = st;
        assert!(wanted_status(&s, None, "t2").is_none(), "no rewrite of the same error");
        assert_eq!(wanted_status(&s, Some(&pvc("1Gi")), "t3").unwrap()["readyToUse"], true);
    }
}
