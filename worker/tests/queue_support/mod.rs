//! Shared helpers of the queue integration tests: an in-memory executor
//! that records calls and fails on demand, enqueueing through the real
//! enqueue script, runners with fast timings, and condition polling.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto_types::{BackupKind, Command, DesiredState, Job, SessionId, SessionState, keys};
use redis::aio::MultiplexedConnection;
use sm_redis::{EnqueueClient, EnqueueError, EnqueueOutcome, EnqueueRequest};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use worker::entitlement::CreatePurpose;
use worker::executor::{Archive, ExecError, Executor, Outcome, Target};
use worker::runner::{RetryPolicy, Runner, RunnerConfig, Stats};

/// What the fake executor does for one session.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Time each converge takes.
    pub delay: Duration,
    /// Fail with a retryable error this many times first.
    pub retryable_failures: u32,
    /// Always fail retryably.
    pub always_retryable: bool,
    /// Fail permanently with this message.
    pub permanent: Option<String>,
    /// Never return (a hung call).
    pub hang: bool,
    /// Take a backup of this kind for a delete, as the Kubernetes executor
    /// does: the check right before its create, then (after `hold`) a
    /// verified backup in the outcome.
    pub backup: Option<BackupKind>,
    /// Wait for this before going on after the backup's check.
    pub hold: Option<Arc<tokio::sync::Notify>>,
}

#[derive(Default)]
struct State {
    calls: Vec<Target>,
    active: HashMap<String, u32>,
    plans: HashMap<String, Plan>,
    failures: HashMap<String, u32>,
}

/// In-memory executor: records every call, detects two calls for the same
/// session running at once, and follows per-session plans.
#[derive(Default, Clone)]
pub struct FakeExecutor {
    state: Arc<Mutex<State>>,
    overlap: Arc<AtomicBool>,
}

impl FakeExecutor {
    pub fn plan(&self, session: &str, plan: Plan) {
        self.state.lock().unwrap().plans.insert(session.to_owned(), plan);
    }

    pub fn calls(&self) -> Vec<Target> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn calls_for(&self, session: &str) -> Vec<Target> {
        self.calls().into_iter().filter(|t| t.session_id.as_str() == session).collect()
    }

    pub fn active(&self, session: &str) -> u32 {
        self.state.lock().unwrap().active.get(session).copied().unwrap_or(0)
    }

    /// Whether two converges for one session ever overlapped.
    pub fn overlapped(&self) -> bool {
        self.overlap.load(Ordering::SeqCst)
    }
}

struct ActiveGuard(Arc<Mutex<State>>, String);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            *s.active.entry(self.1.clone()).or_default() -= 1;
        }
    }
}

impl Executor for FakeExecutor {
    async fn converge(&self, target: &Target) -> Result<Outcome, ExecError> {
        let session = target.session_id.as_str().to_owned();
        let plan = {
            let mut s = self.state.lock().unwrap();
            s.calls.push(target.clone());
            let active = s.active.entry(session.clone()).or_default();
            *active += 1;
            if *active > 1 {
                self.overlap.store(true, Ordering::SeqCst);
            }
            s.plans.get(&session).cloned().unwrap_or_default()
        };
        let _guard = ActiveGuard(Arc::clone(&self.state), session.clone());
        if plan.hang {
            std::future::pending::<()>().await;
        }
        let backup = plan.backup.filter(|_| target.desired == DesiredState::Deleted);
        if let Some(kind) = backup {
            if let Err(e) = target.lease.check_create(CreatePurpose::Backup(kind)).await {
                return Err(ExecError::retryable(e.to_string()));
            }
            if let Some(hold) = &plan.hold {
                hold.notified().await;
            }
        }
        tokio::time::sleep(plan.delay).await;
        if let Some(message) = plan.permanent {
            return Err(ExecError::permanent(message, SessionState::Failed));
        }
        if plan.always_retryable {
            return Err(ExecError::retryable("503 from the fake"));
        }
        {
            let mut s = self.state.lock().unwrap();
            let n = s.failures.entry(session.clone()).or_default();
            if *n < plan.retryable_failures {
                *n += 1;
                return Err(ExecError::retryable("429 from the fake"));
            }
        }
        Ok(match target.desired {
            DesiredState::Running => {
                Outcome { status: SessionState::Running, replicas: 1, backup_file: None, upstream: None, archive: None }
            }
            DesiredState::Sleeping => Outcome {
                status: SessionState::Sleeping,
                replicas: 0,
                backup_file: None,
                upstream: None,
                archive: None,
            },
            DesiredState::Deleted => Outcome {
                status: SessionState::Deleted,
                replicas: 0,
                backup_file: Some(format!("app-{session}.zip")),
                upstream: None,
                archive: backup.map(|kind| Archive {
                    id: proto_types::record::backup::id(&session, target.generation),
                    kind,
                    location: format!("app-{session}.zip"),
                    size_bytes: 42,
                    sha256: "ab".repeat(32),
                }),
            },
        })
    }
}

/// Fast timings for tests.
pub fn config(consumer: &str) -> RunnerConfig {
    let mut c = RunnerConfig::new(consumer);
    c.queue.block = Duration::from_millis(200);
    c.concurrency = 4;
    c.lease = Duration::from_millis(900);
    c.reclaim_interval = Duration::from_millis(150);
    c.trim_interval = Duration::from_millis(300);
    c.max_deliveries = 3;
    c.retry = RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retries: 3,
        factor: 2.0,
    };
    c.shutdown_grace = Duration::from_secs(5);
    c
}

/// A running runner and its stop handle.
pub struct Running {
    pub stop: watch::Sender<bool>,
    pub handle: JoinHandle<()>,
    pub stats: Arc<Stats>,
}

impl Running {
    /// Graceful stop; waits for `run` to return.
    pub async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.handle).await.unwrap().unwrap();
    }

    /// A crash: the task is aborted, nothing is acknowledged.
    pub async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

pub fn spawn(server: &testkit::RedisServer, executor: &FakeExecutor, config: RunnerConfig) -> Running {
    let runner = Runner::new(server.client(), Arc::new(executor.clone()), config).unwrap();
    let stats = runner.stats();
    let (stop, rx) = watch::channel(false);
    let handle = tokio::spawn(runner.run(rx));
    Running { stop, handle, stats }
}

pub async fn connect(server: &testkit::RedisServer) -> MultiplexedConnection {
    server.client().get_multiplexed_async_connection().await.unwrap()
}

/// Enqueues like the api, with the api's client ([`sm_redis::EnqueueClient`]):
/// read, decide, enqueue with the generation read, re-read on conflict.
/// Returns the job once Redis acknowledged it; a refusal panics.
pub async fn enqueue(conn: &mut MultiplexedConnection, session: &str, command: Command) -> redis::RedisResult<Job> {
    let client = EnqueueClient::with_clock(|| 1);
    let id = SessionId::parse(session).unwrap();
    let req = EnqueueRequest::new(command, Some(id), "user@example.com", "https://vs-code.example.com");
    match client.enqueue(conn, &req).await {
        Ok(EnqueueOutcome::Accepted(accepted)) => Ok(accepted.job),
        Err(EnqueueError::Failed(sm_redis::Error::Redis(e))) => Err(e),
        other => panic!("{command} for {session}: unexpected {other:?}"),
    }
}

pub async fn hget(conn: &mut MultiplexedConnection, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET").arg(key).arg(field).query_async(conn).await.unwrap()
}

pub async fn job_state(conn: &mut MultiplexedConnection, job: &Job) -> Option<String> {
    hget(conn, &keys::job(job.job_id.as_str()), "state").await
}

pub async fn pending(conn: &mut MultiplexedConnection) -> u64 {
    let reply: redis::RedisResult<redis::streams::StreamPendingReply> =
        redis::cmd("XPENDING").arg(keys::JOBS_STREAM).arg(keys::GROUP).query_async(conn).await;
    reply.map(|r| r.count() as u64).unwrap_or(0)
}

/// Polls `check` every 50 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the job reached `state`.
pub async fn until_state(server: &testkit::RedisServer, job: &Job, state: &str, within: Duration) {
    let conn = connect(server).await;
    let what = format!("job {} {state}", job.job_id);
    eventually(within, &what, || {
        let mut c = conn.clone();
        async move { job_state(&mut c, job).await.as_deref() == Some(state) }
    })
    .await;
}
