//! Holding the session lease around a job's converge: wait for it while
//! another job holds it (heartbeating the entry meanwhile, so it is not
//! reclaimed), then keep it and the entry alive while the executor runs.
//!
//! The cadence is a function of the lease TTL ([`LeaseTiming`]): heartbeats
//! every third of it, lease polls backing off up to a quarter of it (at
//! most one second). Waiting uses `tokio::time`, so tests drive it with
//! paused time; the Redis side is the [`LeaseStore`] trait (the queue in
//! production, an in-memory fake in the tests below). Whether to take the
//! lease at all is the lifecycle's decision (`lifecycle.rs`), not this
//! module's.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use proto_types::scripts::lease::{AcquireReply, Lease};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::shutdown::stopped;
use crate::clock::Clock;
use crate::entitlement::LeaseGuard;
use crate::queue::{Queue, QueueError};

/// The Redis operations the lease needs.
pub(crate) trait LeaseStore: Send + Sync {
    /// Tries to acquire the session lease for `owner`.
    fn acquire(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<AcquireReply, QueueError>> + Send;
    /// Resets the entry's idle time; `false` when this consumer lost it.
    fn touch(&self, entry_id: &str) -> impl Future<Output = Result<bool, QueueError>> + Send;
    /// Extends a held lease; `false` when it was lost.
    fn renew(&self, lease: &Lease, ttl: Duration) -> impl Future<Output = Result<bool, QueueError>> + Send;
}

impl LeaseStore for Queue {
    fn acquire(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<AcquireReply, QueueError>> + Send {
        Queue::acquire(self, session_id, owner, ttl)
    }

    fn touch(&self, entry_id: &str) -> impl Future<Output = Result<bool, QueueError>> + Send {
        Queue::touch(self, entry_id)
    }

    fn renew(&self, lease: &Lease, ttl: Duration) -> impl Future<Output = Result<bool, QueueError>> + Send {
        Queue::renew(self, lease, ttl)
    }
}

/// The lease TTL and the cadences derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseTiming {
    /// Lease TTL, also the idle time after which an entry is reclaimed.
    pub(crate) ttl: Duration,
}

impl LeaseTiming {
    /// How often the entry is touched and the lease renewed.
    pub(crate) fn heartbeat_every(self) -> Duration {
        self.ttl / 3
    }

    /// Longest pause between two tries for a held lease.
    fn poll_cap(self) -> Duration {
        (self.ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// Waits for the session lease, touching the entry every
/// [`LeaseTiming::heartbeat_every`] while another holder has it.
/// `on_held` runs each time the lease was found held. Returns the lease and
/// when (`clock` ms) the successful acquire was sent, the start of its
/// entitlement (`crate::entitlement`); `None` when shutdown was requested
/// first.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn wait_for<S: LeaseStore>(
    store: &S,
    timing: LeaseTiming,
    clock: &dyn Clock,
    entry_id: &str,
    session_id: &str,
    owner: &str,
    mut shutdown: watch::Receiver<bool>,
    mut on_held: impl FnMut(),
) -> Result<Option<(Lease, u64)>, QueueError> {
    let cap = timing.poll_cap();
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(10).min(cap))
        .with_max_delay(cap)
        .without_max_times()
        .with_jitter_seed(crate::random::jitter_seed())
        .with_jitter()
        .build();
    let mut last_touch = Instant::now();
    loop {
        let sent_ms = clock.now_ms();
        match store.acquire(session_id, owner, timing.ttl).await? {
            AcquireReply::Acquired { token } => {
                let lease = Lease { session_id: session_id.to_owned(), owner: owner.to_owned(), token };
                return Ok(Some((lease, sent_ms)));
            }
            AcquireReply::Held { owner: holder, ttl_ms } => {
                on_held();
                debug!(holder, ttl_ms, "session lease held; waiting");
            }
        }
        if last_touch.elapsed() >= timing.heartbeat_every() {
            store.touch(entry_id).await?;
            last_touch = Instant::now();
        }
        let delay = delays.next().unwrap_or(cap);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut shutdown) => return Ok(None),
        }
    }
}

/// Keeps the entry from being reclaimed and the lease from expiring: every
/// [`LeaseTiming::heartbeat_every`], touch the entry and renew the lease.
/// Each renewal that succeeded moves `guard`'s entitlement to when it was
/// sent; one that answered "lost" ends it at once. Runs until dropped;
/// failures are logged.
pub(crate) async fn heartbeat<S: LeaseStore>(
    store: &S,
    timing: LeaseTiming,
    entry_id: &str,
    lease: &Lease,
    guard: &LeaseGuard,
) -> Infallible {
    let every = timing.heartbeat_every();
    loop {
        tokio::time::sleep(every).await;
        match store.touch(entry_id).await {
            Ok(true) => {}
            Ok(false) => warn!("entry was reclaimed by another consumer"),
            Err(error) => warn!(%error, "heartbeat failed"),
        }
        let sent_ms = guard.now_ms();
        match store.renew(lease, timing.ttl).await {
            Ok(true) => guard.renewed(sent_ms),
            Ok(false) => {
                guard.lost();
                warn!("session lease lost; no further Kubernetes write, and our session write will be fenced");
            }
            Err(error) => warn!(%error, "lease renewal failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;
    use crate::clock::ManualClock;

    /// Records every call with the (paused) time it came at.
    #[derive(Default)]
    struct FakeStore {
        /// Acquire answers `Held` this many times, then `Acquired`.
        held_for: Mutex<u32>,
        calls: Mutex<Vec<(&'static str, Duration)>>,
        start: Mutex<Option<Instant>>,
    }

    impl FakeStore {
        fn held(n: u32) -> Self {
            let s = Self::default();
            *s.held_for.lock().unwrap() = n;
            *s.start.lock().unwrap() = Some(Instant::now());
            s
        }
        fn log(&self, op: &'static str) {
            let start = self.start.lock().unwrap().expect("started");
            self.calls.lock().unwrap().push((op, start.elapsed()));
        }
        fn at(&self, op: &str) -> Vec<Duration> {
            self.calls.lock().unwrap().iter().filter(|(o, _)| *o == op).map(|(_, t)| *t).collect()
        }
    }

    impl LeaseStore for FakeStore {
        async fn acquire(&self, _: &str, _: &str, _: Duration) -> Result<AcquireReply, QueueError> {
            self.log("acquire");
            let mut held = self.held_for.lock().unwrap();
            if *held == 0 {
                return Ok(AcquireReply::Acquired { token: 42 });
            }
            *held -= 1;
            Ok(AcquireReply::Held { owner: "other".into(), ttl_ms: 900 })
        }
        async fn touch(&self, _: &str) -> Result<bool, QueueError> {
            self.log("touch");
            Ok(true)
        }
        async fn renew(&self, _: &Lease, _: Duration) -> Result<bool, QueueError> {
            self.log("renew");
            Ok(true)
        }
    }

    const TIMING: LeaseTiming = LeaseTiming { ttl: Duration::from_millis(900) };
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn lease() -> Lease {
        Lease { session_id: "abc".into(), owner: "w:1-0".into(), token: 42 }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_touches_and_renews_every_third_of_the_lease() {
        let store = FakeStore::held(0);
        let lease = lease();
        let guard = LeaseGuard::unbounded(42);
        tokio::select! {
            never = heartbeat(&store, TIMING, "1-0", &lease, &guard) => match never {},
            _ = tokio::time::sleep(MS(1_000)) => {}
        }
        assert_eq!(store.at("touch"), [MS(300), MS(600), MS(900)]);
        assert_eq!(store.at("renew"), [MS(300), MS(600), MS(900)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_lease_is_taken_at_once() {
        let store = FakeStore::held(0);
        let (_tx, rx) = watch::channel(false);
        let got = wait_for(&store, TIMING, &ManualClock::at(5), "1-0", "abc", "w:1-0", rx, || {}).await.unwrap();
        assert_eq!(got, Some((lease(), 5)));
        assert_eq!(store.at("acquire"), [MS(0)]);
        assert!(store.at("touch").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_held_lease_polls_within_the_cap_and_touches_the_entry() {
        let store = FakeStore::held(40);
        let (_tx, rx) = watch::channel(false);
        let mut held = 0;
        let got = wait_for(&store, TIMING, &ManualClock::at(5), "1-0", "abc", "w:1-0", rx, || held += 1).await.unwrap();
        assert_eq!(got.map(|(l, _)| l.token), Some(42));
        assert_eq!(held, 40);
        let polls = store.at("acquire");
        let cap = TIMING.poll_cap();
        assert_eq!(cap, MS(225));
        // Jitter adds at most one more delay on top of the cap.
        assert!(polls.windows(2).all(|w| w[1] - w[0] <= cap * 2), "{polls:?}");
        let touches = store.at("touch");
        assert!(!touches.is_empty());
        // The entry is touched at least every third of the lease (plus one poll) while waiting.
        let mut last = Duration::ZERO;
        for t in &touches {
            assert!(*t - last >= TIMING.heartbeat_every(), "{touches:?}");
            assert!(*t - last <= TIMING.heartbeat_every() + cap * 2, "{touches:?}");
            last = *t;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_without_a_lease() {
        let store = FakeStore::held(u32::MAX);
        let (tx, rx) = watch::channel(false);
        let stop = async {
            tokio::time::sleep(MS(2_000)).await;
            tx.send(true).unwrap();
        };
        let clock = ManualClock::at(5);
        let (got, ()) = tokio::join!(wait_for(&store, TIMING, &clock, "1-0", "abc", "w:1-0", rx, || {}), stop);
        assert_eq!(got.unwrap(), None);
        assert!(store.at("acquire").iter().all(|t| *t <= MS(2_000)));
        // At most a third of the lease plus two poll caps (750 ms) between touches.
        assert!(store.at("touch").len() >= 2, "touched while waiting: {:?}", store.at("touch"));
    }
}
