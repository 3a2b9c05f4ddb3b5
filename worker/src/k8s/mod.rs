//! The Kubernetes side of the worker: the per-session objects, the pure
//! planner, and [`K8sExecutor`], the production [`crate::executor::Executor`].
//!
//! | module | job |
//! |---|---|
//! | [`k8s_config`] | [`K8sConfig`]: every knob, with defaults |
//! | [`names`] | object names, labels, annotations derived from the session id |
//! | [`security`] | `restricted` Pod Security Standard contexts |
//! | [`objects`] | PVC, Deployment, Service, Ingress builders (pure) |
//! | `resource.rs` | `kube::Resource` for the hand-typed custom kinds (a macro) |
//! | [`keda`] | the typed KEDA `ScaledObject` and why sleep uses `paused-replicas` |
//! | [`backup`] | the backup Job builder, file name and outcome |
//! | [`restore`] | the restore Job of a session created from a backup, and its failure reason |
//! | [`snapshot`] | the typed CSI `VolumeSnapshot` of snapshot mode, its builder and readiness |
//! | [`prune`] | the prune Job of backup retention (removes listed files from the backup volume) |
//! | [`plan`] | `plan(desired, &Observed, Routing) -> Vec<Step>` (pure) |
//! | [`error`] | Kubernetes errors as typed [`crate::executor::ExecError`]s (retryable or permanent, source kept) |
//! | `call.rs` | one API call in its span; typed reads |
//! | [`gate`] | the write gate every write goes through: entitlement, fence annotation, resourceVersion/uid preconditions, create only after the Redis check |
//! | [`reconcile`] | [`K8sExecutor`]: observe → plan → act against a `kube::Client` |
//! | [`render`] | every generated object as JSON, for validation |
//! | [`telemetry`] | span and latency histogram per Kubernetes API call (tower layer), [`client`] |
//!
//! No config loading happens here: the caller builds the `kube::Client`
//! (production: [`client`], kubeconfig or in-cluster) and fills [`K8sConfig`].

pub mod backup;
mod call;
pub mod error;
pub mod gate;
pub mod k8s_config;
pub mod keda;
pub mod names;
pub mod objects;
pub mod plan;
pub mod prune;
pub mod reconcile;
pub mod render;
mod resource;
pub mod restore;
pub mod security;
pub mod snapshot;
pub mod telemetry;

pub use k8s_config::K8sConfig;
pub use reconcile::K8sExecutor;
pub use render::{render_session_objects, render_worker_objects};
pub use telemetry::client;
