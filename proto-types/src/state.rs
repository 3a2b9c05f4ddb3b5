//! The vocabulary: [`Command`]s clients send, the [`JobState`] of each job,
//! the observed [`SessionState`] of a session and the [`DesiredState`] the
//! worker converges it to.
//!
//! Each enum has one wire name per variant (`as_str` / `parse`), used both
//! in MessagePack payloads and in Redis hash fields, so Lua scripts and
//! humans running `redis-cli` see the same words. Names never change.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An unknown wire name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownName {
    /// Which enum was being parsed.
    pub kind: &'static str,
    /// What was found.
    pub value: String,
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses a wire name.
            pub fn parse(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownName { kind: $kind, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

wire_enum! {
    /// What a client asks for.
    Command, "command" {
        /// Create the session's objects and start its workspace.
        Create => "create",
        /// Scale the workspace to zero; files stay on the volume.
        Sleep => "sleep",
        /// Scale the workspace back to one.
        Wake => "wake",
        /// Manual scale to one (same effect as wake).
        ScaleUp => "scale-up",
        /// Manual scale to zero (same effect as sleep).
        ScaleDown => "scale-down",
        /// Back up the volume, then delete every object.
        Delete => "delete",
        /// Back up the volume of a sleeping session now (an on-demand
        /// backup); the session stays asleep.
        Backup => "backup",
    }
}

wire_enum! {
    /// What a backup is (`kind` of [`crate::record::backup`]).
    BackupKind, "backup kind" {
        /// A zip archive on the backup volume, written and verified by the
        /// backup Job; its location is the file name.
        Archive => "archive",
        /// A CSI VolumeSnapshot of the session's volume; its location is
        /// the VolumeSnapshot's name (in the workspace namespace).
        Snapshot => "snapshot",
    }
}

wire_enum! {
    /// Where a job is in its life.
    JobState, "job state" {
        /// In the stream, not yet picked up.
        Queued => "queued",
        /// A worker is executing it.
        Running => "running",
        /// The session reached the job's desired state.
        Succeeded => "succeeded",
        /// Executing failed permanently; `error` says why.
        Failed => "failed",
        /// A newer job for the same session made this one moot.
        Superseded => "superseded",
        /// Delivered too often without finishing; moved to the dead-letter stream.
        Dead => "dead",
    }
}

impl JobState {
    /// Whether the job will never change state again. The one definition
    /// of the terminal set: the Lua scripts receive it as an argument
    /// ([`JobState::terminal_names`]) instead of spelling it out.
    pub const fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }

    /// The wire names of the terminal states, space-separated, in
    /// declaration order: the terminal-state argument of the start, finish
    /// and dead-letter scripts.
    pub fn terminal_names() -> String {
        let names: Vec<&str> = JobState::ALL.iter().filter(|s| s.is_terminal()).map(|s| s.as_str()).collect();
        names.join(" ")
    }
}

wire_enum! {
    /// What a session is, as last observed and recorded by the worker (or
    /// set by the api when it accepts a command that starts a transition).
    SessionState, "session state" {
        /// Objects are being created; the workspace is not ready yet.
        Creating => "creating",
        /// The workspace has a ready replica.
        Running => "running",
        /// Scaled to zero; files kept.
        Sleeping => "sleeping",
        /// Scaling back to one.
        Waking => "waking",
        /// Backup and deletion in progress.
        Deleting => "deleting",
        /// Backed up and gone.
        Deleted => "deleted",
        /// The last job failed; `last_error` says why. Any command may retry.
        Failed => "failed",
    }
}

wire_enum! {
    /// The state the worker converges a session to. Set by the api on
    /// enqueue, read by the worker when it executes (level-triggered).
    DesiredState, "desired state" {
        /// One ready replica.
        Running => "running",
        /// Zero replicas, volume kept.
        Sleeping => "sleeping",
        /// Backed up, every object deleted.
        Deleted => "deleted",
    }
}

wire_enum! {
    /// Who asked for a job: shown in `GET /jobs/{id}`, in events and in
    /// metrics. Older payloads carry none and read as [`Origin::Api`].
    #[derive(Default)]
    Origin, "origin" {
        /// A client of the api.
        #[default]
        Api => "api",
        /// The gateway, waking a session on access.
        Gateway => "gateway",
        /// The sweeper, putting an idle session to sleep.
        Idle => "idle",
        /// The sweeper, deleting a session past its TTL or maximum age.
        Ttl => "ttl",
        /// The sweeper, repairing a session whose cluster objects drifted.
        Drift => "drift",
    }
}

impl Command {
    /// The desired state this command asks for.
    pub const fn desired(self) -> DesiredState {
        match self {
            Command::Create | Command::Wake | Command::ScaleUp => DesiredState::Running,
            // A backup is taken only while the workspace is asleep (so the
            // archive is consistent), and leaves it asleep.
            Command::Sleep | Command::ScaleDown | Command::Backup => DesiredState::Sleeping,
            Command::Delete => DesiredState::Deleted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for c in Command::ALL {
            assert_eq!(Command::parse(c.as_str()), Ok(*c));
            let bytes = rmp_serde::to_vec_named(c).expect("encode");
            assert_eq!(rmp_serde::from_slice::<Command>(&bytes).expect("decode"), *c);
        }
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Ok(*s));
        }
        for s in SessionState::ALL {
            assert_eq!(SessionState::parse(s.as_str()), Ok(*s));
        }
        for s in DesiredState::ALL {
            assert_eq!(DesiredState::parse(s.as_str()), Ok(*s));
        }
        assert!(Command::parse("reboot").is_err());
    }

    #[test]
    fn wire_names_are_the_documented_ones() {
        let names: Vec<_> = Command::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["create", "sleep", "wake", "scale-up", "scale-down", "delete", "backup"]);
        let encoded = rmp_serde::to_vec_named(&Command::ScaleUp).expect("encode");
        assert_eq!(rmp_serde::from_slice::<String>(&encoded).expect("decode"), "scale-up");
    }

    #[test]
    fn terminal_job_states() {
        let terminal: Vec<_> = JobState::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [&JobState::Succeeded, &JobState::Failed, &JobState::Superseded, &JobState::Dead]);
    }

    #[test]
    fn terminal_names_are_what_the_scripts_receive() {
        assert_eq!(JobState::terminal_names(), "succeeded failed superseded dead");
    }
}
