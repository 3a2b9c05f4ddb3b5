//! The seam between the queue runner and the code that acts on Kubernetes.
//!
//! The runner (`crate::runner`) owns delivery: reading the stream, the
//! session lease, retries, finishing and acking. An [`Executor`] owns one
//! thing: converge one session to its desired state and say what it
//! observed. The Kubernetes executor (`crate::k8s`) is the production
//! implementation; tests use in-memory ones.
//!
//! Executors must be idempotent: `converge` may be called again for the same
//! target after a crash at any point, and must end in the same state.

use std::future::Future;
use std::sync::Arc;

use proto_types::scripts::start::RestoreSource;
use proto_types::{Command, DesiredState, JobId, SessionId, SessionState};

use crate::entitlement::LeaseGuard;
use crate::fenced::Fenced;

/// What the runner asks an executor to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The session to converge.
    pub session_id: SessionId,
    /// The state to converge to: the session's *latest* desired state, read
    /// when the job started (level-triggered), not the job's own command.
    pub desired: DesiredState,
    /// Session generation the desired state belongs to.
    pub generation: u64,
    /// The job being executed (for spans and logs).
    pub job_id: JobId,
    /// The job's command (for spans and logs).
    pub command: Command,
    /// Delivery attempt, starting at 1.
    pub attempt: u32,
    /// Workspace URL recorded at create (host of the Ingress), if any.
    pub workspace_url: Option<String>,
    /// The session lease the converge runs under: its fencing token goes on
    /// every written object, and every write asks it first.
    pub lease: LeaseGuard,
    /// The backup the session was created from (`restore_from`), if any.
    pub restore: Option<RestoreSource>,
}

impl Target {
    /// Whether this job is an on-demand backup of a sleeping session
    /// (`POST /session/{uuid}/backup`).
    pub fn on_demand_backup(&self) -> bool {
        self.command == Command::Backup && self.desired == DesiredState::Sleeping
    }
}

/// What the executor observed once the session reached its desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Status to record: `running`, `sleeping` or `deleted`.
    pub status: SessionState,
    /// Ready replicas observed.
    pub replicas: u32,
    /// Backup file written by a delete, e.g. `app-abc-20251120-130829-g3.zip`.
    pub backup_file: Option<String>,
    /// `ip:port` the gateway proxies to (the Service's clusterIP and
    /// port), when running and known.
    pub upstream: Option<String>,
    /// The verified archive a backup Job reported (a delete's, recorded
    /// with its `deleted` status, or an on-demand backup's).
    pub archive: Option<Archive>,
}

/// A delete's backup that did not produce a verified archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedBackup {
    /// The backup's id, `{uuid}-g{generation}` of the delete request.
    pub id: String,
    /// An archive or a snapshot.
    pub kind: proto_types::BackupKind,
    /// The archive file name it was to write, or the VolumeSnapshot's name.
    pub location: String,
}

/// A verified backup: an archive as its Job reported it, or a ready
/// VolumeSnapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The backup's id, `{uuid}-g{generation}` of the delete or backup request.
    pub id: String,
    /// An archive or a snapshot.
    pub kind: proto_types::BackupKind,
    /// The archive's file name on the backup volume, or the VolumeSnapshot's name.
    pub location: String,
    /// Size of the archive file in bytes (a snapshot: its `restoreSize`).
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 of the archive file (empty for a snapshot).
    pub sha256: String,
}

/// The failure underneath an [`ExecError`] (e.g. the `kube::Error`), kept
/// for the `source()` chain and logs. Shared, so the error stays `Clone`.
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why converging did not finish. The variant is the kind, and the kind
/// decides what the runner does: retry with backoff (and, once retries are
/// exhausted, leave the entry pending for redelivery), or fail the job at
/// once. The underlying error travels along as `source`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// Worth retrying: 429, 5xx, timeouts, conflicts, connection errors.
    #[error("retryable: {message}")]
    Retryable {
        /// What went wrong.
        message: String,
        /// The underlying failure, if there is one.
        #[source]
        source: Option<ErrorSource>,
    },
    /// Retrying cannot help (403, 422, invalid object, backup failed,
    /// workspace never became ready within the bound). The job fails and
    /// the session records `status` and the message.
    #[error("{message}")]
    Permanent {
        /// What went wrong, including the Kubernetes message where there is one.
        message: String,
        /// Session status to record (usually `failed`).
        status: SessionState,
        /// The underlying failure, if there is one.
        #[source]
        source: Option<ErrorSource>,
        /// The delete's backup that failed, when that is why (recorded as
        /// a `failed` backup). Boxed: rare, and it keeps the error small.
        backup: Option<Box<FailedBackup>>,
    },
    /// A newer lease holder may own the session: stop writing at once and
    /// abandon the job (no retry, no finish; the entry stays pending).
    #[error("fenced: {0}")]
    Fenced(#[from] Fenced),
}

impl ExecError {
    /// A retryable failure without an underlying error.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable { message: message.into(), source: None }
    }

    /// A permanent failure that records `status` on the session.
    pub fn permanent(message: impl Into<String>, status: SessionState) -> Self {
        Self::Permanent { message: message.into(), status, source: None, backup: None }
    }

    /// The same failure, naming the delete's backup that failed.
    #[must_use]
    pub fn with_failed_backup(self, failed: FailedBackup) -> Self {
        match self {
            Self::Permanent { message, status, source, .. } => {
                Self::Permanent { message, status, source, backup: Some(Box::new(failed)) }
            }
            other => other,
        }
    }

    /// The same failure, caused by `source`.
    #[must_use]
    pub fn caused_by(self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        let cause: Option<ErrorSource> = Some(Arc::new(cause));
        match self {
            Self::Retryable { message, .. } => Self::Retryable { message, source: cause },
            Self::Permanent { message, status, backup, .. } => {
                Self::Permanent { message, status, source: cause, backup }
            }
            fenced @ Self::Fenced(_) => fenced,
        }
    }

    /// Whether the runner should retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ExecError::Retryable { .. })
    }

    /// What went wrong, without the kind prefix.
    pub fn message(&self) -> String {
        match self {
            Self::Retryable { message, .. } | Self::Permanent { message, .. } => message.clone(),
            Self::Fenced(f) => f.to_string(),
        }
    }
}

/// Converges one session to its desired state.
pub trait Executor: Send + Sync + 'static {
    /// Converge `target.session_id` to `target.desired`; idempotent.
    fn converge(&self, target: &Target) -> impl Future<Output = Result<Outcome, ExecError>> + Send;
}
