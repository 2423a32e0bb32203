// game.js: the arena page. Everything network is in tickcast.js; this file is what a game adds on top:
//
//   Controls     keys (arrows, WASD) and a drag joystick (touch or mouse) -> a direction
//   Prediction   the own entity moves at once, then is reconciled with the server's state at the input seq
//                the server acknowledged (see reconcile())
//   TickClock    which server tick it is "now", estimated from when updates arrive
//   Interpolator the other entities drawn a little in the past, between two ticks they really had
//   the render loop and the net panel
//   RoomList     the rooms of the process the page plays on (GET /rooms, the first page), each a link
//                that joins it
//   Chat         the arena's chat: a line typed is a Send, each Message a line (text only, the last 50)
//
// Rooms: `?room=NAME` plays in that room, through the matchmaker (joinOrCreate: POST /matchmake, then the
// URL it answers), so in a cluster the page lands on the process that hosts the room, whichever process
// served the page; the first to name a room creates it. Without `?room=`, the server's default room (plain
// /ws), as before matchmaking existed. The page shows the room's name from Welcome, and keeps its session
// per room (the SDK stores it under the room's URL), so a token from one room is never presented in another.
//
// Across a lost connection the SDK resumes the same player and keeps its mirror; the prediction starts
// over from the server's state at the first update after the resume (see Game). A page reload resumes too:
// the SDK keeps the session in sessionStorage.
//
// For tests and the curious, `window.tickcast` holds {client, game, rooms}.
//
// Units: positions are in quarter units as replicated (0..8000 for a 2000-unit world).

import { arena, connect, isRoomName, joinOrCreate, listRooms } from './tickcast.js';

const QUANTA = arena.quantaPerUnit;
const WORLD_Q = arena.worldSizeUnits * QUANTA;
/** Others are drawn this many ticks behind the newest tick, so there is nearly always a tick to move toward. */
const INTERP_TICKS = 2;
/** Samples kept per entity for interpolation. */
const HISTORY_MAX = 8;
/** A correction bigger than this (quarter units) is a teleport (a new entity): snap instead of smoothing. */
const SNAP_Q = 400;
/** Time constant of the smoothing that hides a prediction correction, in ms. */
const CORRECTION_TAU_MS = 80;
/** Inputs kept waiting for acknowledgement; beyond it the server is not acking and the oldest are dropped. */
const PENDING_MAX = 64;
const STICK_DEAD_PX = 8;
/** The room list shows the first page of GET /rooms, this many rooms, refreshed this often. */
const ROOMS_SHOWN = 20;
const ROOMS_REFRESH_MS = 2000;
/** A listing that takes longer is given up (and tried again at the next refresh). */
const ROOMS_TIMEOUT_MS = 5000;
/** Chat lines kept on the page; older ones are removed. */
const CHAT_LINES_MAX = 50;
/** The arena cuts a chat line to 200 bytes (after trimming); the box takes no more characters than that. */
const CHAT_INPUT_CHARS_MAX = 200;

const clampQ = (v) => Math.min(WORLD_Q, Math.max(0, v));

// ---- input --------------------------------------------------------------------------------------------

const KEY_DIRECTIONS = {
  ArrowLeft: [-1, 0], KeyA: [-1, 0],
  ArrowRight: [1, 0], KeyD: [1, 0],
  ArrowUp: [0, -1], KeyW: [0, -1],
  ArrowDown: [0, 1], KeyS: [0, 1],
};

/** Whether a key event is typing into a text field (the chat box), which is not steering. */
const typing = (e) => e.target instanceof Element && e.target.closest('input, textarea, select, [contenteditable]') !== null;

class Controls {
  constructor(surface) {
    this.keys = new Set();
    /** The drag joystick: origin and current point in CSS pixels, or null. */
    this.stick = null;
    addEventListener('keydown', (e) => {
      if (!(e.code in KEY_DIRECTIONS) || e.altKey || e.ctrlKey || e.metaKey || typing(e)) return;
      this.keys.add(e.code);
      e.preventDefault();
    });
    addEventListener('keyup', (e) => this.keys.delete(e.code));
    addEventListener('blur', () => this.keys.clear());
    surface.addEventListener('pointerdown', (e) => {
      surface.setPointerCapture(e.pointerId);
      this.stick = { id: e.pointerId, ox: e.offsetX, oy: e.offsetY, x: e.offsetX, y: e.offsetY };
      e.preventDefault();
    });
    surface.addEventListener('pointermove', (e) => {
      if (this.stick?.id !== e.pointerId) return;
      this.stick.x = e.offsetX;
      this.stick.y = e.offsetY;
    });
    const release = (e) => {
      if (this.stick?.id === e.pointerId) this.stick = null;
    };
    surface.addEventListener('pointerup', release);
    surface.addEventListener('pointercancel', release);
  }

  /** The direction as the server's i8 pair; the server normalises it, so only the direction matters. */
  direction() {
    let x = 0;
    let y = 0;
    if (this.stick) {
      x = this.stick.x - this.stick.ox;
      y = this.stick.y - this.stick.oy;
      if (Math.hypot(x, y) < STICK_DEAD_PX) x = y = 0;
    } else {
      for (const code of this.keys) {
        x += KEY_DIRECTIONS[code][0];
        y += KEY_DIRECTIONS[code][1];
      }
    }
    const len = Math.hypot(x, y);
    if (len === 0) return { dx: 0, dy: 0 };
    return { dx: Math.round((127 * x) / len), dy: Math.round((127 * y) / len) };
  }
}

// ---- prediction ---------------------------------------------------------------------------------------

/**
 * Client-side prediction of the own entity.
 *
 * Every local tick (the server's rate) the current direction is sent as one Input while moving (and once
 * more when it stops), and the prediction moves by one tick of it at once. The server applies an input at
 * its next tick and echoes its seq in the entity's state. So on each update: drop the inputs up to the
 * acknowledged seq, and the prediction is the server's position plus one tick of each input still in flight.
 * The difference from what was shown is folded into `error`, which decays, so a correction never jumps.
 */
class Prediction {
  constructor() {
    this.entity = null;
    /** Predicted position after the last local tick, and the one before it (for drawing in between). */
    this.pos = null;
    this.prev = null;
    this.stepAt = 0;
    /** Sent, not yet acknowledged: {seq, vx, vy} with v in quarter units per tick. */
    this.pending = [];
    this.error = { x: 0, y: 0 };
    this.lastSent = { dx: 0, dy: 0 };
    this.corrections = 0;
  }

  reset(entity, state) {
    this.entity = entity;
    this.pos = { x: state.x, y: state.y };
    this.prev = { ...this.pos };
    this.pending = [];
    this.error = { x: 0, y: 0 };
    this.lastSent = { dx: 0, dy: 0 };
  }

  clear() {
    this.entity = null;
    this.pos = this.prev = null;
    this.pending = [];
  }

  static velocity(input, tickHz) {
    const len = Math.hypot(input.dx, input.dy);
    if (len === 0) return { vx: 0, vy: 0 };
    const step = (arena.speedUnitsPerS * QUANTA) / tickHz;
    return { vx: (input.dx / len) * step, vy: (input.dy / len) * step };
  }

  /** One local tick: send the input if it matters, and move the prediction by it. */
  localTick(client, input, now) {
    if (this.pos === null) return;
    this.prev = { ...this.pos };
    this.stepAt = now;
    const moving = input.dx !== 0 || input.dy !== 0;
    const wasMoving = this.lastSent.dx !== 0 || this.lastSent.dy !== 0;
    if (!moving && !wasMoving) return;
    const seq = client.sendInput(input);
    if (seq === 0) return; // not sent: the server will not move us either
    this.lastSent = input;
    const { vx, vy } = Prediction.velocity(input, client.tickHz);
    this.pending.push({ seq, vx, vy });
    if (this.pending.length > PENDING_MAX) this.pending.shift();
    this.pos = { x: clampQ(this.pos.x + vx), y: clampQ(this.pos.y + vy) };
  }

  /** The server's state of the own entity arrived: replay what it has not seen yet on top of it. */
  reconcile(state) {
    while (this.pending.length > 0 && this.pending[0].seq <= state.seq) this.pending.shift();
    let x = state.x;
    let y = state.y;
    for (const p of this.pending) {
      x = clampQ(x + p.vx);
      y = clampQ(y + p.vy);
    }
    const ex = this.pos.x - x;
    const ey = this.pos.y - y;
    if (ex === 0 && ey === 0) return;
    if (Math.hypot(ex, ey) > SNAP_Q) {
      this.error = { x: 0, y: 0 };
      this.prev = { x, y };
    } else {
      // Shift the whole segment being drawn and carry the difference as an error that decays.
      this.corrections += 1;
      this.error.x += ex;
      this.error.y += ey;
      this.prev = { x: this.prev.x - ex, y: this.prev.y - ey };
    }
    this.pos = { x, y };
  }

  /** Where to draw the own entity now; `dtMs` since the last frame decays the correction. */
  drawn(now, tickMs, dtMs) {
    const k = Math.exp(-dtMs / CORRECTION_TAU_MS);
    this.error.x *= k;
    this.error.y *= k;
    const a = Math.min(1, Math.max(0, (now - this.stepAt) / tickMs));
    return {
      x: this.prev.x + (this.pos.x - this.prev.x) * a + this.error.x,
      y: this.prev.y + (this.pos.y - this.prev.y) * a + this.error.y,
    };
  }
}

// ---- the server's timeline and the others ---------------------------------------------------------------

/** Estimates the current server tick from update arrival times: tick t arrives around offset + t * tickMs. */
class TickClock {
  constructor() {
    this.offsetMs = null;
    this.tickMs = 50;
  }

  observe(tick, now, tickHz) {
    this.tickMs = 1000 / tickHz;
    const sample = now - tick * this.tickMs;
    // Far off (a first update, a reconnect, a tab that slept): start over; else follow slowly.
    if (this.offsetMs === null || Math.abs(sample - this.offsetMs) > 10 * this.tickMs) this.offsetMs = sample;
    else this.offsetMs += (sample - this.offsetMs) * 0.05;
  }

  now(now) {
    return this.offsetMs === null ? null : (now - this.offsetMs) / this.tickMs;
  }
}

/** Per entity, the last few (tick, x, y) it really had; drawn at a tick between two of them. */
class Interpolator {
  constructor() {
    this.history = new Map();
  }

  clear() {
    this.history.clear();
  }

  push(id, tick, state) {
    let h = this.history.get(id);
    if (!h) this.history.set(id, (h = []));
    const last = h[h.length - 1];
    // It stood still since `last`: pin that, or it would seem to drift over the whole pause.
    if (last && last.tick < tick - 1) h.push({ tick: tick - 1, x: last.x, y: last.y });
    h.push({ tick, x: state.x, y: state.y });
    while (h.length > HISTORY_MAX) h.shift();
  }

  onUpdate(change, world) {
    for (const id of change.despawned) this.history.delete(id);
    if (change.full) {
      for (const id of this.history.keys()) if (!world.entities.has(id)) this.history.delete(id);
    }
    for (const id of change.set) this.push(id, change.tick, world.entities.get(id));
    for (const id of change.changed) this.push(id, change.tick, world.entities.get(id));
  }

  at(id, tick) {
    const h = this.history.get(id);
    if (!h || h.length === 0 || tick === null) return undefined;
    if (tick >= h[h.length - 1].tick) return h[h.length - 1];
    for (let i = h.length - 1; i > 0; i--) {
      const a = h[i - 1];
      const b = h[i];
      if (tick >= a.tick) {
        const t = (tick - a.tick) / (b.tick - a.tick);
        return { x: a.x + (b.x - a.x) * t, y: a.y + (b.y - a.y) * t };
      }
    }
    return h[0];
  }
}

// ---- the page -----------------------------------------------------------------------------------------

class Game {
  constructor(client, canvas, panel, status) {
    this.client = client;
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.panel = panel;
    this.status = status;
    this.controls = new Controls(canvas);
    this.prediction = new Prediction();
    this.clock = new TickClock();
    this.interp = new Interpolator();
    this.frames = 0;
    this.lastFrameAt = performance.now();
    this.sizeCss = 0;
    this.inputTimer = null;

    client.on('welcome', (msg) => this.startInputTicks(msg.tickHz));
    client.on('update', (change) => this.onUpdate(change));
    // Inputs sent before a drop may never have reached the server, so the prediction is not carried over:
    // it restarts from the server's state at the first update after the resume (the server stops a detached
    // player, and the next input goes out at the next local tick).
    client.on('close', () => {
      this.prediction.clear();
      clearInterval(this.inputTimer);
    });
    // A new player (the resume came too late): the old entity's history means nothing now.
    client.on('resumerefused', () => this.interp.clear());
    client.on('state', () => this.updatePanel());
    addEventListener('resize', () => this.resize());
    this.resize();
    setInterval(() => this.updatePanel(), 250);
    requestAnimationFrame((t) => this.frame(t));
  }

  startInputTicks(tickHz) {
    clearInterval(this.inputTimer);
    this.inputTimer = setInterval(() => {
      this.prediction.localTick(this.client, this.controls.direction(), performance.now());
    }, 1000 / tickHz);
  }

  onUpdate(change) {
    const { client } = this;
    const now = performance.now();
    this.clock.observe(change.tick, now, client.tickHz);
    if (change.full) this.interp.clear();
    this.interp.onUpdate(change, client.world);
    const own = client.own;
    if (!own) return;
    if (this.prediction.entity !== client.entity) this.prediction.reset(client.entity, own);
    else this.prediction.reconcile(own);
  }

  resize() {
    const header = document.querySelector('header').offsetHeight;
    const footer = document.querySelector('footer').offsetHeight;
    // The side column (net panel, rooms) sits beside the arena when there is room for both, else below it.
    const side = this.panel.parentElement.offsetWidth + 12;
    const wide = innerWidth - side >= 480;
    const size = Math.max(240, Math.min(innerWidth - 16 - (wide ? side : 0), innerHeight - header - footer - 8));
    const dpr = devicePixelRatio || 1;
    this.sizeCss = size;
    this.canvas.style.width = this.canvas.style.height = `${size}px`;
    this.canvas.width = this.canvas.height = Math.round(size * dpr);
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  frame(now) {
    const dtMs = Math.min(250, now - this.lastFrameAt);
    this.lastFrameAt = now;
    this.frames += 1;
    this.draw(now, dtMs);
    requestAnimationFrame((t) => this.frame(t));
  }

  draw(now, dtMs) {
    const { ctx, client, sizeCss: size } = this;
    const s = size / WORLD_Q;
    ctx.clearRect(0, 0, size, size);

    ctx.strokeStyle = '#1d2430';
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let q = 1000; q < WORLD_Q; q += 1000) {
      ctx.moveTo(q * s, 0);
      ctx.lineTo(q * s, size);
      ctx.moveTo(0, q * s);
      ctx.lineTo(size, q * s);
    }
    ctx.stroke();

    const r = Math.max(3, 18 * QUANTA * s);
    const tick = this.clock.now(now);
    const renderTick = tick === null ? null : tick - INTERP_TICKS;
    const stale = client.state !== 'open';
    ctx.globalAlpha = stale ? 0.35 : 1;
    for (const [id, state] of client.world.entities) {
      if (id === client.entity) continue;
      const p = this.interp.at(id, renderTick) ?? state;
      ctx.fillStyle = `hsl(${(id * 137.508) % 360} 65% 60%)`;
      ctx.beginPath();
      ctx.arc(p.x * s, p.y * s, r, 0, Math.PI * 2);
      ctx.fill();
    }
    ctx.globalAlpha = 1;

    const own = client.own;
    if (own && this.prediction.pos) {
      ctx.strokeStyle = 'rgba(255,255,255,0.45)';
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(own.x * s, own.y * s, r + 3, 0, Math.PI * 2);
      ctx.stroke();
      const p = this.prediction.drawn(now, this.clock.tickMs, dtMs);
      ctx.fillStyle = '#f5c542';
      ctx.strokeStyle = '#ffffff';
      ctx.lineWidth = 2.5;
      ctx.beginPath();
      ctx.arc(p.x * s, p.y * s, r + 2, 0, Math.PI * 2);
      ctx.fill();
      ctx.stroke();
    }

    const stick = this.controls.stick;
    if (stick) {
      ctx.strokeStyle = 'rgba(255,255,255,0.35)';
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(stick.ox, stick.oy, 36, 0, Math.PI * 2);
      ctx.moveTo(stick.ox, stick.oy);
      ctx.lineTo(stick.x, stick.y);
      ctx.stroke();
    }

    if (stale) {
      ctx.fillStyle = 'rgba(14,17,22,0.7)';
      ctx.fillRect(0, size / 2 - 28, size, 56);
      ctx.fillStyle = '#d8dee9';
      ctx.font = '600 16px system-ui, sans-serif';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(this.statusText(now), size / 2, size / 2);
    }
  }

  statusText(now = performance.now()) {
    const c = this.client;
    const last = c.lastClose;
    // Code 0: no socket closed (the matchmaker refused, or no ticket): the reason says what happened.
    const why = !last ? '' : last.code === 0 ? ` (${last.meaning}: ${last.reason})` : ` (${last.code}: ${last.meaning})`;
    switch (c.state) {
      case 'open':
        if (c.entity === null) return c.options.join ? 'connected, joining...' : 'watching';
        return `playing as #${c.entity}`;
      case 'reconnecting': {
        const s = Math.max(0, (c.nextAttemptAt - now) / 1000);
        return `reconnecting in ${s.toFixed(1)} s${why}`;
      }
      case 'closed':
        return `disconnected${why}`;
      default:
        return c.matchmaker && c.url === null ? 'asking the matchmaker...' : 'connecting...';
    }
  }

  updatePanel() {
    const c = this.client;
    const st = c.stats;
    const ms = (v) => (v === null ? '-' : `${v.toFixed(1)} ms`);
    const set = (k, text, bad = false) => {
      const dd = this.panel.querySelector(`[data-k="${k}"]`);
      dd.textContent = text;
      dd.classList.toggle('bad', bad);
    };
    set('state', c.state);
    set('rtt', st.srttMs === null ? '-' : `${st.rttMs.toFixed(1)} (avg ${st.srttMs.toFixed(1)}) ms`);
    set('ack', ms(st.inputAckMs));
    set('ups', st.updatesPerSec.toFixed(1));
    set('bps', st.bytesPerSec >= 10240 ? `${(st.bytesPerSec / 1024).toFixed(1)} KiB` : `${Math.round(st.bytesPerSec)} B`);
    set('tick', c.world.tick === null ? '-' : String(c.world.tick));
    set('entities', String(c.world.entities.size));
    set('you', c.entity === null ? '-' : `#${c.entity}`);
    // Which process hosts the room (the matchmaker's word; a standalone server has no process id).
    set('process', c.matchmade?.process ?? (c.matchmade ? 'standalone' : '-'));
    set('checksums', `${st.checksumsVerified} ok / ${st.checksumFailures} bad`, st.checksumFailures > 0);
    set('connects', String(st.connects));
    set('resumes', `${st.resumes} ok / ${st.resumesRefused} refused`);
    // The status line says what the code means; the panel keeps to the number.
    set('close', c.lastClose ? String(c.lastClose.code) : '-');
    this.panel.querySelector('[data-k="close"]').title = c.lastClose?.meaning ?? '';
    this.status.textContent = this.statusText();
    this.status.dataset.state = c.state;
  }
}

// ---- rooms --------------------------------------------------------------------------------------------

/** This page's address with `?room=` set to `room` (the other parameters kept: name, watch, server). */
function pageForRoom(room) {
  const next = new URLSearchParams(location.search);
  next.set('room', room);
  return `?${next}`;
}

/** A fresh room name nobody is likely to have taken: `room-` and 8 random letters or digits. */
function randomRoomName() {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `room-${Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('')}`;
}

/**
 * The server's rooms, the first page of GET /rooms (ROOMS_SHOWN, by name), refreshed every
 * ROOMS_REFRESH_MS: one request at a time (the next is scheduled when the last one ended), none while the
 * page is hidden or its client is trying to reach the server, each given up after ROOMS_TIMEOUT_MS.
 * The rooms listed are those of the process the page plays on (in a cluster, the one the matchmaker sent
 * it to), else of the page's server. Each room but the current one is a link to `?room=NAME`, and a
 * `?room=` page joins through the matchmaker; following it leaves the current room (see go()). **new
 * room** does the same for a fresh name. A `?server=` or a process of another origin is listed too:
 * GET /rooms allows any origin the server's --allow-origin does (CORS).
 */
class RoomList {
  constructor(server, element, client, requestedRoom) {
    this.server = server;
    this.list = element.querySelector('ul');
    this.note = element.querySelector('.note');
    this.client = client;
    this.requestedRoom = requestedRoom;
    /** What is drawn, so an unchanged list is not rebuilt (a click never lands on a replaced link). */
    this.drawn = '';
    this.refreshes = 0;
    this.lastError = null;
    this.inFlight = false;
    this.timer = null;
    element.querySelector('button').addEventListener('click', () => this.go(pageForRoom(randomRoomName())));
    this.list.addEventListener('click', (e) => {
      const link = e.target.closest('a');
      // Modified clicks (a new tab, a new window) leave this page playing.
      if (!link || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      this.go(link.getAttribute('href'));
    });
    // Once in a room, list at once rather than at the next refresh.
    client?.on('welcome', () => this.refresh());
    this.refresh();
  }

  /** The room this page is in: Welcome's name once there is one, else the one asked for (null: default). */
  get current() {
    return this.client?.room ?? this.requestedRoom;
  }

  /**
   * Leaves this room on purpose, then loads `href`: close() says goodbye (1000), so the server removes the
   * player at once instead of keeping it for a resume that will not come, and the stored session goes.
   */
  go(href) {
    this.client?.close();
    location.assign(href);
  }

  /** Lists now, unless a listing is in flight (its end schedules the next); then every ROOMS_REFRESH_MS. */
  async refresh() {
    if (this.inFlight) return;
    clearTimeout(this.timer);
    const c = this.client;
    const reachable = !c || c.state === 'open' || c.state === 'closed';
    if (reachable && !document.hidden) {
      this.inFlight = true;
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), ROOMS_TIMEOUT_MS);
      try {
        const where = c?.url ?? this.server;
        const { rooms, next } = await listRooms(where, { limit: ROOMS_SHOWN, signal: abort.signal });
        this.lastError = null;
        this.draw(rooms, next !== null);
      } catch (error) {
        // An HttpError's status is enough here (its message repeats the URL); others say what failed.
        this.lastError = error.name === 'AbortError' ? 'no answer' : error.status ? `HTTP ${error.status}` : error.message;
        this.note.textContent = `room list unavailable (${this.lastError})`;
      } finally {
        clearTimeout(timer);
        this.inFlight = false;
      }
      this.refreshes += 1;
    }
    this.timer = setTimeout(() => this.refresh(), ROOMS_REFRESH_MS);
  }

  draw(rooms, more) {
    const current = this.current;
    const key = JSON.stringify([current, more, rooms.map((r) => [r.name, r.players, r.spectators, r.maxPlayers])]);
    if (key === this.drawn) return;
    this.drawn = key;
    const items = rooms.map((r) => {
      const li = document.createElement('li');
      li.dataset.room = r.name;
      li.dataset.players = String(r.players);
      const name = document.createElement(r.name === current ? 'strong' : 'a');
      name.textContent = r.name;
      if (r.name === current) li.setAttribute('aria-current', 'true');
      else name.href = pageForRoom(r.name);
      const count = document.createElement('span');
      const cap = r.maxPlayers == null ? '' : `/${r.maxPlayers}`; // null: no cap
      const watching = r.spectators > 0 ? `, ${r.spectators} watching` : '';
      const noun = r.players === 1 && cap === '' ? 'player' : 'players'; // "1 player", "1/16 players"
      count.textContent = `${r.players}${cap} ${noun}${watching}`;
      li.append(name, count);
      return li;
    });
    this.list.replaceChildren(...items);
    const n = rooms.length;
    this.note.textContent = more
      ? `the first ${n} rooms by name; the server has more`
      : `${n} ${n === 1 ? 'room' : 'rooms'}`;
  }
}

// ---- chat ---------------------------------------------------------------------------------------------

/**
 * The arena's chat: the box sends its line as a `Send` (UTF-8), and every `Message` the game sends (in the
 * arena, `name: text` from any player of any arena room, on any process of the cluster) becomes a line.
 * Server text goes in as text nodes only (textContent), never as HTML. The last CHAT_LINES_MAX lines are
 * kept, in `lines` too (for tests and the console). The arena takes one line per player per second and
 * drops faster ones silently, so a line sent is shown when it comes back, not when it is typed.
 */
class Chat {
  constructor(element, client) {
    this.client = client;
    this.list = element.querySelector('ol');
    this.form = element.querySelector('form');
    this.input = this.form.querySelector('input');
    this.button = this.form.querySelector('button');
    this.note = element.querySelector('.note');
    this.input.maxLength = CHAT_INPUT_CHARS_MAX;
    /** The lines shown, oldest first. */
    this.lines = [];
    this.sent = 0;
    // Not fatal: a body that is not UTF-8 shows with replacement characters.
    this.decoder = new TextDecoder('utf-8');
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.send();
    });
    if (!client) {
      this.setEnabled(false, 'no connection');
      return;
    }
    client.on('message', (body) => this.add(this.decoder.decode(body)));
    const update = () => this.setEnabled(client.entity !== null, client.options.join ? 'not in a room yet' : 'watching: chat is read-only');
    client.on('joined', update);
    client.on('state', update);
    update();
  }

  setEnabled(on, why) {
    this.button.disabled = !on;
    this.input.placeholder = on ? 'say something' : why;
  }

  send() {
    const text = this.input.value.trim();
    if (text === '') return;
    try {
      this.client.send(text);
      this.sent += 1;
      this.input.value = '';
      this.note.textContent = '';
    } catch (error) {
      this.note.textContent = error.message;
    }
  }

  add(text) {
    const li = document.createElement('li');
    li.textContent = text;
    this.list.append(li);
    this.lines.push(text);
    while (this.lines.length > CHAT_LINES_MAX) {
      this.lines.shift();
      this.list.firstElementChild.remove();
    }
    this.list.scrollTop = this.list.scrollHeight;
  }
}

// ---- start --------------------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
const url = params.get('server') ?? `${scheme}://${location.host}/ws`;
// `?room=NAME` plays in that room, where the matchmaker says it is (no `?room=`: the default room, plain
// /ws); `?watch` spectates (Watch instead of Hello); `?server=ws://.../ws` connects (and matchmakes)
// elsewhere.
const room = params.get('room');
const roomName = document.getElementById('room-name');
let client = null;
let game = null;
if (room !== null && !isRoomName(room)) {
  // Nothing to connect to; the room list still offers rooms that exist.
  const status = document.getElementById('status');
  status.textContent = `bad room name: 1 to 64 of A-Z a-z 0-9 _ - (got ${JSON.stringify(room.slice(0, 80))})`;
  status.dataset.state = 'closed';
  roomName.textContent = '-';
} else {
  const options = {
    name: params.get('name') ?? `guest-${Math.floor(Math.random() * 1000)}`,
    join: !params.has('watch'),
  };
  client = room === null ? connect(url, options) : joinOrCreate(url, room, options);
  // The default room is each process's own (plain /ws), so the matchmaker refuses to place it (400). A
  // `?room=` naming it (a link from the room list, say) plays there instead: the page without `?room=`.
  client.on('close', (e) => {
    if (e.code === 0 && e.reconnectInMs === null && /^HTTP 400: the default room /.test(e.reason)) {
      const plain = new URLSearchParams(location.search);
      plain.delete('room');
      location.replace(`?${plain}`);
    }
  });
  // Until Welcome names it, the room asked for (plain /ws: the default room, whatever its name).
  roomName.textContent = room ?? 'default room';
  client.on('welcome', (msg) => {
    roomName.textContent = msg.room;
    roomName.dataset.welcome = msg.room;
  });
  game = new Game(
    client,
    document.getElementById('arena'),
    document.getElementById('net'),
    document.getElementById('status'),
  );
}
const rooms = new RoomList(url, document.getElementById('rooms'), client, room);
const chat = new Chat(document.getElementById('chat'), client);
window.tickcast = { client, game, rooms, chat };
