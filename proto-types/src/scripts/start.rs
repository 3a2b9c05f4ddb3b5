//! The start script: run when a worker picks a delivered entry, before it
//! acts.
//!
//! It answers whether the job already reached a terminal state (the finish
//! was recorded but its `XACK` was lost, so the caller only acknowledges),
//! and otherwise marks the job `running`, counts the attempt, and returns
//! the session's *current* generation and desired state. The runner
//! compares those with the job (level-triggered): an older job ends
//! `superseded` without acting, a current one converges to what the
//! session desires now.

use super::{Invocation, ReplyError};
use crate::keys;
use crate::state::{DesiredState, JobState, SessionState};

/// Script source.
pub const SOURCE: &str = include_str!("start.lua");

/// Arguments of the start script.
#[derive(Debug, Clone)]
pub struct Start<'a> {
    /// The job's id.
    pub job_id: &'a str,
    /// Its session.
    pub session_id: &'a str,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

impl Start<'_> {
    /// Keys and arguments, in the order `start.lua` documents.
    pub fn invocation(&self) -> Invocation {
        Invocation {
            keys: vec![keys::job(self.job_id), keys::session(self.session_id)],
            args: vec![self.now_ms.to_string().into_bytes(), super::terminal_states_arg()],
        }
    }
}

/// What the session looked like when the job started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Current generation; 0 when the session hash does not exist.
    pub generation: u64,
    /// Current desired state, if the session exists.
    pub desired: Option<DesiredState>,
    /// Current status, if the session exists.
    pub status: Option<SessionState>,
    /// Workspace URL recorded at create, if any.
    pub workspace_url: Option<String>,
    /// Owner, if recorded.
    pub user_id: Option<String>,
    /// The backup the session was created from, if any.
    pub restore: Option<RestoreSource>,
}

/// The backup a session is created from, as copied onto the session at
/// create (`restore_*` fields of [`crate::record::session`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSource {
    /// The backup's id.
    pub backup_id: String,
    /// An archive (restored by a Job) or a snapshot (the new volume's data source).
    pub kind: crate::BackupKind,
    /// Its archive's file name on the backup volume, or the VolumeSnapshot's name.
    pub location: String,
    /// The archive's size in bytes (a snapshot: its `restoreSize`).
    pub size_bytes: u64,
    /// The archive's lower-case hex SHA-256 (empty for a snapshot).
    pub sha256: String,
}

/// What the start script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartReply {
    /// The job is already terminal: acknowledge and do nothing else.
    Terminal {
        /// Its recorded state.
        state: JobState,
    },
    /// Marked running.
    Started {
        /// How many times a worker has started it, this time included.
        attempts: u32,
        /// The session as it is now.
        session: SessionSnapshot,
    },
}

impl StartReply {
    /// Parses the script's reply.
    pub fn parse(reply: &[String]) -> Result<Self, ReplyError> {
        let err = || ReplyError::new("start", reply);
        let opt = |s: &String| if s.is_empty() { None } else { Some(s.clone()) };
        match reply {
            [tag, state] if tag == "terminal" => {
                Ok(Self::Terminal { state: JobState::parse(state).map_err(|_| err())? })
            }
            [tag, attempts, generation, desired, status, url, user, from, location, size, sha, kind]
                if tag == "started" =>
            {
                let desired = match desired.as_str() {
                    "" => None,
                    d => Some(DesiredState::parse(d).map_err(|_| err())?),
                };
                let status = match status.as_str() {
                    "" => None,
                    s => Some(SessionState::parse(s).map_err(|_| err())?),
                };
                Ok(Self::Started {
                    attempts: attempts.parse().map_err(|_| err())?,
                    session: SessionSnapshot {
                        generation: generation.parse().map_err(|_| err())?,
                        desired,
                        status,
                        workspace_url: opt(url),
                        user_id: opt(user),
                        restore: match from.as_str() {
                            "" => None,
                            _ => Some(RestoreSource {
                                backup_id: from.clone(),
                                // Sessions created before snapshots existed carry no kind.
                                kind: match kind.as_str() {
                                    "" => crate::BackupKind::Archive,
                                    k => crate::BackupKind::parse(k).map_err(|_| err())?,
                                },
                                location: location.clone(),
                                size_bytes: size.parse().map_err(|_| err())?,
                                sha256: sha.clone(),
                            }),
                        },
                    },
                })
            }
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_every_reply() {
        assert_eq!(
            StartReply::parse(&s(&["terminal", "succeeded"])),
            Ok(StartReply::Terminal { state: JobState::Succeeded })
        );
        assert_eq!(
            StartReply::parse(&s(&["started", "2", "7", "sleeping", "running", "", "u", "", "", "", "", ""])),
            Ok(StartReply::Started {
                attempts: 2,
                session: SessionSnapshot {
                    generation: 7,
                    desired: Some(DesiredState::Sleeping),
                    status: Some(SessionState::Running),
                    workspace_url: None,
                    user_id: Some("u".into()),
                    restore: None,
                }
            })
        );
        let from = StartReply::parse(&s(&[
            "started", "1", "1", "running", "creating", "", "u", "b-g2", "a.zip", "9", "ff", "",
        ]));
        let Ok(StartReply::Started { session, .. }) = from else { panic!("{from:?}") };
        assert_eq!(
            session.restore,
            Some(RestoreSource {
                backup_id: "b-g2".into(),
                kind: crate::BackupKind::Archive,
                location: "a.zip".into(),
                size_bytes: 9,
                sha256: "ff".into()
            })
        );
        let snap = StartReply::parse(&s(&[
            "started",
            "1",
            "1",
            "running",
            "creating",
            "",
            "u",
            "b-g3",
            "ws-b-snap-g3",
            "5",
            "",
            "snapshot",
        ]));
        let Ok(StartReply::Started { session, .. }) = snap else { panic!("{snap:?}") };
        assert_eq!(
            session.restore.map(|r| (r.kind, r.location)),
            Some((crate::BackupKind::Snapshot, "ws-b-snap-g3".into()))
        );
        let bad = ["started", "1", "1", "running", "creating", "", "u", "b-g3", "x", "5", "", "tape"];
        assert!(StartReply::parse(&s(&bad)).is_err());
        assert!(StartReply::parse(&s(&["started", "1", "1", "", "", "", "u", "b", "a.zip", "x", "", ""])).is_err());
        assert!(StartReply::parse(&s(&["started", "x", "7", "", "", "", "", "", "", "", "", ""])).is_err());
        assert!(StartReply::parse(&s(&["terminal", "bogus"])).is_err());
    }

    #[test]
    fn invocation_uses_tagged_keys() {
        let inv = Start { job_id: "j", session_id: "abc", now_ms: 5 }.invocation();
        assert_eq!(inv.keys, ["{sm}:job:j", "{sm}:session:abc"]);
        assert_eq!(inv.args, [b"5".to_vec(), b"succeeded failed superseded dead".to_vec()]);
    }
}
