//! Whether this worker is still entitled to write to Kubernetes under its
//! session lease, decided from what it knows locally.
//!
//! The worker knows when it last *sent* a lease acquire or renew that
//! succeeded. The lease cannot have expired before that instant + TTL, so
//! until then minus a margin for clock rate and request latency
//! ([`margin`]: a tenth of the TTL, at least 200 ms) no other worker can
//! hold it. Past that deadline, or once a renewal answered "lost", every
//! write is refused with [`Fenced`]. [`Entitlement`] is the pure decision;
//! [`LeaseGuard`] is the shared handle the heartbeat updates and the
//! Kubernetes write gate (`k8s/gate.rs`) asks, with the wall clock of
//! `clock.rs`. The fence at the cluster (annotations, preconditions) is
//! not here.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::SharedClock;
use crate::fenced::{CreateCheckError, Fenced};

/// Safety margin subtracted from the lease TTL: `max(ttl / 10, 200 ms)`.
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(200))
}

/// The local entitlement state of one held lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entitlement {
    ttl_ms: u64,
    /// When the last successful acquire/renew was sent (wall-clock ms).
    sent_ms: u64,
    lost: bool,
}

impl Entitlement {
    /// A lease of `ttl` whose acquire was sent at `sent_ms`.
    pub fn new(ttl: Duration, sent_ms: u64) -> Self {
        Self { ttl_ms: ttl.as_millis() as u64, sent_ms, lost: false }
    }

    /// A renewal sent at `sent_ms` succeeded.
    pub fn renewed(&mut self, sent_ms: u64) {
        self.sent_ms = self.sent_ms.max(sent_ms);
    }

    /// A renewal answered "lost": no write is entitled any more.
    pub fn lost(&mut self) {
        self.lost = true;
    }

    /// The last instant (ms) a write may be sent.
    pub fn deadline_ms(&self) -> u64 {
        let margin = margin(Duration::from_millis(self.ttl_ms)).as_millis() as u64;
        (self.sent_ms + self.ttl_ms).saturating_sub(margin)
    }

    /// `Ok` when a write sent at `now_ms` is entitled.
    pub fn check(&self, now_ms: u64) -> Result<(), Fenced> {
        if self.lost {
            return Err(Fenced::LeaseLost);
        }
        let deadline = self.deadline_ms();
        if now_ms > deadline {
            return Err(Fenced::DeadlinePassed { late_ms: now_ms - deadline });
        }
        Ok(())
    }
}

/// What a create must be for, as the check before it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatePurpose {
    /// A workspace object (PVC, Deployment, Service, Ingress, ScaledObject):
    /// refused when the session's desired state is `deleted`.
    Workspace,
    /// The backup of the request itself (its Job, or in snapshot mode its
    /// VolumeSnapshot): allowed while desired is `deleted`; the runner's
    /// check records it `pending` as it allows it.
    Backup(proto_types::BackupKind),
}

/// The check run right before each create (the `entitled` Redis script).
pub type CreateCheck =
    Arc<dyn Fn(CreatePurpose) -> Pin<Box<dyn Future<Output = Result<(), CreateCheckError>> + Send>> + Send + Sync>;

struct Inner {
    token: u64,
    /// `None`: not bounded by a lease (in-process tests without a runner).
    state: Option<Mutex<Entitlement>>,
    clock: SharedClock,
    create_check: Option<CreateCheck>,
}

/// The lease a converge runs under, shared by the heartbeat (which updates
/// it) and the write gate (which asks it). Cheap to clone.
#[derive(Clone)]
pub struct LeaseGuard(Arc<Inner>);

impl LeaseGuard {
    /// A guard for a lease with fencing `token`, acquired with a request
    /// sent at `sent_ms`, checked against `clock`, running `create_check`
    /// before each create.
    pub fn new(token: u64, ttl: Duration, sent_ms: u64, clock: SharedClock, create_check: CreateCheck) -> Self {
        Self(Arc::new(Inner {
            token,
            state: Some(Mutex::new(Entitlement::new(ttl, sent_ms))),
            clock,
            create_check: Some(create_check),
        }))
    }

    /// A guard that is always entitled, with fencing `token` (executors
    /// driven without a runner, e.g. the in-process Kubernetes tests; and
    /// the drift repair's orphan deletes, which have no session lease: see
    /// `sweeper/reap.rs` for what fences them instead).
    pub fn unbounded(token: u64) -> Self {
        Self(Arc::new(Inner { token, state: None, clock: Arc::new(crate::clock::SystemClock), create_check: None }))
    }

    /// The lease's fencing token: what every written object carries.
    pub fn token(&self) -> u64 {
        self.0.token
    }

    /// The clock's time now (ms), for the heartbeat to stamp its sends.
    pub fn now_ms(&self) -> u64 {
        self.0.clock.now_ms()
    }

    fn with(&self, f: impl FnOnce(&mut Entitlement)) {
        if let Some(state) = &self.0.state {
            f(&mut state.lock().expect("entitlement lock is never poisoned"));
        }
    }

    /// A renewal sent at `sent_ms` succeeded.
    pub fn renewed(&self, sent_ms: u64) {
        self.with(|e| e.renewed(sent_ms));
    }

    /// A renewal answered "lost".
    pub fn lost(&self) {
        self.with(Entitlement::lost);
    }

    /// `Ok` when a write may be sent now.
    pub fn check(&self) -> Result<(), Fenced> {
        let now = self.now_ms();
        let mut result = Ok(());
        self.with(|e| result = e.check(now));
        result
    }

    /// The atomic check right before a create; then [`Self::check`] again.
    pub async fn check_create(&self, purpose: CreatePurpose) -> Result<(), CreateCheckError> {
        if let Some(check) = &self.0.create_check {
            check(purpose).await?;
        }
        Ok(self.check()?)
    }
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.0.state.as_ref().and_then(|s| s.lock().ok().map(|e| *e));
        f.debug_struct("LeaseGuard").field("token", &self.0.token).field("state", &state).finish()
    }
}

/// Guards compare by token: the same lease.
impl PartialEq for LeaseGuard {
    fn eq(&self, other: &Self) -> bool {
        self.0.token == other.0.token
    }
}

impl Eq for LeaseGuard {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    const TTL: Duration = Duration::from_millis(2_000);

    fn guard(clock: &ManualClock) -> LeaseGuard {
        let check: CreateCheck = Arc::new(|_| Box::pin(async { Ok(()) }));
        LeaseGuard::new(7, TTL, clock.now_ms(), Arc::new(clock.clone()), check)
    }

    #[test]
    fn the_margin_is_a_tenth_of_the_ttl_but_at_least_200_ms() {
        assert_eq!(margin(TTL), Duration::from_millis(200));
        assert_eq!(margin(Duration::from_secs(30)), Duration::from_secs(3));
        assert_eq!(margin(Duration::from_millis(500)), Duration::from_millis(200));
    }

    #[test]
    fn a_write_just_inside_the_deadline_passes_and_just_past_is_refused() {
        let clock = ManualClock::at(10_000);
        let g = guard(&clock);
        // Deadline: sent 10 000 + TTL 2 000 − margin 200 = 11 800.
        clock.set_ms(11_800);
        assert_eq!(g.check(), Ok(()));
        clock.set_ms(11_801);
        assert_eq!(g.check(), Err(Fenced::DeadlinePassed { late_ms: 1 }));
    }

    #[test]
    fn a_renewal_moves_the_deadline_from_when_it_was_sent() {
        let clock = ManualClock::at(10_000);
        let g = guard(&clock);
        g.renewed(11_000);
        clock.set_ms(12_800);
        assert_eq!(g.check(), Ok(()));
        clock.set_ms(12_801);
        assert!(g.check().is_err());
        // An older send answering late does not move it back.
        g.renewed(10_500);
        assert!(g.check().is_err());
    }

    #[test]
    fn a_renewal_that_answered_lost_refuses_at_once() {
        let clock = ManualClock::at(10_000);
        let g = guard(&clock);
        g.lost();
        assert_eq!(g.check(), Err(Fenced::LeaseLost));
    }

    #[tokio::test]
    async fn a_refused_create_check_refuses_the_create() {
        let clock = ManualClock::at(0);
        let check: CreateCheck = Arc::new(|_| {
            Box::pin(async { Err(Fenced::NotEntitled { object: "PVC/x".into(), why: "lost".into() }.into()) })
        });
        let g = LeaseGuard::new(3, TTL, 0, Arc::new(clock), check);
        assert!(matches!(g.check_create(CreatePurpose::Workspace).await, Err(CreateCheckError::Fenced(_))));
        assert!(LeaseGuard::unbounded(3).check_create(CreatePurpose::Workspace).await.is_ok());
    }
}
