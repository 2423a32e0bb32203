// The live dashboard (GET /dashboard) in headless Chromium while the bot swarm plays: the numbers the page
// shows are those of /metrics and GET /rooms taken right after (equal for what steady bots do not move,
// no larger for counters that only grow), the charts fill from the page's own history, a missing or
// wrong token is 401, and the page says "disconnected" once the server is gone. Screenshot:
// test-artifacts/dashboard.png.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { artifactPath, launchBrowser, rooms, startBots, startServer, until, waitFor } from './harness.mjs';

const TOKEN = 'dash-test-token-0123456789';
// Three rooms of two bots each, plus the default room (empty: the bots name their rooms).
const ROOMS = 3;
const ROOM_SIZE = 2;
const BOTS = ROOMS * ROOM_SIZE;

let dir;
let server;
let bots;
let browser;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'tickcast-dashboard-'));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const args = ['--dashboard', 'on', '--dashboard-token-file', tokenFile];
  [server, browser] = await Promise.all([startServer({ npcs: 4, args }), launchBrowser()]);
  bots = startBots(server, [
    '--rooms', String(ROOMS), '--room-size', String(ROOM_SIZE), '--duration', '600s', '--connect-rate', '20',
  ]);
});

after(async () => {
  await bots?.stop();
  await browser?.close();
  await server?.stop().catch(() => {});
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** What the page shows: every number by its id (data-value), the room rows, the totals and the closes. */
function shown(page) {
  return page.evaluate(() => {
    const value = (id) => Number(document.getElementById(id).dataset.value);
    const ids = ['connections-open', 'websockets-open', 'players', 'players-detached', 'spectators', 'rooms-open', 'slow-consumer-closes'];
    const rows = (tbody, key) =>
      Object.fromEntries([...document.querySelectorAll(`#${tbody} tr[data-${key}]`)].map((tr) => [tr.dataset[key], Number(tr.dataset.value)]));
    return {
      numbers: Object.fromEntries(ids.map((id) => [id, value(id)])),
      text: Object.fromEntries(ids.map((id) => [id, document.getElementById(id).textContent])),
      rooms: [...document.querySelectorAll('#rooms tr[data-room]')].map((tr) => ({
        name: tr.dataset.room,
        players: Number(tr.dataset.players),
        spectators: Number(tr.dataset.spectators),
        tickP99Us: tr.dataset.tickP99Us,
        text: tr.cells[0].textContent,
      })),
      totals: rows('totals', 'total'),
      closes: rows('closes', 'reason'),
      status: document.getElementById('status').dataset.state,
      points: ['chart-tick', 'chart-bytes'].map((id) => Number(document.getElementById(id).dataset.points)),
    };
  });
}

test('without the token, or with a wrong one, the dashboard is 401', async () => {
  for (const p of ['/dashboard', '/dashboard/data', '/dashboard/data?token=wrong-token-0123456789']) {
    const res = await fetch(new URL(p, server.url));
    assert.equal(res.status, 401, p);
    assert.match(await res.text(), /^401 Unauthorized: (dashboard token required|wrong dashboard token)/, p);
  }
  const res = await fetch(new URL('/dashboard/data', server.url), { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  assert.equal(typeof (await res.json()).players, 'number');
});

test('the dashboard shows what /metrics says while bots play', async () => {
  // The bots are all in: every one a player, in its room.
  await until('every bot to play', async () => {
    const m = await server.metrics();
    return m.get('tickcast_players') === BOTS && m.get('tickcast_rooms_open') === ROOMS + 1;
  });

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  const answer = await page.goto(`${server.url}dashboard?token=${TOKEN}`);
  assert.equal(answer.status(), 200);

  // Live, with a few polls behind it (the charts need two snapshots per point) and every room listed.
  await waitFor(page, 'the dashboard to show the bots and five chart points', (n) => {
    const players = document.getElementById('players').dataset.value;
    const points = Number(document.getElementById('chart-bytes').dataset.points);
    return document.getElementById('status').dataset.state === 'live' && players === String(n) && points >= 5;
  }, BOTS);

  const s = await shown(page);
  const m = await server.metrics();
  const list = await rooms(server);
  const metric = (name) => {
    assert.ok(m.has(name), `${name} not in /metrics`);
    return m.get(name);
  };

  assert.equal(s.status, 'live');
  // Gauges steady bots do not move: equal.
  assert.equal(s.numbers.players, metric('tickcast_players'));
  assert.equal(s.numbers['rooms-open'], metric('tickcast_rooms_open'));
  assert.equal(s.numbers['websockets-open'], metric('tickcast_websockets_open'));
  assert.equal(s.numbers['players-detached'], metric('tickcast_players_detached'));
  assert.equal(s.numbers.spectators, 0);
  // Every WebSocket is a connection; the page's own request was one more.
  assert.ok(s.numbers['connections-open'] > s.numbers['websockets-open'], JSON.stringify(s.numbers));
  // The text is the number.
  assert.equal(s.text.players, String(BOTS));
  assert.equal(s.text['rooms-open'], String(ROOMS + 1));

  // The rooms: those of GET /rooms, with its player counts, busiest first, each with a tick p99.
  const listed = Object.fromEntries(list.rooms.map((r) => [r.name, r.players]));
  assert.equal(s.rooms.length, ROOMS + 1);
  for (const room of s.rooms) {
    assert.equal(room.players, listed[room.name], `room ${room.name}`);
    assert.equal(room.text, room.name);
    assert.match(room.tickP99Us, /^\d+$/, `room ${room.name}'s tick p99`);
  }
  assert.deepEqual(s.rooms.map((r) => r.name), ['bots-0', 'bots-1', 'bots-2', 'default']);
  assert.deepEqual(s.rooms.map((r) => r.players), [ROOM_SIZE, ROOM_SIZE, ROOM_SIZE, 0]);

  // Counters only grow: what the page shows is at most what /metrics says just after, and not nothing.
  for (const [total, name] of [
    ['bytes_out', 'tickcast_bytes_out_total'],
    ['frames_out', 'tickcast_frames_out_total'],
    ['ticks', 'tickcast_ticks_total'],
    ['connections', 'tickcast_connections_total'],
    ['slow_consumer_closes', 'tickcast_slow_consumer_closes_total'],
  ]) {
    assert.ok(s.totals[total] <= metric(name), `${total}: ${s.totals[total]} > ${metric(name)}`);
  }
  assert.ok(s.totals.bytes_out > 0 && s.totals.frames_out > 0 && s.totals.ticks > 0);
  assert.equal(s.numbers['slow-consumer-closes'], s.totals.slow_consumer_closes);
  // The closes the page lists (those above zero: at least its own answered requests).
  assert.ok(s.closes.http_done > 0, JSON.stringify(s.closes));
  for (const [reason, n] of Object.entries(s.closes)) {
    assert.ok(n > 0 && n <= metric(`tickcast_connections_closed_total{reason="${reason}"}`), `${reason}: ${n}`);
  }
  assert.ok(s.points.every((p) => p >= 1), `chart points ${s.points}`);

  await page.screenshot({ path: artifactPath('dashboard.png'), fullPage: true });
  assert.deepEqual(errors, []);

  // The server goes: the page keeps its numbers and says it is disconnected.
  await bots.stop();
  assert.equal(await server.stop(), 0, `server did not drain cleanly:\n${server.stderr()}`);
  await waitFor(page, 'the page to say it is disconnected', () => document.getElementById('status').dataset.state === 'disconnected');
  assert.match(await page.locator('#status').textContent(), /^disconnected/);
  assert.equal(await page.locator('#players').textContent(), String(BOTS));
  await context.close();
});
