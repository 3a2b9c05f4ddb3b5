//! Typed errors of the Redis queue adapter, classified retryable or
//! permanent.

use proto_types::scripts::ReplyError;

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or answered with an error. Usually
    /// transient (restart, failover, timeout): retry with backoff.
    #[error("redis {op} failed")]
    Redis {
        /// The operation (command or script name).
        op: &'static str,
        /// The client error.
        #[source]
        source: redis::RedisError,
    },
    /// The consumer group (or the stream) is gone, e.g. Redis restarted
    /// without persistence. Recreate it and retry.
    #[error("consumer group missing during {op}")]
    NoGroup {
        /// The operation.
        op: &'static str,
    },
    /// A script answered something its contract does not allow: a version
    /// mismatch between worker and scripts. Retrying cannot help.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// A reply had an unexpected shape.
    #[error("unexpected reply to {op}: {detail}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl QueueError {
    /// Wraps a client error, recognising a missing group.
    pub(crate) fn redis(op: &'static str, source: redis::RedisError) -> Self {
        if source.code() == Some("NOGROUP") { Self::NoGroup { op } } else { Self::Redis { op, source } }
    }

    /// Whether retrying the same operation later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Redis { .. } | Self::NoGroup { .. })
    }
}
