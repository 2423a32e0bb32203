// Test harness: the real tickcast binary on 127.0.0.1, and Debian's Chromium driven by playwright-core;
// for cluster tests, a real redis-server and several tickcast processes in its directory.
// Every wait has a cap (WAIT_MAX_MS): a safety net against hangs, never a timing assertion.

import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const WAIT_MAX_MS = 30_000;
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SERVER_BIN = process.env.TICKCAST_SERVER ?? path.join(ROOT, 'target/debug/tickcast');
/** The bot swarm's binary (bots/), by default beside the server's. */
export const BOTS_BIN = process.env.TICKCAST_BOTS ?? path.join(path.dirname(SERVER_BIN), 'bots');
export const ARTIFACTS = process.env.TICKCAST_ARTIFACTS ?? path.join(ROOT, 'test-artifacts');
const CHROMIUM = process.env.TICKCAST_CHROMIUM ?? '/usr/bin/chromium';
const REDIS_SERVER = process.env.TICKCAST_REDIS_SERVER ?? '/usr/bin/redis-server';
const OPENSSL = process.env.TICKCAST_OPENSSL ?? 'openssl';

/** Every child process started here, so none outlives the test process, even when it fails or is killed. */
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/**
 * A port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed), for a process that must be
 * told its own address before it starts (`--public-url`). Another program could take it in between; on a
 * test machine that does not happen in practice, and the process would then fail to start, loudly.
 */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Rejects after `ms` with `what` unless `promise` settles first. */
export function within(promise, what, ms = WAIT_MAX_MS) {
  let timer;
  const cap = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, cap]).finally(() => clearTimeout(timer));
}

/**
 * A self-signed certificate for `localhost` and 127.0.0.1 (an EC P-256 key, valid for a day), made now
 * with the `openssl` CLI in a fresh temporary directory: {dir, cert, key (the PEM files' paths), pem
 * (the certificate's text), remove()}. Nothing of it is committed; `remove()` deletes the directory.
 */
export function makeTestCert() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tickcast-tls-'));
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  execFileSync(
    OPENSSL,
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-days', '1', '-keyout', key, '-out', cert,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], timeout: WAIT_MAX_MS },
  );
  return { dir, cert, key, pem: readFileSync(cert, 'utf8'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * GET `url` over https, trusting the PEM certificate `ca` (and nothing else); capped like every wait.
 * Resolves {status, type (Content-Type), text}.
 */
export function httpsGet(url, ca) {
  const got = new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: WAIT_MAX_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer`)));
    req.on('error', reject);
  });
  return within(got, `GET ${url}`);
}

/**
 * Starts the server (`--npcs 20`, plus `args`) on `port` (0: any) and resolves once it says where it
 * listens: {port, url, stop(): exit code, stderr(), metrics(): the /metrics samples as name -> number,
 * get(path): {status, type, text}}. With `tls` (a makeTestCert()), the server serves TLS with it
 * (`--tls-cert`, `--tls-key`): `url` is https://, the page's WebSockets are wss://, and `metrics()` and
 * `get()` go over https trusting that certificate.
 */
export async function startServer({ port = 0, npcs = 20, args: extra = [], tls = null } = {}) {
  const tlsArgs = tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : [];
  const args = ['--listen', `127.0.0.1:${port}`, '--npcs', String(npcs), ...tlsArgs, ...extra];
  const proc = track(spawn(SERVER_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
  let log = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve(code ?? signal)));
  const listening = new Promise((resolve, reject) => {
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      log += chunk;
      // `https://` with --tls-cert (the WebSockets are then `wss://`); the port's end is the space after it.
      const m = /tickcast: listening on (https?):\/\/127\.0\.0\.1:(\d+)\s/.exec(log);
      if (m) resolve({ scheme: m[1], port: Number(m[2]) });
    });
    proc.on('error', reject);
    exited.then((code) => reject(new Error(`tickcast exited (${code}) before listening:\n${log}`)));
  });
  const { scheme, port: bound } = await within(listening, `${SERVER_BIN} to listen`);
  const url = `${scheme}://127.0.0.1:${bound}/`;
  /** GET `path`: {status, type, text}; over https trusting the test certificate. */
  const get = async (p) => {
    const target = new URL(p, url);
    if (tls) return httpsGet(target, tls.pem);
    const res = await fetch(target);
    return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
  };
  return {
    port: bound,
    url,
    /** `wss` for an https:// server, else `ws`. */
    wsScheme: scheme === 'https' ? 'wss' : 'ws',
    get,
    stderr: () => log,
    /** The samples of /metrics: `name` or `name{labels}` -> value. */
    async metrics() {
      const { text } = await get('/metrics');
      const samples = new Map();
      for (const line of text.split('\n')) {
        const m = /^([a-z_:][a-z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
        if (m) samples.set(m[1], Number(m[2]));
      }
      return samples;
    },
    /** SIGTERM: the server drains (final update, close 1001 to everyone) and exits; resolves its exit code. */
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      try {
        return await within(exited, 'tickcast to drain and exit');
      } catch (e) {
        proc.kill('SIGKILL');
        throw e;
      }
    },
  };
}

/**
 * Runs the bot swarm (the `bots` binary) against `server` with `args` (`--rooms`, `--room-size`,
 * `--duration`, ...): {stop(), output()}. `stop()` kills it (SIGKILL: its report is not wanted) and
 * resolves once it is gone; it is killed with the test process in any case.
 */
export function startBots(server, args) {
  const url = `${server.wsScheme}://127.0.0.1:${server.port}/ws`;
  const proc = track(spawn(BOTS_BIN, ['--url', url, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let log = '';
  proc.stdout.setEncoding('utf8').on('data', (chunk) => (log += chunk));
  proc.stderr.setEncoding('utf8').on('data', (chunk) => (log += chunk));
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve(code ?? signal)));
  return {
    output: () => log,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      return within(exited, 'the bots to exit');
    },
  };
}

/**
 * One command to the Redis on `port` (RESP over a fresh TCP connection) and its answer: a string, a
 * number, null, an array of those, or an Error for an error reply. Capped like every wait.
 */
export function redisCommand(port, ...args) {
  const request = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`;
  const answer = new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    socket.setTimeout(WAIT_MAX_MS, () => socket.destroy(new Error(`redis on ${port}: no answer to ${args[0]}`)));
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      const parsed = parseResp(data, 0);
      if (parsed) {
        socket.end();
        resolve(parsed.value);
      }
    });
    socket.on('close', () => reject(new Error(`redis on ${port}: closed before answering ${args[0]}`)));
    socket.write(request);
  });
  return within(answer, `redis ${args[0]}`);
}

/** One RESP value from `buf` at `at`: {value, end}, or null when more bytes are needed. */
function parseResp(buf, at) {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (String.fromCharCode(buf[at])) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items = [];
      let end = next;
      for (let i = 0; i < n; i++) {
        const item = parseResp(buf, end);
        if (!item) return null;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`not RESP: ${JSON.stringify(buf.toString('utf8', at, Math.min(buf.length, at + 40)))}`);
  }
}

/**
 * Starts Debian's redis-server on a free loopback port, nothing persisted (`--save '' --appendonly no`),
 * and resolves once it answers PING: {port, url, stop(), log()}.
 */
export async function startRedis() {
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const proc = track(spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let log = '';
  proc.stdout.setEncoding('utf8').on('data', (chunk) => (log += chunk));
  proc.stderr.setEncoding('utf8').on('data', (chunk) => (log += chunk));
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve(code ?? signal)));
  const failed = new Promise((_, reject) => {
    proc.on('error', reject);
    exited.then((code) => reject(new Error(`redis-server exited (${code}) before answering:\n${log}`)));
  });
  const answers = until('redis-server to answer PING', async () => {
    try {
      return (await redisCommand(port, 'PING')) === 'PONG';
    } catch {
      return false; // not listening yet
    }
  });
  await Promise.race([answers, failed]);
  return {
    port,
    url: `redis://127.0.0.1:${port}/`,
    log: () => log,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      try {
        return await within(exited, 'redis-server to exit');
      } catch (e) {
        proc.kill('SIGKILL');
        throw e;
      }
    },
  };
}

/**
 * A cluster on loopback: redis-server, then one tickcast process per id in `ids`, each on a port chosen
 * first so that it can be told its `--public-url`, all sharing a random `--cluster-secret-file`. With
 * `proxied`, each process's public URL is a TCP proxy in front of it (startProxy), so a test can cut the
 * connections the matchmaker sent there. Resolves once every process is in the directory
 * (`<cluster>:process:<id>` is in Redis): {redis, processes: Map id -> server (as startServer's, plus
 * `id`, `publicPort` and `proxy`, null without `proxied`), secretFile, stop()}. If any part fails to
 * start, what did start is stopped before the error is thrown. `stop()` stops the processes (SIGTERM:
 * each drains) and their proxies, then Redis, removes the secret, and resolves the exit codes by id.
 */
export async function startCluster({ ids = ['a', 'b'], npcs = 4, args = [], proxied = false } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tickcast-cluster-'));
  const secretFile = path.join(dir, 'cluster-secret');
  writeFileSync(secretFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const cluster = { redis: null, processes: new Map(), secretFile };
  const proxies = [];
  cluster.stop = async () => {
    const codes = {};
    const stops = [...cluster.processes].map(async ([id, server]) => {
      codes[id] = await server.stop().catch((e) => e.message);
    });
    await Promise.all(stops);
    await Promise.all(proxies.map((proxy) => proxy.close()));
    await cluster.redis?.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    return codes;
  };
  try {
    cluster.redis = await startRedis();
    for (const id of ids) {
      const port = await freePort();
      const proxy = proxied ? await startProxy(port) : null;
      if (proxy) proxies.push(proxy);
      const publicPort = proxy?.port ?? port;
      const server = await startServer({
        port,
        npcs,
        args: [
          '--redis', cluster.redis.url,
          '--public-url', `ws://127.0.0.1:${publicPort}`,
          '--process-id', id,
          '--cluster-secret-file', secretFile,
          ...args,
        ],
      });
      cluster.processes.set(id, Object.assign(server, { id, publicPort, proxy }));
    }
    const keys = ids.map((id) => `tickcast:process:${id}`);
    await until('every process to be in the directory', async () => (await redisCommand(cluster.redis.port, 'EXISTS', ...keys)) === ids.length, { everyMs: 100 });
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/**
 * A TCP proxy on 127.0.0.1 in front of `targetPort`, so a test can cut a client off the way a network
 * does: `cut()` resets both sides of every open connection (TCP RST: no WebSocket close frame, no FIN
 * handshake), `block(true)` resets new connections as they come until `block(false)`. `accepted` counts
 * connections. Resolves {port, accepted, cut(), block(on), close()}.
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  let blocked = false;
  const proxy = { port: 0, accepted: 0 };
  const server = net.createServer((client) => {
    proxy.accepted += 1;
    if (blocked) return client.resetAndDestroy();
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  proxy.port = server.address().port;
  /** Resets every open connection on both sides; resolves the number cut. */
  proxy.cut = () => {
    const n = pairs.size;
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      for (const socket of pair) socket.resetAndDestroy();
    }
    return n;
  };
  proxy.block = (on) => {
    blocked = on;
  };
  proxy.close = () => {
    proxy.cut();
    return new Promise((resolve) => server.close(resolve));
  };
  return proxy;
}

/** Debian's Chromium, headless, in a fresh temporary profile (Playwright makes one per launch). */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: WAIT_MAX_MS,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Opens the arena page in a new context; resolves once it has joined and holds a world. `errors` collects
 * page errors and console errors, which a test expects to stay empty.
 */
export async function openArena(browser, server, { hasTouch = false, query = '', context: shared } = {}) {
  const context = shared ?? (await browser.newContext({ viewport: { width: 900, height: 900 }, hasTouch }));
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MAX_MS);
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // A refused connection while the server restarts is the browser's own log line, not the page's error;
    // so is a room listing that failed (the page says so in its room list, and lists again later).
    if (m.type() !== 'error' || /WebSocket connection to .* failed/.test(m.text())) return;
    // The same for a matchmaking request that failed (a 503 while the cluster is busy: the SDK retries).
    if (/^Failed to load resource/.test(m.text()) && /\/(rooms(\?|$)|matchmake$)/.test(m.location().url)) return;
    errors.push(m.text());
  });
  await page.goto(server.url + query);
  await waitFor(page, 'the page to join and mirror the world', () => {
    const c = window.tickcast?.client;
    return c && c.state === 'open' && c.own !== undefined && c.world.tick !== null;
  });
  return { page, context, errors };
}

/** Polls `fn()` (maybe async) until it returns something truthy, and resolves that; capped like every wait. */
export async function until(what, fn, { everyMs = 50, ms = WAIT_MAX_MS } = {}) {
  let stop = false;
  const poll = async () => {
    while (!stop) {
      const v = await fn();
      if (v) return v;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  };
  try {
    return await within(poll(), what, ms);
  } finally {
    stop = true;
  }
}

/** GET /rooms (one page) of `server` (a startServer(); https:// for a TLS one): the JSON as the server sends it. */
export async function rooms(server, query = '') {
  const { status, text } = await server.get(`/rooms${query}`);
  if (status !== 200) throw new Error(`GET /rooms${query}: ${status} ${text}`);
  return JSON.parse(text);
}

/** Room name -> its `players` in GET /rooms (rooms not listed are absent). */
export async function playersByRoom(server) {
  return Object.fromEntries((await rooms(server)).rooms.map((r) => [r.name, r.players]));
}

/** Waits until `fn(arg)` is truthy in the page. */
export function waitFor(page, what, fn, arg) {
  return within(page.waitForFunction(fn, arg, { timeout: WAIT_MAX_MS, polling: 50 }), what, WAIT_MAX_MS + 1000);
}

/** What a test looks at: the SDK's state, as plain data. */
export function snapshot(page) {
  return page.evaluate(() => {
    const { client: c, game } = window.tickcast;
    return {
      state: c.state,
      room: c.room,
      url: c.url,
      entity: c.entity,
      own: c.own ? { ...c.own } : null,
      tick: c.world.tick,
      ids: [...c.world.entities.keys()],
      lastInputSeq: c.lastInputSeq,
      lastClose: c.lastClose,
      lastFailedAttempt: c.lastFailedAttempt,
      stats: { ...c.stats },
      predicted: game.prediction.pos ? { ...game.prediction.pos } : null,
      pending: game.prediction.pending.length,
    };
  });
}

export function artifactPath(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}
