//! Command-line / environment configuration of `kube-standin`, parsed with clap and validated
//! once into a typed [`Config`]. Parsing never touches the process environment in tests: use
//! [`Args::try_parse_from`] with explicit flags.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags and environment variables of `kube-standin`.
#[derive(Debug, Clone, Parser)]
#[command(name = "kube-standin", about = "Dev-only stand-in Kubernetes API server (in-memory, plain HTTP).")]
pub struct Args {
    /// Address to listen on (plain HTTP). Port 0 picks a free port; the actual address is
    /// printed and written to the kubeconfig (and to --addr-file if given).
    #[arg(long, env = "STANDIN_ADDR", default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,

    /// Where to write a kubeconfig pointing at this server (written once listening).
    #[arg(long, env = "STANDIN_KUBECONFIG_OUT", default_value = ".dev/kubeconfig")]
    pub kubeconfig_out: PathBuf,

    /// Optional file that receives the actual `host:port` once listening.
    #[arg(long, env = "STANDIN_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// Namespaces that exist from the start (comma separated); others are created on first write.
    #[arg(long = "namespace", env = "STANDIN_NAMESPACES", default_value = "workspaces", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Append one line per resource request (`VERB GROUP RESOURCE[/SUBRESOURCE]`, core group `""`).
    #[arg(long, env = "STANDIN_RECORD_CALLS")]
    pub record_calls: Option<PathBuf>,

    /// Fault injection: fail the first N resource requests (discovery is never failed).
    #[arg(long, env = "STANDIN_FAIL_FIRST", default_value_t = 0)]
    pub fail_first: u32,

    /// Fault injection: HTTP status of the injected failures (e.g. 500, 429, 503).
    #[arg(long, env = "STANDIN_FAIL_STATUS", default_value_t = 500)]
    pub fail_status: u16,

    /// Which kubelet runs: `process` (workspace pods are real local code-server processes,
    /// Jobs run their real command), `simulated` (pods are records that turn ready after a
    /// delay) or `off`. `true`/`false` are accepted as `simulated`/`off`.
    #[arg(long, env = "STANDIN_KUBELET", default_value = "simulated", value_parser = parse_kubelet_mode)]
    pub kubelet: KubeletMode,

    /// Process kubelet: the code-server executable that workspace containers (image
    /// `*code-server*`) run as (`deploy/local/install-code-server.sh` prints it).
    #[arg(long, env = "STANDIN_CODE_SERVER")]
    pub code_server: Option<PathBuf>,

    /// Process kubelet: each PersistentVolumeClaim is the directory `<this>/<namespace>/<claim>`.
    #[arg(long, env = "STANDIN_VOLUMES_DIR", default_value = ".dev/volumes")]
    pub volumes_dir: PathBuf,

    /// Process kubelet: each pod's stdout and stderr go to `<this>/<namespace>_<pod>.log`
    /// (served as the pod's `log` subresource, for `kubectl logs`).
    #[arg(long, env = "STANDIN_POD_LOGS_DIR", default_value = ".dev/logs/pods")]
    pub pod_logs_dir: PathBuf,

    /// Process kubelet: scratch directory for each pod's private root (its mount points).
    #[arg(long, env = "STANDIN_PODS_DIR", default_value = ".dev/pods")]
    pub pods_dir: PathBuf,

    /// Persist the cluster's objects in this JSON file (written after writes and at shutdown)
    /// and load them at start; unset keeps the cluster in memory only.
    #[arg(long, env = "STANDIN_STATE_FILE")]
    pub state_file: Option<PathBuf>,

    /// Simulated kubelet: delay before a scaled-up Deployment reports ready, before pods of a
    /// scaled-down one vanish, and before a backup Job finishes, in milliseconds.
    #[arg(long, env = "STANDIN_POD_READY_DELAY_MS", default_value_t = 500)]
    pub pod_ready_delay_ms: u64,

    /// Simulated kubelet: make backup Jobs fail instead of complete (to exercise failed backups).
    #[arg(long, env = "STANDIN_FAIL_BACKUPS", default_value_t = false, action = clap::ArgAction::Set)]
    pub fail_backups: bool,
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listen address (port 0 allowed).
    pub addr: SocketAddr,
    /// Kubeconfig output path.
    pub kubeconfig_out: PathBuf,
    /// Optional address file.
    pub addr_file: Option<PathBuf>,
    /// Namespaces present at start.
    pub namespaces: Vec<String>,
    /// Call-record file.
    pub record_calls: Option<PathBuf>,
    /// Injected failures.
    pub faults: FaultPlan,
    /// Kubelet settings.
    pub kubelet: KubeletSettings,
    /// Where the cluster's objects persist, if anywhere.
    pub state_file: Option<PathBuf>,
}

/// Which kubelet the stand-in runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletMode {
    /// Real local processes (see `process_kubelet`).
    Process,
    /// Pod records that become ready after a delay (see `kubelet`).
    Simulated,
    /// Nothing changes objects on its own.
    Off,
}

fn parse_kubelet_mode(s: &str) -> Result<KubeletMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "process" => Ok(KubeletMode::Process),
        "simulated" | "true" => Ok(KubeletMode::Simulated),
        "off" | "false" => Ok(KubeletMode::Off),
        other => Err(format!("{other:?} is not one of process, simulated, off")),
    }
}

/// Where the process kubelet finds code-server and keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSettings {
    /// The code-server executable.
    pub code_server: PathBuf,
    /// Root of the PVC directories.
    pub volumes_dir: PathBuf,
    /// Directory of the pod logs.
    pub pod_logs_dir: PathBuf,
    /// Scratch directory of the pods' private roots.
    pub pods_dir: PathBuf,
}

/// Fault injection plan: the first `count` resource requests answer `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultPlan {
    /// How many resource requests fail.
    pub count: u32,
    /// Their HTTP status.
    pub status: u16,
}

/// Settings handed to the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletSettings {
    /// Which kubelet runs.
    pub mode: KubeletMode,
    /// The process kubelet's settings (`Some` exactly when `mode` is `Process`).
    pub process: Option<ProcessSettings>,
    /// Delay before Deployments become ready, pods vanish, Jobs finish.
    pub delay: Duration,
    /// Backup Jobs fail instead of completing.
    pub fail_backups: bool,
}

impl Default for KubeletSettings {
    fn default() -> Self {
        Self { mode: KubeletMode::Simulated, process: None, delay: Duration::from_millis(500), fail_backups: false }
    }
}

/// A flag value that parses but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `--fail-status` is not an HTTP error status.
    #[error("--fail-status {0} is not an HTTP error status (400..=599)")]
    FailStatus(u16),
    /// An empty or invalid namespace name.
    #[error("namespace {0:?} is not a valid DNS label")]
    Namespace(String),
    /// `--kubelet=process` without a code-server executable.
    #[error("--kubelet=process needs --code-server (STANDIN_CODE_SERVER): {0}")]
    CodeServer(String),
}

impl Config {
    /// A config for tests: port 0 on 127.0.0.1, kubeconfig at `kubeconfig_out`, namespace
    /// `workspaces`, no recording, no faults, kubelet settings at their defaults.
    pub fn for_tests(kubeconfig_out: PathBuf) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig_out,
            addr_file: None,
            namespaces: vec!["workspaces".into()],
            record_calls: None,
            faults: FaultPlan::default(),
            kubelet: KubeletSettings::default(),
            state_file: None,
        }
    }
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(a: Args) -> Result<Self, ConfigError> {
        if !(400..=599).contains(&a.fail_status) {
            return Err(ConfigError::FailStatus(a.fail_status));
        }
        let namespaces: Vec<String> = a.namespaces.into_iter().map(|n| n.trim().to_string()).collect();
        if let Some(bad) = namespaces.iter().find(|n| !is_dns_label(n)) {
            return Err(ConfigError::Namespace(bad.clone()));
        }
        let process = match (a.kubelet, a.code_server) {
            (KubeletMode::Process, None) => return Err(ConfigError::CodeServer("not given".into())),
            (KubeletMode::Process, Some(code_server)) => {
                if !code_server.is_file() {
                    return Err(ConfigError::CodeServer(format!("{} is not a file", code_server.display())));
                }
                Some(ProcessSettings {
                    code_server,
                    volumes_dir: a.volumes_dir,
                    pod_logs_dir: a.pod_logs_dir,
                    pods_dir: a.pods_dir,
                })
            }
            _ => None,
        };
        Ok(Self {
            addr: a.addr,
            kubeconfig_out: a.kubeconfig_out,
            addr_file: a.addr_file,
            namespaces,
            record_calls: a.record_calls,
            faults: FaultPlan { count: a.fail_first, status: a.fail_status },
            kubelet: KubeletSettings {
                mode: a.kubelet,
                process,
                delay: Duration::from_millis(a.pod_ready_delay_ms),
                fail_backups: a.fail_backups,
            },
            state_file: a.state_file,
        })
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(flags: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["kube-standin"];
        argv.extend_from_slice(flags);
        Config::try_from(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn defaults_listen_on_a_free_local_port() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.kubeconfig_out, PathBuf::from(".dev/kubeconfig"));
        assert_eq!(c.namespaces, vec!["workspaces"]);
        assert_eq!(c.faults.count, 0);
        assert_eq!(c.kubelet.mode, KubeletMode::Simulated);
        assert_eq!(c.kubelet.process, None);
        assert_eq!(c.state_file, None);
    }

    #[test]
    fn the_kubelet_mode_keeps_the_old_booleans() {
        assert_eq!(parse(&["--kubelet=true"]).unwrap().kubelet.mode, KubeletMode::Simulated);
        assert_eq!(parse(&["--kubelet=false"]).unwrap().kubelet.mode, KubeletMode::Off);
        assert_eq!(parse(&["--kubelet=off"]).unwrap().kubelet.mode, KubeletMode::Off);
        assert!(Args::try_parse_from(["kube-standin", "--kubelet=maybe"]).is_err());
    }

    #[test]
    fn the_process_kubelet_needs_an_existing_code_server() {
        assert!(matches!(parse(&["--kubelet=process"]), Err(ConfigError::CodeServer(_))));
        assert!(matches!(
            parse(&["--kubelet=process", "--code-server=/nonexistent/code-server"]),
            Err(ConfigError::CodeServer(_))
        ));
        let exe = std::env::current_exe().unwrap();
        let c = parse(&["--kubelet=process", &format!("--code-server={}", exe.display()), "--volumes-dir=/v"]).unwrap();
        assert_eq!(c.kubelet.mode, KubeletMode::Process);
        let p = c.kubelet.process.unwrap();
        assert_eq!((p.code_server, p.volumes_dir), (exe, PathBuf::from("/v")));
        assert_eq!(p.pod_logs_dir, PathBuf::from(".dev/logs/pods"));
    }

    #[test]
    fn flags_are_honoured() {
        let c = parse(&[
            "--addr=127.0.0.1:7001",
            "--namespace=a,b",
            "--fail-first=3",
            "--fail-status=429",
            "--pod-ready-delay-ms=10",
            "--kubelet=false",
            "--record-calls=/tmp/x",
        ])
        .unwrap();
        assert_eq!(c.addr.port(), 7001);
        assert_eq!(c.namespaces, vec!["a", "b"]);
        assert_eq!(c.faults, FaultPlan { count: 3, status: 429 });
        assert_eq!(c.kubelet.delay, Duration::from_millis(10));
        assert_eq!(c.kubelet.mode, KubeletMode::Off);
        assert_eq!(c.record_calls, Some(PathBuf::from("/tmp/x")));
    }

    #[test]
    fn nonsense_is_refused() {
        assert_eq!(parse(&["--fail-status=200"]), Err(ConfigError::FailStatus(200)));
        assert_eq!(parse(&["--namespace=Bad_NS"]), Err(ConfigError::Namespace("Bad_NS".into())));
    }
}
