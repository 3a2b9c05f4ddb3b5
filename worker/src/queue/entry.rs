//! Stream entries as the queue hands them to the runner, and the parsing
//! of `XREADGROUP` / `XAUTOCLAIM` replies into them.
//!
//! Parsing is done on [`redis::Value`] by hand because an entry whose data
//! was deleted (trimmed or `XDEL`ed while pending) comes back with a nil
//! field list, which the typed stream replies do not represent.

use proto_types::keys;
use redis::Value;

/// One delivered entry of the jobs stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Stream entry id.
    pub id: String,
    /// The raw job payload; `None` when the entry has no `job` field or its
    /// data is gone.
    pub payload: Option<Vec<u8>>,
    /// Whether the entry's data was deleted while it was pending.
    pub deleted: bool,
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn items(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// Parses one `[id, [field, value, ...] | nil]` element.
fn entry(v: &Value) -> Option<Entry> {
    let parts = items(v)?;
    let id = text(parts.first()?)?;
    match parts.get(1) {
        None | Some(Value::Nil) => Some(Entry { id, payload: None, deleted: true }),
        Some(fields) => {
            let payload = match fields {
                Value::Map(pairs) => pairs
                    .iter()
                    .find(|(k, _)| text(k).as_deref() == Some(keys::PAYLOAD_FIELD))
                    .and_then(|(_, v)| bytes(v)),
                other => {
                    let flat = items(other)?;
                    flat.chunks(2)
                        .find(|kv| text(&kv[0]).as_deref() == Some(keys::PAYLOAD_FIELD))
                        .and_then(|kv| kv.get(1).and_then(bytes))
                }
            };
            Some(Entry { id, payload, deleted: false })
        }
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

/// Parses a list of entries.
pub(crate) fn entries(v: &Value) -> Vec<Entry> {
    items(v).map(|list| list.iter().filter_map(entry).collect()).unwrap_or_default()
}

/// Parses an `XREADGROUP` reply for a single stream (nil on timeout; an
/// array of `[stream, entries]`, or a map in RESP3).
pub(crate) fn read_reply(v: &Value) -> Vec<Entry> {
    match v {
        Value::Nil => Vec::new(),
        Value::Map(pairs) => pairs.iter().flat_map(|(_, es)| entries(es)).collect(),
        other => items(other)
            .map(|streams| streams.iter().filter_map(items).filter_map(|s| s.get(1)).flat_map(entries).collect())
            .unwrap_or_default(),
    }
}

/// An `XAUTOCLAIM` reply: next cursor, claimed entries, ids of entries that
/// no longer exist (Redis 7 and later; absent before).
#[derive(Debug, Default)]
pub(crate) struct AutoClaim {
    pub(crate) cursor: String,
    pub(crate) claimed: Vec<Entry>,
    pub(crate) deleted: Vec<String>,
}

pub(crate) fn autoclaim_reply(v: &Value) -> Option<AutoClaim> {
    let parts = items(v)?;
    let cursor = text(parts.first()?)?;
    let mut claimed = entries(parts.get(1)?);
    // Before Redis 7 deleted entries came back as nil elements.
    let mut deleted: Vec<String> = claimed.iter().filter(|e| e.deleted).map(|e| e.id.clone()).collect();
    claimed.retain(|e| !e.deleted);
    if let Some(ids) = parts.get(2).and_then(items) {
        deleted.extend(ids.iter().filter_map(text));
    }
    Some(AutoClaim { cursor, claimed, deleted })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bs(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn parses_read_replies_with_deleted_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bs(b"{sm}:jobs"),
            Value::Array(vec![
                Value::Array(vec![bs(b"1-0"), Value::Array(vec![bs(b"job"), bs(b"\x81")])]),
                Value::Array(vec![bs(b"2-0"), Value::Nil]),
                Value::Array(vec![bs(b"3-0"), Value::Array(vec![bs(b"other"), bs(b"x")])]),
            ]),
        ])]);
        let got = read_reply(&reply);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Entry { id: "1-0".into(), payload: Some(vec![0x81]), deleted: false });
        assert!(got[1].deleted);
        assert_eq!(got[2].payload, None);
        assert!(!got[2].deleted);
        assert!(read_reply(&Value::Nil).is_empty());
    }

    #[test]
    fn parses_autoclaim_with_deleted_ids() {
        let reply = Value::Array(vec![
            bs(b"0-0"),
            Value::Array(vec![Value::Array(vec![bs(b"1-0"), Value::Array(vec![bs(b"job"), bs(b"p")])])]),
            Value::Array(vec![bs(b"2-0")]),
        ]);
        let got = autoclaim_reply(&reply).expect("valid");
        assert_eq!(got.cursor, "0-0");
        assert_eq!(got.claimed.len(), 1);
        assert_eq!(got.deleted, ["2-0"]);
    }
}
