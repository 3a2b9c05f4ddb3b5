//! `kube-standin`: a dev-only stand-in Kubernetes API server. It serves, over plain HTTP on
//! 127.0.0.1, an in-memory cluster from `kube-fake-client`, plus what the fake lacks: discovery,
//! namespaces, the KEDA and CSI snapshot kinds, the Deployment `scale` subresource, polling watches, delete
//! preconditions, call recording (for the RBAC check) and fault injection. It writes a
//! kubeconfig so the real worker binary and `kubectl` talk to it.
//!
//! Layout (each module depends only on those listed before it, never on one that uses it):
//! - `config`: clap flags and the validated [`Config`];
//! - `route` (pure): request → [`route::Route`], RBAC verbs;
//! - `resource`: `kube::Resource` for hand-typed kinds (a macro); `keda`, `snapshot`: the
//!   custom kinds served (`snapshot` also decides a snapshot's status);
//! - `discovery` (pure): the discovery documents;
//! - `cluster`: builds the fake cluster; `namespaces`: the namespace store; `persist`: the
//!   objects on disk across restarts;
//! - `fake`: the fake cluster as the adapters see it; `scale`, `watch`, `pod_logs`:
//!   subresource and watch adapters over it; `handler`: the request handler routing to them;
//! - `kubelet`: the simulated kubelet (Deployments become ready, pods vanish, Jobs finish),
//!   woken by `changes`: the feed of writes that reach the fake cluster; `snapshots`: the
//!   pass both kubelets run to make VolumeSnapshots ready;
//! - `process_kubelet`: the kubelet of real local processes, built from `volumes` (claims as
//!   directories, snapshots copied with `tree_copy`), `launch` (pure: pod spec → command line in a private root) and
//!   `pod_process` (one running process group);
//! - `recorder`, `faults`, `kubeconfig`, `respond`: small helpers; `server`: the accept loop.
//!
//! Not a Kubernetes: no admission, no schema validation, no controllers (the kubelet is the
//! only thing that changes objects on its own); see the README's limits.

pub mod changes;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod fake;
pub mod faults;
pub mod handler;
pub mod keda;
pub mod kubeconfig;
pub mod kubelet;
pub mod launch;
pub mod namespaces;
pub mod persist;
pub mod pod_logs;
pub mod pod_process;
pub mod process_kubelet;
pub mod recorder;
mod resource;
pub mod respond;
pub mod route;
mod scale;
mod server;
pub mod snapshot;
pub mod snapshots;
pub mod tree_copy;
pub mod volumes;
mod watch;

pub use config::{Args, Config, ConfigError, FaultPlan, KubeletMode, KubeletSettings, ProcessSettings};

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
    /// The state file could not be loaded.
    #[error(transparent)]
    State(#[from] persist::PersistError),
    /// The process kubelet cannot run here.
    #[error(
        "the process kubelet needs a private mount namespace (root, unshare, setpriv, chroot); use --kubelet=simulated"
    )]
    ProcessUnsupported,
}

/// How long after a write the state file is written (writes in between share one save).
const SAVE_AFTER: Duration = Duration::from_millis(300);

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
    fake: Arc<fake::Fake>,
    state_file: Option<PathBuf>,
    shutdown: signal::Sender<bool>,
    server: JoinHandle<()>,
    kubelet: Option<JoinHandle<()>>,
    persister: Option<JoinHandle<()>>,
}

impl Standin {
    /// Build the cluster, bind, write the kubeconfig (and address file), start serving.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        // A kubeconfig or address file left by an earlier run must not signal readiness.
        for stale in std::iter::once(&config.kubeconfig_out).chain(config.addr_file.as_ref()) {
            let _ = std::fs::remove_file(stale);
        }
        let loaded = match &config.state_file {
            Some(path) => persist::load(path)?,
            None => persist::State::default(),
        };
        if !loaded.objects.is_empty() {
            tracing::info!(objects = loaded.objects.len(), "loaded the cluster's objects from the state file");
        }
        let process = match (config.kubelet.mode, &config.kubelet.process) {
            (KubeletMode::Process, Some(settings)) => {
                if !process_kubelet::ProcessKubelet::supported().await {
                    return Err(StartError::ProcessUnsupported);
                }
                Some(settings.clone())
            }
            _ => None,
        };
        let raw = cluster::build(loaded.objects).await?;
        // Writes through the server (and the tests' in-process client) wake the kubelet.
        let changes = Arc::new(changes::Changes::default());
        let client = changes::notifying_client(raw.clone(), Arc::clone(&changes));
        let recorder = recorder::Recorder::open(config.record_calls.as_deref())?;
        let (shutdown, shutdown_rx) = signal::channel(false);
        let mut names = config.namespaces.clone();
        names.extend(loaded.namespaces);
        let fake = Arc::new(fake::Fake::new(client.clone(), namespaces::Namespaces::new(&names), shutdown_rx.clone()));
        let logs = process.as_ref().map(|p| pod_logs::PodLogs::new(&p.pod_logs_dir));
        let handler = Arc::new(Handler::new(Arc::clone(&fake), recorder, faults::Faults::new(config.faults), logs));
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind { addr: config.addr, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.addr, source })?;
        let server = tokio::spawn(server::serve(listener, Arc::clone(&handler), shutdown_rx.clone()));

        let stopped = |mut stop: signal::Receiver<bool>| async move {
            // An error means the sender is gone: stop too.
            let _ = stop.wait_for(|down| *down).await;
        };
        // The kubelets act on the raw in-memory client (not recorded, not faulted, and their
        // own writes do not wake them again).
        let kubelet = match (config.kubelet.mode, process) {
            (KubeletMode::Off, _) => None,
            (KubeletMode::Process, Some(settings)) => {
                let kubelet = process_kubelet::ProcessKubelet::new(raw.clone(), &settings);
                let (changes, stop) = (Arc::clone(&changes), stopped(shutdown_rx.clone()));
                tracing::info!(volumes = %settings.volumes_dir.display(), "process kubelet: pods are local processes");
                Some(tokio::spawn(async move { kubelet.run(&changes, stop).await }))
            }
            _ => {
                let kubelet = kubelet::Kubelet::new(
                    raw.clone(),
                    kubelet::KubeletConfig {
                        delay: config.kubelet.delay,
                        fail_backups: config.kubelet.fail_backups,
                        namespace: None,
                    },
                );
                let (changes, stop) = (Arc::clone(&changes), stopped(shutdown_rx.clone()));
                Some(tokio::spawn(async move { kubelet.run(&changes, KUBELET_RESYNC, stop).await }))
            }
        };
        let persister = config.state_file.clone().map(|path| {
            let (fake, changes, mut stop) = (Arc::clone(&fake), Arc::clone(&changes), shutdown_rx.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = changes.written() => {}
                        _ = stop.wait_for(|down| *down) => return,
                    }
                    tokio::time::sleep(SAVE_AFTER).await;
                    save_state(&fake, &path).await;
                }
            })
        });

        let namespace = config.namespaces.first().map(String::as_str).unwrap_or("default");
        kubeconfig::write(&config.kubeconfig_out, &kubeconfig::render(addr, namespace))?;
        if let Some(path) = &config.addr_file {
            kubeconfig::write(path, &format!("{addr}\n"))?;
        }
        tracing::info!(%addr, kubeconfig = %config.kubeconfig_out.display(), "kube-standin listening");
        Ok(Self {
            addr,
            kubeconfig: config.kubeconfig_out.clone(),
            handler,
            fake,
            state_file: config.state_file.clone(),
            shutdown,
            server,
            kubelet,
            persister,
        })
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

    /// Stop accepting, end watches, drain connections (bounded), stop the kubelet (and its
    /// processes) and write the state file.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let wait = Duration::from_secs(10);
        if tokio::time::timeout(wait, self.server).await.is_err() {
            tracing::warn!("server did not stop in time");
        }
        // The process kubelet gives its pods their grace period (at most 10 s) first.
        if let Some(kubelet) = self.kubelet
            && tokio::time::timeout(wait + Duration::from_secs(10), kubelet).await.is_err()
        {
            tracing::warn!("kubelet did not stop in time");
        }
        if let Some(persister) = self.persister {
            let _ = persister.await;
        }
        if let Some(path) = &self.state_file {
            save_state(&self.fake, path).await;
        }
    }
}

/// Writes the cluster's objects to `path` (failures are logged: the cluster keeps running).
async fn save_state(fake: &fake::Fake, path: &std::path::Path) {
    let names =
        fake.namespaces().list().iter().filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned)).collect();
    let saved = match persist::snapshot(fake.client(), names).await {
        Ok(state) => persist::save(path, &state),
        Err(e) => Err(e),
    };
    if let Err(error) = saved {
        tracing::warn!(%error, "could not write the state file");
    }
}
