"""Processes the harness starts: spawn with a log file, stop by pid (SIGTERM,
then SIGKILL), wait for ports and HTTP readiness, and sample memory (RSS)
from /proc. Every process started here is stopped by the harness itself;
nothing is ever killed by name.
"""

import http.client
import os
import signal
import socket
import subprocess
import threading
import time


class HarnessError(Exception):
    """A step of the harness could not run (missing binary, no readiness, ...)."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, what, proc=None, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise HarnessError(f"{proc.name} exited (code {proc.popen.returncode}) while waiting for {what}; see {proc.log_path}")
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - readiness probes fail in many ways until ready
            pass
        time.sleep(interval)
    raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_status(port, path, headers=None, method="GET", host="127.0.0.1"):
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name, argv, env, log_path, cwd=None):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        full_env = dict(os.environ)
        full_env.update({k: str(v) for k, v in env.items()})
        try:
            self.popen = subprocess.Popen(
                argv, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
            )
        except FileNotFoundError as e:
            self.log.close()
            raise HarnessError(f"cannot start {name}: {argv[0]} not found") from e
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self, grace=10.0):
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait()
        self.log.close()
        return self.popen.returncode


def read_status_kb(pid, field):
    """A `kB` field of /proc/{pid}/status (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb(pid):
    kb = read_status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024.0


def hwm_mb(pid):
    kb = read_status_kb(pid, "VmHWM")
    return None if kb is None else kb / 1024.0


class RssSampler:
    """Samples VmRSS of some pids every `interval` s; keeps the maximum per pid."""

    def __init__(self, pids, interval=0.1):
        self.pids = dict(pids)  # label -> pid
        self.interval = interval
        self.max = {label: 0.0 for label in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for label, pid in self.pids.items():
                v = rss_mb(pid)
                if v is not None and v > self.max[label]:
                    self.max[label] = v
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except OSError:
        return None
