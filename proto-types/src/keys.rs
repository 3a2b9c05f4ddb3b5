//! Every Redis key, stream and consumer-group name, in one place.
//!
//! All keys that an atomic script touches together share the hash tag
//! [`HASH_TAG`] (`{sm}`), so every script stays legal on Redis Cluster (one
//! slot per script). Rate-limit buckets are touched one at a time, so they
//! carry no tag and spread across slots.
//!
//! | key | type | written by | read by |
//! |---|---|---|---|
//! | `{sm}:jobs` | stream, group `workers` | api (enqueue) | workers, KEDA (lag) |
//! | `{sm}:events` | stream (capped) | worker (finish) | observers, tests |
//! | `{sm}:dead` | stream | worker (dead-letter) | operators |
//! | `{sm}:job:{job_id}` | hash ([`crate::record::job`]) | api, worker | api |
//! | `{sm}:session:{id}` | hash ([`crate::record::session`]) | api, worker | api, worker |
//! | `{sm}:sessions` | sorted set, id by creation time | api (create) | api (list) |
//! | `{sm}:user:{user_id}` | set of live session ids | api, worker | api (per-user limit) |
//! | `{sm}:idem:{scope}:{key}` | string: job id + request fingerprint, 24 h | api | api |
//! | `{sm}:lease:{id}` | string: fencing token + owner, with TTL | worker | worker |
//! | `{sm}:fence` | counter for fencing tokens | worker | worker |
//! | `{sm}:demand:{id}` | list, length 1 while the session should run | worker | KEDA redis trigger |
//! | `{sm}:activity` | sorted set, session by last use (ms) | gateway, api | worker (sweeper) |
//! | `{sm}:lifecycle-due` | sorted set, session by next lifecycle deadline (ms) | api (enqueue), worker (sweeper) | worker (sweeper) |
//! | `{sm}:idle-warning:{id}` | string: last use warned for + when, with TTL | worker (sweeper) | worker (sweeper) |
//! | `{sm}:resync-lock` | string: the worker repairing drift, with TTL of one resync interval | worker (resync) | worker (resync) |
//! | `{sm}:prune-lock` | string: the worker pruning backups, with TTL of one prune interval | worker (retention) | worker (retention) |
//! | `{sm}:sweep-lock` | string: the sweeping worker, with TTL of one sweep interval | worker (sweeper) | worker (sweeper) |
//! | `{sm}:backup:{backup_id}` | hash ([`crate::record::backup`]) | worker (finish) | api |
//! | `{sm}:backups:user:{user_id}` | sorted set, backup id by `created_at` ms | worker (finish) | api (list) |
//! | `{sm}:backups:session:{id}` | sorted set, backup id by `created_at` ms | worker (finish) | api (list) |
//! | `sm:rl:{scope}:{id}` | string, GCRA theoretical arrival time | api | api |

/// Hash tag shared by every key a script touches together.
pub const HASH_TAG: &str = "{sm}";
/// The command stream.
pub const JOBS_STREAM: &str = "{sm}:jobs";
/// The consumer group of workers on [`JOBS_STREAM`].
pub const GROUP: &str = "workers";
/// The status event stream.
pub const EVENTS_STREAM: &str = "{sm}:events";
/// Approximate cap on [`EVENTS_STREAM`] length (`XADD MAXLEN ~`).
pub const EVENTS_MAXLEN: u64 = 100_000;
/// The dead-letter stream.
pub const DEAD_STREAM: &str = "{sm}:dead";
/// Sorted set of every session id, scored by creation time in ms.
pub const SESSIONS_INDEX: &str = "{sm}:sessions";
/// Counter issuing fencing tokens for session leases.
pub const FENCE_COUNTER: &str = "{sm}:fence";
/// Field of a [`JOBS_STREAM`] entry that holds the encoded [`crate::Job`].
pub const PAYLOAD_FIELD: &str = "job";
/// Field of an [`EVENTS_STREAM`] entry that holds the encoded [`crate::Event`].
pub const EVENT_FIELD: &str = "event";
/// Field of an [`EVENTS_STREAM`] entry that holds an encoded [`crate::Notice`].
pub const NOTICE_FIELD: &str = "notice";
/// How long a terminal job's hash is kept, in seconds (7 days).
pub const JOB_TTL_SECS: u64 = 7 * 24 * 3600;
/// How long a deleted session's tombstone is kept, in seconds (7 days).
pub const TOMBSTONE_TTL_SECS: u64 = 7 * 24 * 3600;
/// How long an idempotency key is remembered, in seconds (24 h).
pub const IDEMPOTENCY_TTL_SECS: u64 = 24 * 3600;

/// The hash of one job.
pub fn job(job_id: &str) -> String {
    format!("{HASH_TAG}:job:{job_id}")
}

/// The hash of one session.
pub fn session(session_id: &str) -> String {
    format!("{HASH_TAG}:session:{session_id}")
}

/// The set of a user's live (not deleted) sessions.
pub fn user_sessions(user_id: &str) -> String {
    format!("{HASH_TAG}:user:{user_id}")
}

/// An idempotency record. `scope` separates clients (a digest of the API
/// key), so two clients can use the same key.
pub fn idempotency(scope: &str, key: &str) -> String {
    format!("{HASH_TAG}:idem:{scope}:{key}")
}

/// The per-session lease held by the worker acting on it.
pub fn lease(session_id: &str) -> String {
    format!("{HASH_TAG}:lease:{session_id}")
}

/// The per-session demand list read by the session's KEDA trigger.
pub fn demand(session_id: &str) -> String {
    format!("{HASH_TAG}:demand:{session_id}")
}

/// A used access-link nonce, kept until the link's expiry so each link
/// works once.
pub fn access_nonce(nonce: &str) -> String {
    format!("{HASH_TAG}:nonce:{nonce}")
}

/// The record of one backup.
pub fn backup(backup_id: &str) -> String {
    format!("{HASH_TAG}:backup:{backup_id}")
}

/// A user's backups, scored by creation time in ms.
pub fn user_backups(user_id: &str) -> String {
    format!("{HASH_TAG}:backups:user:{user_id}")
}

/// A session's backups, scored by creation time in ms.
pub fn session_backups(session_id: &str) -> String {
    format!("{HASH_TAG}:backups:session:{session_id}")
}

/// A rate-limit bucket (`scope` is e.g. `ip` or `key`).
pub fn rate_limit(scope: &str, id: &str) -> String {
    format!("sm:rl:{scope}:{id}")
}

/// Sorted set of when each session was last used (member: session id,
/// score: milliseconds since the epoch). The gateway flushes its in-memory
/// activity into it with `ZADD GT`; the sweeper reads it.
pub const ACTIVITY: &str = "{sm}:activity";

/// Sorted set of each live session's next lifecycle deadline (member:
/// session id, score: milliseconds since the epoch), read by the sweeper
/// with `ZRANGEBYSCORE ... LIMIT`, never by scanning session hashes.
pub const LIFECYCLE_DUE: &str = "{sm}:lifecycle-due";

/// Held by the worker that sweeps this interval (`SET NX PX`), so N
/// workers do not sweep N times.
pub const SWEEP_LOCK: &str = "{sm}:sweep-lock";

/// Held by the worker that repairs drift this interval (`SET NX PX`).
pub const RESYNC_LOCK: &str = "{sm}:resync-lock";

/// Held by the worker that prunes backups this interval (`SET NX PX`).
pub const PRUNE_LOCK: &str = "{sm}:prune-lock";

/// `SCAN MATCH` pattern of every user's backup index.
pub const USER_BACKUPS_PATTERN: &str = "{sm}:backups:user:*";

/// Marks the idle warning sent for a session's current idle period, so it
/// is sent once.
pub fn idle_warning(session_id: &str) -> String {
    format!("{HASH_TAG}:idle-warning:{session_id}")
}

/// The slot-determining part of a key: what Redis Cluster hashes.
pub fn hash_slot_part(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_keys_share_one_slot() {
        let keys = [
            JOBS_STREAM.to_owned(),
            EVENTS_STREAM.to_owned(),
            DEAD_STREAM.to_owned(),
            SESSIONS_INDEX.to_owned(),
            FENCE_COUNTER.to_owned(),
            ACTIVITY.to_owned(),
            LIFECYCLE_DUE.to_owned(),
            job("0123"),
            session("abc"),
            user_sessions("user{odd}@example.com"),
            idempotency("k1", "{evil}"),
            lease("abc"),
            demand("abc"),
            access_nonce("00ff"),
            SWEEP_LOCK.to_owned(),
            RESYNC_LOCK.to_owned(),
            PRUNE_LOCK.to_owned(),
            idle_warning("abc"),
            backup("abc-3"),
            user_backups("user{odd}"),
            session_backups("abc"),
        ];
        for k in &keys {
            assert_eq!(hash_slot_part(k), "sm", "{k}");
        }
    }

    #[test]
    fn rate_limit_buckets_spread() {
        assert_eq!(hash_slot_part(&rate_limit("ip", "10.0.0.1")), "sm:rl:ip:10.0.0.1");
    }
}
