//! The touch script: the heartbeat of a job in progress.
//!
//! While a worker executes an entry it periodically resets the entry's idle
//! time (`XCLAIM … JUSTID`, which does not count as a delivery) so the
//! reclaimers of other workers leave it alone. Ownership is checked in the
//! same step: a plain `XCLAIM` with zero idle time would steal the entry
//! back from a worker that legitimately reclaimed it.

use super::{Invocation, ReplyError};
use crate::keys;

/// Script source.
pub const SOURCE: &str = include_str!("touch.lua");

/// Keys and arguments of the touch script.
pub fn invocation(group: &str, consumer: &str, entry_id: &str) -> Invocation {
    Invocation { keys: vec![keys::JOBS_STREAM.to_owned()], args: vec![group.into(), consumer.into(), entry_id.into()] }
}

/// Parses the reply: `Ok(None)` when touched, `Ok(Some(owner))` when the
/// entry is no longer this consumer's (`owner` is empty when it is no longer
/// pending at all).
pub fn parse(reply: &[String]) -> Result<Option<String>, ReplyError> {
    match reply {
        [tag] if tag == "touched" => Ok(None),
        [tag, owner] if tag == "lost" => Ok(Some(owner.clone())),
        _ => Err(ReplyError::new("touch", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies() {
        assert_eq!(parse(&["touched".to_string()]), Ok(None));
        assert_eq!(parse(&["lost".to_string(), "w2".to_string()]), Ok(Some("w2".to_string())));
        assert!(parse(&[]).is_err());
        assert_eq!(invocation("g", "c", "1-0").args, [b"g".to_vec(), b"c".to_vec(), b"1-0".to_vec()]);
    }
}
