// Cluster mode (#13) through the arena page, in headless Chromium against a real redis-server and two real
// tickcast processes ("a" and "b") in its directory: pages opened from either process at `?room=NAME`
// meet in one room on the process that hosts it (the matchmaker, POST /matchmake, sends them there), a
// chat line typed on one process reaches a page in another arena room on the other (the backplane), and a
// dropped connection resumes on the same process without asking the matchmaker again. Each process's
// public URL is a TCP proxy in front of it, so the test can cut a page's connection the way a network does.
// Assertions are on what the page shows (room name, process, chat lines), its SDK state
// (window.tickcast), GET /rooms/NAME on each process, and the directory in Redis.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { artifactPath, launchBrowser, openArena, redisCommand, snapshot, startCluster, until, waitFor } from './harness.mjs';

let cluster;
let browser;

before(async () => {
  browser = await launchBrowser();
  cluster = await startCluster({ ids: ['a', 'b'], proxied: true });
});

after(async () => {
  await browser?.close();
  if (cluster) {
    const logs = () => [...cluster.processes].map(([id, s]) => `--- ${id}:\n${s.stderr()}`).join('\n');
    assert.deepEqual(await cluster.stop(), { a: 0, b: 0 }, `a process did not drain cleanly:\n${logs()}`);
  }
});

const member = (id) => cluster.processes.get(id);
const otherThan = (id) => [...cluster.processes.values()].find((s) => s.id !== id);

/** GET /rooms/NAME on `server`: [status, JSON or text]. */
async function roomOn(server, name) {
  const res = await fetch(new URL(`/rooms/${name}`, server.url));
  return [res.status, res.status === 200 ? await res.json() : await res.text()];
}

/** Where the page's client plays, as its SDK and its net panel say. */
async function seat(page) {
  return page.evaluate(() => {
    const c = window.tickcast.client;
    return {
      room: c.room,
      entity: c.entity,
      url: c.url,
      port: Number(new URL(c.url).port),
      process: c.matchmade?.process ?? null,
      shown: document.querySelector('[data-k="process"]').textContent,
      roomShown: document.getElementById('room-name').textContent,
      matchmakes: c.stats.matchmakes,
    };
  });
}

/** Types `text` into the page's chat box and sends it (Enter). */
async function say(page, text) {
  await waitFor(page, 'the chat to accept a line', () => !document.querySelector('#chat button').disabled);
  await page.locator('#chat input').fill(text);
  await page.locator('#chat input').press('Enter');
  await waitFor(page, 'the line to leave the box', () => document.querySelector('#chat input').value === '');
}

/** Until the page's chat shows `line`; resolves the text of the list item that holds it. */
async function shows(page, line) {
  await waitFor(page, `the chat to show ${JSON.stringify(line)}`, (l) => window.tickcast.chat.lines.includes(l), line);
  return page.locator('#chat li', { hasText: line }).last().textContent();
}

test('pages opened from process a and from process b at ?room=duel-1 meet in one room on the process that hosts it', async () => {
  const [a, b] = [member('a'), member('b')];
  const first = await openArena(browser, a, { query: '?room=duel-1&name=ann' });
  const second = await openArena(browser, b, { query: '?room=duel-1&name=bo' });
  // Both end up in one room on one process (a 4009 after a creation race is answered by asking again).
  const [s1, s2] = await until('both pages to play duel-1 on one process and see each other', async () => {
    const [x, y] = [await seat(first.page), await seat(second.page)];
    if (x.process === null || x.process !== y.process || x.room !== 'duel-1' || y.room !== 'duel-1') return false;
    const sees = await Promise.all([
      first.page.evaluate((id) => window.tickcast.client.world.entities.has(id), y.entity),
      second.page.evaluate((id) => window.tickcast.client.world.entities.has(id), x.entity),
    ]);
    return sees.every(Boolean) && [x, y];
  });
  const owner = member(s1.process);
  assert.ok(owner, `the matchmaker named a process of this cluster: ${s1.process}`);
  const elsewhere = otherThan(owner.id);
  // One of the two pages was served by the process that does not host the room, and plays on the owner.
  assert.deepEqual(
    [new URL(first.page.url()).port, new URL(second.page.url()).port].map(Number).sort(),
    [a.port, b.port].sort(),
  );
  for (const s of [s1, s2]) {
    assert.equal(s.port, owner.publicPort, `the client connects to the owner's --public-url: ${s.url}`);
    assert.match(s.url, /\/ws\/duel-1\?/);
    assert.equal(s.shown, owner.id, 'the net panel names the process');
    assert.equal(s.roomShown, 'duel-1');
    assert.notEqual(s.entity, null);
  }
  assert.notEqual(s1.entity, s2.entity);

  // The owner has the room and both players; the other process has no copy; the directory agrees.
  const [status, room] = await until('GET /rooms/duel-1 on the owner to count both players', async () => {
    const answer = await roomOn(owner, 'duel-1');
    return answer[0] === 200 && answer[1].players === 2 && answer;
  });
  assert.equal(status, 200);
  assert.equal(room.type, 'arena');
  assert.equal(room.players, 2);
  assert.equal((await roomOn(elsewhere, 'duel-1'))[0], 404);
  assert.equal(await redisCommand(cluster.redis.port, 'GET', 'tickcast:room:duel-1'), owner.id);
  await first.page.screenshot({ path: artifactPath('cluster-duel.png') });

  for (const p of [first, second]) {
    const { stats } = await snapshot(p.page);
    assert.equal(stats.checksumFailures, 0);
    assert.equal(stats.mirrorErrors, 0);
    assert.deepEqual(p.errors, []);
  }
  await Promise.all([first, second].map((p) => p.context.close()));
});

test('a chat line typed on a page on one process appears on a page in another arena room on the other process, and back', async () => {
  // One page in chat-1, wherever the matchmaker puts it; the other in the default room of the other process
  // (plain /ws: each process's own room, never claimed), so the two rooms are on two processes.
  const here = await openArena(browser, member('a'), { query: '?room=chat-1&name=ann' });
  const hs = await seat(here.page);
  const host = member(hs.process);
  assert.ok(host, `chat-1 is on a process of this cluster: ${hs.process}`);
  const far = otherThan(host.id);
  const there = await openArena(browser, far, { query: '?name=bo' });
  const ts = await snapshot(there.page);
  assert.equal(ts.room, 'default');
  assert.equal(Number(new URL(ts.url).port), far.port, 'the plain page plays on the process that served it');
  assert.equal(hs.room, 'chat-1');
  assert.equal(hs.port, host.publicPort);
  assert.notEqual(host.id, far.id);
  assert.equal((await roomOn(far, 'chat-1'))[0], 404, 'chat-1 is not on the far process');

  // ann on chat-1 says something: bo, in another room on another process, reads it, and so does ann.
  await say(here.page, 'hello from chat-1');
  assert.equal(await shows(here.page, 'ann: hello from chat-1'), 'ann: hello from chat-1');
  assert.equal(await shows(there.page, 'ann: hello from chat-1'), 'ann: hello from chat-1');
  // bo answers with markup: it arrives as text, never as HTML.
  await say(there.page, '<b>hi</b> & welcome');
  assert.equal(await shows(here.page, 'bo: <b>hi</b> & welcome'), 'bo: <b>hi</b> & welcome');
  assert.equal(await here.page.locator('#chat li b').count(), 0, 'no element was made from server text');
  assert.equal(await shows(there.page, 'bo: <b>hi</b> & welcome'), 'bo: <b>hi</b> & welcome');
  await there.page.screenshot({ path: artifactPath('cluster-chat.png') });

  for (const p of [here, there]) {
    const s = await snapshot(p.page);
    assert.equal(s.stats.sends, 1);
    assert.ok(s.stats.messages >= 2, `both lines arrived: ${s.stats.messages}`);
    assert.deepEqual(p.errors, []);
  }
  await Promise.all([here, there].map((p) => p.context.close()));
});

test('a page whose connection drops resumes the same player on the same process, without asking the matchmaker again', async () => {
  const p = await openArena(browser, member('b'), { query: '?room=duel-2&name=cy' });
  const before = await seat(p.page);
  const host = member(before.process);
  assert.ok(host);
  assert.equal(before.matchmakes, 1);
  const cut = host.proxy.cut();
  assert.ok(cut >= 1, 'the page had a connection through the proxy');
  await waitFor(p.page, 'the page to resume', () => {
    const c = window.tickcast.client;
    return c.stats.resumes >= 1 && c.state === 'open' && c.own !== undefined;
  });
  const afterCut = await seat(p.page);
  assert.equal(afterCut.entity, before.entity, 'the same player');
  assert.equal(afterCut.url, before.url, 'the same URL, so the same process');
  assert.equal(afterCut.process, host.id);
  assert.equal(afterCut.matchmakes, 1, 'the matchmaker was not asked again');
  const s = await snapshot(p.page);
  assert.equal(s.stats.resumesRefused, 0);
  assert.equal(s.stats.checksumFailures, 0);
  const [status, room] = await roomOn(host, 'duel-2');
  assert.equal(status, 200);
  assert.equal(room.players, 1);
  assert.deepEqual(p.errors, []);
  await p.context.close();
});
