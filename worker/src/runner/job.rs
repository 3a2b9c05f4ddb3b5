//! One job, from delivered entry to acknowledgement: triage, start script,
//! level-triggered classification, session lease, executor with retries
//! and heartbeat, finish script, lease release.
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

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use proto_types::scripts::dead_letter::{DeadJob, DeadLetter};
use proto_types::scripts::finish::{Finish, FinishReply, SessionUpdate};
use proto_types::scripts::lease::{AcquireReply, Lease};
use proto_types::scripts::start::StartReply;
use proto_types::{Event, Job, JobState, SessionState};
use sm_telemetry::attrs;
use tokio::sync::watch;
use tracing::{Instrument, Span, debug, field, info, info_span, warn};

use super::config::RunnerConfig;
use super::decide::{Action, Ending, Triage, classify, classify_snapshot, ending, triage};
use super::stats::{Counter, Stats};
use crate::executor::{ExecError, Executor, Outcome, Target};
use crate::metrics::Metrics;
use crate::queue::{Entry, Queue, QueueError};

/// What every job task shares.
pub(crate) struct Ctx<E> {
    pub(crate) queue: Queue,
    pub(crate) executor: Arc<E>,
    pub(crate) config: RunnerConfig,
    pub(crate) stats: Arc<Stats>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// How often an entry has been delivered, if already known.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deliveries {
    /// A fresh read of a new entry: its first delivery.
    First,
    /// Redelivered or reclaimed: ask `XPENDING`.
    Lookup,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Waits until shutdown is requested.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Handles one entry inside its own span; errors are logged, and leave the
/// entry pending for redelivery.
pub(crate) async fn handle<E: Executor>(ctx: Arc<Ctx<E>>, entry: Entry, deliveries: Deliveries) {
    let _in_flight = ctx.metrics.in_flight();
    let job = entry.payload.as_deref().and_then(|p| Job::decode(p).ok());
    let span = job_span(&ctx, &entry, job.as_ref());
    async {
        if let Err(error) = process(&ctx, &entry, job, deliveries).await {
            ctx.stats.add(Counter::LeftPending, 1);
            ctx.metrics.left_pending();
            span_failed(&Span::current(), &error.to_string());
            warn!(%error, retryable = error.is_retryable(), "job step failed; entry stays pending");
        }
    }
    .instrument(span)
    .await
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

/// Records a terminal state: runner counter, metrics, and the job span.
fn finished<E>(
    ctx: &Ctx<E>,
    command: Option<proto_types::Command>,
    state: JobState,
    error: Option<&str>,
    started: Instant,
) {
    count(&ctx.stats, state);
    ctx.metrics.job_finished(command, state, started.elapsed().as_secs_f64());
    let span = Span::current();
    span.record("job.state", state.as_str());
    match (state, error) {
        (JobState::Failed | JobState::Dead, Some(message)) => span_failed(&span, message),
        (JobState::Failed | JobState::Dead, None) => span_failed(&span, state.as_str()),
        _ => {}
    }
}

async fn process<E: Executor>(
    ctx: &Ctx<E>,
    entry: &Entry,
    job: Option<Job>,
    deliveries: Deliveries,
) -> Result<(), QueueError> {
    let started = Instant::now();
    if entry.deleted {
        debug!("entry data is gone; acknowledging");
        return ctx.queue.ack(&entry.id).await;
    }
    let deliveries = match deliveries {
        Deliveries::First => 1,
        Deliveries::Lookup => match ctx.queue.deliveries(&entry.id).await? {
            Some(n) => n,
            None => return Ok(()), // acknowledged meanwhile
        },
    };
    Span::current().record("messaging.delivery_count", deliveries);
    match triage(deliveries, ctx.config.max_deliveries, job.is_some()) {
        Triage::Run => {}
        Triage::LeavePending => {
            ctx.stats.add(Counter::LeftPending, 1);
            ctx.metrics.left_pending();
            span_failed(&Span::current(), "undecodable payload");
            warn!(deliveries, "undecodable payload; leaving it pending until the delivery limit");
            return Ok(());
        }
        Triage::DeadLetter(reason) => {
            return dead_letter(ctx, entry, job.as_ref(), &reason, deliveries, started).await;
        }
    }
    let job = job.expect("triage runs only decoded jobs");
    let span = Span::current();

    let (attempts, snapshot) = match ctx.queue.start(job.job_id.as_str(), job.session_id.as_str(), now_ms()).await? {
        StartReply::Terminal { state } => {
            info!(state = state.as_str(), "already finished; acknowledging");
            return ctx.queue.ack(&entry.id).await;
        }
        StartReply::Started { attempts, session } => (attempts, session),
    };
    span.record(attrs::ATTEMPT, attempts);
    ctx.metrics.job_started(job.command);
    let user = snapshot.user_id.clone().unwrap_or_default();
    let status = snapshot.status.unwrap_or(SessionState::Failed);
    match classify_snapshot(job.generation, &snapshot) {
        Action::Superseded => finish_alone(ctx, entry, &job, &user, JobState::Superseded, None, status, started).await,
        Action::Orphaned => {
            let error = Some("session not found");
            finish_alone(ctx, entry, &job, &user, JobState::Failed, error, status, started).await
        }
        Action::Converge(_) => {
            let workspace_url = snapshot.workspace_url;
            let run = Run { ctx, entry, job: &job, user: &user, attempts, status, workspace_url, started };
            run.with_lease().await
        }
    }
}

async fn dead_letter<E>(
    ctx: &Ctx<E>,
    entry: &Entry,
    job: Option<&Job>,
    reason: &str,
    deliveries: u64,
    started: Instant,
) -> Result<(), QueueError> {
    let event = job.and_then(|j| event(j, JobState::Dead, SessionState::Failed, Some(reason)));
    let dead = DeadLetter {
        entry_id: &entry.id,
        group: proto_types::keys::GROUP,
        payload: entry.payload.as_deref().unwrap_or_default(),
        reason,
        deliveries,
        job: job.map(|j| DeadJob {
            job_id: j.job_id.as_str(),
            session_id: j.session_id.as_str(),
            generation: j.generation,
            event: event.as_deref().unwrap_or_default(),
        }),
        now_ms: now_ms(),
    };
    let dead_id = ctx.queue.dead_letter(&dead).await?;
    ctx.stats.add(Counter::DeadLettered, 1);
    ctx.metrics.job_finished(job.map(|j| j.command), JobState::Dead, started.elapsed().as_secs_f64());
    let span = Span::current();
    span.record("job.state", JobState::Dead.as_str());
    span_failed(&span, reason);
    warn!(reason, deliveries, dead_id, "entry moved to the dead-letter stream");
    Ok(())
}

fn event(job: &Job, state: JobState, session_state: SessionState, error: Option<&str>) -> Option<Vec<u8>> {
    let e = Event {
        job_id: job.job_id.clone(),
        session_id: job.session_id.clone(),
        command: job.command,
        job_state: state,
        session_state,
        at_ms: now_ms(),
        error: error.map(str::to_owned),
    };
    match e.encode() {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            warn!(%error, "could not encode event");
            None
        }
    }
}

fn count(stats: &Stats, state: JobState) {
    match state {
        JobState::Succeeded => stats.add(Counter::Succeeded, 1),
        JobState::Failed => stats.add(Counter::Failed, 1),
        JobState::Superseded => stats.add(Counter::Superseded, 1),
        JobState::Dead => stats.add(Counter::DeadLettered, 1),
        JobState::Queued | JobState::Running => {}
    }
}

/// Finishes without writing the session (superseded, orphaned, fenced out).
#[expect(clippy::too_many_arguments, reason = "one call site shape; a struct would only rename them")]
async fn finish_alone<E>(
    ctx: &Ctx<E>,
    entry: &Entry,
    job: &Job,
    user: &str,
    state: JobState,
    error: Option<&str>,
    session_state: SessionState,
    started: Instant,
) -> Result<(), QueueError> {
    let ev = event(job, state, session_state, error).unwrap_or_default();
    let finish = Finish {
        job_id: job.job_id.as_str(),
        session_id: job.session_id.as_str(),
        user_id: user,
        entry_id: &entry.id,
        group: proto_types::keys::GROUP,
        state,
        error,
        session: None,
        event: &ev,
        now_ms: now_ms(),
    };
    match ctx.queue.finish(&finish).await? {
        FinishReply::Finished => {
            finished(ctx, Some(job.command), state, error, started);
            info!(state = state.as_str(), error, "job finished");
        }
        FinishReply::AlreadyTerminal { state } => info!(state = state.as_str(), "already finished; acknowledged"),
        FinishReply::Fenced { session_fence } => {
            warn!(session_fence, "unexpected fence refusal without a session write")
        }
    }
    Ok(())
}

/// A job that converges: holds its lease while it runs.
struct Run<'a, E> {
    ctx: &'a Ctx<E>,
    entry: &'a Entry,
    job: &'a Job,
    user: &'a str,
    attempts: u32,
    /// Session status when the job started (for events of jobs that end
    /// without writing the session).
    status: SessionState,
    workspace_url: Option<String>,
    /// When this delivery started (job duration metric).
    started: Instant,
}

impl<E: Executor> Run<'_, E> {
    fn owner(&self) -> String {
        format!("{}:{}", self.ctx.queue.consumer(), self.entry.id)
    }

    async fn with_lease(self) -> Result<(), QueueError> {
        let Some(lease) = self.acquire().await? else {
            info!("shutdown while waiting for the session lease; entry stays pending");
            return Ok(());
        };
        let result = self.leased(&lease).await;
        match self.ctx.queue.release(&lease).await {
            Ok(true) => {}
            Ok(false) => warn!("session lease expired before release"),
            Err(error) => warn!(%error, "could not release the session lease; it expires by itself"),
        }
        result
    }

    /// Waits for the session lease, heartbeating the entry meanwhile.
    /// `None` when shutdown was requested first.
    async fn acquire(&self) -> Result<Option<Lease>, QueueError> {
        let ctx = self.ctx;
        let owner = self.owner();
        let session = self.job.session_id.as_str();
        let cap = (ctx.config.lease / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(10).min(cap))
            .with_max_delay(cap)
            .without_max_times()
            .with_jitter_seed(super::config::random_seed())
            .with_jitter()
            .build();
        let mut shutdown = ctx.shutdown.clone();
        let mut last_touch = Instant::now();
        loop {
            match ctx.queue.acquire(session, &owner, ctx.config.lease).await? {
                AcquireReply::Acquired { token } => {
                    return Ok(Some(Lease { session_id: session.to_owned(), owner, token }));
                }
                AcquireReply::Held { owner: holder, ttl_ms } => {
                    ctx.stats.add(Counter::LeaseContention, 1);
                    ctx.metrics.lease_contended();
                    debug!(holder, ttl_ms, "session lease held; waiting");
                }
            }
            if last_touch.elapsed() >= ctx.config.lease / 3 {
                ctx.queue.touch(&self.entry.id).await?;
                last_touch = Instant::now();
            }
            let delay = delays.next().unwrap_or(cap);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut shutdown) => return Ok(None),
            }
        }
    }

    async fn leased(&self, lease: &Lease) -> Result<(), QueueError> {
        let ctx = self.ctx;
        // Read again under the lease: a newer job may have arrived while we waited.
        let (generation, desired) = ctx.queue.session_view(self.job.session_id.as_str()).await?;
        let desired = match classify(self.job.generation, generation, desired) {
            Action::Converge(d) => d,
            Action::Superseded => {
                return finish_alone(
                    ctx,
                    self.entry,
                    self.job,
                    self.user,
                    JobState::Superseded,
                    None,
                    SessionState::Running,
                    self.started,
                )
                .await;
            }
            Action::Orphaned => {
                return finish_alone(
                    ctx,
                    self.entry,
                    self.job,
                    self.user,
                    JobState::Failed,
                    Some("session not found"),
                    self.status,
                    self.started,
                )
                .await;
            }
        };
        let target = Target {
            session_id: self.job.session_id.clone(),
            desired,
            generation,
            job_id: self.job.job_id.clone(),
            command: self.job.command,
            attempt: self.attempts,
            workspace_url: self.workspace_url.clone(),
        };
        let result = tokio::select! {
            r = self.converge(&target) => r,
            never = self.heartbeat(lease) => match never {},
        };
        match ending(result) {
            Ending::LeavePending { error } => {
                ctx.stats.add(Counter::LeftPending, 1);
                ctx.metrics.left_pending();
                span_failed(&Span::current(), &error);
                warn!(error, "retries exhausted; entry stays pending for redelivery");
                Ok(())
            }
            Ending::Finish { state, status, replicas, backup_file, error } => {
                let update =
                    SessionUpdate { fence: lease.token, status, replicas, backup_file: backup_file.as_deref() };
                self.finish(state, update, error.as_deref()).await
            }
        }
    }

    async fn converge(&self, target: &Target) -> Result<Outcome, ExecError> {
        let stats = &self.ctx.stats;
        let tries = AtomicU32::new(0);
        (|| self.converge_once(target, tries.fetch_add(1, Ordering::Relaxed) + 1))
            .retry(self.ctx.config.retry.builder())
            .sleep(tokio::time::sleep)
            .when(ExecError::is_retryable)
            .notify(|error, delay| {
                stats.add(Counter::Retries, 1);
                self.ctx.metrics.job_retried(target.command);
                warn!(%error, ?delay, "converge failed; retrying");
            })
            .await
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

    /// Keeps the entry from being reclaimed and the lease from expiring.
    async fn heartbeat(&self, lease: &Lease) -> Infallible {
        let every = self.ctx.config.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            match self.ctx.queue.touch(&self.entry.id).await {
                Ok(true) => {}
                Ok(false) => warn!("entry was reclaimed by another consumer"),
                Err(error) => warn!(%error, "heartbeat failed"),
            }
            match self.ctx.queue.renew(lease, self.ctx.config.lease).await {
                Ok(true) => {}
                Ok(false) => warn!("session lease lost; our session write will be fenced"),
                Err(error) => warn!(%error, "lease renewal failed"),
            }
        }
    }

    async fn finish(&self, state: JobState, update: SessionUpdate<'_>, error: Option<&str>) -> Result<(), QueueError> {
        let ev = event(self.job, state, update.status, error).unwrap_or_default();
        let status = update.status;
        let finish = Finish {
            job_id: self.job.job_id.as_str(),
            session_id: self.job.session_id.as_str(),
            user_id: self.user,
            entry_id: &self.entry.id,
            group: proto_types::keys::GROUP,
            state,
            error,
            session: Some(update),
            event: &ev,
            now_ms: now_ms(),
        };
        match self.ctx.queue.finish(&finish).await? {
            FinishReply::Finished => {
                finished(self.ctx, Some(self.job.command), state, error, self.started);
                info!(state = state.as_str(), status = status.as_str(), error, "job finished");
                Ok(())
            }
            FinishReply::AlreadyTerminal { state } => {
                info!(state = state.as_str(), "already finished elsewhere; acknowledged");
                Ok(())
            }
            FinishReply::Fenced { session_fence } => {
                warn!(session_fence, "a newer lease holder wrote the session; finishing as superseded");
                let msg = "fenced out by a newer lease holder";
                let superseded = JobState::Superseded;
                finish_alone(self.ctx, self.entry, self.job, self.user, superseded, Some(msg), status, self.started)
                    .await
            }
        }
    }
}
