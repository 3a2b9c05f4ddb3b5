//! Backup records (`{sm}:backup:{id}`, see [`proto_types::record::backup`]):
//! reading one, paging through a user's or a session's index, and marking
//! one deleted. The worker writes them (with a delete's finish); this module
//! only reads them, except for the `deleted` mark.

use std::collections::HashMap;

use proto_types::{keys, record::backup as field};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{Store, StoreError};

/// One backup as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    /// Its id.
    pub id: String,
    /// The session it was taken of.
    pub session_id: String,
    /// That session's owner.
    pub user_id: String,
    /// When it was recorded, ms since the epoch.
    pub created_at_ms: u64,
    /// `archive`.
    pub kind: String,
    /// The archive's file name on the backup volume.
    pub location: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// `pending`, `succeeded`, `failed` or `deleted`.
    pub state: String,
    /// Why it failed; empty otherwise.
    pub error: String,
    /// Why the worker's retention removed its file (`max_age`,
    /// `keep_per_user`, `user`); empty while the file is there.
    pub deleted_reason: String,
    /// When retention removed its file, ms; `None` while it is there.
    pub removed_at_ms: Option<u64>,
}

impl BackupRecord {
    /// Parses a hash; `None` when it does not exist (no id).
    pub fn parse(map: &HashMap<String, String>) -> Option<Self> {
        let text = |k: &str| map.get(k).cloned().unwrap_or_default();
        let num = |k: &str| map.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        let id = text(field::ID);
        (!id.is_empty()).then(|| Self {
            id,
            session_id: text(field::SESSION),
            user_id: text(field::USER),
            created_at_ms: num(field::CREATED_AT),
            kind: text(field::KIND),
            location: text(field::LOCATION),
            size_bytes: num(field::SIZE_BYTES),
            sha256: text(field::SHA256),
            state: text(field::STATE),
            error: text(field::ERROR),
            deleted_reason: text(field::DELETED_REASON),
            removed_at_ms: map.get(field::REMOVED_AT).and_then(|v| v.parse().ok()),
        })
    }
}

/// A page of backups.
#[derive(Debug, Clone)]
pub struct BackupPage {
    /// The backups, oldest first.
    pub backups: Vec<BackupRecord>,
    /// Cursor for the next page, if there may be more.
    pub next_cursor: Option<String>,
}

/// Marks a backup deleted, if it exists; replies 1, or 0 when there is none.
const MARK_DELETED: &str = r#"
local state = redis.call("HGET", KEYS[1], "state")
if not state then return 0 end
if state == ARGV[2] then return -1 end
redis.call("HSET", KEYS[1], "state", ARGV[1])
return 1
"#;

/// What marking a backup deleted did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkDeleted {
    /// It is (now) `deleted`.
    Marked,
    /// There is no such backup.
    NotFound,
    /// It is still `pending` (its job is taking it): left as it is.
    Pending,
}

impl Store {
    /// Reads one backup.
    pub async fn backup(&self, id: &str) -> Result<Option<BackupRecord>, StoreError> {
        let map: HashMap<String, String> = self.conn.clone().hgetall(keys::backup(id)).await?;
        Ok(BackupRecord::parse(&map))
    }

    /// A page of the backups in `index` (a user's or a session's sorted
    /// set), oldest first, after the cursor `(created_ms, id)`.
    pub async fn list_backups(
        &self,
        index: &str,
        cursor: Option<(u64, String)>,
        limit: usize,
    ) -> Result<BackupPage, StoreError> {
        let mut c = self.conn.clone();
        let ids = after(&mut c, index, cursor.as_ref(), limit + 1).await?;
        let more = ids.len() > limit;
        let ids = &ids[..ids.len().min(limit)];
        let mut pipe = redis::pipe();
        for (id, _) in ids {
            pipe.hgetall(keys::backup(id));
        }
        let maps: Vec<HashMap<String, String>> =
            if ids.is_empty() { Vec::new() } else { pipe.query_async(&mut c).await? };
        let backups: Vec<BackupRecord> = maps.iter().filter_map(BackupRecord::parse).collect();
        let next_cursor = more.then(|| ids.last().map(|(id, score)| format!("{score}:{id}"))).flatten();
        Ok(BackupPage { backups, next_cursor })
    }

    /// Marks a backup deleted, unless it is missing or still pending.
    pub async fn mark_backup_deleted(&self, id: &str) -> Result<MarkDeleted, StoreError> {
        let n: i64 = redis::Script::new(MARK_DELETED)
            .key(keys::backup(id))
            .arg(field::STATE_DELETED)
            .arg(field::STATE_PENDING)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match n {
            1 => MarkDeleted::Marked,
            -1 => MarkDeleted::Pending,
            _ => MarkDeleted::NotFound,
        })
    }
}

/// Index entries strictly after `(score, id)`, in order, at most `count`.
async fn after(
    c: &mut ConnectionManager,
    index: &str,
    cursor: Option<&(u64, String)>,
    count: usize,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let from = match cursor {
        Some((score, id)) => {
            // Same-millisecond entries sort by id; take those after the cursor first.
            let same: Vec<(String, u64)> = c.zrangebyscore_withscores(index, *score, *score).await?;
            out.extend(same.into_iter().filter(|(m, _)| m > id));
            format!("({score}")
        }
        None => "-inf".to_owned(),
    };
    let rest: Vec<(String, u64)> = c.zrangebyscore_limit_withscores(index, from, "+inf", 0, count as isize).await?;
    out.extend(rest);
    out.truncate(count);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_hash_is_no_record_and_numbers_parse() {
        assert_eq!(BackupRecord::parse(&HashMap::new()), None);
        let map: HashMap<String, String> =
            [("id", "abc-g2"), ("size_bytes", "5242880"), ("created_at_ms", "9"), ("state", "succeeded")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let r = BackupRecord::parse(&map).expect("record");
        assert_eq!((r.size_bytes, r.created_at_ms, r.state.as_str()), (5_242_880, 9, "succeeded"));
        assert_eq!((r.deleted_reason.as_str(), r.removed_at_ms), ("", None));
    }
}
