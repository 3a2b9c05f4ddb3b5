//! The session state machine, as a pure function.
//!
//! [`decide`] answers one question for the api, before anything is written:
//! given what the session is now (or that it does not exist) and the command
//! a client sent, is the command accepted, and if so which desired state
//! does it set and what status should clients see right away? Refusals are
//! typed so the api can map them to 404 / 409 without string matching.
//!
//! The machine is level-triggered: a command sets the *desired* state; the
//! worker converges to whatever is desired when it runs. So repeating a
//! command whose state is already desired is accepted (it converges at once)
//! rather than refused, and a `Failed` session accepts every command again
//! (that is how a failed create or backup is retried).
//!
//! It does not decide anything about Kubernetes; that is the worker's plan.

use crate::state::{Command, DesiredState, SessionState};

/// What the api knows about an existing session when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    /// Observed status.
    pub status: SessionState,
    /// Currently desired state.
    pub desired: DesiredState,
}

/// An accepted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The desired state to record (and for the worker to converge to).
    pub desired: DesiredState,
    /// The status clients see until the worker reports.
    pub status: SessionState,
}

/// A refused command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Any command but create, for a session that does not exist.
    #[error("session not found")]
    NotFound,
    /// Create for an id that is already taken.
    #[error("session already exists")]
    AlreadyExists,
    /// The command cannot apply in the session's current state.
    #[error("cannot {command} a session that is {current}")]
    InvalidState {
        /// The refused command.
        command: Command,
        /// The session's current status.
        current: SessionState,
    },
}

/// Decides whether `command` is accepted for a session in `current` (`None`
/// when no such session exists).
pub fn decide(current: Option<SessionView>, command: Command) -> Result<Decision, Refusal> {
    use Command as C;
    use SessionState as S;

    let Some(view) = current else {
        return match command {
            C::Create => Ok(Decision { desired: DesiredState::Running, status: S::Creating }),
            _ => Err(Refusal::NotFound),
        };
    };
    let desired = command.desired();
    let refuse = || Err(Refusal::InvalidState { command, current: view.status });
    let status = match (command, view.status) {
        (C::Create, _) => return Err(Refusal::AlreadyExists),
        // Once deletion has begun, only delete is accepted (it retries or converges).
        (C::Delete, S::Deleted) => S::Deleted,
        (C::Delete, _) => S::Deleting,
        (_, S::Deleting | S::Deleted) => return refuse(),
        // An on-demand backup needs the workspace asleep, and asleep to stay:
        // the archive is then consistent (no process writes while it is taken).
        (C::Backup, S::Sleeping) if view.desired == DesiredState::Sleeping => S::Sleeping,
        (C::Backup, _) => return refuse(),
        // A failed delete keeps the volume; the only way forward is delete again.
        (_, S::Failed) if view.desired == DesiredState::Deleted => return refuse(),
        (C::Wake | C::ScaleUp, S::Sleeping | S::Failed) => S::Waking,
        (C::Wake | C::ScaleUp, s) => s,
        (C::Sleep | C::ScaleDown, s) => s,
    };
    Ok(Decision { desired, status })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command as C;
    use DesiredState as D;
    use SessionState as S;

    fn view(status: S, desired: D) -> Option<SessionView> {
        Some(SessionView { status, desired })
    }

    /// Desired state that goes with each status in normal operation.
    fn usual_desired(s: S) -> D {
        match s {
            S::Creating | S::Running | S::Waking | S::Failed => D::Running,
            S::Sleeping => D::Sleeping,
            S::Deleting | S::Deleted => D::Deleted,
        }
    }

    #[test]
    fn missing_session_accepts_only_create() {
        for &c in Command::ALL {
            let got = decide(None, c);
            if c == C::Create {
                assert_eq!(got, Ok(Decision { desired: D::Running, status: S::Creating }));
            } else {
                assert_eq!(got, Err(Refusal::NotFound), "{c}");
            }
        }
    }

    /// The whole table: every status x every command, with the usual desired state.
    #[test]
    fn exhaustive_table() {
        // (status, command) -> Some(status shown) or None for refused.
        let table: &[(S, C, Option<S>)] = &[
            (S::Creating, C::Sleep, Some(S::Creating)),
            (S::Creating, C::Wake, Some(S::Creating)),
            (S::Creating, C::ScaleUp, Some(S::Creating)),
            (S::Creating, C::ScaleDown, Some(S::Creating)),
            (S::Creating, C::Delete, Some(S::Deleting)),
            (S::Creating, C::Backup, None),
            (S::Running, C::Sleep, Some(S::Running)),
            (S::Running, C::Wake, Some(S::Running)),
            (S::Running, C::ScaleUp, Some(S::Running)),
            (S::Running, C::ScaleDown, Some(S::Running)),
            (S::Running, C::Delete, Some(S::Deleting)),
            (S::Running, C::Backup, None),
            (S::Sleeping, C::Sleep, Some(S::Sleeping)),
            (S::Sleeping, C::Wake, Some(S::Waking)),
            (S::Sleeping, C::ScaleUp, Some(S::Waking)),
            (S::Sleeping, C::ScaleDown, Some(S::Sleeping)),
            (S::Sleeping, C::Delete, Some(S::Deleting)),
            (S::Sleeping, C::Backup, Some(S::Sleeping)),
            (S::Waking, C::Sleep, Some(S::Waking)),
            (S::Waking, C::Wake, Some(S::Waking)),
            (S::Waking, C::ScaleUp, Some(S::Waking)),
            (S::Waking, C::ScaleDown, Some(S::Waking)),
            (S::Waking, C::Delete, Some(S::Deleting)),
            (S::Waking, C::Backup, None),
            (S::Deleting, C::Sleep, None),
            (S::Deleting, C::Wake, None),
            (S::Deleting, C::ScaleUp, None),
            (S::Deleting, C::ScaleDown, None),
            (S::Deleting, C::Delete, Some(S::Deleting)),
            (S::Deleting, C::Backup, None),
            (S::Deleted, C::Sleep, None),
            (S::Deleted, C::Wake, None),
            (S::Deleted, C::ScaleUp, None),
            (S::Deleted, C::ScaleDown, None),
            (S::Deleted, C::Delete, Some(S::Deleted)),
            (S::Deleted, C::Backup, None),
            (S::Failed, C::Sleep, Some(S::Failed)),
            (S::Failed, C::Wake, Some(S::Waking)),
            (S::Failed, C::ScaleUp, Some(S::Waking)),
            (S::Failed, C::ScaleDown, Some(S::Failed)),
            (S::Failed, C::Delete, Some(S::Deleting)),
            (S::Failed, C::Backup, None),
        ];
        // The table covers every pair except create (tested below).
        assert_eq!(table.len(), SessionState::ALL.len() * (Command::ALL.len() - 1));
        for &(status, command, want) in table {
            let got = decide(view(status, usual_desired(status)), command);
            match want {
                Some(shown) => {
                    assert_eq!(got, Ok(Decision { desired: command.desired(), status: shown }), "{status} + {command}")
                }
                None => {
                    assert_eq!(got, Err(Refusal::InvalidState { command, current: status }), "{status} + {command}")
                }
            }
        }
    }

    #[test]
    fn create_on_existing_is_refused_in_every_state() {
        for &s in SessionState::ALL {
            assert_eq!(decide(view(s, usual_desired(s)), C::Create), Err(Refusal::AlreadyExists));
        }
    }

    #[test]
    fn failed_delete_only_accepts_delete_again() {
        let v = view(S::Failed, D::Deleted);
        for c in [C::Sleep, C::Wake, C::ScaleUp, C::ScaleDown] {
            assert_eq!(decide(v, c), Err(Refusal::InvalidState { command: c, current: S::Failed }));
        }
        assert_eq!(decide(v, C::Delete), Ok(Decision { desired: D::Deleted, status: S::Deleting }));
    }

    #[test]
    fn a_backup_needs_a_session_asleep_and_meant_to_stay_so() {
        // Asleep but already asked to wake: the workspace is about to run.
        assert_eq!(
            decide(view(S::Sleeping, D::Running), C::Backup),
            Err(Refusal::InvalidState { command: C::Backup, current: S::Sleeping })
        );
        assert_eq!(
            decide(view(S::Sleeping, D::Sleeping), C::Backup),
            Ok(Decision { desired: D::Sleeping, status: S::Sleeping })
        );
    }

    #[test]
    fn refusal_messages_name_the_state() {
        let r = Refusal::InvalidState { command: C::Wake, current: S::Deleted };
        assert_eq!(r.to_string(), "cannot wake a session that is deleted");
    }
}
