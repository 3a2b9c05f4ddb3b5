//! Response bodies, field for field as the old Flask system answered, plus
//! the new fields (`job_id`, `status_url`, ...). Pure: store records in,
//! serde structs out; between the store and the HTTP layer, importing
//! neither HTTP nor Redis. The old timestamp format is in [`time`].
//!
//! Status words. The old system answered synchronously; commands are now
//! queued, but the words clients match on are kept:
//!
//! | endpoint | `action` | `status` in the 202 | the session's own status meanwhile |
//! |---|---|---|---|
//! | create | – | `created` | `creating`, then `running` |
//! | sleep | `sleep` | `sleeping` | unchanged until the worker reports `sleeping` |
//! | wake | `wake` | `waking` | `waking`, then `running` |
//! | scale-up | `scale_up` | `success` | as wake |
//! | scale-down | `scale_down` | `success` | as sleep |
//! | delete | – | `terminating` | `deleting`, then `deleted` |

use proto_types::{Command, JobState};
use serde::Serialize;

use crate::store::{JobRecord, SessionRecord};

pub mod backups;
pub mod time;

pub use self::time::{iso_ms, now_ms};

/// `GET /health`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `healthy` or `unhealthy`.
    pub status: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// `connected` or `disconnected`.
    pub redis: &'static str,
    /// Now.
    pub timestamp: String,
}

/// `POST /session/create`.
#[derive(Debug, Serialize)]
pub struct Created {
    /// Session id.
    pub uuid: String,
    /// Owner.
    pub user_id: String,
    /// Always `created` (the old word).
    pub status: &'static str,
    /// Workspace URL.
    pub workspace_url: String,
    /// A short-lived, single-use link to the workspace (the workspace URL
    /// with its access token).
    pub access_url: String,
    /// Creation time.
    pub created_at: String,
    /// The create job.
    pub job_id: String,
    /// Where to poll it.
    pub status_url: String,
}

/// `POST /session/{uuid}/access`.
#[derive(Debug, Serialize)]
pub struct Access {
    /// The workspace URL with a single-use access token.
    pub access_url: String,
    /// When the token expires.
    pub expires_at: String,
}

/// The `session` object inside a session response.
#[derive(Debug, Serialize)]
pub struct SessionInner {
    /// Owner.
    pub user_id: String,
    /// Status word (see the module table).
    pub status: &'static str,
    /// Creation time.
    pub created_at: String,
    /// Last command or status change.
    pub last_activity: String,
}

/// `GET /session/{uuid}` and `/status`.
#[derive(Debug, Serialize)]
pub struct SessionStatus {
    /// Session id.
    pub uuid: String,
    /// The old nested object.
    pub session: SessionInner,
    /// Ready replicas last observed.
    pub replicas: u64,
    /// 1 while the session's latest job is queued or running, else 0.
    pub queue_length: u64,
    /// Now.
    pub timestamp: String,
    /// Desired state (`running`, `sleeping`, `deleted`).
    pub desired: &'static str,
    /// Workspace URL.
    pub workspace_url: String,
    /// Last error, or null.
    pub last_error: Option<String>,
    /// Latest job, or null.
    pub last_job_id: Option<String>,
    /// Backup file (`app-{uuid}-{YYYYmmdd-HHMMSS}-g{generation}.zip` on the backup volume) once deleted, or null.
    pub backup_file: Option<String>,
    /// Session generation: one more with every accepted command.
    pub generation: u64,
    /// The session's own idle timeout in seconds, or null (the worker's default).
    pub idle_timeout_secs: Option<u64>,
    /// The last status change, or null.
    pub last_transition: Option<LastTransition>,
    /// The sweeper's next automatic action, or null.
    pub next_action: Option<NextAction>,
    /// The backup the session was created from (`restore_from`), or null.
    pub restore_from: Option<String>,
}

/// A session's last status change.
#[derive(Debug, Serialize)]
pub struct LastTransition {
    /// Status before.
    pub from: &'static str,
    /// Status after.
    pub to: &'static str,
    /// Who caused it: `api`, `gateway`, `idle`, `ttl`, `drift`.
    pub origin: &'static str,
    /// When.
    pub at: String,
}

/// The next automatic action on a session.
#[derive(Debug, Serialize)]
pub struct NextAction {
    /// `sleep` or `delete`.
    pub action: String,
    /// When, at the earliest.
    pub at: String,
}

/// The keepalive response.
#[derive(Debug, Serialize)]
pub struct Activity {
    /// Session id.
    pub uuid: String,
    /// The use just recorded.
    pub last_activity: String,
    /// The session's own idle timeout in seconds, or null (the worker's default).
    pub idle_timeout_secs: Option<u64>,
}

/// One entry of `GET /sessions`.
#[derive(Debug, Serialize)]
pub struct SessionItem {
    /// Session id.
    pub uuid: String,
    /// Owner.
    pub user_id: String,
    /// Status.
    pub status: &'static str,
    /// Creation time.
    pub created_at: String,
    /// Last activity.
    pub last_activity: String,
    /// Replicas.
    pub replicas: u64,
    /// Workspace URL.
    pub workspace_url: String,
}

/// `GET /sessions`.
#[derive(Debug, Serialize)]
pub struct SessionList {
    /// The page.
    pub sessions: Vec<SessionItem>,
    /// Number of sessions in this page.
    pub count: usize,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// Sleep, wake, scale-up, scale-down.
#[derive(Debug, Serialize)]
pub struct Action {
    /// Session id.
    pub uuid: String,
    /// `sleep`, `wake`, `scale_up`, `scale_down`.
    pub action: &'static str,
    /// The old status word.
    pub status: &'static str,
    /// Human sentence.
    pub message: &'static str,
    /// The job.
    pub job_id: String,
    /// Where to poll it.
    pub status_url: String,
}

/// `DELETE /session/{uuid}`.
#[derive(Debug, Serialize)]
pub struct Deleting {
    /// Session id.
    pub uuid: String,
    /// `terminating` (the job says when it is `terminated`).
    pub status: &'static str,
    /// Human sentence.
    pub message: &'static str,
    /// The job.
    pub job_id: String,
    /// Where to poll it.
    pub status_url: String,
}

/// `GET /jobs/{job_id}`.
#[derive(Debug, Serialize)]
pub struct JobStatus {
    /// Job id.
    pub job_id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `superseded`, `dead`.
    pub state: &'static str,
    /// Command wire name.
    pub command: &'static str,
    /// Session id.
    pub uuid: String,
    /// Generation it was issued for.
    pub generation: u64,
    /// Starts so far.
    pub attempts: u64,
    /// Error, or null.
    pub error: Option<String>,
    /// Accepted at.
    pub requested_at: String,
    /// First started at, or null.
    pub started_at: Option<String>,
    /// Finished at, or null.
    pub finished_at: Option<String>,
    /// While queued: 1 = next to be picked up (counted up to 1000 ahead); else null.
    pub queue_position: Option<u64>,
    /// For delete jobs: `terminating` until done, then `terminated`; else null.
    pub session_status: Option<&'static str>,
    /// Who asked for it: `api`, `gateway`, `idle`, `ttl`, `drift`.
    pub origin: &'static str,
}

/// The path clients poll for a job.
pub fn status_url(job_id: &str) -> String {
    format!("/jobs/{job_id}")
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The old `action`, `status` and `message` of a command response.
pub fn action_words(c: Command) -> (&'static str, &'static str, &'static str) {
    match c {
        Command::Sleep => ("sleep", "sleeping", "Pod queued for sleep"),
        Command::Wake => ("wake", "waking", "Pod queued for wake"),
        Command::ScaleUp => ("scale_up", "success", "Pod queued for scale up"),
        Command::ScaleDown => ("scale_down", "success", "Pod queued for scale down"),
        Command::Delete => ("delete", "terminating", "Session queued for backup and deletion"),
        Command::Create => ("create", "created", "Session queued for creation"),
        Command::Backup => ("backup", "sleeping", "Session queued for backup"),
    }
}

/// The session response.
pub fn session_status(rec: &SessionRecord, queue_length: u64, now_ms: u64) -> SessionStatus {
    SessionStatus {
        uuid: rec.id.to_string(),
        session: SessionInner {
            user_id: rec.user_id.clone(),
            status: rec.status.as_str(),
            created_at: iso_ms(rec.created_at_ms),
            last_activity: iso_ms(rec.last_activity_ms),
        },
        replicas: rec.replicas,
        queue_length,
        timestamp: iso_ms(now_ms),
        desired: rec.desired.as_str(),
        workspace_url: rec.workspace_url.clone(),
        last_error: non_empty(&rec.last_error),
        last_job_id: non_empty(&rec.last_job_id),
        backup_file: non_empty(&rec.backup_file),
        generation: rec.generation,
        idle_timeout_secs: rec.idle_timeout_secs,
        last_transition: rec.last_transition.as_ref().map(|t| LastTransition {
            from: t.from.as_str(),
            to: t.to.as_str(),
            origin: t.origin.as_str(),
            at: iso_ms(t.at_ms),
        }),
        next_action: rec
            .next_action
            .as_ref()
            .map(|(action, at)| NextAction { action: action.clone(), at: iso_ms(*at) }),
        restore_from: non_empty(&rec.restore_from),
    }
}

/// One list entry.
pub fn session_item(rec: &SessionRecord) -> SessionItem {
    SessionItem {
        uuid: rec.id.to_string(),
        user_id: rec.user_id.clone(),
        status: rec.status.as_str(),
        created_at: iso_ms(rec.created_at_ms),
        last_activity: iso_ms(rec.last_activity_ms),
        replicas: rec.replicas,
        workspace_url: rec.workspace_url.clone(),
    }
}

/// The job response.
pub fn job_status(rec: &JobRecord, queue_position: Option<u64>) -> JobStatus {
    let session_status = (rec.command == Command::Delete).then_some(match rec.state {
        JobState::Succeeded => "terminated",
        JobState::Failed | JobState::Dead => "failed",
        _ => "terminating",
    });
    JobStatus {
        job_id: rec.id.to_string(),
        state: rec.state.as_str(),
        command: rec.command.as_str(),
        uuid: rec.session_id.clone(),
        generation: rec.generation,
        attempts: rec.attempts,
        error: non_empty(&rec.error),
        requested_at: iso_ms(rec.requested_at_ms),
        started_at: rec.started_at_ms.map(iso_ms),
        finished_at: rec.finished_at_ms.map(iso_ms),
        queue_position,
        session_status,
        origin: rec.origin.as_str(),
    }
}
