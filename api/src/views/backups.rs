//! Backup bodies: `GET /backups/{backup_id}`, the lists of
//! `GET /backups?user_id=` and `GET /session/{uuid}/backups`, and
//! `DELETE /backups/{backup_id}`. Pure: store records in, serde out.

use serde::Serialize;

use super::time::iso_ms;
use crate::store::backups::BackupRecord;

/// One backup.
#[derive(Debug, Serialize)]
pub struct Backup {
    /// Its id.
    pub id: String,
    /// The session it was taken of.
    pub uuid: String,
    /// That session's owner.
    pub user_id: String,
    /// When it was recorded (the old timestamp format).
    pub created_at: String,
    /// `archive` or `snapshot`.
    pub kind: String,
    /// The archive's file name on the backup volume, or the VolumeSnapshot's name.
    pub location: String,
    /// Size of the archive in bytes (a snapshot: its `restoreSize`).
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 of the archive, as the backup Job verified it
    /// (empty for a failed backup and for a snapshot).
    pub sha256: String,
    /// `pending`, `succeeded`, `failed` or `deleted`.
    pub state: String,
    /// Why it failed, or null.
    pub error: Option<String>,
    /// Why the worker's backup retention removed the archive file
    /// (`max_age`, `keep_per_user`, `user`), or null while it is there.
    pub deleted_reason: Option<String>,
    /// When backup retention removed the archive file, or null.
    pub removed_at: Option<String>,
}

/// A page of backups.
#[derive(Debug, Serialize)]
pub struct BackupList {
    /// The backups, oldest first.
    pub backups: Vec<Backup>,
    /// How many are on this page.
    pub count: usize,
    /// Cursor for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// The body of one backup.
pub fn backup(r: &BackupRecord) -> Backup {
    Backup {
        id: r.id.clone(),
        uuid: r.session_id.clone(),
        user_id: r.user_id.clone(),
        created_at: iso_ms(r.created_at_ms),
        kind: r.kind.clone(),
        location: r.location.clone(),
        size_bytes: r.size_bytes,
        sha256: r.sha256.clone(),
        state: r.state.clone(),
        error: (!r.error.is_empty()).then(|| r.error.clone()),
        deleted_reason: (!r.deleted_reason.is_empty()).then(|| r.deleted_reason.clone()),
        removed_at: r.removed_at_ms.map(iso_ms),
    }
}

/// The body of a page.
pub fn list(records: &[BackupRecord], next_cursor: Option<String>) -> BackupList {
    let backups: Vec<Backup> = records.iter().map(backup).collect();
    BackupList { count: backups.len(), backups, next_cursor }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_pruned_record_shows_why_and_when_its_file_went() {
        let map: HashMap<String, String> =
            [("id", "abc-g2"), ("state", "deleted"), ("deleted_reason", "max_age"), ("removed_at_ms", "1763643920884")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let r = BackupRecord::parse(&map).expect("record");
        let view = backup(&r);
        assert_eq!(view.deleted_reason.as_deref(), Some("max_age"));
        assert_eq!(view.removed_at.as_deref(), Some("2025-11-20T13:05:20.884000"));
        let json = serde_json::to_value(backup(&BackupRecord { removed_at_ms: None, ..r })).expect("json");
        assert!(json["removed_at"].is_null());
    }
}
