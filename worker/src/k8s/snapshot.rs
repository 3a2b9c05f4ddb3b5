//! Snapshot mode (`BACKUP_MODE=snapshot`): a CSI `VolumeSnapshot`
//! (`snapshot.storage.k8s.io/v1`) of the session's volume instead of an
//! archive. A small typed struct implementing [`kube::Resource`] through
//! `resource.rs`'s macro (as [`super::keda`]'s does), its pure builder, and
//! what the planner reads from it.
//!
//! The snapshot names the session's PVC as its source and the configured
//! VolumeSnapshotClass (`BACKUP_SNAPSHOT_CLASS`), whose `deletionPolicy`
//! decides whether deleting the VolumeSnapshot (retention) also deletes the
//! storage snapshot. It is usable once `status.readyToUse` is true; its
//! `status.restoreSize` is recorded as the backup's size (there is no
//! checksum: the storage system keeps the data). Being ready is all the
//! verification there is: CSI drivers cut the snapshot from the volume
//! itself. A restore creates the new session's PVC with `dataSourceRef`
//! naming the snapshot ([`super::objects::pvc_from_snapshot`]); no Job and no shared
//! volume take part. The snapshot lives in the workspace namespace, so it
//! outlives the deleted session's PVC.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proto_types::SessionId;
use serde::{Deserialize, Serialize};

use super::k8s_config::K8sConfig;
use super::names;

/// API group of the snapshot kinds.
pub const GROUP: &str = "snapshot.storage.k8s.io";
/// API version of the snapshot kinds.
pub const VERSION: &str = "v1";
/// Kind of a snapshot.
pub const KIND: &str = "VolumeSnapshot";

/// A VolumeSnapshot, reduced to the fields the worker sets and reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeSnapshot {
    /// Always `snapshot.storage.k8s.io/v1`.
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    /// Always `VolumeSnapshot`.
    #[serde(default = "kind")]
    pub kind: String,
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// What to snapshot.
    pub spec: VolumeSnapshotSpec,
    /// Set by the snapshot controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<VolumeSnapshotStatus>,
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn kind() -> String {
    KIND.into()
}

/// `spec` of a [`VolumeSnapshot`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    /// The volume to snapshot.
    pub source: VolumeSnapshotSource,
    /// The VolumeSnapshotClass (none: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

/// `spec.source`: a dynamic snapshot of a PVC in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    /// The PVC's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
}

/// `status` of a [`VolumeSnapshot`] (the fields read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// Whether the snapshot can be restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The smallest volume a restore needs, a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<String>,
    /// The last error the snapshot controller met (it keeps retrying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
}

/// `status.error`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotError {
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

super::resource::namespaced_resource!(VolumeSnapshot, group: GROUP, version: VERSION, kind: KIND, plural: "volumesnapshots");

/// The snapshot of request `generation` (a delete or an on-demand backup)
/// of the session's volume, in `config.snapshot_class`.
pub fn snapshot(config: &K8sConfig, id: &SessionId, generation: u64) -> VolumeSnapshot {
    VolumeSnapshot {
        api_version: api_version(),
        kind: kind(),
        metadata: ObjectMeta {
            name: Some(names::backup_snapshot(id, generation)),
            namespace: Some(config.namespace.clone()),
            labels: Some(names::component_labels(id, "backup")),
            ..Default::default()
        },
        spec: VolumeSnapshotSpec {
            source: VolumeSnapshotSource { persistent_volume_claim_name: Some(names::pvc(id)) },
            volume_snapshot_class_name: Some(config.snapshot_class.clone()).filter(|c| !c.is_empty()),
        },
        status: None,
    }
}

/// What the planner needs of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotView {
    /// `status.readyToUse`.
    pub ready: bool,
    /// `status.restoreSize` in bytes (0 when absent or unreadable).
    pub size_bytes: u64,
    /// `status.error.message`, while not ready.
    pub error: Option<String>,
}

/// The planner's view of `s`.
pub fn view(s: &VolumeSnapshot) -> SnapshotView {
    let status = s.status.as_ref();
    let ready = status.and_then(|st| st.ready_to_use).unwrap_or(false);
    SnapshotView {
        ready,
        size_bytes: status.and_then(|st| st.restore_size.as_deref()).and_then(quantity_bytes).unwrap_or(0),
        error: if ready { None } else { status.and_then(|st| st.error.as_ref()?.message.clone()) },
    }
}

/// Bytes of a storage quantity (`5368709120`, `5Gi`, `500M`, `1.5Gi`);
/// `None` for what is not one (or does not fit in `u64`).
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut bytes = whole.checked_mul(factor)?;
    if !fraction.is_empty() {
        // Rounded up, as Kubernetes rounds a fractional byte count.
        let digits = u32::try_from(fraction.len()).ok().filter(|d| *d <= 18)?;
        let scale = 10u128.pow(digits);
        let part = (u128::from(fraction.parse::<u64>().ok()?) * u128::from(factor)).div_ceil(scale);
        bytes = bytes.checked_add(u64::try_from(part).ok()?)?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_names_the_session_volume_and_the_class() {
        let id = SessionId::parse("1a2b3c4d").expect("id");
        let cfg = K8sConfig { snapshot_class: "pd-snapshots".into(), ..K8sConfig::default() };
        let s = snapshot(&cfg, &id, 7);
        assert_eq!(s.metadata.name.as_deref(), Some("ws-1a2b3c4d-snap-g7"));
        assert_eq!(s.spec.source.persistent_volume_claim_name.as_deref(), Some("ws-1a2b3c4d-data"));
        assert_eq!(s.spec.volume_snapshot_class_name.as_deref(), Some("pd-snapshots"));
        let none = snapshot(&K8sConfig { snapshot_class: String::new(), ..K8sConfig::default() }, &id, 7);
        assert_eq!(none.spec.volume_snapshot_class_name, None, "empty: the cluster's default class");
    }

    #[test]
    fn ready_size_and_error_are_read_from_the_status() {
        let with = |ready: Option<bool>, size: Option<&str>, error: Option<&str>| VolumeSnapshot {
            status: Some(VolumeSnapshotStatus {
                ready_to_use: ready,
                restore_size: size.map(str::to_owned),
                error: error.map(|m| SnapshotError { message: Some(m.into()) }),
            }),
            ..VolumeSnapshot::default()
        };
        assert_eq!(
            view(&with(Some(true), Some("5Gi"), None)),
            SnapshotView { ready: true, size_bytes: 5 << 30, error: None }
        );
        assert_eq!(
            view(&with(Some(false), None, Some("claim not found"))),
            SnapshotView { ready: false, size_bytes: 0, error: Some("claim not found".into()) }
        );
        assert_eq!(view(&VolumeSnapshot::default()), SnapshotView { ready: false, size_bytes: 0, error: None });
    }

    #[test]
    fn quantities_in_bytes() {
        for (q, want) in [
            ("5368709120", Some(5_368_709_120)),
            ("5Gi", Some(5 << 30)),
            ("1.5Gi", Some(3 << 29)),
            ("500M", Some(500_000_000)),
            ("1k", Some(1000)),
            ("0.1", Some(1)),
            ("", None),
            ("Gi", None),
            ("5Xi", None),
            ("-1", None),
            ("1.2.3", None),
            ("99999999999Ei", None),
        ] {
            assert_eq!(quantity_bytes(q), want, "{q:?}");
        }
    }
}
