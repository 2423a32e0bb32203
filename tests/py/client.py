#!/usr/bin/env python3
"""An independent tickcast client, written from docs/PROTOCOL.md alone (it shares no code with the server).

Scenarios, each printing a JSON summary on stdout and exiting non-zero on any mismatch:

  client.py play WS_URL [CHECKSUMS]    join as a player, mirror the world from Full and Delta, check every
                                       Checksum, steer, and see the input acknowledged
  client.py watch WS_URL [CHECKSUMS]   check that nothing but Welcome comes before Watch, then spectate
  client.py resume WS_URL [CHECKSUMS]  join and move, cut the socket without a close frame, reconnect with
                                       the resume token and the last tick applied: the same player, a Delta
                                       from that tick onto the kept mirror, checksums still right, input
                                       numbering carried on, and a new token; cut again: the old token joins
                                       anew, the new one resumes; then a goodbye (1000) makes it useless
  client.py takeover WS_URL [CHECKSUMS] resume a player whose connection is still open: the old one is
                                       closed with 4005, the new one plays on from a copy of the mirror
  client.py rooms WS_URL CHECKSUMS ROOM_A ROOM_B
                                       two players in room A (WS_URL/ROOM_A), one in room B: each is welcomed
                                       into its room, mirrors only its room's world (its entities, its
                                       players' inputs) and matches its room's checksums; GET /rooms lists the
                                       players per room; WS_URL itself is the default room; a bad room name
                                       is refused at the upgrade
  client.py chat WS_URL CHECKSUMS ROOM_A ROOM_B [WS_URL_B]
                                       the arena's chat: two players in room A and a spectator in room B
                                       (on the process of WS_URL_B if given: another one of the cluster);
                                       a Send from one player comes back as the Message "<name>: <text>"
                                       to all three (every arena room hears it), the trimmed text; a
                                       second line in the same second is dropped; a long line is cut to
                                       200 bytes at a character boundary; the mirrors still match every
                                       checksum; a spectator's Send is closed 1008, a body over 1024 bytes
                                       1007
  client.py vectors PROTOCOL_MD        decode and encode every test vector of the document

WS_URL is the server's `/ws`: the default room, or the base of a room's URL (`/ws/ROOM`).
`client.py WS_URL [CHECKSUMS]` is `play`.

TLS: a `wss://` WS_URL speaks TLS (Python's `ssl`, certificate and host name checked), and the HTTP
requests of a scenario (GET /rooms) go to `https://` on the same host and port. The certificates trusted
are those of the PEM file named by the environment variable TICKCAST_CA_FILE (a test certificate, say),
else the system's default roots.
"""

import asyncio
import json
import os
import re
import socket
import ssl
import sys
import time
import urllib.parse
import urllib.request

import websockets

PROTOCOL_VERSION = 4
# Longest body of a Send (client to game) and of a Message (game to client), in bytes.
MESSAGE_BODY_MAX = 1024
TOKEN_LEN = 16
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1
# Generous bound on any single wait: a safety net against hangs, not a measurement.
WAIT_S = 30
# Bound on a whole scenario: every loop reads through `recv`, which gives up past it.
SCENARIO_S = 120
SCENARIO_DEADLINE = time.monotonic() + SCENARIO_S


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

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("message ends early")
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def fixed(self, n: int) -> int:
        return int.from_bytes(self.raw(n), "little")

    def varint(self) -> int:
        b = self.byte()
        if b < 251:
            return b
        if b not in (251, 252, 253):
            raise ValueError(f"bad varint marker {b:#x}")
        return self.fixed({251: 2, 252: 4, 253: 8}[b])

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def string(self) -> str:
        n = self.varint()
        return self.raw(n).decode("utf-8")  # strict: invalid UTF-8 raises

    def boolean(self) -> bool:
        b = self.byte()
        if b not in (0, 1):
            raise ValueError(f"bad bool byte {b:#x}")
        return b == 1

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


def string(s: str) -> bytes:
    b = s.encode()
    return varint(len(b)) + b


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
        msg = (
            "Welcome",
            dict(protocol=r.varint(), tick_hz=r.varint(), tick=r.varint(), connection_id=r.varint(), room=r.string()),
        )
    elif tag == 1:
        msg = ("Joined", dict(entity=r.varint(), resume_token=r.raw(TOKEN_LEN), resumed=r.boolean()))
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
    elif tag == 6:
        body = r.raw(r.varint())
        if len(body) > MESSAGE_BODY_MAX:
            raise ValueError(f"Message of {len(body)} bytes, over {MESSAGE_BODY_MAX}")
        msg = ("Message", dict(body=body))
    else:
        raise ValueError(f"unknown tag {tag}")
    r.done()
    return msg


# ---- client messages ----------------------------------------------------------------------------------


def hello(name: str, ticket: str = "", resume=None) -> bytes:
    """Hello; `resume` is None or (token, tick)."""
    out = varint(0) + varint(PROTOCOL_VERSION) + string(name) + string(ticket)
    if resume is None:
        return out + b"\x00"
    token, tick = resume
    assert len(token) == TOKEN_LEN
    return out + b"\x01" + bytes(token) + varint(tick)


def watch(ticket: str = "") -> bytes:
    return varint(3) + varint(PROTOCOL_VERSION) + string(ticket)


def input_msg(seq: int, dx: int, dy: int) -> bytes:
    # i8 values are raw two's complement bytes, not zigzag.
    return varint(1) + varint(seq) + bytes([dx & 0xFF, dy & 0xFF])


def ping(nonce: int) -> bytes:
    return varint(2) + varint(nonce)


def send_msg(body: bytes) -> bytes:
    """Send: bytes for the room's game (the arena's chat: a UTF-8 line), after Joined only."""
    return varint(4) + varint(len(body)) + bytes(body)


# ---- the mirror ---------------------------------------------------------------------------------------


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


async def recv(ws):
    left = SCENARIO_DEADLINE - time.monotonic()
    if left <= 0:
        raise AssertionError(f"the scenario ran past its {SCENARIO_S} s bound")
    return decode(await asyncio.wait_for(ws.recv(), min(WAIT_S, left)))


async def welcome(ws):
    kind, m = await recv(ws)
    assert kind == "Welcome" and m["protocol"] == PROTOCOL_VERSION, (kind, m)
    return m


def tls_context():
    """What a wss:// or https:// connection trusts: TICKCAST_CA_FILE's certificates, else the system's."""
    ca_file = os.environ.get("TICKCAST_CA_FILE") or None
    return ssl.create_default_context(cafile=ca_file)


async def connect(url: str):
    if url.startswith("wss://"):
        return await websockets.connect(url, max_size=1 << 20, ssl=tls_context())
    return await websockets.connect(url, max_size=1 << 20)


def room_url(base: str, room: str) -> str:
    """The URL of room `room`: the server's `/ws` with the room's name as one more path segment."""
    return base.rstrip("/") + "/" + room


def http_get_json(base: str, path: str):
    """GET `path` on the WebSocket URL's host and port (https:// for a wss:// URL), as JSON."""
    u = urllib.parse.urlsplit(base)
    if u.scheme == "wss":
        url, context = f"https://{u.netloc}{path}", tls_context()
    else:
        url, context = f"http://{u.netloc}{path}", None
    with urllib.request.urlopen(url, timeout=WAIT_S, context=context) as resp:
        assert resp.status == 200, resp.status
        return json.loads(resp.read())


# ---- scenarios ----------------------------------------------------------------------------------------


async def play(url: str, checksums: int):
    mirror = Mirror()
    async with await connect(url) as ws:
        welcomed = await welcome(ws)
        await ws.send(hello("py"))
        entity, acked, token = None, 0, None
        while mirror.verified < checksums or acked == 0:
            kind, m = await recv(ws)
            if kind == "Joined":
                assert entity is None and not m["resumed"], m
                entity, token = m["entity"], m["resume_token"]
                await ws.send(input_msg(1, 1, 1))
            mirror.apply(kind, m)
            if entity is not None and entity in mirror.entities:
                acked = mirror.entities[entity][2]
        await ws.send(ping(1234))
        while True:
            kind, m = await recv(ws)
            mirror.apply(kind, m)
            if kind == "Pong":
                assert m["nonce"] == 1234, m
                break
    return dict(
        welcome=welcomed,
        entity=entity,
        token_len=len(token),
        acked_seq=acked,
        checksums_verified=mirror.verified,
        entities=len(mirror.entities),
        tick=mirror.tick,
        coalesced=mirror.coalesced,
    )


async def spectate(url: str, checksums: int):
    """Nothing but Welcome until Watch; after it a Full, then updates and checksums, and no entity."""
    mirror = Mirror()
    async with await connect(url) as ws:
        welcomed = await welcome(ws)
        # Ten tick periods without a word: the document says nothing comes before Hello or Watch.
        quiet_s = 10 / welcomed["tick_hz"]
        try:
            early = decode(await asyncio.wait_for(ws.recv(), quiet_s))
            raise AssertionError(f"{early[0]} arrived before Watch: {early}")
        except asyncio.TimeoutError:
            pass
        await ws.send(watch())
        kind, m = await recv(ws)
        assert kind == "Full", (kind, m)
        first_tick = m["tick"]
        mirror.apply(kind, m)
        while mirror.verified < checksums:
            kind, m = await recv(ws)
            assert kind in ("Delta", "Full", "Checksum"), (kind, m)
            mirror.apply(kind, m)
    return dict(
        quiet_ms=round(quiet_s * 1000),
        first_update="Full",
        first_tick=first_tick,
        checksums_verified=mirror.verified,
        entities=len(mirror.entities),
    )


def cut(ws):
    """Drops a connection as a lost network would: no close frame, the TCP socket shut and closed."""
    sock = ws.transport.get_extra_info("socket")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    ws.transport.abort()


async def follow(ws, mirror, entity, until):
    """Applies updates until `until(mirror)` holds after a Checksum or update; returns own seqs seen."""
    seqs = []
    while True:
        kind, m = await recv(ws)
        assert kind in ("Delta", "Full", "Checksum", "Pong"), (kind, m)
        mirror.apply(kind, m)
        if kind in ("Delta", "Full") and entity in mirror.entities:
            seqs.append(mirror.entities[entity][2])
        if until(mirror):
            return seqs


async def resume(url: str, checksums: int):
    mirror = Mirror()
    # 1. Join, move (inputs 1..3), verify checksums.
    ws = await connect(url)
    first = await welcome(ws)
    await ws.send(hello("py-resume"))
    kind, joined = await recv(ws)
    assert kind == "Joined" and not joined["resumed"], (kind, joined)
    entity, token = joined["entity"], joined["resume_token"]
    for seq, (dx, dy) in enumerate([(1, 0), (0, 1), (-1, -1)], start=1):
        await ws.send(input_msg(seq, dx, dy))
        await follow(ws, mirror, entity, lambda m: entity in m.entities and m.entities[entity][2] >= seq)
    target = mirror.verified + checksums
    await follow(ws, mirror, entity, lambda m: m.verified >= target)
    verified_before = mirror.verified
    last_tick = mirror.tick
    own_before = mirror.entities[entity]
    assert own_before[2] == 3, own_before

    # 2. The network goes: no close frame. Whatever the server sent after `last_tick` is lost with it.
    cut(ws)

    # 3. A new connection takes the player back from the tick last applied, onto the kept mirror.
    async with await connect(url) as ws:
        second = await welcome(ws)
        assert second["connection_id"] != first["connection_id"], (first, second)
        await ws.send(hello("py-resume", resume=(token, last_tick)))
        kind, joined = await recv(ws)
        assert kind == "Joined", (kind, joined)
        assert joined["resumed"], joined
        assert joined["entity"] == entity, (joined, entity)
        # Every resume rotates the token: keep the new one, the old one resumes nothing any more.
        assert joined["resume_token"] != token, joined
        old_token, token = token, joined["resume_token"]
        resumed_entity = joined["entity"]
        kind, m = await recv(ws)
        assert kind == "Delta", f"first update after the resume is a {kind}, not a Delta: {m}"
        first_update = dict(kind=kind, base=m["base"], tick=m["tick"])
        assert m["base"] == last_tick, (m["base"], last_tick)
        mirror.apply(kind, m)
        assert mirror.entities[entity][2] == 3, mirror.entities[entity]
        # A stale seq is ignored; numbering carries on from 3.
        await ws.send(input_msg(2, 1, 1))
        await ws.send(input_msg(4, 0, -1))
        seqs = await follow(ws, mirror, entity, lambda m: m.entities[entity][2] >= 4)
        assert min(seqs) >= 3, seqs
        target = mirror.verified + checksums
        seqs += await follow(ws, mirror, entity, lambda m: m.verified >= target)
        acked_after = mirror.entities[entity][2]
        cut(ws)

    # 4. The token the first resume rotated away takes nothing back: a new player (which says goodbye).
    async with await connect(url) as ws:
        await welcome(ws)
        await ws.send(hello("py-stale", resume=(old_token, 0)))
        kind, joined = await recv(ws)
        assert kind == "Joined" and not joined["resumed"], (kind, joined)
        assert joined["entity"] != entity and joined["resume_token"] not in (old_token, token), joined
        resumed_with_old_token = joined["resumed"]

    # 5. The rotated token does take the player back, onto the kept mirror, and rotates again.
    async with await connect(url) as ws:
        await welcome(ws)
        await ws.send(hello("py-resume", resume=(token, mirror.tick)))
        kind, joined = await recv(ws)
        assert kind == "Joined" and joined["resumed"] and joined["entity"] == entity, (kind, joined)
        assert joined["resume_token"] not in (old_token, token), joined
        token = joined["resume_token"]
        resumed_with_new_token = joined["resumed"]
        target = mirror.verified + 1
        await follow(ws, mirror, entity, lambda m: m.verified >= target)
        # Goodbye: the async-with sends close 1000 and waits for the server's echo and the TCP close.

    # 6. After a goodbye the token resumes nothing: an ordinary join, a new player and a Full.
    async with await connect(url) as ws:
        await welcome(ws)
        await ws.send(hello("py-resume", resume=(token, mirror.tick)))
        kind, joined = await recv(ws)
        assert kind == "Joined" and not joined["resumed"], (kind, joined)
        assert joined["resume_token"] != token, joined
        kind, m = await recv(ws)
        assert kind == "Full", (kind, m)
        after_goodbye = dict(resumed=joined["resumed"], first_update=kind)

    return dict(
        entity=entity,
        resumed_entity=resumed_entity,
        resume_tick=last_tick,
        first_update_kind=first_update["kind"],
        first_update_base=first_update["base"],
        first_update_tick=first_update["tick"],
        checksums_before=verified_before,
        checksums_after=mirror.verified - verified_before,
        acked_seq_before=own_before[2],
        acked_seq_after=acked_after,
        min_seq_after_resume=min(seqs),
        resumed_with_old_token=resumed_with_old_token,
        resumed_with_new_token=resumed_with_new_token,
        resumed_after_goodbye=after_goodbye["resumed"],
        first_update_after_goodbye=after_goodbye["first_update"],
    )


async def takeover(url: str, checksums: int):
    mirror = Mirror()
    old = await connect(url)
    await welcome(old)
    await old.send(hello("py-takeover"))
    kind, joined = await recv(old)
    assert kind == "Joined" and not joined["resumed"], (kind, joined)
    entity, token = joined["entity"], joined["resume_token"]
    await follow(old, mirror, entity, lambda m: m.verified >= 1)
    tick = mirror.tick
    # The old connection stays open (and unread) while a second one takes the player over.
    async with await connect(url) as ws:
        await welcome(ws)
        await ws.send(hello("py-takeover", resume=(token, tick)))
        kind, joined = await recv(ws)
        assert kind == "Joined" and joined["resumed"] and joined["entity"] == entity, (kind, joined)
        kind, m = await recv(ws)
        assert kind == "Delta" and m["base"] == tick, (kind, m, tick)
        first_base = m["base"]
        mirror.apply(kind, m)
        target = mirror.verified + checksums
        await follow(ws, mirror, entity, lambda m: m.verified >= target)
    # What the old connection had queued is read through to its close frame.
    code = reason = None
    try:
        while True:
            await recv(old)
    except websockets.ConnectionClosed as e:
        code, reason = (e.rcvd.code, e.rcvd.reason) if e.rcvd else (None, None)
    return dict(
        entity=entity,
        resume_tick=tick,
        first_update_base=first_base,
        checksums_after=mirror.verified - 1,
        old_close_code=code,
        old_close_reason=reason,
    )


async def room_player(ws, name: str, inputs: int, checksums: int):
    """Plays in the room `ws` is in: Hello, then inputs 1..`inputs` (each waited for until the server
    applied it), then updates until `checksums` more checksums matched. Returns the entity and mirror."""
    mirror = Mirror()
    await ws.send(hello(name))
    kind, joined = await recv(ws)
    assert kind == "Joined" and not joined["resumed"], (kind, joined)
    entity = joined["entity"]
    await follow(ws, mirror, entity, lambda m: entity in m.entities)
    for seq in range(1, inputs + 1):
        await ws.send(input_msg(seq, 1, 0))
        await follow(ws, mirror, entity, lambda m: m.entities[entity][2] >= seq)
    target = mirror.verified + checksums
    await follow(ws, mirror, entity, lambda m: m.verified >= target)
    return entity, mirror


async def rooms(url: str, checksums: int, room_a: str, room_b: str):
    """Two players in room A, one in room B: each sees its own room alone."""
    # A bad name is refused at the upgrade, before any room exists.
    try:
        bad = await connect(room_url(url, "no.dots"))
        await bad.close()
        bad_name_status = 101
    except websockets.InvalidStatus as e:
        bad_name_status = e.response.status_code
    # `/ws` is the default room, and Welcome says its name.
    async with await connect(url) as ws:
        default_room = (await welcome(ws))["room"]

    socks, welcomes = {}, {}
    for who, room in (("a1", room_a), ("a2", room_a), ("b", room_b)):
        socks[who] = await connect(room_url(url, room))
        welcomes[who] = await welcome(socks[who])
        assert welcomes[who]["room"] == room, (who, room, welcomes[who])
    # The players inputs 3 (a1), none (a2) and 5 (b): each room's world shows its own players' seqs only.
    tasks = {
        who: asyncio.create_task(room_player(socks[who], f"py-{who}", n, checksums))
        for who, n in (("a1", 3), ("a2", 0), ("b", 5))
    }
    # While every player is in: what the server lists, read in a thread so the players keep reading.
    await asyncio.sleep(0)
    listing = None
    for _ in range(WAIT_S * 10):
        listing = await asyncio.to_thread(http_get_json, url, "/rooms")
        players = {r["name"]: r["players"] for r in listing["rooms"]}
        if players.get(room_a) == 2 and players.get(room_b) == 1:
            break
        await asyncio.sleep(0.1)
    done = {who: await asyncio.wait_for(t, WAIT_S * 2) for who, t in tasks.items()}
    (e_a1, m_a1), (e_a2, m_a2), (e_b, m_b) = done["a1"], done["a2"], done["b"]
    # A player's task ends once its own inputs are applied and its checksums matched, which may be
    # before the other player's last input reached its world: follow on until it shows there.
    await follow(socks["a2"], m_a2, e_a2, lambda m: e_a1 in m.entities and m.entities[e_a1][2] >= 3)
    for ws in socks.values():
        await ws.close()

    # Room A's players see each other; neither sees room B's player, whose inputs moved seq to 5.
    for m in (m_a1, m_a2):
        assert e_a1 in m.entities and e_a2 in m.entities, (e_a1, e_a2, sorted(m.entities))
        assert m.entities[e_a1][2] == 3 and m.entities[e_a2][2] == 0, (m.entities[e_a1], m.entities[e_a2])
    seqs_a = sorted({s[2] for s in m_a1.entities.values()} | {s[2] for s in m_a2.entities.values()})
    seqs_b = sorted({s[2] for s in m_b.entities.values()})
    assert 5 not in seqs_a and 3 not in seqs_b, (seqs_a, seqs_b)
    assert m_b.entities[e_b][2] == 5, m_b.entities[e_b]
    listed = {r["name"]: r for r in listing["rooms"]}
    return dict(
        bad_name_status=bad_name_status,
        default_room=default_room,
        room_a=welcomes["a1"]["room"],
        room_a_second=welcomes["a2"]["room"],
        room_b=welcomes["b"]["room"],
        welcome_tick_a=welcomes["a1"]["tick"],
        welcome_tick_b=welcomes["b"]["tick"],
        entities_a1=len(m_a1.entities),
        entities_a2=len(m_a2.entities),
        entities_b=len(m_b.entities),
        same_ids_a1_a2=sorted(m_a1.entities) == sorted(m_a2.entities),
        seqs_a=seqs_a,
        seqs_b=seqs_b,
        own_seq_a1=m_a1.entities[e_a1][2],
        own_seq_b=m_b.entities[e_b][2],
        checksums_a1=m_a1.verified,
        checksums_a2=m_a2.verified,
        checksums_b=m_b.verified,
        listed_players_a=listed.get(room_a, {}).get("players"),
        listed_players_b=listed.get(room_b, {}).get("players"),
        listed_type_a=listed.get(room_a, {}).get("type"),
    )


async def chat_reader(ws, mirror, until_line: str, lines):
    """Reads `ws` (updates into `mirror`, checksums checked) until the Message `until_line` arrives;
    returns `lines` with every Message line seen on the way appended, in order."""
    if until_line in lines:
        return lines
    deadline = time.monotonic() + WAIT_S
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {until_line!r} within {WAIT_S} s; heard {lines}")
        kind, m = await recv(ws)
        assert kind in ("Delta", "Full", "Checksum", "Pong", "Message"), (kind, m)
        if kind == "Message":
            lines.append(m["body"].decode("utf-8"))
            if lines[-1] == until_line:
                return lines
        else:
            mirror.apply(kind, m)


async def close_code_after(url: str, first: bytes, then: bytes):
    """A new connection sends `first` (Hello or Watch) and, once answered, `then`; returns the close
    code and reason the server ends it with."""
    async with await connect(url) as ws:
        await welcome(ws)
        await ws.send(first)
        kind, m = await recv(ws)
        assert kind in ("Joined", "Full"), (kind, m)
        await ws.send(then)
        try:
            for _ in range(10_000):
                await recv(ws)
            raise AssertionError("never closed")
        except websockets.ConnectionClosed as e:
            return (e.rcvd.code, e.rcvd.reason) if e.rcvd else (None, None)


def chat_cut(text: str) -> str:
    """What the arena keeps of a chat text: trimmed, at most 200 bytes, cut at a character boundary."""
    return text.strip().encode()[:200].decode("utf-8", errors="ignore")


async def chat(url: str, checksums: int, room_a: str, room_b: str, url_b: str = ""):
    """The arena's chat (docs: every arena room of the cluster hears `<name>: <text>`), from three
    connections; the spectator's on `url_b` (another process) when given."""
    url_b = url_b or url
    ann, bob = [await connect(room_url(url, room_a)) for _ in range(2)]
    eve = await connect(room_url(url_b, room_b))
    mirrors = {who: Mirror() for who in ("ann", "bob", "eve")}
    socks = dict(ann=ann, bob=bob, eve=eve)
    for ws in socks.values():
        await welcome(ws)
    for who, name in (("ann", "py-ann"), ("bob", "py-bob")):
        await socks[who].send(hello(name))
        kind, joined = await recv(socks[who])
        assert kind == "Joined", (kind, joined)
    await eve.send(watch())
    # Everyone holds the world before anything is said (a Message may come between any two updates).
    for who, ws in socks.items():
        while mirrors[who].tick is None:
            kind, m = await recv(ws)
            assert kind in ("Full", "Delta", "Checksum"), (who, kind, m)
            mirrors[who].apply(kind, m)

    # Two lines back to back: the second comes within the same second of game time and is dropped.
    first = "  hello from python  "
    await ann.send(send_msg(first.encode()))
    await ann.send(send_msg(b"too fast"))
    # A Pong after both: the server has read (and the game has heard) both lines. Ann's own line may
    # come before the Pong or after it (lines go out with the next tick).
    await ann.send(ping(77))
    early = dict(ann=[], bob=[], eve=[])
    while True:
        kind, m = await recv(ann)
        if kind == "Pong":
            break
        if kind == "Message":
            early["ann"].append(m["body"].decode("utf-8"))
        else:
            mirrors["ann"].apply(kind, m)
    # Bob's own line, long: cut to 200 bytes at a character boundary. It is said after Ann's two, so
    # each connection hears it after whatever Ann's lines became.
    long_text = "from bob " + "é" * 150
    await bob.send(send_msg(long_text.encode()))
    bob_line = "py-bob: " + chat_cut(long_text)
    heard = {who: await chat_reader(ws, mirrors[who], bob_line, early[who]) for who, ws in socks.items()}
    ann_line = "py-ann: " + chat_cut(first)
    for who, lines in heard.items():
        assert lines == [ann_line, bob_line], (who, lines)
    # The mirrors were not disturbed: each matches its room's next checksums.
    for who, ws in socks.items():
        target = mirrors[who].verified + checksums
        while mirrors[who].verified < target:
            kind, m = await recv(ws)
            assert kind in ("Delta", "Full", "Checksum", "Message"), (who, kind, m)
            if kind != "Message":
                mirrors[who].apply(kind, m)
    for ws in socks.values():
        await ws.close()

    # A spectator may not speak; a body over the protocol's limit is refused.
    spectator_send = await close_code_after(room_url(url_b, room_b), watch(), send_msg(b"hi"))
    too_long = await close_code_after(
        room_url(url, room_a), hello("py-long"), send_msg(b"x" * (MESSAGE_BODY_MAX + 1))
    )
    return dict(
        ann_heard=heard["ann"],
        bob_heard=heard["bob"],
        eve_heard=heard["eve"],
        ann_line=ann_line,
        bob_line_bytes=len(bob_line.encode()),
        lines_heard_by_each=min(len(lines) for lines in heard.values()),
        checksums_ann=mirrors["ann"].verified,
        checksums_bob=mirrors["bob"].verified,
        checksums_eve=mirrors["eve"].verified,
        spectator_send_close=spectator_send[0],
        spectator_send_reason=spectator_send[1],
        too_long_close=too_long[0],
        too_long_reason=too_long[1],
    )


# ---- the document's test vectors ----------------------------------------------------------------------

TOKEN = bytes(range(16))
FULL_ENTITIES = [(0, (4000, 100, 0)), (2, (8000, 0, 5))]


def server_expectations():
    """What each server vector must decode to, from the prose above it in the document."""
    return {
        "welcome": ("Welcome", dict(protocol=4, tick_hz=20, tick=300, connection_id=7, room="arena-1")),
        "joined": ("Joined", dict(entity=3, resume_token=TOKEN, resumed=False)),
        "joined-resumed": ("Joined", dict(entity=3, resume_token=TOKEN, resumed=True)),
        "full": ("Full", dict(tick=300, entities=FULL_ENTITIES)),
        "delta": (
            "Delta",
            dict(
                base=300,
                tick=301,
                despawned=[5],
                set=[(7, (1, 2, 0))],
                changed=[(0, (40, -40, 1)), (2, (-3, 0, 0))],
            ),
        ),
        "checksum": ("Checksum", dict(tick=300, hash=0x8351FEBDC124346C)),
        "pong": ("Pong", dict(nonce=99, tick=301)),
        "message": ("Message", dict(body=b"ann: hi")),
    }


def client_encodings():
    """The bytes this client sends for each client vector."""
    return {
        "hello": hello("ann"),
        "hello-resume": hello("ann", resume=(TOKEN, 300)),
        "watch": watch("t.k"),
        "input": input_msg(1, 1, -1),
        "ping": ping(1000),
        "send": send_msg(b"hi"),
    }


def vectors(doc_path: str):
    with open(doc_path) as f:
        doc = f.read()
    found = {
        name: bytes.fromhex(hexes)
        for name, hexes in re.findall(r"```vector\nname: (\S+)\nhex: ([0-9a-f ]+)\n```", doc)
    }
    servers, clients = server_expectations(), client_encodings()
    checked = []
    for name, data in found.items():
        if name in servers:
            got = decode(data)
            assert got == servers[name], f"{name}: decoded {got}, document says {servers[name]}"
        elif name in clients:
            assert clients[name] == data, f"{name}: encoded {clients[name].hex(' ')}, document has {data.hex(' ')}"
        elif name == "world-hash":
            mirror = Mirror()
            mirror.apply("Full", dict(tick=300, entities=FULL_ENTITIES))
            assert mirror.hash().to_bytes(8, "little") == data, f"world-hash: {mirror.hash():#x}"
        else:
            raise AssertionError(f"vector {name} has no expectation here")
        checked.append(name)
    missing = (set(servers) | set(clients) | {"world-hash"}) - set(found)
    assert not missing, f"vectors missing from the document: {sorted(missing)}"
    return dict(vectors_checked=len(checked), names=sorted(checked))


SCENARIOS = {
    "play": play,
    "watch": spectate,
    "resume": resume,
    "takeover": takeover,
    "rooms": rooms,
    "chat": chat,
}

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "vectors":
        print(json.dumps(vectors(args[1])))
        sys.exit(0)
    scenario = SCENARIOS[args.pop(0)] if args and args[0] in SCENARIOS else play
    url = args[0]
    checksums = int(args[1]) if len(args) > 1 else 3
    print(json.dumps(asyncio.run(scenario(url, checksums, *args[2:]))))
