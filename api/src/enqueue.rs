//! Enqueueing a command: the thin adapter around the shared enqueue script
//! ([`proto_types::scripts::enqueue`]).
//!
//! Each attempt reads the session, decides with
//! [`proto_types::machine::decide`], and runs the script with the generation
//! it read. When the script answers `Conflict` (another command got there
//! first) the attempt is repeated from the read (optimistic concurrency).
//! The first read of a command may come with the rate-limit round trip
//! ([`EnqueueRequest::prefetched`]). Create skips the read: a fresh random id is enqueued with expected
//! generation 0, and a `Conflict` (the id is taken) draws a new id. An
//! `Idempotency-Key` seen before short-circuits everything to the original job.

use proto_types::machine::{SessionView, decide};
use proto_types::scripts::enqueue::{Enqueue, EnqueueReply};
use proto_types::{Command, Job, JobId, Refusal, SessionId, SessionState, keys};
use redis::AsyncCommands;

use crate::response::now_ms;
use crate::store::{Prefetched, Store, StoreError, random};

/// How often enqueue re-reads and re-decides after a `Conflict` (or a taken id).
pub const ENQUEUE_ATTEMPTS: usize = 8;

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
    /// The session as read together with the rate limit, if it was.
    pub prefetched: Option<&'a Prefetched>,
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

impl Store {
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
        // The first attempt may use the read the rate limiter made; a
        // `Conflict` re-reads.
        let mut prefetched = req.prefetched.cloned();
        for _ in 0..ENQUEUE_ATTEMPTS {
            // A freshly drawn id is not read first: the script's generation
            // check (expected 0) answers `Conflict` when the id is taken.
            let (sid, rec) = match (&req.session, prefetched.take()) {
                (Some(s), Some(p)) if p.id == *s => (p.id, p.record),
                (Some(s), _) => (s.clone(), self.session(s).await?),
                (None, _) => (SessionId::from_random(random::<4>()?), None),
            };
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
