//! The whole system as real processes, for end-to-end tests: a private
//! redis-server, the stand-in cluster (`kube-standin`), N `worker`s and one
//! `api`, wired together on loopback, each killed when the [`Stack`] drops.
//!
//! The binaries are taken from the cargo target directory next to the
//! running test (`target/debug/`); `make test` builds them first
//! (`cargo build --bins`). Child output goes to files in the stack's
//! temporary directory; [`Stack::logs`] returns it for failure messages.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::{self, Response};
use crate::{ChildGuard, Persistence, RedisServer, free_port};

/// The API key every stack's api accepts.
pub const API_KEY: &str = "e2e-test-key-0123456789";
/// The access-link key (`ACCESS_KEYS`) of the stack's api (and gateway).
pub const ACCESS_KEYS: &str = "e2e:0123456789abcdef0123456789abcdef";

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct StackConfig {
    /// Worker processes to start (0 is allowed: start them later).
    pub workers: usize,
    /// Where the stand-in records Kubernetes calls (`--record-calls`), if anywhere.
    pub record_calls: Option<PathBuf>,
    /// Extra environment for every worker.
    pub worker_env: Vec<(String, String)>,
    /// Extra environment for the api.
    pub api_env: Vec<(String, String)>,
    /// Extra environment for the stand-in.
    pub standin_env: Vec<(String, String)>,
    /// How the private Redis persists (default: nothing on disk).
    pub redis: Persistence,
    /// Start the `gateway` too; the api's workspace URLs then point at it
    /// (`http://{uuid}.ws.localhost:<port>`).
    pub gateway: bool,
    /// Extra environment for the gateway.
    pub gateway_env: Vec<(String, String)>,
}

impl StackConfig {
    /// One worker and a stand-in whose process kubelet runs each pod as a
    /// real local code-server (and each backup Job's real script), with the
    /// volumes, pod logs, pod folders and cluster state under `dir`. Needs
    /// the code-server `make test` installs ([`crate::code_server`] panics
    /// with the instruction otherwise).
    pub fn real_workspaces(dir: &Path) -> Self {
        let code_server = crate::code_server();
        let env = |k: &str, v: &Path| (k.to_owned(), v.display().to_string());
        let standin_env = vec![
            ("STANDIN_KUBELET".to_owned(), "process".to_owned()),
            env("STANDIN_CODE_SERVER", &code_server),
            env("STANDIN_VOLUMES_DIR", &dir.join("volumes")),
            env("STANDIN_POD_LOGS_DIR", &dir.join("logs")),
            env("STANDIN_PODS_DIR", &dir.join("pods")),
            env("STANDIN_STATE_FILE", &dir.join("state.json")),
        ];
        let worker_env = vec![("WORKSPACE_IMAGE".to_owned(), "codercom/code-server:4.139.1".to_owned())];
        StackConfig { workers: 1, standin_env, worker_env, ..Default::default() }
    }
}

/// A running system.
#[derive(Debug)]
pub struct Stack {
    /// The private Redis.
    pub redis: RedisServer,
    /// Where the api listens.
    pub api_addr: SocketAddr,
    /// Where the stand-in cluster listens.
    pub standin_addr: SocketAddr,
    /// The kubeconfig the stand-in wrote.
    pub kubeconfig: PathBuf,
    /// Where the gateway listens, when started.
    pub gateway_addr: Option<SocketAddr>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    config: StackConfig,
    standin: ChildGuard,
    api: ChildGuard,
    gateway: Option<ChildGuard>,
    workers: Vec<ChildGuard>,
    worker_metrics: Vec<SocketAddr>,
}

/// The directory holding the workspace's binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/debug/deps/<test> -> target/debug
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).expect("test binaries live in target/<profile>/deps")
}

fn binary(bin: &Path, name: &str) -> io::Result<PathBuf> {
    let path = bin.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is missing: run `cargo build --bins` first (`make test` does)", path.display()),
        ))
    }
}

impl Stack {
    /// Starts redis, the stand-in, the workers and the api, and waits until each is up.
    pub fn start(config: StackConfig) -> io::Result<Self> {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("sm-stack-").tempdir()?;
        let redis = RedisServer::start_with(config.redis)?;

        let kubeconfig = dir.path().join("kubeconfig");
        let (standin, standin_addr) = start_standin(&bin, dir.path(), &config, "127.0.0.1:0")?;

        let gateway_addr = if config.gateway { Some(SocketAddr::from(([127, 0, 0, 1], free_port()?))) } else { None };
        let pattern = gateway_addr.map(|a| format!("http://{{uuid}}.ws.localhost:{}", a.port()));

        let api_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(binary(&bin, "api")?);
        if let Some(p) = &pattern {
            cmd.env("WORKSPACE_URL_PATTERN", p);
        }
        cmd.env("API_ADDR", api_addr.to_string())
            .env("REDIS_URL", redis.url())
            .env("API_KEYS", API_KEY)
            .env("ACCESS_KEYS", ACCESS_KEYS)
            .env("RATE_LIMIT_PER_MINUTE", "1000000")
            .env("RATE_LIMIT_PER_KEY_PER_MINUTE", "1000000")
            .env("MAX_SESSIONS_PER_USER", "1000")
            .env_remove("API_KEYS_FILE");
        cmd.envs(config.api_env.iter().map(|(k, v)| (k, v)));
        let api = spawn_logged(cmd, dir.path(), "api")?;

        let gateway = match (gateway_addr, &pattern) {
            (Some(addr), Some(p)) => {
                let mut cmd = Command::new(binary(&bin, "gateway")?);
                cmd.env("GATEWAY_ADDR", addr.to_string())
                    .env("REDIS_URL", redis.url())
                    .env("WORKSPACE_URL_PATTERN", p)
                    .env("ACCESS_KEYS", ACCESS_KEYS);
                cmd.envs(config.gateway_env.iter().map(|(k, v)| (k, v)));
                Some(spawn_logged(cmd, dir.path(), "gateway")?)
            }
            _ => None,
        };

        let mut stack = Stack {
            redis,
            api_addr,
            standin_addr,
            kubeconfig,
            gateway_addr,
            bin,
            dir,
            config: config.clone(),
            standin,
            api,
            gateway,
            workers: Vec::new(),
            worker_metrics: Vec::new(),
        };
        for _ in 0..config.workers {
            stack.add_worker()?;
        }
        let up = wait_until(Duration::from_secs(30), || {
            http::request(stack.api_addr, "GET", "/livez", &[], None).ok().filter(|r| r.status == 200)
        });
        if up.is_none() {
            return Err(io::Error::other(format!("api did not start:\n{}", stack.logs())));
        }
        if let Some(addr) = stack.gateway_addr {
            let up = wait_until(Duration::from_secs(30), || {
                http::request(addr, "GET", "/livez", &[], None).ok().filter(|r| r.status == 200)
            });
            if up.is_none() {
                return Err(io::Error::other(format!("gateway did not start:\n{}", stack.logs())));
            }
        }
        Ok(stack)
    }

    /// Starts one more worker process; returns its index.
    pub fn add_worker(&mut self) -> io::Result<usize> {
        let n = self.workers.len();
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(binary(&self.bin, "worker")?);
        cmd.env("REDIS_URL", self.redis.url())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("WORKER_CONSUMER_NAME", format!("e2e-{n}"))
            .env("WORKER_METRICS_ADDR", metrics.to_string())
            .env("K8S_POLL_INTERVAL_MS", "50")
            .env("WORKER_RECLAIM_INTERVAL_MS", "500")
            .env("WORKER_BLOCK_MS", "500");
        cmd.envs(self.config.worker_env.iter().map(|(k, v)| (k, v)));
        self.workers.push(spawn_logged(cmd, self.dir.path(), &format!("worker-{n}"))?);
        self.worker_metrics.push(metrics);
        Ok(n)
    }

    /// Where worker `n` serves `/livez`, `/readyz` and `/metrics` (unless
    /// `worker_env` overrode `WORKER_METRICS_ADDR`).
    pub fn worker_metrics_addr(&self, n: usize) -> Option<SocketAddr> {
        self.worker_metrics.get(n).copied()
    }

    /// The Prometheus text of worker `n`'s `/metrics`.
    pub fn worker_metrics(&self, n: usize) -> io::Result<String> {
        let addr = self.worker_metrics_addr(n).ok_or_else(|| io::Error::other(format!("no worker {n}")))?;
        Ok(http::request(addr, "GET", "/metrics", &[], None)?.text())
    }

    /// The Prometheus text of the api's `/metrics`.
    pub fn api_metrics(&self) -> io::Result<String> {
        Ok(self.api("GET", "/metrics", None)?.text())
    }

    /// Kills worker `n` with SIGKILL (no graceful shutdown).
    pub fn kill_worker(&mut self, n: usize) {
        if let Some(w) = self.workers.get_mut(n) {
            w.kill();
        }
    }

    /// The worker processes, e.g. to signal them.
    pub fn workers_mut(&mut self) -> &mut [ChildGuard] {
        &mut self.workers
    }

    /// The api process.
    pub fn api_mut(&mut self) -> &mut ChildGuard {
        &mut self.api
    }

    /// The stand-in process.
    pub fn standin_mut(&mut self) -> &mut ChildGuard {
        &mut self.standin
    }

    /// Stops the stand-in gracefully (SIGTERM: it stops its pods and writes its state file,
    /// if `standin_env` gives one) and starts it again on the same address, so the workers
    /// keep their kubeconfig.
    pub fn restart_standin(&mut self) -> io::Result<()> {
        if let Some(pid) = self.standin.id() {
            Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
            let exited = self
                .standin
                .child_mut()
                .map(|c| wait_until(Duration::from_secs(30), || c.try_wait().ok().flatten()).is_some());
            if exited == Some(false) {
                return Err(io::Error::other(format!("the stand-in did not stop on SIGTERM:\n{}", self.logs())));
            }
        }
        self.standin.kill();
        let addr = self.standin_addr.to_string();
        let (standin, _) = start_standin(&self.bin, self.dir.path(), &self.config, &addr)?;
        self.standin = standin;
        Ok(())
    }

    /// An authenticated api request with an optional JSON body.
    pub fn api(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> io::Result<Response> {
        let body = body.map(serde_json::Value::to_string);
        let mut headers = vec![("X-API-Key", API_KEY)];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        http::request(self.api_addr, method, path, &headers, body.as_deref().map(str::as_bytes))
    }

    /// A raw GET against the stand-in cluster (e.g. `/apis/apps/v1/namespaces/workspaces/deployments/ws-x`).
    pub fn kube_get(&self, path: &str) -> io::Result<Response> {
        // Marked as an observer: not recorded as a worker call, never fault-injected.
        http::request(
            self.standin_addr,
            "GET",
            path,
            &[("Authorization", "Bearer standin"), ("X-Standin-Observer", "1")],
            None,
        )
    }

    /// A raw DELETE against the stand-in cluster, as an observer (an operator's
    /// `kubectl delete`, not a worker call).
    pub fn kube_delete(&self, path: &str) -> io::Result<Response> {
        http::request(
            self.standin_addr,
            "DELETE",
            path,
            &[("Authorization", "Bearer standin"), ("X-Standin-Observer", "1")],
            None,
        )
    }

    /// Polls `GET /jobs/{id}` until the job is terminal; returns its JSON.
    pub fn wait_job(&self, job_id: &str, timeout: Duration) -> io::Result<serde_json::Value> {
        let terminal = ["succeeded", "failed", "superseded", "dead"];
        wait_until(timeout, || {
            let r = self.api("GET", &format!("/jobs/{job_id}"), None).ok()?;
            let v = r.json();
            terminal.contains(&v["state"].as_str()?).then_some(v)
        })
        .ok_or_else(|| io::Error::other(format!("job {job_id} did not finish in {timeout:?}\n{}", self.logs())))
    }

    /// Everything the children printed so far.
    pub fn logs(&self) -> String {
        let mut names = vec!["standin".to_owned(), "api".to_owned()];
        if self.gateway.is_some() {
            names.push("gateway".to_owned());
        }
        names.extend((0..self.workers.len()).map(|n| format!("worker-{n}")));
        names.iter().map(|n| format!("--- {n} ---\n{}", tail(&read_log(self.dir.path(), n), 4000))).collect()
    }
}

/// A fresh file for the stand-in's call record (`StackConfig::record_calls`) under
/// `target/k8s-calls/`, which the RBAC check reads; truncated first, since stale lines
/// would be false evidence.
pub fn calls_file(name: &str) -> io::Result<PathBuf> {
    let dir = bin_dir().parent().map(|p| p.join("k8s-calls")).ok_or_else(|| io::Error::other("no target dir"))?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.txt"));
    std::fs::write(&path, "")?;
    Ok(path)
}

/// Starts `kube-standin` on `addr` with the stack's settings; waits until it listens.
fn start_standin(bin: &Path, dir: &Path, config: &StackConfig, addr: &str) -> io::Result<(ChildGuard, SocketAddr)> {
    let kubeconfig = dir.join("kubeconfig");
    let addr_file = dir.join("standin.addr");
    let _ = std::fs::remove_file(&addr_file);
    let mut cmd = Command::new(binary(bin, "kube-standin")?);
    cmd.env("STANDIN_ADDR", addr)
        .env("STANDIN_KUBECONFIG_OUT", &kubeconfig)
        .env("STANDIN_ADDR_FILE", &addr_file)
        .env("STANDIN_POD_READY_DELAY_MS", "50");
    if let Some(rec) = &config.record_calls {
        cmd.env("STANDIN_RECORD_CALLS", rec);
    }
    cmd.envs(config.standin_env.iter().map(|(k, v)| (k, v)));
    let standin = spawn_logged(cmd, dir, "standin")?;
    let standin_addr: SocketAddr = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&addr_file).ok().and_then(|s| s.trim().parse().ok()).filter(|_| kubeconfig.exists())
    })
    .ok_or_else(|| io::Error::other(format!("stand-in did not start:\n{}", read_log(dir, "standin"))))?;
    Ok((standin, standin_addr))
}

fn spawn_logged(mut cmd: Command, dir: &Path, name: &str) -> io::Result<ChildGuard> {
    // Appended: a restarted process keeps the earlier run's output above its own.
    let log = File::options().create(true).append(true).open(dir.join(format!("{name}.log")))?;
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).env("RUST_LOG", "info");
    Ok(ChildGuard::new(cmd.spawn()?))
}

fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    &s[start..]
}

/// Calls `f` every 50 ms until it returns `Some`, or `None` after `timeout`.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
