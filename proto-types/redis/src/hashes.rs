//! Typed views of the session and job hashes ([`proto_types::record`]
//! names their fields): what the enqueue script and the worker write,
//! parsed once so no caller touches raw field names. An empty hash is "no
//! such record"; a hash whose state field is not a known wire name is a
//! [`CorruptRecord`].
//!
//! The reads here are single `HGETALL`s; listing, queue positions and the
//! like are the api store's.

use std::collections::HashMap;

use proto_types::{Command, DesiredState, JobId, JobState, Origin, SessionId, SessionState, keys, record};
use redis::aio::ConnectionLike;

use crate::error::{CorruptRecord, Error};

/// A session hash, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Its id.
    pub id: SessionId,
    /// Owner.
    pub user_id: String,
    /// Observed status.
    pub status: SessionState,
    /// Desired state.
    pub desired: DesiredState,
    /// Generation (0 when absent).
    pub generation: u64,
    /// Creation time, ms.
    pub created_at_ms: u64,
    /// Last activity, ms.
    pub last_activity_ms: u64,
    /// Ready replicas the worker observed.
    pub replicas: u64,
    /// Last error, empty if none.
    pub last_error: String,
    /// Last job enqueued for it.
    pub last_job_id: String,
    /// Workspace URL.
    pub workspace_url: String,
    /// Backup file written by the delete, empty until then.
    pub backup_file: String,
    /// The session's own idle timeout, in seconds (`None`: the worker's default).
    pub idle_timeout_secs: Option<u64>,
    /// The last status change, if one was recorded.
    pub last_transition: Option<Transition>,
    /// The sweeper's next automatic action (`sleep`, `delete`) and its time, ms.
    pub next_action: Option<(String, u64)>,
    /// The backup it was created from, empty for a fresh session.
    pub restore_from: String,
}

/// A recorded status change of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Status before.
    pub from: SessionState,
    /// Status after.
    pub to: SessionState,
    /// Who caused it (the job's origin).
    pub origin: Origin,
    /// When, ms.
    pub at_ms: u64,
}

impl Transition {
    /// Parses `"{from} {to} {origin} {at_ms}"`; `None` if it is not that.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(' ');
        let t = Self {
            from: SessionState::parse(parts.next()?).ok()?,
            to: SessionState::parse(parts.next()?).ok()?,
            origin: Origin::parse(parts.next()?).ok()?,
            at_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(t)
    }
}

/// A job hash, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Its id.
    pub id: JobId,
    /// Session it acts on.
    pub session_id: String,
    /// Command.
    pub command: Command,
    /// State.
    pub state: JobState,
    /// Generation it was issued for.
    pub generation: u64,
    /// Accepted at, ms.
    pub requested_at_ms: u64,
    /// First started at, ms.
    pub started_at_ms: Option<u64>,
    /// Finished at, ms.
    pub finished_at_ms: Option<u64>,
    /// Starts so far.
    pub attempts: u64,
    /// Error, empty if none.
    pub error: String,
    /// Stream entry id.
    pub stream_id: String,
    /// Who asked for it (`api` for jobs recorded before origins were).
    pub origin: Origin,
}

fn num(map: &HashMap<String, String>, field: &str) -> Option<u64> {
    map.get(field).and_then(|v| v.parse().ok())
}

fn text(map: &HashMap<String, String>, field: &str) -> String {
    map.get(field).cloned().unwrap_or_default()
}

impl SessionRecord {
    /// Parses the hash of session `id` (as `HGETALL` returned it).
    pub fn parse(id: &SessionId, map: &HashMap<String, String>) -> Result<Option<Self>, CorruptRecord> {
        if map.is_empty() {
            return Ok(None);
        }
        let corrupt = |field, e| CorruptRecord::new(keys::session(id.as_str()), field, e);
        let status = SessionState::parse(&text(map, record::session::STATUS))
            .map_err(|e| corrupt(record::session::STATUS, e))?;
        let desired = match map.get(record::session::DESIRED) {
            Some(d) => DesiredState::parse(d).map_err(|e| corrupt(record::session::DESIRED, e))?,
            None => DesiredState::Running,
        };
        Ok(Some(Self {
            id: id.clone(),
            user_id: text(map, record::session::USER),
            status,
            desired,
            generation: num(map, record::session::GENERATION).unwrap_or(0),
            created_at_ms: num(map, record::session::CREATED_AT).unwrap_or(0),
            last_activity_ms: num(map, record::session::LAST_ACTIVITY).unwrap_or(0),
            replicas: num(map, record::session::REPLICAS).unwrap_or(0),
            last_error: text(map, record::session::LAST_ERROR),
            last_job_id: text(map, record::session::LAST_JOB),
            workspace_url: text(map, record::session::WORKSPACE_URL),
            backup_file: text(map, record::session::BACKUP_FILE),
            idle_timeout_secs: num(map, record::session::IDLE_TIMEOUT),
            last_transition: map.get(record::session::LAST_TRANSITION).and_then(|v| Transition::parse(v)),
            next_action: map
                .get(record::session::NEXT_ACTION)
                .and_then(|v| proto_types::scripts::sweep::parse_next_action(v))
                .map(|(a, t)| (a.to_owned(), t)),
            restore_from: text(map, record::session::RESTORE_FROM),
        }))
    }

    /// Reads session `id` (one `HGETALL`).
    pub async fn read(conn: &mut impl ConnectionLike, id: &SessionId) -> Result<Option<Self>, Error> {
        let map: HashMap<String, String> =
            redis::cmd("HGETALL").arg(keys::session(id.as_str())).query_async(conn).await?;
        Ok(Self::parse(id, &map)?)
    }
}

impl JobRecord {
    /// Parses the hash of job `id` (as `HGETALL` returned it).
    pub fn parse(id: &JobId, map: &HashMap<String, String>) -> Result<Option<Self>, CorruptRecord> {
        if map.is_empty() {
            return Ok(None);
        }
        let corrupt = |field, e| CorruptRecord::new(keys::job(id.as_str()), field, e);
        Ok(Some(Self {
            id: id.clone(),
            session_id: text(map, record::job::SESSION),
            command: Command::parse(&text(map, record::job::COMMAND)).map_err(|e| corrupt(record::job::COMMAND, e))?,
            state: JobState::parse(&text(map, record::job::STATE)).map_err(|e| corrupt(record::job::STATE, e))?,
            generation: num(map, record::job::GENERATION).unwrap_or(0),
            requested_at_ms: num(map, record::job::REQUESTED_AT).unwrap_or(0),
            started_at_ms: num(map, record::job::STARTED_AT),
            finished_at_ms: num(map, record::job::FINISHED_AT),
            attempts: num(map, record::job::ATTEMPTS).unwrap_or(0),
            error: text(map, record::job::ERROR),
            stream_id: text(map, record::job::STREAM_ID),
            origin: match map.get(record::job::ORIGIN) {
                Some(o) => Origin::parse(o).map_err(|e| corrupt(record::job::ORIGIN, e))?,
                None => Origin::Api,
            },
        }))
    }

    /// Reads job `id` (one `HGETALL`).
    pub async fn read(conn: &mut impl ConnectionLike, id: &JobId) -> Result<Option<Self>, Error> {
        let map: HashMap<String, String> = redis::cmd("HGETALL").arg(keys::job(id.as_str())).query_async(conn).await?;
        Ok(Self::parse(id, &map)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_record_parses_what_the_script_writes() {
        let id = SessionId::parse("abc").expect("valid");
        let map: HashMap<String, String> = [
            ("user_id", "u@example.com"),
            ("status", "sleeping"),
            ("desired", "sleeping"),
            ("generation", "4"),
            ("created_at_ms", "1000"),
            ("replicas", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let rec = SessionRecord::parse(&id, &map).expect("parses").expect("exists");
        assert_eq!(rec.status, SessionState::Sleeping);
        assert_eq!(rec.generation, 4);
        assert_eq!(SessionRecord::parse(&id, &HashMap::new()).expect("ok"), None);
        assert_eq!(
            Transition::parse("running sleeping idle 5"),
            Some(Transition {
                from: SessionState::Running,
                to: SessionState::Sleeping,
                origin: Origin::Idle,
                at_ms: 5
            })
        );
        assert_eq!(Transition::parse("running sleeping idle"), None);
        let bad: HashMap<String, String> = [("status".to_owned(), "melted".to_owned())].into_iter().collect();
        assert!(SessionRecord::parse(&id, &bad).is_err());
    }
}
