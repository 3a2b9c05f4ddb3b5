//! The Kubernetes side of the worker: the per-session objects, the pure
//! planner, and [`K8sExecutor`], the production [`crate::executor::Executor`].
//!
//! | module | job |
//! |---|---|
//! | [`config`] | [`K8sConfig`]: every knob, with defaults |
//! | [`names`] | object names, labels, annotations derived from the session id |
//! | [`security`] | `restricted` Pod Security Standard contexts |
//! | [`objects`] | PVC, Deployment, Service, Ingress builders (pure) |
//! | [`keda`] | the typed KEDA `ScaledObject` and why sleep uses `paused-replicas` |
//! | [`backup`] | the backup Job builder, file name and outcome |
//! | [`plan`] | `plan(desired, &Observed) -> Vec<Step>` (pure) |
//! | [`error`] | retryable/permanent classification of Kubernetes errors |
//! | [`executor`] | observe → plan → act against a `kube::Client` |
//! | [`render`] | every generated object as JSON, for validation |
//! | [`telemetry`] | span and latency histogram per Kubernetes API call (tower layer), [`client`] |
//!
//! No config loading happens here: the caller builds the `kube::Client`
//! (production: [`client`], kubeconfig or in-cluster) and fills [`K8sConfig`].

pub mod backup;
pub mod config;
pub mod error;
pub mod executor;
pub mod keda;
pub mod names;
pub mod objects;
pub mod plan;
pub mod render;
pub mod security;
pub mod telemetry;

pub use config::K8sConfig;
pub use executor::K8sExecutor;
pub use render::render_session_objects;
pub use telemetry::client;
