//! The enqueue script: one atomic step that records the job, bumps the
//! session's desired state and generation, and appends to the `jobs` stream.
//!
//! The api decides first, in Rust ([`crate::machine::decide`]) on the
//! session it read, then calls this script with the generation it read. If
//! another command got there first the script answers
//! [`EnqueueReply::Conflict`] and the api reads again and re-decides
//! (optimistic concurrency), so the state machine is never duplicated in Lua
//! and two racing commands can never both apply to the same generation.
//!
//! The client gets the job id only after this script returned `ok`: Redis
//! acknowledged the write.

use super::{Invocation, ReplyError};
use crate::job::Job;
use crate::keys;
use crate::state::{DesiredState, SessionState};

/// Script source.
pub const SOURCE: &str = include_str!("enqueue.lua");

/// Everything the enqueue script needs besides the job itself.
#[derive(Debug, Clone)]
pub struct Enqueue<'a> {
    /// The job, with `generation` = `expected_generation + 1`.
    pub job: &'a Job,
    /// Encoded job (`Job::encode`).
    pub payload: &'a [u8],
    /// Session generation the decision was made on (0 for create).
    pub expected_generation: u64,
    /// Desired state the decision set.
    pub desired: DesiredState,
    /// Status the decision set.
    pub status: SessionState,
    /// Owner; used for create (ignored otherwise).
    pub user_id: &'a str,
    /// Per-user live session limit for create; 0 for none.
    pub max_sessions_per_user: u32,
    /// Workspace URL recorded at create.
    pub workspace_url: &'a str,
    /// `(scope, key, fingerprint)` when the client sent an `Idempotency-Key`.
    pub idempotency: Option<(&'a str, &'a str, &'a str)>,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
    /// The session's own idle timeout to record, in seconds (`None` keeps
    /// the stored one).
    pub idle_timeout_secs: Option<u64>,
    /// For create: the backup to restore the new volume from.
    pub restore: Option<RestoreFrom<'a>>,
}

/// Create from a backup: which one, and whether any user's may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreFrom<'a> {
    /// The backup's id.
    pub backup_id: &'a str,
    /// An admin key asks: the backup need not be the creating user's.
    pub any_user: bool,
}

/// Why a create cannot restore from the backup it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreRefusal {
    /// No such backup, or (for a non-admin key) another user's.
    Missing,
    /// The backup was deleted.
    Gone,
    /// The backup exists but holds nothing to restore (its state).
    Unusable(String),
}

impl Enqueue<'_> {
    /// Keys and arguments, in the order `enqueue.lua` documents.
    pub fn invocation(&self) -> Invocation {
        let sid = self.job.session_id.as_str();
        let (use_idem, idem_key, fingerprint, idem_raw) = match self.idempotency {
            Some((scope, key, fp)) => ("1", keys::idempotency(scope, key), fp, key),
            None => ("0", keys::idempotency("-", "-"), "", ""),
        };
        let keys = vec![
            keys::session(sid),
            keys::job(self.job.job_id.as_str()),
            keys::JOBS_STREAM.to_owned(),
            keys::SESSIONS_INDEX.to_owned(),
            keys::user_sessions(self.user_id),
            idem_key,
            keys::LIFECYCLE_DUE.to_owned(),
            keys::backup(self.restore.map_or("-", |r| r.backup_id)),
        ];
        let args: Vec<Vec<u8>> = vec![
            self.job.job_id.as_str().into(),
            sid.into(),
            self.job.command.as_str().into(),
            self.payload.to_vec(),
            self.now_ms.to_string().into(),
            self.expected_generation.to_string().into(),
            self.desired.as_str().into(),
            self.status.as_str().into(),
            self.user_id.into(),
            self.max_sessions_per_user.to_string().into(),
            use_idem.into(),
            fingerprint.into(),
            keys::IDEMPOTENCY_TTL_SECS.to_string().into(),
            self.workspace_url.into(),
            idem_raw.into(),
            self.job.origin.as_str().into(),
            self.idle_timeout_secs.map_or_else(String::new, |s| s.to_string()).into(),
            self.restore.map_or("", |r| r.backup_id).into(),
            if self.restore.is_some_and(|r| r.any_user) { "1" } else { "0" }.into(),
        ];
        Invocation { keys, args }
    }
}

/// What the enqueue script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueReply {
    /// Recorded and appended; the stream entry id.
    Ok {
        /// Id of the new `jobs` stream entry.
        stream_id: String,
    },
    /// The idempotency key was seen before.
    Idempotent {
        /// The job the key was first used for.
        job_id: String,
        /// Whether the request fingerprint matches the first use.
        same_request: bool,
    },
    /// The session changed since it was read; read again and re-decide.
    Conflict {
        /// The generation now stored.
        current_generation: u64,
    },
    /// The user already has the maximum number of live sessions.
    LimitReached {
        /// How many live sessions the user has.
        live: u64,
    },
    /// The backup to restore from cannot be used.
    Restore(RestoreRefusal),
}

impl EnqueueReply {
    /// Parses the script's reply.
    pub fn parse(reply: &[String]) -> Result<Self, ReplyError> {
        let err = || ReplyError::new("enqueue", reply);
        let num = |s: &String| s.parse::<u64>().map_err(|_| err());
        match reply {
            [tag, id] if tag == "ok" => Ok(Self::Ok { stream_id: id.clone() }),
            [tag, job, same] if tag == "idem" => {
                Ok(Self::Idempotent { job_id: job.clone(), same_request: same == "same" })
            }
            [tag, g] if tag == "conflict" => Ok(Self::Conflict { current_generation: num(g)? }),
            [tag, n] if tag == "limit" => Ok(Self::LimitReached { live: num(n)? }),
            [tag, why, state] if tag == "restore" => Ok(Self::Restore(match why.as_str() {
                "missing" => RestoreRefusal::Missing,
                "gone" => RestoreRefusal::Gone,
                "unusable" => RestoreRefusal::Unusable(state.clone()),
                _ => return Err(err()),
            })),
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    #[test]
    fn invocation_matches_documented_order() {
        let job = Job::test("abc", Command::Create, 1);
        let payload = job.encode().expect("encode");
        let inv = Enqueue {
            job: &job,
            payload: &payload,
            expected_generation: 0,
            desired: DesiredState::Running,
            status: SessionState::Creating,
            user_id: "u@example.com",
            max_sessions_per_user: 3,
            workspace_url: "https://vs-code-abc.example.com",
            idempotency: Some(("scope", "k", "fp")),
            now_ms: 9,
            idle_timeout_secs: Some(600),
            restore: Some(RestoreFrom { backup_id: "b-g2", any_user: true }),
        }
        .invocation();
        assert_eq!(inv.keys.len(), 8);
        assert_eq!(inv.args.len(), 19);
        assert_eq!(inv.keys[7], "{sm}:backup:b-g2");
        assert_eq!((inv.args[17].as_slice(), inv.args[18].as_slice()), (&b"b-g2"[..], &b"1"[..]));
        assert_eq!(inv.keys[6], keys::LIFECYCLE_DUE);
        assert_eq!(inv.args[15], b"api");
        assert_eq!(inv.args[16], b"600");
        assert_eq!(inv.keys[0], "{sm}:session:abc");
        assert_eq!(inv.keys[5], "{sm}:idem:scope:k");
        assert_eq!(inv.args[3], payload);
        assert_eq!(inv.args[10], b"1");
    }

    #[test]
    fn parses_every_reply() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(EnqueueReply::parse(&s(&["ok", "1-0"])), Ok(EnqueueReply::Ok { stream_id: "1-0".into() }));
        assert_eq!(
            EnqueueReply::parse(&s(&["idem", "j", "different"])),
            Ok(EnqueueReply::Idempotent { job_id: "j".into(), same_request: false })
        );
        assert_eq!(EnqueueReply::parse(&s(&["conflict", "4"])), Ok(EnqueueReply::Conflict { current_generation: 4 }));
        assert_eq!(EnqueueReply::parse(&s(&["limit", "3"])), Ok(EnqueueReply::LimitReached { live: 3 }));
        assert_eq!(
            EnqueueReply::parse(&s(&["restore", "unusable", "failed"])),
            Ok(EnqueueReply::Restore(RestoreRefusal::Unusable("failed".into())))
        );
        assert_eq!(
            EnqueueReply::parse(&s(&["restore", "gone", "deleted"])),
            Ok(EnqueueReply::Restore(RestoreRefusal::Gone))
        );
        assert!(EnqueueReply::parse(&s(&["restore", "odd", ""])).is_err());
        assert!(EnqueueReply::parse(&s(&["what"])).is_err());
        assert!(EnqueueReply::parse(&s(&["conflict", "x"])).is_err());
    }
}
