//! `kube-standin`: a dev-only stand-in Kubernetes API server. It serves, over plain HTTP on
//! 127.0.0.1, an in-memory cluster from `kube-fake-client`, plus what the fake lacks: discovery,
//! namespaces, the KEDA kinds, the Deployment `scale` subresource, polling watches, delete
//! preconditions, call recording (for the RBAC check) and fault injection. It writes a
//! kubeconfig so the real worker binary and `kubectl` talk to it.
//!
//! Layout:
//! - `config`: clap flags and the validated [`Config`];
//! - `route` (pure): request → [`route::Route`], RBAC verbs;
//! - `discovery` (pure): the discovery documents;
//! - `cluster`: builds the fake cluster; `namespaces`: the namespace store;
//! - `handler`: the request handler; `scale`, `watch`: subresource and watch adapters;
//! - `kubelet`: the simulated kubelet (Deployments become ready, pods vanish, Jobs finish),
//!   woken by `changes`: the feed of writes that reach the fake cluster;
//! - `recorder`, `faults`, `kubeconfig`, `respond`: small helpers; `server`: the accept loop.
//!
//! Not a Kubernetes: no admission, no schema validation, no controllers (the simulated kubelet
//! is the only thing that changes objects on its own); see the README's limits.

pub mod changes;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod faults;
pub mod handler;
pub mod keda;
pub mod kubeconfig;
pub mod kubelet;
pub mod namespaces;
pub mod recorder;
pub mod respond;
pub mod route;
mod scale;
mod server;
mod watch;

pub use config::{Args, Config, ConfigError, FaultPlan, KubeletSettings};

use handler::Handler;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

/// How often the simulated kubelet makes a full pass anyway. It acts on each write as it
/// comes (see `changes.rs`), so this is only a safety net, and a full pass costs time linear
/// in the number of stored objects.
const KUBELET_RESYNC: Duration = Duration::from_secs(30);

/// Starting the stand-in failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The fake cluster could not be built.
    #[error(transparent)]
    Cluster(#[from] cluster::BuildError),
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The call-record file could not be opened.
    #[error(transparent)]
    Recorder(#[from] recorder::OpenError),
    /// The kubeconfig (or address file) could not be written.
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::WriteError),
}

/// Install the ring rustls crypto provider for this process (needed before building any
/// `kube::Client` from a kubeconfig: ring and aws-lc-rs are both linked). Idempotent.
pub fn install_crypto_provider() {
    // `Err` only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A running stand-in server.
pub struct Standin {
    addr: SocketAddr,
    kubeconfig: PathBuf,
    handler: Arc<Handler>,
    shutdown: signal::Sender<bool>,
    server: JoinHandle<()>,
    kubelet: Option<JoinHandle<()>>,
}

impl Standin {
    /// Build the cluster, bind, write the kubeconfig (and address file), start serving.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        // A kubeconfig or address file left by an earlier run must not signal readiness.
        for stale in std::iter::once(&config.kubeconfig_out).chain(config.addr_file.as_ref()) {
            let _ = std::fs::remove_file(stale);
        }
        let raw = cluster::build().await?;
        // Writes through the server (and the tests' in-process client) wake the kubelet.
        let changes = Arc::new(changes::Changes::default());
        let client = changes::notifying_client(raw.clone(), Arc::clone(&changes));
        let recorder = recorder::Recorder::open(config.record_calls.as_deref())?;
        let (shutdown, shutdown_rx) = signal::channel(false);
        let handler = Arc::new(Handler::new(
            client.clone(),
            namespaces::Namespaces::new(&config.namespaces),
            recorder,
            faults::Faults::new(config.faults),
            shutdown_rx.clone(),
        ));
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind { addr: config.addr, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.addr, source })?;
        let server = tokio::spawn(server::serve(listener, Arc::clone(&handler), shutdown_rx.clone()));

        // The simulated kubelet acts on the raw in-memory client (not recorded, not faulted,
        // and its own writes do not wake it again).
        let kubelet = config.kubelet.enabled.then(|| {
            let kubelet = kubelet::Kubelet::new(
                raw,
                kubelet::KubeletConfig {
                    delay: config.kubelet.delay,
                    fail_backups: config.kubelet.fail_backups,
                    namespace: None,
                },
            );
            let mut stop = shutdown_rx.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    // An error means the sender is gone: stop too.
                    let _ = stop.wait_for(|down| *down).await;
                };
                kubelet.run(&changes, KUBELET_RESYNC, stopped).await;
            })
        });

        let namespace = config.namespaces.first().map(String::as_str).unwrap_or("default");
        kubeconfig::write(&config.kubeconfig_out, &kubeconfig::render(addr, namespace))?;
        if let Some(path) = &config.addr_file {
            kubeconfig::write(path, &format!("{addr}\n"))?;
        }
        tracing::info!(%addr, kubeconfig = %config.kubeconfig_out.display(), "kube-standin listening");
        Ok(Self { addr, kubeconfig: config.kubeconfig_out.clone(), handler, shutdown, server, kubelet })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the kubeconfig was written.
    pub fn kubeconfig_path(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// The in-memory cluster client (bypasses HTTP, recording and fault injection).
    pub fn cluster_client(&self) -> kube::Client {
        self.handler.client().clone()
    }

    /// The fault injector, to arm failures while running.
    pub fn faults(&self) -> &faults::Faults {
        self.handler.faults()
    }

    /// Stop accepting, end watches, drain connections (bounded) and stop the kubelet.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let wait = Duration::from_secs(10);
        if tokio::time::timeout(wait, self.server).await.is_err() {
            tracing::warn!("server did not stop in time");
        }
        if let Some(kubelet) = self.kubelet
            && tokio::time::timeout(wait, kubelet).await.is_err()
        {
            tracing::warn!("kubelet did not stop in time");
        }
    }
}
