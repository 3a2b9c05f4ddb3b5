//! Fault injection: the first N resource requests answer a chosen error status (500, 429, ...)
//! before reaching the fake cluster, so clients' retry paths can be exercised end to end.
//!
//! Discovery and health requests are never failed; that is decided by the caller.

use crate::config::FaultPlan;
use http::StatusCode;
use std::sync::atomic::{AtomicU32, Ordering};

/// Remaining injected failures.
#[derive(Debug)]
pub struct Faults {
    remaining: AtomicU32,
    status: StatusCode,
}

impl Faults {
    /// Faults following `plan` (an invalid status falls back to 500).
    pub fn new(plan: FaultPlan) -> Self {
        Self {
            remaining: AtomicU32::new(plan.count),
            status: StatusCode::from_u16(plan.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// Arm `count` more failures with `status` (for tests driving a running server).
    pub fn arm(&self, count: u32) {
        self.remaining.store(count, Ordering::SeqCst);
    }

    /// The status to fail this request with, if a failure is still due.
    pub fn take(&self) -> Option<StatusCode> {
        self.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).ok().map(|_| self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_first_n_requests_fail() {
        let f = Faults::new(FaultPlan { count: 2, status: 429 });
        assert_eq!(f.take(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(f.take(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(f.take(), None);
        f.arm(1);
        assert_eq!(f.take(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(f.take(), None);
    }
}
