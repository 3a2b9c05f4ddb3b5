//! The sweeper's Redis adapter: the sweep lock, the due read, the facts of
//! the due sessions (one pipeline) and the three sweep scripts. It decides
//! nothing; every command it sends is per due session or per sweep, never
//! per stored session (no `SCAN`).

use std::collections::HashMap;
use std::time::Duration;

use proto_types::scripts::Invocation;
use proto_types::scripts::sweep::{
    self, Guard, RESCHEDULE_SOURCE, Reschedule, RescheduleReply, SweepReply, WARN_SOURCE, Warn, WarnReply,
};
use proto_types::{Command, JobId, Notice, NoticeKind, Origin, SessionId, SessionState, keys};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sm_redis::{Attempt, EnqueueRequest, Script, SessionRecord};

use super::decide::Facts;

/// A sweep's Redis round trip failed, or came back unusable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A command or script failed.
    #[error("redis {op} failed")]
    Redis {
        /// Which step.
        op: &'static str,
        /// Cause.
        #[source]
        source: redis::RedisError,
    },
    /// A script answered in a shape this version does not know.
    #[error(transparent)]
    Reply(#[from] proto_types::scripts::ReplyError),
    /// A payload could not be encoded.
    #[error(transparent)]
    Codec(#[from] proto_types::CodecError),
    /// No randomness for a job id.
    #[error("no randomness for a job id")]
    Random,
}

pub(super) fn redis_err(op: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
    move |source| StoreError::Redis { op, source }
}

/// One due session as read.
#[derive(Debug, Clone)]
pub struct DueSession {
    /// Its id.
    pub id: SessionId,
    /// Its hash (`None`: gone, or unreadable).
    pub record: Option<SessionRecord>,
    /// What the decision needs (`None` when `record` is).
    pub facts: Option<Facts>,
}

/// A due-set member that is not a valid session id (only ever written by hand).
#[derive(Debug, Clone)]
pub struct Malformed(pub String);

/// The sweeper's Redis side; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    sweep: Script,
    reschedule: Script,
    warn: Script,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sweeper::Store")
    }
}

impl Store {
    /// The adapter; the connection is opened lazily.
    pub fn new(client: redis::Client) -> Result<Self, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(redis_err("connect"))?;
        Ok(Self {
            conn,
            sweep: Script::new(sweep::SOURCE),
            reschedule: Script::new(RESCHEDULE_SOURCE),
            warn: Script::new(WARN_SOURCE),
        })
    }

    /// The shared connection, for the other sweeper adapters (backup retention).
    pub(super) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Takes the sweep lock for `ttl` (`SET NX PX`); whether this worker sweeps now.
    pub async fn try_lock(&self, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.try_lock_key(keys::SWEEP_LOCK, owner, ttl).await
    }

    /// Takes lock `key` for `ttl` (`SET NX PX`).
    pub async fn try_lock_key(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("lock"))?;
        Ok(reply.is_some())
    }

    /// Every session id in the sessions index (drift repair compares them all).
    pub async fn all_sessions(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(keys::SESSIONS_INDEX)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("sessions"))
    }

    /// Up to `limit` sessions whose deadline is at or before `now_ms`, earliest first.
    pub async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGEBYSCORE")
            .arg(keys::LIFECYCLE_DUE)
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("due"))
    }

    /// Reads every due session's hash, activity score and warning marker
    /// in one pipeline (three commands per session).
    pub async fn read(&self, members: &[String]) -> Result<(Vec<DueSession>, Vec<Malformed>), StoreError> {
        let (ids, malformed): (Vec<_>, Vec<_>) =
            members.iter().map(|m| SessionId::parse(m).map_err(|_| Malformed(m.clone()))).partition(Result::is_ok);
        let ids: Vec<SessionId> = ids.into_iter().flatten().collect();
        let malformed = malformed.into_iter().filter_map(Result::err).collect();
        if ids.is_empty() {
            return Ok((Vec::new(), malformed));
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(keys::session(id.as_str()));
            pipe.cmd("ZSCORE").arg(keys::ACTIVITY).arg(id.as_str());
            pipe.cmd("GET").arg(keys::idle_warning(id.as_str()));
        }
        let mut conn = self.conn.clone();
        let values: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(redis_err("read"))?;
        let mut values = values.into_iter();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (Some(hash), Some(score), Some(marker)) = (values.next(), values.next(), values.next()) else {
                break;
            };
            let map: HashMap<String, String> = redis::from_redis_value(hash).unwrap_or_default();
            let seen: Option<f64> = redis::from_redis_value(score).unwrap_or(None);
            let marker: Option<String> = redis::from_redis_value(marker).unwrap_or(None);
            let record = match SessionRecord::parse(&id, &map) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(session.id = id.as_str(), error = %e, "unreadable session skipped by the sweeper");
                    None
                }
            };
            let facts = record.as_ref().map(|r| Facts {
                status: r.status,
                desired: r.desired,
                created_at_ms: r.created_at_ms,
                last_use_ms: r.last_activity_ms.max(seen.map_or(0, |s| s as u64)),
                idle_timeout_secs: r.idle_timeout_secs,
                warned: marker.as_deref().and_then(sweep::parse_marker),
            });
            out.push(DueSession { id, record, facts });
        }
        Ok((out, malformed))
    }

    /// Enqueues `command` (origin `origin`) for `session` as read, if the
    /// guard still holds: the session's status is unchanged and, with
    /// `last_use_ms`, nobody used it since.
    pub async fn enqueue(
        &self,
        session: &DueSession,
        command: Command,
        origin: Origin,
        last_use_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<SweepReply, StoreError> {
        let Some(record) = &session.record else { return Ok(SweepReply::Gone) };
        let mut req = EnqueueRequest::new(command, Some(session.id.clone()), &record.user_id, "");
        req.origin = origin;
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|_| StoreError::Random)?;
        let attempt = match Attempt::prepare(&req, session.id.clone(), Some(record), JobId::from_random(bytes), now_ms)
        {
            Ok(a) => a,
            // The state machine refuses: as good as a changed status.
            Err(_) => return Ok(SweepReply::Status(record.status.as_str().to_owned())),
        };
        let payload = attempt.job.encode()?;
        let inv = Guard { status: record.status, last_use_ms }.invocation(attempt.invocation(&req, &payload));
        let reply = self.run(&self.sweep, "sweep", &inv).await?;
        Ok(SweepReply::parse(&reply)?)
    }

    /// Moves `session`'s deadline to `at_ms` (`None`: forgets it), unless a
    /// command or a new idle timeout changed it since it was read. `next`
    /// is the automatic action shown for it.
    pub async fn reschedule(
        &self,
        session: &DueSession,
        at_ms: Option<u64>,
        next: Option<(&str, u64)>,
    ) -> Result<RescheduleReply, StoreError> {
        let record = session.record.as_ref();
        let inv = Reschedule {
            session_id: session.id.as_str(),
            generation: record.map_or(0, |r| r.generation),
            at_ms,
            next,
            idle_timeout_secs: record.and_then(|r| r.idle_timeout_secs),
        }
        .invocation();
        let reply = self.run(&self.reschedule, "reschedule", &inv).await?;
        Ok(RescheduleReply::parse(&reply)?)
    }

    /// Publishes the idle warning for `session`'s idle period since
    /// `last_use_ms` (once), announcing the sleep at `sleep_at_ms`.
    pub async fn warn(
        &self,
        session: &SessionId,
        last_use_ms: u64,
        sleep_at_ms: u64,
        now_ms: u64,
    ) -> Result<WarnReply, StoreError> {
        let notice = Notice {
            session_id: session.clone(),
            kind: NoticeKind::IdleWarning,
            at_ms: now_ms,
            action_at_ms: sleep_at_ms,
            origin: Origin::Idle,
            objects: Vec::new(),
        }
        .encode()?;
        // Kept well past the sleep, so a late sweep does not warn twice.
        let marker_ttl_ms = sleep_at_ms.saturating_sub(now_ms).saturating_add(86_400_000);
        let inv =
            Warn { session_id: session.as_str(), last_use_ms, now_ms, notice: &notice, marker_ttl_ms }.invocation();
        let reply = self.run(&self.warn, "warn", &inv).await?;
        Ok(WarnReply::parse(&reply)?)
    }

    /// Whether session `id` is unknown or deleted (its hash has no status,
    /// or status `deleted`): the re-check right before orphans are deleted.
    pub async fn session_gone(&self, id: &SessionId) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let status: Option<String> = redis::cmd("HGET")
            .arg(keys::session(id.as_str()))
            .arg(proto_types::record::session::STATUS)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("hget"))?;
        Ok(status.is_none_or(|s| s == SessionState::Deleted.as_str()))
    }

    /// Publishes `notice` on the events stream (no condition: for reports,
    /// such as the drift repair's orphans, that may repeat each resync).
    pub async fn notify(&self, notice: &Notice) -> Result<(), StoreError> {
        let bytes = notice.encode()?;
        let mut conn = self.conn.clone();
        redis::cmd("XADD")
            .arg(keys::EVENTS_STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(keys::EVENTS_MAXLEN)
            .arg("*")
            .arg(keys::NOTICE_FIELD)
            .arg(bytes)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("notify"))
    }

    /// Removes a malformed member from the due set.
    pub async fn drop_malformed(&self, member: &Malformed) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(keys::LIFECYCLE_DUE)
            .arg(&member.0)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("zrem"))
    }

    async fn run(&self, script: &Script, op: &'static str, inv: &Invocation) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        script.run(&mut conn, inv).await.map_err(redis_err(op))
    }
}
