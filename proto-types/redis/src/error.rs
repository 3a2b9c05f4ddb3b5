//! [`Error`]: why a round trip of the shared client failed, one variant per
//! cause, each keeping its source, so a caller can tell "Redis is away"
//! (retry later) from "Redis holds something this version cannot read"
//! (a bug or a version skew) without looking at messages.

use proto_types::CodecError;
use proto_types::id::IdError;
use proto_types::scripts::ReplyError;
use proto_types::state::UnknownName;

/// A round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis was unreachable, timed out or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored record is not in a shape this version understands.
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    /// A script reply had an unexpected shape.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// A job could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The OS random source failed.
    #[error("no randomness available")]
    Random,
    /// Concurrent commands kept winning the race.
    #[error("session changed concurrently {attempts} times in a row")]
    Contended {
        /// How many attempts were made.
        attempts: usize,
    },
}

/// A stored record (hash or key) holds a value this version cannot parse.
#[derive(Debug, thiserror::Error)]
#[error("record {key} is corrupt: field {field}: {source}")]
pub struct CorruptRecord {
    /// The Redis key.
    pub key: String,
    /// The field (or `value` for a plain key).
    pub field: &'static str,
    /// What the value failed to parse as.
    #[source]
    pub source: FieldError,
}

/// Why one stored value did not parse.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// Not a wire name of the expected enum.
    #[error(transparent)]
    Name(#[from] UnknownName),
    /// Not a valid session or job id.
    #[error(transparent)]
    Id(#[from] IdError),
}

impl CorruptRecord {
    /// The value at `key`/`field` failed to parse.
    pub fn new(key: impl Into<String>, field: &'static str, source: impl Into<FieldError>) -> Self {
        Self { key: key.into(), field, source: source.into() }
    }
}
