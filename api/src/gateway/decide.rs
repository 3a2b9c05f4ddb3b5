//! What the gateway does with an authenticated request, from the session
//! as last read and the kind of request: proxy, wake, hold, or refuse.
//! Pure; the service acts on the answer.
//!
//! Only a browser navigation wakes a sleeping session. Background traffic
//! (XHR, a stale tab's WebSocket reconnects) to a sleeping session gets 503
//! and changes nothing, so a forgotten tab cannot keep resurrecting a
//! workspace that idle sleep put away. While a wake is in progress,
//! navigations get the waking page and everything else is held.

use proto_types::{DesiredState, SessionState};

/// What a request is, as far as waking goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET` with `Sec-Fetch-Mode: navigate` or `Accept: text/html`.
    Navigation,
    /// Anything else over HTTP.
    Background,
    /// A WebSocket upgrade.
    Upgrade,
}

/// The session as the gateway needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Observed status.
    pub status: SessionState,
    /// Desired state.
    pub desired: DesiredState,
    /// Whether an upstream address is recorded.
    pub has_upstream: bool,
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward to the upstream.
    Proxy,
    /// Enqueue `wake` and answer the waking page.
    Wake,
    /// A wake is in progress: answer the waking page.
    WakingPage,
    /// A wake is in progress: hold until ready (bounded), then forward.
    Hold,
    /// Asleep and not being woken: 503, nothing changes.
    Asleep,
    /// No such session, or deleted: 404.
    NotFound,
}

/// Decides.
pub fn decide(seen: Option<Seen>, kind: Kind) -> Action {
    use SessionState as S;
    let Some(seen) = seen else { return Action::NotFound };
    if seen.desired == DesiredState::Deleted || matches!(seen.status, S::Deleting | S::Deleted) {
        return Action::NotFound;
    }
    let navigation = kind == Kind::Navigation;
    match seen.status {
        S::Running if seen.has_upstream => Action::Proxy,
        S::Sleeping | S::Failed if seen.desired != DesiredState::Running || seen.status == S::Failed => {
            if navigation {
                Action::Wake
            } else {
                Action::Asleep
            }
        }
        // Waking, creating, sleeping with running desired (a wake just
        // accepted), running without an address yet.
        _ if seen.desired == DesiredState::Running => {
            if navigation {
                Action::WakingPage
            } else {
                Action::Hold
            }
        }
        // Running on its way to sleep, no address: nothing to reach.
        _ => Action::Asleep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(status: SessionState, desired: DesiredState, has_upstream: bool) -> Option<Seen> {
        Some(Seen { status, desired, has_upstream })
    }

    #[test]
    fn only_navigation_wakes_a_sleeping_session() {
        let asleep = seen(SessionState::Sleeping, DesiredState::Sleeping, false);
        assert_eq!(decide(asleep, Kind::Navigation), Action::Wake);
        assert_eq!(decide(asleep, Kind::Background), Action::Asleep);
        assert_eq!(decide(asleep, Kind::Upgrade), Action::Asleep);
    }

    #[test]
    fn a_wake_in_progress_holds_background_and_pages_navigation() {
        let waking = seen(SessionState::Waking, DesiredState::Running, false);
        assert_eq!(decide(waking, Kind::Navigation), Action::WakingPage);
        assert_eq!(decide(waking, Kind::Background), Action::Hold);
        assert_eq!(decide(waking, Kind::Upgrade), Action::Hold);
        let no_address = seen(SessionState::Running, DesiredState::Running, false);
        assert_eq!(decide(no_address, Kind::Upgrade), Action::Hold);
    }

    #[test]
    fn running_proxies_and_deleted_is_not_found() {
        assert_eq!(decide(seen(SessionState::Running, DesiredState::Running, true), Kind::Upgrade), Action::Proxy);
        assert_eq!(
            decide(seen(SessionState::Deleted, DesiredState::Deleted, false), Kind::Navigation),
            Action::NotFound
        );
        assert_eq!(
            decide(seen(SessionState::Running, DesiredState::Deleted, true), Kind::Navigation),
            Action::NotFound
        );
        assert_eq!(decide(None, Kind::Navigation), Action::NotFound);
        assert_eq!(decide(seen(SessionState::Failed, DesiredState::Running, false), Kind::Navigation), Action::Wake);
    }
}
