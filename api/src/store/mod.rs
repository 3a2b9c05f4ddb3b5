//! The Redis adapter: the connection, the reads (sessions, jobs, the
//! session index, queue position), the health ping, the rate-limit round
//! trip and enqueueing (the shared [`sm_redis::EnqueueClient`]). The layer a
//! binary reuses to read sessions and enqueue without any HTTP: nothing in
//! this module imports the HTTP layer.
//!
//! | module | job |
//! |---|---|
//! | this file | [`Store`]: connection, reads, enqueue |
//! | [`backups`] | backup records: read, page through an index, mark deleted |
//! | [`gcra`] | the rate-limit script: buckets in, verdicts out |
//! | [`error`] | [`StoreError`] |

pub mod backups;
pub mod error;
pub mod gcra;

use std::collections::HashMap;
use std::time::Duration;

use proto_types::{JobId, JobState, SessionId, keys, record};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError};
use sm_redis::Script;

pub use self::error::StoreError;
use self::gcra::{Bucket, GCRA_SOURCE, Verdict};
pub use sm_redis::{
    Accepted, ENQUEUE_ATTEMPTS, EnqueueClient, EnqueueError, EnqueueOutcome, EnqueueRequest, JobRecord, Prefetched,
    SessionRecord,
};

/// How many stream entries ahead of a job are counted for its queue position.
pub const QUEUE_POSITION_CAP: u64 = 1000;

/// A page of sessions.
#[derive(Debug, Clone)]
pub struct Page {
    /// The sessions, oldest first.
    pub sessions: Vec<SessionRecord>,
    /// Cursor for the next page, if there may be more.
    pub next_cursor: Option<String>,
}

/// The Redis-backed store.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    enqueue: EnqueueClient,
    gcra: Script,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// Parses a stream id `ms-seq` for ordering.
fn stream_pos(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl Store {
    /// A lazily connecting store: it never fails to build, and reconnects on
    /// its own after Redis comes back.
    pub fn new(redis_url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(redis_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self { conn, enqueue: EnqueueClient::new(), gcra: Script::new(GCRA_SOURCE) })
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Checks every bucket in one script call (one `EVALSHA`; the script
    /// text is sent again only after Redis answers `NOSCRIPT`, e.g. after a
    /// restart with an empty script cache).
    pub async fn rate_limit(&self, buckets: &[Bucket]) -> Result<Vec<Verdict>, StoreError> {
        Ok(self.limit_and_read(buckets, None).await?.0)
    }

    /// [`Store::rate_limit`] and, in the same round trip, a read of the
    /// session a command is for (what [`Store::enqueue`] would read next).
    /// The read is a prefetch: `None` when the record is not usable.
    pub async fn rate_limit_and_session(
        &self,
        buckets: &[Bucket],
        session: &SessionId,
    ) -> Result<(Vec<Verdict>, Option<Prefetched>), StoreError> {
        self.limit_and_read(buckets, Some(session)).await
    }

    async fn limit_and_read(
        &self,
        buckets: &[Bucket],
        session: Option<&SessionId>,
    ) -> Result<(Vec<Verdict>, Option<Prefetched>), StoreError> {
        if buckets.is_empty() {
            return Ok((Vec::new(), None));
        }
        let inv = gcra::invocation(buckets);
        let mut c = self.conn.clone();
        let (replies, prefetched): (Vec<Vec<i64>>, _) = match session {
            None => (self.gcra.run(&mut c, &inv).await?, None),
            Some(id) => {
                let read = |pipe: &mut redis::Pipeline| {
                    pipe.hgetall(keys::session(id.as_str()));
                };
                let (replies, map): (_, HashMap<String, String>) = self.gcra.run_pipelined(&mut c, &inv, read).await?;
                (replies, SessionRecord::parse(id, &map).ok().map(|record| Prefetched { id: id.clone(), record }))
            }
        };
        if replies.len() != buckets.len() {
            return Err(StoreError::RateLimitReplies {
                key: buckets[0].key.clone(),
                replies: replies.len(),
                buckets: buckets.len(),
            });
        }
        let verdicts = buckets
            .iter()
            .zip(&replies)
            .map(|(b, r)| {
                Verdict::from_reply(b.limit, r)
                    .ok_or_else(|| StoreError::RateLimitReply { key: b.key.clone(), reply: r.clone() })
            })
            .collect::<Result<_, _>>()?;
        Ok((verdicts, prefetched))
    }

    /// Decides and enqueues one command, retrying on races (see
    /// [`sm_redis::enqueue`]).
    pub async fn enqueue(&self, req: &EnqueueRequest<'_>) -> Result<EnqueueOutcome, EnqueueError> {
        self.enqueue.enqueue(&mut self.conn.clone(), req).await
    }

    /// Reads a session.
    pub async fn session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        Ok(SessionRecord::read(&mut self.conn.clone(), id).await?)
    }

    /// Records a keepalive of session `id` at `now_ms` (`ZADD GT` on the
    /// activity set, as the gateway does) and, with `idle_timeout_secs`,
    /// the session's new idle timeout, which the sweeper looks at in its
    /// next sweep (its due score is lowered to now).
    pub async fn activity(
        &self,
        id: &SessionId,
        now_ms: u64,
        idle_timeout_secs: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD").arg(keys::ACTIVITY).arg("GT").arg(now_ms).arg(id.as_str()).ignore();
        if let Some(secs) = idle_timeout_secs {
            pipe.cmd("HSET").arg(keys::session(id.as_str())).arg(record::session::IDLE_TIMEOUT).arg(secs).ignore();
            pipe.cmd("ZADD").arg(keys::LIFECYCLE_DUE).arg("LT").arg(now_ms).arg(id.as_str()).ignore();
        }
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Reads a job.
    pub async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        Ok(JobRecord::read(&mut self.conn.clone(), id).await?)
    }

    /// The state of a job, if it exists.
    pub async fn job_state(&self, id: &str) -> Result<Option<JobState>, StoreError> {
        if id.is_empty() {
            return Ok(None);
        }
        let mut c = self.conn.clone();
        let state: Option<String> = c.hget(keys::job(id), record::job::STATE).await?;
        Ok(state.and_then(|s| JobState::parse(&s).ok()))
    }

    /// 1-based position of a queued job in the stream (1 = next to be
    /// delivered), counting at most [`QUEUE_POSITION_CAP`] entries ahead;
    /// 0 when the group already delivered it.
    pub async fn queue_position(&self, stream_id: &str) -> Result<u64, StoreError> {
        let Some(own) = stream_pos(stream_id) else { return Ok(0) };
        let mut c = self.conn.clone();
        let groups: Result<redis::streams::StreamInfoGroupsReply, RedisError> =
            redis::cmd("XINFO").arg("GROUPS").arg(keys::JOBS_STREAM).query_async(&mut c).await;
        let last = match groups {
            Ok(reply) => reply
                .groups
                .into_iter()
                .find(|g| g.name == keys::GROUP)
                .map(|g| g.last_delivered_id)
                .unwrap_or_else(|| "0-0".to_owned()),
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => "0-0".to_owned(),
            Err(e) => return Err(e.into()),
        };
        if stream_pos(&last).is_some_and(|l| l >= own) {
            return Ok(0);
        }
        let ahead: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(keys::JOBS_STREAM)
            .arg(format!("({last}"))
            .arg(format!("({stream_id}"))
            .arg("COUNT")
            .arg(QUEUE_POSITION_CAP)
            .query_async(&mut c)
            .await?;
        Ok(ahead.len() as u64 + 1)
    }

    /// A page of sessions in creation order, optionally only one user's.
    /// The cursor is `{created_ms}:{id}` of the last session returned.
    pub async fn list_sessions(
        &self,
        cursor: Option<(u64, String)>,
        limit: usize,
        user: Option<&str>,
    ) -> Result<Page, StoreError> {
        let mut c = self.conn.clone();
        let mut out: Vec<SessionRecord> = Vec::new();
        let mut position = cursor;
        // Scan at most this many index entries per request when filtering.
        let mut budget: usize = 2000;
        loop {
            let batch = self.index_after(&mut c, position.as_ref(), limit.max(50)).await?;
            let exhausted = batch.len() < limit.max(50);
            let mut pipe = redis::pipe();
            for (id, _) in &batch {
                pipe.hgetall(keys::session(id));
            }
            let maps: Vec<HashMap<String, String>> =
                if batch.is_empty() { Vec::new() } else { pipe.query_async(&mut c).await? };
            for ((id, score), map) in batch.into_iter().zip(maps) {
                budget = budget.saturating_sub(1);
                position = Some((score, id.clone()));
                let Ok(sid) = SessionId::parse(&id) else { continue };
                let Some(rec) = SessionRecord::parse(&sid, &map)? else { continue };
                if user.is_some_and(|u| u != rec.user_id) {
                    continue;
                }
                out.push(rec);
                if out.len() == limit {
                    let next = position.map(|(s, id)| format!("{s}:{id}"));
                    return Ok(Page { sessions: out, next_cursor: next });
                }
            }
            if exhausted {
                return Ok(Page { sessions: out, next_cursor: None });
            }
            if budget == 0 {
                let next = position.map(|(s, id)| format!("{s}:{id}"));
                return Ok(Page { sessions: out, next_cursor: next });
            }
        }
    }

    /// Index entries strictly after `(score, id)`, in order.
    async fn index_after(
        &self,
        c: &mut ConnectionManager,
        after: Option<&(u64, String)>,
        count: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out: Vec<(String, u64)> = Vec::new();
        let from = match after {
            Some((score, id)) => {
                // Same-millisecond entries sort by id; take those after the cursor first.
                let same: Vec<(String, u64)> = c.zrangebyscore_withscores(keys::SESSIONS_INDEX, *score, *score).await?;
                out.extend(same.into_iter().filter(|(m, _)| m > id));
                format!("({score}")
            }
            None => "-inf".to_owned(),
        };
        let rest: Vec<(String, u64)> =
            c.zrangebyscore_limit_withscores(keys::SESSIONS_INDEX, from, "+inf", 0, count as isize).await?;
        out.extend(rest);
        out.truncate(count);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically() {
        assert!(stream_pos("10-0") > stream_pos("9-5"));
        assert!(stream_pos("5-10") > stream_pos("5-9"));
        assert_eq!(stream_pos("junk"), None);
    }
}
