// The SDK's Client against a scripted fake WebSocket: what it sends, what it makes of what it receives,
// and when it reconnects. Time for RTT, stability and silence is injected (`now`); reconnect delays are
// real but a few ms, and every wait is capped.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Client,
  CloseCode,
  FATAL_CLOSE_CODES,
  HttpError,
  PROTOCOL_VERSION,
  checkRoomName,
  connect,
  decodeClientMsg,
  describeClose,
  encodeServerMsg,
  getRoom,
  isRoomName,
  listRooms,
  roomUrl,
  roomsUrl,
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

const welcome = { type: 'Welcome', protocol: 3, tickHz: 20, tick: 99, connectionId: 7, room: 'default' };
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
  assert.deepEqual(ws.sent[0], { type: 'Hello', protocol: 3, name: 'ann', ticket: '', resume: null });
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
  assert.deepEqual(ws.sent[0], { type: 'Watch', protocol: 3, ticket: 'v1.bob.1.sig' });
  assert.ok(ws.sent.every((m) => m.type !== 'Hello'));
  ws.receive(welcome);
  ws.receive({ type: 'Full', tick: 100, entities: [[1, { x: 1, y: 1, seq: 0 }]] });
  assert.equal(h.client.sendInput({ dx: 1, dy: 0 }), 0, 'a spectator has no entity');
  ws.drop();
  const next = await nthSocket(2);
  next.open();
  assert.deepEqual(next.sent[0], { type: 'Watch', protocol: 3, ticket: 'v1.bob.1.sig' });
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
  assert.deepEqual(next.sent[0], { type: 'Hello', protocol: 3, name: 'ann', ticket: '', resume: { token: TOKEN, tick: 101 } });
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

// ---- protocol 3: versions and rooms -------------------------------------------------------------------

test('the client speaks protocol 3; a server of another version ends it, even when its Welcome does not decode', () => {
  assert.equal(PROTOCOL_VERSION, 3);
  for (const bytes of [
    encodeServerMsg({ ...welcome, protocol: 4 }), // decodes, says 4
    Uint8Array.from([0, 2, 20, 99, 7]), // a v2 Welcome: no room, so it does not decode as v3
  ]) {
    const h = harness();
    const ws = h.socket();
    ws.open();
    ws.onmessage({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
    assert.equal(h.client.state, 'closed', 'no reconnect: the server would say the same again');
    assert.equal(h.closes[0].reconnectInMs, null);
    assert.match(h.client.lastClose.reason, /^server speaks protocol [24], this client 3$/);
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
