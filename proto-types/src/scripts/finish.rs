//! The finish script: records a job's outcome in one atomic step.
//!
//! In a single script (so no crash can fall between the steps): the job
//! hash gets its terminal state, error and finish time and a TTL; the
//! session hash, when the outcome applies to it, gets status, replicas,
//! last error, backup file, the upstream address the gateway proxies to
//! (set only while running, removed otherwise) and the writer's fencing
//! token (refused if a newer token already wrote it); a verified backup
//! gets its record and its place in its user's and session's indexes; the KEDA demand list is kept in step; a
//! deleted session leaves its user's live set and becomes a tombstone with
//! a TTL; the [`crate::Event`] (encoded by the caller) is appended to the
//! events stream; and the entry is acknowledged.
//!
//! A job already terminal (a previous finish whose reply was lost) is only
//! acknowledged. A `superseded` job, or one whose session is gone, is
//! finished with `apply_session = false`, so it never overwrites newer
//! session state.

use super::{Invocation, ReplyError};
use crate::keys;
use crate::state::{JobState, SessionState};

/// Script source.
pub const SOURCE: &str = include_str!("finish.lua");

/// What the session record should say, and who says it.
#[derive(Debug, Clone)]
pub struct SessionUpdate<'a> {
    /// Fencing token of the writer's lease.
    pub fence: u64,
    /// Status to record.
    pub status: SessionState,
    /// Ready replicas observed.
    pub replicas: u32,
    /// Backup file to record, if any.
    pub backup_file: Option<&'a str>,
    /// `ip:port` of the session's Service, recorded as
    /// [`crate::record::session::UPSTREAM`] when `status` is running;
    /// removed for any other status or when `None`.
    pub upstream: Option<&'a str>,
    /// A verified backup to record with the session's status, if any.
    pub backup: Option<BackupWrite<'a>>,
}

/// A delete's backup (verified, or failed), recorded as [`crate::record::backup`] in the same
/// script as the session's status, indexed for its user and its session.
#[derive(Debug, Clone)]
pub struct BackupWrite<'a> {
    /// The backup's id.
    pub id: &'a str,
    /// An archive or a snapshot.
    pub kind: crate::BackupKind,
    /// The archive's file name, or the VolumeSnapshot's name.
    pub location: &'a str,
    /// Its size in bytes (a snapshot's `restoreSize`).
    pub size_bytes: u64,
    /// Its lower-case hex SHA-256 (empty for a failed one and a snapshot).
    pub sha256: &'a str,
    /// [`crate::record::backup::STATE_SUCCEEDED`] or
    /// [`crate::record::backup::STATE_FAILED`] (then the job's error is its reason).
    pub state: &'a str,
}

/// Arguments of the finish script.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    /// The job's id.
    pub job_id: &'a str,
    /// Its session.
    pub session_id: &'a str,
    /// The session's owner (for the live-session set); empty if unknown.
    pub user_id: &'a str,
    /// Id of the stream entry to acknowledge.
    pub entry_id: &'a str,
    /// Consumer group.
    pub group: &'a str,
    /// Terminal state to record.
    pub state: JobState,
    /// Error message (also the session's `last_error`), if any.
    pub error: Option<&'a str>,
    /// Session write; `None` for superseded or orphaned jobs.
    pub session: Option<SessionUpdate<'a>>,
    /// The backup a delete or backup job may have recorded `pending` (its
    /// id): settled when the job writes no backup (`failed` if the job
    /// failed or was superseded, else removed).
    pub pending_backup: Option<&'a str>,
    /// Encoded [`crate::Event`].
    pub event: &'a [u8],
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

impl Finish<'_> {
    /// Keys and arguments, in the order `finish.lua` documents.
    pub fn invocation(&self) -> Invocation {
        let mut keys = vec![
            keys::job(self.job_id),
            keys::session(self.session_id),
            keys::JOBS_STREAM.to_owned(),
            keys::EVENTS_STREAM.to_owned(),
            keys::demand(self.session_id),
            keys::user_sessions(self.user_id),
        ];
        let backup_write = self.session.as_ref().and_then(|u| u.backup.as_ref());
        let backup_id = backup_write.map_or("", |b| b.id);
        let pending = self.pending_backup.unwrap_or("");
        keys.extend([
            keys::backup(if backup_id.is_empty() { pending } else { backup_id }),
            keys::user_backups(self.user_id),
            keys::session_backups(self.session_id),
        ]);
        let (apply, fence, status, replicas, backup, upstream) = match &self.session {
            Some(u) => {
                ("1", u.fence, u.status.as_str(), u.replicas, u.backup_file.unwrap_or(""), u.upstream.unwrap_or(""))
            }
            None => ("0", 0, "", 0, "", ""),
        };
        let args: Vec<Vec<u8>> = vec![
            self.entry_id.into(),
            self.group.into(),
            self.state.as_str().into(),
            self.error.unwrap_or("").into(),
            self.now_ms.to_string().into(),
            apply.into(),
            fence.to_string().into(),
            status.into(),
            replicas.to_string().into(),
            backup.into(),
            self.event.to_vec(),
            self.session_id.into(),
            keys::JOB_TTL_SECS.to_string().into(),
            keys::TOMBSTONE_TTL_SECS.to_string().into(),
            keys::EVENTS_MAXLEN.to_string().into(),
            super::terminal_states_arg(),
            upstream.into(),
            backup_id.into(),
            backup_write.map_or("", |b| b.location).into(),
            backup_write.map_or(0, |b| b.size_bytes).to_string().into(),
            backup_write.map_or("", |b| b.sha256).into(),
            self.user_id.into(),
            backup_write.map_or("", |b| b.state).into(),
            backup_write.map_or("", |b| b.kind.as_str()).into(),
            pending.into(),
            format!("{} {}", JobState::Failed.as_str(), JobState::Superseded.as_str()).into(),
        ];
        Invocation { keys, args }
    }
}

/// What the finish script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReply {
    /// Recorded, published and acknowledged.
    Finished,
    /// The job was already terminal; only acknowledged.
    AlreadyTerminal {
        /// The state recorded earlier.
        state: JobState,
    },
    /// Refused: a newer lease holder wrote the session. Nothing was
    /// written; finish again without a session update.
    Fenced {
        /// The session's fence.
        session_fence: u64,
    },
}

impl FinishReply {
    /// Parses the script's reply.
    pub fn parse(reply: &[String]) -> Result<Self, ReplyError> {
        let err = || ReplyError::new("finish", reply);
        match reply {
            [tag] if tag == "finished" => Ok(Self::Finished),
            [tag, s] if tag == "already" => Ok(Self::AlreadyTerminal { state: JobState::parse(s).map_err(|_| err())? }),
            [tag, f] if tag == "fenced" => Ok(Self::Fenced { session_fence: f.parse().map_err(|_| err())? }),
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_matches_documented_order() {
        let inv = Finish {
            job_id: "j",
            session_id: "abc",
            user_id: "u",
            entry_id: "1-0",
            group: "workers",
            state: JobState::Succeeded,
            error: None,
            session: Some(SessionUpdate {
                fence: 4,
                status: SessionState::Running,
                replicas: 1,
                backup_file: Some("b.zip"),
                upstream: Some("10.0.0.7:8080"),
                backup: Some(BackupWrite {
                    id: "abc-3",
                    kind: crate::BackupKind::Snapshot,
                    location: "b.zip",
                    size_bytes: 12,
                    sha256: "ff",
                    state: "succeeded",
                }),
            }),
            pending_backup: Some("abc-3"),
            event: b"ev",
            now_ms: 9,
        }
        .invocation();
        assert_eq!(inv.keys.len(), 9);
        assert_eq!(inv.keys[6], "{sm}:backup:abc-3");
        assert_eq!(inv.keys[7], "{sm}:backups:user:u");
        assert_eq!(inv.keys[8], "{sm}:backups:session:abc");
        assert_eq!(inv.keys[4], "{sm}:demand:abc");
        assert_eq!(inv.keys[5], "{sm}:user:u");
        assert_eq!(inv.args.len(), 26);
        assert_eq!(inv.args[22], b"succeeded");
        assert_eq!(inv.args[23], b"snapshot");
        assert_eq!(inv.args[24], b"abc-3");
        assert_eq!(inv.args[17], b"abc-3");
        assert_eq!(inv.args[19], b"12");
        assert_eq!(inv.args[5], b"1");
        assert_eq!(inv.args[6], b"4");
        assert_eq!(inv.args[9], b"b.zip");
        assert_eq!(inv.args[10], b"ev");
        assert_eq!(inv.args[15], crate::JobState::terminal_names().as_bytes());
        assert_eq!(inv.args[16], b"10.0.0.7:8080");
    }

    #[test]
    fn parses_every_reply() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(FinishReply::parse(&s(&["finished"])), Ok(FinishReply::Finished));
        assert_eq!(
            FinishReply::parse(&s(&["already", "dead"])),
            Ok(FinishReply::AlreadyTerminal { state: JobState::Dead })
        );
        assert_eq!(FinishReply::parse(&s(&["fenced", "9"])), Ok(FinishReply::Fenced { session_fence: 9 }));
        assert!(FinishReply::parse(&s(&["fenced"])).is_err());
    }
}
