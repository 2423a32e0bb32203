#!/usr/bin/env python3
"""Measures the server's user-space memory per idle WebSocket connection.

Starts `tickcast` (release) on 127.0.0.1 with a quiet world, reads its RSS, opens N spectator
connections (each sends `Watch`, protocol v4, since the server sends nothing past `Welcome` before it)
that read (so nothing queues), reads RSS again, and prints the difference per connection.
Bounded: N connections (default 2000), a few seconds. Usage: idle_memory.py BINARY [N]
"""

import asyncio
import os
import re
import subprocess
import sys

import websockets

PROTOCOL_VERSION = 4
# `Watch { protocol: 4, ticket: "" }`: tag 3, protocol 4, empty ticket (docs/PROTOCOL.md).
WATCH = bytes([3, PROTOCOL_VERSION, 0])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


async def hold(url: str, n: int, ready: asyncio.Event, stop: asyncio.Event, opened: list, updates: list):
    async def one():
        async with websockets.connect(url, max_size=1 << 20) as ws:
            welcome = await ws.recv()
            # Welcome: tag 0, then the protocol (a one-byte varint while it is below 251).
            if welcome[:2] != bytes([0, PROTOCOL_VERSION]):
                raise RuntimeError(f"not a protocol {PROTOCOL_VERSION} Welcome: {welcome.hex(' ')}")
            await ws.send(WATCH)
            opened.append(1)
            if len(opened) == n:
                ready.set()
            received = 0
            while not stop.is_set():
                try:
                    await asyncio.wait_for(ws.recv(), 0.5)
                    received += 1
                except asyncio.TimeoutError:
                    pass
            updates.append(received)

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one()))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await ready.wait()
    return tasks


async def main(binary: str, n: int):
    proc = subprocess.Popen(
        # Every connection comes from 127.0.0.1: the per-address limits are off for the measurement.
        [binary, "--listen", "127.0.0.1:0", "--npcs", "0", "--max-connections", str(n + 100),
         "--max-connections-per-ip", "0", "--accepts-per-ip-per-s", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    port = re.search(r"127\.0\.0\.1:(\d+)", line).group(1)
    url = f"ws://127.0.0.1:{port}/ws"
    await asyncio.sleep(0.5)
    before = rss_kib(proc.pid)
    ready, stop, opened, updates = asyncio.Event(), asyncio.Event(), [], []
    tasks = await hold(url, n, ready, stop, opened, updates)
    await asyncio.sleep(2)  # a few dozen ticks of (empty) updates to everyone
    after = rss_kib(proc.pid)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    proc.terminate()
    proc.wait(timeout=10)
    per = (after - before) * 1024 / n
    # Every spectator must have been sent the world (updates flow only after Watch).
    fewest = min(updates, default=0)
    print(
        f"connections={n} rss_before_kib={before} rss_after_kib={after} bytes_per_connection={per:.0f} "
        f"fewest_updates_per_connection={fewest}"
    )
    if len(updates) < n or fewest == 0:
        sys.exit(f"{n - len(updates)} connections failed, or some received no update")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000))
