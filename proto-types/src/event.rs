//! The status [`Event`] the worker publishes on the `events` stream when a
//! job reaches a terminal state (and when it starts running).
//!
//! Consumers: anything that wants to follow sessions without polling
//! (dashboards, the tracing tests), and the per-session KEDA trigger, whose
//! demand key the finish script keeps in step with the event it publishes.

use serde::{Deserialize, Serialize};

use crate::id::{JobId, SessionId};
use crate::job::CodecError;
use crate::state::{Command, JobState, Origin, SessionState};

/// One status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The job that changed.
    pub job_id: JobId,
    /// Its session.
    pub session_id: SessionId,
    /// Its command.
    pub command: Command,
    /// The job's new state.
    pub job_state: JobState,
    /// The session's status after the change.
    pub session_state: SessionState,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Error message for `failed` / `dead`.
    #[serde(default)]
    pub error: Option<String>,
    /// Who asked for the job (older events carry none: `api`).
    #[serde(default)]
    pub origin: Origin,
}

impl Event {
    /// Encodes the event as a named MessagePack map.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(self).map_err(CodecError::Encode)
    }

    /// Decodes an event.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        rmp_serde::from_slice(bytes).map_err(CodecError::Decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::JobId;

    #[test]
    fn round_trips() {
        let e = Event {
            job_id: JobId::from_random([1; 16]),
            session_id: SessionId::parse("abc").expect("valid"),
            command: Command::Delete,
            job_state: JobState::Failed,
            session_state: SessionState::Failed,
            at_ms: 42,
            error: Some("backup job failed".into()),
            origin: Origin::Ttl,
        };
        assert_eq!(Event::decode(&e.encode().expect("encode")).expect("decode"), e);
    }
}
