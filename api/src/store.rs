//! The Redis adapter: everything the api reads or writes, and nothing else.
//!
//! Reads parse the hashes the worker and the enqueue script write
//! ([`proto_types::record`]) into typed records; writes are the enqueue
//! script ([`proto_types::scripts::enqueue`]) with optimistic retry on
//! `Conflict`, deciding every attempt with [`proto_types::machine::decide`]
//! first. The rate-limit script runs here too. No HTTP in this module.

use std::collections::HashMap;
use std::time::Duration;

use proto_types::machine::{SessionView, decide};
use proto_types::scripts::ReplyError;
use proto_types::scripts::enqueue::{Enqueue, EnqueueReply};
use proto_types::{
    CodecError, Command, DesiredState, Job, JobId, JobState, Refusal, SessionId, SessionState, keys, record,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError, Script};

use crate::ratelimit::{Bucket, GCRA_SOURCE, PERIOD_MS, Verdict};
use crate::response::now_ms;

/// How often enqueue re-reads and re-decides after a `Conflict` (or a taken id).
const ENQUEUE_ATTEMPTS: usize = 8;
/// How many stream entries ahead of a job are counted for its queue position.
pub const QUEUE_POSITION_CAP: u64 = 1000;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis was unreachable, timed out or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// A stored record is not in a shape this version understands.
    #[error("record {key} is corrupt: {what}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        what: String,
    },
    /// A script reply had an unexpected shape.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// A job could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The OS random source failed.
    #[error("no randomness available")]
    Random,
    /// Concurrent commands kept winning the race.
    #[error("session changed concurrently {ENQUEUE_ATTEMPTS} times in a row")]
    Contended,
}

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
}

fn num(map: &HashMap<String, String>, field: &str) -> Option<u64> {
    map.get(field).and_then(|v| v.parse().ok())
}

fn text(map: &HashMap<String, String>, field: &str) -> String {
    map.get(field).cloned().unwrap_or_default()
}

impl SessionRecord {
    fn parse(id: &SessionId, map: &HashMap<String, String>) -> Result<Option<Self>, StoreError> {
        if map.is_empty() {
            return Ok(None);
        }
        let corrupt = |what: String| StoreError::Corrupt { key: keys::session(id.as_str()), what };
        let status = SessionState::parse(&text(map, record::session::STATUS)).map_err(|e| corrupt(e.to_string()))?;
        let desired = match map.get(record::session::DESIRED) {
            Some(d) => DesiredState::parse(d).map_err(|e| corrupt(e.to_string()))?,
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
        }))
    }
}

impl JobRecord {
    fn parse(id: &JobId, map: &HashMap<String, String>) -> Result<Option<Self>, StoreError> {
        if map.is_empty() {
            return Ok(None);
        }
        let corrupt = |what: String| StoreError::Corrupt { key: keys::job(id.as_str()), what };
        Ok(Some(Self {
            id: id.clone(),
            session_id: text(map, record::job::SESSION),
            command: Command::parse(&text(map, record::job::COMMAND)).map_err(|e| corrupt(e.to_string()))?,
            state: JobState::parse(&text(map, record::job::STATE)).map_err(|e| corrupt(e.to_string()))?,
            generation: num(map, record::job::GENERATION).unwrap_or(0),
            requested_at_ms: num(map, record::job::REQUESTED_AT).unwrap_or(0),
            started_at_ms: num(map, record::job::STARTED_AT),
            finished_at_ms: num(map, record::job::FINISHED_AT),
            attempts: num(map, record::job::ATTEMPTS).unwrap_or(0),
            error: text(map, record::job::ERROR),
            stream_id: text(map, record::job::STREAM_ID),
        }))
    }
}

/// What to enqueue.
#[derive(Debug, Clone)]
pub struct EnqueueRequest<'a> {
    /// The command.
    pub command: Command,
    /// The session; `None` for create (a fresh id is drawn).
    pub session: Option<SessionId>,
    /// Owner, for create.
    pub user_id: &'a str,
    /// `(scope, key, fingerprint)` of an `Idempotency-Key`.
    pub idempotency: Option<(&'a str, &'a str, &'a str)>,
    /// Per-user live session limit (0 = none).
    pub max_sessions_per_user: u32,
    /// Workspace URL pattern with `{uuid}`.
    pub workspace_url_pattern: &'a str,
    /// W3C trace context to hand to the worker: `(traceparent, tracestate)`.
    pub trace: (Option<String>, Option<String>),
}

/// A command the store accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The queued job.
    pub job: Job,
    /// Status clients see now.
    pub status: SessionState,
    /// Owner.
    pub user_id: String,
    /// Workspace URL.
    pub workspace_url: String,
    /// Creation time of the session, ms.
    pub created_at_ms: u64,
}

/// How an enqueue ended.
#[derive(Debug, Clone)]
pub enum EnqueueOutcome {
    /// Queued now.
    Accepted(Accepted),
    /// The idempotency key was used before for the same request: this job.
    Replay(JobId),
}

/// Why an enqueue was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The state machine refused.
    #[error(transparent)]
    Refused(Refusal),
    /// The user is at the live-session limit.
    #[error("user has {0} live sessions")]
    Limit(u64),
    /// The idempotency key belongs to a different request.
    #[error("idempotency key used for job {0}")]
    IdempotencyMismatch(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A page of sessions.
#[derive(Debug, Clone)]
pub struct Page {
    /// The sessions, oldest first.
    pub sessions: Vec<SessionRecord>,
    /// Cursor for the next page, if there may be more.
    pub next_cursor: Option<String>,
}

/// The Redis-backed store.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    enqueue: Script,
    gcra: Script,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| StoreError::Random)?;
    Ok(b)
}

/// Parses a stream id `ms-seq` for ordering.
fn stream_pos(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl Store {
    /// A lazily connecting store: it never fails to build, and reconnects on
    /// its own after Redis comes back.
    pub fn new(redis_url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(redis_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self { conn, enqueue: Script::new(proto_types::scripts::enqueue::SOURCE), gcra: Script::new(GCRA_SOURCE) })
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Checks every bucket in one round trip.
    pub async fn rate_limit(&self, buckets: &[Bucket]) -> Result<Vec<Verdict>, StoreError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.load_script(&self.gcra).ignore();
        let invocations: Vec<_> = buckets
            .iter()
            .map(|b| {
                let mut inv = self.gcra.key(&b.key);
                inv.arg(b.limit).arg(PERIOD_MS);
                inv
            })
            .collect();
        for inv in &invocations {
            pipe.invoke_script(inv);
        }
        let mut c = self.conn.clone();
        let replies: Vec<Vec<i64>> = pipe.query_async(&mut c).await?;
        buckets
            .iter()
            .zip(&replies)
            .map(|(b, r)| {
                Verdict::from_reply(b.limit, r)
                    .ok_or_else(|| StoreError::Corrupt { key: b.key.clone(), what: format!("rate-limit reply {r:?}") })
            })
            .collect()
    }

    /// Reads a session.
    pub async fn session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let mut c = self.conn.clone();
        let map: HashMap<String, String> = c.hgetall(keys::session(id.as_str())).await?;
        SessionRecord::parse(id, &map)
    }

    /// Reads a job.
    pub async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let mut c = self.conn.clone();
        let map: HashMap<String, String> = c.hgetall(keys::job(id.as_str())).await?;
        JobRecord::parse(id, &map)
    }

    /// The state of a job, if it exists.
    pub async fn job_state(&self, id: &str) -> Result<Option<JobState>, StoreError> {
        if id.is_empty() {
            return Ok(None);
        }
        let mut c = self.conn.clone();
        let state: Option<String> = c.hget(keys::job(id), record::job::STATE).await?;
        Ok(state.and_then(|s| JobState::parse(&s).ok()))
    }

    /// 1-based position of a queued job in the stream (1 = next to be
    /// delivered), counting at most [`QUEUE_POSITION_CAP`] entries ahead;
    /// 0 when the group already delivered it.
    pub async fn queue_position(&self, stream_id: &str) -> Result<u64, StoreError> {
        let Some(own) = stream_pos(stream_id) else { return Ok(0) };
        let mut c = self.conn.clone();
        let groups: Result<redis::streams::StreamInfoGroupsReply, RedisError> =
            redis::cmd("XINFO").arg("GROUPS").arg(keys::JOBS_STREAM).query_async(&mut c).await;
        let last = match groups {
            Ok(reply) => reply
                .groups
                .into_iter()
                .find(|g| g.name == keys::GROUP)
                .map(|g| g.last_delivered_id)
                .unwrap_or_else(|| "0-0".to_owned()),
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => "0-0".to_owned(),
            Err(e) => return Err(e.into()),
        };
        if stream_pos(&last).is_some_and(|l| l >= own) {
            return Ok(0);
        }
        let ahead: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(keys::JOBS_STREAM)
            .arg(format!("({last}"))
            .arg(format!("({stream_id}"))
            .arg("COUNT")
            .arg(QUEUE_POSITION_CAP)
            .query_async(&mut c)
            .await?;
        Ok(ahead.len() as u64 + 1)
    }

    /// A page of sessions in creation order, optionally only one user's.
    /// The cursor is `{created_ms}:{id}` of the last session returned.
    pub async fn list_sessions(
        &self,
        cursor: Option<(u64, String)>,
        limit: usize,
        user: Option<&str>,
    ) -> Result<Page, StoreError> {
        let mut c = self.conn.clone();
        let mut out: Vec<SessionRecord> = Vec::new();
        let mut position = cursor;
        // Scan at most this many index entries per request when filtering.
        let mut budget: usize = 2000;
        loop {
            let batch = self.index_after(&mut c, position.as_ref(), limit.max(50)).await?;
            let exhausted = batch.len() < limit.max(50);
            let mut pipe = redis::pipe();
            for (id, _) in &batch {
                pipe.hgetall(keys::session(id));
            }
            let maps: Vec<HashMap<String, String>> =
                if batch.is_empty() { Vec::new() } else { pipe.query_async(&mut c).await? };
            for ((id, score), map) in batch.into_iter().zip(maps) {
                budget = budget.saturating_sub(1);
                position = Some((score, id.clone()));
                let Ok(sid) = SessionId::parse(&id) else { continue };
                let Some(rec) = SessionRecord::parse(&sid, &map)? else { continue };
                if user.is_some_and(|u| u != rec.user_id) {
                    continue;
                }
                out.push(rec);
                if out.len() == limit {
                    let next = position.map(|(s, id)| format!("{s}:{id}"));
                    return Ok(Page { sessions: out, next_cursor: next });
                }
            }
            if exhausted {
                return Ok(Page { sessions: out, next_cursor: None });
            }
            if budget == 0 {
                let next = position.map(|(s, id)| format!("{s}:{id}"));
                return Ok(Page { sessions: out, next_cursor: next });
            }
        }
    }

    /// Index entries strictly after `(score, id)`, in order.
    async fn index_after(
        &self,
        c: &mut ConnectionManager,
        after: Option<&(u64, String)>,
        count: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out: Vec<(String, u64)> = Vec::new();
        let from = match after {
            Some((score, id)) => {
                // Same-millisecond entries sort by id; take those after the cursor first.
                let same: Vec<(String, u64)> = c.zrangebyscore_withscores(keys::SESSIONS_INDEX, *score, *score).await?;
                out.extend(same.into_iter().filter(|(m, _)| m > id));
                format!("({score}")
            }
            None => "-inf".to_owned(),
        };
        let rest: Vec<(String, u64)> =
            c.zrangebyscore_limit_withscores(keys::SESSIONS_INDEX, from, "+inf", 0, count as isize).await?;
        out.extend(rest);
        out.truncate(count);
        Ok(out)
    }

    /// Decides and enqueues one command, retrying on races.
    pub async fn enqueue(&self, req: &EnqueueRequest<'_>) -> Result<EnqueueOutcome, EnqueueError> {
        let mut c = self.conn.clone();
        if let Some((scope, key, fingerprint)) = req.idempotency {
            let prior: Option<String> = c.get(keys::idempotency(scope, key)).await.map_err(StoreError::from)?;
            if let Some(prior) = prior {
                let (job, fp) = prior.split_once(' ').unwrap_or((prior.as_str(), ""));
                if fp != fingerprint {
                    return Err(EnqueueError::IdempotencyMismatch(job.to_owned()));
                }
                let job = JobId::parse(job)
                    .map_err(|e| StoreError::Corrupt { key: keys::idempotency(scope, key), what: e.to_string() })?;
                return Ok(EnqueueOutcome::Replay(job));
            }
        }
        for _ in 0..ENQUEUE_ATTEMPTS {
            let sid = match &req.session {
                Some(s) => s.clone(),
                None => SessionId::from_random(random::<4>()?),
            };
            let rec = self.session(&sid).await?;
            let view = rec.as_ref().map(|r| SessionView { status: r.status, desired: r.desired });
            let decision = match decide(view, req.command) {
                Ok(d) => d,
                Err(Refusal::AlreadyExists) if req.session.is_none() => continue,
                Err(r) => return Err(EnqueueError::Refused(r)),
            };
            let expected = rec.as_ref().map_or(0, |r| r.generation);
            let now = now_ms();
            let job = Job {
                job_id: JobId::from_random(random::<16>()?),
                session_id: sid.clone(),
                command: req.command,
                requested_at_ms: now,
                generation: expected + 1,
                idempotency_key: req.idempotency.map(|(_, k, _)| k.to_owned()),
                traceparent: req.trace.0.clone(),
                tracestate: req.trace.1.clone(),
            };
            let payload = job.encode().map_err(StoreError::from)?;
            let (user_id, workspace_url, created_at_ms) = match &rec {
                Some(r) => (r.user_id.clone(), r.workspace_url.clone(), r.created_at_ms),
                None => (req.user_id.to_owned(), req.workspace_url_pattern.replace("{uuid}", sid.as_str()), now),
            };
            let inv = Enqueue {
                job: &job,
                payload: &payload,
                expected_generation: expected,
                desired: decision.desired,
                status: decision.status,
                user_id: &user_id,
                max_sessions_per_user: req.max_sessions_per_user,
                workspace_url: &workspace_url,
                idempotency: req.idempotency,
                now_ms: now,
            }
            .invocation();
            let mut call = self.enqueue.prepare_invoke();
            for k in &inv.keys {
                call.key(k);
            }
            for a in &inv.args {
                call.arg(a.as_slice());
            }
            let reply: Vec<String> = call.invoke_async(&mut c).await.map_err(StoreError::from)?;
            match EnqueueReply::parse(&reply).map_err(StoreError::from)? {
                EnqueueReply::Ok { .. } => {
                    return Ok(EnqueueOutcome::Accepted(Accepted {
                        job,
                        status: decision.status,
                        user_id,
                        workspace_url,
                        created_at_ms,
                    }));
                }
                EnqueueReply::Idempotent { job_id, same_request } => {
                    if !same_request {
                        return Err(EnqueueError::IdempotencyMismatch(job_id));
                    }
                    let id = JobId::parse(&job_id)
                        .map_err(|e| StoreError::Corrupt { key: "idempotency".into(), what: e.to_string() })?;
                    return Ok(EnqueueOutcome::Replay(id));
                }
                EnqueueReply::Conflict { .. } => continue,
                EnqueueReply::LimitReached { live } => return Err(EnqueueError::Limit(live)),
            }
        }
        Err(StoreError::Contended.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically() {
        assert!(stream_pos("10-0") > stream_pos("9-5"));
        assert!(stream_pos("5-10") > stream_pos("5-9"));
        assert_eq!(stream_pos("junk"), None);
    }

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
        let bad: HashMap<String, String> = [("status".to_owned(), "melted".to_owned())].into_iter().collect();
        assert!(SessionRecord::parse(&id, &bad).is_err());
    }
}
