//! [`render_session_objects`]: every object the worker would create for one
//! session, and [`render_worker_objects`]: those of no session (the backup
//! retention's prune Job), as JSON values, for schema validation and for
//! printing (`worker render-objects` and `make deploy-check`).

use proto_types::SessionId;
use serde_json::Value;

use super::backup;
use super::k8s_config::K8sConfig;
use super::keda;
use super::objects;
use super::prune;
use super::restore;
use super::snapshot;
use proto_types::scripts::start::RestoreSource;

/// Every object of a running session (PVC, Deployment, Service, Ingress,
/// ScaledObject) plus the backup Job of a delete and the restore Job of a
/// create from a backup, then snapshot mode's VolumeSnapshot of a delete
/// and the PVC of a create from it, as JSON. The Ingress and both backup
/// modes are rendered whatever `WORKSPACE_ROUTING` and `BACKUP_MODE` say,
/// so `make deploy-check` validates what every setting would create.
/// Deterministic: backups are rendered for generation 1 at the Unix epoch.
pub fn render_session_objects(config: &K8sConfig, id: &SessionId, workspace_url: Option<&str>) -> Vec<Value> {
    let file = backup::file_name(id, 1, jiff::Timestamp::UNIX_EPOCH);
    let values = [
        serde_json::to_value(objects::pvc(config, id)),
        serde_json::to_value(objects::deployment(config, id, 1)),
        serde_json::to_value(objects::service(config, id)),
        serde_json::to_value(objects::ingress(config, id, workspace_url)),
        serde_json::to_value(keda::scaled_object(config, id, false)),
        serde_json::to_value(backup::job(config, id, 1, &file)),
        serde_json::to_value(restore::job(
            config,
            id,
            &RestoreSource {
                backup_id: super::names::backup_id(id, 1),
                kind: proto_types::BackupKind::Archive,
                location: file.clone(),
                size_bytes: 0,
                sha256: "0".repeat(64),
            },
        )),
        serde_json::to_value(snapshot::snapshot(config, id, 1)),
        serde_json::to_value(objects::pvc_from_snapshot(config, id, &super::names::backup_snapshot(id, 1), 0)),
    ];
    values.into_iter().map(|v| v.expect("typed Kubernetes objects always serialize to JSON")).collect()
}

/// The objects that belong to no session: the prune Job of backup
/// retention (rendered for the pass at the Unix epoch, removing one file).
pub fn render_worker_objects(config: &K8sConfig) -> Vec<Value> {
    let files = [format!("app-0fa6debc-{}.zip", jiff::Timestamp::UNIX_EPOCH.strftime("%Y%m%d-%H%M%S"))];
    let job = prune::job(config, &prune::job_name(0, 0), &files).expect("a plain file name, well under the limit");
    vec![serde_json::to_value(job).expect("typed Kubernetes objects always serialize to JSON")]
}
