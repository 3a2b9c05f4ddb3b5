//! [`Fenced`]: why this worker may no longer write to Kubernetes for a
//! session, because a newer lease holder may own it. A fenced job is
//! abandoned, not retried and not failed: the entry stays pending and the
//! newer holder's work stands.
//!
//! Only the error types live here, so the entitlement check
//! (`entitlement.rs`), the executor seam (`executor.rs`) and the write gate
//! (`k8s/gate.rs`) can all name them without importing each other.

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    /// Past the local entitlement deadline (last successful lease send +
    /// TTL − margin): the lease may have expired and been taken.
    #[error("lease entitlement ended {late_ms} ms ago; a newer holder may own the session")]
    DeadlinePassed {
        /// How far past the deadline the write came.
        late_ms: u64,
    },
    /// A lease renewal answered "lost".
    #[error("the session lease was lost to another holder")]
    LeaseLost,
    /// The object carries a newer lease's fencing token than ours.
    #[error("{object} carries fence {theirs}, newer than ours ({ours})")]
    NewerFence {
        /// `Kind/name`.
        object: String,
        /// Our lease's fencing token.
        ours: u64,
        /// The token on the object.
        theirs: u64,
    },
    /// The check right before a create (lease, generation, desired state
    /// in one Redis script) said no.
    #[error("not entitled to create {object}: {why}")]
    NotEntitled {
        /// `Kind/name`.
        object: String,
        /// The script's answer.
        why: String,
    },
}

/// Why the check before a create did not allow it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CreateCheckError {
    /// A newer holder owns the session.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// Redis could not answer (retryable).
    #[error("entitlement check failed: {0}")]
    Unavailable(String),
}
