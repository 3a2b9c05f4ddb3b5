"""The `gateway` group (issue 14): proxy overhead against nginx, wake on
access, gateway RSS with many sessions and WebSockets.

1. Overhead: one echo upstream (`echo_upstream.py`, HTTP + WebSocket),
   reached three ways in the same run, round by round in rotating order:
   directly, through nginx (Debian package, a private config on free
   ports: a plain reverse proxy with the WebSocket upgrade headers), and
   through the gateway (`WORKSPACE_AUTH=none`, one session hash in its
   Redis naming the upstream). Figures: small-GET latency at a fixed rate
   (k6) and at 64 connections (wrk), WebSocket echo round trip (a Python
   client, one message at a time), large-download throughput (curl).
2. Wake on access: api, worker, stand-in (`STANDIN_POD_READY_DELAY_MS=D`)
   and gateway; sessions created, their Services given the echo
   upstream's address (the simulated kubelet allocates no cluster IP),
   put to sleep; then per session a navigation (`Accept: text/html`,
   which enqueues the wake) and right after it a plain GET, which the
   gateway holds until the workspace is ready and then forwards: time
   from sending the navigation to the first byte of that proxied answer,
   minus D.
3. RSS: 10,000 session hashes, each requested once through the gateway,
   then 1,000 WebSockets held open through it.
"""

import base64
import http.client
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time

from . import tools
from .httpc import Api
from .procs import HarnessError, Proc, free_port, hwm_mb, port_open, rss_mb, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
PATHS = ("direct", "nginx", "gateway")
WS_MESSAGE = b"m" * 32


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def raise_nofile():
    """Children inherit this soft limit: 1,000 WebSockets need ~3,000 fds in all."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --------------------------------------------------------------------------
# processes: upstream, nginx
# --------------------------------------------------------------------------
def start_upstream(stack, host="127.0.0.1", port=None, big_mb=256, name="upstream"):
    port = port or free_port()
    p = Proc(name, [sys.executable, os.path.join(HERE, "echo_upstream.py"), host, str(port), str(big_mb)], {},
             stack.log(name))  # fmt: skip
    stack.others.append(p)
    wait_until(lambda: port_open(port, host), 20, f"{name} to listen", p)
    p.addr = f"{host}:{port}"
    p.port = port
    return p


def stop(stack, p):
    p.stop(grace=10)
    for group in (stack.gateways, stack.others):
        if p in group:
            group.remove(p)


def ensure_nginx():
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        tools.apt_install("nginx")
    return shutil.which("nginx") or "/usr/sbin/nginx"


NGINX_CONF = """\
# A plain reverse proxy to the echo upstream (written by loadtest/harness/gateway.py).
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
daemon off;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-tmp/body;
    proxy_temp_path {dir}/nginx-tmp/proxy;
    fastcgi_temp_path {dir}/nginx-tmp/fastcgi;
    uwsgi_temp_path {dir}/nginx-tmp/uwsgi;
    scgi_temp_path {dir}/nginx-tmp/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


def start_nginx(stack, upstream_addr, workers):
    binary = ensure_nginx()
    d = os.path.join(stack.dir, "nginx")
    os.makedirs(os.path.join(d, "nginx-tmp"), exist_ok=True)
    port = free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(workers=workers, dir=d, port=port, upstream=upstream_addr))
    p = Proc("nginx", [binary, "-p", d, "-c", conf, "-e", os.path.join(d, "nginx-error.log")], {}, stack.log("nginx"))
    stack.others.append(p)
    wait_until(lambda: port_open(port), 20, "nginx to listen", p)
    p.port = port
    p.version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
    return p


def pids_of_tree(pid):
    """pid and its children (nginx's workers), from /proc."""
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def cpu_of(pids):
    from .procs import cpu_seconds

    return sum(cpu_seconds(p) or 0 for p in pids)


# --------------------------------------------------------------------------
# sessions in the gateway's Redis
# --------------------------------------------------------------------------
def write_sessions(r, ids, upstream, status="running", desired="running"):
    now = int(time.time() * 1000)
    cmds = []
    for sid in ids:
        cmds.append(("HSET", "{sm}:session:" + sid, "user_id", f"{sid}@bench.example.com", "status", status,
                     "desired", desired, "generation", 1, "created_at_ms", now, "replicas", 1, "upstream", upstream))  # fmt: skip
    for x in r.pipeline(cmds):
        if not isinstance(x, int):
            raise HarnessError(f"HSET of a session failed: {x}")


# --------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------
def _read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise HarnessError(f"connection closed before the response head ({buf[:200]!r})")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


class WsClient:
    """A minimal blocking WebSocket client: masked frames out, one at a time."""

    def __init__(self, port, host_header, origin=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET /ws HTTP/1.1", f"Host: {host_header}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]  # fmt: skip
        if origin:
            lines.append(f"Origin: {origin}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head, self.buf = _read_head(self.sock)
        if not head.startswith(b"HTTP/1.1 101"):
            raise HarnessError(f"websocket upgrade refused: {head[:200]!r}")
        self.mask = os.urandom(4)

    def frame(self, payload):
        n = len(payload)
        masked = bytes(b ^ self.mask[i % 4] for i, b in enumerate(payload))
        return bytes((0x82, 0x80 | n)) + self.mask + masked

    def echo(self, payload):
        self.sock.sendall(self.frame(payload))
        want = 2 + len(payload)
        while len(self.buf) < want:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HarnessError("websocket closed mid-echo")
            self.buf += chunk
        got, self.buf = self.buf[:want], self.buf[want:]
        if got[2:] != payload:
            raise HarnessError(f"websocket echo mismatch: {got[:40]!r}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ws_rtt(port, host_header, origin, messages):
    c = WsClient(port, host_header, origin)
    try:
        for _ in range(50):  # warm-up
            c.echo(WS_MESSAGE)
        rtts = []
        for _ in range(messages):
            t0 = time.perf_counter_ns()
            c.echo(WS_MESSAGE)
            rtts.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        c.close()
    return {"messages": messages, "p50_ms": pct(rtts, 50), "p99_ms": pct(rtts, 99), "mean_ms": sum(rtts) / len(rtts)}


def download(port, host_header, big_mb):
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}",
            "-H", f"Host: {host_header}", f"http://127.0.0.1:{port}/big"]  # fmt: skip
    out = tools.sh(argv, timeout=300).stdout.split()
    code, size, speed = int(out[0]), int(float(out[1])), float(out[2])
    if code != 200 or size != big_mb << 20:
        raise HarnessError(f"download answered {code} with {size} bytes (want {big_mb << 20})")
    return {"bytes": size, "mb_per_s": speed / 1e6}


# --------------------------------------------------------------------------
# 1. overhead
# --------------------------------------------------------------------------
def overhead(ctx, stack, out):
    cfg = ctx.cfg
    up = start_upstream(stack, big_mb=cfg["gw_download_mb"])
    nginx = start_nginx(stack, up.addr, workers=os.cpu_count() or 2)
    gw = stack.start_gateway({"WORKSPACE_AUTH": "none"})
    sid = "benchgw0"
    r = stack.redis()
    try:
        write_sessions(r, [sid], up.addr)
    finally:
        r.close()
    gw_host = f"{sid}.ws.localhost:{gw.port}"
    targets = {
        "direct": (up.port, f"127.0.0.1:{up.port}", None),
        "nginx": (nginx.port, f"127.0.0.1:{nginx.port}", None),
        "gateway": (gw.port, gw_host, gw.pattern.replace("{uuid}", sid)),
    }
    # Every path answers the upstream's body before anything is measured.
    for name, (port, host, _) in targets.items():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/small", headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        if resp.status != 200 or len(body) != 64:
            raise HarnessError(f"{name}: GET /small answered {resp.status} ({body[:200]!r}); see {stack.dir}")
    out["nginx_version"] = nginx.version
    out["nginx_workers"] = os.cpu_count() or 2
    cpu_pids = {"nginx": pids_of_tree(nginx.pid), "gateway": [gw.pid], "upstream": [up.pid]}
    rounds = {k: {p: [] for p in PATHS} for k in ("k6", "wrk", "ws", "download")}
    for i in range(cfg["runs"]):
        order = PATHS[i % 3 :] + PATHS[: i % 3]
        tools.log(f"gateway overhead round {i + 1}/{cfg['runs']} ({', '.join(order)})")
        for p in order:
            port, host, _ = targets[p]
            k = tools.run_k6(ctx.k6, ctx.k6_script("gwget.js"), {
                "URL": f"http://127.0.0.1:{port}/small", "HOST": host, "RATE": cfg["gw_rate"],
                "DURATION": f"{cfg['gw_k6_seconds']}s"}, os.path.join(stack.dir, f"k6-{p}-{i}.json"))  # fmt: skip
            d = k["http_req_duration_ms"]
            rounds["k6"][p].append({"p50_ms": d.get("med"), "p99_ms": d.get("p(99)"), "ok": k["thresholds_ok"],
                                    "dropped": k["dropped_iterations"], "failed_checks": k["failed_checks"]})  # fmt: skip
        for p in order:
            port, host, _ = targets[p]
            c0 = {n: cpu_of(ps) for n, ps in cpu_pids.items()}
            w = tools.run_wrk(f"http://127.0.0.1:{port}/small", "get", ctx.wrk_script, cfg["seconds"],
                              connections=64, env={"WRK_PATH": "/small", "WRK_HOST": host})  # fmt: skip
            c1 = {n: cpu_of(ps) for n, ps in cpu_pids.items()}
            w["cpu_us_per_req"] = {n: (c1[n] - c0[n]) * 1e6 / max(1, w["requests"]) for n in c0}
            rounds["wrk"][p].append(w)
        for p in order:
            port, host, origin = targets[p]
            rounds["ws"][p].append(ws_rtt(port, host, origin, cfg["gw_ws_messages"]))
        for p in order:
            port, host, _ = targets[p]
            rounds["download"][p].append(download(port, host, cfg["gw_download_mb"]))
        tools.log("  " + "; ".join(
            f"{p}: k6 p50 {rounds['k6'][p][-1]['p50_ms']:.2f} p99 {rounds['k6'][p][-1]['p99_ms']:.2f}, wrk p50 "
            f"{rounds['wrk'][p][-1]['lat_p50_ms']:.2f} p99 {rounds['wrk'][p][-1]['lat_p99_ms']:.2f}, ws p50 "
            f"{rounds['ws'][p][-1]['p50_ms']:.3f}, {rounds['download'][p][-1]['mb_per_s']:.0f} MB/s" for p in PATHS))
    out["rounds"] = rounds

    def added(kind, field):
        """Median over rounds of (proxy - direct) within each round."""
        return {p: median([x[field] - d[field] for x, d in zip(rounds[kind][p], rounds[kind]["direct"])])
                for p in ("nginx", "gateway")}  # fmt: skip

    summary = {
        "k6_rate": cfg["gw_rate"],
        "k6": {p: {"p50_ms": median([x["p50_ms"] for x in rounds["k6"][p]]), "p99_ms": median([x["p99_ms"] for x in rounds["k6"][p]])} for p in PATHS},
        "k6_added_p50_ms": added("k6", "p50_ms"),
        "k6_added_p99_ms": added("k6", "p99_ms"),
        "wrk": {p: {"p50_ms": median([x["lat_p50_ms"] for x in rounds["wrk"][p]]), "p99_ms": median([x["lat_p99_ms"] for x in rounds["wrk"][p]]),
                    "rps": median([x["rps"] for x in rounds["wrk"][p]]), "non2xx": sum(x["non2xx"] for x in rounds["wrk"][p]),
                    "cpu_us_per_req": {n: median([x["cpu_us_per_req"][n] for x in rounds["wrk"][p]]) for n in cpu_pids}} for p in PATHS},
        "wrk_added_p50_ms": added("wrk", "lat_p50_ms"),
        "wrk_added_p99_ms": added("wrk", "lat_p99_ms"),
        "ws": {p: {"p50_ms": median([x["p50_ms"] for x in rounds["ws"][p]]), "p99_ms": median([x["p99_ms"] for x in rounds["ws"][p]])} for p in PATHS},
        "download_mb_per_s": {p: median([x["mb_per_s"] for x in rounds["download"][p]]) for p in PATHS},
        "download_mb": cfg["gw_download_mb"],
        "ws_messages": cfg["gw_ws_messages"],
    }  # fmt: skip
    out["overhead"] = summary
    for proc in (gw, nginx, up):
        stop(stack, proc)


# --------------------------------------------------------------------------
# 3. RSS with many sessions and WebSockets
# --------------------------------------------------------------------------
def rss(ctx, stack, out):
    cfg = ctx.cfg
    n_sessions, n_ws = cfg["gw_rss_sessions"], cfg["gw_rss_websockets"]
    up = start_upstream(stack, big_mb=1, name="upstream-rss")
    gw = stack.start_gateway({"WORKSPACE_AUTH": "none"}, name="gateway-rss")
    time.sleep(1.0)
    idle = rss_mb(gw.pid)
    ids = [f"rss-{i}" for i in range(n_sessions)]
    r = stack.redis()
    try:
        write_sessions(r, ids, up.addr)
    finally:
        r.close()
    errors = []

    def work(offset, threads):
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        try:
            for i in range(offset, len(ids), threads):
                host = f"{ids[i]}.ws.localhost:{gw.port}"
                try:
                    conn.request("GET", "/small", headers={"Host": host})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 200:
                        errors.append(f"{ids[i]}: {resp.status}")
                except (OSError, http.client.HTTPException) as e:
                    errors.append(f"{ids[i]}: {e}")
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        finally:
            conn.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=work, args=(k, 8)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise HarnessError(f"{len(errors)} of {n_sessions} session requests through the gateway failed, first: {errors[0]}")
    after_sessions = rss_mb(gw.pid)
    tools.log(f"gateway RSS: idle {idle:.1f} MB, after {n_sessions} sessions requested {after_sessions:.1f} MB "
              f"({time.monotonic() - t0:.1f} s)")
    clients = []
    try:
        for i in range(n_ws):
            sid = ids[(i * 7) % len(ids)]
            c = WsClient(gw.port, f"{sid}.ws.localhost:{gw.port}", gw.pattern.replace("{uuid}", sid))
            c.echo(WS_MESSAGE)
            clients.append(c)
        time.sleep(1.0)
        with_ws = rss_mb(gw.pid)
        # Every socket still echoes (none was dropped while the others opened).
        for c in clients[:: max(1, len(clients) // 50)]:
            c.echo(WS_MESSAGE)
        out["rss"] = {
            "sessions": n_sessions,
            "websockets": len(clients),
            "idle_mb": idle,
            "after_sessions_mb": after_sessions,
            "with_websockets_mb": with_ws,
            "hwm_mb": hwm_mb(gw.pid),
            "open_websockets_metric": _metric(gw.port, "session_gateway_open_websockets"),
        }
        tools.log(f"gateway RSS with {len(clients)} WebSockets open: {with_ws:.1f} MB (VmHWM {out['rss']['hwm_mb']:.1f} MB)")
    finally:
        for c in clients:
            c.close()


def _metric(port, name):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


# --------------------------------------------------------------------------
# 2. wake on access
# --------------------------------------------------------------------------
def patch_service(stack, sid, ip, port):
    """Gives session `sid`'s Service the echo upstream's address: the
    simulated kubelet allocates no cluster IP, so nothing else would."""
    body = json.dumps({"spec": {"clusterIP": ip, "clusterIPs": [ip],
                                "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}})  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", stack.standin_port, timeout=10)
    try:
        conn.request("PATCH", f"/api/v1/namespaces/workspaces/services/ws-{sid}", body=body,
                     headers={"Content-Type": "application/merge-patch+json", "Authorization": "Bearer x"})  # fmt: skip
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise HarnessError(f"PATCH of Service ws-{sid} answered {resp.status}: {data[:300]!r}")


def session_hash(stack, sid):
    r = stack.redis()
    try:
        flat = r.call("HGETALL", "{sm}:session:" + sid)
    finally:
        r.close()
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def wake_once(gw, sid, timeout):
    """Navigation, then a held GET: (ms to the first proxied byte, navigation status)."""
    host = f"{sid}.ws.localhost:{gw.port}"
    nav = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    held = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    try:
        t0 = time.perf_counter()
        nav.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n".encode())
        head, _ = _read_head(nav)
        nav_status = head.split(b" ", 2)[1].decode()
        held.sendall(f"GET /small HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nConnection: close\r\n\r\n".encode())
        first = held.recv(1)
        t1 = time.perf_counter()
        rest = first
        while True:
            chunk = held.recv(65536)
            if not chunk:
                break
            rest += chunk
    finally:
        nav.close()
        held.close()
    head, _, body = rest.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or body != b"x" * 63 + b"\n":
        raise HarnessError(f"held request for {sid} answered {head[:200]!r}")
    return (t1 - t0) * 1000, nav_status


def wake(ctx, stack, out):
    cfg = ctx.cfg
    d_ms, n = cfg["gw_wake_delay_ms"], cfg["gw_wakes"]
    stack.start_standin(ready_delay_ms=d_ms)
    stack.start_workers(1, concurrency=cfg["worker_concurrency"])
    # The worker re-applies each Service with port 8080 (keeping a cluster IP it did not set), so the
    # upstream listens on 8080 of a loopback address of its own, and that address is the Service's IP.
    up = None
    for attempt in range(8):
        ip = f"127.{77 + attempt}.{os.getpid() % 250 + 1}.{attempt + 1}"
        if not port_open(8080, ip):
            try:
                up = start_upstream(stack, host=ip, port=8080, big_mb=1, name=f"upstream-wake-{attempt}")
                break
            except HarnessError:
                continue
    if up is None:
        raise HarnessError("no loopback address with port 8080 free for the wake upstream")
    gw = stack.start_gateway({"WORKSPACE_AUTH": "none"}, name="gateway-wake")
    api = stack.start_api(extra_env={"WORKSPACE_URL_PATTERN": gw.pattern})
    client = Api(api.port)
    from .scenarios import wait_drained

    created = client.create_sessions(n, "gwwake", threads=4)
    uuids = [u for u, _ in created]
    wait_drained(stack, [j for _, j in created], cfg["setup_timeout"])
    for u in uuids:
        patch_service(stack, u, up.addr.rsplit(":", 1)[0], 8080)
    jobs = client.commands([(u, "sleep") for u in uuids], threads=4)
    wait_drained(stack, jobs, cfg["setup_timeout"])
    not_asleep = [u for u in uuids if session_hash(stack, u).get("status") != "sleeping"]
    if not_asleep:
        raise HarnessError(f"{len(not_asleep)} sessions not sleeping after the sleep jobs: {session_hash(stack, not_asleep[0])}")
    samples, statuses = [], {}
    for i, u in enumerate(uuids):
        ms, nav = wake_once(gw, u, timeout=cfg["gw_wake_timeout_s"])
        statuses[nav] = statuses.get(nav, 0) + 1
        samples.append(ms - d_ms)
        if i == 0:
            out["wake_upstream_recorded"] = session_hash(stack, u).get("upstream")
    out["wake"] = {
        "wakes": len(samples),
        "pod_ready_delay_ms": d_ms,
        "navigation_status": statuses,
        "minus_delay_ms": {"p50": pct(samples, 50), "p90": pct(samples, 90), "p99": pct(samples, 99),
                           "max": max(samples), "min": min(samples)},  # fmt: skip
        "samples_ms": [round(x, 1) for x in samples],
        "workers": 1,
        "k8s_poll_ms": stack.k8s_poll_ms,
    }
    tools.log(f"wake on access: (first proxied byte - {d_ms} ms) p50 {pct(samples, 50):.0f} ms, p99 {pct(samples, 99):.0f} ms "
              f"over {len(samples)} wakes")


def gateway_group(ctx):
    raise_nofile()
    out = {"auth": "WORKSPACE_AUTH=none"}
    ctx.results["gateway"] = out
    stack = ctx.new_stack("gateway")
    try:
        stack.start_redis()
        overhead(ctx, stack, out)
        rss(ctx, stack, out)
    finally:
        stack.stop()
    stack = ctx.new_stack("gateway-wake")
    try:
        stack.start_redis()
        wake(ctx, stack, out)
    finally:
        stack.stop()
