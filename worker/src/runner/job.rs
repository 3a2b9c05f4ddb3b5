//! One delivered entry, run to its end: the interpreter of
//! [`lifecycle::next`]. It asks the lifecycle for the next step, performs
//! it (a Redis script, the lease wait, the executor with retries and
//! heartbeat), writes the result back into [`Known`], and asks again,
//! until the step is `Done`; then it records telemetry and releases the
//! lease if one is held. No decision about the job is made here: every
//! branch is in `lifecycle.rs` and its table tests.
//!
//! Every Redis step is one atomic script, so a crash between two steps
//! leaves the entry pending and the next delivery resumes safely: a job
//! already finished is only acknowledged, and a job that had not finished
//! converges again (executors are idempotent).
//!
//! Telemetry: each delivery runs in one `job.process` span (a consumer
//! span continued from the job's `traceparent`, so it joins the api
//! request's trace), each executor try in a `job.converge` child span
//! (retries are siblings), and failures set the span status with the
//! message. Metrics are recorded next to the runner's counters.

use std::sync::Arc;

use proto_types::scripts::dead_letter::{DeadJob, DeadLetter};
use proto_types::scripts::entitled::{EntitledReply, PendingBackup};
use proto_types::scripts::finish::{BackupWrite, Finish, FinishReply, SessionUpdate};
use proto_types::scripts::lease::Lease;
use proto_types::scripts::start::{SessionSnapshot, StartReply};
use proto_types::{Command, DesiredState, Event, Job, JobState, SessionState};
use sm_telemetry::attrs;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, field, info, info_span, warn};

use super::lease::{self, LeaseTiming};
use super::lifecycle::{self, AckReason, Deliveries, Done, Ending, Failure, Known, LeaseState, QueueOp, Step};
use super::retry;
use super::runner_config::RunnerConfig;
use super::stats::{Counter, Stats};
use crate::clock::SharedClock;
use crate::entitlement::{CreateCheck, CreatePurpose, LeaseGuard};
use crate::executor::{ExecError, Executor, Outcome, Target};
use crate::fenced::{CreateCheckError, Fenced};
use crate::metrics::Metrics;
use crate::queue::{Entry, Queue, QueueError};

/// What every job task shares.
pub(crate) struct Ctx<E> {
    pub(crate) queue: Queue,
    pub(crate) executor: Arc<E>,
    pub(crate) config: RunnerConfig,
    pub(crate) stats: Arc<Stats>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: SharedClock,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Handles one entry inside its own span, from delivery to its end.
pub(crate) async fn handle<E: Executor>(ctx: Arc<Ctx<E>>, entry: Entry, deliveries: Deliveries) {
    let _in_flight = ctx.metrics.in_flight();
    let job = entry.payload.as_deref().and_then(|p| Job::decode(p).ok());
    let span = job_span(&ctx, &entry, job.as_ref());
    let known = Known::new(entry.deleted, job.as_ref().map(|j| j.generation), deliveries);
    let delivery = Delivery {
        ctx: &ctx,
        entry: &entry,
        job: job.as_ref(),
        known,
        lease: None,
        lease_sent_ms: 0,
        started: Instant::now(),
        converged_generation: None,
    };
    delivery.run().instrument(span).await
}

/// The `job.process` span of one delivery, continued from the job's trace
/// context (set before the span is first entered, as `set_parent` needs).
fn job_span<E>(ctx: &Ctx<E>, entry: &Entry, job: Option<&Job>) -> Span {
    let span = info_span!(
        attrs::JOB_SPAN,
        { attrs::OTEL_KIND } = "consumer",
        { attrs::JOB_ID } = job.map(|j| j.job_id.as_str()),
        { attrs::SESSION_UUID } = job.map(|j| j.session_id.as_str()),
        { attrs::COMMAND } = job.map(|j| j.command.as_str()),
        { attrs::ATTEMPT } = field::Empty,
        { attrs::MESSAGING_SYSTEM } = attrs::MESSAGING_SYSTEM_REDIS,
        { attrs::MESSAGING_DESTINATION_NAME } = proto_types::keys::JOBS_STREAM,
        { attrs::MESSAGING_OPERATION } = "receive",
        { attrs::MESSAGING_MESSAGE_ID } = %entry.id,
        { attrs::MESSAGING_CONSUMER_GROUP_NAME } = proto_types::keys::GROUP,
        messaging.consumer.name = ctx.queue.consumer(),
        messaging.delivery_count = field::Empty,
        job.state = field::Empty,
        job.outcome = field::Empty,
        { attrs::OTEL_STATUS_CODE } = field::Empty,
        { attrs::OTEL_STATUS_DESCRIPTION } = field::Empty,
    );
    if let Some(job) = job
        && let Err(error) = sm_telemetry::set_parent(&span, job.traceparent.as_deref(), job.tracestate.as_deref())
    {
        debug!(%error, job.id = job.job_id.as_str(), "job span starts its own trace");
    }
    span
}

/// Marks `span` failed with `message` (OpenTelemetry status `error`).
fn span_failed(span: &Span, message: &str) {
    span.record(attrs::OTEL_STATUS_CODE, "error");
    span.record(attrs::OTEL_STATUS_DESCRIPTION, message);
}

/// One delivery in progress.
struct Delivery<'a, E> {
    ctx: &'a Ctx<E>,
    entry: &'a Entry,
    /// The decoded job; `None` when the payload did not decode.
    job: Option<&'a Job>,
    known: Known,
    /// The session lease, while held.
    lease: Option<Lease>,
    /// When the acquire of `lease` was sent (clock ms).
    lease_sent_ms: u64,
    /// When this delivery started (job duration metric).
    started: Instant,
    /// The session generation the executor converged at, once it ran.
    converged_generation: Option<u64>,
}

impl<'a, E: Executor> Delivery<'a, E> {
    async fn run(mut self) {
        if let Deliveries::Count(n) = self.known.deliveries {
            Span::current().record("messaging.delivery_count", n);
        }
        loop {
            match lifecycle::next(&self.known, self.ctx.config.max_deliveries) {
                Step::Done(done) => {
                    self.record(done);
                    break;
                }
                step => self.perform(step).await,
            }
        }
        self.release().await;
    }

    /// The job, for steps the lifecycle only takes for decoded jobs.
    fn job(&self) -> &'a Job {
        self.job.expect("the lifecycle starts only decoded jobs")
    }

    fn snapshot(&self) -> Option<&SessionSnapshot> {
        match &self.known.start {
            Some(StartReply::Started { session, .. }) => Some(session),
            _ => None,
        }
    }

    fn attempts(&self) -> u32 {
        match &self.known.start {
            Some(StartReply::Started { attempts, .. }) => *attempts,
            _ => 0,
        }
    }

    async fn perform(&mut self, step: Step) {
        debug!(?step, "job step");
        let (op, result) = match step {
            Step::LookupDeliveries => (QueueOp::Deliveries, self.lookup_deliveries().await),
            Step::Start => (QueueOp::Start, self.start().await),
            Step::AcquireLease => (QueueOp::Lease, self.acquire().await),
            Step::ReadSession => (QueueOp::ReadSession, self.read_session().await),
            Step::Converge { desired, generation } => {
                self.converge(desired, generation).await;
                return;
            }
            Step::Finish(ending) => (QueueOp::Finish, self.finish(&ending).await),
            Step::DeadLetter { reason } => (QueueOp::DeadLetter, self.dead_letter(&reason).await),
            Step::Ack(reason) => (QueueOp::Ack, self.ack(reason).await),
            Step::Done(_) => unreachable!("run handles Done"),
        };
        if let Err(error) = result {
            warn!(%error, retryable = error.is_retryable(), "job step failed");
            self.known.failure = Some(Failure::new(op, &error));
        }
    }

    async fn lookup_deliveries(&mut self) -> Result<(), QueueError> {
        self.known.deliveries = match self.ctx.queue.deliveries(&self.entry.id).await? {
            Some(n) => {
                Span::current().record("messaging.delivery_count", n);
                Deliveries::Count(n)
            }
            None => Deliveries::NotPending,
        };
        Ok(())
    }

    async fn start(&mut self) -> Result<(), QueueError> {
        let job = self.job();
        let reply = self.ctx.queue.start(job.job_id.as_str(), job.session_id.as_str(), self.ctx.clock.now_ms()).await?;
        if let StartReply::Started { attempts, .. } = &reply {
            Span::current().record(attrs::ATTEMPT, attempts);
            self.ctx.metrics.job_started(job.command, job.origin);
        }
        self.known.start = Some(reply);
        Ok(())
    }

    async fn acquire(&mut self) -> Result<(), QueueError> {
        let ctx = self.ctx;
        let owner = format!("{}:{}", ctx.queue.consumer(), self.entry.id);
        let timing = LeaseTiming { ttl: ctx.config.lease };
        let session = self.job().session_id.as_str();
        let held = || {
            ctx.stats.add(Counter::LeaseContention, 1);
            ctx.metrics.lease_contended();
        };
        let clock = &*ctx.clock;
        let got =
            lease::wait_for(&ctx.queue, timing, clock, &self.entry.id, session, &owner, ctx.shutdown.clone(), held)
                .await?;
        self.known.lease = match &got {
            Some((lease, _)) => LeaseState::Held { token: lease.token },
            None => LeaseState::ShutdownWhileWaiting,
        };
        if let Some((lease, sent_ms)) = got {
            self.lease = Some(lease);
            self.lease_sent_ms = sent_ms;
        }
        Ok(())
    }

    async fn read_session(&mut self) -> Result<(), QueueError> {
        self.known.view = Some(self.ctx.queue.session_view(self.job().session_id.as_str()).await?);
        Ok(())
    }

    /// The executor toward `desired`, with retries, heartbeating meanwhile.
    async fn converge(&mut self, desired: DesiredState, generation: u64) {
        let ctx = self.ctx;
        let job = self.job();
        let lease = self.lease.as_ref().expect("the lifecycle converges only under the lease");
        let guard = self.guard(lease, generation);
        self.converged_generation = Some(generation);
        let target = Target {
            session_id: job.session_id.clone(),
            desired,
            generation,
            job_id: job.job_id.clone(),
            command: job.command,
            attempt: self.attempts(),
            workspace_url: self.snapshot().and_then(|s| s.workspace_url.clone()),
            lease: guard.clone(),
            restore: self.snapshot().and_then(|s| s.restore.clone()),
        };
        let timing = LeaseTiming { ttl: ctx.config.lease };
        let retried = |error: &ExecError, delay| {
            ctx.stats.add(Counter::Retries, 1);
            ctx.metrics.job_retried(target.command);
            warn!(%error, ?delay, "converge failed; retrying");
        };
        let result = tokio::select! {
            r = retry::with_retries(&ctx.config.retry, |n| self.converge_once(&target, n), retried) => r,
            never = lease::heartbeat(&ctx.queue, timing, &self.entry.id, lease, &guard) => match never {},
        };
        self.known.converged = Some(result);
    }

    /// The entitlement of `lease` for this converge: from when its acquire
    /// was sent, with the entitled script as the check before each create.
    fn guard(&self, lease: &Lease, generation: u64) -> LeaseGuard {
        let queue = self.ctx.queue.clone();
        let held = lease.clone();
        let clock = Arc::clone(&self.ctx.clock);
        let user: Arc<str> = self.snapshot().and_then(|s| s.user_id.as_deref()).unwrap_or_default().into();
        let check: CreateCheck = Arc::new(move |purpose| {
            let (queue, lease, clock, user) = (queue.clone(), held.clone(), Arc::clone(&clock), Arc::clone(&user));
            Box::pin(async move {
                let reply = match purpose {
                    CreatePurpose::Workspace => queue.entitled(&lease, generation, false, None).await,
                    CreatePurpose::Backup(kind) => {
                        let id = proto_types::record::backup::id(&lease.session_id, generation);
                        let pending = PendingBackup { id: &id, kind, user_id: &user, now_ms: clock.now_ms() };
                        queue.entitled(&lease, generation, true, Some(&pending)).await
                    }
                };
                let why = match reply.map_err(|e| CreateCheckError::Unavailable(e.to_string()))? {
                    EntitledReply::Entitled => return Ok(()),
                    EntitledReply::Lost => "the session lease is no longer ours".to_owned(),
                    EntitledReply::Superseded { generation: now } => {
                        format!("the session moved on to generation {now} (job: {generation})")
                    }
                    EntitledReply::Deleted => "the session is to be deleted".to_owned(),
                };
                Err(Fenced::NotEntitled { object: format!("objects of session {}", lease.session_id), why }.into())
            })
        });
        LeaseGuard::new(lease.token, self.ctx.config.lease, self.lease_sent_ms, Arc::clone(&self.ctx.clock), check)
    }

    /// One executor try in its own `job.converge` span (`try` counts from 1).
    async fn converge_once(&self, target: &Target, attempt: u32) -> Result<Outcome, ExecError> {
        let span = info_span!(
            "job.converge",
            desired = %target.desired,
            generation = target.generation,
            r#try = attempt,
            { attrs::OTEL_STATUS_CODE } = field::Empty,
            { attrs::OTEL_STATUS_DESCRIPTION } = field::Empty,
        );
        let result = self.ctx.executor.converge(target).instrument(span.clone()).await;
        if let Err(error) = &result {
            span_failed(&span, &error.to_string());
        }
        result
    }

    /// The finish script, for every ending.
    async fn finish(&mut self, ending: &Ending) -> Result<(), QueueError> {
        let job = self.job();
        let event = self.event(ending.state, ending.event_status, ending.error.as_deref());
        // A delete or backup may have recorded its backup `pending`: in this
        // delivery's converge, or in an earlier one that crashed.
        let pending = match job.command {
            Command::Delete | Command::Backup => {
                let generation = self.converged_generation.unwrap_or(job.generation);
                Some(proto_types::record::backup::id(job.session_id.as_str(), generation))
            }
            _ => None,
        };
        let finish = Finish {
            job_id: job.job_id.as_str(),
            session_id: job.session_id.as_str(),
            user_id: self.snapshot().and_then(|s| s.user_id.as_deref()).unwrap_or_default(),
            entry_id: &self.entry.id,
            group: proto_types::keys::GROUP,
            state: ending.state,
            error: ending.error.as_deref(),
            session: ending.session.as_ref().map(|w| SessionUpdate {
                fence: w.fence,
                status: w.status,
                replicas: w.replicas,
                backup_file: w.backup_file.as_deref(),
                upstream: w.upstream.as_deref(),
                backup: match (&w.archive, &w.failed_backup) {
                    (Some(a), _) => Some(BackupWrite {
                        id: &a.id,
                        kind: a.kind,
                        location: &a.location,
                        size_bytes: a.size_bytes,
                        sha256: &a.sha256,
                        state: proto_types::record::backup::STATE_SUCCEEDED,
                    }),
                    (None, Some(f)) => Some(BackupWrite {
                        id: &f.id,
                        kind: f.kind,
                        location: &f.location,
                        size_bytes: 0,
                        sha256: "",
                        state: proto_types::record::backup::STATE_FAILED,
                    }),
                    (None, None) => None,
                },
            }),
            pending_backup: pending.as_deref(),
            event: &event,
            now_ms: self.ctx.clock.now_ms(),
        };
        let reply = self.ctx.queue.finish(&finish).await?;
        if let FinishReply::Fenced { session_fence } = &reply {
            warn!(session_fence, "a newer lease holder wrote the session");
        }
        self.known.finished.push(reply);
        Ok(())
    }

    async fn dead_letter(&mut self, reason: &str) -> Result<(), QueueError> {
        let event = self.job.map(|_| self.event(JobState::Dead, SessionState::Failed, Some(reason)));
        let dead = DeadLetter {
            entry_id: &self.entry.id,
            group: proto_types::keys::GROUP,
            payload: self.entry.payload.as_deref().unwrap_or_default(),
            reason,
            deliveries: match self.known.deliveries {
                Deliveries::Count(n) => n,
                Deliveries::Unknown | Deliveries::NotPending => 0,
            },
            job: self.job.map(|j| DeadJob {
                job_id: j.job_id.as_str(),
                session_id: j.session_id.as_str(),
                generation: j.generation,
                event: event.as_deref().unwrap_or_default(),
            }),
            now_ms: self.ctx.clock.now_ms(),
        };
        let dead_id = self.ctx.queue.dead_letter(&dead).await?;
        debug!(dead_id, "dead-letter entry written");
        self.known.dead_lettered = true;
        Ok(())
    }

    async fn ack(&mut self, reason: AckReason) -> Result<(), QueueError> {
        match reason {
            AckReason::EntryGone => debug!("entry data is gone; acknowledging"),
            AckReason::AlreadyTerminal(state) => info!(state = state.as_str(), "already finished; acknowledging"),
            AckReason::DeadLetterFailed => warn!("dead-lettering failed permanently; acknowledging"),
        }
        self.ctx.queue.ack(&self.entry.id).await?;
        self.known.acked = true;
        Ok(())
    }

    /// The encoded status event (empty if it cannot be encoded).
    fn event(&self, state: JobState, session_state: SessionState, error: Option<&str>) -> Vec<u8> {
        let job = self.job();
        let e = Event {
            job_id: job.job_id.clone(),
            session_id: job.session_id.clone(),
            command: job.command,
            job_state: state,
            session_state,
            at_ms: self.ctx.clock.now_ms(),
            error: error.map(str::to_owned),
            origin: job.origin,
        };
        e.encode().unwrap_or_else(|error| {
            warn!(%error, "could not encode event");
            Vec::new()
        })
    }

    /// Telemetry of how the delivery ended.
    fn record(&self, done: Done) {
        let (ctx, span) = (self.ctx, Span::current());
        let command = self.job.map(|j| j.command);
        match done {
            Done::Acked => {}
            Done::NotPending => debug!("acknowledged meanwhile"),
            Done::Finished { state, error, status } => {
                if let Some(c) = counter(state) {
                    ctx.stats.add(c, 1);
                }
                ctx.metrics.job_finished(command, state, self.started.elapsed().as_secs_f64());
                span.record("job.state", state.as_str());
                if matches!(state, JobState::Failed | JobState::Dead) {
                    span_failed(&span, error.as_deref().unwrap_or(state.as_str()));
                }
                info!(state = state.as_str(), status = status.as_str(), error, "job finished");
            }
            Done::AlreadyTerminal { state } => {
                info!(state = state.as_str(), "already finished elsewhere; acknowledged")
            }
            Done::FencedWithoutWrite { session_fence } => {
                warn!(session_fence, "unexpected fence refusal without a session write")
            }
            Done::DeadLettered { reason } => {
                ctx.stats.add(Counter::DeadLettered, 1);
                ctx.metrics.job_finished(command, JobState::Dead, self.started.elapsed().as_secs_f64());
                span.record("job.state", JobState::Dead.as_str());
                span_failed(&span, &reason);
                warn!(reason, "entry moved to the dead-letter stream");
            }
            Done::LeftPending { reason } => {
                ctx.stats.add(Counter::LeftPending, 1);
                ctx.metrics.left_pending();
                span_failed(&span, &reason);
                warn!(reason, "entry stays pending for redelivery");
            }
            Done::ShutdownWhileWaiting => info!("shutdown while waiting for the session lease; entry stays pending"),
            Done::Fenced { reason } => {
                ctx.metrics.fenced();
                span.record("job.outcome", "fenced");
                span_failed(&span, &reason);
                warn!(reason, "fenced: stopped before the next Kubernetes write; job abandoned, entry stays pending");
            }
        }
    }

    async fn release(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        match self.ctx.queue.release(&lease).await {
            Ok(true) => {}
            Ok(false) => warn!("session lease expired before release"),
            Err(error) => warn!(%error, "could not release the session lease; it expires by itself"),
        }
    }
}

/// The runner counter of a finished job's state.
fn counter(state: JobState) -> Option<Counter> {
    match state {
        JobState::Succeeded => Some(Counter::Succeeded),
        JobState::Failed => Some(Counter::Failed),
        JobState::Superseded => Some(Counter::Superseded),
        JobState::Dead => Some(Counter::DeadLettered),
        JobState::Queued | JobState::Running => None,
    }
}
