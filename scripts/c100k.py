#!/usr/bin/env python3
"""C100k: many idle spectators on one tickcast process (docs/PERFORMANCE.md, "C100k").

Starts the release server on 127.0.0.1 (a quiet world: --npcs 0, --skip-unchanged-updates, so an idle
spectator is sent nothing after its first Full), then opens N WebSocket spectators from several loopback
source addresses (127.0.0.2, .3, ...: one address has about 28,000 ephemeral ports), each a raw socket
driven by one epoll loop here (no WebSocket library: HTTP upgrade, Welcome, Watch, then it answers the
server's pings and reads what comes). It reports:

- user-space memory per connection: the server's VmRSS after all N are open and a few seconds have
  passed, minus its VmRSS before the first connect, over N;
- time to accept them all (first connect to the last Full received), and connections per second;
- whether ticks stayed on time meanwhile: tick lateness and duration p99, ticks skipped, the timers
  phase, from /metrics deltas over the ramp and over the hold that follows;
- the server's CPU % during the hold.

Bounded: N connections (--connections, at most 200,000), at most --in-flight handshakes at once, the whole
run at most --timeout-s; everything started is stopped on exit. Needs root (or a high hard RLIMIT_NOFILE)
for the file descriptors: it raises its own limit, which the server inherits.

    python3 scripts/c100k.py target/release/tickcast --connections 100000
"""

import argparse
import json
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import time
import urllib.request

PROTOCOL_VERSION = 4
# `Watch { protocol: 4, ticket: "" }`: tag 3, protocol 4, empty ticket (docs/PROTOCOL.md).
WATCH = bytes([3, PROTOCOL_VERSION, 0])
CONNECTIONS_MAX = 200_000
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h
PORTS_PER_SOURCE = 25_000  # below the default ephemeral range's ~28,000, with room for other users


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (FIN set, masked with a zero key: masking is required, its key may be anything)."""
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload), 0, 0, 0, 0]) + payload


WATCH_FRAME = masked_frame(0x2, WATCH)


def frames(buf: bytearray):
    """Whole server frames at the front of `buf` (unmasked): yields (opcode, payload), removes them."""
    while len(buf) >= 2:
        n, at = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + n:
            return
        opcode, payload = buf[0] & 0x0F, bytes(buf[at:at + n])
        del buf[:at + n]
        yield opcode, payload


class Conn:
    __slots__ = ("sock", "state", "buf")

    def __init__(self, sock):
        self.sock, self.state, self.buf = sock, "connecting", bytearray()


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1))


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def counter(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def buckets(text: str, name: str, label: str = "") -> list:
    """[(le, cumulative count)] of histogram `name` (with `label`, like phase="timers")."""
    out = []
    for m in re.finditer(rf'^{re.escape(name)}_bucket\{{{re.escape(label)}{"," if label else ""}le="([^"]+)"\}} (\d+)$',
                         text, re.M):
        out.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), int(m.group(2))))
    return out


def p99_ms(before: str, after: str, name: str, label: str = ""):
    """The p99 upper bound (a bucket bound) of the histogram's delta between two scrapes, in ms."""
    a, b = buckets(before, name, label), buckets(after, name, label)
    if not b:
        return None
    delta = [(le, cb - ca) for (le, cb), (_, ca) in zip(b, a)]
    total = delta[-1][1]
    if total == 0:
        return None
    for le, c in delta:
        if c >= 0.99 * total:
            return le * 1000.0
    return None


def window(before: str, after: str) -> dict:
    d = lambda name: counter(after, name) - counter(before, name)
    timers_n = counter(after, 'tickcast_tick_phase_seconds_count{phase="timers"}') - \
        counter(before, 'tickcast_tick_phase_seconds_count{phase="timers"}')
    timers_s = counter(after, 'tickcast_tick_phase_seconds_sum{phase="timers"}') - \
        counter(before, 'tickcast_tick_phase_seconds_sum{phase="timers"}')
    return {
        "ticks": int(d("tickcast_ticks_total")),
        "ticks_skipped": int(d("tickcast_ticks_skipped_total")),
        "tick_lateness_p99_ms_at_most": p99_ms(before, after, "tickcast_tick_lateness_seconds"),
        "tick_duration_p99_ms_at_most": p99_ms(before, after, "tickcast_tick_duration_seconds"),
        "timers_mean_ms": timers_s / timers_n * 1000.0 if timers_n else None,
        "timers_p99_ms_at_most": p99_ms(before, after, "tickcast_tick_phase_seconds", 'phase="timers"'),
        "frames_out": int(d("tickcast_frames_out_total")),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--in-flight", type=int, default=512, help="handshakes under way at once")
    ap.add_argument("--hold-s", type=float, default=10.0, help="idle time after the last connect")
    ap.add_argument("--timeout-s", type=float, default=600.0, help="bound on the whole run")
    ap.add_argument("--tick-hz", type=int, default=20)
    ap.add_argument("--server-args", default="", help="more server flags, one word each")
    ap.add_argument("--server-cpu", type=int, help="pin the server to this cpu (and this script to the others)")
    ap.add_argument("--json", help="write the result here too")
    a = ap.parse_args()
    n = a.connections
    if not 1 <= n <= CONNECTIONS_MAX:
        sys.exit(f"--connections must be in 1..={CONNECTIONS_MAX}")
    deadline = time.monotonic() + a.timeout_s
    # One descriptor per connection on each side, plus a few hundred for everything else.
    fds = n + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(fds, soft), max(fds, hard)))
    except (ValueError, OSError) as e:
        sys.exit(f"c100k: {n} connections need RLIMIT_NOFILE {fds}, the hard limit is {hard} and cannot be "
                 f"raised here ({e}; raising it takes CAP_SYS_RESOURCE): run as root on a host, or fewer")
    sources = [f"127.0.0.{2 + i}" for i in range((n + PORTS_PER_SOURCE - 1) // PORTS_PER_SOURCE)]

    cmd = [a.binary, "--listen", "127.0.0.1:0", "--npcs", "0", "--tick-hz", str(a.tick_hz),
           "--skip-unchanged-updates", "--max-connections", str(n + 100), "--max-connections-per-ip", "0",
           "--accepts-per-ip-per-s", "0", "--room-max-spectators", str(n), "--peer-table-max", "65536",
           *a.server_args.split()]
    if a.server_cpu is not None:
        cmd = ["taskset", "-c", str(a.server_cpu), *cmd]
        others = set(range(os.cpu_count() or 1)) - {a.server_cpu}
        if others:
            os.sched_setaffinity(0, others)
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    conns = []
    sel = selectors.EpollSelector()
    try:
        line = server.stderr.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not m:
            sys.exit(f"no listening line from the server: {line!r}")
        port = int(m.group(1))
        time.sleep(1.0)
        rss_before = rss_kib(server.pid)
        request = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        m_ramp0 = scrape(port)
        t0 = time.monotonic()
        opened = established = failed = pongs = 0
        in_flight = 0

        def open_one(i):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            # The port is picked at connect() for the whole 4-tuple, not at bind() for the address alone
            # (which walks every port in use, TIME_WAIT ones of earlier runs included).
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((sources[i // PORTS_PER_SOURCE], 0))
            s.connect_ex(("127.0.0.1", port))
            c = Conn(s)
            conns.append(c)
            sel.register(s, selectors.EVENT_WRITE, c)

        def on_event(c, mask):
            nonlocal established, failed, in_flight, pongs
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, f"connect: {os.strerror(err)}")
                c.sock.sendall(request)
                c.state = "upgrading"
                sel.modify(c.sock, selectors.EVENT_READ, c)
                return
            data = c.sock.recv(65536)
            if not data:
                raise OSError("the server closed a connection")
            c.buf += data
            if c.state == "upgrading":
                end = c.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                if not c.buf.startswith(b"HTTP/1.1 101"):
                    raise OSError(f"upgrade refused: {bytes(c.buf[:60])!r}")
                del c.buf[:end + 4]
                c.state = "welcome"
            for opcode, payload in frames(c.buf):
                if opcode == 0x9:  # ping: the server's keepalive, answered as a browser would
                    c.sock.sendall(masked_frame(0xA, payload))
                    pongs += 1
                elif opcode == 0x8:
                    raise OSError(f"closed by the server: {payload[2:]!r}")
                elif opcode == 0x2 and c.state == "welcome":
                    if payload[:2] != bytes([0, PROTOCOL_VERSION]):
                        raise OSError(f"not a protocol {PROTOCOL_VERSION} Welcome: {payload[:8].hex(' ')}")
                    c.sock.sendall(WATCH_FRAME)
                    c.state = "watching"
                elif opcode == 0x2 and c.state == "watching":
                    # The first Full: the spectator is in. Later updates are only read.
                    c.state = "idle"
                    established += 1
                    in_flight -= 1
            if c.state == "idle":
                c.buf.clear()

        def pump(timeout):
            nonlocal failed, in_flight
            for key, mask in sel.select(timeout):
                try:
                    on_event(key.data, mask)
                except OSError as e:
                    failed += 1
                    if failed <= 5:
                        print(f"c100k: connection failed: {e}", file=sys.stderr)
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    if key.data.state != "idle":
                        in_flight -= 1

        while established + failed < n:
            if time.monotonic() > deadline:
                sys.exit(f"c100k: only {established} of {n} open within --timeout-s")
            while opened < n and in_flight < a.in_flight:
                open_one(opened)
                opened += 1
                in_flight += 1
            pump(0.05)
            if failed > 0:
                break
        ramp_s = time.monotonic() - t0
        m_ramp1 = scrape(port)
        cpu0, th0 = cpu_s(server.pid), time.monotonic()
        hold_until = time.monotonic() + a.hold_s
        while time.monotonic() < hold_until:
            pump(0.1)
        m_hold = scrape(port)
        cpu_pct = 100.0 * (cpu_s(server.pid) - cpu0) / (time.monotonic() - th0)
        rss_after, hwm = rss_kib(server.pid), rss_kib(server.pid, "VmHWM")
        open_ws = counter(m_hold, "tickcast_websockets_open")
        result = {
            "connections": n, "established": established, "failed": failed, "sources": len(sources),
            "websockets_open_at_end": int(open_ws),
            "rss_before_kib": rss_before, "rss_after_kib": rss_after, "rss_peak_kib": hwm,
            "bytes_per_connection": round((rss_after - rss_before) * 1024 / max(established, 1)),
            "accept_all_s": round(ramp_s, 2), "connections_per_s": round(established / ramp_s),
            "ramp": window(m_ramp0, m_ramp1), "hold": window(m_ramp1, m_hold),
            "hold_s": a.hold_s, "server_cpu_pct_in_hold": round(cpu_pct, 1), "pongs_sent": pongs,
            "server_args": " ".join(cmd[1:]),
        }
        print(json.dumps(result, indent=2))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(result, f, indent=2)
        if failed or established < n or open_ws < n:
            sys.exit(f"c100k: {failed} failed, {established} of {n} established, {int(open_ws)} open at the end")
    finally:
        for c in conns:
            c.sock.close()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
