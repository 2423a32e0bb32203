#!/usr/bin/env python3
"""What hostile clients cost a tickcast server: the loop's CPU, an honest spectator's updates and
`/healthz`, under each attack of docs/OPERATIONS.md's threat model, and the RSS of readers that never read.

Each scenario starts a fresh server (the binary given, on 127.0.0.1), connects one honest spectator that
reads every update and counts tick gaps, polls `/healthz` every 0.5 s, runs the attack for at most
--seconds, and prints one line: the server's CPU (percent of one core, user + system, over the attack),
the bucket of `tickcast_tick_lateness_seconds` under which 99 % of the attack's ticks started,
how the attacker ended (the close code and reason, and when), the spectator's updates and gaps, and the
health checks answered. Everything is bounded in time and count and stays on 127.0.0.1. Standard library
only, so it runs against any build (pass --old for a server that predates the per-turn budget flags).

  hostile_bench.py BINARY [--seconds 10] [--only NAME ...] [--old]
  hostile_bench.py BINARY --stalled 300 --npcs 30000 [--seconds 10] [--server-flags "..."]
"""

import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

PROTOCOL_VERSION = 2
WATCH = bytes([3, PROTOCOL_VERSION, 0])
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def frame(fin: bool, opcode: int, payload: bytes = b"") -> bytes:
    """A client frame, masked with the all-zero key (valid, and the payload goes as it is)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


def read_varint(b: bytes, i: int):
    v = b[i]
    if v < 251:
        return v, i + 1
    size = {0xFB: 2, 0xFC: 4, 0xFD: 8}[v]
    return int.from_bytes(b[i + 1 : i + 1 + size], "little"), i + 1 + size


class Frames:
    """Server frames (unmasked) from a socket: (opcode, payload) as they complete."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def head(self):
        self.sock.sendall(UPGRADE)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n")[0].decode())

    def next(self):
        while True:
            b = self.buf
            if len(b) >= 2:
                n, at = b[1] & 0x7F, 2
                if n == 126 and len(b) >= 4:
                    n, at = struct.unpack(">H", b[2:4])[0], 4
                elif n == 127 and len(b) >= 10:
                    n, at = struct.unpack(">Q", b[2:10])[0], 10
                if n < 126 or at > 2:
                    if len(b) >= at + n:
                        self.buf = b[at + n :]
                        return b[0] & 0x0F, b[at : at + n]
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk


def connect(port: int, rcvbuf: int = 0) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


class Spectator(threading.Thread):
    """Reads every update, counting them and the gaps in their ticks."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.updates, self.gaps, self.last, self.stop = port, 0, 0, None, False

    def run(self):
        s = connect(self.port)
        f = Frames(s)
        f.head()
        s.sendall(frame(True, 2, WATCH))
        while not self.stop:
            got = f.next()
            if got is None:
                return
            op, payload = got
            if op != 2 or payload[0] not in (2, 3):
                continue
            i = 1
            if payload[0] == 3:
                _, i = read_varint(payload, i)  # base
            tick, _ = read_varint(payload, i)
            if self.last is not None and tick != self.last + 1:
                self.gaps += 1
            self.last, self.updates = tick, self.updates + 1


class Health(threading.Thread):
    """GET /healthz every 0.5 s with a 1 s timeout."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.ok, self.failed, self.stop = port, 0, 0, False

    def run(self):
        while not self.stop:
            try:
                s = connect(self.port)
                s.settimeout(1)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
                ok = s.recv(64).startswith(b"HTTP/1.1 200")
                s.close()
            except OSError:
                ok = False
            self.ok += ok
            self.failed += not ok
            time.sleep(0.5)


class Attacker:
    """One raw connection: upgrades (and says Watch, unless `silent`), then writes what the attack says,
    while a thread reads for the server's close frame (answering pings, as a client library would)."""

    def __init__(self, port, silent=False):
        self.sock = connect(port)
        self.frames = Frames(self.sock)
        self.frames.head()
        if not silent:
            self.sock.sendall(frame(True, 2, WATCH))
        self.close, self.closed_at, self.started = None, None, time.monotonic()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while True:
                got = self.frames.next()
                if got is None:
                    return
                op, payload = got
                if op == 0x9:
                    self.sock.sendall(frame(True, 0xA, payload))
                if op == 0x8:
                    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.close = (code, payload[2:].decode(errors="replace"))
                    self.closed_at = time.monotonic() - self.started
                    return
        except OSError:
            return

    def flood(self, chunk, deadline):
        while time.monotonic() < deadline and self.close is None:
            try:
                self.sock.sendall(chunk)
            except OSError:
                return

    def outcome(self):
        if self.close is None:
            return "still open"
        return f'closed at {self.closed_at:.2f} s: {self.close[0]} "{self.close[1]}"'


def continuation_flood(port, deadline, n=2):
    chunk = frame(False, 0x0) * 10_000
    attackers = [Attacker(port) for _ in range(n)]
    for a in attackers:
        a.sock.sendall(frame(False, 0x2))
    threads = [threading.Thread(target=a.flood, args=(chunk, deadline)) for a in attackers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return attackers


def control_flood(opcode):
    def attack(port, deadline):
        a = Attacker(port)
        a.flood(frame(True, opcode, b"hi") * 10_000, deadline)
        return [a]

    return attack


def silent(port, deadline):
    a = Attacker(port, silent=True)
    while time.monotonic() < deadline and a.close is None:
        time.sleep(0.05)
    return [a]


def trickle(port, deadline):
    a = Attacker(port)
    body = frame(True, 0x2, bytes(4000))
    a.sock.sendall(body[:10])
    for byte in body[10:]:
        if time.monotonic() >= deadline or a.close is not None:
            break
        try:
            a.sock.sendall(bytes([byte]))
        except OSError:
            break
        time.sleep(0.5)
    return [a]


LIFTED = [
    "--fragments-per-message-max", "4294967295", "--messages-per-s", "1e12", "--message-burst", "1e12",
    "--frame-timeout-ms", "600000", "--idle-timeout-ms", "600000",
]
# name, attack, extra server flags (new servers only), what it shows
SCENARIOS = [
    ("continuations x2", continuation_flood, [], "two endless fragmented messages (defaults)"),
    ("continuations x2, caps lifted", continuation_flood, LIFTED, "only the per-turn budget left"),
    ("pong flood", control_flood(0xA), [], "unsolicited pongs (defaults)"),
    ("pong flood, rate lifted", control_flood(0xA), LIFTED, "only the per-turn budget left"),
    ("ping flood", control_flood(0x9), [], "pings, each answered (defaults)"),
    ("silent", silent, [], "upgrades, answers pings, never says Hello"),
    ("trickle", trickle, [], "a 4,000-byte frame, a byte every 0.5 s"),
]


def start(binary, flags, npcs=16):
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--npcs", str(npcs), *flags],
        stderr=subprocess.PIPE, text=True,
    )
    line = proc.stderr.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"server did not start: {line}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, int(m.group(1))


def lateness_buckets(port):
    """The tick lateness histogram from /metrics: [(upper bound in s, cumulative count)]."""
    s = connect(port)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
    body = b""
    while chunk := s.recv(65536):
        body += chunk
    s.close()
    found = re.findall(rb'tickcast_tick_lateness_seconds_bucket\{le="([^"]+)"\} (\d+)', body)
    return [(float(le), int(n)) for le, n in found]


def p99_bound(before, after):
    """The bucket bound under which 99 % of the ticks between two readings started."""
    deltas = [(le, b - a) for (le, b), (_, a) in zip(after, before)]
    total = deltas[-1][1]
    for le, n in deltas:
        if n >= 0.99 * total:
            return le
    return float("inf")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(field + r":\s+(\d+) kB", f.read()).group(1))


def scenario(binary, name, attack, flags, seconds):
    proc, port = start(binary, flags)
    try:
        spectator, health = Spectator(port), Health(port)
        spectator.start()
        health.start()
        time.sleep(1)
        late0 = lateness_buckets(port)
        cpu0, t0, updates0, gaps0 = cpu_s(proc.pid), time.monotonic(), spectator.updates, spectator.gaps
        attackers = attack(port, t0 + seconds)
        # The attack may end early (the server closed it); measure the whole window either way.
        while time.monotonic() < t0 + seconds:
            time.sleep(0.05)
        cpu = (cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0) * 100
        spectator.stop = health.stop = True
        late = p99_bound(late0, lateness_buckets(port)) * 1000
        outcomes = "; ".join(sorted({a.outcome() for a in attackers}))
        print(
            f"| {name} | {cpu:.0f} % | {late:g} ms | {outcomes} | {spectator.updates - updates0} updates, "
            f"{spectator.gaps - gaps0} gaps | {health.ok} ok, {health.failed} failed |",
            flush=True,
        )
    finally:
        proc.kill()
        proc.wait()


def stalled(binary, n, npcs, seconds, flags):
    """`n` spectators over 4 KB receive buffers that never read, in a world of `npcs` wanderers."""
    proc, port = start(binary, ["--max-entities", str(npcs + 1000), *flags], npcs)
    try:
        spectator = Spectator(port)
        spectator.start()
        time.sleep(2)
        before = rss_kib(proc.pid)
        socks = []
        for _ in range(n):
            s = connect(port, rcvbuf=4096)
            s.sendall(UPGRADE + frame(True, 2, WATCH))
            socks.append(s)
        peak, t0 = before, time.monotonic()
        while time.monotonic() < t0 + seconds:
            peak = max(peak, rss_kib(proc.pid))
            time.sleep(0.1)
        for s in socks:
            s.close()
        time.sleep(3)
        after = rss_kib(proc.pid)
        spectator.stop = True
        print(
            f"{n} stalled spectators, {npcs} entities, {seconds} s: RSS before {before / 1024:.1f} MiB, "
            f"peak {peak / 1024:.1f} MiB, 3 s after they closed {after / 1024:.1f} MiB; the honest "
            f"spectator got {spectator.updates} updates, {spectator.gaps} gaps",
            flush=True,
        )
    finally:
        proc.kill()
        proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--only", nargs="*")
    p.add_argument("--old", action="store_true", help="a server without the budget flags: skip lifted runs")
    p.add_argument("--stalled", type=int, default=0)
    p.add_argument("--npcs", type=int, default=30000)
    p.add_argument("--server-flags", default="", help="extra server flags, one string")
    a = p.parse_args()
    a.flags = a.server_flags.split()
    if a.stalled:
        return stalled(a.binary, a.stalled, a.npcs, a.seconds, a.flags)
    print("| attack | server CPU | tick lateness p99 | attacker | honest spectator | /healthz |")
    print("|---|---|---|---|---|---|")
    for name, attack, flags, _ in SCENARIOS:
        if a.only and name not in a.only:
            continue
        if a.old and flags:
            continue
        scenario(a.binary, name, attack, flags + a.flags, a.seconds)


if __name__ == "__main__":
    sys.exit(main())
