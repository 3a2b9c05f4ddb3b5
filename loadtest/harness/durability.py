"""The Redis durability window (issue 12): what `appendfsync always` costs
against `everysec` on the enqueue path, and how many acknowledged commands
a SIGKILL of redis-server under steady enqueue load loses with each.

A SIGKILL is a process crash: the kernel keeps every page Redis already
wrote, so only what Redis acknowledged before write(2) could be lost. A
node loss also drops the page cache, which only fsync protects; that
cannot be produced on one machine, and the report says so.
"""

import http.client
import json
import os
import threading
import time

from . import tools
from .httpc import Api
from .procs import wait_until
from .resp import Redis
from .stack import API_KEY

SETTINGS = ("everysec", "always")


def durability_group(ctx):
    cfg, res = ctx.cfg, ctx.results
    out = {}
    for fsync in SETTINGS:
        tools.log(f"durability: appendfsync {fsync}")
        stack = ctx.new_stack(f"durability-{fsync}")
        try:
            stack.start_redis(appendfsync=fsync)
            api = stack.start_api()
            sessions = Api(api.port).create_sessions(min(cfg["setup_sessions"], 500), f"dur-{fsync}", threads=8)
            sess_file = os.path.join(stack.dir, "sessions.txt")
            with open(sess_file, "w") as f:
                f.write("\n".join(u for u, _ in sessions) + "\n")
            url = f"http://127.0.0.1:{api.port}/"
            runs = []
            for i in range(cfg["runs"]):
                w = tools.run_wrk(url, "enqueue", ctx.wrk_script, cfg["seconds"], env={"WRK_KEY": API_KEY, "WRK_SESSIONS": sess_file})
                runs.append(w)
            crash = crash_under_load(stack, api.port, seconds=3.0)
            out[fsync] = {
                "connections": 64,
                "rps_median": _median([w["rps"] for w in runs]),
                "p99_ms_median": _median([w["lat_p99_ms"] for w in runs]),
                "runs": runs,
                "crash": crash,
            }
            tools.log(f"appendfsync {fsync}: {out[fsync]['rps_median']:.0f}/s p99 {out[fsync]['p99_ms_median']:.1f} ms; "
                      f"crash: {crash['acknowledged']} acknowledged, {crash['lost']} lost")
        finally:
            stack.stop()
    e, a = out["everysec"]["rps_median"], out["always"]["rps_median"]
    out["always_to_everysec_rps"] = a / e if e else None
    res["durability"] = out


def crash_under_load(stack, api_port, seconds):
    """Creates sessions on 16 connections for `seconds`, SIGKILLs Redis,
    restarts it on its AOF and counts acknowledged jobs whose record is gone."""
    acked, stop = [], threading.Event()
    lock = threading.Lock()

    def load(tid):
        n = 0
        conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=5)
        while not stop.is_set():
            n += 1
            body = json.dumps({"user_id": f"crash-{tid}-{n}@bench.example.com"}).encode()
            try:
                conn.request("POST", "/session/create", body=body, headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
                resp = conn.getresponse()
                doc = json.loads(resp.read() or b"null")
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=5)
                time.sleep(0.01)
                continue
            if resp.status in (200, 202) and doc and doc.get("job_id"):
                with lock:
                    acked.append(doc["job_id"])
        conn.close()

    threads = [threading.Thread(target=load, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stack.kill_redis()
    killed_at = len(acked)
    stop.set()
    for t in threads:
        t.join()
    port = stack.redis_port
    stack.start_redis(appendfsync="everysec", port=port)
    r = Redis(port=port)
    try:
        wait_until(lambda: r.call("PING") == "PONG", 20, "redis after the crash")
        lost = 0
        for i in range(0, len(acked), 500):
            chunk = acked[i : i + 500]
            for job_id in chunk:
                if r.call("EXISTS", "{sm}:job:" + job_id) == 0:
                    lost += 1
    finally:
        r.close()
    return {"acknowledged": len(acked), "acknowledged_before_kill": killed_at, "lost": lost, "load_seconds": seconds}


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None
