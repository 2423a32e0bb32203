// The SDK's Client against a scripted fake WebSocket: what it sends, what it makes of what it receives,
// and when it reconnects. Time for RTT, stability and silence is injected (`now`); reconnect delays are
// real but a few ms, and every wait is capped.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Client,
  ClientTag,
  CloseCode,
  FATAL_CLOSE_CODES,
  HttpError,
  MESSAGE_BODY_BYTES_MAX,
  MatchmakeError,
  PROTOCOL_VERSION,
  ServerTag,
  checkRoomName,
  connect,
  decodeClientMsg,
  decodeServerMsg,
  describeClose,
  encodeClientMsg,
  encodeServerMsg,
  getRoom,
  isRoomName,
  joinOrCreate,
  listRooms,
  matchmake,
  matchmakeUrl,
  roomUrl,
  roomsUrl,
  seatUrl,
  sessionKey,
} from '../tickcast.js';
import { within } from './harness.mjs';

class FakeSocket {
  static all = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.bufferedAmount = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }

  send(bytes) {
    this.sent.push(decodeClientMsg(bytes));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // -- the test plays the server

  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(msg) {
    const bytes = encodeServerMsg(msg);
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }

  drop(code = 1006, reason = '', wasClean = false) {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean });
  }
}

/** A client on fake sockets with a hand-driven clock; `t.closes` collects its close events. */
function harness(options = {}) {
  FakeSocket.all = [];
  const clock = { ms: 1000 };
  const client = new Client('ws://test/ws', {
    WebSocket: FakeSocket,
    now: () => clock.ms,
    random: () => 0.5,
    name: 'ann',
    ...options,
    reconnect: options.reconnect === false
      ? false
      : { initialDelayMs: 10, factor: 2, maxDelayMs: 40, jitter: 0.5, stableAfterMs: 5000, ...options.reconnect },
  });
  const closes = [];
  client.on('close', (e) => closes.push(e));
  client.start();
  return { client, clock, closes, socket: () => FakeSocket.all.at(-1) };
}

/** Resolves when the client has opened its `n`th socket. */
function nthSocket(n) {
  return within(
    new Promise((resolve) => {
      const poll = () => (FakeSocket.all.length >= n ? resolve(FakeSocket.all[n - 1]) : setTimeout(poll, 1));
      poll();
    }),
    `socket #${n}`,
    5000,
  );
}

const welcome = { type: 'Welcome', protocol: 4, tickHz: 20, tick: 99, connectionId: 7, room: 'default' };
const TOKEN = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
const joined = (entity = 3, resumed = false, resumeToken = TOKEN) => ({ type: 'Joined', entity, resumeToken, resumed });

/** Open, welcomed, joined as entity 3, holding tick 100 with entities 1 and 3. */
function live(h, ws = h.socket()) {
  ws.open();
  ws.receive(welcome);
  ws.receive(joined());
  ws.receive({
    type: 'Full',
    tick: 100,
    entities: [
      [1, { x: 10, y: 10, seq: 0 }],
      [3, { x: 400, y: 400, seq: 0 }],
    ],
  });
  return ws;
}

test('on open it says Hello and pings; a Pong gives the RTT', () => {
  const h = harness();
  const ws = h.socket();
  assert.equal(h.client.state, 'connecting');
  ws.open();
  assert.equal(h.client.state, 'open');
  assert.deepEqual(ws.sent[0], { type: 'Hello', protocol: 4, name: 'ann', ticket: '', resume: null });
  assert.equal(ws.sent[1].type, 'Ping');
  h.clock.ms += 12.5;
  ws.receive({ type: 'Pong', nonce: ws.sent[1].nonce, tick: 99 });
  assert.equal(h.client.stats.rttMs, 12.5);
  assert.equal(h.client.stats.srttMs, 12.5);
  ws.receive({ type: 'Pong', nonce: 12345, tick: 99 }); // not ours: ignored
  assert.equal(h.client.stats.rttMs, 12.5);
  h.client.close();
});

test('it mirrors updates, verifies checksums, sends inputs after Joined and times their acknowledgement', () => {
  const h = harness();
  const ws = h.socket();
  ws.open();
  ws.receive(welcome);
  assert.equal(h.client.sendInput({ dx: 1, dy: 0 }), 0, 'no input before Joined (the server would close 1008)');
  ws.receive(joined());
  const changes = [];
  h.client.on('update', (c) => changes.push(c));
  ws.receive({ type: 'Full', tick: 100, entities: [[1, { x: 10, y: 10, seq: 0 }], [3, { x: 400, y: 400, seq: 0 }]] });
  assert.equal(h.client.sendInput({ dx: 127, dy: 0 }), 1);
  assert.deepEqual(ws.sent.at(-1), { type: 'Input', seq: 1, input: { dx: 127, dy: 0 } });
  h.clock.ms += 70;
  ws.receive({
    type: 'Delta',
    base: 100,
    tick: 101,
    despawned: [1],
    set: [[4, { x: 1, y: 2, seq: 0 }]],
    changed: [[3, { dx: 40, dy: 0, dseq: 1 }]],
  });
  assert.deepEqual(h.client.own, { x: 440, y: 400, seq: 1 });
  assert.equal(h.client.stats.inputAckMs, 70);
  assert.deepEqual(changes[1], { tick: 101, base: 100, full: false, coalesced: false, set: [4], changed: [3], despawned: [1] });
  ws.receive({ type: 'Checksum', tick: 101, hash: h.client.world.hash() });
  assert.equal(h.client.stats.checksumsVerified, 1);
  assert.equal(h.client.stats.checksumFailures, 0);
  h.client.close();
  assert.equal(h.client.state, 'closed');
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'client closed' });
  assert.equal(h.closes.at(-1).reconnectInMs, null);
});

test('a wrong checksum is counted, surfaced, and resynced by reconnecting', async () => {
  const h = harness();
  const ws = live(h);
  const desyncs = [];
  h.client.on('desync', (e) => desyncs.push(e.error.kind));
  ws.receive({ type: 'Checksum', tick: 100, hash: 42n });
  assert.equal(h.client.stats.checksumFailures, 1);
  assert.deepEqual(desyncs, ['checksum-mismatch']);
  assert.equal(ws.closedWith.code, 4900);
  assert.equal(h.closes[0].byClient, true);
  assert.equal(h.client.state, 'reconnecting');
  assert.equal(h.client.world.tick, null, 'the mirror that failed is dropped');
  const next = await nthSocket(2);
  next.open();
  // The same player is asked back, from tick 0: the whole world again.
  assert.deepEqual(next.sent[0].resume, { token: TOKEN, tick: 0 });
  next.receive(joined(3, true));
  next.receive({ type: 'Full', tick: 200, entities: [] });
  assert.equal(h.client.world.tick, 200);
  assert.equal(h.client.stats.connects, 2);
  h.client.close();
});

test('an undecodable message or a delta from the wrong base also resyncs', async () => {
  const h = harness();
  let ws = live(h);
  ws.onmessage({ data: new Uint8Array([9]).buffer });
  assert.equal(ws.closedWith.code, 4901);
  assert.equal(h.client.stats.decodeErrors, 1);
  ws = await nthSocket(2);
  live(h);
  ws.receive({ type: 'Delta', base: 50, tick: 101, despawned: [], set: [], changed: [] });
  assert.equal(ws.closedWith.code, 4900);
  assert.equal(h.client.stats.mirrorErrors, 1);
  await nthSocket(3);
  h.client.close();
});

test('reconnect delays grow by the factor up to the cap, cut by jitter, and a stable connection resets them', async () => {
  const h = harness();
  h.socket().drop(); // refused: never opened
  for (let n = 2; n <= 5; n++) (await nthSocket(n)).drop();
  // initial 10, x2 per failure, cap 40; random() = 0.5 with jitter 0.5 cuts each by a quarter.
  assert.deepEqual(h.closes.map((c) => c.reconnectInMs), [8, 15, 30, 30, 30]);
  assert.ok(h.closes.every((c) => c.opened === false && c.code === 1006));

  const ws = await nthSocket(6);
  ws.open();
  h.clock.ms += 5000; // up long enough to count as stable
  ws.drop(1001, 'server shutting down', true);
  assert.equal(h.closes.at(-1).reconnectInMs, 8, 'back to the initial delay');
  assert.deepEqual(h.client.lastClose, {
    code: 1001,
    reason: 'server shutting down',
    meaning: 'the server is shutting down',
    wasClean: true,
    byClient: false,
    opened: true,
  });
  // A refused retry is reported apart; lastClose still says why the session ended.
  (await nthSocket(7)).drop();
  assert.equal(h.client.lastClose.code, 1001);
  assert.equal(h.client.lastFailedAttempt.code, 1006);
  (await nthSocket(8)).open();
  assert.equal(h.client.lastFailedAttempt, null);
  h.client.close();
});

test('jitter spreads delays between (1 - jitter) and 1 times the backoff', () => {
  for (const [random, expected] of [[0, 10], [0.999, 5]]) {
    const h = harness({ random: () => random });
    h.socket().drop();
    assert.equal(h.closes[0].reconnectInMs, expected);
    h.client.close();
  }
});

test('closes that retrying cannot fix end the client, with the reason', () => {
  for (const code of [1002, 1003, 1007, 1008, 1009, 4000, 4004, 4005, 4007, 4008]) {
    const h = harness();
    live(h).drop(code, 'why', true);
    assert.equal(h.client.state, 'closed', `code ${code}`);
    assert.equal(h.closes[0].reconnectInMs, null);
    assert.equal(h.client.lastClose.reason, 'why');
  }
  const h = harness({ reconnect: false });
  live(h).drop(1001, 'server shutting down', true);
  assert.equal(h.client.state, 'closed', 'reconnect: false');
});

test('a silent server is given up on (4902) and reconnected to', async () => {
  const h = harness({ silenceTimeoutMs: 100, housekeepingMs: 5, pingIntervalMs: 1e9 });
  const ws = live(h);
  h.clock.ms += 101;
  await within(
    new Promise((resolve) => h.client.on('close', resolve)),
    'the silence watchdog',
    5000,
  );
  assert.equal(ws.closedWith.code, 4902);
  assert.equal(h.client.lastClose.meaning, 'nothing heard from the server for too long');
  await nthSocket(2);
  h.client.close();
});

test('inputs are dropped, not queued, while the socket is backed up; names are cut to 32 bytes', () => {
  const h = harness({ name: 'é'.repeat(40) });
  const ws = live(h);
  assert.equal(new TextEncoder().encode(ws.sent[0].name).length, 32);
  ws.bufferedAmount = 1 << 20;
  assert.equal(h.client.sendInput({ dx: 1, dy: 0 }), 0);
  assert.equal(h.client.stats.inputsDropped, 1);
  ws.bufferedAmount = 0;
  assert.equal(h.client.sendInput({ dx: 1, dy: 0 }), 1);
  h.client.close();
});

/** Storage with the sessionStorage methods the Client uses. */
class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

test('join: false sends Watch with the ticket; a spectator never sends Hello or resumes', async () => {
  const h = harness({ join: false, ticket: 'v1.bob.1.sig' });
  const ws = h.socket();
  ws.open();
  assert.deepEqual(ws.sent[0], { type: 'Watch', protocol: 4, ticket: 'v1.bob.1.sig' });
  assert.ok(ws.sent.every((m) => m.type !== 'Hello'));
  ws.receive(welcome);
  ws.receive({ type: 'Full', tick: 100, entities: [[1, { x: 1, y: 1, seq: 0 }]] });
  assert.equal(h.client.sendInput({ dx: 1, dy: 0 }), 0, 'a spectator has no entity');
  ws.drop();
  const next = await nthSocket(2);
  next.open();
  assert.deepEqual(next.sent[0], { type: 'Watch', protocol: 4, ticket: 'v1.bob.1.sig' });
  h.client.close();
});

test('a ticket function is called before every attempt, and may answer with a Promise', async () => {
  let calls = 0;
  const h = harness({ ticket: () => (++calls === 1 ? `t${calls}` : Promise.resolve(`t${calls}`)) });
  assert.equal(calls, 1);
  live(h);
  assert.equal(h.socket().sent[0].ticket, 't1');
  h.socket().drop();
  const next = await nthSocket(2);
  assert.equal(calls, 2);
  next.open();
  assert.equal(next.sent[0].ticket, 't2');
  h.client.close();
});

test('a ticket function that fails is a failed attempt, retried with backoff', async () => {
  let calls = 0;
  const errors = [];
  const h = harness({
    ticket: () => {
      calls += 1;
      if (calls === 1) throw new Error('backend down');
      if (calls === 2) return Promise.reject(new Error('still down'));
      return 'ok';
    },
  });
  h.client.on('error', (e) => errors.push(e.error.message));
  assert.equal(FakeSocket.all.length, 0, 'no socket without a ticket');
  assert.equal(h.closes[0].reason, 'backend down');
  assert.equal(h.client.lastFailedAttempt.meaning, 'could not get a ticket');
  assert.equal(h.client.state, 'reconnecting');
  const ws = await nthSocket(1);
  ws.open();
  assert.equal(ws.sent[0].ticket, 'ok');
  assert.deepEqual(errors, ['still down']);
  assert.deepEqual(h.closes.map((c) => c.reconnectInMs), [8, 15]);
  h.client.close();
});

test('4004: no retry with a fixed ticket; with a ticket function, one retry with a fresh ticket', async () => {
  const fixed = harness({ ticket: 'expired' });
  live(fixed).drop(4004, 'ticket expired', true);
  assert.equal(fixed.client.state, 'closed');
  assert.equal(fixed.client.lastClose.meaning, 'a valid ticket is required');

  let calls = 0;
  const h = harness({ ticket: () => `fresh-${++calls}` });
  live(h).drop(4004, 'ticket expired', true);
  assert.equal(h.client.state, 'reconnecting');
  let ws = await nthSocket(2);
  ws.open();
  assert.equal(ws.sent[0].ticket, 'fresh-2');
  ws.drop(4004, 'invalid ticket signature', true);
  assert.equal(h.client.state, 'closed', 'a second 4004 in a row ends the client');

  // Once a connection is accepted, a later 4004 gets its one retry again.
  const again = harness({ ticket: () => 'x' });
  live(again).drop(4004, 'ticket expired', true);
  ws = await nthSocket(2);
  live(again, ws);
  ws.drop(4004, 'ticket expired', true);
  assert.equal(again.client.state, 'reconnecting');
  again.client.close();
});

test('a lost connection resumes the same player: Hello.resume, the kept mirror takes the Delta, seqs go on', async () => {
  const h = harness();
  const ws = live(h);
  const events = [];
  for (const type of ['joined', 'resumed', 'resumerefused']) h.client.on(type, (e) => events.push([type, e]));
  assert.equal(h.client.sendInput({ dx: 1, dy: 0 }), 1);
  assert.equal(h.client.sendInput({ dx: 1, dy: 0 }), 2);
  ws.receive({ type: 'Delta', base: 100, tick: 101, despawned: [], set: [], changed: [[3, { dx: 10, dy: 0, dseq: 1 }]] });
  ws.drop(); // 1006: no close frame
  assert.equal(h.client.entity, null, 'not playing while disconnected');
  assert.equal(h.client.world.tick, 101, 'the mirror is kept');

  const next = await nthSocket(2);
  next.open();
  assert.deepEqual(next.sent[0], { type: 'Hello', protocol: 4, name: 'ann', ticket: '', resume: { token: TOKEN, tick: 101 } });
  next.receive(welcome);
  next.receive(joined(3, true));
  assert.equal(h.client.entity, 3);
  assert.deepEqual(events, [
    ['joined', { entity: 3, resumed: true, previousEntity: 3 }],
    ['resumed', { entity: 3, tick: 101 }],
  ]);
  assert.deepEqual(h.client.stats.lastResume, { entity: 3, tick: 101, firstUpdate: null });
  next.receive({ type: 'Delta', base: 101, tick: 140, despawned: [1], set: [], changed: [[3, { dx: 0, dy: 5, dseq: 1 }]] });
  assert.deepEqual(h.client.own, { x: 410, y: 405, seq: 2 });
  assert.deepEqual(h.client.stats.lastResume.firstUpdate, { type: 'Delta', base: 101, tick: 140 });
  next.receive({ type: 'Checksum', tick: 140, hash: h.client.world.hash() });
  assert.equal(h.client.stats.checksumFailures, 0);
  assert.equal(h.client.sendInput({ dx: 0, dy: 1 }), 3, 'input seqs carry on');
  assert.equal(h.client.stats.resumes, 1);
  assert.equal(h.client.stats.resumesRefused, 0);
  h.client.close();
});

test('a refused resume is a new player: mirror cleared, seqs from 1, an event says so', async () => {
  const h = harness();
  const ws = live(h);
  h.client.sendInput({ dx: 1, dy: 0 });
  const refused = [];
  h.client.on('resumerefused', (e) => refused.push(e));
  ws.drop(1001, 'server shutting down', true);
  const next = await nthSocket(2);
  next.open();
  assert.deepEqual(next.sent[0].resume, { token: TOKEN, tick: 100 });
  next.receive(welcome);
  const token2 = new Uint8Array(16).fill(7);
  next.receive(joined(9, false, token2));
  assert.deepEqual(refused, [{ entity: 9, previousEntity: 3 }]);
  assert.equal(h.client.world.tick, null);
  assert.equal(h.client.world.entities.size, 0);
  assert.equal(h.client.stats.resumesRefused, 1);
  assert.equal(h.client.stats.resumes, 0);
  next.receive({ type: 'Full', tick: 300, entities: [[9, { x: 0, y: 0, seq: 0 }]] });
  assert.equal(h.client.sendInput({ dx: 1, dy: 0 }), 1, 'a new player numbers from 1');
  next.drop();
  const third = await nthSocket(3);
  third.open();
  assert.deepEqual(third.sent[0].resume, { token: token2, tick: 300 }, 'the new token is the one resumed');
  h.client.close();
});

test('4005 (taken over by another connection) ends the client without a reconnect', () => {
  const h = harness();
  live(h).drop(4005, 'player resumed on another connection', true);
  assert.equal(h.client.state, 'closed');
  assert.equal(h.closes[0].reconnectInMs, null);
  assert.equal(h.client.lastClose.meaning, 'this player was taken over by another connection');
});

test('the session is stored: a new Client on the same storage (a page reload) resumes from tick 0 and seqs go on', async () => {
  const storage = new MemoryStorage();
  const h = harness({ storage });
  const ws = live(h);
  h.client.sendInput({ dx: 1, dy: 0 });
  h.client.sendInput({ dx: 1, dy: 0 });
  const key = 'tickcast.session ws://test/ws';
  assert.deepEqual(JSON.parse(storage.getItem(key)), { token: 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', entity: 3, seq: 2 });
  ws.drop(1001, 'going away', true); // the page unloads
  h.client.close(4999, 'page gone'); // (stops its reconnect timer; not 1000, so the session stays stored)

  const reloaded = harness({ storage });
  const ws2 = reloaded.socket();
  ws2.open();
  assert.deepEqual(ws2.sent[0].resume, { token: TOKEN, tick: 0 }, 'no mirror: resume from tick 0');
  ws2.receive(welcome);
  ws2.receive(joined(3, true));
  ws2.receive({ type: 'Full', tick: 150, entities: [[3, { x: 500, y: 400, seq: 2 }]] });
  assert.deepEqual(reloaded.client.stats.lastResume, { entity: 3, tick: 0, firstUpdate: { type: 'Full', tick: 150 } });
  assert.equal(reloaded.client.sendInput({ dx: 1, dy: 0 }), 3);

  // The ticket in the URL is not part of the key; a stored seq behind the server's is caught up.
  storage.setItem(key, JSON.stringify({ token: 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', entity: 3, seq: 1 }));
  FakeSocket.all = [];
  const c = new Client('ws://test/ws?ticket=abc', { WebSocket: FakeSocket, storage, reconnect: false });
  c.start();
  live(c, FakeSocket.all[0]);
  FakeSocket.all[0].receive({ type: 'Delta', base: 100, tick: 101, despawned: [], set: [], changed: [[3, { dx: 0, dy: 0, dseq: 5 }]] });
  assert.equal(c.sendInput({ dx: 1, dy: 0 }), 6, 'above the seq the server applied (5)');

  // close() says goodbye (1000): the server drops the player, so the stored session goes too.
  reloaded.client.close();
  c.close();
  assert.deepEqual(ws2.closedWith, { code: 1000, reason: 'client closed' });
  assert.equal(storage.getItem(key), null);
  storage.setItem(key, 'not json');
  const fresh = harness({ storage });
  fresh.socket().open();
  assert.equal(fresh.socket().sent[0].resume, null, 'an unreadable stored session is ignored');
  fresh.client.close();
});

test('resume: false never sends a resume and starts over on every connection', async () => {
  const h = harness({ resume: false, storage: new MemoryStorage() });
  live(h).drop();
  const next = await nthSocket(2);
  next.open();
  assert.equal(next.sent[0].resume, null);
  h.client.close();
});

// ---- protocol 4 and rooms -----------------------------------------------------------------------------

test('the client speaks protocol 4; a server of another version ends it, even when its Welcome does not decode', () => {
  assert.equal(PROTOCOL_VERSION, 4);
  for (const bytes of [
    encodeServerMsg({ ...welcome, protocol: 3 }), // decodes, says 3
    encodeServerMsg({ ...welcome, protocol: 5 }), // decodes, says 5
    Uint8Array.from([0, 2, 20, 99, 7]), // a v2 Welcome: no room, so it does not decode as v4
  ]) {
    const h = harness();
    const ws = h.socket();
    ws.open();
    ws.onmessage({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
    assert.equal(h.client.state, 'closed', 'no reconnect: the server would say the same again');
    assert.equal(h.closes[0].reconnectInMs, null);
    assert.match(h.client.lastClose.reason, /^server speaks protocol [235], this client 4$/);
    assert.equal(h.client.lastClose.meaning, 'protocol version mismatch');
    assert.equal(h.client.stats.decodeErrors, 0);
  }
});

test('room names: 1 to 64 of A-Z a-z 0-9 _ -, nothing decoded; a bad one is a RangeError that says so', () => {
  for (const good of ['a', 'red', 'Arena-1', 'duel_7', '-', 'x'.repeat(64), 'A-Za-z0-9_']) {
    assert.ok(isRoomName(good), good);
    assert.equal(checkRoomName(good), good);
  }
  for (const bad of ['', 'x'.repeat(65), 'a b', 'a/b', 'a.b', '%41', 'é', 'red\n', 'a?b', null, undefined, 7]) {
    assert.equal(isRoomName(bad), false, String(bad));
    assert.throws(() => checkRoomName(bad), { name: 'RangeError', message: /^bad room name .*: 1 to 64 of A-Z a-z 0-9 _ -$/ });
  }
});

test('roomUrl puts the room after /ws and keeps the query; roomsUrl finds /rooms from any URL of the server', () => {
  assert.equal(roomUrl('ws://h:7000/ws', 'red'), 'ws://h:7000/ws/red');
  assert.equal(roomUrl('ws://h:7000', 'red'), 'ws://h:7000/ws/red', 'no path: /ws');
  assert.equal(roomUrl('ws://h:7000/ws/', 'red'), 'ws://h:7000/ws/red');
  assert.equal(roomUrl('wss://h/game/ws?ticket=t.k&type=duel', 'd-1'), 'wss://h/game/ws/d-1?ticket=t.k&type=duel');
  assert.equal(roomUrl('ws://h/ws', undefined), 'ws://h/ws', 'no room: the URL as it is (the default room)');
  assert.equal(roomUrl('ws://h/ws', null), 'ws://h/ws');
  assert.throws(() => roomUrl('ws://h/ws', 'a b'), { name: 'RangeError', message: /bad room name "a b"/ });
  assert.throws(() => roomUrl('ws://h/ws/blue', 'red'), { name: 'TypeError', message: /must end in \/ws/ });
  assert.throws(() => roomUrl('ws://h/socket', 'red'), TypeError);

  assert.equal(roomsUrl('ws://h:7000/ws'), 'http://h:7000/rooms');
  assert.equal(roomsUrl('ws://h:7000/ws/red?ticket=secret'), 'http://h:7000/rooms', 'no ticket in the listing');
  assert.equal(roomsUrl('wss://h/game/ws/red'), 'https://h/game/rooms');
  assert.equal(roomsUrl('http://h:7000/?room=red'), 'http://h:7000/rooms');
  assert.equal(roomsUrl('ws://h:7000/ws', 'red'), 'http://h:7000/rooms/red');
  assert.throws(() => roomsUrl('ws://h/ws', '../metrics'), RangeError);
});

test('the room option: the client connects to /ws/ROOM, stores its session per room, and names the room from Welcome', () => {
  const storage = new MemoryStorage();
  const h = harness({ room: 'red', storage });
  const ws = h.socket();
  assert.equal(ws.url, 'ws://test/ws/red');
  assert.equal(h.client.url, 'ws://test/ws/red');
  assert.equal(h.client.room, null, 'no Welcome yet');
  const welcomes = [];
  h.client.on('welcome', (m) => welcomes.push(m.room));
  ws.open();
  ws.receive({ ...welcome, room: 'red' });
  assert.equal(h.client.room, 'red');
  assert.deepEqual(welcomes, ['red']);
  ws.receive(joined());
  assert.deepEqual([...storage.map.keys()], ['tickcast.session ws://test/ws/red']);
  assert.equal(sessionKey('ws://test/ws/red?ticket=x'), 'tickcast.session ws://test/ws/red');
  h.client.close(4999, 'page gone'); // the session stays stored

  // Another room on the same storage: its own session, so red's token is not presented in blue.
  const blue = harness({ room: 'blue', storage });
  blue.socket().open();
  assert.equal(blue.socket().url, 'ws://test/ws/blue');
  assert.equal(blue.socket().sent[0].resume, null, "red's token is not blue's");
  blue.client.close(4999, 'page gone');
  // Back in red: red's token.
  const red = harness({ room: 'red', storage });
  red.socket().open();
  assert.deepEqual(red.socket().sent[0].resume, { token: TOKEN, tick: 0 });
  red.client.close();

  // Plain /ws: Welcome says which room is the default.
  const plain = harness();
  assert.equal(plain.socket().url, 'ws://test/ws');
  live(plain);
  assert.equal(plain.client.room, 'default');
  plain.client.close();

  assert.throws(() => connect('ws://test/ws', { room: 'no spaces', WebSocket: FakeSocket }), {
    name: 'RangeError',
    message: 'bad room name "no spaces": 1 to 64 of A-Z a-z 0-9 _ -',
  });
});

test('4006 (room full) is retried; 4007 (room ended) and 4008 (kicked) end the client and forget the session', async () => {
  assert.equal(CloseCode.ROOM_FULL, 4006);
  assert.equal(CloseCode.ROOM_ENDED, 4007);
  assert.equal(CloseCode.KICKED, 4008);
  assert.equal(describeClose(4006), 'the room is full');
  assert.equal(describeClose(4007), 'the room has ended');
  assert.equal(describeClose(4008), 'kicked out of the room');
  assert.ok(!FATAL_CLOSE_CODES.has(4006) && FATAL_CLOSE_CODES.has(4007) && FATAL_CLOSE_CODES.has(4008));

  const full = harness();
  full.socket().open();
  full.socket().receive(welcome);
  full.socket().drop(4006, 'room is full: 16 players', true);
  assert.equal(full.client.state, 'reconnecting');
  assert.equal(full.client.lastClose.meaning, 'the room is full');
  assert.ok(full.closes[0].reconnectInMs > 0);
  await nthSocket(2);
  full.client.close();

  for (const [code, reason] of [[4007, 'room ended: match over'], [4008, 'kicked: idle too long']]) {
    const storage = new MemoryStorage();
    const h = harness({ room: 'arena-1', storage });
    live(h).drop(code, reason, true);
    assert.equal(h.client.state, 'closed', `code ${code}`);
    assert.equal(h.closes[0].reconnectInMs, null);
    assert.equal(h.client.lastClose.reason, reason);
    assert.equal(storage.map.size, 0, `${code}: the player is gone, its token with it`);
    const reloaded = harness({ room: 'arena-1', storage });
    reloaded.socket().open();
    assert.equal(reloaded.socket().sent[0].resume, null);
    reloaded.client.close();
  }
});

/** A fetch that answers from `routes` (url -> [status, body]) and records what was asked. */
function fakeFetch(routes) {
  const asked = [];
  const fetch = async (url, init) => {
    asked.push({ url, accept: init?.headers?.accept });
    const [status, body] = routes[url] ?? [404, `no route ${url}`];
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return { status, text: async () => text, json: async () => JSON.parse(text) };
  };
  return { fetch, asked };
}

const RED = {
  name: 'red',
  type: 'arena',
  players: 3,
  players_detached: 1,
  spectators: 0,
  max_players: 16,
  max_spectators: null,
  tick_hz: 20,
  tick: 5230,
  created_unix_s: 1796083200,
};
const RED_INFO = {
  name: 'red',
  type: 'arena',
  players: 3,
  playersDetached: 1,
  spectators: 0,
  maxPlayers: 16,
  maxSpectators: null,
  tickHz: 20,
  tick: 5230,
  createdUnixS: 1796083200,
};

test('listRooms and getRoom: GET /rooms (a page, limit and after) and /rooms/NAME, in camelCase; errors say the status', async () => {
  const { fetch, asked } = fakeFetch({
    'http://h:7000/rooms': [200, { rooms: [RED], next: null }],
    'http://h:7000/rooms?limit=1&after=blue': [200, { rooms: [RED], next: 'red' }],
    'http://h:7000/rooms/red': [200, RED],
    'http://h:7000/rooms?limit=100': [400, 'bad limit\n'],
  });
  assert.deepEqual(await listRooms('ws://h:7000/ws/blue', { fetch }), { rooms: [RED_INFO], next: null });
  assert.equal(asked[0].accept, 'application/json');
  assert.deepEqual(await listRooms('ws://h:7000/ws', { fetch, limit: 1, after: 'blue' }), { rooms: [RED_INFO], next: 'red' });
  assert.deepEqual(await getRoom('ws://h:7000/ws', 'red', { fetch }), RED_INFO);
  assert.equal(await getRoom('ws://h:7000/ws', 'gone', { fetch }), null, '404: no such room');
  await assert.rejects(listRooms('ws://h:7000/ws', { fetch, limit: 100 }), (e) => {
    assert.ok(e instanceof HttpError);
    assert.equal(e.status, 400);
    assert.equal(e.body, 'bad limit');
    assert.equal(e.message, 'http://h:7000/rooms?limit=100: HTTP 400: bad limit');
    return true;
  });
  const asks = asked.length;
  await assert.rejects(listRooms('ws://h:7000/ws', { fetch, limit: 0 }), RangeError);
  await assert.rejects(listRooms('ws://h:7000/ws', { fetch, limit: 101 }), RangeError);
  await assert.rejects(listRooms('ws://h:7000/ws', { fetch, after: 'a b' }), RangeError);
  assert.equal(asked.length, asks, 'bad arguments are refused before anything is sent');
  const odd = fakeFetch({ 'http://h/rooms': [200, { rooms: 'none' }] });
  await assert.rejects(listRooms('ws://h/ws', { fetch: odd.fetch }), /not a room list/);
});

// ---- protocol 4: Send and Message ---------------------------------------------------------------------

test('Send and Message: a varint length then the raw bytes; a string is UTF-8; more than 1024 bytes is refused', () => {
  const send = (body) => Array.from(encodeClientMsg({ type: 'Send', body }));
  assert.equal(ClientTag.SEND, 4);
  assert.equal(ServerTag.MESSAGE, 6);
  assert.equal(MESSAGE_BODY_BYTES_MAX, 1024);
  assert.deepEqual(send('hi'), [4, 2, 0x68, 0x69]);
  assert.deepEqual(send(''), [4, 0]);
  assert.deepEqual(send('é'), [4, 2, 0xc3, 0xa9]);
  assert.deepEqual(send(Uint8Array.from([0, 255])), [4, 2, 0, 255]);
  assert.deepEqual(send(Uint16Array.from([0x0201]).buffer), [4, 2, 1, 2], 'an ArrayBuffer as it is');
  assert.deepEqual(send(new DataView(Uint8Array.from([9, 8, 7]).buffer, 1, 2)), [4, 2, 8, 7], 'a view: its bytes only');
  const max = send(new Uint8Array(1024).fill(0x61));
  assert.deepEqual(max.slice(0, 4), [4, 0xfb, 0x00, 0x04], '1024 = fb 00 04');
  assert.equal(max.length, 4 + 1024);
  assert.throws(() => send(new Uint8Array(1025)), { name: 'RangeError', message: 'Send body is 1025 bytes, the limit is 1024' });
  assert.throws(() => send('€'.repeat(342)), { name: 'RangeError', message: /Send body is 1026 bytes/ }, 'bytes, not characters');
  assert.throws(() => send(42), TypeError);

  assert.deepEqual(decodeClientMsg(Uint8Array.from([4, 2, 0x68, 0x69])), { type: 'Send', body: Uint8Array.from([0x68, 0x69]) });
  assert.throws(() => decodeClientMsg(Uint8Array.from([4, 0xfb, 0x01, 0x04, ...new Uint8Array(1025)])), {
    name: 'DecodeError',
    message: 'Send body is 1025 bytes, the limit is 1024',
  });
  const message = encodeServerMsg({ type: 'Message', body: 'ann: hi' });
  assert.deepEqual(Array.from(message), [6, 7, ...new TextEncoder().encode('ann: hi')]);
  const decoded = decodeServerMsg(message);
  assert.equal(decoded.type, 'Message');
  assert.ok(decoded.body instanceof Uint8Array);
  assert.equal(new TextDecoder().decode(decoded.body), 'ann: hi');
  assert.throws(() => decodeServerMsg(Uint8Array.from([6, 3, 1, 2])), /a list of 3 items cannot fit in the 2 bytes left/);
  assert.throws(() => decodeServerMsg(Uint8Array.from([6, 0xfb, 0x01, 0x04, ...new Uint8Array(1025)])), {
    name: 'DecodeError',
    message: 'Message body is 1025 bytes, the limit is 1024',
  });
});

test('client.send(): only while joined, at most 1024 bytes, refused with an Error before anything is sent', () => {
  const h = harness();
  const ws = h.socket();
  assert.throws(() => h.client.send('early'), { message: 'cannot send before Joined: the client is connecting' });
  ws.open();
  ws.receive(welcome);
  assert.throws(() => h.client.send('early'), { message: /^cannot send before Joined/ });
  ws.receive(joined());
  const sentBefore = ws.sent.length;
  assert.equal(h.client.send('hello there'), 11);
  assert.deepEqual(ws.sent.at(-1), { type: 'Send', body: new TextEncoder().encode('hello there') });
  assert.equal(h.client.send(Uint8Array.from([1, 2, 3])), 3);
  assert.deepEqual(ws.sent.at(-1), { type: 'Send', body: Uint8Array.from([1, 2, 3]) });
  assert.equal(h.client.send(new Uint8Array(1024)), 1024);
  assert.throws(() => h.client.send(new Uint8Array(1025)), { name: 'RangeError', message: 'Send body is 1025 bytes, the limit is 1024' });
  assert.throws(() => h.client.send('x'.repeat(1025)), RangeError);
  ws.bufferedAmount = 1 << 20;
  assert.throws(() => h.client.send('late'), { name: 'RangeError', message: /bytes are waiting in the socket/ });
  ws.bufferedAmount = 0;
  assert.equal(ws.sent.length, sentBefore + 3, 'only the three good ones went out');
  assert.equal(h.client.stats.sends, 3);
  ws.drop();
  assert.throws(() => h.client.send('while away'), { message: 'cannot send before Joined: the client is reconnecting' });
  h.client.close();

  const watcher = harness({ join: false });
  watcher.socket().open();
  watcher.socket().receive(welcome);
  assert.throws(() => watcher.client.send('hi'), { message: 'cannot send before Joined: a spectator has no player' });
  assert.ok(watcher.socket().sent.every((m) => m.type !== 'Send'));
  watcher.client.close();
});

test("each Message is a 'message' event with its body as a Uint8Array, for players and spectators alike", () => {
  for (const join of [true, false]) {
    const h = harness({ join });
    const bodies = [];
    h.client.on('message', (body) => bodies.push(body));
    const ws = h.socket();
    ws.open();
    ws.receive(welcome);
    if (join) ws.receive(joined());
    ws.receive({ type: 'Message', body: 'ann: hi' });
    ws.receive({ type: 'Message', body: Uint8Array.from([0xff, 0]) });
    ws.receive({ type: 'Message', body: '' });
    assert.equal(bodies.length, 3);
    assert.ok(bodies.every((b) => b instanceof Uint8Array));
    assert.equal(new TextDecoder().decode(bodies[0]), 'ann: hi');
    assert.deepEqual(Array.from(bodies[1]), [0xff, 0]);
    assert.equal(bodies[2].length, 0);
    assert.equal(h.client.stats.messages, 3);
    assert.equal(h.client.state, 'open', 'a Message is not an update: nothing else changes');
    h.client.close();
  }
});

// ---- matchmaking ---------------------------------------------------------------------------------------

/** A matchmaker: answers POST /matchmake from `answers` in turn (the last one repeats) and records each request. */
function fakeMatchmaker(...answers) {
  const asked = [];
  const fetch = async (url, init) => {
    asked.push({ url, method: init?.method, headers: init?.headers, body: JSON.parse(init.body), rawBody: init.body, signal: init.signal });
    const [status, body, headers = {}] = answers[Math.min(asked.length - 1, answers.length - 1)];
    if (status === 'throw') throw new TypeError(body);
    if (status === 'hang') return new Promise(() => {});
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return { status, headers: { get: (name) => headers[name.toLowerCase()] ?? null }, text: async () => text };
  };
  return { fetch, asked };
}

const seat = (over = {}) => ({
  room: 'duel-1',
  type: 'arena',
  process: 'a',
  connect: 'ws://10.0.0.1:9101/ws/duel-1?type=arena&ticket=s1.p.duel-1.a.1767225600.sig',
  ticket: 's1.p.duel-1.a.1767225600.sig',
  expires_unix_s: 1767225600,
  ...over,
});
const STANDALONE = { room: 'duel-1', type: 'arena', process: null, connect: '/ws/duel-1?type=arena', ticket: null, expires_unix_s: null };
const A_URL = 'ws://10.0.0.1:9101/ws/duel-1?type=arena&ticket=s1.p.duel-1.a.1767225600.sig';

test('matchmake(): POST /matchmake with a plain string JSON body (no headers: no CORS preflight); the answer in camelCase with its ws URL', async () => {
  const mm = fakeMatchmaker([200, seat()], [200, STANDALONE]);
  const answer = await matchmake('http://h:7000/?room=x', { room: 'duel-1', player: 'ann', fetch: mm.fetch });
  assert.deepEqual(mm.asked[0].body, { room: 'duel-1', player: 'ann' });
  assert.equal(typeof mm.asked[0].rawBody, 'string');
  assert.equal(mm.asked[0].url, 'http://h:7000/matchmake');
  assert.equal(mm.asked[0].method, 'POST');
  assert.equal(mm.asked[0].headers, undefined, 'no Content-Type, no Accept: a simple request');
  assert.deepEqual(answer, {
    room: 'duel-1',
    type: 'arena',
    process: 'a',
    connect: A_URL,
    ticket: 's1.p.duel-1.a.1767225600.sig',
    expiresUnixS: 1767225600,
    url: A_URL,
  });
  // A standalone server answers a path: resolved against the request's URL, http -> ws, https -> wss.
  const local = await matchmake('wss://h/game/ws', { type: 'arena', ticket: 'v1.ann.1.sig', fetch: mm.fetch });
  assert.equal(mm.asked[1].url, 'https://h/game/matchmake');
  assert.deepEqual(mm.asked[1].body, { type: 'arena', ticket: 'v1.ann.1.sig' });
  assert.equal(local.url, 'wss://h/ws/duel-1?type=arena');
  assert.equal(local.process, null);
  assert.equal(local.expiresUnixS, null);

  assert.equal(matchmakeUrl('ws://h:7000/ws/red?ticket=t'), 'http://h:7000/matchmake');
  assert.equal(seatUrl('/ws/a?type=arena', 'http://h:7000/matchmake'), 'ws://h:7000/ws/a?type=arena');
  assert.equal(seatUrl('https://b:443/ws/a', 'http://h/matchmake'), 'wss://b/ws/a');
  assert.equal(seatUrl('ws://b:9/ws/a', 'https://h/matchmake'), 'ws://b:9/ws/a');
  assert.throws(() => seatUrl('ftp://b/ws/a', 'http://h/matchmake'), TypeError);
});

test('matchmake(): a refusal is a MatchmakeError with the status and the server\'s error; bad arguments are refused before sending', async () => {
  const mm = fakeMatchmaker(
    [409, { error: 'room duel-1 is of type arena, not duel' }],
    [503, { error: 'matchmaking unavailable: redis unreachable' }, { 'retry-after': '1' }],
    [404, 'not json\n'],
    [200, { room: 'duel-1' }],
  );
  await assert.rejects(matchmake('http://h', { room: 'duel-1', type: 'duel', fetch: mm.fetch }), (e) => {
    assert.ok(e instanceof MatchmakeError && e instanceof HttpError);
    assert.equal(e.status, 409);
    assert.equal(e.error, 'room duel-1 is of type arena, not duel');
    assert.equal(e.message, 'matchmaking refused: HTTP 409: room duel-1 is of type arena, not duel');
    assert.equal(e.retryAfterS, null);
    return true;
  });
  await assert.rejects(matchmake('http://h', { room: 'duel-1', fetch: mm.fetch }), { status: 503, retryAfterS: 1, error: 'matchmaking unavailable: redis unreachable' });
  await assert.rejects(matchmake('http://h', { room: 'duel-1', fetch: mm.fetch }), { status: 404, error: 'not json' });
  await assert.rejects(matchmake('http://h', { room: 'duel-1', fetch: mm.fetch }), { name: 'TypeError', message: /not a matchmaking answer/ });
  const asks = mm.asked.length;
  await assert.rejects(matchmake('http://h', { fetch: mm.fetch }), { name: 'TypeError', message: /a room, a type, or both/ });
  await assert.rejects(matchmake('http://h', { room: 'a b', fetch: mm.fetch }), RangeError);
  await assert.rejects(matchmake('http://h', { type: '', fetch: mm.fetch }), TypeError);
  await assert.rejects(matchmake('http://h', { room: 'a', player: 'no spaces', fetch: mm.fetch }), { name: 'RangeError', message: /bad player id/ });
  await assert.rejects(matchmake('http://h', { room: 'a', ticket: 'x'.repeat(257), fetch: mm.fetch }), RangeError);
  assert.equal(mm.asked.length, asks, 'nothing was sent');
});

/** A client made by joinOrCreate on fake sockets and a fake matchmaker; `unix` is its wall clock (s). */
function matchmade(target, answers, options = {}) {
  FakeSocket.all = [];
  const mm = fakeMatchmaker(...answers);
  const clock = { ms: 1000, unix: 1767225500 };
  const client = joinOrCreate('ws://front:7000/ws', target, {
    WebSocket: FakeSocket,
    fetch: mm.fetch,
    now: () => clock.ms,
    unixNowMs: () => clock.unix * 1000,
    random: () => 0.5,
    name: 'ann',
    ...options,
    reconnect: { initialDelayMs: 10, factor: 2, maxDelayMs: 40, jitter: 0.5, stableAfterMs: 5000, ...options.reconnect },
  });
  const closes = [];
  client.on('close', (e) => closes.push(e));
  return { client, clock, closes, mm, socket: () => FakeSocket.all.at(-1) };
}

test('joinOrCreate: matchmakes, then connects to the owner\'s URL (seat ticket in it, none in Hello); a drop resumes there without asking again', async () => {
  const storage = new MemoryStorage();
  const h = matchmade('duel-1', [[200, seat()]], { storage, player: 'ann', ticket: 'v1.ignored-by-hello' });
  const seats = [];
  h.client.on('matchmade', (s) => seats.push(s.process));
  assert.equal(h.client.state, 'connecting');
  assert.equal(h.client.url, null, 'no URL before the matchmaker answers');
  const ws = await nthSocket(1);
  assert.equal(ws.url, A_URL);
  assert.equal(h.client.url, A_URL);
  assert.equal(h.client.matchmade.process, 'a');
  assert.deepEqual(seats, ['a']);
  assert.equal(h.mm.asked[0].url, 'http://front:7000/matchmake');
  assert.deepEqual(h.mm.asked[0].body, { room: 'duel-1', player: 'ann', ticket: 'v1.ignored-by-hello' });
  live(h, ws);
  assert.deepEqual(ws.sent[0], { type: 'Hello', protocol: 4, name: 'ann', ticket: '', resume: null });
  assert.deepEqual([...storage.map.keys()], ['tickcast.session ws://10.0.0.1:9101/ws/duel-1?type=arena'], 'stored without the seat ticket');

  ws.drop(); // lost: straight back to the same process, the same seat
  const next = await nthSocket(2);
  assert.equal(next.url, A_URL);
  next.open();
  assert.deepEqual(next.sent[0].resume, { token: TOKEN, tick: 100 });
  assert.equal(h.client.stats.matchmakes, 1, 'the matchmaker was not asked again');
  h.client.close();
});

test('joinOrCreate on a standalone server: the path it answers, resolved against the base; Hello carries the ticket', async () => {
  const h = matchmade({ type: 'arena' }, [[200, STANDALONE]], { ticket: () => Promise.resolve('v1.ann.9.sig') });
  const ws = await nthSocket(1);
  assert.equal(ws.url, 'ws://front:7000/ws/duel-1?type=arena');
  assert.deepEqual(h.mm.asked[0].body, { type: 'arena', player: h.client.player, ticket: 'v1.ann.9.sig' });
  assert.match(h.client.player, /^guest-[0-9a-f]{16}$/, 'no player option: a guest id');
  ws.open();
  assert.equal(ws.sent[0].ticket, 'v1.ann.9.sig', 'no seat ticket in the URL: the ticket goes in Hello');
  h.client.close();
  assert.throws(() => joinOrCreate('ws://h/ws', 'no spaces', { WebSocket: FakeSocket }), RangeError);
  assert.throws(() => joinOrCreate('ws://h/ws', {}, { WebSocket: FakeSocket }), TypeError);
});

test('joinOrCreate: an expired seat, or an upgrade that failed, asks the matchmaker again before reconnecting', async () => {
  const B_SEAT = seat({ process: 'b', connect: 'ws://10.0.0.2:9102/ws/duel-1?type=arena&ticket=s1.b2', ticket: 's1.b2', expires_unix_s: 1767225700 });
  const A_AGAIN = seat({ connect: 'ws://10.0.0.1:9101/ws/duel-1?type=arena&ticket=s1.a2', ticket: 's1.a2', expires_unix_s: 1767225650 });
  const storage = new MemoryStorage();
  const h = matchmade('duel-1', [[200, seat()], [200, A_AGAIN], [200, B_SEAT]], { storage });
  live(h, await nthSocket(1));
  // The seat ticket expires (30 s on the server); the next reconnect gets a fresh one from the same process.
  h.clock.unix = 1767225599;
  h.socket().drop();
  const second = await nthSocket(2);
  assert.equal(h.client.stats.matchmakes, 2);
  assert.equal(second.url, 'ws://10.0.0.1:9101/ws/duel-1?type=arena&ticket=s1.a2');
  second.open();
  assert.deepEqual(second.sent[0].resume, { token: TOKEN, tick: 100 }, 'the same session: the URL differs only in its ticket');
  second.receive(welcome);
  second.receive(joined(3, true));
  // The process goes away: the upgrade fails (never opens), so the next attempt asks where the room is now.
  second.drop();
  (await nthSocket(3)).drop();
  assert.equal(h.client.stats.matchmakes, 2, 'the first retry goes straight back');
  const fourth = await nthSocket(4);
  assert.equal(h.client.stats.matchmakes, 3);
  assert.equal(fourth.url, 'ws://10.0.0.2:9102/ws/duel-1?type=arena&ticket=s1.b2');
  fourth.open();
  assert.equal(fourth.sent[0].resume, null, "a's token means nothing on b: b's session (none) is taken");
  assert.equal(h.client.world.tick, null, "a's mirror is dropped");
  h.client.close();
});

test('joinOrCreate: 4009 (hosted elsewhere) asks the matchmaker again once; a second 4009 in a row ends the client', async () => {
  const B_SEAT = seat({ process: 'b', connect: 'ws://10.0.0.2:9102/ws/duel-1?type=arena&ticket=s1.b', ticket: 's1.b' });
  const storage = new MemoryStorage();
  const h = matchmade('duel-1', [[200, seat()], [200, B_SEAT]], { storage });
  live(h, await nthSocket(1));
  const sessions = () => [...storage.map.keys()].filter((k) => k.startsWith('tickcast.session '));
  assert.equal(sessions().length, 1);
  h.socket().drop(4009, 'room duel-1 is hosted by another process: ask the matchmaker again', true);
  assert.equal(h.client.state, 'reconnecting');
  assert.equal(h.client.lastClose.meaning, 'the room is hosted by another process');
  assert.deepEqual(sessions(), [], 'that copy of the room is gone, and the player in it');
  const ws = await nthSocket(2);
  assert.equal(ws.url, 'ws://10.0.0.2:9102/ws/duel-1?type=arena&ticket=s1.b');
  assert.equal(h.client.stats.relocations, 1);
  ws.open();
  assert.equal(ws.sent[0].resume, null);
  ws.drop(4009, 'room duel-1 is hosted by another process: ask the matchmaker again', true);
  assert.equal(h.client.state, 'closed', 'asked once already');
  assert.equal(h.closes.at(-1).reconnectInMs, null);
  assert.equal(h.client.stats.matchmakes, 2);
  assert.equal(h.mm.asked[1].body.player, h.mm.asked[0].body.player, 'asked again as the same player');

  // After a stable connection a later 4009 gets its one retry again.
  const again = matchmade('duel-1', [[200, seat()]]);
  live(again, await nthSocket(1));
  again.socket().drop(4009, 'elsewhere', true);
  live(again, await nthSocket(2));
  again.clock.ms += 5000;
  again.socket().drop(4009, 'elsewhere', true);
  assert.equal(again.client.state, 'reconnecting');
  await nthSocket(3);
  again.client.close();

  // A client without a matchmaker cannot ask where the room is: 4009 ends it.
  assert.equal(CloseCode.HOSTED_ELSEWHERE, 4009);
  const plain = harness({ room: 'duel-1' });
  live(plain).drop(4009, 'elsewhere', true);
  assert.equal(plain.client.state, 'closed');
});

test('joinOrCreate: a matchmaker that refuses (4xx) ends the client; 503 and no answer are retried with backoff', async () => {
  const refused = matchmade({ room: 'duel-1', type: 'duel' }, [[409, { error: 'room duel-1 is of type arena, not duel' }]]);
  await within(new Promise((resolve) => refused.client.on('state', (e) => e.state === 'closed' && resolve())), 'the client to end', 5000);
  assert.equal(FakeSocket.all.length, 0, 'no socket');
  assert.deepEqual(
    { code: refused.client.lastClose.code, reason: refused.client.lastClose.reason, meaning: refused.client.lastClose.meaning },
    { code: 0, reason: 'HTTP 409: room duel-1 is of type arena, not duel', meaning: 'the matchmaker refused' },
  );
  assert.deepEqual(refused.mm.asked[0].body, { room: 'duel-1', type: 'duel', player: refused.client.player });

  const errors = [];
  const busy = matchmade('duel-1', [
    [503, { error: 'matchmaking unavailable: redis unreachable' }, { 'retry-after': '1' }],
    ['throw', 'Failed to fetch'],
    ['hang'],
    [200, seat()],
  ], { matchmakeTimeoutMs: 20 });
  busy.client.on('error', (e) => errors.push(e.error.message));
  const ws = await nthSocket(1);
  assert.equal(ws.url, A_URL);
  assert.equal(busy.client.stats.matchmakes, 4);
  assert.deepEqual(busy.closes.map((c) => [c.code, c.reason, c.meaning, c.reconnectInMs]), [
    [0, 'HTTP 503: matchmaking unavailable: redis unreachable', 'matchmaking failed', 8],
    [0, 'Failed to fetch', 'matchmaking failed', 15],
    [0, 'no matchmaking answer within 20 ms', 'matchmaking failed', 30],
  ]);
  assert.equal(errors.length, 3);
  assert.ok(busy.mm.asked[2].signal.aborted, 'the request that hung was aborted');
  busy.client.close();
});

test('joinOrCreate: a reload is the same guest player, and where the matchmaker sends it to the same process it resumes', async () => {
  const storage = new MemoryStorage();
  const first = matchmade('duel-1', [[200, seat()]], { storage });
  live(first, await nthSocket(1));
  const guest = first.mm.asked[0].body.player;
  assert.match(guest, /^guest-[0-9a-f]{16}$/);
  assert.equal(storage.getItem('tickcast.player'), guest, "kept in the tab's storage");
  first.client.close(4999, 'page gone');
  const reloaded = matchmade('duel-1', [[200, seat({ connect: 'ws://10.0.0.1:9101/ws/duel-1?type=arena&ticket=s1.new', ticket: 's1.new' })]], { storage });
  const ws = await nthSocket(1);
  assert.equal(reloaded.mm.asked[0].body.player, guest, 'the seat ticket will name the same player, so the resume is allowed');
  ws.open();
  assert.deepEqual(ws.sent[0].resume, { token: TOKEN, tick: 0 });
  reloaded.client.close();
  assert.deepEqual([...storage.map.keys()], ['tickcast.player'], 'close() says goodbye: the session goes, the guest id stays');
  const named = matchmade('duel-1', [[200, seat()]], { storage, player: 'ann' });
  await nthSocket(1);
  assert.equal(named.mm.asked[0].body.player, 'ann', 'the player option wins');
  named.client.close();
});
