#!/usr/bin/env python3
"""`make bench`: build the release binaries, run every scenario of issue 6
on a private local stack, and write loadtest/results/latest.{md,json}.

Settings come from BENCH_* environment variables (see CONFIG below and the
README). Exit status: 0 when every scenario ran and every k6 threshold
held, 1 otherwise (the report is written either way).
"""

import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import report, scenarios, tools  # noqa: E402
from harness.procs import HarnessError  # noqa: E402

ROOT = os.path.dirname(HERE)

# name: (env var, default, parser)
CONFIG = {
    "groups": ("BENCH_SCENARIOS", "api,reject,durability,lifecycle,workers,gateway,sweep,micro", lambda s: [x.strip() for x in s.split(",") if x.strip()]),
    "runs": ("BENCH_RUNS", "3", int),
    "seconds": ("BENCH_SECONDS", "8", int),
    "xadd_requests": ("BENCH_XADD_REQUESTS", "200000", int),
    "setup_sessions": ("BENCH_SETUP_SESSIONS", "1000", int),
    "k6_rate": ("BENCH_K6_RATE", "500", int),
    "k6_seconds": ("BENCH_K6_SECONDS", "15", int),
    "lifecycle_vus": ("BENCH_LIFECYCLE_VUS", "20", int),
    "lifecycle_iterations": ("BENCH_LIFECYCLE_ITERATIONS", "2", int),
    "lifecycle_workers": ("BENCH_LIFECYCLE_WORKERS", "2", int),
    "lifecycle_pod_delay_ms": ("BENCH_LIFECYCLE_POD_DELAY_MS", "100", int),
    "worker_concurrency": ("BENCH_WORKER_CONCURRENCY", "16", int),
    "k8s_poll_ms": ("BENCH_K8S_POLL_MS", "25", int),
    "e2e_rate": ("BENCH_E2E_RATE", "200", int),
    "e2e_seconds": ("BENCH_E2E_SECONDS", "10", int),
    "e2e_workers": ("BENCH_E2E_WORKERS", "2", int),
    "e2e_sessions": ("BENCH_E2E_SESSIONS", "150", int),
    "drain_sessions": ("BENCH_DRAIN_SESSIONS", "150", int),
    "drain_jobs_per_session": ("BENCH_DRAIN_JOBS_PER_SESSION", "1,10", lambda s: [int(x) for x in s.split(",")]),
    "drain_workers": ("BENCH_DRAIN_WORKERS", "1,2,4", lambda s: [int(x) for x in s.split(",")]),
    "live_sessions": ("BENCH_LIVE_SESSIONS", "10000", int),
    "live_wave": ("BENCH_LIVE_WAVE", "500", int),
    "live_round": ("BENCH_LIVE_ROUND", "500", int),
    "live_workers": ("BENCH_LIVE_WORKERS", "2", int),
    "live_timeout": ("BENCH_LIVE_TIMEOUT_S", "240", int),
    "gw_rate": ("BENCH_GW_RATE", "500", int),
    "gw_k6_seconds": ("BENCH_GW_K6_SECONDS", "10", int),
    "gw_ws_messages": ("BENCH_GW_WS_MESSAGES", "2000", int),
    "gw_download_mb": ("BENCH_GW_DOWNLOAD_MB", "256", int),
    "gw_wakes": ("BENCH_GW_WAKES", "30", int),
    "gw_wake_delay_ms": ("BENCH_GW_WAKE_DELAY_MS", "500", int),
    "gw_wake_timeout_s": ("BENCH_GW_WAKE_TIMEOUT_S", "60", int),
    "gw_rss_sessions": ("BENCH_GW_RSS_SESSIONS", "10000", int),
    "gw_rss_websockets": ("BENCH_GW_RSS_WEBSOCKETS", "1000", int),
    "sweep_sessions": ("BENCH_SWEEP_SESSIONS", "1000,100000", lambda s: [int(x) for x in s.split(",")]),
    "sweep_fixed_due": ("BENCH_SWEEP_FIXED_DUE", "10", lambda s: [int(x) for x in s.split(",") if x.strip()]),
    "sweep_rounds": ("BENCH_SWEEP_ROUNDS", "7", int),
    "sweep_interval_ms": ("BENCH_SWEEP_INTERVAL_MS", "1000", int),
    "drift_sessions": ("BENCH_DRIFT_SESSIONS", "10000", int),
    "drift_missing": ("BENCH_DRIFT_MISSING", "20", int),
    "setup_timeout": ("BENCH_SETUP_TIMEOUT_S", "300", int),
    "skip_build": ("BENCH_SKIP_BUILD", "0", lambda s: s == "1"),
    "profile": ("BENCH_PROFILE", "1", lambda s: s == "1"),
    "api_candidate": ("BENCH_API_CANDIDATE", "", str),
    "api_candidate_label": ("BENCH_API_CANDIDATE_LABEL", "candidate", str),
    "note": ("BENCH_NOTE", "", str),
    # 1: keep the figures of groups not run now from the previous latest.json
    # (the report names the run each group's figures come from).
    "merge": ("BENCH_MERGE", "0", lambda s: s == "1"),
}

# Result keys each group writes (for BENCH_MERGE).
GROUP_KEYS = {
    "api": ["bounds", "enqueue", "api_rss", "profile", "api_candidate", "tracing_cost"],
    "reject": ["reject"],
    "durability": ["durability"],
    "lifecycle": ["lifecycle"],
    "workers": ["e2e", "drain", "worker_rss"],
    "micro": ["micro_ns"],
    "gateway": ["gateway"],
    "sweep": ["sweep"],
}


def load_config():
    return {name: parse(os.environ.get(var, default)) for name, (var, default, parse) in CONFIG.items()}


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        mem_kb = 0
    redis_version = None
    if shutil.which("redis-server"):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        redis_version = next((w[2:] for w in out.split() if w.startswith("v=")), out.strip() or None)
    return {
        "redis_version": redis_version,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


class Context:
    def __init__(self, cfg, results, k6):
        self.cfg = cfg
        self.results = results
        self.root = ROOT
        self.k6 = k6
        self.run_dir = os.path.join(HERE, ".run")
        self.wrk_script = os.path.join(HERE, "wrk", "bench.lua")
        self.new_stack = scenarios.stack_factory(ROOT, self.run_dir, cfg["k8s_poll_ms"])
        self.perf = cfg["profile"] and tools.perf_available()
        self.worker_rss_seen = []

    def k6_script(self, name):
        return os.path.join(HERE, "k6", name)

    def k6_outcome(self, label, summary):
        self.results["k6_thresholds"][label] = summary["thresholds_ok"]
        self.results.setdefault("k6_missed", {})[label] = [k for k, ok in summary["thresholds"].items() if not ok]


def main():
    cfg = load_config()
    t_start = time.time()
    results = {
        "started_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "config": cfg,
        "machine": machine(),
        "versions": {},
        "k6_thresholds": {},
        "errors": {},
        "notes": [],
    }
    try:
        results["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        results["commit"] = "unknown"

    tools.ensure_debian_tools()
    k6, k6_version = tools.ensure_k6(HERE)
    results["versions"]["k6"] = k6_version
    results["versions"]["wrk"] = tools.sh(["wrk", "-v"], check=False).stdout.splitlines()[0] if shutil.which("wrk") else "wrk missing"
    cargo_v, rustc_v = tools.cargo_version(ROOT)
    results["versions"]["rustc"] = rustc_v

    needs_bins = [g for g in cfg["groups"] if g != "micro"]
    if needs_bins and not cfg["skip_build"]:
        ok, err = tools.cargo_build_release(ROOT, ["api", "worker", "kube-standin"])
        if not ok:
            # Build what can be built, so the scenarios that need less still run.
            results["notes"].append("release build of api + worker + kube-standin failed; building each alone: " + err.strip().splitlines()[-1])
            for p in ("api", "worker", "kube-standin"):
                ok_p, err_p = tools.cargo_build_release(ROOT, [p])
                if not ok_p:
                    results["notes"].append(f"`cargo build --release -p {p}` failed: {err_p.strip().splitlines()[-1] if err_p.strip() else '?'}")

    if cfg["note"]:
        results["notes"].append(cfg["note"])
    if cfg["merge"]:
        carry_over(results, cfg["groups"])
    ctx = Context(cfg, results, k6)
    if cfg["profile"] and not ctx.perf:
        results["notes"].append("perf is not usable here (missing, or perf_event_paranoid forbids it): no CPU profile")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    for name in cfg["groups"]:
        fn = scenarios.GROUPS.get(name)
        if fn is None:
            results["errors"][name] = f"unknown scenario group (known: {', '.join(scenarios.GROUPS)})"
            continue
        tools.log(f"=== {name} ===")
        t0 = time.time()
        try:
            fn(ctx)
        except HarnessError as e:
            results["errors"][name] = str(e)
            tools.log(f"{name} failed: {e}")
        except Exception as e:  # noqa: BLE001 - a bug in one group must not lose the others' figures
            results["errors"][name] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        results.setdefault("group_seconds", {})[name] = round(time.time() - t0, 1)
        # Keep what we have so far, in case a later group hangs.
        write_report(results, t_start)

    write_report(results, t_start)
    print(report.markdown(results))
    failed = bool(results["errors"]) or not all(results["k6_thresholds"].values())
    return 1 if failed else 0


def carry_over(results, groups_now):
    """Copies the previous run's figures of every group not run now."""
    import json

    path = os.path.join(HERE, "results", "latest.json")
    try:
        with open(path) as f:
            prev = json.load(f)
    except (OSError, ValueError):
        return
    prev_origin = prev.get("group_origin", {})
    origin = {}
    for group, keys in GROUP_KEYS.items():
        if group in groups_now:
            continue
        present = [k for k in keys if k in prev]
        if not present:
            continue
        for k in present:
            results[k] = prev[k]
        origin[group] = prev_origin.get(group) or f"{prev.get('started_at')} UTC, commit {prev.get('commit')}"
        for label, ok in prev.get("k6_thresholds", {}).items():
            results["k6_thresholds"].setdefault(label, ok)
    results["group_origin"] = origin
    if origin:
        results["notes"].append(
            "Figures carried over from an earlier run (BENCH_MERGE=1): "
            + "; ".join(f"{g} from {o}" for g, o in origin.items())
            + ". Ratios are only ever computed within one group, that is within one run."
        )


def write_report(results, t_start):
    results["finished_at"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    results["duration_s"] = time.time() - t_start
    out = os.path.join(HERE, "results")
    report.write(results, os.path.join(out, "latest.md"), os.path.join(out, "latest.json"))


if __name__ == "__main__":
    sys.exit(main())
