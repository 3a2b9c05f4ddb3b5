//! What the sweeper does with one due session: a pure function of the
//! session as read ([`Facts`]), the lifecycle [`Policy`] and the time.
//!
//! It never reads or writes anything; `sweep.rs` performs the [`Action`],
//! and the guarded enqueue re-checks the facts it was decided on. Not
//! here: which sessions are due (the `lifecycle-due` set says) and how a
//! sleep or delete is carried out (the job runner's).

use proto_types::{DesiredState, SessionState};

/// The lifecycle settings, in ms; 0 switches a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Idle time after which a running session is put to sleep
    /// (`IDLE_SLEEP_AFTER`), unless the session carries its own.
    pub idle_sleep_after_ms: u64,
    /// How long before the sleep the warning is published (`IDLE_WARNING_BEFORE`).
    pub idle_warning_before_ms: u64,
    /// Unused time after which a session is deleted (`SESSION_TTL`).
    pub session_ttl_ms: u64,
    /// Age after which a session is deleted, used or not (`SESSION_MAX_AGE`).
    pub max_age_ms: u64,
    /// Earliest re-check of a session that cannot be acted on yet (one sweep interval).
    pub recheck_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            idle_sleep_after_ms: 15 * 60_000,
            idle_warning_before_ms: 2 * 60_000,
            session_ttl_ms: 86_400_000,
            max_age_ms: 0,
            recheck_ms: 10_000,
        }
    }
}

/// One session as the sweeper read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Observed status.
    pub status: SessionState,
    /// Desired state.
    pub desired: DesiredState,
    /// Creation time, ms.
    pub created_at_ms: u64,
    /// Last use, ms: the larger of the session's `last_activity_ms` and its
    /// score in the activity set.
    pub last_use_ms: u64,
    /// The session's own idle timeout, seconds (0: never sleeps by itself).
    pub idle_timeout_secs: Option<u64>,
    /// The idle warning already published: `(last use it was for, when)`.
    pub warned: Option<(u64, u64)>,
}

/// An automatic action, as shown in `GET /session/{uuid}` (`next_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    /// An idle sleep.
    Sleep,
    /// A TTL or maximum-age delete.
    Delete,
}

impl Planned {
    /// Wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sleep => "sleep",
            Self::Delete => "delete",
        }
    }
}

/// What to do with a due session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing will ever be due (deleted, or every rule off): drop it from the due set.
    Forget,
    /// Look again at `due_ms`; `next` is the action expected then or later.
    Wait {
        /// When to look again.
        due_ms: u64,
        /// The next automatic action and its time.
        next: (Planned, u64),
    },
    /// Publish the idle warning for the idle period since `last_use_ms`;
    /// the sleep follows at `sleep_at_ms`.
    Warn {
        /// Last use the warning is for.
        last_use_ms: u64,
        /// When the sleep happens at the earliest.
        sleep_at_ms: u64,
    },
    /// Enqueue a sleep (origin `idle`), if the session is still unused since `last_use_ms`.
    Sleep {
        /// Last use decided on.
        last_use_ms: u64,
    },
    /// Enqueue a delete (origin `ttl`); `last_use_ms` is re-checked for a TTL
    /// delete, not for a maximum-age one.
    Delete {
        /// Last use decided on (`None`: maximum age, no use matters).
        last_use_ms: Option<u64>,
    },
}

/// The decision for one due session (`None`: no such session).
pub fn decide(facts: Option<&Facts>, policy: &Policy, now_ms: u64) -> Action {
    let Some(f) = facts else { return Action::Forget };
    if matches!(f.status, SessionState::Deleting | SessionState::Deleted) || f.desired == DesiredState::Deleted {
        return Action::Forget;
    }
    let on = |ms: u64, at: u64| (ms > 0).then(|| at.saturating_add(ms));
    let max_age_at = on(policy.max_age_ms, f.created_at_ms);
    let ttl_at = on(policy.session_ttl_ms, f.last_use_ms);
    let settled = matches!(f.status, SessionState::Running | SessionState::Sleeping | SessionState::Failed);
    if settled {
        if max_age_at.is_some_and(|t| t <= now_ms) {
            return Action::Delete { last_use_ms: None };
        }
        if ttl_at.is_some_and(|t| t <= now_ms) {
            return Action::Delete { last_use_ms: Some(f.last_use_ms) };
        }
    }
    let delete_at = [max_age_at, ttl_at].into_iter().flatten().min();

    // (when to look, when the sleep happens)
    let mut sleep: Option<(u64, u64)> = None;
    let idle_ms = f.idle_timeout_secs.map_or(policy.idle_sleep_after_ms, |s| s.saturating_mul(1000));
    if idle_ms > 0 && f.status == SessionState::Running && f.desired == DesiredState::Running {
        let sleep_at = f.last_use_ms.saturating_add(idle_ms);
        let warning = policy.idle_warning_before_ms;
        let warned_at = f.warned.filter(|(last, _)| *last == f.last_use_ms).map(|(_, at)| at);
        match (warning, warned_at) {
            (0, _) if sleep_at <= now_ms => return Action::Sleep { last_use_ms: f.last_use_ms },
            (0, _) => sleep = Some((sleep_at, sleep_at)),
            (_, Some(at)) => {
                // The user was promised the full warning time.
                let effective = sleep_at.max(at.saturating_add(warning));
                if effective <= now_ms {
                    return Action::Sleep { last_use_ms: f.last_use_ms };
                }
                sleep = Some((effective, effective));
            }
            (_, None) => {
                let warn_at = sleep_at.saturating_sub(warning);
                if warn_at <= now_ms {
                    return Action::Warn {
                        last_use_ms: f.last_use_ms,
                        sleep_at_ms: sleep_at.max(now_ms.saturating_add(warning)),
                    };
                }
                sleep = Some((warn_at, sleep_at));
            }
        }
    }

    let next = match (sleep, delete_at) {
        (Some((due, at)), Some(d)) if d < at => (due.min(d), (Planned::Delete, d)),
        (Some((due, at)), _) => (due, (Planned::Sleep, at)),
        (None, Some(d)) => (d, (Planned::Delete, d)),
        (None, None) => return Action::Forget,
    };
    let (due, next) = next;
    // A job is in flight: its end changes the deadlines (a created session
    // starts idling, a woken one too), and it bumps no generation, so look
    // again after a sweep interval rather than at a deadline computed now.
    let recheck = now_ms.saturating_add(policy.recheck_ms.max(1));
    let due = if in_flight(f) || due <= now_ms { recheck } else { due };
    Action::Wait { due_ms: due, next }
}

/// Whether a job is still converging the session (its status is not the
/// settled one for its desired state).
fn in_flight(f: &Facts) -> bool {
    !matches!(
        (f.status, f.desired),
        (SessionState::Running, DesiredState::Running)
            | (SessionState::Sleeping, DesiredState::Sleeping)
            | (SessionState::Failed, _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn running(last_use_ms: u64) -> Facts {
        Facts {
            status: SessionState::Running,
            desired: DesiredState::Running,
            created_at_ms: 0,
            last_use_ms,
            idle_timeout_secs: None,
            warned: None,
        }
    }

    fn policy() -> Policy {
        Policy::default()
    }

    #[test]
    fn an_active_session_waits_for_its_warning_time() {
        let a = decide(Some(&running(0)), &policy(), 5 * MIN);
        assert_eq!(a, Action::Wait { due_ms: 13 * MIN, next: (Planned::Sleep, 15 * MIN) });
    }

    #[test]
    fn the_warning_comes_first_then_the_sleep() {
        let f = running(0);
        assert_eq!(decide(Some(&f), &policy(), 13 * MIN), Action::Warn { last_use_ms: 0, sleep_at_ms: 15 * MIN });
        let warned = Facts { warned: Some((0, 13 * MIN)), ..f.clone() };
        assert_eq!(
            decide(Some(&warned), &policy(), 14 * MIN),
            Action::Wait { due_ms: 15 * MIN, next: (Planned::Sleep, 15 * MIN) }
        );
        assert_eq!(decide(Some(&warned), &policy(), 15 * MIN), Action::Sleep { last_use_ms: 0 });
    }

    #[test]
    fn a_late_sweep_still_warns_and_gives_the_full_warning_time() {
        let f = running(0);
        assert_eq!(decide(Some(&f), &policy(), 20 * MIN), Action::Warn { last_use_ms: 0, sleep_at_ms: 22 * MIN });
        let warned = Facts { warned: Some((0, 20 * MIN)), ..f };
        assert!(
            matches!(decide(Some(&warned), &policy(), 21 * MIN), Action::Wait { due_ms, .. } if due_ms == 22 * MIN)
        );
        assert_eq!(decide(Some(&warned), &policy(), 22 * MIN), Action::Sleep { last_use_ms: 0 });
    }

    #[test]
    fn a_warning_for_an_earlier_idle_period_does_not_count() {
        let f = Facts { warned: Some((0, 13 * MIN)), ..running(10 * MIN) };
        assert_eq!(
            decide(Some(&f), &policy(), 23 * MIN),
            Action::Warn { last_use_ms: 10 * MIN, sleep_at_ms: 25 * MIN }
        );
    }

    #[test]
    fn the_session_timeout_wins_over_the_default() {
        let short = Facts { idle_timeout_secs: Some(60), ..running(0) };
        let p = Policy { idle_warning_before_ms: 0, ..policy() };
        assert_eq!(decide(Some(&short), &p, MIN), Action::Sleep { last_use_ms: 0 });
        let never = Facts { idle_timeout_secs: Some(0), ..running(0) };
        assert_eq!(
            decide(Some(&never), &p, 60 * MIN),
            Action::Wait { due_ms: 1440 * MIN, next: (Planned::Delete, 1440 * MIN) }
        );
    }

    #[test]
    fn ttl_and_max_age_delete_settled_sessions() {
        let sleeping = Facts { status: SessionState::Sleeping, desired: DesiredState::Sleeping, ..running(0) };
        assert_eq!(
            decide(Some(&sleeping), &policy(), MIN),
            Action::Wait { due_ms: 1440 * MIN, next: (Planned::Delete, 1440 * MIN) }
        );
        assert_eq!(decide(Some(&sleeping), &policy(), 1440 * MIN), Action::Delete { last_use_ms: Some(0) });
        let p = Policy { max_age_ms: 30 * MIN, ..policy() };
        let used = Facts { last_use_ms: 29 * MIN, ..sleeping };
        assert_eq!(decide(Some(&used), &p, 30 * MIN), Action::Delete { last_use_ms: None });
    }

    #[test]
    fn sessions_in_flight_are_rechecked_after_an_interval() {
        let waking = Facts { status: SessionState::Waking, ..running(0) };
        let a = decide(Some(&waking), &policy(), 2000 * MIN);
        assert_eq!(a, Action::Wait { due_ms: 2000 * MIN + 10_000, next: (Planned::Delete, 1440 * MIN) });
        let sleep_queued = Facts { desired: DesiredState::Sleeping, ..running(0) };
        assert!(matches!(
            decide(Some(&sleep_queued), &policy(), 20 * MIN),
            Action::Wait { next: (Planned::Delete, _), .. }
        ));
    }

    /// Found by the real-process test: a session read while `creating` was
    /// scheduled at its TTL deadline, and the create's end (which bumps no
    /// generation) left it there, so it never slept.
    #[test]
    fn a_session_still_being_created_is_looked_at_again_soon() {
        let creating = Facts { status: SessionState::Creating, ..running(0) };
        assert!(matches!(decide(Some(&creating), &policy(), 0), Action::Wait { due_ms: 10_000, .. }));
        let waking = Facts { status: SessionState::Waking, ..running(0) };
        assert!(matches!(decide(Some(&waking), &policy(), 0), Action::Wait { due_ms: 10_000, .. }));
    }

    #[test]
    fn gone_deleted_or_rule_free_sessions_are_forgotten() {
        assert_eq!(decide(None, &policy(), 0), Action::Forget);
        let deleting = Facts { status: SessionState::Deleting, desired: DesiredState::Deleted, ..running(0) };
        assert_eq!(decide(Some(&deleting), &policy(), 0), Action::Forget);
        let off = Policy { idle_sleep_after_ms: 0, session_ttl_ms: 0, ..policy() };
        assert_eq!(decide(Some(&running(0)), &off, 0), Action::Forget);
    }
}
