//! The runner's decisions, as pure functions: what to do with a delivered
//! entry, with a started job, and with the executor's result. No I/O here;
//! the job loop (`job.rs`) matches on these and acts.

use proto_types::scripts::start::SessionSnapshot;
use proto_types::{DesiredState, JobState, SessionState};

use crate::executor::{ExecError, Outcome};

/// What to do with a delivered entry before starting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triage {
    /// Start it.
    Run,
    /// Move it to the dead-letter stream, for this reason.
    DeadLetter(String),
    /// Leave it pending: it will be redelivered after the lease idle time
    /// (an undecodable payload below the delivery limit).
    LeavePending,
}

/// Triage by delivery count and whether the payload decoded.
///
/// An entry delivered more than `max_deliveries` times is dead. An
/// undecodable payload is dead once it reached the limit (retrying cannot
/// make it decode, but a rolling upgrade might bring a worker that can, so
/// it gets the same number of chances).
pub fn triage(deliveries: u64, max_deliveries: u64, decoded: bool) -> Triage {
    if deliveries > max_deliveries {
        return Triage::DeadLetter(format!("delivered {deliveries} times (limit {max_deliveries})"));
    }
    if !decoded {
        if deliveries >= max_deliveries {
            return Triage::DeadLetter(format!("undecodable payload after {deliveries} deliveries"));
        }
        return Triage::LeavePending;
    }
    Triage::Run
}

/// What a started job should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Converge the session to its current desired state.
    Converge(DesiredState),
    /// A newer job exists for the session: finish `superseded`, do nothing.
    Superseded,
    /// The session does not exist (any more): finish `failed` without
    /// touching a session record.
    Orphaned,
}

/// Level-triggered classification: compare the job's generation with the
/// session's current one.
pub fn classify(job_generation: u64, session_generation: u64, desired: Option<DesiredState>) -> Action {
    match desired {
        None => Action::Orphaned,
        Some(_) if session_generation == 0 => Action::Orphaned,
        Some(_) if job_generation < session_generation => Action::Superseded,
        Some(d) => Action::Converge(d),
    }
}

/// [`classify`] on a start-script snapshot.
pub fn classify_snapshot(job_generation: u64, s: &SessionSnapshot) -> Action {
    classify(job_generation, s.generation, s.desired)
}

/// How a job that ran ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Record this terminal state and session update.
    Finish {
        /// Job state.
        state: JobState,
        /// Session status to record.
        status: SessionState,
        /// Ready replicas.
        replicas: u32,
        /// Backup file, if one was written.
        backup_file: Option<String>,
        /// Error message, if failed.
        error: Option<String>,
    },
    /// Retries exhausted on a retryable error: leave the entry pending so it
    /// is reclaimed and redelivered (counting toward the delivery limit).
    LeavePending {
        /// The last error.
        error: String,
    },
}

/// Maps the executor's result (after retries) to how the job ends.
pub fn ending(result: Result<Outcome, ExecError>) -> Ending {
    match result {
        Ok(o) => Ending::Finish {
            state: JobState::Succeeded,
            status: o.status,
            replicas: o.replicas,
            backup_file: o.backup_file,
            error: None,
        },
        Err(ExecError::Permanent { message, status }) => {
            Ending::Finish { state: JobState::Failed, status, replicas: 0, backup_file: None, error: Some(message) }
        }
        Err(ExecError::Retryable { message }) => Ending::LeavePending { error: message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triage_by_deliveries_and_decoding() {
        assert_eq!(triage(1, 5, true), Triage::Run);
        assert_eq!(triage(5, 5, true), Triage::Run);
        assert!(matches!(triage(6, 5, true), Triage::DeadLetter(r) if r.contains("6 times")));
        assert_eq!(triage(1, 5, false), Triage::LeavePending);
        assert!(matches!(triage(5, 5, false), Triage::DeadLetter(r) if r.contains("undecodable")));
        assert!(matches!(triage(9, 5, false), Triage::DeadLetter(_)));
    }

    #[test]
    fn stale_jobs_are_superseded_current_ones_converge_to_latest_desire() {
        use DesiredState::*;
        assert_eq!(classify(3, 3, Some(Sleeping)), Action::Converge(Sleeping));
        assert_eq!(classify(2, 3, Some(Sleeping)), Action::Superseded);
        assert_eq!(classify(1, 0, None), Action::Orphaned);
        assert_eq!(classify(1, 0, Some(Running)), Action::Orphaned);
        // A job newer than the record (record rewritten): still converge.
        assert_eq!(classify(4, 3, Some(Running)), Action::Converge(Running));
    }

    #[test]
    fn endings() {
        let ok = Outcome { status: SessionState::Sleeping, replicas: 0, backup_file: None };
        assert!(matches!(
            ending(Ok(ok)),
            Ending::Finish { state: JobState::Succeeded, status: SessionState::Sleeping, .. }
        ));
        let perm = ExecError::Permanent { message: "forbidden".into(), status: SessionState::Failed };
        assert_eq!(
            ending(Err(perm)),
            Ending::Finish {
                state: JobState::Failed,
                status: SessionState::Failed,
                replicas: 0,
                backup_file: None,
                error: Some("forbidden".into())
            }
        );
        assert_eq!(
            ending(Err(ExecError::Retryable { message: "503".into() })),
            Ending::LeavePending { error: "503".into() }
        );
    }
}
