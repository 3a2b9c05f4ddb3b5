//! The gateway's Redis adapter: the session as the gateway needs it
//! (status, desired state, creation time, upstream address), cached
//! briefly per process; single-use nonces (`SET NX PXAT`); the conditional
//! wake; the activity flush (`ZADD GT`); the health ping.
//!
//! The wake goes through [`sm_redis`]'s enqueue script with the generation
//! just read (the same compare-and-set as the api's enqueue), and only
//! while the session is asleep: a burst of navigations, on any number of
//! gateway replicas, makes one `wake` job, because every attempt after the
//! first reads `waking` and stops.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto_types::scripts::enqueue::EnqueueReply;
use proto_types::{Command, DesiredState, JobId, Origin, SessionId, SessionState, keys, record};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sm_redis::{Attempt, ENQUEUE_ATTEMPTS, EnqueueClient, EnqueueRequest, SessionRecord};

/// A Redis round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// Redis did not answer, or answered an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored record is unreadable, or the enqueue failed.
    #[error("store: {0}")]
    Store(#[from] sm_redis::Error),
    /// A session hash is corrupt.
    #[error("corrupt session: {0}")]
    Corrupt(#[from] sm_redis::CorruptRecord),
    /// No randomness.
    #[error("no randomness available")]
    Random,
}

/// A session, as the gateway needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// Observed status.
    pub status: SessionState,
    /// Desired state.
    pub desired: DesiredState,
    /// Creation time (binds cookies to one life of the session).
    pub created_at_ms: u64,
    /// `ip:port` while running.
    pub upstream: Option<String>,
}

/// The adapter. Cheap to share behind an `Arc`.
pub struct Sessions {
    conn: ConnectionManager,
    enqueue: EnqueueClient,
    cache: Mutex<HashMap<SessionId, (Instant, Option<SessionView>)>>,
    ttl: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

/// Fills `N` random bytes.
pub fn random<const N: usize>() -> Result<[u8; N], SessionsError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| SessionsError::Random)?;
    Ok(b)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// A lazily connecting adapter; `ttl` is how long a read is reused.
    pub fn new(redis_url: &str, ttl: Duration) -> Result<Self, SessionsError> {
        let client = redis::Client::open(redis_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self { conn, enqueue: EnqueueClient::new(), cache: Mutex::new(HashMap::new()), ttl })
    }

    /// The session, from the cache when read less than `ttl` ago.
    pub async fn get(&self, id: &SessionId) -> Result<Option<SessionView>, SessionsError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, view)) = cache.get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(view.clone());
        }
        self.fresh(id).await
    }

    /// The session as stored now (and remembered for [`Sessions::get`]).
    pub async fn fresh(&self, id: &SessionId) -> Result<Option<SessionView>, SessionsError> {
        let mut c = self.conn.clone();
        let map: HashMap<String, String> =
            redis::cmd("HGETALL").arg(keys::session(id.as_str())).query_async(&mut c).await?;
        let view = SessionRecord::parse(id, &map)?.map(|r| SessionView {
            status: r.status,
            desired: r.desired,
            created_at_ms: r.created_at_ms,
            upstream: map.get(record::session::UPSTREAM).filter(|u| !u.is_empty()).cloned(),
        });
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(id.clone(), (Instant::now(), view.clone()));
        }
        Ok(view)
    }

    /// Forgets the cached read of `id` (after an event about it).
    pub fn invalidate(&self, id: &SessionId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(id);
        }
    }

    /// Records a link's nonce until its expiry; `false` when it was used before.
    pub async fn claim_nonce(&self, nonce: &str, expires_ms: u64) -> Result<bool, SessionsError> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(keys::access_nonce(nonce))
            .arg("1")
            .arg("NX")
            .arg("PXAT")
            .arg(expires_ms)
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    /// Enqueues `wake` (origin `gateway`) if the session is asleep now.
    /// `Some(job)` when this call queued it, `None` when it was not asleep
    /// (someone else's wake won, or nothing to do).
    pub async fn wake(&self, id: &SessionId) -> Result<Option<JobId>, SessionsError> {
        let mut c = self.conn.clone();
        let mut req = EnqueueRequest::new(Command::Wake, Some(id.clone()), "", "");
        req.origin = Origin::Gateway;
        for _ in 0..ENQUEUE_ATTEMPTS {
            let Some(rec) = SessionRecord::read(&mut c, id).await? else { return Ok(None) };
            let asleep = rec.desired != DesiredState::Deleted
                && (rec.status == SessionState::Failed
                    || (rec.status == SessionState::Sleeping && rec.desired == DesiredState::Sleeping));
            if !asleep {
                return Ok(None);
            }
            let now = sm_redis::enqueue::system_now_ms();
            let Ok(attempt) = Attempt::prepare(&req, id.clone(), Some(&rec), JobId::from_random(random()?), now) else {
                return Ok(None);
            };
            match self.enqueue.submit(&mut c, &req, &attempt).await? {
                EnqueueReply::Ok { .. } => {
                    self.invalidate(id);
                    return Ok(Some(attempt.job.job_id));
                }
                EnqueueReply::Conflict { .. } => continue,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// One `ZADD GT` per session into [`keys::ACTIVITY`], in one pipeline.
    pub async fn flush_activity(&self, entries: &[(SessionId, u64)]) -> Result<(), SessionsError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (id, ms) in entries {
            pipe.cmd("ZADD").arg(keys::ACTIVITY).arg("GT").arg(*ms).arg(id.as_str()).ignore();
        }
        let mut c = self.conn.clone();
        let () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), SessionsError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}
