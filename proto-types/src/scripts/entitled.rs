//! The entitled script: the last check before a worker creates a
//! Kubernetes object.
//!
//! A stale worker cannot be fenced by an object that does not exist yet
//! (it was never created, or a newer holder deleted it), so right before
//! each create the worker asks Redis, in one atomic step, whether its lease
//! is still the current one, the session's generation is still its job's,
//! and the session's desired state is not `deleted`. Any other answer means
//! a newer holder owns the session and the create must not happen. The
//! rest of the fence (annotations, resourceVersion preconditions) is the
//! worker's (`worker/README.md`).

use super::lease::Lease;
use super::{Invocation, ReplyError};
use crate::keys;

/// Script source.
pub const SOURCE: &str = include_str!("entitled.lua");

/// The backup record a request's backup create writes as `pending`
/// ([`crate::record::backup`]), indexed for its user and session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBackup<'a> {
    /// The backup's id ([`crate::record::backup::id`]).
    pub id: &'a str,
    /// What is about to be created.
    pub kind: crate::BackupKind,
    /// The session's owner.
    pub user_id: &'a str,
    /// Now, in ms since the epoch (its `created_at_ms`).
    pub now_ms: u64,
}

/// Keys and arguments: the lease presented as its stored value, the
/// generation the job converges, and whether the object is the delete's own
/// backup Job (allowed while desired is `deleted`) rather than a workspace
/// object (refused then); for a request's backup, the record to write
/// `pending` once entitled.
pub fn invocation(lease: &Lease, generation: u64, backup: bool, pending: Option<&PendingBackup<'_>>) -> Invocation {
    let purpose: &[u8] = if backup { b"backup" } else { b"workspace" };
    let mut keys = vec![keys::lease(&lease.session_id), keys::session(&lease.session_id)];
    let mut args = vec![lease.value().into_bytes(), generation.to_string().into_bytes(), purpose.to_vec()];
    if let Some(p) = pending.filter(|_| backup) {
        keys.extend([keys::backup(p.id), keys::user_backups(p.user_id), keys::session_backups(&lease.session_id)]);
        args.extend([
            p.id.as_bytes().to_vec(),
            p.kind.as_str().as_bytes().to_vec(),
            lease.session_id.as_bytes().to_vec(),
            p.user_id.as_bytes().to_vec(),
            p.now_ms.to_string().into_bytes(),
        ]);
    }
    Invocation { keys, args }
}

/// What the entitled script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntitledReply {
    /// The lease is current, the generation is the job's, desired is not `deleted`.
    Entitled,
    /// The lease is no longer this holder's.
    Lost,
    /// The session moved on to this generation.
    Superseded {
        /// The session's generation.
        generation: u64,
    },
    /// The session is (to be) deleted, or gone.
    Deleted,
}

impl EntitledReply {
    /// Parses the script's reply.
    pub fn parse(reply: &[String]) -> Result<Self, ReplyError> {
        let err = || ReplyError::new("entitled", reply);
        match reply {
            [tag] if tag == "entitled" => Ok(Self::Entitled),
            [tag] if tag == "lost" => Ok(Self::Lost),
            [tag] if tag == "deleted" => Ok(Self::Deleted),
            [tag, g] if tag == "superseded" => Ok(Self::Superseded { generation: g.parse().map_err(|_| err())? }),
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
    fn parses_replies_and_builds_keys() {
        assert_eq!(EntitledReply::parse(&s(&["entitled"])), Ok(EntitledReply::Entitled));
        assert_eq!(EntitledReply::parse(&s(&["lost"])), Ok(EntitledReply::Lost));
        assert_eq!(EntitledReply::parse(&s(&["deleted"])), Ok(EntitledReply::Deleted));
        assert_eq!(EntitledReply::parse(&s(&["superseded", "4"])), Ok(EntitledReply::Superseded { generation: 4 }));
        assert!(EntitledReply::parse(&s(&["superseded", "x"])).is_err());
        let lease = Lease { session_id: "abc".into(), owner: "w:1-0".into(), token: 7 };
        let inv = invocation(&lease, 3, false, None);
        assert_eq!(inv.keys, ["{sm}:lease:abc", "{sm}:session:abc"]);
        assert_eq!(inv.args, [b"7 w:1-0".to_vec(), b"3".to_vec(), b"workspace".to_vec()]);
    }
}
