//! The Lua scripts that make each queue step atomic, as data.
//!
//! Each script is a `pub const` source text plus a typed builder that
//! produces its `KEYS` and `ARGV` in the documented order, and a parser for
//! its reply. The adapters (`api` for enqueue, `worker` for the rest) only
//! load the text with `redis::Script` and pass what the builder produced, so
//! the contract cannot drift between the two sides.
//!
//! Replies are flat arrays of strings whose first element names the outcome.
//!
//! The set of terminal job states is defined once, by
//! [`crate::JobState::is_terminal`]; the scripts that ask "is this job
//! finished?" (start, finish, dead-letter) receive it as their last
//! argument ([`terminal_states_arg`]) and never spell it out.
//!
//! Scripts:
//! - [`enqueue`]: idempotency check, compare-and-set on the session
//!   generation, per-user limit, job hash, session desired state, `XADD`.
//! - [`start`]: a worker picked an entry: terminal already? else mark
//!   running and read the session's current generation and desired state.
//! - [`lease`]: per-session lease with a fencing token (acquire, renew,
//!   release by compare-and-delete).
//! - [`finish`]: terminal job state, fenced session write, demand list,
//!   tombstone, event, `XACK`, in one step.
//! - [`dead_letter`]: move an entry to `{sm}:dead`, mark the job dead, `XACK`.
//! - [`trim`]: `XTRIM MINID` below every pending and unread entry.
//! - [`entitled`]: right before a Kubernetes create: lease still current,
//!   generation still the job's, desired not `deleted`.
//! - [`sweep`]: the sweeper's guarded enqueue (re-checks status and last
//!   use, then runs the enqueue script's body), its deadline reschedule and
//!   its once-per-idle-period warning.
//! - [`touch`]: heartbeat: reset a pending entry's idle time while this
//!   consumer still owns it.

pub mod dead_letter;
pub mod enqueue;
pub mod entitled;
pub mod finish;
pub mod lease;
pub mod start;
pub mod sweep;
pub mod touch;
pub mod trim;

/// A script reply did not have the documented shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from the {script} script: {reply:?}")]
pub struct ReplyError {
    /// Which script.
    pub script: &'static str,
    /// What it returned.
    pub reply: Vec<String>,
}

impl ReplyError {
    pub(crate) fn new(script: &'static str, reply: &[String]) -> Self {
        Self { script, reply: reply.to_vec() }
    }
}

/// The terminal-state argument: [`crate::JobState::terminal_names`] as bytes.
/// The scripts test membership with `is_terminal` (see `start.lua`).
pub fn terminal_states_arg() -> Vec<u8> {
    crate::JobState::terminal_names().into_bytes()
}

/// Keys and arguments for one script call, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `KEYS`, in order.
    pub keys: Vec<String>,
    /// `ARGV`, in order (binary-safe: the payload is MessagePack).
    pub args: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    /// The scripts that check for a terminal job never spell the set out:
    /// they compare with the argument built from `JobState::is_terminal`.
    #[test]
    fn scripts_receive_the_terminal_states_instead_of_spelling_them() {
        for (name, source) in [
            ("start", super::start::SOURCE),
            ("finish", super::finish::SOURCE),
            ("dead_letter", super::dead_letter::SOURCE),
        ] {
            for state in crate::JobState::ALL.iter().filter(|s| s.is_terminal()) {
                let compared = format!("== \"{state}\"");
                assert!(!source.contains(&compared), "{name}.lua compares with {state:?} itself");
            }
            assert!(source.contains("local function is_terminal(state)"), "{name}.lua has no is_terminal");
        }
    }
}
