//! Runs the `proto_types::scripts` Lua scripts: the atomic queue steps.
//!
//! Keys, arguments and reply parsing come from the contract crate; this
//! file only loads the text into [`redis::Script`], runs it with the shared
//! runner ([`sm_redis::script::run`]: `EVALSHA`, loading the text again
//! after a Redis restart emptied the script cache) and maps errors.
//! [`super::Queue`] holds a [`Scripts`] and exposes each call; this file
//! does not depend on the queue.

use std::sync::Arc;
use std::time::Duration;

use proto_types::keys;
use proto_types::scripts::dead_letter::{self, DeadLetter};
use proto_types::scripts::entitled::{self, EntitledReply};
use proto_types::scripts::finish::{self, Finish, FinishReply};
use proto_types::scripts::lease::{self, Acquire, AcquireReply, Lease};
use proto_types::scripts::start::{self, Start, StartReply};
use proto_types::scripts::trim::{self, TrimReply};
use proto_types::scripts::{Invocation, touch};

use redis::aio::ConnectionManager;

use super::error::QueueError;

/// The loaded scripts and the connection they run on.
#[derive(Clone)]
pub(super) struct Scripts {
    conn: ConnectionManager,
    consumer: String,
    loaded: Arc<Loaded>,
}

struct Loaded {
    start: redis::Script,
    acquire: redis::Script,
    renew: redis::Script,
    release: redis::Script,
    finish: redis::Script,
    dead_letter: redis::Script,
    trim: redis::Script,
    touch: redis::Script,
    entitled: redis::Script,
}

impl Scripts {
    /// Scripts run on `conn`, heartbeating as `consumer`.
    pub(super) fn new(conn: ConnectionManager, consumer: String) -> Self {
        let loaded = Arc::new(Loaded {
            start: redis::Script::new(start::SOURCE),
            acquire: redis::Script::new(lease::ACQUIRE_SOURCE),
            renew: redis::Script::new(lease::RENEW_SOURCE),
            release: redis::Script::new(lease::RELEASE_SOURCE),
            finish: redis::Script::new(finish::SOURCE),
            dead_letter: redis::Script::new(dead_letter::SOURCE),
            trim: redis::Script::new(trim::SOURCE),
            touch: redis::Script::new(touch::SOURCE),
            entitled: redis::Script::new(entitled::SOURCE),
        });
        Self { conn, consumer, loaded }
    }

    async fn run(&self, op: &'static str, script: &redis::Script, inv: &Invocation) -> Result<Vec<String>, QueueError> {
        sm_redis::script::run(script, &mut self.conn.clone(), inv).await.map_err(|e| QueueError::redis(op, e))
    }

    /// Start script: terminal already, or started with the session's
    /// current generation and desired state.
    pub(super) async fn start(&self, job_id: &str, session_id: &str, now_ms: u64) -> Result<StartReply, QueueError> {
        let inv = Start { job_id, session_id, now_ms }.invocation();
        Ok(StartReply::parse(&self.run("start", &self.loaded.start, &inv).await?)?)
    }

    /// Tries to acquire the session lease for `owner`.
    pub(super) async fn acquire(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<AcquireReply, QueueError> {
        let inv = Acquire { session_id, owner, ttl_ms: ttl.as_millis() as u64 }.invocation();
        Ok(AcquireReply::parse(&self.run("lease acquire", &self.loaded.acquire, &inv).await?)?)
    }

    /// Renews a held lease; `false` when it was lost.
    pub(super) async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, QueueError> {
        let inv = lease.renew(ttl.as_millis() as u64);
        Ok(lease::parse_held(&self.run("lease renew", &self.loaded.renew, &inv).await?)?)
    }

    /// Releases a held lease; `false` when it was already lost.
    pub(super) async fn release(&self, lease: &Lease) -> Result<bool, QueueError> {
        Ok(lease::parse_held(&self.run("lease release", &self.loaded.release, &lease.release()).await?)?)
    }

    /// Finish script: terminal state, session, event, ack in one step.
    pub(super) async fn finish(&self, finish: &Finish<'_>) -> Result<FinishReply, QueueError> {
        Ok(FinishReply::parse(&self.run("finish", &self.loaded.finish, &finish.invocation()).await?)?)
    }

    /// Dead-letter script; returns the id of the `{sm}:dead` entry.
    pub(super) async fn dead_letter(&self, dead: &DeadLetter<'_>) -> Result<String, QueueError> {
        Ok(dead_letter::parse(&self.run("dead-letter", &self.loaded.dead_letter, &dead.invocation()).await?)?)
    }

    /// Trims the jobs stream below every pending and unread entry.
    pub(super) async fn trim(&self) -> Result<TrimReply, QueueError> {
        Ok(TrimReply::parse(&self.run("trim", &self.loaded.trim, &trim::invocation()).await?)?)
    }

    /// Heartbeat of an entry in progress; `false` when this consumer no
    /// longer owns it.
    pub(super) async fn touch(&self, entry_id: &str) -> Result<bool, QueueError> {
        let inv = touch::invocation(keys::GROUP, &self.consumer, entry_id);
        Ok(touch::parse(&self.run("touch", &self.loaded.touch, &inv).await?)?.is_none())
    }

    /// The check right before a Kubernetes create: lease current,
    /// generation the job's, desired not `deleted` (unless `backup`).
    pub(super) async fn entitled(
        &self,
        lease: &Lease,
        generation: u64,
        backup: bool,
        pending: Option<&entitled::PendingBackup<'_>>,
    ) -> Result<EntitledReply, QueueError> {
        let inv = entitled::invocation(lease, generation, backup, pending);
        Ok(EntitledReply::parse(&self.run("entitled", &self.loaded.entitled, &inv).await?)?)
    }
}
