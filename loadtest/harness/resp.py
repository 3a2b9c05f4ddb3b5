"""A minimal synchronous Redis (RESP2) client: enough to read job hashes,
XINFO, INFO and XLEN in pipelines without any third-party package.

Not a general client: no pub/sub, no cluster, no TLS.
"""

import socket


class RedisError(Exception):
    """An error reply from Redis."""


class Redis:
    def __init__(self, host="127.0.0.1", port=6379, timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def _encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2 :]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP line {line!r}")

    def call(self, *args):
        self.sock.sendall(self._encode(args))
        reply = self._reply()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def pipeline(self, commands, chunk=1000):
        """Runs many commands, `chunk` at a time; error replies are returned, not raised."""
        out = []
        for i in range(0, len(commands), chunk):
            part = commands[i : i + chunk]
            self.sock.sendall(b"".join(self._encode(c) for c in part))
            out.extend(self._reply() for _ in part)
        return out

    def scan_keys(self, pattern, count=1000):
        cursor, keys = "0", []
        while True:
            cursor, batch = self.call("SCAN", cursor, "MATCH", pattern, "COUNT", count)
            keys.extend(batch)
            if cursor == "0":
                return keys

    def info(self, section=None):
        raw = self.call("INFO", section) if section else self.call("INFO")
        out = {}
        for line in raw.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def command_calls(self):
        """{command: calls} from INFO commandstats."""
        calls = {}
        for k, v in self.info("commandstats").items():
            if k.startswith("cmdstat_"):
                fields = dict(p.split("=", 1) for p in v.split(","))
                calls[k[len("cmdstat_") :]] = int(fields.get("calls", 0))
        return calls


def pairs(flat):
    """['a', '1', 'b', '2'] -> {'a': '1', 'b': '2'}."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}
