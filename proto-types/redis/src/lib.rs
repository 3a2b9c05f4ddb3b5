//! # sm-redis: the Redis half of the shared contract
//!
//! `proto-types` fixes *what* the api and the worker write to Redis (keys,
//! hash fields, script texts and their arguments) and stays pure. This
//! crate is the one piece of code that *talks* to Redis in that contract's
//! terms, so the api, the worker and the tests cannot each grow their own
//! copy that drifts:
//!
//! | module | what it holds |
//! |---|---|
//! | [`script`] | [`Script`]: runs a [`proto_types::scripts::Invocation`] (`EVALSHA`; the text is sent only until Redis caches it, and again after `NOSCRIPT`), alone or pipelined with other commands |
//! | [`hashes`] | [`SessionRecord`] and [`JobRecord`]: the session and job hashes, parsed once, and their reads |
//! | [`enqueue`] | [`EnqueueClient`]: read, decide with [`proto_types::machine::decide`], run the enqueue script, retry on `Conflict` |
//! | [`error`] | [`Error`]: a round trip failed, or came back in a shape this version cannot use |
//!
//! Not here: HTTP (the api), the consumer side of the queue (the worker's
//! `queue` adapter: XREADGROUP, XACK, XAUTOCLAIM) and anything Kubernetes.

pub mod enqueue;
pub mod error;
pub mod hashes;
pub mod script;

pub use enqueue::{
    Accepted, Attempt, ENQUEUE_ATTEMPTS, EnqueueClient, EnqueueError, EnqueueOutcome, EnqueueRequest, Prefetched,
};
pub use error::{CorruptRecord, Error, FieldError};
pub use hashes::{JobRecord, SessionRecord, Transition};
pub use script::Script;
