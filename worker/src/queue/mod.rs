//! The consumer adapter over Redis Streams: everything the runner does to
//! Redis, and nothing else (no decisions live here).
//!
//! - Two connections, both [`redis::aio::ConnectionManager`]s that
//!   reconnect by themselves after a Redis restart: one dedicated to the
//!   blocking `XREADGROUP`, whose response timeout exceeds `BLOCK`, and one
//!   for everything else.
//! - Stream reads ([`Queue::read_new`], [`Queue::read_own_pending`]), the
//!   reclaimer ([`Queue::reclaim`], `XAUTOCLAIM` following its cursor and
//!   acknowledging ids whose data is gone), delivery counts (`XPENDING`).
//! - The atomic steps are the `proto_types::scripts` Lua scripts, loaded
//!   and run by `scripts.rs`; the queue exposes one method per script.
//!
//! Errors are typed ([`QueueError`]) and say whether a retry can help.

mod entry;
mod error;
mod scripts;

use std::time::Duration;

use proto_types::scripts::dead_letter::DeadLetter;
use proto_types::scripts::entitled::{EntitledReply, PendingBackup};
use proto_types::scripts::finish::{Finish, FinishReply};
use proto_types::scripts::lease::{AcquireReply, Lease};
use proto_types::scripts::start::{SessionSnapshot, StartReply};
use proto_types::scripts::trim::TrimReply;
use proto_types::{DesiredState, SessionState, keys};
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use entry::Entry;
pub use error::QueueError;
use scripts::Scripts;

/// How the queue talks to Redis.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// This process's consumer name in the group; unique per process (e.g.
    /// pod name plus a random suffix) and without spaces.
    pub consumer: String,
    /// `BLOCK` time of `XREADGROUP`.
    pub block: Duration,
    /// Response timeout of ordinary commands and scripts.
    pub response_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl QueueConfig {
    /// Defaults for `consumer`: 2 s block, 5 s response timeout, 2 s connect timeout.
    pub fn new(consumer: impl Into<String>) -> Self {
        Self {
            consumer: consumer.into(),
            block: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// The Redis side of the worker.
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    read: ConnectionManager,
    config: QueueConfig,
    scripts: Scripts,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("consumer", &self.config.consumer).finish_non_exhaustive()
    }
}

impl Queue {
    /// Creates the adapter. Connections are opened lazily, so this succeeds
    /// while Redis is down; the first command waits for it.
    pub fn new(client: redis::Client, config: QueueConfig) -> Result<Self, QueueError> {
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_lazy_with_config(
            client.clone(),
            base.clone().set_response_timeout(Some(config.response_timeout)),
        )
        .map_err(|e| QueueError::redis("connect", e))?;
        let read = ConnectionManager::new_lazy_with_config(
            client,
            base.set_response_timeout(Some(config.block * 2 + config.response_timeout)),
        )
        .map_err(|e| QueueError::redis("connect", e))?;
        let scripts = Scripts::new(conn.clone(), config.consumer.clone());
        Ok(Self { conn, read, config, scripts })
    }

    /// This consumer's name.
    pub fn consumer(&self) -> &str {
        &self.config.consumer
    }

    async fn query<T: redis::FromRedisValue>(&self, op: &'static str, cmd: &redis::Cmd) -> Result<T, QueueError> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(|e| QueueError::redis(op, e))
    }

    /// Creates the stream and the group if missing (`BUSYGROUP` is fine).
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(keys::JOBS_STREAM).arg(keys::GROUP).arg("0").arg("MKSTREAM");
        match self.query::<()>("XGROUP CREATE", &cmd).await {
            Err(QueueError::Redis { source, .. }) if source.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Reads up to `count` new entries, blocking up to the configured time,
    /// on the dedicated read connection.
    pub async fn read_new(&self, count: usize) -> Result<Vec<Entry>, QueueError> {
        let cmd = xreadgroup(&self.config.consumer, count, Some(self.config.block), ">");
        let mut read = self.read.clone();
        let v: Value = cmd.query_async(&mut read).await.map_err(|e| QueueError::redis("XREADGROUP", e))?;
        Ok(entry::read_reply(&v))
    }

    /// Reads up to `count` entries of this consumer's own pending list with
    /// ids above `after` (start with `"0-0"`), without blocking.
    pub async fn read_own_pending(&self, after: &str, count: usize) -> Result<Vec<Entry>, QueueError> {
        let cmd = xreadgroup(&self.config.consumer, count, None, after);
        let v: Value = self.query("XREADGROUP pending", &cmd).await?;
        Ok(entry::read_reply(&v))
    }

    /// Claims up to `count` entries idle for at least `min_idle` from any
    /// consumer (`XAUTOCLAIM`, following the cursor until it returns
    /// `0-0`). Entries whose data was deleted are acknowledged and dropped.
    pub async fn reclaim(&self, min_idle: Duration, count: usize) -> Result<Vec<Entry>, QueueError> {
        let mut out = Vec::new();
        let mut cursor = "0-0".to_string();
        loop {
            let want = count.saturating_sub(out.len());
            if want == 0 {
                break;
            }
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(keys::JOBS_STREAM)
                .arg(keys::GROUP)
                .arg(&self.config.consumer)
                .arg(min_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(want);
            let v: Value = self.query("XAUTOCLAIM", &cmd).await?;
            let reply = entry::autoclaim_reply(&v)
                .ok_or_else(|| QueueError::Shape { op: "XAUTOCLAIM", detail: format!("{v:?}") })?;
            for id in &reply.deleted {
                self.ack(id).await?;
            }
            out.extend(reply.claimed);
            if reply.cursor == "0-0" {
                break;
            }
            cursor = reply.cursor;
        }
        Ok(out)
    }

    /// How many times `id` was delivered; `None` if it is no longer pending.
    pub async fn deliveries(&self, id: &str) -> Result<Option<u64>, QueueError> {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(keys::JOBS_STREAM).arg(keys::GROUP).arg(id).arg(id).arg(1);
        let reply: redis::streams::StreamPendingCountReply = self.query("XPENDING", &cmd).await?;
        Ok(reply.ids.first().map(|p| p.times_delivered as u64))
    }

    /// Acknowledges an entry.
    pub async fn ack(&self, id: &str) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("XACK");
        cmd.arg(keys::JOBS_STREAM).arg(keys::GROUP).arg(id);
        self.query::<u64>("XACK", &cmd).await.map(drop)
    }

    /// The session's current generation, desired state and status (0 /
    /// `None` when it does not exist).
    pub async fn session_view(&self, session_id: &str) -> Result<SessionView, QueueError> {
        use proto_types::record::session as f;
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(keys::session(session_id)).arg(f::GENERATION).arg(f::DESIRED).arg(f::STATUS);
        let (generation, desired, status): (Option<u64>, Option<String>, Option<String>) =
            self.query("HMGET session", &cmd).await?;
        Ok(SessionView {
            generation: generation.unwrap_or(0),
            desired: desired.as_deref().and_then(|d| DesiredState::parse(d).ok()),
            status: status.as_deref().and_then(|s| SessionState::parse(s).ok()),
        })
    }

    /// Start script: terminal already, or started with the session's
    /// current generation and desired state.
    pub async fn start(&self, job_id: &str, session_id: &str, now_ms: u64) -> Result<StartReply, QueueError> {
        self.scripts.start(job_id, session_id, now_ms).await
    }

    /// Tries to acquire the session lease for `owner`.
    pub async fn acquire(&self, session_id: &str, owner: &str, ttl: Duration) -> Result<AcquireReply, QueueError> {
        self.scripts.acquire(session_id, owner, ttl).await
    }

    /// Renews a held lease; `false` when it was lost.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, QueueError> {
        self.scripts.renew(lease, ttl).await
    }

    /// Releases a held lease; `false` when it was already lost.
    pub async fn release(&self, lease: &Lease) -> Result<bool, QueueError> {
        self.scripts.release(lease).await
    }

    /// Finish script: terminal state, session, event, ack in one step.
    pub async fn finish(&self, finish: &Finish<'_>) -> Result<FinishReply, QueueError> {
        self.scripts.finish(finish).await
    }

    /// Dead-letter script; returns the id of the `{sm}:dead` entry.
    pub async fn dead_letter(&self, dead: &DeadLetter<'_>) -> Result<String, QueueError> {
        self.scripts.dead_letter(dead).await
    }

    /// Trims the jobs stream below every pending and unread entry.
    pub async fn trim(&self) -> Result<TrimReply, QueueError> {
        self.scripts.trim().await
    }

    /// Heartbeat of an entry in progress; `false` when this consumer no
    /// longer owns it.
    pub async fn touch(&self, entry_id: &str) -> Result<bool, QueueError> {
        self.scripts.touch(entry_id).await
    }

    /// The check right before a Kubernetes create (the entitled script);
    /// for the request's backup, `pending` is recorded once entitled.
    pub async fn entitled(
        &self,
        lease: &Lease,
        generation: u64,
        backup: bool,
        pending: Option<&PendingBackup<'_>>,
    ) -> Result<EntitledReply, QueueError> {
        self.scripts.entitled(lease, generation, backup, pending).await
    }
}

/// What the runner reads of a session to check a job against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    /// Current generation; 0 when the session does not exist.
    pub generation: u64,
    /// Current desired state, if the session exists.
    pub desired: Option<DesiredState>,
    /// Current status, if the session exists.
    pub status: Option<SessionState>,
}

impl SessionView {
    /// The same fields of a start-script snapshot.
    pub fn of(s: &SessionSnapshot) -> Self {
        Self { generation: s.generation, desired: s.desired, status: s.status }
    }
}

/// `XREADGROUP GROUP workers {consumer} COUNT n [BLOCK ms] STREAMS {sm}:jobs {id}`.
fn xreadgroup(consumer: &str, count: usize, block: Option<Duration>, id: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(keys::GROUP).arg(consumer).arg("COUNT").arg(count.max(1));
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(block.as_millis() as u64);
    }
    cmd.arg("STREAMS").arg(keys::JOBS_STREAM).arg(id);
    cmd
}
