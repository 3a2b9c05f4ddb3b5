//! The trim script: `XTRIM {sm}:jobs MINID` to the smallest of every
//! group's oldest pending id and last-delivered id, computed inside the
//! script (`XINFO GROUPS`, `XPENDING`) so no entry that is pending or not
//! yet read can be dropped, even with several groups.

use super::{Invocation, ReplyError};
use crate::keys;

/// Script source.
pub const SOURCE: &str = include_str!("trim.lua");

/// Keys and arguments of the trim script.
pub fn invocation() -> Invocation {
    Invocation { keys: vec![keys::JOBS_STREAM.to_owned()], args: Vec::new() }
}

/// What the trim script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrimReply {
    /// Trimmed up to `min_id` (exclusive).
    Trimmed {
        /// Entries removed.
        removed: u64,
        /// The lowest id kept.
        min_id: String,
    },
    /// Nothing to do (no stream or no group).
    Skipped {
        /// Why.
        why: String,
    },
}

impl TrimReply {
    /// Parses the script's reply.
    pub fn parse(reply: &[String]) -> Result<Self, ReplyError> {
        let err = || ReplyError::new("trim", reply);
        match reply {
            [tag, n, min] if tag == "trimmed" => {
                Ok(Self::Trimmed { removed: n.parse().map_err(|_| err())?, min_id: min.clone() })
            }
            [tag, why] if tag == "skipped" => Ok(Self::Skipped { why: why.clone() }),
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            TrimReply::parse(&s(&["trimmed", "3", "5-0"])),
            Ok(TrimReply::Trimmed { removed: 3, min_id: "5-0".into() })
        );
        assert_eq!(TrimReply::parse(&s(&["skipped", "no group"])), Ok(TrimReply::Skipped { why: "no group".into() }));
        assert!(TrimReply::parse(&s(&["trimmed", "x", "1-0"])).is_err());
        assert_eq!(invocation().keys, ["{sm}:jobs"]);
    }
}
