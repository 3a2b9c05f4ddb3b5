//! When each session was last used, in memory per gateway replica, and its
//! flush: every `ACTIVITY_FLUSH_MS` the map is swapped out and written with
//! one `ZADD {sm}:activity GT ms id` per session (one pipeline), so a busy
//! session costs one write per flush, not one per request, and a replica
//! with an older clock never moves a session's time backwards.
//!
//! What counts (the service and the WebSocket tunnel decide): proxied HTTP
//! requests other than health paths, and client-to-server WebSocket traffic
//! beyond an idle tab's heartbeats ([`crate::gateway::wsframes`]).

use std::collections::HashMap;
use std::sync::Mutex;

use proto_types::SessionId;

/// Paths that are never activity (probes and health checks).
pub const HEALTH_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/_sm/status"];

/// Whether a request path counts as use.
pub fn counts(path: &str) -> bool {
    !HEALTH_PATHS.contains(&path)
}

/// The in-memory map.
#[derive(Debug, Default)]
pub struct Activity {
    last: Mutex<HashMap<SessionId, u64>>,
}

impl Activity {
    /// Records use of `id` at `now_ms`.
    pub fn touch(&self, id: &SessionId, now_ms: u64) {
        if let Ok(mut m) = self.last.lock() {
            let e = m.entry(id.clone()).or_insert(now_ms);
            *e = (*e).max(now_ms);
        }
    }

    /// Takes everything recorded since the last take.
    pub fn take(&self) -> Vec<(SessionId, u64)> {
        self.last.lock().map(|mut m| std::mem::take(&mut *m).into_iter().collect()).unwrap_or_default()
    }

    /// Puts back entries whose flush failed (newer touches win).
    pub fn restore(&self, entries: Vec<(SessionId, u64)>) {
        for (id, ms) in entries {
            self.touch(&id, ms);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_use_per_session_until_taken() {
        let a = Activity::default();
        let id = SessionId::parse("abc").unwrap();
        a.touch(&id, 10);
        a.touch(&id, 5);
        assert_eq!(a.take(), vec![(id.clone(), 10)]);
        assert!(a.take().is_empty());
        a.touch(&id, 20);
        a.restore(vec![(id.clone(), 15)]);
        assert_eq!(a.take(), vec![(id, 20)]);
        assert!(!counts("/healthz"));
        assert!(counts("/"));
    }
}
