//! Backup retention: which archive files a prune pass removes and which
//! backup records it then marks `deleted`, a pure function of the records
//! as read, when their sessions were deleted, the time and the policy.
//!
//! Rules ([`plan`]), per record `state`:
//! - `succeeded`: pruned (`max_age`) when strictly older than
//!   `BACKUP_MAX_AGE_DAYS`; else pruned (`keep_per_user`) when it is not
//!   among its user's newest `BACKUP_KEEP_PER_USER` succeeded backups.
//!   Exception: the newest succeeded backup of a session that was deleted
//!   less than `BACKUP_MAX_AGE_DAYS` ago (what a restore of it would use)
//!   is never pruned, by either rule.
//! - `failed`: pruned (`max_age`) by age only; does not count toward the
//!   per-user limit. Its file and the backup program's leftover
//!   `.{file}.partial` are removed (both normally absent).
//! - `deleted` by a user and not yet removed: its file goes on the next
//!   pass (`user`).
//! - `pending`, unknown states and kinds, and records already removed
//!   (`removed_at_ms` set): never touched.
//!
//! An archive's files are removed by a prune Job; a snapshot backup's
//! VolumeSnapshot is deleted through the API (its class's
//! `deletionPolicy` decides whether the storage snapshot goes with it).
//!
//! Age is `now - created_at_ms`; a record exactly `BACKUP_MAX_AGE_DAYS` old
//! is kept. A limit of 0 switches its rule off (and with no age limit the
//! newest backup of every deleted session is kept). Ties in creation time
//! order by id. A file that a record kept by this plan also names is never
//! removed, and a record whose location is not a plain file name
//! ([`crate::k8s::prune::safe_name`]) is left alone and reported.
//!
//! Not here: reading the records ([`super::retention_store`]), removing
//! files (the prune Job, [`crate::k8s::prune`]), marking records
//! ([`super::prune`]).

use std::collections::{BTreeSet, HashMap};

use proto_types::BackupKind;

use crate::k8s::prune::safe_name;

/// One day in ms.
pub const DAY_MS: u64 = 86_400_000;

/// The retention settings; 0 switches a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Succeeded backups kept per user (`BACKUP_KEEP_PER_USER`).
    pub keep_per_user: usize,
    /// Age past which a backup is pruned, ms (`BACKUP_MAX_AGE_DAYS`).
    pub max_age_ms: u64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self { keep_per_user: 10, max_age_ms: 30 * DAY_MS }
    }
}

/// A backup record's `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupState {
    /// Being taken.
    Pending,
    /// Written and verified.
    Succeeded,
    /// Could not be taken.
    Failed,
    /// Marked deleted (by a user, or by a prune when `removed` is set).
    Deleted,
    /// A state this version does not know: left alone.
    Unknown,
}

impl BackupState {
    /// Parses a stored state.
    pub fn parse(s: &str) -> Self {
        use proto_types::record::backup as f;
        match s {
            f::STATE_PENDING => Self::Pending,
            f::STATE_SUCCEEDED => Self::Succeeded,
            f::STATE_FAILED => Self::Failed,
            f::STATE_DELETED => Self::Deleted,
            _ => Self::Unknown,
        }
    }
}

/// One backup record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBackup {
    /// Its id.
    pub id: String,
    /// The session it was taken of.
    pub session_id: String,
    /// That session's owner.
    pub user_id: String,
    /// When it was recorded, ms.
    pub created_at_ms: u64,
    /// Archive or snapshot; `None`: a kind this version does not know
    /// (left alone). Records written before snapshots existed are archives.
    pub kind: Option<BackupKind>,
    /// The archive's file name on the backup volume, or the VolumeSnapshot's name.
    pub location: String,
    /// Its state.
    pub state: BackupState,
    /// Whether a prune already removed its file (`removed_at_ms` is set).
    pub removed: bool,
}

/// Why a record is marked deleted (`deleted_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Older than `BACKUP_MAX_AGE_DAYS`.
    MaxAge,
    /// Beyond the user's newest `BACKUP_KEEP_PER_USER`.
    KeepPerUser,
    /// A user deleted it (`DELETE /backups/{id}`).
    User,
}

impl Reason {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        use proto_types::record::backup as f;
        match self {
            Self::MaxAge => f::REASON_MAX_AGE,
            Self::KeepPerUser => f::REASON_KEEP_PER_USER,
            Self::User => f::REASON_USER,
        }
    }
}

/// One record to mark once its files are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The backup id.
    pub backup_id: String,
    /// Why.
    pub reason: Reason,
    /// The files to remove first (may be empty: nothing to remove).
    pub files: Vec<String>,
    /// The VolumeSnapshot to delete first (a snapshot backup).
    pub snapshot: Option<String>,
}

/// What one pass does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prune {
    /// Every file to remove, in record order, without repeats.
    pub files_to_remove: Vec<String>,
    /// The records to mark, oldest first.
    pub records_to_mark: Vec<Mark>,
    /// Ids of records that would be pruned but whose location is not a
    /// plain file name: left alone (logged).
    pub refused: Vec<String>,
}

impl Prune {
    fn from_marks(records_to_mark: Vec<Mark>, refused: Vec<String>) -> Self {
        let mut seen = BTreeSet::new();
        let files_to_remove =
            records_to_mark.iter().flat_map(|m| m.files.iter()).filter(|f| seen.insert(f.as_str())).cloned().collect();
        Self { files_to_remove, records_to_mark, refused }
    }

    /// Splits the plan into parts of at most `max_files` files each (one
    /// prune Job per part), never splitting a record's files.
    pub fn batches(&self, max_files: usize) -> Vec<Prune> {
        let max_files = max_files.max(2);
        let mut out: Vec<Vec<Mark>> = Vec::new();
        let mut files = 0;
        for m in &self.records_to_mark {
            if out.is_empty() || files + m.files.len() > max_files {
                out.push(Vec::new());
                files = 0;
            }
            files += m.files.len();
            out.last_mut().expect("pushed above").push(m.clone());
        }
        out.into_iter().map(|marks| Prune::from_marks(marks, Vec::new())).collect()
    }
}

/// How a session was found when its backups were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSeen {
    /// Its record exists and it is not deleted.
    Live,
    /// Its record says deleted, at this time (ms).
    Deleted {
        /// When.
        at_ms: u64,
    },
    /// No record (the tombstone expired: only deleted sessions expire).
    Gone,
}

/// When a session was deleted, for [`plan`]'s protection rule: the time
/// its record shows, else (record gone) the creation time of its newest
/// succeeded backup, which a successful delete records in the same step
/// as the `deleted` status. `None`: not deleted (or nothing to protect).
pub fn deleted_at<'a>(seen: SessionSeen, session_backups: impl IntoIterator<Item = &'a StoredBackup>) -> Option<u64> {
    match seen {
        SessionSeen::Live => None,
        SessionSeen::Deleted { at_ms } => Some(at_ms),
        SessionSeen::Gone => {
            session_backups.into_iter().filter(|b| b.state == BackupState::Succeeded).map(|b| b.created_at_ms).max()
        }
    }
}

/// The plan of one pass over `backups` at `now_ms` (see the module docs);
/// `sessions_deleted_at` holds the delete time of each deleted session.
pub fn plan(
    backups: &[StoredBackup],
    sessions_deleted_at: &HashMap<String, u64>,
    now_ms: u64,
    policy: &RetentionPolicy,
) -> Prune {
    let newest_first = |a: &&StoredBackup, b: &&StoredBackup| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id));
    let older_than_max =
        |b: &StoredBackup| policy.max_age_ms > 0 && now_ms.saturating_sub(b.created_at_ms) > policy.max_age_ms;
    let recently_deleted = |at: u64| policy.max_age_ms == 0 || now_ms.saturating_sub(at) < policy.max_age_ms;

    let succeeded: Vec<&StoredBackup> =
        backups.iter().filter(|b| b.state == BackupState::Succeeded && !b.removed).collect();
    // The newest succeeded backup of each recently deleted session.
    let mut newest_of_session: HashMap<&str, &StoredBackup> = HashMap::new();
    for b in &succeeded {
        let e = newest_of_session.entry(b.session_id.as_str()).or_insert(b);
        if newest_first(b, e).is_lt() {
            *e = b;
        }
    }
    let protected: BTreeSet<&str> = newest_of_session
        .iter()
        .filter(|(s, _)| sessions_deleted_at.get(**s).is_some_and(|at| recently_deleted(*at)))
        .map(|(_, b)| b.id.as_str())
        .collect();
    // Each user's succeeded backups beyond the newest `keep_per_user`.
    let mut per_user: HashMap<&str, Vec<&StoredBackup>> = HashMap::new();
    for b in &succeeded {
        per_user.entry(b.user_id.as_str()).or_default().push(b);
    }
    let mut over_keep: BTreeSet<&str> = BTreeSet::new();
    if policy.keep_per_user > 0 {
        for list in per_user.values_mut() {
            list.sort_by(newest_first);
            over_keep.extend(list.iter().skip(policy.keep_per_user).map(|b| b.id.as_str()));
        }
    }

    let reason_of = |b: &StoredBackup| -> Option<Reason> {
        if b.removed || b.kind.is_none() {
            return None;
        }
        match b.state {
            BackupState::Succeeded if protected.contains(b.id.as_str()) => None,
            BackupState::Succeeded if older_than_max(b) => Some(Reason::MaxAge),
            BackupState::Succeeded if over_keep.contains(b.id.as_str()) => Some(Reason::KeepPerUser),
            BackupState::Failed if older_than_max(b) => Some(Reason::MaxAge),
            BackupState::Deleted => Some(Reason::User),
            _ => None,
        }
    };
    let mut ordered: Vec<&StoredBackup> = backups.iter().collect();
    ordered.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    let (pruned, kept): (Vec<_>, Vec<_>) =
        ordered.into_iter().map(|b| (b, reason_of(b))).partition(|(_, r)| r.is_some());
    // Files named by a record that stays (or was already removed) are never removed.
    let kept_files: BTreeSet<&str> =
        kept.iter().filter(|(b, _)| !b.removed).map(|(b, _)| b.location.as_str()).collect();
    let mut marks = Vec::new();
    let mut refused = Vec::new();
    for (b, reason) in pruned {
        let Some(reason) = reason else { continue };
        if !b.location.is_empty() && !safe_name(&b.location) {
            refused.push(b.id.clone());
            continue;
        }
        if b.kind == Some(BackupKind::Snapshot) {
            let snapshot = Some(b.location.clone()).filter(|l| !l.is_empty() && !kept_files.contains(l.as_str()));
            marks.push(Mark { backup_id: b.id.clone(), reason, files: Vec::new(), snapshot });
            continue;
        }
        let mut files = Vec::new();
        if !b.location.is_empty() {
            files.push(b.location.clone());
            if b.state == BackupState::Failed {
                files.push(format!(".{}.partial", b.location));
            }
        }
        files.retain(|f| !kept_files.contains(f.as_str()));
        marks.push(Mark { backup_id: b.id.clone(), reason, files, snapshot: None });
    }
    Prune::from_marks(marks, refused)
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
