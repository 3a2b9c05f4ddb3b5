//! The session-manager worker: consumes jobs from the Redis Stream and
//! converges sessions on Kubernetes.

pub mod executor;
pub mod k8s;
pub mod queue;
pub mod runner;
