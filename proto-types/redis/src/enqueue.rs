//! [`EnqueueClient`]: enqueueing a command "like the api", the one copy of
//! it. The api's store enqueues with it, and so does every test that puts
//! jobs on the queue, so the tests cannot pass against a client that no
//! longer matches the api.
//!
//! Each attempt reads the session, decides with
//! [`proto_types::machine::decide`] ([`Attempt::prepare`]), and runs the
//! enqueue script ([`proto_types::scripts::enqueue`]) with the generation
//! it read ([`EnqueueClient::submit`]). When the script answers `Conflict`
//! (another command got there first) the attempt is repeated from the read
//! (optimistic concurrency), at most [`ENQUEUE_ATTEMPTS`] times. The first
//! read may come with the caller's own round trip
//! ([`EnqueueRequest::prefetched`]). Create skips the read: a fresh random
//! id is enqueued with expected generation 0, and a `Conflict` (the id is
//! taken) draws a new id. An `Idempotency-Key` seen before short-circuits
//! everything to the original job.

use proto_types::machine::{Decision, SessionView, decide};
use proto_types::scripts::enqueue::{Enqueue, EnqueueReply, RestoreFrom, RestoreRefusal, SOURCE};
use proto_types::{Command, Job, JobId, Origin, Refusal, SessionId, SessionState, keys};
use redis::aio::ConnectionLike;

use crate::error::{CorruptRecord, Error};
use crate::hashes::SessionRecord;
use crate::script::Script;

/// How often enqueue re-reads and re-decides after a `Conflict` (or a taken id).
pub const ENQUEUE_ATTEMPTS: usize = 8;

/// A session read ahead of its command, in the caller's own round trip.
#[derive(Debug, Clone)]
pub struct Prefetched {
    /// The session read.
    pub id: SessionId,
    /// What was stored (`None`: no such session).
    pub record: Option<SessionRecord>,
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
    /// The session as read together with something else, if it was.
    pub prefetched: Option<&'a Prefetched>,
    /// Who asks (the api's clients unless said otherwise).
    pub origin: Origin,
    /// The session's own idle timeout to record, in seconds (`None` keeps
    /// the stored one, or the worker's default for a new session).
    pub idle_timeout_secs: Option<u64>,
    /// For create: the backup whose files the new volume starts with.
    pub restore: Option<RestoreFrom<'a>>,
}

impl<'a> EnqueueRequest<'a> {
    /// A plain request: no idempotency key, no limit, no trace context.
    pub fn new(command: Command, session: Option<SessionId>, user_id: &'a str, workspace_url_pattern: &'a str) -> Self {
        Self {
            command,
            session,
            user_id,
            idempotency: None,
            max_sessions_per_user: 0,
            workspace_url_pattern,
            trace: (None, None),
            prefetched: None,
            origin: Origin::Api,
            idle_timeout_secs: None,
            restore: None,
        }
    }
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

/// Why an enqueue did not queue a job: a refusal (an answer for the
/// client) or a failure (Redis, or what it holds).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The state machine refused.
    #[error(transparent)]
    Refused(Refusal),
    /// The user is at the live-session limit.
    #[error("user has {0} live sessions")]
    Limit(u64),
    /// The idempotency key belongs to a different request (this job's).
    #[error("idempotency key used for job {0}")]
    IdempotencyMismatch(String),
    /// The backup named by `restore_from` cannot be restored.
    #[error("cannot restore from that backup: {0:?}")]
    Restore(RestoreRefusal),
    /// The round trip failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// One attempt: the decision made on the session as read, and the job it
/// produces. Pure; [`EnqueueClient::submit`] sends it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The job, for generation `expected_generation + 1`.
    pub job: Job,
    /// What the state machine decided.
    pub decision: Decision,
    /// The generation the decision was made on (0: no session).
    pub expected_generation: u64,
    /// Owner: the stored one, or the request's for a new session.
    pub user_id: String,
    /// Workspace URL: the stored one, or the pattern filled in.
    pub workspace_url: String,
    /// Creation time: the stored one, or now.
    pub created_at_ms: u64,
}

impl Attempt {
    /// Decides `req.command` for `session` as read (`current`), and builds
    /// the job `job_id`, requested at `now_ms`.
    pub fn prepare(
        req: &EnqueueRequest<'_>,
        session: SessionId,
        current: Option<&SessionRecord>,
        job_id: JobId,
        now_ms: u64,
    ) -> Result<Self, Refusal> {
        let view = current.map(|r| SessionView { status: r.status, desired: r.desired });
        let decision = decide(view, req.command)?;
        let expected = current.map_or(0, |r| r.generation);
        let (user_id, workspace_url, created_at_ms) = match current {
            Some(r) => (r.user_id.clone(), r.workspace_url.clone(), r.created_at_ms),
            None => (req.user_id.to_owned(), req.workspace_url_pattern.replace("{uuid}", session.as_str()), now_ms),
        };
        let job = Job {
            job_id,
            session_id: session,
            command: req.command,
            requested_at_ms: now_ms,
            generation: expected + 1,
            idempotency_key: req.idempotency.map(|(_, k, _)| k.to_owned()),
            traceparent: req.trace.0.clone(),
            tracestate: req.trace.1.clone(),
            origin: req.origin,
        };
        Ok(Self { job, decision, expected_generation: expected, user_id, workspace_url, created_at_ms })
    }

    /// The enqueue script's keys and arguments for this attempt, with the
    /// job encoded as `payload` (the sweeper prepends its guard to them).
    pub fn invocation(&self, req: &EnqueueRequest<'_>, payload: &[u8]) -> proto_types::scripts::Invocation {
        Enqueue {
            job: &self.job,
            payload,
            expected_generation: self.expected_generation,
            desired: self.decision.desired,
            status: self.decision.status,
            user_id: &self.user_id,
            max_sessions_per_user: req.max_sessions_per_user,
            workspace_url: &self.workspace_url,
            idempotency: req.idempotency,
            now_ms: self.job.requested_at_ms,
            idle_timeout_secs: req.idle_timeout_secs,
            restore: req.restore,
        }
        .invocation()
    }
}

/// Milliseconds since the epoch, from the system clock.
pub fn system_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| Error::Random)?;
    Ok(b)
}

/// The enqueue client: the script runner for the enqueue script and the
/// clock its jobs are stamped with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EnqueueClient {
    script: Script,
    clock: fn() -> u64,
}

impl Default for EnqueueClient {
    fn default() -> Self {
        Self::new()
    }
}

impl EnqueueClient {
    /// A client on the system clock.
    pub fn new() -> Self {
        Self::with_clock(system_now_ms)
    }

    /// A client whose jobs are stamped by `clock` (ms since the epoch).
    pub fn with_clock(clock: fn() -> u64) -> Self {
        Self { script: Script::new(SOURCE), clock }
    }

    /// Runs the enqueue script for one prepared attempt, at the time its
    /// job was requested.
    pub async fn submit(
        &self,
        conn: &mut impl ConnectionLike,
        req: &EnqueueRequest<'_>,
        attempt: &Attempt,
    ) -> Result<EnqueueReply, Error> {
        let payload = attempt.job.encode()?;
        let inv = attempt.invocation(req, &payload);
        let reply: Vec<String> = self.script.run(conn, &inv).await?;
        Ok(EnqueueReply::parse(&reply)?)
    }

    /// Decides and enqueues one command, retrying on races.
    pub async fn enqueue(
        &self,
        conn: &mut impl ConnectionLike,
        req: &EnqueueRequest<'_>,
    ) -> Result<EnqueueOutcome, EnqueueError> {
        if let Some((scope, key, fingerprint)) = req.idempotency {
            let idem_key = keys::idempotency(scope, key);
            let prior: Option<String> =
                redis::cmd("GET").arg(&idem_key).query_async(conn).await.map_err(Error::from)?;
            if let Some(prior) = prior {
                let (job, fp) = prior.split_once(' ').unwrap_or((prior.as_str(), ""));
                if fp != fingerprint {
                    return Err(EnqueueError::IdempotencyMismatch(job.to_owned()));
                }
                let job = JobId::parse(job).map_err(|e| Error::from(CorruptRecord::new(idem_key, "value", e)))?;
                return Ok(EnqueueOutcome::Replay(job));
            }
        }
        // The first attempt may use the caller's read; a `Conflict` re-reads.
        let mut prefetched = req.prefetched.cloned();
        for _ in 0..ENQUEUE_ATTEMPTS {
            // A freshly drawn id is not read first: the script's generation
            // check (expected 0) answers `Conflict` when the id is taken.
            let (sid, rec) = match (&req.session, prefetched.take()) {
                (Some(s), Some(p)) if p.id == *s => (p.id, p.record),
                (Some(s), _) => (s.clone(), SessionRecord::read(conn, s).await?),
                (None, _) => (SessionId::from_random(random::<4>()?), None),
            };
            let now = (self.clock)();
            let attempt = match Attempt::prepare(req, sid, rec.as_ref(), JobId::from_random(random::<16>()?), now) {
                Ok(a) => a,
                Err(Refusal::AlreadyExists) if req.session.is_none() => continue,
                Err(r) => return Err(EnqueueError::Refused(r)),
            };
            match self.submit(conn, req, &attempt).await? {
                EnqueueReply::Ok { .. } => {
                    let Attempt { job, decision, user_id, workspace_url, created_at_ms, .. } = attempt;
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
                    let idem_key = req.idempotency.map_or_else(String::new, |(s, k, _)| keys::idempotency(s, k));
                    let id =
                        JobId::parse(&job_id).map_err(|e| Error::from(CorruptRecord::new(idem_key, "value", e)))?;
                    return Ok(EnqueueOutcome::Replay(id));
                }
                EnqueueReply::Conflict { .. } => continue,
                EnqueueReply::LimitReached { live } => return Err(EnqueueError::Limit(live)),
                EnqueueReply::Restore(why) => return Err(EnqueueError::Restore(why)),
            }
        }
        Err(Error::Contended { attempts: ENQUEUE_ATTEMPTS }.into())
    }
}
