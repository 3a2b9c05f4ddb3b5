//! A [`Notice`]: something the worker announces on the `events` stream
//! that is not a job's status change, in its own entry field
//! ([`crate::keys::NOTICE_FIELD`]), so readers of job [`crate::Event`]s
//! skip it. Today: the idle warning, published `IDLE_WARNING_BEFORE`
//! ahead of an automatic sleep so a front end can say "your workspace
//! sleeps in 2 minutes"; and the drift repair's orphan report (objects
//! labelled as ours whose session is unknown or deleted, with their names).

use serde::{Deserialize, Serialize};

use crate::id::SessionId;
use crate::job::CodecError;
use crate::state::Origin;

/// What a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// The session will be put to sleep at `action_at_ms` unless it is used.
    IdleWarning,
    /// Objects labelled with this session id exist, but the session is
    /// unknown or deleted (names in `objects`); reported, not deleted unless
    /// the worker runs with `RESYNC_DELETE_ORPHANS=true`.
    Orphaned,
}

/// One announcement about a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The session.
    pub session_id: SessionId,
    /// What is announced.
    pub kind: NoticeKind,
    /// When it was announced, ms since the epoch.
    pub at_ms: u64,
    /// When the announced action happens at the earliest, ms since the epoch.
    pub action_at_ms: u64,
    /// Who will act.
    #[serde(default)]
    pub origin: Origin,
    /// `kind/name` of the objects concerned (orphan reports; empty otherwise).
    #[serde(default)]
    pub objects: Vec<String>,
}

impl Notice {
    /// Encodes the notice as a named MessagePack map.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(self).map_err(CodecError::Encode)
    }

    /// Decodes a notice.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        rmp_serde::from_slice(bytes).map_err(CodecError::Decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let n = Notice {
            session_id: SessionId::parse("abc").expect("valid"),
            kind: NoticeKind::IdleWarning,
            at_ms: 1,
            action_at_ms: 120_001,
            origin: Origin::Idle,
            objects: Vec::new(),
        };
        assert_eq!(Notice::decode(&n.encode().expect("encode")).expect("decode"), n);
        let o = Notice {
            kind: NoticeKind::Orphaned,
            origin: Origin::Drift,
            objects: vec!["Deployment/ws-abc".into()],
            ..n
        };
        assert_eq!(Notice::decode(&o.encode().expect("encode")).expect("decode"), o);
    }
}
