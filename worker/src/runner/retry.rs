//! Retrying the executor within one delivery: retryable [`ExecError`]s are
//! tried again after the [`RetryPolicy`]'s jittered exponential delays, up
//! to its bound; a permanent error, or the last retryable one, is returned.
//!
//! Delays are `tokio::time` sleeps, so tests drive them with paused time.
//! What the returned error means for the entry (finish `failed`, or leave
//! it pending) is the lifecycle's decision (`lifecycle.rs`), not this
//! module's.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::Retryable;

use super::runner_config::RetryPolicy;
use crate::executor::ExecError;

/// Runs `attempt(n)` (`n` counts tries from 1) until it succeeds, fails
/// permanently, or the policy's retries are spent. `on_retry` runs before
/// each delay with the error and the delay.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    attempt: F,
    on_retry: impl Fn(&ExecError, Duration),
) -> Result<T, ExecError>
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = Result<T, ExecError>>,
{
    let tries = AtomicU32::new(0);
    (|| attempt(tries.fetch_add(1, Ordering::Relaxed) + 1))
        .retry(policy.builder())
        .sleep(tokio::time::sleep)
        .when(ExecError::is_retryable)
        .notify(|error, delay| on_retry(error, delay))
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proto_types::SessionState;
    use tokio::time::Instant;

    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn policy() -> RetryPolicy {
        RetryPolicy { min_delay: MS(100), max_delay: MS(1_000), max_retries: 3, factor: 2.0 }
    }

    /// Fails retryably `failures` times, then succeeds; records when each try came.
    async fn run(failures: u32, permanent: bool) -> (Result<u32, ExecError>, Vec<Duration>, Vec<Duration>) {
        let start = Instant::now();
        let tries = Mutex::new(Vec::new());
        let delays = Mutex::new(Vec::new());
        let result = with_retries(
            &policy(),
            |n| {
                tries.lock().expect("lock").push(start.elapsed());
                async move {
                    match n {
                        _ if permanent => Err(ExecError::permanent("forbidden", SessionState::Failed)),
                        n if n <= failures => Err(ExecError::retryable("503")),
                        n => Ok(n),
                    }
                }
            },
            |_, delay| delays.lock().expect("lock").push(delay),
        )
        .await;
        (result, tries.into_inner().expect("lock"), delays.into_inner().expect("lock"))
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_back_off_exponentially_with_jitter() {
        let (result, tries, delays) = run(2, false).await;
        assert_eq!(result.ok(), Some(3), "third try succeeds");
        assert_eq!(tries.len(), 3);
        assert_eq!(delays.len(), 2);
        // Exponential from 100 ms, jitter adds at most one more delay's worth.
        assert!(delays[0] >= MS(100) && delays[0] <= MS(200), "{delays:?}");
        assert!(delays[1] >= MS(200) && delays[1] <= MS(400), "{delays:?}");
        // Each try comes after the announced delay, to the timer's millisecond (paused time).
        for (gap, delay) in [(tries[1] - tries[0], delays[0]), (tries[2] - tries[1], delays[1])] {
            assert!(gap >= delay && gap <= delay + MS(1), "{gap:?} after a delay of {delay:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_and_the_last_error_is_returned() {
        let (result, tries, delays) = run(u32::MAX, false).await;
        assert!(matches!(result, Err(ExecError::Retryable { .. })));
        assert_eq!(tries.len(), 4, "the first try and max_retries = 3 more");
        assert!(delays.iter().all(|d| *d <= MS(2_000)), "capped: {delays:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let (result, tries, delays) = run(0, true).await;
        assert!(matches!(result, Err(ExecError::Permanent { .. })));
        assert_eq!(tries, [Duration::ZERO]);
        assert!(delays.is_empty());
    }
}
