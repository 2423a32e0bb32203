// Session resume against the real server binary, in headless Chromium: the arena page is cut off mid-game
// by a TCP proxy (connections reset, no WebSocket close frame) and takes the same player back; every resume
// rotates the token and the page keeps the new one (the old one then joins anew); a resume
// after the grace period makes a new player; a second connection resuming the same token takes the player
// over (4005, and the first does not fight back); a page reload resumes the same entity. And tickets: a
// server that requires them closes a connection without one (4004), and a client whose ticket function
// gives an expired ticket retries once with a fresh one.
// Assertions are on the SDK's state and the server's /metrics; every wait is capped, nothing is timed.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { WAIT_MAX_MS, launchBrowser, openArena, snapshot, startProxy, startServer, waitFor, within } from './harness.mjs';

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** Runs `body(server)` against a server of its own (metrics then count this test alone), stopped after. */
async function withServer(args, body) {
  const server = await startServer({ args });
  try {
    await body(server);
  } finally {
    assert.equal(await server.stop(), 0, `server did not drain cleanly:\n${server.stderr()}`);
  }
}

/** Polls `fn()` (async, in Node) until it is truthy; capped like every other wait. */
function until(what, fn) {
  return within(
    (async () => {
      for (;;) {
        const v = await fn();
        if (v) return v;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(),
    what,
    WAIT_MAX_MS,
  );
}

/**
 * In the page: records every close (with the tick the mirror held when it came), every Joined, and the
 * first update after each Joined, in `window.sessionLog`.
 */
function record() {
  const c = window.tickcast.client;
  const log = (window.sessionLog = { closes: [], joins: [], refused: [] });
  c.on('close', (e) =>
    log.closes.push({ code: e.code, reconnectInMs: e.reconnectInMs, opened: e.opened, tick: c.world.tick, seq: c.lastInputSeq }),
  );
  c.on('joined', (e) => log.joins.push({ ...e, first: null }));
  c.on('resumerefused', (e) => log.refused.push(e));
  c.on('update', (change) => {
    const join = log.joins.at(-1);
    if (join && join.first === null) join.first = { full: change.full, base: change.base, tick: change.tick };
  });
}

const sessionLog = (page) => page.evaluate(() => window.sessionLog);

/** A key that moves the own entity away from the nearest wall on x. */
function awayFromWall(x) {
  return x < 4000 ? { key: 'ArrowRight', sign: 1 } : { key: 'ArrowLeft', sign: -1 };
}

/** Waits until the own entity moved `distanceQ` quarter units from `x0` in direction `sign` on x. */
function movedFrom(page, what, x0, sign, distanceQ) {
  return waitFor(
    page,
    what,
    ([x0, sign, d]) => {
      const own = window.tickcast.client.own;
      return own !== undefined && (own.x - x0) * sign >= d;
    },
    [x0, sign, distanceQ],
  );
}

/** In the page: the stop input was sent, the server applied it, and nothing is in flight. */
function stoppedAndAcked() {
  const { client, game } = window.tickcast;
  const { dx, dy } = game.prediction.lastSent;
  return (
    client.own !== undefined &&
    dx === 0 &&
    dy === 0 &&
    client.own.seq === client.lastInputSeq &&
    game.prediction.pending.length === 0
  );
}

/** Waits for two more verified checksums, then checks that none failed and the mirror never broke. */
async function checksumsHold(page) {
  const n = (await snapshot(page)).stats.checksumsVerified;
  await waitFor(page, 'two more verified checksums', (n) => window.tickcast.client.stats.checksumsVerified >= n + 2, n);
  const { stats } = await snapshot(page);
  assert.equal(stats.checksumFailures, 0);
  assert.equal(stats.mirrorErrors, 0);
  assert.equal(stats.decodeErrors, 0);
}

/** The session the page keeps in its sessionStorage: [key, value]. */
async function storedSession(page) {
  const entries = await page.evaluate(() => Object.entries(sessionStorage));
  const found = entries.filter(([k]) => k.startsWith('tickcast.session '));
  assert.equal(found.length, 1, JSON.stringify(entries));
  return found[0];
}

test('cut off mid-game (TCP reset, no close frame), the page resumes the same player from the tick it held', async () => {
  await withServer([], async (server) => {
    const proxy = await startProxy(server.port);
    const { page, errors, context } = await openArena(browser, server, {
      query: `?server=ws://127.0.0.1:${proxy.port}/ws`,
    });
    try {
      await page.evaluate(record);
      const start = await snapshot(page);
      const { key, sign } = awayFromWall(start.own.x);
      await page.keyboard.down(key);
      await movedFrom(page, 'the own entity to move', start.own.x, sign, 80);
      const moving = await snapshot(page);

      assert.ok(proxy.cut() >= 1, 'the page was connected through the proxy');

      // Still holding the key: the page reconnects, resumes, and the entity moves on.
      await waitFor(page, 'the page to resume', () => {
        const c = window.tickcast.client;
        return c.state === 'open' && c.stats.lastResume?.firstUpdate && c.own !== undefined;
      });
      const log = await sessionLog(page);
      const [cut] = log.closes;
      assert.equal(cut.code, 1006, 'a reset is a lost connection, not a close the client asked for');
      assert.ok(cut.opened && cut.reconnectInMs !== null, JSON.stringify(log.closes));
      assert.ok(cut.tick >= moving.tick);
      const [join] = log.joins;
      assert.equal(join.resumed, true, JSON.stringify(log));
      assert.equal(join.entity, moving.entity, 'the same entity');
      assert.equal(join.previousEntity, moving.entity);
      const resumed = await snapshot(page);
      assert.equal(resumed.entity, moving.entity);
      assert.equal(resumed.stats.resumes, 1);
      assert.equal(resumed.stats.resumesRefused, 0);
      // The resume asked for the tick the mirror held when the connection was lost, and the first update
      // was a Delta from exactly that tick, applied to the kept mirror.
      assert.equal(resumed.stats.lastResume.tick, cut.tick);
      assert.deepEqual(resumed.stats.lastResume.firstUpdate, {
        type: 'Delta',
        base: cut.tick,
        tick: resumed.stats.lastResume.firstUpdate.tick,
      });
      assert.deepEqual(join.first, { full: false, base: cut.tick, tick: resumed.stats.lastResume.firstUpdate.tick });
      assert.equal(resumed.stats.fulls, start.stats.fulls, 'no Full since the first one');

      // Inputs after the resume carry on the numbering, and the server applies them: the entity moves on.
      const after = resumed.own.x;
      await movedFrom(page, 'the own entity to move after the resume', after, sign, 80);
      await waitFor(page, 'an input sent after the resume to be applied', (seq) => window.tickcast.client.own.seq > seq, cut.seq);
      await page.keyboard.up(key);
      await waitFor(page, 'the stop input to be acknowledged', stoppedAndAcked);
      const stopped = await snapshot(page);
      assert.ok(Math.abs(stopped.predicted.x - stopped.own.x) < 1, JSON.stringify(stopped));
      assert.ok(Math.abs(stopped.predicted.y - stopped.own.y) < 1, JSON.stringify(stopped));

      await checksumsHold(page);
      const metrics = await server.metrics();
      assert.ok(metrics.get('tickcast_resumes_total') >= 1, 'tickcast_resumes_total');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
      await proxy.close();
    }
  });
});

test('every resume rotates the token: the page stores the new one, the old one joins anew, the new one resumes again', async () => {
  await withServer([], async (server) => {
    const proxy = await startProxy(server.port);
    const { page, errors, context } = await openArena(browser, server, {
      query: `?server=ws://127.0.0.1:${proxy.port}/ws`,
    });
    try {
      await page.evaluate(record);
      const start = await snapshot(page);
      const [key, firstStored] = await storedSession(page);
      const first = JSON.parse(firstStored).token;

      assert.ok(proxy.cut() >= 1, 'the page was connected through the proxy');
      await waitFor(page, 'the page to resume', () => {
        const c = window.tickcast.client;
        return c.state === 'open' && c.stats.resumes === 1 && c.stats.lastResume?.firstUpdate;
      });
      const second = JSON.parse((await storedSession(page))[1]).token;
      assert.notEqual(second, first, 'the resume brought a new token, and the page stored it');

      // A client holding the first token (a copy of the old sessionStorage) takes nothing back: a new player.
      const url = key.slice('tickcast.session '.length);
      const stale = await within(
        page.evaluate(
          async ([url, k, v]) => {
            const { connect } = await import('/tickcast.js');
            const storage = new Map([[k, v]]);
            const store = {
              getItem: (key) => storage.get(key) ?? null,
              setItem: (key, value) => storage.set(key, value),
              removeItem: (key) => storage.delete(key),
            };
            const c = connect(url, { storage: store });
            const joined = await new Promise((resolve) => c.on('joined', resolve));
            c.close();
            return { ...joined, refused: c.stats.resumesRefused };
          },
          [url, key, firstStored],
        ),
        'a client with the first token to join',
      );
      assert.equal(stale.resumed, false, JSON.stringify(stale));
      assert.equal(stale.refused, 1);
      assert.notEqual(stale.entity, start.entity);

      // The stored (rotated) token resumes the same player again, and rotates once more.
      assert.ok(proxy.cut() >= 1);
      await waitFor(page, 'the page to resume a second time', () => {
        const c = window.tickcast.client;
        return c.state === 'open' && c.stats.resumes === 2 && c.stats.lastResume?.firstUpdate;
      });
      const again = await snapshot(page);
      assert.equal(again.entity, start.entity, 'the same entity');
      assert.equal(again.stats.resumesRefused, 0);
      const log = await sessionLog(page);
      assert.deepEqual(
        log.joins.map((j) => [j.resumed, j.entity]),
        [
          [true, start.entity],
          [true, start.entity],
        ],
      );
      const third = JSON.parse((await storedSession(page))[1]).token;
      assert.ok(third !== first && third !== second, 'rotated again');

      await checksumsHold(page);
      const metrics = await server.metrics();
      assert.equal(metrics.get('tickcast_resumes_total'), 2);
      assert.equal(metrics.get('tickcast_resumes_refused_total'), 1);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
      await proxy.close();
    }
  });
});

test('a resume after the grace period is refused: a new player, a fresh Full, and the page is told', async () => {
  await withServer(['--resume-grace-ms', '500'], async (server) => {
    const proxy = await startProxy(server.port);
    const { page, errors, context } = await openArena(browser, server, {
      query: `?server=ws://127.0.0.1:${proxy.port}/ws`,
    });
    try {
      await page.evaluate(record);
      const start = await snapshot(page);
      const away = awayFromWall(start.own.x);
      await page.keyboard.down(away.key);
      await movedFrom(page, 'the own entity to move', start.own.x, away.sign, 80);
      await page.keyboard.up(away.key);
      await waitFor(page, 'the stop input to be acknowledged', stoppedAndAcked);
      const first = await snapshot(page);
      assert.ok(first.lastInputSeq > 0);
      const firstStored = await storedSession(page);

      // Cut, and keep the page out until the server has given up on the player.
      proxy.block(true);
      assert.ok(proxy.cut() >= 1);
      await until('the detached player to expire', async () => (await server.metrics()).get('tickcast_sessions_expired_total') >= 1);
      proxy.block(false);

      await waitFor(page, 'the page to join again', () => {
        const c = window.tickcast.client;
        return c.state === 'open' && c.stats.resumesRefused >= 1 && c.own !== undefined;
      });
      const log = await sessionLog(page);
      const join = log.joins.at(-1);
      assert.equal(join.resumed, false, JSON.stringify(log));
      assert.equal(join.previousEntity, first.entity);
      assert.equal(join.first.full, true, 'a new player starts from a Full');
      assert.deepEqual(log.refused, [{ entity: join.entity, previousEntity: first.entity }]);
      const again = await snapshot(page);
      assert.equal(again.lastInputSeq, 0, 'a new player numbers its inputs from 1 again');
      assert.equal(again.own.seq, 0);
      assert.equal(again.stats.resumes, 0);
      assert.equal(again.stats.resumesRefused, 1);
      assert.ok(again.ids.includes(again.entity));
      const [, stored] = await storedSession(page);
      assert.notEqual(JSON.parse(stored).token, JSON.parse(firstStored[1]).token, 'the new token is stored');

      // The new player numbers its inputs from 1 and moves.
      const { key, sign } = awayFromWall(again.own.x);
      await page.keyboard.down(key);
      await movedFrom(page, 'the new player to move', again.own.x, sign, 80);
      await page.keyboard.up(key);
      await waitFor(page, 'the stop input to be acknowledged', stoppedAndAcked);

      await checksumsHold(page);
      const metrics = await server.metrics();
      assert.ok(metrics.get('tickcast_resumes_refused_total') >= 1, 'tickcast_resumes_refused_total');
      assert.equal(metrics.get('tickcast_resumes_total'), 0);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
      await proxy.close();
    }
  });
});

test('a second connection resuming the same token takes the player over: the first gets 4005 and stays closed', async () => {
  await withServer([], async (server) => {
    const a = await openArena(browser, server);
    // Another tab of the same session: a duplicated tab starts with a copy of sessionStorage.
    const [k, v] = await storedSession(a.page);
    const contextB = await browser.newContext({ viewport: { width: 900, height: 900 } });
    await contextB.addInitScript(([k, v]) => sessionStorage.setItem(k, v), [k, v]);
    try {
      await a.page.evaluate(record);
      const sa = await snapshot(a.page);
      const b = await openArena(browser, server, { context: contextB });
      await waitFor(a.page, 'A to be closed with 4005', () => window.tickcast.client.lastClose?.code === 4005);
      const sb = await snapshot(b.page);
      assert.equal(sb.entity, sa.entity, 'B plays the same entity');
      assert.equal(sb.stats.resumes, 1);
      assert.equal(sb.stats.lastResume.tick, 0, 'B had no mirror: it asked from tick 0');
      const first = sb.stats.lastResume.firstUpdate;
      // A Full, or the Delta from tick 0 (the empty world) while the server's history still reaches it.
      assert.ok(first.type === 'Full' || first.base === 0, JSON.stringify(first));

      // A does not reconnect (that would take the player back and the two would fight over it).
      const log = await sessionLog(a.page);
      assert.deepEqual(log.closes.map((c) => [c.code, c.reconnectInMs]), [[4005, null]]);
      await checksumsHold(b.page);
      const sa2 = await snapshot(a.page);
      assert.equal(sa2.state, 'closed');
      assert.equal(sa2.stats.connects, 1);
      assert.equal(sa2.stats.reconnectAttempts, 0);
      assert.equal(sa2.lastClose.meaning, 'this player was taken over by another connection');
      assert.equal(sa2.lastClose.reason, 'player resumed on another connection');
      assert.equal(sa2.stats.checksumFailures, 0);

      // B plays it: its inputs carry on A's numbering (the server ignores seqs it has passed).
      const { key, sign } = awayFromWall(sb.own.x);
      await b.page.keyboard.down(key);
      await movedFrom(b.page, "B to move A's old entity", sb.own.x, sign, 80);
      await b.page.keyboard.up(key);
      assert.ok((await server.metrics()).get('tickcast_resumes_total') >= 1);

      // client.close() says goodbye (1000): the server removes the player at once, so its token resumes
      // nothing any more, and the page forgets it.
      const [, session] = await storedSession(b.page);
      await b.page.evaluate(() => window.tickcast.client.close());
      assert.deepEqual(await b.page.evaluate(() => Object.keys(sessionStorage)), []);
      const joinedWithOldToken = await within(b.page.evaluate(async ([k, v]) => {
        const { connect } = await import('/tickcast.js');
        const storage = new Map([[k, v]]);
        const store = {
          getItem: (key) => storage.get(key) ?? null,
          setItem: (key, value) => storage.set(key, value),
          removeItem: (key) => storage.delete(key),
        };
        const c = connect(`ws://${location.host}/ws`, { storage: store });
        const joined = await new Promise((resolve) => c.on('joined', resolve));
        c.close();
        return { ...joined, refused: c.stats.resumesRefused };
      }, [k, session]), 'a client with the old token to join');
      assert.equal(joinedWithOldToken.resumed, false, JSON.stringify(joinedWithOldToken));
      assert.equal(joinedWithOldToken.refused, 1);
      assert.deepEqual(a.errors, []);
      assert.deepEqual(b.errors, []);
    } finally {
      await a.context.close();
      await contextB.close();
    }
  });
});

// A reloaded page has no mirror and resumes from tick 0, which always gets a Full: both when the server's
// history no longer reaches tick 0 (`--history-ticks 8`: after 8 ticks) and while it does (a history longer
// than the test).
for (const history of [8, 1_000_000]) {
  test(`a page reload resumes the same entity from a Full (history ${history} ticks), input numbering carried on`, async () => {
    await reloadResumes(['--history-ticks', String(history)], { type: 'Full' });
  });
}

async function reloadResumes(args, expectedFirst) {
  await withServer(args, async (server) => {
    const { page, errors, context } = await openArena(browser, server);
    try {
      await waitFor(page, 'the server to pass tick 8', () => window.tickcast.client.world.tick > 8);
      const start = await snapshot(page);
      const { key, sign } = awayFromWall(start.own.x);
      await page.keyboard.down(key);
      await movedFrom(page, 'the own entity to move', start.own.x, sign, 80);
      await page.keyboard.up(key);
      await waitFor(page, 'the stop input to be acknowledged', stoppedAndAcked);
      const before = await snapshot(page);
      assert.ok(before.lastInputSeq > 0);

      await page.reload();
      await waitFor(page, 'the reloaded page to resume', () => {
        const c = window.tickcast?.client;
        return c && c.state === 'open' && c.own !== undefined && c.stats.lastResume?.firstUpdate;
      });
      const after = await snapshot(page);
      assert.equal(after.entity, before.entity, 'the same entity');
      assert.equal(after.stats.resumes, 1);
      assert.equal(after.stats.resumesRefused, 0);
      assert.equal(after.stats.lastResume.tick, 0, 'a reloaded page has no mirror: it asks from tick 0');
      const { type, base } = after.stats.lastResume.firstUpdate;
      assert.deepEqual(base === undefined ? { type } : { type, base }, expectedFirst);
      assert.deepEqual({ x: after.own.x, y: after.own.y }, { x: before.own.x, y: before.own.y }, 'where it stopped');
      assert.equal(after.own.seq, before.own.seq, 'the server kept the last applied seq');
      assert.equal(after.lastInputSeq, before.lastInputSeq, 'the seq came back from sessionStorage');

      // New inputs are numbered above the old ones, so the server applies them and the entity moves.
      const back = awayFromWall(after.own.x);
      await page.keyboard.down(back.key);
      await movedFrom(page, 'the reloaded page to move its entity', after.own.x, back.sign, 80);
      await page.keyboard.up(back.key);
      await waitFor(page, 'the stop input to be acknowledged', stoppedAndAcked);
      assert.ok((await snapshot(page)).own.seq > before.own.seq);
      await checksumsHold(page);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
}

/** A ticket as docs/OPERATIONS.md issues them: v1.<player>.<expires>.<base64url HMAC-SHA256, unpadded>. */
function issueTicket(secret, player, expiresUnixS) {
  const payload = `v1.${player}.${expiresUnixS}`;
  return `${payload}.${createHmac('sha256', secret).update(payload).digest('base64url')}`;
}

test('tickets: none is closed 4004 for good; an expired one from a ticket function is retried once with a fresh one', async () => {
  const secret = 'a test secret, 32 bytes long....';
  assert.equal(issueTicket('secret', 'alice', 1700000000), 'v1.alice.1700000000.ckc9u1tmj9f-HjT20IZCzvmctXteMZg8lp6iJKtt2Us');
  const dir = mkdtempSync(path.join(tmpdir(), 'tickcast-ticket-'));
  const secretFile = path.join(dir, 'secret');
  writeFileSync(secretFile, `${secret}\n`);
  try {
    await withServer(['--ticket-secret-file', secretFile], async (server) => {
      const context = await browser.newContext();
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      const issued = [];
      const now = () => Math.floor(Date.now() / 1000);
      await page.exposeFunction('issueTicket', (n) => {
        // The first ticket expired an hour ago; the next ones are good for a minute.
        const ticket = issueTicket(secret, `p${n}`, n === 1 ? now() - 3600 : now() + 60);
        issued.push(ticket);
        return ticket;
      });
      try {
        // The arena page brings no ticket: the server closes it with 4004 and it does not retry.
        await page.goto(server.url);
        await waitFor(page, 'the page to be refused', () => window.tickcast?.client.state === 'closed');
        const arena = await snapshot(page);
        assert.equal(arena.lastClose.code, 4004);
        assert.equal(arena.lastClose.meaning, 'a valid ticket is required');
        assert.equal(arena.stats.connects, 1);

        // A client with a ticket function: 4004 on the expired ticket, then one retry with a fresh one.
        await page.evaluate(async () => {
          const { connect } = await import('/tickcast.js');
          let n = 0;
          const closes = (window.ticketCloses = []);
          window.ticketed = connect(`ws://${location.host}/ws`, {
            name: 'ticketed',
            ticket: () => window.issueTicket(++n),
            storage: null,
            reconnect: { initialDelayMs: 10 },
          });
          window.ticketed.on('close', (e) => closes.push([e.code, e.reason, e.reconnectInMs !== null]));
        });
        await waitFor(page, 'the ticketed client to join', () => {
          const c = window.ticketed;
          return c.state === 'open' && c.own !== undefined;
        });
        assert.deepEqual(await page.evaluate(() => window.ticketCloses), [[4004, 'ticket expired', true]]);
        assert.equal(issued.length, 2, 'a fresh ticket for the retry');

        // A spectator brings its ticket in Watch and receives the world.
        await page.evaluate(async () => {
          const { connect } = await import('/tickcast.js');
          window.watcher = connect(`ws://${location.host}/ws`, { join: false, ticket: () => window.issueTicket(2) });
        });
        await waitFor(page, 'the spectator to mirror the world', () => window.watcher.world.entities.size >= 21);
        assert.equal(await page.evaluate(() => window.watcher.entity), null);
        await page.evaluate(() => {
          window.ticketed.close();
          window.watcher.close();
        });
        const metrics = await server.metrics();
        assert.ok(metrics.get('tickcast_connections_closed_total{reason="unauthorized"}') >= 2);
        assert.deepEqual(errors, []);
      } finally {
        await context.close();
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
