// The arena page over TLS: the real binary serving https:// and wss:// (`--tls-cert`, `--tls-key`) with a
// self-signed certificate made at test time by the `openssl` CLI in a temporary directory (nothing is
// committed), and headless Chromium loading the page over https and playing over wss. Chromium refuses
// the certificate until the context is told to accept it (ignoreHTTPSErrors); the harness's own requests
// trust exactly that certificate. `?room=` goes through the matchmaker over https and plays over the
// wss:// URL it answers. Assertions are on the SDK's mirrored state, as in browser.test.mjs.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  WAIT_MAX_MS,
  artifactPath,
  launchBrowser,
  makeTestCert,
  openArena,
  snapshot,
  startServer,
  waitFor,
} from './harness.mjs';

let cert;
let server;
let browser;

before(async () => {
  cert = makeTestCert();
  [server, browser] = await Promise.all([startServer({ tls: cert }), launchBrowser()]);
});

after(async () => {
  try {
    await browser?.close();
    if (server) assert.equal(await server.stop(), 0, `server did not drain cleanly:\n${server.stderr()}`);
  } finally {
    cert?.remove();
  }
});

test('the binary says https:// and wss://, serves the page over TLS and refuses plain HTTP on its port', async () => {
  assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
  assert.equal(server.wsScheme, 'wss');
  assert.match(server.stderr(), /listening on https:\/\/127\.0\.0\.1:\d+ \(WebSockets at wss:\/\/127\.0\.0\.1:\d+\/ws\/ROOM/);
  // Over https, trusting the test certificate and nothing else.
  const page = await server.get('/');
  assert.equal(page.status, 200);
  assert.match(page.type, /^text\/html/);
  assert.equal((await server.get('/healthz')).status, 200);
  // Plain HTTP to the TLS port: a plain 400 that says so, and the connection closed.
  const plain = await fetch(`http://127.0.0.1:${server.port}/healthz`, { signal: AbortSignal.timeout(WAIT_MAX_MS) });
  assert.equal(plain.status, 400);
  assert.match(await plain.text(), /this port speaks TLS/);
});

test('Chromium refuses the page while the certificate is not trusted', async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await assert.rejects(page.goto(server.url, { timeout: WAIT_MAX_MS }), /ERR_CERT_AUTHORITY_INVALID/);
  } finally {
    await context.close();
  }
});

test('the page loaded over https joins over wss, moves its own entity and verifies every checksum', async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 900 } });
  try {
    const { page, errors } = await openArena(browser, server, { context });
    assert.equal(await page.evaluate(() => location.protocol), 'https:');
    const start = await snapshot(page);
    assert.match(start.url, /^wss:\/\/127\.0\.0\.1:\d+\/ws/, 'the page derives wss:// from https://');
    assert.equal(start.state, 'open');
    assert.ok(start.ids.includes(start.entity), 'own entity is in the mirrored world');
    assert.ok(start.ids.length >= 21, `20 wanderers and the player, saw ${start.ids.length}`);

    // An arrow key moves the own entity (away from the nearer wall), as the server mirrors it back.
    const [key, sign] = start.own.x < 4000 ? ['ArrowRight', 1] : ['ArrowLeft', -1];
    await page.keyboard.down(key);
    await waitFor(
      page,
      `${key} to move the own entity over wss`,
      ([x0, sign]) => (window.tickcast.client.own.x - x0) * sign >= 400,
      [start.own.x, sign],
    );
    await page.keyboard.up(key);
    await waitFor(page, 'the stop to be acknowledged', () => {
      const { client, game } = window.tickcast;
      return client.own.seq === client.lastInputSeq && game.prediction.pending.length === 0;
    });
    const moved = await snapshot(page);
    assert.ok(moved.lastInputSeq > start.lastInputSeq, 'inputs were sent');
    assert.equal(moved.own.y, start.own.y, 'a horizontal key moves only x');

    await waitFor(page, 'three more verified checksums', (n) => window.tickcast.client.stats.checksumsVerified >= n + 3,
      moved.stats.checksumsVerified);
    await waitFor(page, 'a Pong (RTT measured over wss)', () => window.tickcast.client.stats.srttMs !== null);
    await page.screenshot({ path: artifactPath('arena-tls.png') });
    const end = await snapshot(page);
    assert.equal(end.stats.checksumFailures, 0);
    assert.equal(end.stats.mirrorErrors, 0);
    assert.equal(end.stats.decodeErrors, 0);
    assert.equal(end.stats.connects, 1, 'no reconnects');
    assert.deepEqual(errors, []);

    // The server completed the page's TLS handshakes (the page and the WebSocket at least), and counted
    // the untrusted attempt of the test before as a failed one (by whatever reason Chromium gave).
    const m = await server.metrics();
    assert.ok(m.get('tickcast_tls_handshakes_total') >= 2, JSON.stringify([...m]));
    const failed = [...m].filter(([name]) => name.startsWith('tickcast_tls_handshake_failures_total{'));
    assert.ok(failed.reduce((sum, [, n]) => sum + n, 0) >= 1, JSON.stringify(failed));
    assert.equal(m.get('tickcast_connections_closed_total{reason="malformed_message"}') ?? 0, 0);
  } finally {
    await context.close();
  }
});

test('?room= matchmakes over https (POST /matchmake) and plays in that room over the wss:// URL it answers', async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 900 } });
  try {
    const { page, errors } = await openArena(browser, server, { context, query: '?room=tls-1' });
    await waitFor(page, 'a verified checksum in tls-1', () => window.tickcast.client.stats.checksumsVerified >= 1);
    const s = await snapshot(page);
    assert.equal(s.room, 'tls-1');
    assert.match(s.url, new RegExp(`^wss://127\\.0\\.0\\.1:${server.port}/ws/tls-1(\\?|$)`), s.url);
    assert.ok(s.ids.includes(s.entity));
    assert.equal(s.stats.checksumFailures, 0);
    // The SDK asked the matchmaker (over https, the page's origin) and holds its answer: the room, and
    // the wss:// URL it connected to.
    const matchmade = await page.evaluate(() => window.tickcast.client.matchmade);
    assert.equal(matchmade?.room, 'tls-1', JSON.stringify(matchmade));
    assert.equal(matchmade.url, s.url, JSON.stringify(matchmade));
    // The server, asked over https, lists the room with its one player.
    const room = await server.get('/rooms/tls-1');
    assert.equal(room.status, 200, room.text);
    assert.equal(JSON.parse(room.text).players, 1, room.text);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
