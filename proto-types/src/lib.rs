//! # proto-types: the contract between the api and the worker
//!
//! The session manager is two programs that never call each other: the
//! **api** validates requests and enqueues [`Job`]s to a Redis Stream; the
//! **worker** pool consumes them and converges Kubernetes to the session's
//! desired state. Everything both sides must agree on lives here, and only
//! here:
//!
//! | module | what it fixes |
//! |---|---|
//! | [`id`] | [`SessionId`] (DNS-label safe, validated on parse) and [`JobId`] |
//! | [`state`] | [`Command`], [`JobState`], [`SessionState`], [`DesiredState`], [`BackupKind`] |
//! | [`machine`] | the session state machine: which command is accepted in which state ([`machine::decide`]) |
//! | [`job`] | the [`Job`] envelope and its MessagePack codec |
//! | [`event`] | the status [`Event`] published on the `events` stream |
//! | [`notice`] | the [`Notice`] (idle warning, orphan report) published on the `events` stream |
//! | [`keys`] | every Redis key, stream and group name |
//! | [`record`] | field names of the job and session hashes |
//! | [`scripts`] | the Lua scripts that make each queue step atomic, with their keys and argument encoding |
//!
//! This crate is pure: serde, rmp-serde and thiserror, no tokio, redis or
//! kube. The scripts are data (their text plus typed argument builders); the
//! adapters that run them live in `api` (enqueue) and `worker` (consume,
//! reclaim, lease, finish).
//!
//! ## Compatibility rules
//! - Payloads are encoded with `rmp_serde::to_vec_named` (field names on the
//!   wire), so fields can be added and reordered.
//! - Every field added after the first release is `#[serde(default)]`, so a
//!   new binary reads what an old one wrote, and unknown fields are ignored
//!   so an old binary reads what a new one wrote.
//! - Enum variants are never renamed; their wire names are the kebab-case
//!   strings given by `as_str`.

pub mod event;
pub mod id;
pub mod job;
pub mod keys;
pub mod machine;
pub mod notice;
pub mod record;
pub mod scripts;
pub mod state;

pub use event::Event;
pub use id::{JobId, SessionId};
pub use job::{CodecError, Job};
pub use machine::{Decision, Refusal};
pub use notice::{Notice, NoticeKind};
pub use state::{BackupKind, Command, DesiredState, JobState, Origin, SessionState};
