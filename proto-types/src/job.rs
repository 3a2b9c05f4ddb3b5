//! The [`Job`] envelope: what the api puts on the `jobs` stream and the
//! worker reads back, and its MessagePack codec.
//!
//! The stream entry carries the encoded job in one field ([`crate::keys::PAYLOAD_FIELD`]);
//! the job hash (`{sm}:job:{id}`) carries its mutable state (see
//! [`crate::record`]). The envelope itself never changes after enqueue.
//!
//! Encoding is `rmp_serde::to_vec_named`: a map keyed by field name, so
//! fields may be added (always `#[serde(default)]`) without breaking the
//! other side during a rolling upgrade.

use serde::{Deserialize, Serialize};

use crate::id::{JobId, SessionId};
use crate::state::{Command, Origin};

/// One accepted command, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id of this job; clients poll `GET /jobs/{job_id}`.
    pub job_id: JobId,
    /// The session it acts on.
    pub session_id: SessionId,
    /// What the client asked for.
    pub command: Command,
    /// When the api accepted it, in milliseconds since the Unix epoch.
    pub requested_at_ms: u64,
    /// The session generation this job was issued for. The worker compares
    /// it with the session's current generation: an older job is
    /// `superseded` by a newer one and does nothing.
    pub generation: u64,
    /// The client's `Idempotency-Key`, if it sent one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// W3C `traceparent` of the request span that enqueued the job, so the
    /// worker's job span joins the same trace.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// W3C `tracestate` accompanying `traceparent`.
    #[serde(default)]
    pub tracestate: Option<String>,
    /// Who asked for it.
    #[serde(default)]
    pub origin: Origin,
}

/// A payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed (only on a serializer bug; kept typed anyway).
    #[error("could not encode job")]
    Encode(#[source] rmp_serde::encode::Error),
    /// The bytes are not a job this version understands: a poison entry.
    #[error("could not decode job payload")]
    Decode(#[source] rmp_serde::decode::Error),
}

impl Job {
    /// Encodes the job as a named MessagePack map.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(self).map_err(CodecError::Encode)
    }

    /// Decodes a job written by this or any older version.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        rmp_serde::from_slice(bytes).map_err(CodecError::Decode)
    }

    /// A fixture job for tests.
    #[doc(hidden)]
    pub fn test(session: &str, command: Command, generation: u64) -> Self {
        Job {
            job_id: JobId::from_random([generation as u8; 16]),
            session_id: SessionId::parse(session).expect("test fixtures use valid ids"),
            command,
            requested_at_ms: 1_700_000_000_000,
            generation,
            idempotency_key: None,
            traceparent: None,
            tracestate: None,
            origin: Origin::Api,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_command() {
        for &c in Command::ALL {
            let mut job = Job::test("0fa6debc", c, 7);
            job.idempotency_key = Some("key-1".into());
            job.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
            let bytes = job.encode().expect("encode");
            assert_eq!(Job::decode(&bytes).expect("decode"), job);
        }
    }

    /// The first shape of the envelope, before idempotency and tracing fields.
    #[derive(Serialize)]
    struct JobV0<'a> {
        job_id: &'a str,
        session_id: &'a str,
        command: &'a str,
        requested_at_ms: u64,
        generation: u64,
    }

    #[test]
    fn decodes_payload_written_by_older_shape() {
        let old = JobV0 {
            job_id: "0123456789abcdef0123456789abcdef",
            session_id: "0fa6debc",
            command: "scale-down",
            requested_at_ms: 5,
            generation: 3,
        };
        let bytes = rmp_serde::to_vec_named(&old).expect("encode");
        let job = Job::decode(&bytes).expect("old payload decodes");
        assert_eq!(job.command, Command::ScaleDown);
        assert_eq!(job.generation, 3);
        assert_eq!(job.idempotency_key, None);
        assert_eq!(job.traceparent, None);
        assert_eq!(job.origin, Origin::Api);
    }

    /// A newer shape with a field this version does not know.
    #[derive(Serialize)]
    struct JobNext<'a> {
        job_id: &'a str,
        session_id: &'a str,
        command: &'a str,
        requested_at_ms: u64,
        generation: u64,
        priority: u8,
    }

    #[test]
    fn ignores_fields_from_newer_shape() {
        let next = JobNext {
            job_id: "0123456789abcdef0123456789abcdef",
            session_id: "abc",
            command: "wake",
            requested_at_ms: 5,
            generation: 1,
            priority: 9,
        };
        let bytes = rmp_serde::to_vec_named(&next).expect("encode");
        assert_eq!(Job::decode(&bytes).expect("decodes").command, Command::Wake);
    }

    #[test]
    fn poison_payloads_are_typed_errors() {
        for bad in [&b""[..], b"\xc1", b"not msgpack at all", &rmp_serde::to_vec_named(&("x", 1)).expect("encode")] {
            assert!(matches!(Job::decode(bad), Err(CodecError::Decode(_))));
        }
        // Valid MessagePack, invalid session id.
        let old = JobV0 {
            job_id: "0123456789abcdef0123456789abcdef",
            session_id: "BAD ID",
            command: "wake",
            requested_at_ms: 0,
            generation: 1,
        };
        assert!(Job::decode(&rmp_serde::to_vec_named(&old).expect("encode")).is_err());
    }
}
