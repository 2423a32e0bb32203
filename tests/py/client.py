#!/usr/bin/env python3
"""An independent tickcast client, written from docs/PROTOCOL.md alone (it shares no code with the server).

It joins as a player, mirrors the world from Full and Delta, checks every Checksum, steers, and checks
that its inputs are acknowledged. Prints a JSON summary on stdout; exits non-zero on any mismatch.

usage: client.py WS_URL [CHECKSUMS_TO_VERIFY]
"""

import asyncio
import json
import sys

import websockets

PROTOCOL_VERSION = 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("message ends early")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def fixed(self, n: int) -> int:
        if self.pos + n > len(self.data):
            raise ValueError("message ends early")
        v = int.from_bytes(self.data[self.pos : self.pos + n], "little")
        self.pos += n
        return v

    def varint(self) -> int:
        b = self.byte()
        if b < 251:
            return b
        return self.fixed({251: 2, 252: 4, 253: 8, 254: 16}[b])

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def done(self):
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} trailing bytes")


def varint(v: int) -> bytes:
    if v < 251:
        return bytes([v])
    if v < 1 << 16:
        return b"\xfb" + v.to_bytes(2, "little")
    if v < 1 << 32:
        return b"\xfc" + v.to_bytes(4, "little")
    return b"\xfd" + v.to_bytes(8, "little")


def state(r: Reader):
    return (r.varint(), r.varint(), r.varint())  # x, y, seq


def encode_state(s) -> bytes:
    return varint(s[0]) + varint(s[1]) + varint(s[2])


def id_list(r: Reader, item):
    out, prev = [], 0
    for _ in range(r.varint()):
        prev += r.varint()
        out.append((prev, item(r)))
    return out


def decode(data: bytes):
    r = Reader(data)
    tag = r.varint()
    if tag == 0:
        msg = ("Welcome", dict(protocol=r.varint(), tick_hz=r.varint(), tick=r.varint(), connection_id=r.varint()))
    elif tag == 1:
        msg = ("Joined", dict(entity=r.varint()))
    elif tag == 2:
        msg = ("Full", dict(tick=r.varint(), entities=id_list(r, state)))
    elif tag == 3:
        base, tick = r.varint(), r.varint()
        despawned, prev = [], 0
        for _ in range(r.varint()):
            prev += r.varint()
            despawned.append(prev)
        sets = id_list(r, state)
        changed = id_list(r, lambda r: (r.zigzag(), r.zigzag(), r.varint()))
        msg = ("Delta", dict(base=base, tick=tick, despawned=despawned, set=sets, changed=changed))
    elif tag == 4:
        msg = ("Checksum", dict(tick=r.varint(), hash=r.varint()))
    elif tag == 5:
        msg = ("Pong", dict(nonce=r.varint(), tick=r.varint()))
    else:
        raise ValueError(f"unknown tag {tag}")
    r.done()
    return msg


class Mirror:
    def __init__(self):
        self.entities = {}
        self.tick = None
        self.verified = 0
        self.coalesced = 0

    def apply(self, kind, m):
        if kind == "Full":
            self.entities = dict(m["entities"])
            self.tick = m["tick"]
        elif kind == "Delta":
            if m["base"] != self.tick:
                raise ValueError(f"delta from {m['base']} but mirror holds {self.tick}")
            for i in m["despawned"]:
                self.entities.pop(i, None)
            self.entities.update(m["set"])
            for i, (dx, dy, dseq) in m["changed"]:
                x, y, seq = self.entities[i]
                self.entities[i] = ((x + dx) & 0xFFFF, (y + dy) & 0xFFFF, (seq + dseq) & 0xFFFFFFFF)
            if m["tick"] > m["base"] + 1:
                self.coalesced += 1
            self.tick = m["tick"]
        elif kind == "Checksum":
            if m["tick"] != self.tick:
                raise ValueError(f"checksum for {m['tick']} but mirror holds {self.tick}")
            if self.hash() != m["hash"]:
                raise ValueError(f"tick {self.tick}: checksum {self.hash():#x} != server {m['hash']:#x}")
            self.verified += 1

    def hash(self) -> int:
        h = FNV_OFFSET
        for i in sorted(self.entities):
            for b in varint(i) + encode_state(self.entities[i]):
                h = ((h ^ b) * FNV_PRIME) & MASK64
        return h


async def run(url: str, checksums: int):
    mirror = Mirror()
    async with websockets.connect(url, max_size=1 << 20) as ws:
        kind, welcome = decode(await ws.recv())
        assert kind == "Welcome" and welcome["protocol"] == PROTOCOL_VERSION, (kind, welcome)
        name = "py"
        await ws.send(bytes([0]) + varint(PROTOCOL_VERSION) + varint(len(name)) + name.encode())
        entity, seq, acked = None, 0, 0
        while mirror.verified < checksums or acked == 0:
            kind, m = decode(await asyncio.wait_for(ws.recv(), 30))
            if kind == "Joined":
                entity = m["entity"]
                seq = 1
                # Input: tag 1, seq, dx = 1, dy = 1 (raw i8 bytes).
                await ws.send(bytes([1]) + varint(seq) + bytes([1, 1]))
            mirror.apply(kind, m)
            if entity is not None and entity in mirror.entities:
                acked = mirror.entities[entity][2]
        await ws.send(bytes([2]) + varint(1234))
        while True:
            kind, m = decode(await asyncio.wait_for(ws.recv(), 30))
            mirror.apply(kind, m)
            if kind == "Pong":
                assert m["nonce"] == 1234, m
                break
    return dict(
        welcome=welcome,
        entity=entity,
        acked_seq=acked,
        checksums_verified=mirror.verified,
        entities=len(mirror.entities),
        tick=mirror.tick,
        coalesced=mirror.coalesced,
    )


if __name__ == "__main__":
    url = sys.argv[1]
    checksums = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(json.dumps(asyncio.run(run(url, checksums))))
