// Rooms through the arena page, in headless Chromium against the real server binary: pages
// in different rooms see their own room's name and players only, the room list (GET /rooms) joins a room
// by a click, "new room" makes one, and the resume session is per room. Assertions are on what the page
// shows (the room name, the room list), on its SDK state (window.tickcast), and on GET /rooms.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  artifactPath,
  launchBrowser,
  openArena,
  playersByRoom,
  rooms,
  snapshot,
  startServer,
  until,
  waitFor,
} from './harness.mjs';

let server;
let browser;

before(async () => {
  [server, browser] = await Promise.all([startServer(), launchBrowser()]);
});

after(async () => {
  await browser?.close();
  if (server) assert.equal(await server.stop(), 0, `server did not drain cleanly:\n${server.stderr()}`);
});

/** In the page: the room list shows `want` (room -> players) for those rooms. */
function listShows(want) {
  return Object.entries(want).every(
    ([name, players]) => document.querySelector(`#rooms li[data-room="${name}"]`)?.dataset.players === String(players),
  );
}

/** Until the page shows, as its room, the name Welcome gave it; resolves that name. */
async function shownRoom(page) {
  await waitFor(page, 'the page to show the room Welcome named', () => {
    const el = document.getElementById('room-name');
    return el.dataset.welcome !== undefined && el.textContent === el.dataset.welcome;
  });
  return page.locator('#room-name').textContent();
}

/** Holds `key` until the own entity's input seq is at least 1, then stops and waits for the stop's ack. */
async function sendSomeInput(page, key) {
  await page.keyboard.down(key);
  await waitFor(page, 'an input to be applied', () => window.tickcast.client.own?.seq >= 1);
  await page.keyboard.up(key);
  await waitFor(page, 'the stop to be acknowledged', () => {
    const { client, game } = window.tickcast;
    return game.prediction.pending.length === 0 && client.own.seq === client.lastInputSeq;
  });
}

/** The ids of the entities in the page's mirror that have had input applied (players who moved). */
const movedIds = (page) =>
  page.evaluate(() => [...window.tickcast.client.world.entities].filter(([, s]) => s.seq > 0).map(([id]) => id));

test('two rooms: each page sees its own room and its players only; a third page joins red from the room list', async () => {
  const red = await openArena(browser, server, { query: '?room=red' });
  const blue = await openArena(browser, server, { query: '?room=blue' });
  const [sr, sb] = [await snapshot(red.page), await snapshot(blue.page)];
  assert.equal(sr.room, 'red');
  assert.equal(sb.room, 'blue');
  assert.match(sr.url, /\/ws\/red$/);
  assert.match(sb.url, /\/ws\/blue$/);
  assert.equal(await shownRoom(red.page), 'red');
  assert.equal(await shownRoom(blue.page), 'blue');

  // The server has one player in each room.
  const counts = await until('GET /rooms to list red and blue', async () => {
    const c = await playersByRoom(server);
    return c.red !== undefined && c.blue !== undefined && c;
  });
  assert.equal(counts.red, 1);
  assert.equal(counts.blue, 1);
  const listed = (await rooms(server)).rooms.find((r) => r.name === 'red');
  assert.equal(listed.type, 'arena');
  assert.equal(listed.players_detached, 0);
  // Each page's room list says so, and marks its own room as the current one (not a link).
  for (const { page } of [red, blue]) {
    await waitFor(page, 'the room list to show red and blue with a player each', listShows, { red: 1, blue: 1 });
  }
  assert.equal(await red.page.locator('#rooms li[data-room="red"]').getAttribute('aria-current'), 'true');
  assert.equal(await red.page.locator('#rooms li[data-room="red"] a').count(), 0);
  assert.equal(await red.page.locator('#rooms li[data-room="blue"] a').getAttribute('href'), '?room=blue');

  // Worlds apart: both players send input; each mirror holds one entity that had input, its own.
  await sendSomeInput(red.page, 'ArrowRight');
  await sendSomeInput(blue.page, 'ArrowDown');
  for (const [{ page }, s] of [[red, sr], [blue, sb]]) {
    await waitFor(page, 'three more ticks', (t) => window.tickcast.client.world.tick >= t + 3, (await snapshot(page)).tick);
    assert.deepEqual(await movedIds(page), [s.entity], `${s.room}'s world has no player of the other room`);
  }

  // A third page at the plain page (the default room) joins red by clicking it in the room list.
  const third = await openArena(browser, server);
  const st = await snapshot(third.page);
  assert.equal(st.room, 'default');
  assert.match(st.url, /\/ws$/);
  assert.equal(await shownRoom(third.page), 'default');
  await waitFor(third.page, 'the room list to offer red', listShows, { red: 1 });
  await third.page.screenshot({ path: artifactPath('rooms-list.png') });
  await Promise.all([
    third.page.waitForURL(/\?room=red$/),
    third.page.locator('#rooms li[data-room="red"] a').click(),
  ]);
  await waitFor(third.page, 'the third page to join red and mirror it', () => {
    const c = window.tickcast?.client;
    return c && c.state === 'open' && c.room === 'red' && c.own !== undefined && c.world.tick !== null;
  });
  assert.equal(await shownRoom(third.page), 'red');
  const s3 = await snapshot(third.page);
  assert.match(s3.url, /\/ws\/red$/);
  // Red's two players see each other.
  await waitFor(third.page, 'the third page to mirror the red player', (id) => window.tickcast.client.world.entities.has(id), sr.entity);
  await waitFor(red.page, 'the red player to mirror the third page', (id) => window.tickcast.client.world.entities.has(id), s3.entity);
  assert.deepEqual(await movedIds(third.page), [sr.entity], "red's world: the red player moved, blue's player is not there");

  const now = await until('GET /rooms to count two players in red', async () => {
    const c = await playersByRoom(server);
    return c.red === 2 && c;
  });
  assert.equal(now.red, 2);
  assert.equal(now.blue, 1);
  for (const { page } of [red, blue, third]) {
    await waitFor(page, 'the room list to show 2 in red and 1 in blue', listShows, { red: 2, blue: 1 });
  }
  // The session is kept per room: the third page left the default room on purpose (its session there is
  // gone) and holds red's.
  const keys = await third.page.evaluate(() => Object.keys(sessionStorage).filter((k) => k.startsWith('tickcast.session ')));
  assert.deepEqual(keys, [`tickcast.session ws://127.0.0.1:${server.port}/ws/red`]);
  // It joined red through the matchmaker (a standalone one: its own process, a path, no seat ticket).
  const seat = await third.page.evaluate(() => window.tickcast.client.matchmade);
  assert.deepEqual({ ...seat, url: undefined }, { room: 'red', type: 'arena', process: null, connect: '/ws/red', ticket: null, expiresUnixS: null, url: undefined });
  await third.page.screenshot({ path: artifactPath('rooms-joined.png') });

  for (const p of [red, blue, third]) {
    const { stats } = await snapshot(p.page);
    assert.equal(stats.checksumFailures, 0);
    assert.equal(stats.mirrorErrors, 0);
    assert.deepEqual(p.errors, []);
  }
  await Promise.all([red, blue, third].map((p) => p.context.close()));
});

test('"new room" makes a room of a fresh name and joins it; a reload there resumes the same player in it', async () => {
  const { page, context, errors } = await openArena(browser, server, { query: '?room=lobby' });
  await Promise.all([page.waitForURL(/\?room=room-[a-z0-9]{8}$/), page.locator('#rooms button').click()]);
  const name = new URL(page.url()).searchParams.get('room');
  await waitFor(page, 'the page to join the new room', (n) => {
    const c = window.tickcast?.client;
    return c && c.state === 'open' && c.room === n && c.own !== undefined && c.world.tick !== null;
  }, name);
  assert.equal(await shownRoom(page), name);
  const created = await until(`GET /rooms/${name}`, async () => {
    const res = await fetch(new URL(`/rooms/${name}`, server.url));
    return res.status === 200 && res.json();
  });
  assert.equal(created.name, name);
  assert.equal(created.players, 1);
  await waitFor(page, 'the room list to show the new room as the current one', (n) =>
    document.querySelector(`#rooms li[data-room="${n}"]`)?.getAttribute('aria-current') === 'true', name);

  // A reload (the browser closes with 1001: the server keeps the player) resumes it, in this room.
  const before = await snapshot(page);
  await page.reload();
  await waitFor(page, 'the reloaded page to resume', () => {
    const c = window.tickcast?.client;
    return c && c.state === 'open' && c.own !== undefined && c.world.tick !== null;
  });
  const after = await snapshot(page);
  assert.equal(after.room, name);
  assert.equal(after.entity, before.entity);
  assert.equal(after.stats.resumes, 1);
  assert.equal((await playersByRoom(server))[name], 1);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a bad ?room= name is refused by the page, which connects nowhere and still lists the rooms', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(`${server.url}?room=no%20spaces`);
  await waitFor(page, 'the status to say why', () => /^bad room name/.test(document.getElementById('status').textContent));
  assert.match(await page.locator('#status').textContent(), /1 to 64 of A-Z a-z 0-9 _ -/);
  await waitFor(page, 'the room list to list', () => window.tickcast.rooms.refreshes >= 1 && window.tickcast.rooms.lastError === null);
  assert.ok((await page.locator('#rooms li[data-room]').count()) >= 1, 'the default room at least');
  assert.equal(await page.evaluate(() => window.tickcast.client), null);
  assert.deepEqual(sockets, []);
  assert.deepEqual(errors, []);
  await context.close();
});

test('?room= naming the default room (which the matchmaker never places: each process has its own) plays in it, as the plain page', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}?room=default&name=dee`);
  await page.waitForURL((u) => !u.searchParams.has('room'));
  assert.equal(new URL(page.url()).searchParams.get('name'), 'dee', 'the other parameters are kept');
  await waitFor(page, 'the page to join the default room', () => {
    const c = window.tickcast?.client;
    return c && c.state === 'open' && c.room === 'default' && c.own !== undefined;
  });
  const s = await snapshot(page);
  assert.match(s.url, /\/ws$/, 'plain /ws, no matchmaking');
  assert.equal(await page.evaluate(() => window.tickcast.client.matchmaker), null);
  assert.deepEqual(errors, []);
  await context.close();
});

test('chat on one process: a line typed in one room shows in every arena room, spectators included, as text', async () => {
  const red = await openArena(browser, server, { query: '?room=red&name=rae' });
  const plain = await openArena(browser, server, { query: '?name=pat' });
  // A spectator of red: it reads the chat, and cannot send (it has no player).
  const context = await browser.newContext();
  const watcher = await context.newPage();
  const watchErrors = [];
  watcher.on('pageerror', (e) => watchErrors.push(e.message));
  await watcher.goto(`${server.url}?room=red&watch`);
  await waitFor(watcher, 'the spectator to mirror red', () => {
    const c = window.tickcast?.client;
    return c && c.state === 'open' && c.room === 'red' && c.world.tick !== null;
  });
  assert.equal(await watcher.locator('#chat button').isDisabled(), true);
  assert.equal(await watcher.locator('#chat input').getAttribute('placeholder'), 'watching: chat is read-only');

  await waitFor(red.page, 'the chat to accept a line', () => !document.querySelector('#chat button').disabled);
  // Typing in the box does not steer: WASD are letters there.
  const seqBefore = (await snapshot(red.page)).lastInputSeq;
  await red.page.locator('#chat input').fill('');
  await red.page.locator('#chat input').pressSequentially('wasd <i>x</i>');
  await red.page.locator('#chat input').press('Enter');
  const line = 'rae: wasd <i>x</i>';
  for (const page of [red.page, plain.page, watcher]) {
    await waitFor(page, `the chat to show ${line}`, (l) => window.tickcast.chat.lines.includes(l), line);
    assert.equal(await page.locator('#chat li').last().textContent(), line);
    assert.equal(await page.locator('#chat li i').count(), 0, 'server text is never HTML');
  }
  assert.equal((await snapshot(red.page)).lastInputSeq, seqBefore, 'no input was sent while typing');
  assert.equal(await red.page.locator('#chat input').inputValue(), '', 'the box is cleared once sent');
  assert.equal((await snapshot(plain.page)).room, 'default', 'the line crossed rooms');
  for (const p of [red, plain]) assert.deepEqual(p.errors, []);
  assert.deepEqual(watchErrors, []);
  await Promise.all([red.context.close(), plain.context.close(), context.close()]);
});
