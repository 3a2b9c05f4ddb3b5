//! The life of one delivered job as one pure decision: [`next`] maps what
//! is [`Known`] about a delivery to the next [`Step`], the way
//! `crate::k8s::plan` maps observed objects to Kubernetes steps.
//!
//! The interpreter (`job.rs`) performs the step (a Redis script, the lease
//! wait, the executor), writes what it learned back into [`Known`], and
//! asks again, until the answer is [`Step::Done`]. Every branch of a job's
//! life is here and in the table tests below: triage by delivery count and
//! decoding, the start script's answer, superseded and orphaned jobs
//! (one path, whether found at start or under the lease), the executor's
//! result, the finish script's answer (fenced finishes become
//! `superseded`; a fenced converge is abandoned without one), and queue failures (retryable ones leave the entry
//! pending; permanent ones dead-letter it, so it never stays pending
//! forever). No I/O, no clock, no telemetry here.
//!
//! Not here: the session state machine (`proto_types::machine`), which
//! decides what the api accepts, and the Kubernetes plan.

use proto_types::scripts::finish::FinishReply;
use proto_types::scripts::start::{SessionSnapshot, StartReply};
use proto_types::{DesiredState, JobState, SessionState};

use crate::executor::{Archive, ExecError, FailedBackup, Outcome};
use crate::queue::{QueueError, SessionView};

/// The error a superseded-by-fence job records.
pub const FENCED: &str = "fenced out by a newer lease holder";
/// The error an orphaned job records.
pub const ORPHANED: &str = "session not found";

/// How often the entry has been delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deliveries {
    /// Not known yet: ask `XPENDING` (redelivered or reclaimed entries).
    #[default]
    Unknown,
    /// Delivered this many times (a fresh read is the first delivery).
    Count(u64),
    /// No longer pending: acknowledged meanwhile.
    NotPending,
}

/// The session lease, as far as this delivery got with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeaseState {
    /// Not asked for yet.
    #[default]
    NotAsked,
    /// Held, with this fencing token.
    Held {
        /// Fencing token of the lease.
        token: u64,
    },
    /// Shutdown was requested while waiting for it.
    ShutdownWhileWaiting,
}

/// The queue operations a [`Step`] performs, to say which one failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOp {
    /// `XPENDING` for the delivery count.
    Deliveries,
    /// The start script.
    Start,
    /// Waiting for the session lease (acquire script, entry heartbeat).
    Lease,
    /// Reading the session under the lease.
    ReadSession,
    /// The finish script.
    Finish,
    /// The dead-letter script.
    DeadLetter,
    /// `XACK`.
    Ack,
}

impl QueueOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Deliveries => "delivery count",
            Self::Start => "start",
            Self::Lease => "lease",
            Self::ReadSession => "session read",
            Self::Finish => "finish",
            Self::DeadLetter => "dead-letter",
            Self::Ack => "ack",
        }
    }
}

/// A queue step that failed, classified by its [`QueueError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Which step.
    pub op: QueueOp,
    /// Whether a later delivery can succeed where this one failed.
    pub retryable: bool,
    /// The error, as text.
    pub message: String,
}

impl Failure {
    /// Classifies `error` from `op`.
    pub fn new(op: QueueOp, error: &QueueError) -> Self {
        let message = match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        };
        Self { op, retryable: error.is_retryable(), message }
    }
}

/// Everything known about one delivery so far. Starts from the entry
/// ([`Known::new`]); the interpreter fills in each step's result.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The entry's data was deleted while it was pending.
    pub entry_deleted: bool,
    /// The generation of the decoded job; `None` when the payload did not decode.
    pub job_generation: Option<u64>,
    /// How often the entry was delivered.
    pub deliveries: Deliveries,
    /// The start script's answer.
    pub start: Option<StartReply>,
    /// The session lease.
    pub lease: LeaseState,
    /// The session, read again under the lease.
    pub view: Option<SessionView>,
    /// The executor's result, after retries.
    pub converged: Option<Result<Outcome, ExecError>>,
    /// The finish script's answers, in order.
    pub finished: Vec<FinishReply>,
    /// The dead-letter script ran.
    pub dead_lettered: bool,
    /// The entry was acknowledged.
    pub acked: bool,
    /// The last queue step that failed.
    pub failure: Option<Failure>,
}

impl Known {
    /// What a delivered entry tells before any step ran.
    pub fn new(entry_deleted: bool, job_generation: Option<u64>, deliveries: Deliveries) -> Self {
        Self { entry_deleted, job_generation, deliveries, ..Self::default() }
    }
}

/// What the finish script records about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWrite {
    /// Fencing token of the lease the write is made under.
    pub fence: u64,
    /// Status to record.
    pub status: SessionState,
    /// Ready replicas observed.
    pub replicas: u32,
    /// Backup file, if one was written.
    pub backup_file: Option<String>,
    /// Upstream address of a running session.
    pub upstream: Option<String>,
    /// The verified backup archive to record, if one was written (boxed:
    /// rare, and it keeps [`Ending`] small).
    pub archive: Option<Box<Archive>>,
    /// The delete's backup that failed, to record as `failed`.
    pub failed_backup: Option<Box<FailedBackup>>,
}

/// How a job ends: the one shape every finish takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Terminal job state.
    pub state: JobState,
    /// Error message, if any (also the session's `last_error` when written).
    pub error: Option<String>,
    /// Session status the event reports: the written one, or the session's
    /// real status when nothing is written.
    pub event_status: SessionState,
    /// Session write; `None` for superseded, orphaned and fenced-out jobs.
    pub session: Option<SessionWrite>,
}

impl Ending {
    /// An ending that leaves the session record alone.
    fn alone(state: JobState, error: Option<&str>, event_status: SessionState) -> Self {
        Self { state, error: error.map(str::to_owned), event_status, session: None }
    }
}

/// Why an entry is acknowledged without a finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckReason {
    /// Its data was deleted (trimmed or `XDEL`ed) while it was pending.
    EntryGone,
    /// The job is already terminal (a finish whose `XACK` was lost).
    AlreadyTerminal(JobState),
    /// The dead-letter script failed permanently; acknowledging is the
    /// only way left to stop redelivering it.
    DeadLetterFailed,
}

/// How handling a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Acknowledged without a finish (see [`AckReason`]).
    Acked,
    /// The entry was acknowledged by someone else meanwhile.
    NotPending,
    /// The finish script recorded `state`.
    Finished {
        /// Job state recorded.
        state: JobState,
        /// Error recorded.
        error: Option<String>,
        /// Session status the event reported.
        status: SessionState,
    },
    /// The finish script found the job already terminal and acknowledged it.
    AlreadyTerminal {
        /// The state recorded earlier.
        state: JobState,
    },
    /// The finish script refused a finish that wrote no session (cannot
    /// happen with the current script; the entry stays pending).
    FencedWithoutWrite {
        /// The session's fence.
        session_fence: u64,
    },
    /// Moved to the dead-letter stream.
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// Left pending: it is reclaimed and redelivered after the lease idle
    /// time, counting toward the delivery limit.
    LeftPending {
        /// Why.
        reason: String,
    },
    /// Shutdown came while waiting for the session lease; the entry stays
    /// pending for another worker (not a failure).
    ShutdownWhileWaiting,
    /// The executor stopped before a write it was no longer entitled to
    /// (a newer lease holder may own the session): abandoned without a
    /// finish or an ack, so the newer holder's work stands.
    Fenced {
        /// Why.
        reason: String,
    },
}

/// The next thing to do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask `XPENDING` how often the entry was delivered.
    LookupDeliveries,
    /// Run the start script.
    Start,
    /// Wait for the session lease (heartbeating the entry meanwhile).
    AcquireLease,
    /// Read the session again under the lease.
    ReadSession,
    /// Run the executor (with retries and heartbeat) toward `desired`, at
    /// the session's `generation`.
    Converge {
        /// The session's current desired state.
        desired: DesiredState,
        /// The generation it belongs to.
        generation: u64,
    },
    /// Run the finish script.
    Finish(Ending),
    /// Run the dead-letter script.
    DeadLetter {
        /// Why the entry is dead.
        reason: String,
    },
    /// Acknowledge the entry only.
    Ack(AckReason),
    /// Nothing more to do.
    Done(Done),
}

/// The next step for a delivery, given what is known and the delivery limit.
pub fn next(k: &Known, max_deliveries: u64) -> Step {
    if let Some(failure) = &k.failure {
        return after_failure(k, failure);
    }
    if k.acked {
        return Step::Done(Done::Acked);
    }
    if k.entry_deleted {
        return Step::Ack(AckReason::EntryGone);
    }
    let deliveries = match k.deliveries {
        Deliveries::Unknown => return Step::LookupDeliveries,
        Deliveries::NotPending => return Step::Done(Done::NotPending),
        Deliveries::Count(n) => n,
    };
    if let Some(reason) = dead_reason(deliveries, max_deliveries, k.job_generation.is_some()) {
        return if k.dead_lettered { Step::Done(Done::DeadLettered { reason }) } else { Step::DeadLetter { reason } };
    }
    let Some(job_generation) = k.job_generation else {
        return Step::Done(Done::LeftPending { reason: "undecodable payload".into() });
    };
    let snapshot = match &k.start {
        None => return Step::Start,
        Some(StartReply::Terminal { state }) => return Step::Ack(AckReason::AlreadyTerminal(*state)),
        Some(StartReply::Started { session, .. }) => session,
    };
    // One check, against the latest view: the start snapshot, then the
    // session read again under the lease.
    let latest = k.view.unwrap_or_else(|| SessionView::of(snapshot));
    let desired = match relevance(job_generation, &latest, snapshot) {
        Err(ending) => return finish_or_done(k, ending),
        Ok(desired) => desired,
    };
    let token = match k.lease {
        LeaseState::NotAsked => return Step::AcquireLease,
        LeaseState::ShutdownWhileWaiting => return Step::Done(Done::ShutdownWhileWaiting),
        LeaseState::Held { token } => token,
    };
    if k.view.is_none() {
        return Step::ReadSession;
    }
    let ending = match &k.converged {
        None => return Step::Converge { desired, generation: latest.generation },
        Some(Ok(o)) => Ending {
            state: JobState::Succeeded,
            error: None,
            event_status: o.status,
            session: Some(SessionWrite {
                fence: token,
                status: o.status,
                replicas: o.replicas,
                backup_file: o.backup_file.clone(),
                upstream: o.upstream.clone(),
                archive: o.archive.clone().map(Box::new),
                failed_backup: None,
            }),
        },
        Some(Err(ExecError::Permanent { message, status, backup, .. })) => Ending {
            state: JobState::Failed,
            error: Some(message.clone()),
            event_status: *status,
            session: Some(SessionWrite {
                fence: token,
                status: *status,
                replicas: 0,
                backup_file: None,
                upstream: None,
                archive: None,
                failed_backup: backup.clone(),
            }),
        },
        Some(Err(ExecError::Fenced(fenced))) => return Step::Done(Done::Fenced { reason: fenced.to_string() }),
        Some(Err(e @ ExecError::Retryable { .. })) => {
            return Step::Done(Done::LeftPending { reason: format!("retries exhausted: {}", e.message()) });
        }
    };
    finish_or_done(k, ending)
}

/// Why a delivery is dead, if it is: delivered more than the limit, or
/// undecodable at the limit (retrying cannot make it decode, but a rolling
/// upgrade might bring a worker that can, so it gets the same chances).
fn dead_reason(deliveries: u64, max_deliveries: u64, decoded: bool) -> Option<String> {
    if deliveries > max_deliveries {
        return Some(format!("delivered {deliveries} times (limit {max_deliveries})"));
    }
    if !decoded && deliveries >= max_deliveries {
        return Some(format!("undecodable payload after {deliveries} deliveries"));
    }
    None
}

/// Level-triggered check of a job against the session: the desired state
/// to converge to, or the ending of a job that must not act (superseded by
/// a newer generation, or orphaned because the session is gone). The
/// event of such an ending reports the session's real status (`view`'s,
/// else the start snapshot's, else `failed`).
fn relevance(job_generation: u64, view: &SessionView, snapshot: &SessionSnapshot) -> Result<DesiredState, Ending> {
    let status = view.status.or(snapshot.status).unwrap_or(SessionState::Failed);
    match view.desired {
        Some(_) if view.generation == 0 => Err(Ending::alone(JobState::Failed, Some(ORPHANED), status)),
        None => Err(Ending::alone(JobState::Failed, Some(ORPHANED), status)),
        Some(_) if job_generation < view.generation => Err(Ending::alone(JobState::Superseded, None, status)),
        Some(desired) => Ok(desired),
    }
}

/// Finish with `ending`, or, once the finish script answered, what its
/// answer means. A finish that wrote the session and was fenced out is
/// finished again as `superseded`, without the session write.
fn finish_or_done(k: &Known, ending: Ending) -> Step {
    let (ending, replies) = match k.finished.as_slice() {
        [FinishReply::Fenced { .. }, rest @ ..] if ending.session.is_some() => {
            (Ending::alone(JobState::Superseded, Some(FENCED), ending.event_status), rest)
        }
        replies => (ending, replies),
    };
    match replies.first() {
        None => Step::Finish(ending),
        Some(FinishReply::Finished) => {
            Step::Done(Done::Finished { state: ending.state, error: ending.error, status: ending.event_status })
        }
        Some(FinishReply::AlreadyTerminal { state }) => Step::Done(Done::AlreadyTerminal { state: *state }),
        Some(FinishReply::Fenced { session_fence }) => {
            Step::Done(Done::FencedWithoutWrite { session_fence: *session_fence })
        }
    }
}

/// After a queue step failed: a retryable failure leaves the entry pending
/// (the next delivery retries); a permanent one dead-letters the entry, or,
/// when dead-lettering itself failed permanently, acknowledges it.
fn after_failure(k: &Known, f: &Failure) -> Step {
    let reason = format!("permanent queue error in {}: {}", f.op.as_str(), f.message);
    if k.dead_lettered {
        return Step::Done(Done::DeadLettered { reason });
    }
    if k.acked {
        return Step::Done(Done::Acked);
    }
    match (f.retryable, f.op) {
        (true, _) | (false, QueueOp::Ack) => Step::Done(Done::LeftPending { reason: f.message.clone() }),
        (false, QueueOp::DeadLetter) => Step::Ack(AckReason::DeadLetterFailed),
        (false, _) => Step::DeadLetter { reason },
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
