//! Field names of the job and session hashes, shared by the Lua scripts
//! (which spell them literally; a test keeps them in step) and the Rust
//! adapters that read them.
//!
//! Times are milliseconds since the Unix epoch, stored as decimal strings.
//! State fields hold the wire names of [`crate::state`].

/// Fields of `{sm}:job:{job_id}`.
pub mod job {
    /// Session id.
    pub const SESSION: &str = "session_id";
    /// Command wire name.
    pub const COMMAND: &str = "command";
    /// [`crate::JobState`] wire name.
    pub const STATE: &str = "state";
    /// Session generation the job was issued for.
    pub const GENERATION: &str = "generation";
    /// When the api accepted it.
    pub const REQUESTED_AT: &str = "requested_at_ms";
    /// When a worker first started it.
    pub const STARTED_AT: &str = "started_at_ms";
    /// When it reached a terminal state.
    pub const FINISHED_AT: &str = "finished_at_ms";
    /// How many times a worker started it.
    pub const ATTEMPTS: &str = "attempts";
    /// Error message of a failed or dead job.
    pub const ERROR: &str = "error";
    /// Id of its entry in the jobs stream.
    pub const STREAM_ID: &str = "stream_id";
    /// The client's idempotency key, if any.
    pub const IDEMPOTENCY_KEY: &str = "idempotency_key";
    /// [`crate::Origin`] wire name: who asked for the job (absent on older
    /// jobs: `api`).
    pub const ORIGIN: &str = "origin";
}

/// Fields of `{sm}:session:{id}`.
pub mod session {
    /// Owner.
    pub const USER: &str = "user_id";
    /// [`crate::SessionState`] wire name.
    pub const STATUS: &str = "status";
    /// [`crate::DesiredState`] wire name.
    pub const DESIRED: &str = "desired";
    /// Bumped by every accepted command; jobs carry the value they were issued for.
    pub const GENERATION: &str = "generation";
    /// Creation time.
    pub const CREATED_AT: &str = "created_at_ms";
    /// Last command or status change.
    pub const LAST_ACTIVITY: &str = "last_activity_ms";
    /// Ready replicas last observed by the worker.
    pub const REPLICAS: &str = "replicas";
    /// Last error, empty when the last job succeeded.
    pub const LAST_ERROR: &str = "last_error";
    /// File name of the backup written on delete.
    pub const BACKUP_FILE: &str = "backup_file";
    /// Highest fencing token that has written this record.
    pub const FENCE: &str = "fence";
    /// Id of the last job enqueued for it.
    pub const LAST_JOB: &str = "last_job_id";
    /// Workspace URL handed to the client at create.
    pub const WORKSPACE_URL: &str = "workspace_url";
    /// `host:port` the gateway proxies to (the Service's clusterIP and
    /// port), written by the worker when the session converges to running
    /// and removed when it does not run.
    pub const UPSTREAM: &str = "upstream";
    /// The session's own idle timeout in seconds (absent: the worker's
    /// `IDLE_SLEEP_AFTER`; `0`: never sleeps by itself).
    pub const IDLE_TIMEOUT: &str = "idle_timeout_secs";
    /// The sweeper's next automatic action, `"{action} {at_ms}"`
    /// (`sleep`/`delete`), absent when none is planned.
    pub const NEXT_ACTION: &str = "next_action";
    /// The last status change, `"{from} {to} {origin} {at_ms}"`, written by
    /// the enqueue and finish scripts when they change the status.
    pub const LAST_TRANSITION: &str = "last_transition";
    /// Id of the backup the session was created from (`restore_from`),
    /// absent for a fresh session.
    pub const RESTORE_FROM: &str = "restore_from";
    /// That backup's archive file name (or VolumeSnapshot name), copied
    /// from its record at create.
    pub const RESTORE_LOCATION: &str = "restore_location";
    /// That backup's kind (`archive`, `snapshot`), copied at create; absent
    /// on sessions created before snapshots existed (then `archive`).
    pub const RESTORE_KIND: &str = "restore_kind";
    /// That archive's size in bytes, copied at create.
    pub const RESTORE_SIZE_BYTES: &str = "restore_size_bytes";
    /// That archive's SHA-256, copied at create.
    pub const RESTORE_SHA256: &str = "restore_sha256";
}

/// Fields of `{sm}:backup:{backup_id}`, one backup of a session.
pub mod backup {
    /// The backup's id (also in the key).
    pub const ID: &str = "id";
    /// Session it was taken of.
    pub const SESSION: &str = "session_id";
    /// Owner of that session.
    pub const USER: &str = "user_id";
    /// When it was recorded.
    pub const CREATED_AT: &str = "created_at_ms";
    /// What it is: [`KIND_ARCHIVE`] or [`KIND_SNAPSHOT`] ([`crate::BackupKind`]).
    pub const KIND: &str = "kind";
    /// Where it is: the archive's file name on the backup volume, or the
    /// VolumeSnapshot's name.
    pub const LOCATION: &str = "location";
    /// Size of the archive in bytes (a snapshot: its `restoreSize`).
    pub const SIZE_BYTES: &str = "size_bytes";
    /// Lower-case hex SHA-256 of the archive (empty for a snapshot).
    pub const SHA256: &str = "sha256";
    /// One of [`STATE_PENDING`] (written by the worker right before it
    /// creates the backup Job or VolumeSnapshot), [`STATE_SUCCEEDED`],
    /// [`STATE_FAILED`], [`STATE_DELETED`].
    pub const STATE: &str = "state";
    /// Why it failed (empty otherwise).
    pub const ERROR: &str = "error";
    /// Why it is `deleted`, once the worker's backup retention removed its
    /// file: [`REASON_MAX_AGE`], [`REASON_KEEP_PER_USER`] or [`REASON_USER`]
    /// (absent while a user-deleted backup's file is still there).
    pub const DELETED_REASON: &str = "deleted_reason";
    /// When the worker's backup retention removed its file (ms); absent
    /// until then. Records are kept after that, as history.
    pub const REMOVED_AT: &str = "removed_at_ms";

    /// The id of the backup that request `generation` (a delete or an
    /// on-demand backup) of session `session_id` takes.
    pub fn id(session_id: &str, generation: u64) -> String {
        format!("{session_id}-g{generation}")
    }

    /// Kind of a zip archive written by the backup Job.
    pub const KIND_ARCHIVE: &str = "archive";
    /// Kind of a CSI VolumeSnapshot taken in `BACKUP_MODE=snapshot`.
    pub const KIND_SNAPSHOT: &str = "snapshot";
    /// Being taken.
    pub const STATE_PENDING: &str = "pending";
    /// Written and verified.
    pub const STATE_SUCCEEDED: &str = "succeeded";
    /// Could not be taken.
    pub const STATE_FAILED: &str = "failed";
    /// Marked deleted by a user, or pruned by the worker's retention.
    pub const STATE_DELETED: &str = "deleted";
    /// Pruned: older than `BACKUP_MAX_AGE_DAYS`.
    pub const REASON_MAX_AGE: &str = "max_age";
    /// Pruned: beyond its user's newest `BACKUP_KEEP_PER_USER`.
    pub const REASON_KEEP_PER_USER: &str = "keep_per_user";
    /// A user deleted it; retention then removed its file.
    pub const REASON_USER: &str = "user";
}
