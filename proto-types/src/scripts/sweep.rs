//! The sweeper's scripts: a guarded enqueue, a deadline reschedule and the
//! idle warning.
//!
//! - [`SOURCE`] is `sweep.lua` followed by `enqueue.lua`: the guard
//!   re-checks, atomically, what the sweeper decided on (the session's
//!   status and its last use: the larger of `last_activity_ms` and its
//!   score in [`keys::ACTIVITY`]), and only then the enqueue body runs with
//!   its own generation check. Activity that lands after the sweeper read
//!   the session therefore cancels the sleep, and N sweepers that all saw
//!   the same idle session produce one job (the others get `Conflict`).
//! - [`RESCHEDULE_SOURCE`] moves a session's deadline in
//!   [`keys::LIFECYCLE_DUE`] only if no command changed the session since
//!   it was read (a command's enqueue lowered the deadline already).
//! - [`WARN_SOURCE`] publishes the idle [`crate::Notice`] once per idle
//!   period (the period is named by the last use it is for).
//!
//! The decision itself is the worker's (pure, in Rust); these only check
//! and write.

use super::enqueue::EnqueueReply;
use super::{Invocation, ReplyError};
use crate::keys;
use crate::state::SessionState;

/// Guarded enqueue: `sweep.lua` then `enqueue.lua`.
pub const SOURCE: &str = concat!(include_str!("sweep.lua"), include_str!("enqueue.lua"));
/// Deadline reschedule.
pub const RESCHEDULE_SOURCE: &str = include_str!("reschedule.lua");
/// Idle warning.
pub const WARN_SOURCE: &str = include_str!("warn.lua");

/// The guard's condition, appended to an enqueue invocation.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// The status the decision was made on.
    pub status: SessionState,
    /// The last use the decision was made on (`None`: not checked, e.g. a
    /// maximum age, which no use changes).
    pub last_use_ms: Option<u64>,
}

impl Guard {
    /// `enqueue` (an enqueue invocation) with the guard's key and arguments added.
    pub fn invocation(&self, mut enqueue: Invocation) -> Invocation {
        enqueue.keys.push(keys::ACTIVITY.to_owned());
        enqueue.args.push(self.status.as_str().into());
        enqueue.args.push(self.last_use_ms.map_or_else(String::new, |t| t.to_string()).into());
        enqueue
    }
}

/// What the guarded enqueue answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepReply {
    /// The session no longer exists.
    Gone,
    /// Its status is no longer the one decided on.
    Status(String),
    /// It was used after the last use decided on (ms).
    Active(u64),
    /// The guard passed; the enqueue script's answer.
    Enqueue(EnqueueReply),
}

impl SweepReply {
    /// Parses the script's reply.
    pub fn parse(reply: &[String]) -> Result<Self, ReplyError> {
        match reply {
            [tag] if tag == "gone" => Ok(Self::Gone),
            [tag, s] if tag == "status" => Ok(Self::Status(s.clone())),
            [tag, t] if tag == "active" => t.parse().map(Self::Active).map_err(|_| ReplyError::new("sweep", reply)),
            _ => EnqueueReply::parse(reply).map(Self::Enqueue).map_err(|_| ReplyError::new("sweep", reply)),
        }
    }
}

/// One deadline move.
#[derive(Debug, Clone, Copy)]
pub struct Reschedule<'a> {
    /// The session.
    pub session_id: &'a str,
    /// Generation the deadline was computed on (0: no session).
    pub generation: u64,
    /// The next deadline, ms (`None`: forget the session).
    pub at_ms: Option<u64>,
    /// The next automatic action (`"sleep"`, `"delete"`) and its time, ms.
    pub next: Option<(&'a str, u64)>,
    /// The session's own idle timeout as read, seconds.
    pub idle_timeout_secs: Option<u64>,
}

impl Reschedule<'_> {
    /// Keys and arguments, in the order `reschedule.lua` documents.
    pub fn invocation(&self) -> Invocation {
        Invocation {
            keys: vec![keys::session(self.session_id), keys::LIFECYCLE_DUE.to_owned(), keys::ACTIVITY.to_owned()],
            args: vec![
                self.session_id.into(),
                self.generation.to_string().into(),
                self.at_ms.map_or_else(String::new, |t| t.to_string()).into(),
                self.next.map_or_else(String::new, |(a, t)| format!("{a} {t}")).into(),
                self.idle_timeout_secs.map_or_else(String::new, |s| s.to_string()).into(),
            ],
        }
    }
}

/// Parses a session's `next_action` field (`"sleep 1700000000000"`).
pub fn parse_next_action(value: &str) -> Option<(&str, u64)> {
    let (action, at) = value.split_once(' ')?;
    Some((action, at.parse().ok()?))
}

/// What the reschedule script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RescheduleReply {
    /// The deadline was set.
    Set,
    /// The session was removed from the due and activity sets.
    Forgot,
    /// A command changed the session since; nothing written.
    Moved,
}

impl RescheduleReply {
    /// Parses the script's reply.
    pub fn parse(reply: &[String]) -> Result<Self, ReplyError> {
        match reply {
            [tag] if tag == "set" => Ok(Self::Set),
            [tag] if tag == "forgot" => Ok(Self::Forgot),
            [tag, _] if tag == "moved" => Ok(Self::Moved),
            _ => Err(ReplyError::new("reschedule", reply)),
        }
    }
}

/// One idle warning.
#[derive(Debug, Clone, Copy)]
pub struct Warn<'a> {
    /// The session.
    pub session_id: &'a str,
    /// The last use the warning is for (names the idle period).
    pub last_use_ms: u64,
    /// Now, ms.
    pub now_ms: u64,
    /// The encoded [`crate::Notice`].
    pub notice: &'a [u8],
    /// How long the marker is kept, ms.
    pub marker_ttl_ms: u64,
}

impl Warn<'_> {
    /// Keys and arguments, in the order `warn.lua` documents.
    pub fn invocation(&self) -> Invocation {
        Invocation {
            keys: vec![keys::idle_warning(self.session_id), keys::EVENTS_STREAM.to_owned()],
            args: vec![
                self.last_use_ms.to_string().into(),
                self.now_ms.to_string().into(),
                self.notice.to_vec(),
                keys::EVENTS_MAXLEN.to_string().into(),
                self.marker_ttl_ms.max(1).to_string().into(),
            ],
        }
    }
}

/// What the warn script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarnReply {
    /// Published now.
    Warned,
    /// Already published for this idle period, at this time (ms).
    Already(u64),
}

impl WarnReply {
    /// Parses the script's reply.
    pub fn parse(reply: &[String]) -> Result<Self, ReplyError> {
        match reply {
            [tag] if tag == "warned" => Ok(Self::Warned),
            [tag, t] if tag == "already" => t.parse().map(Self::Already).map_err(|_| ReplyError::new("warn", reply)),
            _ => Err(ReplyError::new("warn", reply)),
        }
    }
}

/// Parses an idle-warning marker (`"{last_use_ms} {warned_at_ms}"`).
pub fn parse_marker(value: &str) -> Option<(u64, u64)> {
    let (last, at) = value.split_once(' ')?;
    Some((last.parse().ok()?, at.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn guard_comes_before_the_enqueue_body() {
        assert!(SOURCE.starts_with(include_str!("sweep.lua")));
        assert!(SOURCE.ends_with(include_str!("enqueue.lua")));
        // The guard's key and arguments follow enqueue's, which end at 8 and 19.
        let enqueue = include_str!("enqueue.lua");
        assert!(enqueue.contains("ARGV[19]") && enqueue.contains("KEYS[8]"));
        assert!(!enqueue.contains("ARGV[20]") && !enqueue.contains("KEYS[9]"));
    }

    #[test]
    fn guard_appends_its_key_and_arguments() {
        let base = Invocation { keys: vec!["k".into(); 8], args: vec![b"a".to_vec(); 19] };
        let inv = Guard { status: SessionState::Running, last_use_ms: Some(5) }.invocation(base.clone());
        assert_eq!(inv.keys[8], keys::ACTIVITY);
        assert_eq!((inv.args[19].as_slice(), inv.args[20].as_slice()), (&b"running"[..], &b"5"[..]));
        let inv = Guard { status: SessionState::Sleeping, last_use_ms: None }.invocation(base);
        assert_eq!(inv.args[20], b"");
    }

    #[test]
    fn parses_every_reply() {
        assert_eq!(SweepReply::parse(&s(&["gone"])), Ok(SweepReply::Gone));
        assert_eq!(SweepReply::parse(&s(&["status", "waking"])), Ok(SweepReply::Status("waking".into())));
        assert_eq!(SweepReply::parse(&s(&["active", "17"])), Ok(SweepReply::Active(17)));
        assert_eq!(
            SweepReply::parse(&s(&["ok", "1-0"])),
            Ok(SweepReply::Enqueue(EnqueueReply::Ok { stream_id: "1-0".into() }))
        );
        assert!(SweepReply::parse(&s(&["active", "x"])).is_err());
        assert_eq!(RescheduleReply::parse(&s(&["moved", "3"])), Ok(RescheduleReply::Moved));
        assert_eq!(RescheduleReply::parse(&s(&["forgot"])), Ok(RescheduleReply::Forgot));
        assert_eq!(WarnReply::parse(&s(&["already", "9"])), Ok(WarnReply::Already(9)));
        assert!(WarnReply::parse(&s(&["what"])).is_err());
        assert_eq!(parse_marker("10 20"), Some((10, 20)));
        assert_eq!(parse_marker("10"), None);
    }

    #[test]
    fn reschedule_and_warn_follow_the_documented_order() {
        let inv = Reschedule { session_id: "abc", generation: 3, at_ms: None, next: None, idle_timeout_secs: None }
            .invocation();
        assert_eq!(inv.keys, vec![keys::session("abc"), keys::LIFECYCLE_DUE.to_owned(), keys::ACTIVITY.to_owned()]);
        assert_eq!(inv.args[2], b"");
        let inv = Reschedule {
            session_id: "abc",
            generation: 3,
            at_ms: Some(7),
            next: Some(("sleep", 9)),
            idle_timeout_secs: Some(60),
        }
        .invocation();
        assert_eq!((inv.args[3].as_slice(), inv.args[4].as_slice()), (&b"sleep 9"[..], &b"60"[..]));
        assert_eq!(parse_next_action("sleep 9"), Some(("sleep", 9)));
        let inv = Warn { session_id: "abc", last_use_ms: 1, now_ms: 2, notice: b"n", marker_ttl_ms: 0 }.invocation();
        assert_eq!(inv.keys[0], keys::idle_warning("abc"));
        assert_eq!(inv.args[4], b"1");
    }
}
