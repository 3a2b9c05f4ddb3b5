//! The session-manager worker: consumes jobs from the Redis Stream and
//! converges sessions on Kubernetes.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod executor;
pub mod k8s;
pub mod metrics;
pub mod queue;
pub mod random;
pub mod runner;
