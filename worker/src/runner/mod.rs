//! The job loop: reads the stream, reclaims abandoned entries, trims, and
//! runs each job in a bounded set of tasks, generic over the
//! [`Executor`] that acts on Kubernetes.
//!
//! Order of work on start: create the group, drain this consumer's own
//! pending list (entries it was given before a restart), then read new
//! entries. A reclaimer takes over entries idle longer than the lease;
//! a trimmer keeps the stream short. Concurrency is a semaphore: the loop
//! only reads as many entries as it has free permits, so nothing it reads
//! waits. Shutdown stops reading, gives in-flight jobs a grace period, and
//! returns; whatever is still unacknowledged is reclaimed by other workers.
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | this loop: read, reclaim, trim, dispatch, drain on shutdown |
//! | [`lifecycle`] | the job's life as one pure decision, `next(&Known) -> Step` |
//! | `job.rs` | the interpreter of [`lifecycle`]: performs each step for one entry |
//! | `lease.rs` | waiting for, and heartbeating, the session lease |
//! | `retry.rs` | retrying the executor with jittered backoff |
//! | `runner_config.rs` | [`RunnerConfig`] and [`RetryPolicy`] |
//! | `stats.rs` | the runner's counters |
//! | `shutdown.rs` | waiting for the stop signal |

mod job;
mod lease;
pub mod lifecycle;
mod retry;
mod runner_config;
mod shutdown;
mod stats;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

pub use runner_config::{ConfigError, RetryPolicy, RunnerConfig};
pub use stats::{Stats, StatsSnapshot};

use crate::clock::{SharedClock, SystemClock};
use crate::executor::Executor;
use crate::metrics::Metrics;
use crate::queue::{Entry, Queue, QueueError};
use job::Ctx;
use lifecycle::Deliveries;
use shutdown::stopped;

/// The runner: build with [`Runner::new`], drive with [`Runner::run`].
pub struct Runner<E> {
    queue: Queue,
    executor: Arc<E>,
    config: RunnerConfig,
    stats: Arc<Stats>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

impl<E> std::fmt::Debug for Runner<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Why the runner could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Redis client could not be set up.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Entries being worked on by this process, so the reclaimer never starts
/// a second task for one of them.
type InFlight = Arc<Mutex<HashSet<String>>>;

struct InFlightGuard(InFlight, String);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(&self.1);
        }
    }
}

impl<E: Executor> Runner<E> {
    /// Validates the configuration and sets up the (lazy) Redis connections.
    pub fn new(client: redis::Client, executor: Arc<E>, config: RunnerConfig) -> Result<Self, RunnerError> {
        config.validate()?;
        let queue = Queue::new(client, config.queue.clone())?;
        Ok(Self {
            queue,
            executor,
            config,
            stats: Arc::new(Stats::default()),
            metrics: Arc::default(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Records into `metrics` (the registry `/metrics` renders) instead of a private one.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Takes timestamps (job start and finish times, events) from `clock`
    /// instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The runner's counters (shared; read them any time).
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Runs until `shutdown` becomes `true` (or its sender is dropped), then
    /// lets in-flight jobs finish within the grace period and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let config = self.config.clone();
        let ctx = Arc::new(Ctx {
            queue: self.queue,
            executor: self.executor,
            config: self.config,
            stats: self.stats,
            metrics: self.metrics,
            clock: self.clock,
            shutdown: shutdown.clone(),
        });
        info!(consumer = ctx.queue.consumer(), concurrency = config.concurrency, "runner starting");
        let sem = Arc::new(Semaphore::new(config.concurrency));
        let in_flight: InFlight = Arc::default();
        let mut tasks = JoinSet::new();
        let mut errors = redis_backoff();
        let mut group_ready = false;
        // Drain our own pending list first, from the beginning.
        let mut pel_after: Option<String> = Some("0-0".to_owned());
        let mut reclaim = tokio::time::interval(config.reclaim_interval);
        reclaim.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut trim = tokio::time::interval(config.trim_interval);
        trim.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    error!(error = %e, "job task panicked; its entry stays pending");
                }
            }
            if !group_ready {
                match ctx.queue.ensure_group().await {
                    Ok(()) => group_ready = true,
                    Err(error) => {
                        warn!(%error, "cannot create the consumer group yet");
                        if pause(&mut errors, &mut shutdown).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            let permit = tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => break,
                _ = reclaim.tick() => {
                    if let Err(error) = reclaim_once(&ctx, &sem, &in_flight, &mut tasks).await {
                        group_ready &= !matches!(error, QueueError::NoGroup { .. });
                        warn!(%error, "reclaim failed");
                    }
                    continue;
                }
                _ = trim.tick() => {
                    match ctx.queue.trim().await {
                        Ok(reply) => debug!(?reply, "trimmed the jobs stream"),
                        Err(error) => warn!(%error, "trim failed"),
                    }
                    continue;
                }
                p = Arc::clone(&sem).acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let want = sem.available_permits() + 1;
            let read = match &pel_after {
                Some(after) => ctx.queue.read_own_pending(after, want).await,
                None => tokio::select! {
                    r = ctx.queue.read_new(want) => r,
                    _ = stopped(&mut shutdown) => break,
                },
            };
            match read {
                Ok(entries) => {
                    errors = redis_backoff();
                    let deliveries = if let Some(after) = &mut pel_after {
                        match entries.last() {
                            Some(last) => *after = last.id.clone(),
                            None => {
                                debug!("own pending list drained");
                                pel_after = None;
                            }
                        }
                        Deliveries::Unknown
                    } else {
                        Deliveries::Count(1)
                    };
                    dispatch(&ctx, &sem, &in_flight, &mut tasks, entries, Some(permit), deliveries);
                }
                Err(error) => {
                    drop(permit);
                    group_ready &= !matches!(error, QueueError::NoGroup { .. });
                    warn!(%error, "reading the jobs stream failed");
                    if pause(&mut errors, &mut shutdown).await {
                        break;
                    }
                }
            }
        }

        info!(in_flight = tasks.len(), grace = ?config.shutdown_grace, "runner stopping");
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(config.shutdown_grace, drain).await.is_err() {
            warn!(left = tasks.len(), "grace period over; abandoning in-flight jobs to the reclaimers");
            tasks.shutdown().await;
        }
        info!("runner stopped");
    }
}

fn redis_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .without_max_times()
        .with_jitter_seed(crate::random::jitter_seed())
        .with_jitter()
        .build()
}

/// Sleeps the next backoff delay; `true` if shutdown came first.
async fn pause(delays: &mut impl Iterator<Item = Duration>, shutdown: &mut watch::Receiver<bool>) -> bool {
    let delay = delays.next().unwrap_or(Duration::from_secs(2));
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stopped(shutdown) => true,
    }
}

async fn reclaim_once<E: Executor>(
    ctx: &Arc<Ctx<E>>,
    sem: &Arc<Semaphore>,
    in_flight: &InFlight,
    tasks: &mut JoinSet<()>,
) -> Result<(), QueueError> {
    let free = sem.available_permits();
    if free == 0 {
        return Ok(());
    }
    let claimed = ctx.queue.reclaim(ctx.config.lease, free).await?;
    if !claimed.is_empty() {
        info!(count = claimed.len(), "reclaimed idle entries");
        ctx.stats.add(stats::Counter::Reclaimed, claimed.len() as u64);
        ctx.metrics.reclaimed(claimed.len() as u64);
    }
    dispatch(ctx, sem, in_flight, tasks, claimed, None, Deliveries::Unknown);
    Ok(())
}

/// Starts one task per entry, each holding a permit. The loop read at most
/// as many entries as there were free permits, so every entry gets one.
fn dispatch<E: Executor>(
    ctx: &Arc<Ctx<E>>,
    sem: &Arc<Semaphore>,
    in_flight: &InFlight,
    tasks: &mut JoinSet<()>,
    entries: Vec<Entry>,
    mut first: Option<OwnedSemaphorePermit>,
    deliveries: Deliveries,
) {
    for entry in entries {
        let Some(permit) = first.take().or_else(|| Arc::clone(sem).try_acquire_owned().ok()) else {
            debug!(id = entry.id, "no free permit; entry stays pending for later");
            continue;
        };
        {
            let mut set = in_flight.lock().expect("in-flight set lock is never poisoned");
            if !set.insert(entry.id.clone()) {
                debug!(id = entry.id, "already in progress here");
                continue;
            }
        }
        let guard = InFlightGuard(Arc::clone(in_flight), entry.id.clone());
        let ctx = Arc::clone(ctx);
        tasks.spawn(async move {
            let _permit = permit;
            let _guard = guard;
            job::handle(ctx, entry, deliveries).await;
        });
    }
}
