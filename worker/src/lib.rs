//! The session-manager worker: consumes jobs from the Redis Stream and
//! converges sessions on Kubernetes.

pub mod admin;
pub mod config;
pub mod executor;
pub mod k8s;
pub mod metrics;
pub mod process;
pub mod queue;
pub mod runner;
