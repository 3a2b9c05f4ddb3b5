"""The local stack under test, with benchmark settings: a private
redis-server (AOF everysec, as in production), the stand-in cluster, any
number of worker processes and one or more api processes, all on free
loopback ports, all release binaries from target/release.

Every environment variable the programs read is set here and nowhere else,
so adapting the harness to a renamed flag is a one-line change.
"""

import os
import shutil
import time

from . import procs
from .procs import HarnessError, Proc, free_port, wait_until
from .resp import Redis

API_KEY = "bench-key-0123456789abcdef0123456789abcdef"


class Stack:
    def __init__(self, root, run_dir, name):
        self.root = root
        self.bin_dir = os.path.join(root, "target", "release")
        self.dir = os.path.join(run_dir, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.redis_proc = None
        self.redis_port = None
        self.standin = None
        self.standin_port = None
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.workers = []
        self.apis = []
        self.gateways = []
        self.others = []  # other processes a scenario started (upstreams, nginx): stopped with the stack
        self._worker_seq = 0
        self.k8s_poll_ms = 10

    # --- binaries -------------------------------------------------------
    def binary(self, name):
        path = os.path.join(self.bin_dir, name)
        if not os.path.exists(path):
            raise HarnessError(f"binary {name} is missing ({path}); `cargo build --release -p <crate>` did not produce it")
        return path

    def log(self, name):
        return os.path.join(self.dir, f"{name}.log")

    # --- redis ----------------------------------------------------------
    def start_redis(self, appendfsync="everysec", port=None):
        """Starts redis-server with AOF (`appendfsync` as given). With `port`,
        restarts on that port and the same data folder (after a crash)."""
        self.redis_port = port or free_port()
        data = os.path.join(self.dir, "redis")
        os.makedirs(data, exist_ok=True)
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", data,
            "--save", "", "--appendonly", "yes", "--appendfsync", appendfsync,
            "--auto-aof-rewrite-percentage", "0",
            "--maxmemory-policy", "noeviction", "--daemonize", "no", "--protected-mode", "yes",
        ]  # fmt: skip
        self.redis_proc = Proc("redis-server", argv, {}, self.log("redis"))
        wait_until(lambda: Redis(port=self.redis_port, timeout=1).call("PING") == "PONG", 20, "redis PING", self.redis_proc)
        return self.redis_port

    def kill_redis(self):
        """SIGKILL, as a crash would: no shutdown, no final fsync."""
        self.redis_proc.popen.kill()
        self.redis_proc.popen.wait()
        self.redis_proc.log.close()

    @property
    def redis_url(self):
        return f"redis://127.0.0.1:{self.redis_port}/"

    def redis(self):
        return Redis(port=self.redis_port)

    # --- stand-in cluster -------------------------------------------------
    def start_standin(self, ready_delay_ms=0, extra_env=None):
        self.standin_port = free_port()
        env = {
            "STANDIN_ADDR": f"127.0.0.1:{self.standin_port}",
            "STANDIN_KUBECONFIG_OUT": self.kubeconfig,
            "STANDIN_POD_READY_DELAY_MS": ready_delay_ms,
            "STANDIN_POD_GONE_DELAY_MS": ready_delay_ms,
            "STANDIN_JOB_COMPLETE_DELAY_MS": ready_delay_ms,
            "RUST_LOG": "warn",
        }
        env.update(extra_env or {})
        self.standin = Proc("kube-standin", [self.binary("kube-standin")], env, self.log("standin"))
        wait_until(
            lambda: os.path.exists(self.kubeconfig) and procs.port_open(self.standin_port),
            30, "the stand-in cluster to listen and write its kubeconfig", self.standin,
        )  # fmt: skip

    # --- workers --------------------------------------------------------
    def start_workers(self, n, concurrency=16, extra_env=None):
        started = []
        for _ in range(n):
            self._worker_seq += 1
            name = f"worker-{self._worker_seq}"
            env = {
                "REDIS_URL": self.redis_url,
                "KUBECONFIG": self.kubeconfig,
                "WORKER_CONCURRENCY": concurrency,
                "WORKER_CONSUMER_NAME": f"bench-{name}",
                "WORKER_METRICS_ADDR": f"127.0.0.1:{free_port()}",
                "K8S_POLL_INTERVAL_MS": self.k8s_poll_ms,
                "WORKER_BLOCK_MS": 1000,
                "RUST_LOG": "warn",
            }
            env.update(extra_env or {})
            p = Proc(name, [self.binary("worker")], env, self.log(name))
            self.workers.append(p)
            started.append(p)
        # A worker is up once its consumer (`bench-worker-N-<suffix>`) shows in the group.
        want = {f"bench-{p.name}-" for p in started}
        r = self.redis()
        t0 = time.monotonic()
        try:
            def consumers_present():
                for p in started:
                    if not p.alive():
                        raise HarnessError(f"{p.name} exited (code {p.popen.returncode}); see {p.log_path}")
                try:
                    names = {procs_name(c) for c in r.call("XINFO", "CONSUMERS", "{sm}:jobs", "workers")}
                except Exception:  # noqa: BLE001 - group not created yet
                    return False
                if all(any(n and n.startswith(w) for n in names) for w in want):
                    return True
                # A worker that names its consumer itself: give it a moment.
                return bool(names) and not _names_known(names) and time.monotonic() - t0 > 2.0

            wait_until(consumers_present, 30, "workers to join the consumer group")
        finally:
            r.close()
        return started

    def stop_workers(self):
        for p in self.workers:
            p.stop(grace=20)
        self.workers = []

    # --- api ------------------------------------------------------------
    def start_api(self, rate_per_minute=100_000_000, extra_env=None, name=None, binary=None):
        port = free_port()
        name = name or f"api-{len(self.apis) + 1}"
        env = {
            "API_ADDR": f"127.0.0.1:{port}",
            "REDIS_URL": self.redis_url,
            "API_KEYS": API_KEY,
            "ACCESS_KEYS": "loadtest:" + "0123456789abcdef" * 2,
            "RATE_LIMIT_PER_MINUTE": rate_per_minute,
            "RATE_LIMIT_PER_KEY_PER_MINUTE": rate_per_minute,
            "MAX_SESSIONS_PER_USER": 1_000_000,
            "RUST_LOG": "warn",
        }
        env.update(extra_env or {})
        p = Proc(name, [binary or self.binary("api")], env, self.log(name))
        p.port = port
        wait_until(lambda: procs.http_status(port, "/readyz") == 200, 30, f"{name} /readyz", p)
        self.apis.append(p)
        return p

    def stop_api(self, p):
        p.stop(grace=10)
        self.apis.remove(p)

    # --- gateway --------------------------------------------------------
    def start_gateway(self, extra_env=None, name="gateway"):
        """The gateway on a free port, routing `http://{uuid}.ws.localhost:PORT`
        (`p.pattern`), reading sessions from this stack's Redis."""
        port = free_port()
        env = {
            "GATEWAY_ADDR": f"127.0.0.1:{port}",
            "REDIS_URL": self.redis_url,
            "WORKSPACE_URL_PATTERN": f"http://{{uuid}}.ws.localhost:{port}",
            "ACCESS_KEYS": "loadtest:" + "0123456789abcdef" * 2,
            "RUST_LOG": "warn",
        }
        env.update(extra_env or {})
        p = Proc(name, [self.binary("gateway")], env, self.log(name))
        p.port = port
        p.pattern = env["WORKSPACE_URL_PATTERN"]
        wait_until(lambda: procs.http_status(port, "/readyz") == 200, 30, f"{name} /readyz", p)
        self.gateways.append(p)
        return p

    # --- whole stack ----------------------------------------------------
    def stop(self):
        for p in self.gateways + self.others:
            p.stop(grace=10)
        self.gateways, self.others = [], []
        self.stop_workers()
        for p in list(self.apis):
            self.stop_api(p)
        if self.standin:
            self.standin.stop()
            self.standin = None
        if self.redis_proc:
            self.redis_proc.stop()
            self.redis_proc = None
            # The AOF of a benchmark run is gigabytes of nothing worth keeping; logs stay.
            shutil.rmtree(os.path.join(self.dir, "redis"), ignore_errors=True)


def procs_name(consumer):
    """Consumer name out of an XINFO CONSUMERS entry (a flat list)."""
    for i in range(0, len(consumer) - 1, 2):
        if consumer[i] == "name":
            return consumer[i + 1]
    return None


def _names_known(names):
    """Whether any consumer name looks like one we set; if the worker ignores
    WORKER_CONSUMER_NAME we accept any consumer as a sign of life."""
    return any(n and n.startswith("bench-") for n in names)


def settle(seconds):
    time.sleep(seconds)
