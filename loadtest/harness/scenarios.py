"""What `make bench` measures. Each function runs one group of scenarios of
issue 6 on a fresh stack and stores its figures in `ctx.results`; a
failure is recorded for that group (and reported) without stopping the
others.

Groups: bounds + api (raw rates, latency, RSS, tracing cost, profile),
reject (auth and rate limiting under load), lifecycle, drain + e2e +
live-sessions (workers), gateway (issue 14, in gateway.py), micro
(criterion).
"""

import http.server
import os
import random
import signal
import statistics
import threading
import time

from . import durability, gateway, procs, sweep, tools
from .httpc import Api
from .procs import HarnessError, RssSampler, hwm_mb, rss_mb, wait_until
from .stack import API_KEY, Stack

TERMINAL = {"succeeded", "failed", "superseded", "dead"}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(values, p):
    """Nearest-rank percentile of a list of numbers."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def write_lines(path, items):
    with open(path, "w") as f:
        f.write("\n".join(items) + "\n")


def now_ms():
    return int(time.time() * 1000)


# --------------------------------------------------------------------------
# helpers on Redis state
# --------------------------------------------------------------------------
def reset_jobs(r):
    """Drops the jobs stream and every job hash, so runs without workers do
    not pile up hundreds of thousands of entries between measurements."""
    r.call("UNLINK", "{sm}:jobs")
    keys = r.scan_keys("{sm}:job:*", count=5000)
    for i in range(0, len(keys), 5000):
        r.call("UNLINK", *keys[i : i + 5000])


def wait_drained(stack, job_ids, timeout, poll=0.1):
    """Waits until every job in `job_ids` is terminal; returns seconds waited."""
    r = stack.redis()
    t0 = time.monotonic()
    remaining = list(job_ids)
    try:
        while remaining:
            if time.monotonic() - t0 > timeout:
                raise HarnessError(f"{len(remaining)} of {len(job_ids)} jobs not terminal after {timeout}s")
            for w in stack.workers:
                if not w.alive():
                    raise HarnessError(f"{w.name} died (code {w.popen.returncode}); see {w.log_path}")
            states = r.pipeline([("HGET", f"{{sm}}:job:{j}", "state") for j in remaining])
            remaining = [j for j, s in zip(remaining, states) if s not in TERMINAL]
            if remaining:
                time.sleep(poll)
        return time.monotonic() - t0
    finally:
        r.close()


def job_records(stack, job_ids):
    r = stack.redis()
    try:
        fields = ("state", "command", "requested_at_ms", "started_at_ms", "finished_at_ms", "attempts")
        rows = r.pipeline([("HMGET", f"{{sm}}:job:{j}", *fields) for j in job_ids])
        return [dict(zip(fields, row)) for row in rows if isinstance(row, list)]
    finally:
        r.close()


def jobs_between(stack, t0_ms, t1_ms, commands):
    """Job records requested in [t0_ms, t1_ms] with one of `commands`."""
    r = stack.redis()
    try:
        keys = r.scan_keys("{sm}:job:*")
    finally:
        r.close()
    ids = [k.split(":", 2)[2] for k in keys]
    return [j for j in job_records(stack, ids)
            if j["command"] in commands and j["requested_at_ms"] and t0_ms <= int(j["requested_at_ms"]) <= t1_ms]  # fmt: skip


def latency_summary(records):
    e2e = [int(j["finished_at_ms"]) - int(j["requested_at_ms"]) for j in records
           if j.get("finished_at_ms") and j.get("requested_at_ms")]  # fmt: skip
    states = {}
    for j in records:
        states[j["state"]] = states.get(j["state"], 0) + 1
    return {
        "jobs": len(records),
        "states": states,
        "e2e_ms": {"p50": pct(e2e, 50), "p90": pct(e2e, 90), "p99": pct(e2e, 99), "max": max(e2e) if e2e else None},
    }


class Costs:
    """CPU seconds of some processes and Redis commands (INFO commandstats,
    script-internal calls included) spent over a block, per request."""

    def __init__(self, r, pids):
        self.r, self.pids = r, pids

    def __enter__(self):
        self.cpu0 = {k: procs.cpu_seconds(p) for k, p in self.pids.items()}
        self.calls0 = self.r.command_calls()
        return self

    def __exit__(self, *exc):
        self.cpu1 = {k: procs.cpu_seconds(p) for k, p in self.pids.items()}
        self.calls1 = self.r.command_calls()

    def per_request(self, n):
        n = max(1, n)
        cpu = {f"cpu_us_per_req_{k}": (self.cpu1[k] - self.cpu0[k]) * 1e6 / n
               for k in self.pids if self.cpu0.get(k) is not None and self.cpu1.get(k) is not None}  # fmt: skip
        delta = {k: self.calls1.get(k, 0) - self.calls0.get(k, 0) for k in self.calls1}
        delta = {k: v for k, v in delta.items() if v > 0 and k not in ("info", "xlen")}
        top = sorted(delta.items(), key=lambda kv: -kv[1])
        return {
            **cpu,
            "redis_commands_per_req": sum(delta.values()) / n,
            "redis_calls_per_req_by_command": {k: round(v / n, 3) for k, v in top if v / n >= 0.01},
        }


# --------------------------------------------------------------------------
# OTLP sink: accepts OTLP/HTTP exports and throws them away
# --------------------------------------------------------------------------
class OtlpSink:
    def __init__(self):
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                n = int(self.headers.get("Content-Length", 0))
                self.rfile.read(n)
                sink.requests += 1
                sink.bytes += n
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------
# Scenario groups
# --------------------------------------------------------------------------
def api_group(ctx):
    """Bounds (XADD, /livez), enqueue rate and latency (workers stopped),
    api RSS, tracing cost, CPU profile."""
    cfg, res = ctx.cfg, ctx.results
    stack = ctx.new_stack("api")
    try:
        stack.start_redis()
        r = stack.redis()
        res["machine"]["redis_version"] = r.info("server").get("redis_version")
        api = stack.start_api()
        time.sleep(2.0)
        res["api_rss"] = {"idle_mb": rss_mb(api.pid)}
        tools.log(f"api idle RSS {res['api_rss']['idle_mb']:.1f} MB")

        sessions = Api(api.port).create_sessions(cfg["setup_sessions"], "enq", threads=8)
        sess_file = os.path.join(stack.dir, "sessions.txt")
        write_lines(sess_file, [u for u, _ in sessions])
        url = f"http://127.0.0.1:{api.port}/"
        wrk_env = {"WRK_KEY": API_KEY, "WRK_SESSIONS": sess_file}

        rounds = {"xadd": [], "livez": [], "enqueue": []}
        pids = {"api": api.pid, "redis": stack.redis_proc.pid}
        with RssSampler({"api": api.pid}) as sampler:
            for i in range(cfg["runs"]):
                tools.log(f"bounds/enqueue round {i + 1}/{cfg['runs']}")
                with Costs(r, pids) as c:
                    x = tools.run_redis_benchmark_xadd(stack.redis_port, requests=cfg["xadd_requests"])
                x.update(c.per_request(cfg["xadd_requests"]))
                rounds["xadd"].append(x)
                r.call("DEL", "bench:jobs")
                with Costs(r, pids) as c:
                    w = tools.run_wrk(url, "livez", ctx.wrk_script, cfg["seconds"])
                w.update(c.per_request(w["requests"]))
                rounds["livez"].append(w)
                xlen0 = r.call("XLEN", "{sm}:jobs")
                with Costs(r, pids) as c:
                    w = tools.run_wrk(url, "enqueue", ctx.wrk_script, cfg["seconds"], env=wrk_env)
                w.update(c.per_request(w["requests"]))
                w["jobs_added"] = r.call("XLEN", "{sm}:jobs") - xlen0
                rounds["enqueue"].append(w)
                reset_jobs(r)
        res["api_rss"]["under_load_max_mb"] = sampler.max["api"]
        res["api_rss"]["hwm_mb"] = hwm_mb(api.pid)
        xadd = median([x["rps"] for x in rounds["xadd"]])
        livez = median([x["rps"] for x in rounds["livez"]])
        enq = median([x["rps"] for x in rounds["enqueue"]])
        res["bounds"] = {
            "xadd_rps_median": xadd,
            "xadd_runs": rounds["xadd"],
            "livez_rps_median": livez,
            "livez_p99_ms_median": median([x["lat_p99_ms"] for x in rounds["livez"]]),
            "livez_runs": rounds["livez"],
        }
        res["enqueue"] = {
            "connections": 64,
            "rps_median": enq,
            "p50_ms_median": median([x["lat_p50_ms"] for x in rounds["enqueue"]]),
            "p99_ms_median": median([x["lat_p99_ms"] for x in rounds["enqueue"]]),
            "non2xx_total": sum(x["non2xx"] for x in rounds["enqueue"]),
            "ratio_to_xadd": enq / xadd if xadd else None,
            "ratio_to_livez": enq / livez if livez else None,
            "runs": rounds["enqueue"],
        }
        tools.log(f"xadd {xadd:.0f}/s, livez {livez:.0f}/s, enqueue {enq:.0f}/s")

        # k6: latency at a fixed arrival rate.
        tools.log(f"k6 enqueue latency at {cfg['k6_rate']}/s")
        res["enqueue"]["k6_fixed_rate"] = dict(
            rate=cfg["k6_rate"],
            **tools.run_k6(ctx.k6, ctx.k6_script("enqueue.js"), {
                "BASE_URL": url.rstrip("/"), "API_KEY": API_KEY, "SESSIONS": sess_file,
                "RATE": cfg["k6_rate"], "DURATION": f"{cfg['k6_seconds']}s", "P99_MS": 5,
            }, os.path.join(stack.dir, "k6-enqueue.json")),
        )  # fmt: skip
        ctx.k6_outcome("enqueue (fixed rate)", res["enqueue"]["k6_fixed_rate"])
        reset_jobs(r)

        # CPU profile of the enqueue path.
        if ctx.perf:
            data = os.path.join(stack.dir, "perf-api.data")
            rec = tools.perf_record(api.pid, cfg["seconds"], data)
            tools.run_wrk(url, "enqueue", ctx.wrk_script, cfg["seconds"], env=wrk_env)
            rec.wait(timeout=60)
            reset_jobs(r)
            res["profile"] = {
                "api_enqueue_top_symbols": tools.perf_top_symbols(data),
                "api_enqueue_by_dso": tools.perf_dso_split(data),
            }
        stack.stop_api(api)

        # A/B: a candidate api binary (e.g. with a fix the profile suggests), alternating with this one.
        if cfg["api_candidate"]:
            base_runs, cand_runs = [], []
            for i in range(cfg["runs"]):
                tools.log(f"A/B candidate round {i + 1}/{cfg['runs']}")
                for label, binary, out in (("base", None, base_runs), ("candidate", cfg["api_candidate"], cand_runs)):
                    a = stack.start_api(name=f"api-ab-{label}-{i}", binary=binary)
                    with Costs(r, {"api": a.pid, "redis": stack.redis_proc.pid}) as c:
                        w = tools.run_wrk(f"http://127.0.0.1:{a.port}/", "enqueue", ctx.wrk_script, cfg["seconds"], env=wrk_env)
                    w.update(c.per_request(w["requests"]))
                    out.append(w)
                    stack.stop_api(a)
                    reset_jobs(r)
            def summary(runs):
                return {
                    "rps_median": median([x["rps"] for x in runs]),
                    "p99_ms_median": median([x["lat_p99_ms"] for x in runs]),
                    "cpu_us_per_req_api": median([x.get("cpu_us_per_req_api") for x in runs]),
                    "cpu_us_per_req_redis": median([x.get("cpu_us_per_req_redis") for x in runs]),
                    "redis_commands_per_req": median([x.get("redis_commands_per_req") for x in runs]),
                    "runs": runs,
                }
            res["api_candidate"] = {"binary": cfg["api_candidate"], "base": summary(base_runs), "candidate": summary(cand_runs)}

        # Tracing cost: the same enqueue run with spans filtered out (RUST_LOG=warn), at the production
        # level without an exporter, and at that level exporting every span over OTLP/HTTP to a local sink.
        with OtlpSink() as sink:
            otlp = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_TRACES_SAMPLER": "always_on",
                "OTEL_SERVICE_NAME": "api-bench",
            }
            variants = (
                ("warn_no_exporter", {"RUST_LOG": "warn"}),
                ("info_no_exporter", {"RUST_LOG": "info"}),
                ("info_otlp_exporter", {"RUST_LOG": "info", **otlp}),
            )
            runs = {label: [] for label, _ in variants}
            for i in range(cfg["runs"]):
                tools.log(f"tracing cost round {i + 1}/{cfg['runs']}")
                for label, extra in variants:
                    a = stack.start_api(extra_env=extra, name=f"api-trace-{label}-{i}")
                    with Costs(r, {"api": a.pid}) as c:
                        w = tools.run_wrk(f"http://127.0.0.1:{a.port}/", "enqueue", ctx.wrk_script, cfg["seconds"], env=wrk_env)
                    w.update(c.per_request(w["requests"]))
                    runs[label].append(w)
                    stack.stop_api(a)
                    reset_jobs(r)
            out = {}
            for label, rs in runs.items():
                out[label] = {
                    "rps_median": median([x["rps"] for x in rs]),
                    "p99_ms_median": median([x["lat_p99_ms"] for x in rs]),
                    "cpu_us_per_req_api": median([x.get("cpu_us_per_req_api") for x in rs]),
                }
            base = out["info_no_exporter"]["rps_median"]
            on = out["info_otlp_exporter"]["rps_median"]
            res["tracing_cost"] = {
                "variants": out,
                "throughput_cost_pct": (1 - on / base) * 100 if base and on else None,
                "otlp_export_requests": sink.requests,
                "otlp_export_bytes": sink.bytes,
            }
        r.close()
    finally:
        stack.stop()


def reject_group(ctx):
    """Auth failures and rate limiting under load: cost, and no stream writes."""
    cfg, res = ctx.cfg, ctx.results
    stack = ctx.new_stack("reject")
    try:
        stack.start_redis()
        api = stack.start_api()
        limit_per_min = 600
        # Both apis share one Redis, and so the per-IP bucket of 127.0.0.1: the low-limit api
        # would exhaust it for the benchmark api too. Its requests therefore come "through a
        # proxy" (X-Forwarded-For from a trusted 127.0.0.1) from their own client address.
        limited = stack.start_api(rate_per_minute=limit_per_min, name="api-limited",
                                  extra_env={"TRUSTED_PROXIES": "127.0.0.1/32"})  # fmt: skip
        sess = Api(api.port).create_sessions(1, "reject")[0][0]
        r = stack.redis()
        sess_file = os.path.join(stack.dir, "sessions.txt")
        write_lines(sess_file, [sess])
        env = {"WRK_KEY": API_KEY, "WRK_SESSIONS": sess_file}
        out = {}
        for label, port, mode in (("livez", api.port, "livez"), ("badkey", api.port, "badkey"),
                                  ("ratelimited", limited.port, "ratelimit")):  # fmt: skip
            runs = []
            target = api if port == api.port else limited
            for _ in range(cfg["runs"]):
                xlen0 = r.call("XLEN", "{sm}:jobs")
                with Costs(r, {"api": target.pid, "redis": stack.redis_proc.pid}) as c:
                    w = tools.run_wrk(f"http://127.0.0.1:{port}/", mode, ctx.wrk_script, cfg["seconds"], env=env)
                w.update(c.per_request(w["requests"]))
                w["accepted"] = w["requests"] - w["non2xx"]
                w["stream_entries_added"] = r.call("XLEN", "{sm}:jobs") - xlen0
                runs.append(w)
            out[label] = {
                "rps_median": median([x["rps"] for x in runs]),
                "p99_ms_median": median([x["lat_p99_ms"] for x in runs]),
                "runs": runs,
            }
        livez = out["livez"]["rps_median"]
        for k in ("badkey", "ratelimited"):
            out[k]["ratio_to_livez"] = out[k]["rps_median"] / livez if livez else None
        out["limit_per_minute"] = limit_per_min
        out["stream_entries_from_rejected"] = sum(
            x["stream_entries_added"] - x["accepted"] for k in ("badkey", "ratelimited") for x in out[k]["runs"]
        )
        rate = 100
        k6res = tools.run_k6(ctx.k6, ctx.k6_script("reject.js"), {
            "BASE_URL": f"http://127.0.0.1:{api.port}", "LIMITED_URL": f"http://127.0.0.1:{limited.port}",
            "API_KEY": API_KEY, "SESSION": sess, "RATE": rate, "DURATION": "10s", "P99_MS": 5,
            "MAX_ACCEPTED": limit_per_min // 60 * 10 + limit_per_min,
        }, os.path.join(stack.dir, "k6-reject.json"))  # fmt: skip
        out["k6"] = k6res
        ctx.k6_outcome("reject (auth + rate limit)", k6res)
        res["reject"] = out
        r.close()
    finally:
        stack.stop()


def lifecycle_group(ctx):
    cfg, res = ctx.cfg, ctx.results
    stack = ctx.new_stack("lifecycle")
    try:
        stack.start_redis()
        stack.start_standin(ready_delay_ms=cfg["lifecycle_pod_delay_ms"])
        api = stack.start_api()
        workers = stack.start_workers(cfg["lifecycle_workers"], concurrency=cfg["worker_concurrency"])
        with RssSampler({w.name: w.pid for w in workers} | {"api": api.pid}) as s:
            k6res = tools.run_k6(ctx.k6, ctx.k6_script("lifecycle.js"), {
                "BASE_URL": f"http://127.0.0.1:{api.port}", "API_KEY": API_KEY,
                "VUS": cfg["lifecycle_vus"], "ITERATIONS": cfg["lifecycle_iterations"],
            }, os.path.join(stack.dir, "k6-lifecycle.json"))  # fmt: skip
        k6res["vus"] = cfg["lifecycle_vus"]
        k6res["iterations_per_vu"] = cfg["lifecycle_iterations"]
        k6res["workers"] = cfg["lifecycle_workers"]
        k6res["pod_ready_delay_ms"] = cfg["lifecycle_pod_delay_ms"]
        k6res["rss_max_mb"] = s.max
        res["lifecycle"] = k6res
        ctx.k6_outcome("lifecycle", k6res)
    finally:
        stack.stop()


def worker_group(ctx):
    """e2e latency at a fixed rate, drain time with 1/2/4 workers, worker RSS with many live sessions."""
    cfg, res = ctx.cfg, ctx.results
    stack = ctx.new_stack("workers")
    try:
        stack.start_redis()
        stack.start_standin(ready_delay_ms=0)
        api = stack.start_api()
        client = Api(api.port)
        n = cfg["drain_sessions"]
        tools.log(f"creating {n} sessions for the drain rounds")
        stack.start_workers(4, concurrency=cfg["worker_concurrency"])
        created = client.create_sessions(n, "drain", threads=8)
        wait_drained(stack, [j for _, j in created], timeout=cfg["setup_timeout"])
        uuids = [u for u, _ in created]
        # The e2e run spreads its jobs over the first BENCH_E2E_SESSIONS of them.
        sess_file = os.path.join(stack.dir, "sessions.txt")
        write_lines(sess_file, uuids[: cfg["e2e_sessions"]])

        # End-to-end latency at a fixed rate (workers running).
        stack.stop_workers()
        stack.start_workers(cfg["e2e_workers"], concurrency=cfg["worker_concurrency"])
        rate = cfg["e2e_rate"]
        tools.log(f"e2e at {rate} jobs/s with {cfg['e2e_workers']} workers")
        t0 = now_ms()
        k6res = tools.run_k6(ctx.k6, ctx.k6_script("enqueue.js"), {
            "BASE_URL": f"http://127.0.0.1:{api.port}", "API_KEY": API_KEY, "SESSIONS": sess_file,
            "RATE": rate, "DURATION": f"{cfg['e2e_seconds']}s", "P99_MS": 50,
        }, os.path.join(stack.dir, "k6-e2e.json"))  # fmt: skip
        t1 = now_ms()
        deadline = time.monotonic() + cfg["setup_timeout"]
        while True:
            recs = jobs_between(stack, t0, t1, {"sleep", "wake"})
            if all(j["state"] in TERMINAL for j in recs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        e2e = latency_summary(recs)
        e2e.update({"rate": rate, "seconds": cfg["e2e_seconds"], "workers": cfg["e2e_workers"], "k6": k6res,
                    "sessions": min(len(uuids), cfg["e2e_sessions"])})  # fmt: skip
        res["e2e"] = e2e
        ctx.k6_outcome("e2e load (fixed rate)", k6res)
        stack.stop_workers()

        # Warm-up: every session asleep, so each measured round changes replicas.
        action = "sleep"
        jobs = client.commands([(u, action) for u in uuids])
        stack.start_workers(4, concurrency=cfg["worker_concurrency"])
        wait_drained(stack, jobs, timeout=cfg["setup_timeout"])
        stack.stop_workers()

        res["drain"] = {}
        for per_session in cfg["drain_jobs_per_session"]:
            action = drain_rounds(ctx, stack, client, uuids, per_session, action)

        # Worker RSS with many live sessions, created through the api and the workers in
        # waves. Each wave is put to sleep once it runs, so the stand-in holds at most one
        # wave's pods (kube-fake-client clones every pod of the namespace on each pod list).
        live_target, wave = cfg["live_sessions"], max(1, cfg["live_wave"])
        more = max(0, live_target - n)
        tools.log(f"creating {more} more sessions ({live_target} live) in waves of {wave} for the worker RSS measurement")
        workers = stack.start_workers(cfg["live_workers"], concurrency=cfg["worker_concurrency"])
        pids = {w.name: w.pid for w in workers}
        t0 = time.monotonic()
        waves = []
        live_uuids = list(uuids)
        with RssSampler(pids) as s_create:
            for i in range(0, more, wave):
                k = min(wave, more - i)
                tw = time.monotonic()
                created = client.create_sessions(k, f"live{i}", threads=8)
                wait_drained(stack, [j for _, j in created], timeout=cfg["live_timeout"])
                tc = time.monotonic()
                asleep = client.commands([(u, "sleep") for u, _ in created])
                wait_drained(stack, asleep, timeout=cfg["live_timeout"])
                live_uuids += [u for u, _ in created]
                waves.append({"sessions": k, "create_s": tc - tw, "sleep_s": time.monotonic() - tc,
                              "live_after": len(live_uuids)})  # fmt: skip
                tools.log(f"  {len(live_uuids)} live; wave of {k}: create {tc - tw:.1f} s, sleep {time.monotonic() - tc:.1f} s")
        create_seconds = time.monotonic() - t0
        # With every session live: wake a spread of them, then put them back to sleep.
        rng = random.Random(7)
        picked = rng.sample(live_uuids, min(cfg["live_round"], len(live_uuids)))
        t_round = time.monotonic()
        with RssSampler(pids) as s_round:
            woke = client.commands([(u, "wake") for u in picked])
            wait_drained(stack, woke, timeout=cfg["live_timeout"])
            slept = client.commands([(u, "sleep") for u in picked])
            wait_drained(stack, slept, timeout=cfg["live_timeout"])
        round_seconds = time.monotonic() - t_round
        round_states = latency_summary(job_records(stack, woke + slept))
        r = stack.redis()
        live = r.call("ZCARD", "{sm}:sessions")
        r.close()
        time.sleep(3.0)
        res["worker_rss"] = {
            "live_sessions": live,
            "workers": len(workers),
            "concurrency": cfg["worker_concurrency"],
            "wave": wave,
            "waves": waves,
            "create_seconds": create_seconds,
            "max_during_creates_mb": max(s_create.max.values()) if s_create.max else None,
            "round_jobs": len(woke) + len(slept),
            "round_seconds": round_seconds,
            "round_summary": round_states,
            "max_during_round_mb": max(s_round.max.values()) if s_round.max else None,
            "max_during_drains_mb": max([x for x in ctx.worker_rss_seen] or [0]) or None,
            "after_mb": {w.name: rss_mb(w.pid) for w in workers},
            "hwm_mb": {w.name: hwm_mb(w.pid) for w in workers},
            "standin_rss_mb": rss_mb(stack.standin.pid) if stack.standin else None,
        }
    finally:
        stack.stop()


def drain_rounds(ctx, stack, client, uuids, per_session, action):
    """Drain rounds for 1, 2, 4 workers x runs, with `per_session` jobs per
    session (the last one sets the state; earlier ones are stale and end as
    superseded). Returns the last action, so the next round flips it."""
    cfg, res = ctx.cfg, ctx.results
    other = {"sleep": "wake", "wake": "sleep"}
    drain = {k: [] for k in cfg["drain_workers"]}
    pids_extra = {"standin": stack.standin.pid, "redis": stack.redis_proc.pid}
    for rep in range(cfg["runs"]):
        for k in cfg["drain_workers"]:
            action = other[action]
            pairs = [(u, action if (per_session - 1 - i) % 2 == 0 else other[action])
                     for i in range(per_session) for u in uuids]  # fmt: skip
            jobs = client.commands(pairs)
            tools.log(f"drain {len(jobs)} jobs ({per_session}/session, last {action}) with {k} workers (round {rep + 1})")
            cpu0 = {n: procs.cpu_seconds(p) for n, p in pids_extra.items()}
            t_start = time.monotonic()
            workers = stack.start_workers(k, concurrency=cfg["worker_concurrency"])
            profiling = ctx.perf and rep == 0 and k == 1 and per_session == 1
            if profiling:
                # perf reports threads; map every thread id to its process.
                names = {}
                for label, pid in (("worker", workers[0].pid), ("kube-standin", stack.standin.pid)):
                    names.update({tid: label for tid in os.listdir(f"/proc/{pid}/task")})
                data = os.path.join(stack.dir, "perf-drain.data")
                rec = tools.perf_record_until_stopped([workers[0].pid, stack.standin.pid], data)
            with RssSampler({w.name: w.pid for w in workers}) as s:
                wait_drained(stack, jobs, timeout=cfg["setup_timeout"])
            wall = time.monotonic() - t_start
            if profiling:
                rec.send_signal(signal.SIGINT)
                rec.wait(timeout=120)
                by = {}
                for x, d in tools.perf_by_process(data):
                    label = names.get(d.split(":")[0].strip(), "other")
                    by[label] = by.get(label, 0.0) + x
                res.setdefault("profile", {})["drain_by_process"] = sorted(((x, d) for d, x in by.items()), reverse=True)
                res["profile"]["drain_worker_top_symbols"] = tools.perf_top_symbols(data, limit=15, pid=workers[0].pid)
                res["profile"]["drain_standin_top_symbols"] = tools.perf_top_symbols(data, limit=15, pid=stack.standin.pid)
            cpu = {n: procs.cpu_seconds(p) - cpu0[n] for n, p in pids_extra.items()}
            cpu["workers"] = sum(procs.cpu_seconds(w.pid) or 0 for w in workers)
            ctx.worker_rss_seen.append(max(s.max.values()))
            recs = job_records(stack, jobs)
            started = [int(j["started_at_ms"]) for j in recs if j.get("started_at_ms")]
            finished = [int(j["finished_at_ms"]) for j in recs if j.get("finished_at_ms")]
            window = (max(finished) - min(started)) / 1000 if started and finished else None
            summ = latency_summary(recs)
            drain[k].append({
                "action": action, "jobs": len(jobs), "wall_s": wall, "jobs_per_s_wall": len(jobs) / wall,
                "busy_window_s": window, "jobs_per_s_busy": len(jobs) / window if window else None,
                "states": summ["states"], "e2e_ms": summ["e2e_ms"], "worker_rss_max_mb": max(s.max.values()),
                "cpu_ms_per_job": {n: v * 1000 / len(jobs) for n, v in cpu.items() if v is not None},
            })  # fmt: skip
            stack.stop_workers()
    table = {}
    for k, runs in drain.items():
        table[k] = {
            "jobs_per_s_wall_median": median([x["jobs_per_s_wall"] for x in runs]),
            "jobs_per_s_busy_median": median([x["jobs_per_s_busy"] for x in runs]),
            "wall_s_median": median([x["wall_s"] for x in runs]),
            "e2e_p99_ms_median": median([x["e2e_ms"]["p99"] for x in runs]),
            "cpu_ms_per_job_median": {n: median([x["cpu_ms_per_job"].get(n) for x in runs]) for n in ("workers", "standin", "redis")},
            "runs": runs,
        }
    ks = cfg["drain_workers"]
    base = table[ks[0]]["jobs_per_s_wall_median"]
    scaling = {f"{ks[0]}->{k}": (table[k]["jobs_per_s_wall_median"] / base if base else None) for k in ks[1:]}
    res["drain"][str(per_session)] = {
        "sessions": len(uuids), "jobs_per_session": per_session, "jobs": len(uuids) * per_session,
        "per_workers": table, "scaling_wall": scaling,
    }  # fmt: skip
    return action


def micro_group(ctx):
    out = {"proto-types/codec": tools.run_criterion(ctx.root, "proto-types", "codec")}
    if os.path.exists(os.path.join(ctx.root, "worker", "benches", "plan.rs")):
        out["worker/plan"] = tools.run_criterion(ctx.root, "worker", "plan")
    else:
        out["worker/plan"] = "worker/benches/plan.rs not present"
    ctx.results["micro_ns"] = out


GROUPS = {
    "api": api_group,
    "reject": reject_group,
    "lifecycle": lifecycle_group,
    "workers": worker_group,
    "micro": micro_group,
    "durability": durability.durability_group,
    "gateway": gateway.gateway_group,
    "sweep": sweep.sweep_group,
}


def stack_factory(root, run_dir, k8s_poll_ms):
    def new_stack(name):
        stack = Stack(root, run_dir, name)
        stack.k8s_poll_ms = k8s_poll_ms
        return stack

    return new_stack


__all__ = ["GROUPS", "stack_factory", "procs"]
