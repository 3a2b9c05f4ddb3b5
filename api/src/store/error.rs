//! [`StoreError`]: why a store operation failed, typed so the HTTP layer
//! can tell "Redis is away or contended, retry" (503) from "Redis holds
//! something this version cannot use" (500) by matching, not by message.

use sm_redis::{CorruptRecord, Error as ClientError};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A round trip of the shared client failed: Redis away, a corrupt
    /// record, an unexpected script reply, no randomness, or contention.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The rate-limit script answered a different number of verdicts than
    /// buckets were sent.
    #[error("rate limit on {key}: {replies} replies for {buckets} buckets")]
    RateLimitReplies {
        /// The first bucket's key.
        key: String,
        /// Verdicts received.
        replies: usize,
        /// Buckets sent.
        buckets: usize,
    },
    /// One rate-limit verdict had an unexpected shape.
    #[error("rate limit on {key}: unexpected reply {reply:?}")]
    RateLimitReply {
        /// The bucket's key.
        key: String,
        /// What the script answered for it.
        reply: Vec<i64>,
    },
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        Self::Client(e.into())
    }
}

impl From<CorruptRecord> for StoreError {
    fn from(e: CorruptRecord) -> Self {
        Self::Client(e.into())
    }
}
