// The arena page in headless Chromium against the real server binary. Assertions are on the SDK's mirrored
// state (window.tickcast), never on pixels; the screenshot is an artifact for people.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { artifactPath, launchBrowser, openArena, snapshot, startServer, waitFor } from './harness.mjs';

let server;
let browser;
/** Pages opened against the shared server, checked for checksum failures at the end. */
const opened = [];

before(async () => {
  [server, browser] = await Promise.all([startServer(), launchBrowser()]);
});

after(async () => {
  await browser?.close();
  if (server) assert.equal(await server.stop(), 0, `server did not drain cleanly:\n${server.stderr()}`);
});

async function arena() {
  const page = await openArena(browser, server);
  opened.push(page);
  return page;
}

/** Holds `key` until the own entity moved `distanceQ` quarter units along `axis` in direction `sign`. */
async function hold(page, key, axis, sign, distanceQ) {
  const from = (await snapshot(page)).own[axis];
  await page.keyboard.down(key);
  await waitFor(
    page,
    `${key} to move the own entity`,
    ([axis, from, sign, distanceQ]) => {
      const own = window.tickcast.client.own;
      return own && (own[axis] - from) * sign >= distanceQ;
    },
    [axis, from, sign, distanceQ],
  );
  await page.keyboard.up(key);
}

/** In the page: the stop input was sent, the server applied it, and nothing is in flight. */
function stoppedAndAcked() {
  const { client, game } = window.tickcast;
  const { dx, dy } = game.prediction.lastSent;
  return dx === 0 && dy === 0 && client.own.seq === client.lastInputSeq && game.prediction.pending.length === 0;
}

/** A key that moves the own entity away from the nearest wall on x. */
function awayFromWall(x) {
  return x < 4000 ? { key: 'ArrowRight', sign: 1 } : { key: 'ArrowLeft', sign: -1 };
}

test('the page is served by the binary, connects, joins and mirrors the wanderers', async () => {
  const res = await fetch(server.url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/html/);
  const sdk = await fetch(new URL('/tickcast.js', server.url));
  assert.match(sdk.headers.get('content-type'), /^text\/javascript/);

  const { page, errors } = await arena();
  assert.equal(await page.title(), 'tickcast arena');
  const s = await snapshot(page);
  assert.equal(s.state, 'open');
  assert.ok(s.ids.includes(s.entity), 'own entity is in the mirrored world');
  assert.ok(s.ids.length >= 21, `20 wanderers and the player, saw ${s.ids.length}`);
  // Wanderers move: some entity changes within a few ticks.
  await waitFor(
    page,
    'a wanderer to move',
    (before) => {
      const w = window.tickcast.client.world;
      return before.some(([id, x, y]) => w.entities.get(id) && (w.entities.get(id).x !== x || w.entities.get(id).y !== y));
    },
    await page.evaluate(() => [...window.tickcast.client.world.entities].map(([id, s]) => [id, s.x, s.y])),
  );
  await waitFor(page, 'a Pong (RTT measured)', () => window.tickcast.client.stats.srttMs !== null);
  await waitFor(page, 'the net panel to show the tick', () => /\d/.test(document.querySelector('[data-k="tick"]').textContent));
  assert.deepEqual(errors, []);
});

test('arrow keys move the own entity; prediction settles on the acknowledged server state', async () => {
  const { page, errors } = opened[0] ?? (await arena());
  const start = await snapshot(page);
  const { key, sign } = awayFromWall(start.own.x);
  await hold(page, key, 'x', sign, 400);

  // After release the last input (the stop) is acknowledged and nothing is in flight: the prediction is
  // exactly the server's state, and the entity stands still.
  await waitFor(page, 'the stop input to be acknowledged', stoppedAndAcked);
  const stopped = await snapshot(page);
  assert.ok(stopped.lastInputSeq > start.lastInputSeq, 'inputs were sent');
  assert.equal(stopped.own.y, start.own.y, 'a horizontal key moves only x');
  assert.ok((stopped.own.x - start.own.x) * sign >= 400);
  assert.ok(Math.abs(stopped.predicted.x - stopped.own.x) < 1, JSON.stringify(stopped));
  assert.ok(Math.abs(stopped.predicted.y - stopped.own.y) < 1, JSON.stringify(stopped));
  assert.ok(stopped.stats.inputAckMs !== null, 'input -> ack latency measured');
  await waitFor(page, 'three more ticks', (t) => window.tickcast.client.world.tick >= t + 3, stopped.tick);
  assert.deepEqual((await snapshot(page)).own, stopped.own, 'it stays where it stopped');

  // Down, for a picture with some motion in it.
  await page.keyboard.down(stopped.own.y < 4000 ? 'ArrowDown' : 'ArrowUp');
  await waitFor(page, 'a few ticks of motion', (t) => window.tickcast.client.world.tick >= t + 10, stopped.tick);
  await page.screenshot({ path: artifactPath('arena.png') });
  await page.keyboard.up(stopped.own.y < 4000 ? 'ArrowDown' : 'ArrowUp');
  assert.deepEqual(errors, []);
});

test('a touch drag on the arena steers the own entity', async () => {
  const { page, context, errors } = await openArena(browser, server, { hasTouch: true });
  const start = await snapshot(page);
  const box = await page.locator('#arena').boundingBox();
  const [x, y] = [box.x + box.width / 2, box.y + box.height / 2];
  const sign = start.own.y < 4000 ? 1 : -1;
  // Real touch input, as a phone sends it: touchstart, a drag down (or up), and touchend at the end.
  const cdp = await context.newCDPSession(page);
  const touch = (type, points) => cdp.send('Input.dispatchTouchEvent', { type, touchPoints: points });
  await touch('touchStart', [{ x, y }]);
  await touch('touchMove', [{ x, y: y + 60 * sign }]);
  await waitFor(
    page,
    'the drag to move the own entity',
    ([y0, sign]) => (window.tickcast.client.own.y - y0) * sign >= 200,
    [start.own.y, sign],
  );
  await touch('touchEnd', []);
  await waitFor(page, 'the stop after the drag', stoppedAndAcked);
  const moved = await snapshot(page);
  assert.ok(Math.abs(moved.own.x - start.own.x) <= 1, 'a vertical drag moves (nearly) only y');
  assert.deepEqual(errors, []);
  await context.close();
});

test('two pages see each other, and one sees the other move', async () => {
  const a = opened[0] ?? (await arena());
  const b = await arena();
  const [sa, sb] = [await snapshot(a.page), await snapshot(b.page)];
  assert.notEqual(sa.entity, sb.entity);
  await waitFor(a.page, 'A to mirror B', (id) => window.tickcast.client.world.entities.has(id), sb.entity);
  await waitFor(b.page, 'B to mirror A', (id) => window.tickcast.client.world.entities.has(id), sa.entity);

  const bStart = await a.page.evaluate((id) => ({ ...window.tickcast.client.world.entities.get(id) }), sb.entity);
  const { key, sign } = awayFromWall(bStart.x);
  await b.page.keyboard.down(key);
  await waitFor(
    a.page,
    "A to see B's entity move",
    ([id, x0, sign]) => (window.tickcast.client.world.entities.get(id).x - x0) * sign >= 200,
    [sb.entity, bStart.x, sign],
  );
  await b.page.keyboard.up(key);
  // Both mirrors agree on B's entity once they hold the same tick.
  await waitFor(b.page, 'B to stop', stoppedAndAcked);
  const tick = (await snapshot(b.page)).tick + 2;
  const at = (page) =>
    waitFor(page, `tick ${tick}`, (t) => window.tickcast.client.world.tick >= t, tick).then(() =>
      page.evaluate((id) => ({ ...window.tickcast.client.world.entities.get(id) }), sb.entity),
    );
  assert.deepEqual(await at(a.page), await at(b.page));
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test('?watch spectates: Watch instead of Hello, the world without an entity', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}?watch`);
  await waitFor(page, 'the spectator to mirror the world', () => {
    const c = window.tickcast?.client;
    return c && c.state === 'open' && c.world.entities.size >= 21 && c.stats.checksumsVerified >= 1;
  });
  const s = await snapshot(page);
  assert.equal(s.entity, null);
  assert.equal(s.stats.checksumFailures, 0);
  assert.match(await page.locator('#status').textContent(), /watching/);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the mirror never fails a checksum', async () => {
  assert.ok(opened.length >= 2);
  for (const { page } of opened) {
    await waitFor(page, 'two more verified checksums', (n) => window.tickcast.client.stats.checksumsVerified >= n + 2,
      (await snapshot(page)).stats.checksumsVerified);
    const { stats } = await snapshot(page);
    assert.equal(stats.checksumFailures, 0);
    assert.equal(stats.mirrorErrors, 0);
    assert.equal(stats.decodeErrors, 0);
    assert.equal(stats.connects, 1, 'no reconnects on a healthy server');
  }
});

test('the page reconnects by itself after the server restarts, with the close reason surfaced', async () => {
  const first = await startServer();
  let second;
  try {
    const { page, errors, context } = await openArena(browser, first);
    const before = await snapshot(page);
    await page.evaluate(() => {
      window.closes = [];
      window.tickcast.client.on('close', (e) => window.closes.push(e));
    });
    assert.equal(await first.stop(), 0, 'SIGTERM drains and exits 0');

    await waitFor(page, 'the page to see the 1001 close', () => window.tickcast.client.lastClose?.code === 1001);
    const down = await snapshot(page);
    assert.notEqual(down.state, 'open');
    assert.equal(down.entity, null);
    assert.equal(down.lastClose.meaning, 'the server is shutting down');
    assert.equal(down.lastClose.reason, 'server shutting down');
    const [close] = await page.evaluate(() => window.closes);
    assert.equal(close.code, 1001);
    assert.ok(close.reconnectInMs > 0, 'a reconnect is scheduled, after a delay');
    await page.screenshot({ path: artifactPath('arena-reconnecting.png') });

    second = await startServer({ port: first.port });
    await waitFor(page, 'the page to reconnect and rejoin', () => {
      const c = window.tickcast.client;
      return c.state === 'open' && c.stats.connects >= 2 && c.own !== undefined && c.world.tick !== null;
    });
    const n = (await snapshot(page)).stats.checksumsVerified;
    await waitFor(page, 'a checksum on the new connection', (n) => window.tickcast.client.stats.checksumsVerified > n, n);
    const back = await snapshot(page);
    assert.ok(back.stats.reconnectAttempts >= 1);
    // The new server never heard of the old player: the resume is refused and the page plays a new one.
    assert.equal(back.stats.resumesRefused, 1);
    assert.equal(back.stats.resumes, 0);
    assert.equal(back.stats.checksumFailures, 0);
    assert.equal(back.stats.mirrorErrors, 0);
    assert.ok(back.ids.includes(back.entity));
    const log = JSON.stringify(await page.evaluate(() => window.closes));
    assert.equal(back.lastClose.code, 1001, `refused retries do not hide why it closed: ${log}`);
    assert.equal(back.lastFailedAttempt, null);
    assert.ok(before.stats.connects === 1);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await first.stop();
    if (second) assert.equal(await second.stop(), 0);
  }
});
