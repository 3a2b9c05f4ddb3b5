//! The queue backlog behind `worker_queue_*`: on scrape, reads `XINFO
//! GROUPS` (pending count, lag, consumers) and the `XPENDING` summary
//! (oldest pending entry, whose id carries its enqueue time) of the `jobs`
//! stream, at most once per [`CACHE_FOR`], and sets the gauges.
//!
//! A failed read (Redis down, slow) never fails the scrape: it counts in
//! `worker_queue_scrape_errors_total`, the gauges keep their last value,
//! and the next scrape reconnects. The arithmetic is in [`Sample::from_replies`].

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply};
use tokio::sync::Mutex;
use tracing::debug;

use super::BacklogGauges;

/// Scrapes closer together than this reuse the last sample.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// Bound on one backlog read, so a slow Redis cannot stall `/metrics`.
pub const READ_TIMEOUT: Duration = Duration::from_millis(800);

/// The backlog of one consumer group at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Delivered, not acknowledged.
    pub pending: i64,
    /// Not yet delivered (0 when Redis cannot tell).
    pub lag: i64,
    /// Consumers in the group.
    pub consumers: i64,
    /// Age of the oldest pending entry in seconds (0 with none).
    pub oldest_pending_age_secs: f64,
}

impl Sample {
    /// The sample for `group` from the two replies, at `now_ms` (Unix ms).
    /// A missing group (not created yet) is an empty backlog.
    pub fn from_replies(
        groups: &StreamInfoGroupsReply,
        pending: &StreamPendingReply,
        group: &str,
        now_ms: u64,
    ) -> Self {
        let Some(g) = groups.groups.iter().find(|g| g.name == group) else {
            return Self::default();
        };
        let oldest_ms = match pending {
            StreamPendingReply::Data(d) => d.start_id.split('-').next().and_then(|ms| ms.parse::<u64>().ok()),
            _ => None,
        };
        Self {
            pending: i64::try_from(g.pending).unwrap_or(i64::MAX),
            lag: g.lag.map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX)),
            consumers: i64::try_from(g.consumers).unwrap_or(i64::MAX),
            oldest_pending_age_secs: oldest_ms.map_or(0.0, |ms| now_ms.saturating_sub(ms) as f64 / 1000.0),
        }
    }
}

/// Why a backlog read failed.
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    /// Connecting or the commands failed.
    #[error("reading the queue backlog failed")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within [`READ_TIMEOUT`].
    #[error("reading the queue backlog timed out")]
    Timeout,
}

#[derive(Default)]
struct State {
    conn: Option<MultiplexedConnection>,
    refreshed: Option<Instant>,
}

/// Refreshes the backlog gauges from Redis on demand.
pub struct Backlog {
    client: redis::Client,
    gauges: BacklogGauges,
    state: Mutex<State>,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog").finish_non_exhaustive()
    }
}

impl Backlog {
    /// A refresher setting `gauges` from `client`'s Redis (connects lazily).
    pub fn new(client: redis::Client, gauges: BacklogGauges) -> Self {
        Self { client, gauges, state: Mutex::new(State::default()) }
    }

    /// Reads the backlog unless the last read is younger than [`CACHE_FOR`].
    /// Concurrent scrapes wait for one read.
    pub async fn refresh(&self) {
        let mut state = self.state.lock().await;
        if state.refreshed.is_some_and(|t| t.elapsed() < CACHE_FOR) {
            return;
        }
        match tokio::time::timeout(READ_TIMEOUT, self.read(&mut state)).await {
            Ok(Ok(sample)) => {
                self.gauges.pending.set(sample.pending);
                self.gauges.lag.set(sample.lag);
                self.gauges.consumers.set(sample.consumers);
                self.gauges.oldest_pending_age.set(sample.oldest_pending_age_secs);
                state.refreshed = Some(Instant::now());
            }
            Ok(Err(error)) => self.failed(&mut state, &error),
            Err(_) => self.failed(&mut state, &BacklogError::Timeout),
        }
    }

    fn failed(&self, state: &mut State, error: &BacklogError) {
        debug!(%error, "queue backlog not refreshed");
        self.gauges.scrape_errors.inc();
        state.conn = None;
    }

    async fn read(&self, state: &mut State) -> Result<Sample, BacklogError> {
        let conn = match &mut state.conn {
            Some(c) => c,
            None => state.conn.insert(self.client.get_multiplexed_async_connection().await?),
        };
        let stream = proto_types::keys::JOBS_STREAM;
        let group = proto_types::keys::GROUP;
        let (groups, pending): (StreamInfoGroupsReply, StreamPendingReply) = match redis::pipe()
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .query_async(conn)
            .await
        {
            Ok(replies) => replies,
            // No stream yet (nothing enqueued, group not created): an empty backlog.
            Err(e) if e.code() == Some("ERR") || e.code() == Some("NOGROUP") => {
                (StreamInfoGroupsReply::default(), StreamPendingReply::Empty)
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Sample::from_replies(&groups, &pending, group, now_ms()))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use redis::streams::{StreamInfoGroup, StreamPendingData};

    use super::*;

    fn groups(pending: usize, lag: Option<usize>) -> StreamInfoGroupsReply {
        StreamInfoGroupsReply {
            groups: vec![StreamInfoGroup {
                name: "workers".into(),
                consumers: 2,
                pending,
                last_delivered_id: "0-0".into(),
                entries_read: None,
                lag,
            }],
        }
    }

    #[test]
    fn oldest_pending_age_comes_from_the_entry_id() {
        let pending = StreamPendingReply::Data(StreamPendingData {
            count: 3,
            start_id: "1700000000000-0".into(),
            end_id: "1700000005000-1".into(),
            consumers: vec![],
        });
        let s = Sample::from_replies(&groups(3, Some(7)), &pending, "workers", 1_700_000_002_500);
        assert_eq!(s, Sample { pending: 3, lag: 7, consumers: 2, oldest_pending_age_secs: 2.5 });
    }

    #[test]
    fn missing_group_or_unknown_lag_reads_as_empty() {
        let s = Sample::from_replies(&groups(0, None), &StreamPendingReply::Empty, "workers", 5);
        assert_eq!(s, Sample { consumers: 2, ..Sample::default() });
        let s = Sample::from_replies(&groups(4, Some(1)), &StreamPendingReply::Empty, "other", 5);
        assert_eq!(s, Sample::default());
    }
}
