"""The `sweep` group (issue 15): what one lifecycle sweep costs with 1,000
and with 100,000 sessions, and what one drift resync costs with 10,000
sessions in the stand-in.

Sweep cost: session hashes, the sessions index, the user sets, the activity
set and the lifecycle-due set are written straight into a private
redis-server, field for field as `enqueue.lua` (create) and the runner leave
a running session. One release worker sweeps every `BENCH_SWEEP_INTERVAL_MS`.
Before each measured sweep the harness makes a fresh batch of sessions due
(score "now" in `{sm}:lifecycle-due`), resets `INFO commandstats`, reads the
worker's CPU, then waits for the sweep's jobs (one `sleep` job, origin
`idle`, per due session: counted in the stream) and reads both again. The
Redis of this group has `XREADGROUP` renamed away, so the job runner never
takes the jobs: the figures are the sweep's alone (the runner's failed reads
are not commands). A job in flight makes the sweeper look at its session
again next interval, so the harness moves the sessions it has acted on out
of the due set between sweeps.

Drift resync: 10,000 sleeping sessions in Redis and their PVC, Deployment
(0 replicas) and Service in the stand-in (loaded from a state file), with
the Deployments of `BENCH_DRIFT_MISSING` sessions missing. A worker starts
(its resync runs at start); the time is from its metrics port answering to
the last drift job's stream entry, the Kubernetes calls are the stand-in's
recorded calls. Measured rounds keep the jobs from running (as above; a
fresh Redis each, the stand-in kept); a last round with an ordinary Redis
lets the drift jobs run and checks that the Deployments are back.
"""

import json
import os
import shutil
import subprocess
import time
import uuid

from . import tools
from .procs import HarnessError, Proc, cpu_seconds, free_port, port_open, wait_until
from .resp import Redis

# The harness's own commands during a measured window (never the sweeper's).
OWN = {"info", "config", "xlen"}


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def now_ms():
    return int(time.time() * 1000)


def cpu_ns(pid):
    """CPU time of every thread of `pid` in ns (schedstat: finer than /proc/stat's ticks)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        return None
    return total


def session_fields(sid, status, created, last, url):
    replicas = "1" if status == "running" else "0"
    return [
        "user_id", f"bench-{int(sid[:2], 16) % 100}@example.com", "created_at_ms", created, "replicas", replicas,
        "last_error", "", "backup_file", "", "fence", "0", "workspace_url", url,
        "status", status, "desired", status, "generation", "1", "last_activity_ms", last,
        "last_job_id", str(uuid.uuid4()),
    ]  # fmt: skip


def seed_sessions(r, n, status, due_ms, ids=None):
    """`n` sessions (or `ids`) as a create and its finished job leave them,
    plus the gateway's activity score; each due at `due_ms`. Returns their ids."""
    t = now_ms()
    created, last = t - 7_200_000, t - 3_600_000
    ids = ids or [str(uuid.uuid4()) for _ in range(n)]
    cmds = []
    for sid in ids:
        fields = session_fields(sid, status, created, last, f"http://{sid}.ws.localhost")
        cmds.append(["HSET", f"{{sm}}:session:{sid}", *fields])
        cmds.append(["ZADD", "{sm}:sessions", created, sid])
        cmds.append(["SADD", f"{{sm}}:user:{fields[1]}", sid])
        cmds.append(["ZADD", "{sm}:activity", last, sid])
        cmds.append(["ZADD", "{sm}:lifecycle-due", due_ms, sid])
        if len(cmds) >= 5000:
            check(r.pipeline(cmds))
            cmds = []
    check(r.pipeline(cmds))
    return ids


def check(replies):
    for x in replies:
        if isinstance(x, Exception):
            raise HarnessError(f"seeding Redis failed: {x}")


def start_redis(stack, extra):
    """A private redis-server like Stack.start_redis, with `extra` arguments."""
    stack.redis_port = free_port()
    data = os.path.join(stack.dir, "redis")
    os.makedirs(data, exist_ok=True)
    argv = [
        shutil.which("redis-server") or "redis-server", "--port", str(stack.redis_port), "--bind", "127.0.0.1",
        "--dir", data, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
        "--auto-aof-rewrite-percentage", "0", "--maxmemory-policy", "noeviction", "--daemonize", "no", *extra,
    ]  # fmt: skip
    stack.redis_proc = Proc("redis-server", argv, {}, stack.log("redis"))
    wait_until(lambda: Redis(port=stack.redis_port, timeout=1).call("PING") == "PONG", 20, "redis PING", stack.redis_proc)


def start_worker(stack, name, env):
    port = free_port()
    full = {
        "REDIS_URL": stack.redis_url, "KUBECONFIG": stack.kubeconfig, "WORKER_CONSUMER_NAME": f"bench-{name}",
        "WORKER_METRICS_ADDR": f"127.0.0.1:{port}", "WORKER_BLOCK_MS": 1000, "RUST_LOG": "warn",
        "WORKER_RECLAIM_INTERVAL_MS": 3_600_000, "K8S_POLL_INTERVAL_MS": stack.k8s_poll_ms,
    }  # fmt: skip
    full.update(env)
    p = Proc(name, [stack.binary("worker")], full, stack.log(name))
    stack.workers.append(p)
    wait_until(lambda: port_open(port), 30, f"{name} metrics port", p, interval=0.005)
    p.metrics_port = port
    return p


def sweep_group(ctx):
    cfg = ctx.cfg
    out = {"interval_ms": cfg["sweep_interval_ms"], "sweeps": cfg["sweep_rounds"], "cases": {}}
    ctx.results["sweep"] = out
    for total in cfg["sweep_sessions"]:
        for due in sorted({max(1, total // 100), *(cfg["sweep_fixed_due"] if total != min(cfg["sweep_sessions"]) else [])}):
            label = f"{total}/{due}"
            tools.log(f"sweep: {total} sessions, {due} due per sweep")
            out["cases"][label] = sweep_case(ctx, total, due)
    out["drift"] = drift_case(ctx)
    cases = out["cases"]
    small, big = min(cfg["sweep_sessions"]), max(cfg["sweep_sessions"])
    a, b = cases.get(f"{small}/{max(1, small // 100)}"), cases.get(f"{big}/{max(1, big // 100)}")
    if a and b:
        out["ratio_per_due"] = {
            k: (b[k + "_per_due"] / a[k + "_per_due"]) if a.get(k + "_per_due") else None for k in ("commands", "cpu_ms")
        }


def sweep_case(ctx, total, due):
    cfg = ctx.cfg
    stack = ctx.new_stack(f"sweep-{total}-{due}")
    try:
        start_redis(stack, ["--rename-command", "XREADGROUP", ""])
        r = stack.redis()
        t0 = time.monotonic()
        ids = seed_sessions(r, total, "running", now_ms() + 86_400_000)
        seed_s = time.monotonic() - t0
        stack.start_standin()
        w = start_worker(stack, "worker-1", {
            "SWEEP_INTERVAL_MS": cfg["sweep_interval_ms"], "SWEEP_BATCH": max(500, due), "RESYNC_INTERVAL": 0,
            "IDLE_SLEEP_AFTER": 60, "IDLE_WARNING_BEFORE": 0, "SESSION_TTL": 0, "WORKER_CONCURRENCY": 1,
        })  # fmt: skip
        rounds, cursor, jobs_seen = [], 0, 0
        wait_s = cfg["sweep_interval_ms"] / 1000 * 3 + 5
        for k in range(cfg["sweep_rounds"] + 1):  # the first is a warm-up (connections, script load)
            batch = ids[cursor : cursor + due]
            cursor += due
            if len(batch) < due:
                raise HarnessError(f"not enough sessions for {cfg['sweep_rounds']} sweeps of {due}")
            r.call("CONFIG", "RESETSTAT")
            c0, n0 = cpu_seconds(w.pid), cpu_ns(w.pid)
            r.call("ZADD", "{sm}:lifecycle-due", *[x for sid in batch for x in (now_ms() - 1, sid)])
            want = jobs_seen + due
            polls = 0
            deadline = time.monotonic() + wait_s
            while True:
                polls += 1
                n = r.call("XLEN", "{sm}:jobs")
                if n >= want:
                    break
                if time.monotonic() > deadline or not w.alive():
                    raise HarnessError(f"sweep of {due} due sessions enqueued {n - jobs_seen} jobs in {wait_s:.0f}s; see {w.log_path}")
                time.sleep(0.01)
            time.sleep(0.2)  # the sweep's steps after its last enqueue
            calls = r.command_calls()
            c1, n1 = cpu_seconds(w.pid), cpu_ns(w.pid)
            n = r.call("XLEN", "{sm}:jobs")
            jobs = jobs_of(r, batch)
            idle_sleeps = sum(1 for j in jobs if j == ["sleep", "idle"])
            added, jobs_seen = n - jobs_seen, n
            sweep_calls = {c: v for c, v in calls.items() if c.split("|")[0] not in OWN}
            sweep_calls["zadd"] = sweep_calls.get("zadd", 0) - 1  # the harness's seeding ZADD
            sweep_calls = {c: v for c, v in sweep_calls.items() if v > 0}
            # Move the acted-on sessions out of the due set (their jobs never run, see the module doc).
            r.call("ZADD", "{sm}:lifecycle-due", *[x for sid in batch for x in (now_ms() + 86_400_000, sid)])
            if k == 0:
                continue
            rounds.append({
                "commands": sum(sweep_calls.values()), "by_command": sweep_calls, "jobs": added,
                "idle_sleep_jobs": idle_sleeps, "cpu_ms": (n1 - n0) / 1e6 if n0 is not None and n1 is not None else None,
                "cpu_ticks_ms": (c1 - c0) * 1000 if c0 is not None and c1 is not None else None,
            })  # fmt: skip
        res = {
            "sessions": total, "due": due, "seed_s": round(seed_s, 1), "rounds": rounds,
            "commands_median": median([x["commands"] for x in rounds]),
            "cpu_ms_median": median([x["cpu_ms"] for x in rounds]),
            "cpu_ticks_ms_median": median([x["cpu_ticks_ms"] for x in rounds]),
            "jobs_per_sweep": [x["jobs"] for x in rounds], "idle_sleep_jobs_per_sweep": [x["idle_sleep_jobs"] for x in rounds],
            "by_command": rounds[len(rounds) // 2]["by_command"] if rounds else {},
            "redis_used_memory_mb": int(r.info("memory").get("used_memory", 0)) / 1048576,
        }  # fmt: skip
        res["commands_per_due"] = res["commands_median"] / due if res["commands_median"] is not None else None
        res["cpu_ms_per_due"] = res["cpu_ms_median"] / due if res["cpu_ms_median"] is not None else None
        tools.log(f"  commands/sweep {res['commands_median']}, worker CPU/sweep {res['cpu_ms_median']:.2f} ms, jobs {res['jobs_per_sweep']}")
        r.close()
        return res
    finally:
        stack.stop()


def objects_of(stack, sid):
    """PVC, Deployment (0 replicas: sleeping) and Service of a session, as the worker renders them."""
    out = subprocess.run([stack.binary("worker"), "render-objects", "--session", sid], capture_output=True, text=True, check=True)
    objs = [o for o in json.loads(out.stdout) if o["kind"] in ("PersistentVolumeClaim", "Deployment", "Service")]
    for o in objs:
        if o["kind"] == "Deployment":
            o["spec"]["replicas"] = 0
    return json.dumps(objs)


def drift_case(ctx):
    cfg = ctx.cfg
    n, missing = cfg["drift_sessions"], cfg["drift_missing"]
    stack = ctx.new_stack("sweep-drift")
    try:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        gone = set(ids[:missing])
        template_id = "00000000-0000-4000-8000-000000000000"
        template = objects_of(stack, template_id)
        objects = []
        for sid in ids:
            for o in json.loads(template.replace(template_id, sid)):
                if not (o["kind"] == "Deployment" and sid in gone):
                    objects.append(o)
        state = os.path.join(stack.dir, "standin-state.json")
        with open(state, "w") as f:
            json.dump({"objects": objects, "namespaces": ["workspaces"]}, f)
        calls_file = os.path.join(stack.dir, "k8s-calls")
        t0 = time.monotonic()
        stack.start_standin(extra_env={"STANDIN_STATE_FILE": state, "STANDIN_RECORD_CALLS": calls_file})
        load_s = time.monotonic() - t0
        # The same three lists fetched by curl: the stand-in's share of the resync.
        sel = "?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsession-manager"
        plain = {}
        for path in ("/apis/apps/v1/namespaces/workspaces/deployments", "/api/v1/namespaces/workspaces/persistentvolumeclaims",
                     "/api/v1/namespaces/workspaces/services"):  # fmt: skip
            status, size, secs = standin_get(stack, path + sel)
            plain[path.rsplit("/", 1)[1]] = {"ms": round(secs * 1000, 1), "status": status, "bytes": size}
        tools.log(f"  plain lists from the stand-in: {plain}")
        rounds = []
        # Measured rounds: no job runs (XREADGROUP renamed away), so the calls are the resync's
        # alone and the Deployments stay missing for the next round (a fresh Redis each).
        for k in range(cfg["runs"] + 1):
            measured = k < cfg["runs"]
            start_redis(stack, ["--rename-command", "XREADGROUP", ""] if measured else [])
            r = stack.redis()
            seed_sessions(r, n, "sleeping", now_ms() + 86_400_000, ids=ids)
            lines0 = count_lines(calls_file)
            r.call("CONFIG", "RESETSTAT")
            w = start_worker(stack, f"worker-{k + 1}", {"RESYNC_INTERVAL": 3600, "SWEEP_INTERVAL_MS": 3_600_000, "WORKER_CONCURRENCY": 16})
            t_ready_ms = now_ms()
            wait_until(lambda: (r.call("XLEN", "{sm}:jobs") or 0) >= missing, 120, f"{missing} drift jobs", w, interval=0.005)
            entries = r.call("XRANGE", "{sm}:jobs", "-", "+")
            last_ms = max(int(e[0].split("-")[0]) for e in entries)
            drift_jobs = sum(1 for j in jobs_of(r, sorted(gone)) if j[1] == "drift")
            time.sleep(0.3)
            calls = read_lines(calls_file)[lines0:]
            redis_calls = {c: v for c, v in r.command_calls().items() if c.split("|")[0] not in OWN}
            row = {"resync_ms": last_ms - t_ready_ms, "drift_jobs": drift_jobs, "jobs_in_stream": len(entries),
                   "k8s_list_ms": kube_list_ms(w.metrics_port), "redis_commands": sum(redis_calls.values()),
                   "redis_by_command": redis_calls,
                   "k8s_calls": len(calls), "by_call": {c: calls.count(c) for c in sorted(set(calls))}}  # fmt: skip
            if not measured:
                wait_until(lambda: all_done(r, sorted(gone)), 120, "drift jobs to finish", w, interval=0.1)
                row["deployments_recreated"] = sum(1 for sid in gone if deployment_exists(stack, sid))
                row["k8s_calls_with_jobs"] = count_lines(calls_file) - lines0
            w.stop(grace=20)
            stack.workers.remove(w)
            r.close()
            stack.redis_proc.stop()
            stack.redis_proc = None
            shutil.rmtree(os.path.join(stack.dir, "redis"), ignore_errors=True)
            if measured:
                rounds.append(row)
                tools.log(f"  drift round {k + 1}: resync {row['resync_ms']} ms, {drift_jobs} drift jobs, {len(calls)} Kubernetes calls")
            else:
                repair = row
                tools.log(f"  drift repair: {row['deployments_recreated']}/{missing} Deployments back, {row['k8s_calls_with_jobs']} calls with the jobs")
        return {
            "sessions": n, "missing_deployments": missing, "standin_load_s": round(load_s, 1), "rounds": rounds, "repair": repair,
            "plain_lists": plain,
            "resync_ms_median": median([x["resync_ms"] for x in rounds]),
            "k8s_calls_median": median([x["k8s_calls"] for x in rounds]),
            "drift_jobs": [x["drift_jobs"] for x in rounds],
        }  # fmt: skip
    finally:
        stack.stop()


def kube_list_ms(port):
    """Sum of the worker's `list` call latencies (its kube request histogram), in ms."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return None
    finally:
        conn.close()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("worker_kube_request_duration_seconds_sum{") and 'verb="list"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return round(total * 1000, 1)


def jobs_of(r, sids):
    """[command, origin] of the last job of each session (its `last_job_id`)."""
    ids = r.pipeline([["HGET", f"{{sm}}:session:{sid}", "last_job_id"] for sid in sids])
    return r.pipeline([["HMGET", f"{{sm}}:job:{j}", "command", "origin"] for j in ids])


def all_done(r, sids):
    ids = r.pipeline([["HGET", f"{{sm}}:session:{sid}", "last_job_id"] for sid in sids])
    states = r.pipeline([["HGET", f"{{sm}}:job:{j}", "state"] for j in ids])
    return all(s in ("succeeded", "failed", "superseded", "dead") for s in states)


def standin_request(stack, method, path):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", stack.standin_port, timeout=10)
    try:
        conn.request(method, path, headers={"X-Standin-Observer": "bench"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def standin_get(stack, path):
    """(status, body bytes, seconds) of an observer GET (not recorded), timed by curl."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-H", "X-Standin-Observer: bench", "-w", "%{http_code} %{size_download} %{time_total}",
         f"http://127.0.0.1:{stack.standin_port}{path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    code, size, secs = out.stdout.split()
    return int(code), int(size), float(secs)


def deployment_exists(stack, sid):
    return standin_request(stack, "GET", f"/apis/apps/v1/namespaces/workspaces/deployments/ws-{sid}") == 200


def read_lines(path):
    try:
        with open(path) as f:
            return [x.strip() for x in f if x.strip()]
    except OSError:
        return []


def count_lines(path):
    return len(read_lines(path))
