//! [`K8sConfig`]: every knob of the per-session Kubernetes objects and of
//! the executor's waits, with the defaults the README documents.
//!
//! This module only holds values; it does not read the environment (the
//! worker's command line, `crate::cli`, fills it) and it builds no objects.

use std::time::Duration;

/// How a workspace is reached from outside (`WORKSPACE_ROUTING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Routing {
    /// Through the gateway's one wildcard Ingress: no per-session Ingress
    /// (a leftover one from `ingress` mode is deleted).
    #[default]
    Gateway,
    /// The seed's per-session Ingress straight to the session's Service.
    Ingress,
}

/// How a backup is taken (`BACKUP_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackupMode {
    /// A verified zip archive on the shared backup volume, written by a Job.
    #[default]
    Archive,
    /// A CSI VolumeSnapshot of the session's volume (no Job, no shared volume).
    Snapshot,
}

impl BackupMode {
    /// The kind of backup this mode takes.
    pub fn kind(self) -> proto_types::BackupKind {
        match self {
            Self::Archive => proto_types::BackupKind::Archive,
            Self::Snapshot => proto_types::BackupKind::Snapshot,
        }
    }
}

/// Settings for the objects the worker creates per session and for how long
/// it waits on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sConfig {
    /// Namespace of every session object (`WORKSPACE_NAMESPACE`).
    pub namespace: String,
    /// Workspace container image (`WORKSPACE_IMAGE`).
    pub image: String,
    /// Size of each session's PVC, a Kubernetes quantity (`WORKSPACE_PVC_SIZE`).
    pub pvc_size: String,
    /// Storage class of each session's PVC (`WORKSPACE_STORAGE_CLASS`).
    pub storage_class: String,
    /// CPU request of the workspace container (`WORKSPACE_CPU_REQUEST`).
    pub cpu_request: String,
    /// Memory request of the workspace container (`WORKSPACE_MEMORY_REQUEST`).
    pub memory_request: String,
    /// CPU limit of the workspace container (`WORKSPACE_CPU_LIMIT`).
    pub cpu_limit: String,
    /// Memory limit of the workspace container (`WORKSPACE_MEMORY_LIMIT`).
    pub memory_limit: String,
    /// Per-session Ingress or the gateway (`WORKSPACE_ROUTING`).
    pub routing: Routing,
    /// Ingress class (`WORKSPACE_INGRESS_CLASS`).
    pub ingress_class: String,
    /// cert-manager ClusterIssuer named in the Ingress annotation (`WORKSPACE_CLUSTER_ISSUER`).
    pub cluster_issuer: String,
    /// Workspace URL pattern; `{uuid}` is replaced by the session id (`WORKSPACE_URL_PATTERN`).
    /// Used only when the session has no recorded URL.
    pub url_pattern: String,
    /// Redis address the KEDA redis trigger reads, `host:port` (`KEDA_REDIS_ADDRESS`).
    pub keda_redis_address: String,
    /// Name of the KEDA TriggerAuthentication holding the Redis password (`KEDA_TRIGGER_AUTH`).
    pub keda_trigger_auth: String,
    /// Name of the shared backup PVC mounted at `/backup` (`BACKUP_PVC`).
    pub backup_pvc: String,
    /// Image of the backup Job; must provide `python3` (`BACKUP_IMAGE`).
    pub backup_image: String,
    /// Archive or snapshot (`BACKUP_MODE`).
    pub backup_mode: BackupMode,
    /// VolumeSnapshotClass of snapshot backups; empty: the cluster's default
    /// class (`BACKUP_SNAPSHOT_CLASS`).
    pub snapshot_class: String,
    /// Bound on waiting for the Deployment to become ready (`READY_TIMEOUT_SECS`).
    pub ready_timeout: Duration,
    /// Bound on waiting for the session's pods to go away (`POD_GONE_TIMEOUT_SECS`).
    pub pod_gone_timeout: Duration,
    /// Bound on waiting for the backup Job to finish (`BACKUP_TIMEOUT_SECS`).
    pub backup_timeout: Duration,
    /// Pause between two observations while waiting (`K8S_POLL_INTERVAL_MS`).
    pub poll_interval: Duration,
    /// `ttlSecondsAfterFinished` of backup Jobs (`BACKUP_JOB_TTL_SECS`).
    pub backup_job_ttl_secs: i32,
}

impl Default for K8sConfig {
    fn default() -> Self {
        Self {
            namespace: "workspaces".into(),
            image: "codercom/code-server:4.139.1".into(),
            pvc_size: "5Gi".into(),
            storage_class: "standard-rwo".into(),
            cpu_request: "250m".into(),
            memory_request: "256Mi".into(),
            cpu_limit: "500m".into(),
            memory_limit: "512Mi".into(),
            routing: Routing::Gateway,
            ingress_class: "nginx".into(),
            cluster_issuer: "letsencrypt-prod".into(),
            url_pattern: "https://vs-code-{uuid}.preview.example.com".into(),
            keda_redis_address: "redis.session-manager.svc.cluster.local:6379".into(),
            keda_trigger_auth: "workspace-redis".into(),
            backup_pvc: "backup-pvc".into(),
            backup_image: "python:3.13-alpine".into(),
            backup_mode: BackupMode::Archive,
            snapshot_class: "workspace-snapshots".into(),
            ready_timeout: Duration::from_secs(120),
            pod_gone_timeout: Duration::from_secs(120),
            backup_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_millis(500),
            backup_job_ttl_secs: 7 * 24 * 3600,
        }
    }
}
