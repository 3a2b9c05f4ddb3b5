//! The runner's configuration: concurrency, lease, reclaim, delivery limit,
//! retry policy and shutdown grace. The worker's command line
//! (`crate::cli`) fills it; the defaults here are the production ones.

use std::time::Duration;

use backon::ExponentialBuilder;

use crate::queue::QueueConfig;

/// Retry timing for `ExecError::Retryable`: exponential with jitter, a cap
/// and a bounded number of attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// First delay.
    pub min_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// Growth factor per retry.
    pub factor: f32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { min_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10), max_retries: 5, factor: 2.0 }
    }
}

impl RetryPolicy {
    /// A `backon` builder with jitter seeded per call (so workers do not
    /// retry in lockstep).
    pub fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_max_times(self.max_retries)
            .with_jitter_seed(crate::random::jitter_seed())
            .with_jitter()
    }
}

/// Everything the runner needs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Redis side: consumer name, `BLOCK` time, timeouts.
    pub queue: QueueConfig,
    /// Jobs executed at once by this process.
    pub concurrency: usize,
    /// Session lease TTL, and the idle time after which other workers
    /// reclaim an entry. Heartbeats run every third of it.
    pub lease: Duration,
    /// How often the reclaimer runs `XAUTOCLAIM`.
    pub reclaim_interval: Duration,
    /// How often the stream is trimmed.
    pub trim_interval: Duration,
    /// Deliveries after which an entry is dead-lettered.
    pub max_deliveries: u64,
    /// Retry policy for retryable executor errors.
    pub retry: RetryPolicy,
    /// How long in-flight jobs may run after shutdown was requested.
    pub shutdown_grace: Duration,
}

impl RunnerConfig {
    /// Production defaults for `consumer`.
    pub fn new(consumer: impl Into<String>) -> Self {
        Self {
            queue: QueueConfig::new(consumer),
            concurrency: 8,
            lease: Duration::from_secs(30),
            reclaim_interval: Duration::from_secs(5),
            trim_interval: Duration::from_secs(60),
            max_deliveries: 5,
            retry: RetryPolicy::default(),
            shutdown_grace: Duration::from_secs(25),
        }
    }

    /// Checks the values once, at start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.queue.consumer;
        if c.is_empty() || c.chars().any(char::is_whitespace) {
            return Err(ConfigError::Consumer(c.clone()));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::Concurrency);
        }
        if self.lease < Duration::from_millis(30) {
            return Err(ConfigError::Lease(self.lease));
        }
        if self.max_deliveries == 0 {
            return Err(ConfigError::MaxDeliveries);
        }
        if self.reclaim_interval.is_zero() || self.trim_interval.is_zero() || self.queue.block.is_zero() {
            return Err(ConfigError::ZeroInterval);
        }
        Ok(())
    }
}

/// An invalid [`RunnerConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Consumer names must be non-empty and free of whitespace.
    #[error("consumer name {0:?} must be non-empty and contain no whitespace")]
    Consumer(String),
    /// Concurrency must be at least 1.
    #[error("concurrency must be at least 1")]
    Concurrency,
    /// The lease is too short to heartbeat.
    #[error("lease {0:?} is too short (at least 30ms)")]
    Lease(Duration),
    /// The delivery limit must be at least 1.
    #[error("max deliveries must be at least 1")]
    MaxDeliveries,
    /// Intervals and the block time must be positive.
    #[error("block time, reclaim and trim intervals must be positive")]
    ZeroInterval,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        assert_eq!(RunnerConfig::new("worker-0-ab12").validate(), Ok(()));
        assert!(matches!(RunnerConfig::new("has space").validate(), Err(ConfigError::Consumer(_))));
        assert!(matches!(RunnerConfig::new("").validate(), Err(ConfigError::Consumer(_))));
        let mut c = RunnerConfig::new("w");
        c.concurrency = 0;
        assert_eq!(c.validate(), Err(ConfigError::Concurrency));
        let mut c = RunnerConfig::new("w");
        c.max_deliveries = 0;
        assert_eq!(c.validate(), Err(ConfigError::MaxDeliveries));
    }

    #[test]
    fn retry_delays_are_capped() {
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retries: 6,
            factor: 2.0,
        };
        let delays: Vec<_> = backon::BackoffBuilder::build(policy.builder()).collect();
        assert_eq!(delays.len(), 6, "bounded attempts");
        // Jitter adds at most one more delay's worth on top of the cap.
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(80)), "{delays:?}");
    }
}
