//! Backup retention's Redis adapter: every backup record (found through
//! the users' indexes), how their sessions stand, and the `deleted` mark
//! written once a record's files are gone. It decides nothing
//! ([`super::retention::plan`] does).
//!
//! Reads, once per prune pass (`BACKUP_PRUNE_INTERVAL_SECS`, one worker):
//! `SCAN MATCH {sm}:backups:user:*` for the user indexes (all `{sm}` keys
//! live in one slot, so one node has them all), `ZRANGE` of each, then
//! `HGETALL` of the records and `HMGET` of their sessions in pipelines of
//! [`CHUNK`]. A pass costs in proportion to the stored backups, which is
//! why it runs hourly, not per sweep.
//!
//! A session's delete time, for the protection rule: when its record is
//! still there (the 7-day tombstone) and says `deleted`, the time of the
//! `last_transition` into `deleted` (else its `last_activity_ms`, which the
//! finish script sets in the same step); when the record is gone (only
//! deleted sessions expire), the creation time of its newest succeeded
//! backup ([`super::retention::deleted_at`]), which a delete records in the
//! same step as the `deleted` status.

use std::collections::{BTreeSet, HashMap};

use proto_types::{SessionState, keys, record};
use redis::aio::ConnectionManager;

use super::retention::{BackupState, SessionSeen, StoredBackup};
use super::store::{Store, StoreError, redis_err};

/// Keys read per pipeline.
const CHUNK: usize = 500;

/// Marks one backup record `deleted` by retention, unless it is gone,
/// pending or already marked removed; replies 1 when it marked it.
const MARK: &str = r#"
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
if redis.call("HEXISTS", KEYS[1], ARGV[4]) == 1 then return 0 end
if redis.call("HGET", KEYS[1], "state") == "pending" then return 0 end
redis.call("HSET", KEYS[1], "state", ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
"#;

/// How a session hash reads for retention (`status`, `last_transition`,
/// `last_activity_ms`; all `None` when the hash is gone). A deleted record
/// with no readable time is judged like a gone one.
pub(super) fn seen_of(
    status: Option<&str>,
    last_transition: Option<&str>,
    last_activity_ms: Option<&str>,
) -> SessionSeen {
    let Some(status) = status else { return SessionSeen::Gone };
    if status != SessionState::Deleted.as_str() {
        return SessionSeen::Live;
    }
    // "{from} {to} {origin} {at_ms}"
    let transition = last_transition.and_then(|t| {
        let parts: Vec<&str> = t.split(' ').collect();
        match parts.as_slice() {
            [_, to, _, at] if *to == status => at.parse().ok(),
            _ => None,
        }
    });
    // Neither readable: judged like a gone record, by its backups.
    transition
        .or_else(|| last_activity_ms.and_then(|v| v.parse().ok()))
        .map_or(SessionSeen::Gone, |at_ms| SessionSeen::Deleted { at_ms })
}

fn parse_backup(map: &HashMap<String, String>) -> Option<StoredBackup> {
    use record::backup as f;
    let text = |k: &str| map.get(k).cloned().unwrap_or_default();
    let id = text(f::ID);
    (!id.is_empty()).then(|| StoredBackup {
        id,
        session_id: text(f::SESSION),
        user_id: text(f::USER),
        created_at_ms: map.get(f::CREATED_AT).and_then(|v| v.parse().ok()).unwrap_or(0),
        kind: match text(f::KIND).as_str() {
            "" => Some(proto_types::BackupKind::Archive),
            k => proto_types::BackupKind::parse(k).ok(),
        },
        location: text(f::LOCATION),
        state: BackupState::parse(&text(f::STATE)),
        removed: map.contains_key(f::REMOVED_AT),
    })
}

/// Backup retention's Redis side; cheap to clone.
#[derive(Clone)]
pub struct RetentionStore {
    conn: ConnectionManager,
    mark: redis::Script,
}

impl std::fmt::Debug for RetentionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sweeper::RetentionStore")
    }
}

impl RetentionStore {
    /// The adapter on `store`'s connection.
    pub fn new(store: &Store) -> Self {
        Self { conn: store.conn(), mark: redis::Script::new(MARK) }
    }

    /// Every backup record listed in a user's index (deduplicated by id).
    pub async fn backups(&self) -> Result<Vec<StoredBackup>, StoreError> {
        let mut conn = self.conn.clone();
        let mut indexes: BTreeSet<String> = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(keys::USER_BACKUPS_PATTERN)
                .arg("COUNT")
                .arg(CHUNK)
                .query_async(&mut conn)
                .await
                .map_err(redis_err("scan backups"))?;
            indexes.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let indexes: Vec<String> = indexes.into_iter().collect();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for chunk in indexes.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1);
            }
            let lists: Vec<Vec<String>> = pipe.query_async(&mut conn).await.map_err(redis_err("read backup index"))?;
            ids.extend(lists.into_iter().flatten());
        }
        let ids: Vec<String> = ids.into_iter().collect();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HGETALL").arg(keys::backup(id));
            }
            let maps: Vec<HashMap<String, String>> =
                pipe.query_async(&mut conn).await.map_err(redis_err("read backups"))?;
            out.extend(maps.iter().filter_map(parse_backup));
        }
        Ok(out)
    }

    /// How each of `sessions` stands ([`seen_of`]).
    pub async fn sessions(&self, sessions: &[String]) -> Result<HashMap<String, SessionSeen>, StoreError> {
        use record::session as f;
        let mut conn = self.conn.clone();
        let mut out = HashMap::with_capacity(sessions.len());
        for chunk in sessions.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HMGET").arg(keys::session(id)).arg(f::STATUS).arg(f::LAST_TRANSITION).arg(f::LAST_ACTIVITY);
            }
            let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
                pipe.query_async(&mut conn).await.map_err(redis_err("read sessions"))?;
            for (id, (status, transition, activity)) in chunk.iter().zip(rows) {
                out.insert(id.clone(), seen_of(status.as_deref(), transition.as_deref(), activity.as_deref()));
            }
        }
        Ok(out)
    }

    /// Marks backup `id` `deleted` with `reason` and `removed_at_ms`
    /// (once; not a pending one); whether it marked it.
    pub async fn mark(&self, id: &str, reason: &str, now_ms: u64) -> Result<bool, StoreError> {
        use record::backup as f;
        let mut conn = self.conn.clone();
        let n: i64 = self
            .mark
            .key(keys::backup(id))
            .arg(f::STATE_DELETED)
            .arg(f::DELETED_REASON)
            .arg(reason)
            .arg(f::REMOVED_AT)
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("mark backup"))?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_reads_as_live_deleted_at_its_transition_or_gone() {
        assert_eq!(seen_of(None, None, None), SessionSeen::Gone);
        assert_eq!(seen_of(Some("sleeping"), None, Some("5")), SessionSeen::Live);
        let deleted = seen_of(Some("deleted"), Some("deleting deleted ttl 1700000000123"), Some("1700000000999"));
        assert_eq!(deleted, SessionSeen::Deleted { at_ms: 1_700_000_000_123 });
        // A transition into another state (or none): the last activity, which finish sets.
        let fallback = seen_of(Some("deleted"), Some("running sleeping idle 1"), Some("1700000000999"));
        assert_eq!(fallback, SessionSeen::Deleted { at_ms: 1_700_000_000_999 });
        assert_eq!(seen_of(Some("deleted"), Some("garbage"), None), SessionSeen::Gone);
    }

    #[test]
    fn records_parse_and_a_removed_one_is_known() {
        let mut m: HashMap<String, String> = [
            ("id", "s-g2"),
            ("session_id", "s"),
            ("user_id", "u"),
            ("created_at_ms", "7"),
            ("location", "a.zip"),
            ("state", "deleted"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let b = parse_backup(&m).expect("a record");
        assert_eq!((b.created_at_ms, b.state, b.removed), (7, BackupState::Deleted, false));
        m.insert("removed_at_ms".into(), "9".into());
        assert!(parse_backup(&m).expect("a record").removed);
        assert_eq!(parse_backup(&HashMap::new()), None);
    }
}
