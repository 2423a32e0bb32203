// The SDK's Client against a scripted fake WebSocket: what it sends, what it makes of what it receives,
// and when it reconnects. Time for RTT, stability and silence is injected (`now`); reconnect delays are
// real but a few ms, and every wait is capped.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Client, decodeClientMsg, encodeServerMsg } from '../tickcast.js';
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

const welcome = { type: 'Welcome', protocol: 1, tickHz: 20, tick: 99, connectionId: 7 };

/** Open, welcomed, joined as entity 3, holding tick 100 with entities 1 and 3. */
function live(h) {
  const ws = h.socket();
  ws.open();
  ws.receive(welcome);
  ws.receive({ type: 'Joined', entity: 3 });
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
  assert.deepEqual(ws.sent[0], { type: 'Hello', protocol: 1, name: 'ann' });
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
  ws.receive({ type: 'Joined', entity: 3 });
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
  const next = await nthSocket(2);
  next.open();
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
  for (const code of [1002, 1003, 1007, 1008, 1009, 4000]) {
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
