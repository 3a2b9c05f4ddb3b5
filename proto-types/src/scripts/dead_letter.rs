//! The dead-letter script: moves an entry that was delivered too often, or
//! cannot be decoded, to the `{sm}:dead` stream, atomically with its
//! acknowledgement.
//!
//! The dead entry keeps the raw payload, the reason, the delivery count and
//! the original entry id, so an operator can inspect and replay it
//! (`XRANGE {sm}:dead - +`). When the payload decoded, the job is marked
//! `dead` with the reason, the session records it as `last_error` (and
//! becomes `failed` if that job was its latest), and a status event is
//! published.

use super::{Invocation, ReplyError};
use crate::keys;

/// Script source.
pub const SOURCE: &str = include_str!("dead_letter.lua");

/// The decoded job an entry carried, if it decoded.
#[derive(Debug, Clone)]
pub struct DeadJob<'a> {
    /// Its id.
    pub job_id: &'a str,
    /// Its session.
    pub session_id: &'a str,
    /// The generation it was issued for.
    pub generation: u64,
    /// Encoded [`crate::Event`] announcing the `dead` state.
    pub event: &'a [u8],
}

/// Arguments of the dead-letter script.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Id of the entry in the jobs stream.
    pub entry_id: &'a str,
    /// Consumer group.
    pub group: &'a str,
    /// The entry's raw payload (empty if it had none).
    pub payload: &'a [u8],
    /// Why it is dead.
    pub reason: &'a str,
    /// How often it was delivered.
    pub deliveries: u64,
    /// The job, if the payload decoded.
    pub job: Option<DeadJob<'a>>,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

impl DeadLetter<'_> {
    /// Keys and arguments, in the order `dead_letter.lua` documents.
    pub fn invocation(&self) -> Invocation {
        let (job_key, session_key, decoded, event, generation, backup_key) = match &self.job {
            Some(j) => (
                keys::job(j.job_id),
                keys::session(j.session_id),
                "1",
                j.event,
                j.generation,
                keys::backup(&crate::record::backup::id(j.session_id, j.generation)),
            ),
            None => (keys::job(""), keys::session(""), "0", &b""[..], 0, keys::backup("")),
        };
        let keys = vec![
            keys::JOBS_STREAM.to_owned(),
            keys::DEAD_STREAM.to_owned(),
            job_key,
            session_key,
            keys::EVENTS_STREAM.to_owned(),
            backup_key,
        ];
        let args: Vec<Vec<u8>> = vec![
            self.entry_id.into(),
            self.group.into(),
            self.payload.to_vec(),
            self.reason.into(),
            self.deliveries.to_string().into(),
            decoded.into(),
            self.now_ms.to_string().into(),
            keys::JOB_TTL_SECS.to_string().into(),
            event.to_vec(),
            keys::EVENTS_MAXLEN.to_string().into(),
            generation.to_string().into(),
            super::terminal_states_arg(),
        ];
        Invocation { keys, args }
    }
}

/// Parses the script's reply: the id of the new dead-letter entry.
pub fn parse(reply: &[String]) -> Result<String, ReplyError> {
    match reply {
        [tag, id] if tag == "dead" => Ok(id.clone()),
        _ => Err(ReplyError::new("dead-letter", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecoded_entries_touch_no_job() {
        let inv = DeadLetter {
            entry_id: "1-0",
            group: "workers",
            payload: b"\xc1",
            reason: "undecodable",
            deliveries: 3,
            job: None,
            now_ms: 1,
        }
        .invocation();
        assert_eq!(inv.keys[1], "{sm}:dead");
        assert_eq!(inv.args.len(), 12);
        assert_eq!(inv.args[5], b"0");
        assert_eq!(inv.args[2], b"\xc1");
        assert_eq!(inv.args[11], crate::JobState::terminal_names().as_bytes());
        assert_eq!(parse(&["dead".to_string(), "5-0".to_string()]), Ok("5-0".to_string()));
        assert!(parse(&[]).is_err());
    }
}
