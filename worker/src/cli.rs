//! The worker's command line: clap flags with `env` fallbacks, validated
//! once into the typed [`RunnerConfig`] and [`K8sConfig`]. Only parsing
//! and validation live here; the values' meaning is in those types.
//!
//! Every flag has a default and a doc comment; the README's configuration
//! table lists the same names. Parsing never touches the process
//! environment directly (clap does), so tests call [`Cli::try_parse_from`]
//! with explicit arguments. Bad values end the process with exit status 64
//! and a one-line reason (see `main.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::k8s::K8sConfig;
use crate::k8s::k8s_config::{BackupMode, Routing};
use crate::runner::{RetryPolicy, RunnerConfig};
use crate::sweeper::retention::{DAY_MS, RetentionPolicy};
use crate::sweeper::{Policy, PruneConfig, SweepConfig};

/// Session-manager worker: consumes the `jobs` stream and converges sessions on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
pub struct Cli {
    /// What to do (default: run the worker).
    #[command(subcommand)]
    pub command: Option<Sub>,
    /// Settings.
    #[command(flatten)]
    pub args: Args,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Consume jobs until SIGTERM (the default).
    Run,
    /// Print the Kubernetes objects of one session as a JSON list (for schema validation).
    RenderObjects {
        /// Session id to render.
        #[arg(long, default_value = "0fa6debc")]
        session: String,
    },
}

/// Every setting, each with an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Redis URL (`redis://[:password@]host:port/[db]`).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/")]
    pub redis_url: String,
    /// Consumer name prefix in the `workers` group (e.g. the pod name); a random suffix is added.
    #[arg(long, env = "WORKER_CONSUMER_NAME", default_value = "worker")]
    pub consumer_name: String,
    /// Jobs executed at once by this process.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Session lease TTL and the idle time after which other workers reclaim an entry, in ms.
    #[arg(long, env = "WORKER_LEASE_MS", default_value_t = 30_000)]
    pub lease_ms: u64,
    /// How often the reclaimer runs XAUTOCLAIM, in ms.
    #[arg(long, env = "WORKER_RECLAIM_INTERVAL_MS", default_value_t = 5_000)]
    pub reclaim_interval_ms: u64,
    /// XREADGROUP BLOCK time, in ms.
    #[arg(long, env = "WORKER_BLOCK_MS", default_value_t = 2_000)]
    pub block_ms: u64,
    /// Deliveries after which an entry is dead-lettered.
    #[arg(long, env = "WORKER_MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: u64,
    /// Retries of a retryable Kubernetes failure within one delivery.
    #[arg(long, env = "WORKER_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: usize,
    /// How long in-flight jobs may run after SIGTERM, in seconds (keep below the pod's grace period).
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_SECS", default_value_t = 25)]
    pub shutdown_grace_secs: u64,
    /// Address of the health and metrics server (`/livez`, `/readyz`, `/metrics`).
    #[arg(long, env = "WORKER_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Namespace of the session objects.
    #[arg(long, env = "WORKSPACE_NAMESPACE", default_value = "workspaces")]
    pub namespace: String,
    /// Workspace (code-server) image.
    #[arg(long, env = "WORKSPACE_IMAGE", default_value = "codercom/code-server:4.139.1")]
    pub image: String,
    /// Size of each session's volume.
    #[arg(long, env = "WORKSPACE_PVC_SIZE", default_value = "5Gi")]
    pub pvc_size: String,
    /// Storage class of each session's volume.
    #[arg(long, env = "WORKSPACE_STORAGE_CLASS", default_value = "standard-rwo")]
    pub storage_class: String,
    /// CPU request of the workspace container.
    #[arg(long, env = "WORKSPACE_CPU_REQUEST", default_value = "250m")]
    pub cpu_request: String,
    /// Memory request of the workspace container.
    #[arg(long, env = "WORKSPACE_MEMORY_REQUEST", default_value = "256Mi")]
    pub memory_request: String,
    /// CPU limit of the workspace container.
    #[arg(long, env = "WORKSPACE_CPU_LIMIT", default_value = "500m")]
    pub cpu_limit: String,
    /// Memory limit of the workspace container.
    #[arg(long, env = "WORKSPACE_MEMORY_LIMIT", default_value = "512Mi")]
    pub memory_limit: String,
    /// `gateway`: workspaces are reached through the gateway, no per-session Ingress;
    /// `ingress`: one Ingress per session straight to its Service.
    #[arg(long, env = "WORKSPACE_ROUTING", value_enum, default_value_t = Routing::Gateway)]
    pub routing: Routing,
    /// Ingress class of workspace Ingresses.
    #[arg(long, env = "WORKSPACE_INGRESS_CLASS", default_value = "nginx")]
    pub ingress_class: String,
    /// cert-manager ClusterIssuer for workspace TLS.
    #[arg(long, env = "WORKSPACE_CLUSTER_ISSUER", default_value = "letsencrypt-prod")]
    pub cluster_issuer: String,
    /// Workspace URL pattern (`{uuid}` = session id), used when a session has no recorded URL.
    #[arg(long, env = "WORKSPACE_URL_PATTERN", default_value = "https://vs-code-{uuid}.preview.example.com")]
    pub url_pattern: String,
    /// Redis `host:port` that the per-session KEDA trigger reads.
    #[arg(long, env = "KEDA_REDIS_ADDRESS", default_value = "redis.session-manager.svc.cluster.local:6379")]
    pub keda_redis_address: String,
    /// KEDA TriggerAuthentication (in the workspace namespace) holding the Redis password.
    #[arg(long, env = "KEDA_TRIGGER_AUTH", default_value = "workspace-redis")]
    pub keda_trigger_auth: String,
    /// Shared backup volume mounted at /backup by backup Jobs.
    #[arg(long, env = "BACKUP_PVC", default_value = "backup-pvc")]
    pub backup_pvc: String,
    /// Image of the backup Job (needs `python3`).
    #[arg(long, env = "BACKUP_IMAGE", default_value = "python:3.13-alpine")]
    pub backup_image: String,
    /// How backups are taken: a verified archive on the backup volume, or a CSI VolumeSnapshot.
    #[arg(long, env = "BACKUP_MODE", value_enum, default_value_t = BackupMode::Archive)]
    pub backup_mode: BackupMode,
    /// VolumeSnapshotClass of snapshot backups (empty: the cluster's default class).
    #[arg(long, env = "BACKUP_SNAPSHOT_CLASS", default_value = "workspace-snapshots")]
    pub backup_snapshot_class: String,
    /// Bound on waiting for a workspace to become ready, in seconds.
    #[arg(long, env = "READY_TIMEOUT_SECS", default_value_t = 120)]
    pub ready_timeout_secs: u64,
    /// Bound on waiting for a workspace's pods to go, in seconds.
    #[arg(long, env = "POD_GONE_TIMEOUT_SECS", default_value_t = 120)]
    pub pod_gone_timeout_secs: u64,
    /// Bound on waiting for a backup Job, in seconds.
    #[arg(long, env = "BACKUP_TIMEOUT_SECS", default_value_t = 600)]
    pub backup_timeout_secs: u64,
    /// Pause between two observations while waiting, in ms.
    #[arg(long, env = "K8S_POLL_INTERVAL_MS", default_value_t = 500)]
    pub poll_interval_ms: u64,
    /// Idle time after which a running session is put to sleep, in seconds (0 = never; a session's own `idle_timeout_secs` wins).
    #[arg(long, env = "IDLE_SLEEP_AFTER", default_value_t = 900)]
    pub idle_sleep_after: u64,
    /// How long before an idle sleep the warning notice is published, in seconds (0 = no warning).
    #[arg(long, env = "IDLE_WARNING_BEFORE", default_value_t = 120)]
    pub idle_warning_before: u64,
    /// Unused time after which a session is deleted with its backup, in seconds (0 = never).
    #[arg(long, env = "SESSION_TTL", default_value_t = 86_400)]
    pub session_ttl: u64,
    /// Age since creation after which a session is deleted with its backup, used or not, in seconds (0 = never).
    #[arg(long, env = "SESSION_MAX_AGE", default_value_t = 0)]
    pub session_max_age: u64,
    /// Time between two lifecycle sweeps (one worker sweeps per interval), in ms.
    #[arg(long, env = "SWEEP_INTERVAL_MS", default_value_t = 10_000)]
    pub sweep_interval_ms: u64,
    /// Due sessions handled per sweep.
    #[arg(long, env = "SWEEP_BATCH", default_value_t = 500)]
    pub sweep_batch: usize,
    /// Time between drift repairs (compare every live session with the cluster), in seconds (0 = never).
    #[arg(long, env = "RESYNC_INTERVAL", default_value_t = 300)]
    pub resync_interval: u64,
    /// Time a running session's workspace pod may stay not ready before the drift repair converges it, in seconds (0 = never).
    #[arg(long, env = "READY_TIMEOUT", default_value_t = 300)]
    pub ready_timeout: u64,
    /// Delete orphaned objects (labelled as ours, session unknown or deleted) instead of only reporting them; a claim only after its backup.
    #[arg(long, env = "RESYNC_DELETE_ORPHANS", default_value_t = false, action = clap::ArgAction::Set)]
    pub resync_delete_orphans: bool,
    /// Succeeded backups kept per user; older ones are pruned (0 = no limit).
    #[arg(long, env = "BACKUP_KEEP_PER_USER", default_value_t = 10)]
    pub backup_keep_per_user: usize,
    /// Age after which a backup is pruned, in days (0 = no limit).
    #[arg(long, env = "BACKUP_MAX_AGE_DAYS", default_value_t = 30)]
    pub backup_max_age_days: u64,
    /// Time between two backup retention passes (one worker prunes per interval), in seconds.
    #[arg(long, env = "BACKUP_PRUNE_INTERVAL_SECS", default_value_t = 3600)]
    pub backup_prune_interval_secs: u64,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The runner refused its part.
    #[error(transparent)]
    Runner(#[from] crate::runner::ConfigError),
    /// Redis URL does not parse.
    #[error("REDIS_URL is not a valid Redis URL: {0}")]
    RedisUrl(String),
    /// The URL pattern has no `{uuid}`.
    #[error("WORKSPACE_URL_PATTERN must contain {{uuid}}")]
    UrlPattern,
    /// A sweeper setting that cannot work.
    #[error("{0} must be at least 1")]
    Sweep(&'static str),
}

impl Args {
    /// The runner's settings; `suffix` makes the consumer name unique per process.
    pub fn runner(&self, suffix: &str) -> Result<RunnerConfig, ConfigError> {
        if redis::parse_redis_url(&self.redis_url).is_none() {
            return Err(ConfigError::RedisUrl(self.redis_url.clone()));
        }
        let mut c = RunnerConfig::new(format!("{}-{suffix}", self.consumer_name));
        c.queue.block = Duration::from_millis(self.block_ms);
        c.concurrency = self.concurrency;
        c.lease = Duration::from_millis(self.lease_ms);
        c.reclaim_interval = Duration::from_millis(self.reclaim_interval_ms);
        c.max_deliveries = self.max_deliveries;
        c.retry = RetryPolicy { max_retries: self.max_retries, ..RetryPolicy::default() };
        c.shutdown_grace = Duration::from_secs(self.shutdown_grace_secs);
        c.validate()?;
        Ok(c)
    }

    /// The lifecycle sweeper's settings.
    pub fn sweeper(&self) -> Result<SweepConfig, ConfigError> {
        if self.sweep_interval_ms == 0 {
            return Err(ConfigError::Sweep("SWEEP_INTERVAL_MS"));
        }
        if self.sweep_batch == 0 {
            return Err(ConfigError::Sweep("SWEEP_BATCH"));
        }
        let ms = |secs: u64| secs.saturating_mul(1000);
        Ok(SweepConfig {
            policy: Policy {
                idle_sleep_after_ms: ms(self.idle_sleep_after),
                idle_warning_before_ms: ms(self.idle_warning_before),
                session_ttl_ms: ms(self.session_ttl),
                max_age_ms: ms(self.session_max_age),
                recheck_ms: self.sweep_interval_ms,
            },
            interval: Duration::from_millis(self.sweep_interval_ms),
            batch: self.sweep_batch,
        })
    }

    /// The backup retention settings.
    pub fn prune(&self) -> Result<PruneConfig, ConfigError> {
        if self.backup_prune_interval_secs == 0 {
            return Err(ConfigError::Sweep("BACKUP_PRUNE_INTERVAL_SECS"));
        }
        Ok(PruneConfig {
            policy: RetentionPolicy {
                keep_per_user: self.backup_keep_per_user,
                max_age_ms: self.backup_max_age_days.saturating_mul(DAY_MS),
            },
            interval: Duration::from_secs(self.backup_prune_interval_secs),
        })
    }

    /// The drift repair interval (zero: off).
    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_interval)
    }

    /// How long a running session's pod may stay not ready before it counts as drift (zero: never).
    pub fn drift_ready_timeout(&self) -> Duration {
        Duration::from_secs(self.ready_timeout)
    }

    /// The Kubernetes settings.
    pub fn k8s(&self) -> Result<K8sConfig, ConfigError> {
        if !self.url_pattern.contains("{uuid}") {
            return Err(ConfigError::UrlPattern);
        }
        Ok(K8sConfig {
            namespace: self.namespace.clone(),
            image: self.image.clone(),
            pvc_size: self.pvc_size.clone(),
            storage_class: self.storage_class.clone(),
            cpu_request: self.cpu_request.clone(),
            memory_request: self.memory_request.clone(),
            cpu_limit: self.cpu_limit.clone(),
            memory_limit: self.memory_limit.clone(),
            routing: self.routing,
            ingress_class: self.ingress_class.clone(),
            cluster_issuer: self.cluster_issuer.clone(),
            url_pattern: self.url_pattern.clone(),
            keda_redis_address: self.keda_redis_address.clone(),
            keda_trigger_auth: self.keda_trigger_auth.clone(),
            backup_pvc: self.backup_pvc.clone(),
            backup_image: self.backup_image.clone(),
            backup_mode: self.backup_mode,
            snapshot_class: self.backup_snapshot_class.clone(),
            ready_timeout: Duration::from_secs(self.ready_timeout_secs),
            pod_gone_timeout: Duration::from_secs(self.pod_gone_timeout_secs),
            backup_timeout: Duration::from_secs(self.backup_timeout_secs),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            ..K8sConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("worker").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let cli = parse(&[]);
        assert!(cli.command.is_none());
        let runner = cli.args.runner("ab12").unwrap();
        assert_eq!(runner.queue.consumer, "worker-ab12");
        assert_eq!(runner.max_deliveries, 5);
        let k8s = cli.args.k8s().unwrap();
        assert_eq!(k8s, K8sConfig::default());
        assert_eq!(cli.args.sweeper().unwrap(), SweepConfig::default());
        assert_eq!(cli.args.prune().unwrap(), PruneConfig::default());
    }

    #[test]
    fn retention_flags_reach_the_policy() {
        let cli =
            parse(&["--backup-keep-per-user", "0", "--backup-max-age-days", "2", "--backup-prune-interval-secs", "60"]);
        let c = cli.args.prune().unwrap();
        assert_eq!(c.policy, RetentionPolicy { keep_per_user: 0, max_age_ms: 2 * DAY_MS });
        assert_eq!(c.interval, Duration::from_secs(60));
        let zero = parse(&["--backup-prune-interval-secs", "0"]);
        assert!(matches!(zero.args.prune(), Err(ConfigError::Sweep("BACKUP_PRUNE_INTERVAL_SECS"))));
    }

    #[test]
    fn sweeper_flags_reach_the_policy() {
        let cli = parse(&["--idle-sleep-after", "60", "--session-ttl", "0", "--sweep-interval-ms", "250"]);
        let c = cli.args.sweeper().unwrap();
        assert_eq!((c.policy.idle_sleep_after_ms, c.policy.session_ttl_ms), (60_000, 0));
        assert_eq!((c.interval, c.policy.recheck_ms), (Duration::from_millis(250), 250));
        assert!(matches!(parse(&["--sweep-batch", "0"]).args.sweeper(), Err(ConfigError::Sweep("SWEEP_BATCH"))));
    }

    #[test]
    fn drift_flags_default_to_report_only_with_a_five_minute_ready_timeout() {
        let cli = parse(&[]);
        assert_eq!((cli.args.drift_ready_timeout(), cli.args.resync_delete_orphans), (Duration::from_secs(300), false));
        let cli = parse(&["--ready-timeout", "0", "--resync-delete-orphans", "true"]);
        assert_eq!((cli.args.drift_ready_timeout(), cli.args.resync_delete_orphans), (Duration::ZERO, true));
        assert!(Cli::try_parse_from(["worker", "--resync-delete-orphans", "maybe"]).is_err());
    }

    #[test]
    fn flags_reach_the_typed_configs() {
        let cli = parse(&["--namespace", "ws", "--concurrency", "3", "--lease-ms", "1000", "--pvc-size", "10Gi"]);
        assert_eq!(cli.args.runner("x").unwrap().concurrency, 3);
        assert_eq!(cli.args.runner("x").unwrap().lease, Duration::from_secs(1));
        let k8s = cli.args.k8s().unwrap();
        assert_eq!((k8s.namespace.as_str(), k8s.pvc_size.as_str()), ("ws", "10Gi"));
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let cli = parse(&["--concurrency", "0"]);
        assert!(cli.args.runner("x").unwrap_err().to_string().contains("concurrency"));
        let cli = parse(&["--redis-url", "http://nope"]);
        assert!(matches!(cli.args.runner("x"), Err(ConfigError::RedisUrl(_))));
        let cli = parse(&["--url-pattern", "https://static.example.com"]);
        assert!(matches!(cli.args.k8s(), Err(ConfigError::UrlPattern)));
        assert!(Cli::try_parse_from(["worker", "--concurrency", "many"]).is_err());
    }

    #[test]
    fn render_subcommand_parses() {
        let cli = parse(&["render-objects", "--session", "abc"]);
        assert!(matches!(cli.command, Some(Sub::RenderObjects { session }) if session == "abc"));
    }
}
