//! The session-manager worker: consumes jobs from the Redis Stream and
//! converges sessions on Kubernetes.
//!
//! # Layout
//!
//! Decide in pure functions, act in adapters:
//!
//! | module | what it holds |
//! |---|---|
//! | [`runner`] | the job loop; [`runner::lifecycle`] decides each job's next step (pure), `runner/job.rs` performs it |
//! | [`queue`] | the Redis Streams adapter: reads, reclaim, acks and the atomic scripts |
//! | [`executor`] | the seam between the runner and Kubernetes: [`executor::Executor`], `Target`, `Outcome`, typed `ExecError` |
//! | [`k8s`] | the Kubernetes side: object builders, `plan` (pure), `reconcile` (the production executor) |
//! | [`cli`] | command-line flags and env vars, validated into the typed configs |
//! | [`clock`] | wall-clock timestamps as an injected [`clock::Clock`] |
//! | [`entitlement`], [`fenced`] | whether a write is still entitled under the session lease (pure, with the shared [`entitlement::LeaseGuard`]); the typed [`fenced::Fenced`] refusal |
//! | [`metrics`], [`admin`] | Prometheus registry and the health/metrics server |
//! | [`random`] | consumer-name suffix and jitter seeds |
//! | [`sweeper`] | lifecycle automation: idle sleep, TTL and maximum age, idle warnings ([`sweeper::decide`] is pure) |

pub mod admin;
pub mod cli;
pub mod clock;
pub mod entitlement;
pub mod executor;
pub mod fenced;
pub mod k8s;
pub mod metrics;
pub mod queue;
pub mod random;
pub mod runner;
pub mod sweeper;
