//! The lifecycle sweeper: idle sessions go to sleep (origin `idle`), unused
//! or too old ones are deleted (origin `ttl`), and a warning notice comes
//! `IDLE_WARNING_BEFORE` ahead of each sleep.
//!
//! Every worker runs it; there is no leader. Deadlines live in the
//! `{sm}:lifecycle-due` sorted set (the api's enqueue lowers a session's
//! score to "now" on every accepted command; the sweeper moves it to the
//! next deadline), so a sweep reads only due sessions with
//! `ZRANGEBYSCORE ... LIMIT` and costs in proportion to them.
//!
//! | file | what it holds |
//! |---|---|
//! | `decide.rs` | [`decide()`]: facts, policy, now → [`Action`] (pure) |
//! | `store.rs` | [`Store`]: lock, due read, facts pipeline, the sweep scripts |
//! | `sweep.rs` | [`Sweeper`]: one sweep, and the loop with jitter |
//! | `drift.rs` | [`drift::compare`]: live sessions vs listed objects → converge jobs, orphans (pure) |
//! | `orphans.rs` | [`orphans::plan`]: which orphaned objects go now, when a claim's backup is due (pure) |
//! | `reap.rs` | [`reap::Reaper`]: deletes orphans through the write gate (`RESYNC_DELETE_ORPHANS=true`) |
//! | `resync.rs` | [`Resync`]: drift repair at start and every `RESYNC_INTERVAL` |
//! | `retention.rs` | [`retention::plan`]: backup records, delete times, policy, now → files to remove, records to mark (pure) |
//! | `retention_store.rs` | [`RetentionStore`]: every backup record and its session's state; the `deleted` mark |
//! | `prune.rs` | [`Pruner`]: a backup retention pass (prune Job, then marks) at start and every `BACKUP_PRUNE_INTERVAL_SECS` |
//!
//! Not here: carrying out a sleep, delete or converge (the job runner
//! does, like any job).

mod decide;
pub mod drift;
pub mod orphans;
mod prune;
pub mod reap;
mod resync;
pub mod retention;
mod retention_store;
mod store;
mod sweep;

pub use decide::{Action, Facts, Planned, Policy, decide};
pub use prune::{PruneConfig, PruneError, PruneReport, Pruner};
pub use resync::{Resync, ResyncError, ResyncReport};
pub use retention_store::RetentionStore;
pub use store::{DueSession, Store, StoreError};
pub use sweep::{SweepConfig, SweepOutcome, SweepReport, Sweeper};
