#!/usr/bin/env python3
"""Cluster measurements for docs/PERFORMANCE.md and docs/CLUSTER.md, against processes already running
(scripts/cluster-bench.sh starts them). Every loop is bounded in count and time; traffic goes to 127.0.0.1.

  cluster_bench.py matchmake HTTP_BASE REQUESTS THREADS
      POST /matchmake {"type":"arena"} REQUESTS times from THREADS threads, one connection per request:
      requests per second and latency p50/p99 (connect to last byte).
  cluster_bench.py chat WS_A WS_B SPEAKERS SECONDS
      SPEAKERS players on process A (one room each) say a timestamped chat line every 1.1 s; one player on
      process B, in another room, hears them through the backplane: latency p50/p99 from the line's
      timestamp to its arrival (one machine, one clock), and how many were heard.
  cluster_bench.py rooms WS_BASE ROOMS SECONDS PID REDIS_PID
      opens ROOMS rooms on one process (a spectator in each), then samples the CPU of each of PID's
      threads over SECONDS: the share of one core the cluster's threads (redis, backplane-*) use, and
      redis-server's (the heartbeats of every process, here two, one of them with the rooms).

The client speaks the wire format of docs/PROTOCOL.md directly (Hello, Watch, Send, Message), nothing more.
"""

import asyncio
import http.client
import json
import os
import statistics
import sys
import threading
import time

import websockets

PROTOCOL_VERSION = 4


def varint(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfb" + n.to_bytes(2, "little")
    if n < 1 << 32:
        return b"\xfc" + n.to_bytes(4, "little")
    return b"\xfd" + n.to_bytes(8, "little")


def read_varint(b, i):
    first = b[i]
    if first < 251:
        return first, i + 1
    width = {0xFB: 2, 0xFC: 4, 0xFD: 8}[first]
    return int.from_bytes(b[i + 1 : i + 1 + width], "little"), i + 1 + width


def string(s):
    raw = s.encode()
    return varint(len(raw)) + raw


def hello(name):
    return varint(0) + varint(PROTOCOL_VERSION) + string(name) + string("") + b"\x00"


def watch():
    return varint(3) + varint(PROTOCOL_VERSION) + string("")


def send(text):
    return varint(4) + string(text)


def message_body(frame):
    """The body of a `Message` (tag 6), or None for any other message."""
    tag, i = read_varint(frame, 0)
    if tag != 6:
        return None
    n, i = read_varint(frame, i)
    return frame[i : i + n]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def matchmake(base, requests, threads):
    host, port = base.replace("http://", "").rstrip("/").split(":")
    body = json.dumps({"type": "arena"})
    latencies, failures, lock = [], {}, threading.Lock()
    per_thread = requests // threads

    def worker():
        mine, bad = [], {}
        for _ in range(per_thread):
            t0 = time.perf_counter()
            con = http.client.HTTPConnection(host, int(port), timeout=10)
            con.request("POST", "/matchmake", body)
            answer = con.getresponse()
            answer.read()
            con.close()
            if answer.status == 200:
                mine.append(time.perf_counter() - t0)
            else:
                bad[answer.status] = bad.get(answer.status, 0) + 1
        with lock:
            latencies.extend(mine)
            for k, v in bad.items():
                failures[k] = failures.get(k, 0) + v

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "requests": per_thread * threads,
                "threads": threads,
                "ok": len(latencies),
                "failed": failures,
                "per_s": round(len(latencies) / wall),
                "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
            }
        )
    )


async def listen(ws_b, seconds, ready, results):
    """One player on process B: the latency of every timestamped chat line it hears."""
    heard = []
    deadline = time.monotonic() + seconds
    async with websockets.connect(f"{ws_b}/ws/listen-b", max_size=None) as ws:
        await ws.recv()  # Welcome
        await ws.send(hello("listener"))
        ready.set()
        while time.monotonic() < deadline:
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=1)
            except asyncio.TimeoutError:
                continue
            body = message_body(frame)
            if body and b": t" in body:
                sent_ns = int(body.split(b": t", 1)[1])
                heard.append((time.time_ns() - sent_ns) / 1e6)
    results.put(heard)


async def speak(ws_a, speakers, seconds):
    deadline = time.monotonic() + seconds

    async def speaker(i):
        async with websockets.connect(f"{ws_a}/ws/speak-{i}", max_size=None) as ws:
            await ws.recv()
            await ws.send(hello(f"s{i}"))
            await asyncio.sleep(i * 1.1 / speakers)  # spread the lines over the second
            said = 0
            while time.monotonic() < deadline:
                await ws.send(send(f"t{time.time_ns()}"))
                said += 1
                # Read what arrives (updates, chat) so the server never sees a slow consumer.
                stop = time.monotonic() + 1.1
                while time.monotonic() < stop:
                    try:
                        await asyncio.wait_for(ws.recv(), timeout=stop - time.monotonic())
                    except asyncio.TimeoutError:
                        break
            return said

    return sum(await asyncio.gather(*(speaker(i) for i in range(speakers))))


def chat(ws_a, ws_b, speakers, seconds):
    """The listener runs in a process of its own, so the speakers' work never delays what it measures."""
    import multiprocessing

    ready, results = multiprocessing.Event(), multiprocessing.Queue()
    listener = multiprocessing.Process(
        target=lambda: asyncio.run(listen(ws_b, seconds + 3, ready, results))
    )
    listener.start()
    if not ready.wait(30):
        sys.exit("the listener did not start")
    said = asyncio.run(speak(ws_a, speakers, seconds))
    heard = results.get(timeout=60)
    listener.join(30)
    print(
        json.dumps(
            {
                "speakers": speakers,
                "said": said,
                "heard": len(heard),
                "p50_ms": round(percentile(heard, 0.50), 2) if heard else None,
                "p99_ms": round(percentile(heard, 0.99), 2) if heard else None,
                "max_ms": round(max(heard), 2) if heard else None,
            }
        )
    )


def thread_ticks(pid):
    """CPU ticks (user + system) of each of pid's threads, by thread name."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[name] = ticks.get(name, 0) + int(fields[11]) + int(fields[12])
    return ticks


async def rooms(ws_base, count, seconds, pid, redis_pid):
    conns = []
    for i in range(count):
        ws = await websockets.connect(f"{ws_base}/ws/cost-{i}", max_size=None)
        await ws.recv()
        await ws.send(watch())
        conns.append(ws)

    async def drain(ws):
        try:
            while True:
                await ws.recv()
        except Exception:
            pass

    readers = [asyncio.create_task(drain(ws)) for ws in conns]
    await asyncio.sleep(3)  # every room claimed, heartbeats carrying all of them
    before, redis_before, t0 = thread_ticks(pid), thread_ticks(redis_pid), time.monotonic()
    await asyncio.sleep(seconds)
    after, redis_after, wall = thread_ticks(pid), thread_ticks(redis_pid), time.monotonic() - t0
    hz = os.sysconf("SC_CLK_TCK")
    share = {name: round((after[name] - before.get(name, 0)) / hz / wall, 4) for name in after}
    redis_share = sum(redis_after.values()) - sum(redis_before.values())
    share["redis-server (all its threads)"] = round(redis_share / hz / wall, 4)
    print(json.dumps({"rooms": count, "seconds": round(wall, 1), "cpu_share_of_one_core": share}))
    for ws in conns:
        await ws.close()
    for r in readers:
        r.cancel()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "matchmake":
        matchmake(args[0], int(args[1]), int(args[2]))
    elif cmd == "chat":
        chat(args[0], args[1], int(args[2]), float(args[3]))
    elif cmd == "rooms":
        asyncio.run(rooms(args[0], int(args[1]), float(args[2]), int(args[3]), int(args[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
