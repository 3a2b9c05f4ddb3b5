"""The Redis durability window (issue 12): what `appendfsync always` costs
against `everysec` on the enqueue path, and how many acknowledged commands
a SIGKILL of redis-server under steady enqueue load loses with each.

Both settings run side by side, each on its own private redis-server with
its own api (the same release binary), and every measurement alternates
between them round by round, so the machine's noise hits both alike:
- enqueue: wrk, 64 connections, `POST /session/{uuid}/sleep|wake`;
- crash: 16 connections creating sessions; after a few seconds of load
  redis-server is SIGKILLed, restarted on the same port and AOF (same
  setting), and the load goes on; every `job_id` answered 202 is recorded
  with the time of its answer, and afterwards each one whose job hash is
  gone counts as lost (with how long before the kill it was acknowledged).

A SIGKILL is a process crash: the kernel keeps every page Redis already
wrote. A node loss also drops the page cache, which only fsync protects;
that cannot be produced on one machine, and the report says so.
"""

import http.client
import json
import os
import threading
import time

from . import tools
from .httpc import Api
from .procs import HarnessError, wait_until
from .resp import Redis
from .stack import API_KEY

SETTINGS = ("everysec", "always")
CONNECTIONS = 64
CRASH_CONNECTIONS = 16
CRASH_LOAD_S = 4.0  # load before the kill (longer than the ~2 s window, so older acks are checked too)
CRASH_DOWN_S = 0.5  # Redis down
CRASH_AFTER_S = 1.5  # load after the restart (the api must carry on by itself)


def durability_group(ctx):
    cfg, res = ctx.cfg, ctx.results
    stacks, apis, sess_files = {}, {}, {}
    try:
        for fsync in SETTINGS:
            stack = ctx.new_stack(f"durability-{fsync}")
            stacks[fsync] = stack
            stack.start_redis(appendfsync=fsync)
            apis[fsync] = stack.start_api()
            sessions = Api(apis[fsync].port).create_sessions(min(cfg["setup_sessions"], 500), f"dur-{fsync}", threads=8)
            sess_files[fsync] = os.path.join(stack.dir, "sessions.txt")
            with open(sess_files[fsync], "w") as f:
                f.write("\n".join(u for u, _ in sessions) + "\n")

        runs = {k: [] for k in SETTINGS}
        for i in range(cfg["runs"]):
            for fsync in _order(i):
                url = f"http://127.0.0.1:{apis[fsync].port}/"
                w = tools.run_wrk(url, "enqueue", ctx.wrk_script, cfg["seconds"], connections=CONNECTIONS,
                                  env={"WRK_KEY": API_KEY, "WRK_SESSIONS": sess_files[fsync]})  # fmt: skip
                tools.log(f"durability: enqueue {fsync} round {i + 1}: {w['rps']:.0f}/s p99 {w['lat_p99_ms']:.1f} ms")
                runs[fsync].append(w)

        crashes = {k: [] for k in SETTINGS}
        for i in range(cfg["runs"]):
            for fsync in _order(i):
                c = crash_under_load(stacks[fsync], apis[fsync].port, fsync)
                tools.log(f"durability: crash {fsync} round {i + 1}: {c['acknowledged_before_kill']} acknowledged before "
                          f"the kill, {c['lost']} lost, {c['acknowledged_after_restart']} acknowledged after the restart")  # fmt: skip
                crashes[fsync].append(c)
    finally:
        for stack in stacks.values():
            stack.stop()

    out = {"connections": CONNECTIONS, "crash_connections": CRASH_CONNECTIONS, "alternated": True}
    for fsync in SETTINGS:
        cs = crashes[fsync]
        lost_ages = [a for c in cs for a in c["lost_ack_ms_before_kill"]]
        out[fsync] = {
            "rps_median": _median([w["rps"] for w in runs[fsync]]),
            "p99_ms_median": _median([w["lat_p99_ms"] for w in runs[fsync]]),
            "p50_ms_median": _median([w["lat_p50_ms"] for w in runs[fsync]]),
            "non2xx": sum(w.get("non2xx", 0) for w in runs[fsync]),
            "runs": runs[fsync],
            "crash": {
                "crashes": len(cs),
                "acknowledged_before_kill": sum(c["acknowledged_before_kill"] for c in cs),
                "acknowledged": sum(c["acknowledged"] for c in cs),
                "lost": sum(c["lost"] for c in cs),
                "oldest_lost_ms_before_kill": max(lost_ages) if lost_ages else None,
                "min_acknowledged_after_restart": min((c["acknowledged_after_restart"] for c in cs), default=None),
                "restart_s_max": max((c["restart_s"] for c in cs), default=None),
            },
            "crashes": cs,
        }
        tools.log(f"appendfsync {fsync}: {out[fsync]['rps_median']:.0f}/s p99 {out[fsync]['p99_ms_median']:.1f} ms; "
                  f"crashes: {out[fsync]['crash']['acknowledged_before_kill']} acknowledged before the kills, "
                  f"{out[fsync]['crash']['lost']} lost")  # fmt: skip
    e, a = out["everysec"]["rps_median"], out["always"]["rps_median"]
    out["always_to_everysec_rps"] = a / e if e else None
    ep, ap = out["everysec"]["p99_ms_median"], out["always"]["p99_ms_median"]
    out["always_to_everysec_p99"] = ap / ep if ep else None
    res["durability"] = out


def _order(i):
    """Alternates which setting goes first in round i."""
    return SETTINGS if i % 2 == 0 else SETTINGS[::-1]


class _Load:
    """CRASH_CONNECTIONS threads creating sessions, each on one keep-alive
    connection; records (job_id, monotonic time of the 202)."""

    def __init__(self, api_port, tag):
        self.api_port, self.tag = api_port, tag
        self.acked, self.unavailable = [], 0
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(CRASH_CONNECTIONS)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, tid):
        n = 0
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=5)
        headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
        while not self.stop.is_set():
            n += 1
            body = json.dumps({"user_id": f"crash-{self.tag}-{tid}-{n}@bench.example.com"}).encode()
            try:
                conn.request("POST", "/session/create", body=body, headers=headers)
                resp = conn.getresponse()
                doc = json.loads(resp.read() or b"null")
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=5)
                time.sleep(0.01)
                continue
            now = time.monotonic()
            if resp.status == 202 and doc and doc.get("job_id"):
                with self.lock:
                    self.acked.append((doc["job_id"], now))
            elif resp.status == 503:
                with self.lock:
                    self.unavailable += 1
                time.sleep(0.01)
        conn.close()


def crash_under_load(stack, api_port, fsync):
    """One crash: load, SIGKILL, restart on the same AOF, more load; then
    counts the acknowledged jobs whose record is gone."""
    tag = f"{fsync}-{int(time.monotonic() * 1000)}"
    with _Load(api_port, tag) as load:
        time.sleep(CRASH_LOAD_S)
        killed_at = time.monotonic()
        stack.kill_redis()
        time.sleep(CRASH_DOWN_S)
        t0 = time.monotonic()
        stack.start_redis(appendfsync=fsync, port=stack.redis_port)
        restarted_at = time.monotonic()
        time.sleep(CRASH_AFTER_S)
    acked = list(load.acked)
    before = [(j, t) for j, t in acked if t <= killed_at]
    after = [(j, t) for j, t in acked if t >= restarted_at]
    r = Redis(port=stack.redis_port)
    try:
        wait_until(lambda: r.call("PING") == "PONG", 20, "redis after the crash")
        exists = r.pipeline([("EXISTS", "{sm}:job:" + j) for j, _ in acked])
    finally:
        r.close()
    if any(not isinstance(x, int) for x in exists):
        raise HarnessError(f"EXISTS answered an error after the crash: {[x for x in exists if not isinstance(x, int)][:3]}")
    lost = [(j, t) for (j, t), x in zip(acked, exists) if x == 0]
    return {
        "load_seconds_before_kill": CRASH_LOAD_S,
        "acknowledged": len(acked),
        "acknowledged_before_kill": len(before),
        "acknowledged_after_restart": len(after),
        "answered_503": load.unavailable,
        "lost": len(lost),
        "lost_ack_ms_before_kill": sorted(round((killed_at - t) * 1000, 1) for _, t in lost),
        "restart_s": round(restarted_at - t0, 2),
    }


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None
