"""The workspace stand-in of the `gateway` group: one small asyncio server,
the same upstream for the direct, nginx and gateway paths. Run as its own
process (`python3 echo_upstream.py HOST PORT`), so its CPU is apart from
the harness's.

- `GET /healthz` and any other path: 200 with a 64-byte body (keep-alive
  for HTTP/1.1, closed after the answer for HTTP/1.0 or `Connection: close`);
- `GET /big`: `BIG_MB` MiB (argument 3, default 256) streamed in 1 MiB
  writes with flow control;
- a WebSocket upgrade on any path: every text/binary frame echoed back,
  ping answered with pong, close echoed.

Standard library only; not a general HTTP server (no request bodies).
"""

import asyncio
import base64
import hashlib
import sys

SMALL = b"x" * 63 + b"\n"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
CHUNK = b"\0" * (1 << 20)


def small_response(keep_alive):
    conn = b"keep-alive" if keep_alive else b"close"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n"
            % (len(SMALL), conn)) + SMALL


class Upstream(asyncio.Protocol):
    big_mb = 256

    def connection_made(self, transport):
        self.t = transport
        self.buf = b""
        self.ws = False
        self.paused = False
        self.left = 0  # big body chunks still to write
        self.close_after = False

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self._pump()

    def _pump(self):
        while self.left > 0 and not self.paused:
            self.left -= 1
            self.t.write(CHUNK)
        if self.left == 0 and self.close_after:
            self.t.close()

    def data_received(self, data):
        self.buf += data
        if self.ws:
            self._frames()
            return
        while not self.ws and self.left == 0:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head, self.buf = self.buf[:i], self.buf[i + 4 :]
            line, _, rest = head.partition(b"\r\n")
            parts = line.split(b" ")
            if len(parts) < 3:
                self.t.close()
                return
            path, version = parts[1], parts[2]
            headers = {}
            for h in rest.split(b"\r\n"):
                k, _, v = h.partition(b":")
                headers[k.strip().lower()] = v.strip()
            conn = headers.get(b"connection", b"").lower()
            keep = (version == b"HTTP/1.1" and b"close" not in conn) or b"keep-alive" in conn
            if headers.get(b"upgrade", b"").lower() == b"websocket":
                key = headers.get(b"sec-websocket-key", b"")
                accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
                self.t.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
                self.ws = True
                self._frames()
                return
            if path.startswith(b"/big"):
                size = self.big_mb << 20
                self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n"
                             b"Connection: %s\r\n\r\n" % (size, b"keep-alive" if keep else b"close"))
                self.left = self.big_mb
                self.close_after = not keep
                self._pump()
                continue
            self.t.write(small_response(keep))
            if not keep:
                self.t.close()
                return

    def _frames(self):
        while True:
            b = self.buf
            if len(b) < 2:
                return
            opcode = b[0] & 0x0F
            masked = b[1] & 0x80
            n = b[1] & 0x7F
            off = 2
            if n == 126:
                if len(b) < 4:
                    return
                n = int.from_bytes(b[2:4], "big")
                off = 4
            elif n == 127:
                if len(b) < 10:
                    return
                n = int.from_bytes(b[2:10], "big")
                off = 10
            mask = b""
            if masked:
                if len(b) < off + 4:
                    return
                mask = b[off : off + 4]
                off += 4
            if len(b) < off + n:
                return
            payload = b[off : off + n]
            self.buf = b[off + n :]
            if masked:
                m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
                payload = (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big") if n else b""
            if opcode == 0x9:
                opcode = 0xA
            elif opcode == 0xA:
                continue
            if n < 126:
                hdr = bytes((0x80 | opcode, n))
            elif n < 65536:
                hdr = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
            else:
                hdr = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
            self.t.write(hdr + payload)
            if opcode == 0x8:
                self.t.close()
                return


async def main(host, port, big_mb):
    Upstream.big_mb = big_mb
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, host, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 256))
