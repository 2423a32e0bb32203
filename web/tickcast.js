// tickcast.js: the browser SDK for tickcast's wire protocol v4. One ES module, no dependencies; it also
// runs under Node (the decoder needs nothing from the browser, the client takes a WebSocket class).
//
// Layout, in the order a byte travels:
//   Reader / Writer        bincode 2 `standard()` primitives: varints, zigzag, strings, sequences
//   arena                  the codec of the demo game's entity state, diff and input (swap it for your game)
//   decodeServerMsg ...    whole messages, one per binary WebSocket message, ids un-gapped
//   Mirror                 the replicated world rebuilt from Full/Delta, checked against Checksum
//   rooms                  room names, the upgrade URL of a room (/ws/ROOM), listing rooms (GET /rooms)
//   matchmaking            POST /matchmake: which process hosts a room, and a seat there
//   Client / connect()     the socket: Hello or Watch, inputs, messages, pings and RTT, reconnect with
//                          backoff and resume (same player, same mirror), close reasons
//   joinOrCreate()         a Client that asks the matchmaker where its room is before it connects
//
//   const client = connect(`ws://${location.host}/ws`, { name: 'ann', room: 'duel-7' });
//   // or, in a cluster (any process's URL; the matchmaker sends the client to the room's owner):
//   const client = joinOrCreate(`ws://${location.host}/ws`, 'duel-7', { name: 'ann' });
//   client.on('update', (change) => draw(client.world.entities));
//   client.on('message', (body) => log(new TextDecoder().decode(body)));
//   client.sendInput({ dx: 127, dy: 0 });
//   client.send('hello'); // a Send to the room's game, once joined
//
// Numbers: every u64 field except a checksum's hash is a Number; a value past 2^53 - 1 (which a tick or a
// connection id never reaches) comes as a BigInt rather than being rounded. Hashes are always BigInts.

export const PROTOCOL_VERSION = 4;
/** Longest player name the server accepts in `Hello`, in bytes of UTF-8. */
export const NAME_BYTES_MAX = 32;
/** Longest ticket the server accepts in `Hello` or `Watch`, in bytes of UTF-8. */
export const TICKET_BYTES_MAX = 256;
/** Bytes in a resume token (`Joined.resume_token`, `Hello.resume.token`). */
export const RESUME_TOKEN_BYTES = 16;
/** Longest body of a `Send` (client to game) and of a `Message` (game to client), in bytes. */
export const MESSAGE_BODY_BYTES_MAX = 1024;

/** Variant indices of server messages on the wire. */
export const ServerTag = Object.freeze({ WELCOME: 0, JOINED: 1, FULL: 2, DELTA: 3, CHECKSUM: 4, PONG: 5, MESSAGE: 6 });
/** Variant indices of client messages on the wire. */
export const ClientTag = Object.freeze({ HELLO: 0, INPUT: 1, PING: 2, WATCH: 3, SEND: 4 });

/** WebSocket close codes: the server's (see docs/PROTOCOL.md), the browser's 1006, and this SDK's own 49xx. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
  VERSION_MISMATCH: 4000,
  LAGGING: 4001,
  SEND_LIMIT: 4002,
  IDLE_TIMEOUT: 4003,
  UNAUTHORIZED: 4004,
  REPLACED: 4005,
  ROOM_FULL: 4006,
  ROOM_ENDED: 4007,
  KICKED: 4008,
  HOSTED_ELSEWHERE: 4009,
  // Sent by this SDK when it gives up on a connection itself.
  DESYNC: 4900,
  UNDECODABLE: 4901,
  SILENT: 4902,
});

const CLOSE_MEANINGS = new Map([
  [1000, 'closed normally'],
  [1001, 'the server is shutting down'],
  [1002, 'WebSocket protocol error'],
  [1003, 'the server accepts binary messages only'],
  [1005, 'closed without a status code'],
  [1006, 'connection lost (no close frame)'],
  [1007, 'the server could not decode a message from this client'],
  [1008, 'message not allowed in this state'],
  [1009, 'message too big for the server'],
  [1011, 'server error'],
  [1013, 'the server is full: try again later'],
  [4000, 'protocol version mismatch'],
  [4001, 'too slow: the server could not send updates for too long'],
  [4002, 'too slow: the server send buffer limit was passed'],
  [4003, 'idle for too long'],
  [4004, 'a valid ticket is required'],
  [4005, 'this player was taken over by another connection'],
  [4006, 'the room is full'],
  [4007, 'the room has ended'],
  [4008, 'kicked out of the room'],
  [4009, 'the room is hosted by another process'],
  [4900, 'the mirrored world went out of sync: resyncing'],
  [4901, 'a server message could not be decoded'],
  [4902, 'nothing heard from the server for too long'],
]);

/** A human sentence for a close code, for status lines and logs. */
export function describeClose(code) {
  return CLOSE_MEANINGS.get(code) ?? `closed with code ${code}`;
}

/**
 * Close codes after which reconnecting would only repeat the failure (this client speaks the protocol
 * wrongly or in the wrong version) or undo something on purpose (4005: the player was resumed on another
 * connection, another tab say; reconnecting would take it back and the two would fight over it; 4007: the
 * game ended the room, and reconnecting would create a fresh room of the same name; 4008: the game kicked
 * this player). Every other close (1001 on a server restart, 1006 on a lost connection or a refused
 * upgrade, 1013 when the world is full, 4006 when the room is, 4001-4003 when slow or idle, the SDK's own
 * 49xx) is retried with backoff, except 4004 (see Client: retried once, and only when the `ticket` option
 * is a function that can fetch a fresh one) and 4009 (the room is hosted by another process: a client made
 * by joinOrCreate asks the matchmaker again, once; any other client ends, since only the matchmaker knows
 * where the room is).
 */
export const FATAL_CLOSE_CODES = new Set([1002, 1003, 1007, 1008, 1009, 4000, 4005, 4007, 4008]);

/**
 * Closes after which the player is gone on the server: its resume token resumes nothing any more (4009:
 * the copy of the room it played in was closed).
 */
const PLAYER_GONE_CODES = new Set([4007, 4008, 4009]);

// ---- bincode 2 standard() primitives ------------------------------------------------------------------

/** Why bytes could not be decoded; the texts follow the server's own decode errors. */
export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = 'DecodeError';
  }
}

const U16_MARK = 251;
const U32_MARK = 252;
const U64_MARK = 253;
const TWO_32 = 2 ** 32;
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** Reads bincode 2 `standard()` values from one message. */
export class Reader {
  constructor(bytes) {
    this.bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    this.pos = 0;
  }

  get remaining() {
    return this.bytes.length - this.pos;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) {
      throw new DecodeError(`message ends ${this.pos + n - this.bytes.length} byte(s) too early`);
    }
  }

  u8() {
    this.need(1);
    return this.bytes[this.pos++];
  }

  i8() {
    this.need(1);
    return this.view.getInt8(this.pos++);
  }

  /** A varint marker byte, then the fixed-width little-endian value it announces (up to `maxMark`). */
  varint(maxMark) {
    const mark = this.u8();
    if (mark < U16_MARK) return mark;
    if (mark > maxMark) throw new DecodeError('malformed varint');
    const at = this.pos;
    if (mark === U16_MARK) {
      this.need(2);
      this.pos += 2;
      return this.view.getUint16(at, true);
    }
    if (mark === U32_MARK) {
      this.need(4);
      this.pos += 4;
      return this.view.getUint32(at, true);
    }
    this.need(8);
    this.pos += 8;
    const lo = this.view.getUint32(at, true);
    const hi = this.view.getUint32(at + 4, true);
    return hi < 0x200000 ? hi * TWO_32 + lo : (BigInt(hi) << 32n) | BigInt(lo);
  }

  u16() {
    return this.varint(U16_MARK);
  }

  u32() {
    return this.varint(U32_MARK);
  }

  /** A Number, or a BigInt past 2^53 - 1. */
  u64() {
    return this.varint(U64_MARK);
  }

  u64Big() {
    return BigInt(this.u64());
  }

  i16() {
    const z = this.u16();
    return (z >>> 1) ^ -(z & 1);
  }

  /** A sequence length; each element takes at least one byte, so a length past the rest is malformed. */
  len() {
    const n = this.u64();
    if (typeof n !== 'number' || n > this.remaining) {
      throw new DecodeError(`a list of ${n} items cannot fit in the ${this.remaining} bytes left`);
    }
    return n;
  }

  str() {
    const n = this.len();
    const at = this.pos;
    this.pos += n;
    try {
      return utf8Decoder.decode(this.bytes.subarray(at, at + n));
    } catch {
      throw new DecodeError('string is not valid UTF-8');
    }
  }

  /** A `Vec<u8>`: a length, then that many raw bytes (a u8 is not a varint). A copy. */
  byteVec() {
    return this.raw(this.len());
  }

  /** `n` raw bytes, as they are (a fixed-size array such as a resume token: no length prefix). A copy. */
  raw(n) {
    this.need(n);
    const at = this.pos;
    this.pos += n;
    return this.bytes.slice(at, at + n);
  }

  /** One byte, 00 or 01. */
  bool() {
    const b = this.u8();
    if (b > 1) throw new DecodeError(`invalid bool value ${b}: expected 0 or 1`);
    return b === 1;
  }

  /** `Option<T>`: 00 is none (null), 01 is followed by the value; any other byte is an error. */
  option(readValue) {
    const b = this.u8();
    if (b === 0) return null;
    if (b !== 1) throw new DecodeError(`invalid Option tag ${b}: expected 0 or 1`);
    return readValue(this);
  }

  /** A message means exactly one thing: trailing bytes are an error. */
  end() {
    if (this.remaining !== 0) {
      throw new DecodeError(`${this.remaining} trailing bytes after the message`);
    }
  }
}

function checkUint(v, max, what) {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${what} out of range: ${v}`);
}

/** Writes bincode 2 `standard()` values into a growing buffer. */
export class Writer {
  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const buf = new Uint8Array(size);
    buf.set(this.buf.subarray(0, this.len));
    this.buf = buf;
    this.view = new DataView(buf.buffer);
  }

  clear() {
    this.len = 0;
  }

  /** The bytes written so far (a view, valid until the next write). */
  bytes() {
    return this.buf.subarray(0, this.len);
  }

  u8(v) {
    checkUint(v, 0xff, 'u8');
    this.reserve(1);
    this.buf[this.len++] = v;
  }

  i8(v) {
    if (!Number.isInteger(v) || v < -128 || v > 127) throw new RangeError(`i8 out of range: ${v}`);
    this.reserve(1);
    this.buf[this.len++] = v & 0xff;
  }

  /** Any unsigned integer up to 2^64 - 1, as a Number or a BigInt. */
  varint(v) {
    if (typeof v === 'bigint') {
      if (v < 0n || v >= 1n << 64n) throw new RangeError(`u64 out of range: ${v}`);
      if (v <= BigInt(Number.MAX_SAFE_INTEGER)) return this.varint(Number(v));
      this.reserve(9);
      this.buf[this.len++] = U64_MARK;
      this.view.setUint32(this.len, Number(v & 0xffffffffn), true);
      this.view.setUint32(this.len + 4, Number(v >> 32n), true);
      this.len += 8;
      return;
    }
    checkUint(v, Number.MAX_SAFE_INTEGER, 'unsigned integer');
    this.reserve(9);
    if (v < U16_MARK) {
      this.buf[this.len++] = v;
    } else if (v <= 0xffff) {
      this.buf[this.len++] = U16_MARK;
      this.view.setUint16(this.len, v, true);
      this.len += 2;
    } else if (v <= 0xffffffff) {
      this.buf[this.len++] = U32_MARK;
      this.view.setUint32(this.len, v, true);
      this.len += 4;
    } else {
      this.buf[this.len++] = U64_MARK;
      this.view.setUint32(this.len, v % TWO_32, true);
      this.view.setUint32(this.len + 4, Math.floor(v / TWO_32), true);
      this.len += 8;
    }
  }

  u16(v) {
    checkUint(v, 0xffff, 'u16');
    this.varint(v);
  }

  u32(v) {
    checkUint(v, 0xffffffff, 'u32');
    this.varint(v);
  }

  u64(v) {
    this.varint(v);
  }

  i16(v) {
    if (!Number.isInteger(v) || v < -32768 || v > 32767) throw new RangeError(`i16 out of range: ${v}`);
    this.varint(((v << 1) ^ (v >> 15)) & 0xffff);
  }

  str(s) {
    const bytes = utf8Encoder.encode(s);
    this.varint(bytes.length);
    this.raw(bytes);
  }

  /** A `Vec<u8>`: its length, then the bytes as they are. */
  byteVec(bytes) {
    this.varint(bytes.length);
    this.raw(bytes);
  }

  /** Bytes as they are, no length prefix (a fixed-size array). */
  raw(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }

  bool(v) {
    if (typeof v !== 'boolean') throw new RangeError(`bool expected: ${v}`);
    this.reserve(1);
    this.buf[this.len++] = v ? 1 : 0;
  }

  /** `Option<T>`: null or undefined is none (00), anything else 01 then the value. */
  option(v, writeValue) {
    if (v === null || v === undefined) return this.u8(0);
    this.u8(1);
    writeValue(this, v);
  }
}

// ---- the arena game's codec ---------------------------------------------------------------------------

const clampI8 = (v) => Math.max(-128, Math.min(127, Math.round(Number(v) || 0)));

/**
 * The demo game's replicated types (src/sim/arena.rs). A codec for another game provides the same members.
 * State `{x, y, seq}`: position in quarter units (u16 each) and the last input seq the server applied (u32).
 * Diff `{dx, dy, dseq}`: i16, i16, u32, applied with wrapping adds. Input `{dx, dy}`: i8 each, a direction.
 */
export const arena = Object.freeze({
  name: 'arena',
  worldSizeUnits: 2000,
  quantaPerUnit: 4,
  speedUnitsPerS: 200,
  readState: (r) => ({ x: r.u16(), y: r.u16(), seq: r.u32() }),
  writeState(w, s) {
    w.u16(s.x);
    w.u16(s.y);
    w.u32(s.seq);
  },
  readDiff: (r) => ({ dx: r.i16(), dy: r.i16(), dseq: r.u32() }),
  writeDiff(w, d) {
    w.i16(d.dx);
    w.i16(d.dy);
    w.u32(d.dseq);
  },
  applyDiff(s, d) {
    s.x = (s.x + d.dx) & 0xffff;
    s.y = (s.y + d.dy) & 0xffff;
    s.seq = (s.seq + d.dseq) >>> 0;
  },
  readInput: (r) => ({ dx: r.i8(), dy: r.i8() }),
  /** Components are rounded and clamped to -128..127; the server normalises the direction. */
  writeInput(w, input) {
    w.i8(clampI8(input.dx));
    w.i8(clampI8(input.dy));
  },
});

// ---- messages -----------------------------------------------------------------------------------------

/** A list of `(id, value)` whose ids are sent as gaps from the previous id of the same list. */
function readIdList(r, readValue) {
  const n = r.len();
  const list = new Array(n);
  let id = 0;
  for (let i = 0; i < n; i++) {
    id = (id + r.u32()) >>> 0;
    list[i] = [id, readValue(r)];
  }
  return list;
}

function readIds(r) {
  const n = r.len();
  const ids = new Array(n);
  let id = 0;
  for (let i = 0; i < n; i++) {
    id = (id + r.u32()) >>> 0;
    ids[i] = id;
  }
  return ids;
}

/** A resume token: exactly RESUME_TOKEN_BYTES bytes, as a Uint8Array (an Array of bytes is accepted). */
function writeToken(w, token) {
  if (token?.length !== RESUME_TOKEN_BYTES) {
    throw new RangeError(`a resume token is ${RESUME_TOKEN_BYTES} bytes, got ${token?.length}`);
  }
  for (const b of token) checkUint(b, 0xff, 'token byte');
  w.raw(token);
}

const readResume = (r) => ({ token: r.raw(RESUME_TOKEN_BYTES), tick: r.u64() });

function writeResume(w, resume) {
  writeToken(w, resume.token);
  w.u64(resume.tick);
}

/** A string field with a byte limit the server enforces: refused before it is sent, or when decoded. */
function checkStrBytes(s, max, what, Err) {
  const n = utf8Encoder.encode(s).length;
  if (n > max) throw new Err(`${what} is ${n} bytes, the limit is ${max}`);
}

/**
 * The bytes of a `Send` or `Message` body: a string is encoded as UTF-8, a Uint8Array (or another
 * ArrayBuffer view, or an ArrayBuffer) taken as it is (not copied). More than MESSAGE_BODY_BYTES_MAX bytes
 * is a RangeError that says `what` was too long; anything else a TypeError.
 */
export function messageBody(body, what = 'body') {
  let bytes;
  if (typeof body === 'string') bytes = utf8Encoder.encode(body);
  else if (body instanceof Uint8Array) bytes = body;
  else if (ArrayBuffer.isView(body)) bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  else if (body instanceof ArrayBuffer) bytes = new Uint8Array(body);
  else throw new TypeError(`a ${what} is a string or bytes, got ${body === null ? 'null' : typeof body}`);
  checkBodyBytes(bytes, what, RangeError);
  return bytes;
}

/** The server's own limit and words (src/proto/mod.rs: `Send body is 1025 bytes, the limit is 1024`). */
function checkBodyBytes(bytes, what, Err) {
  if (bytes.length > MESSAGE_BODY_BYTES_MAX) {
    throw new Err(`${what} is ${bytes.length} bytes, the limit is ${MESSAGE_BODY_BYTES_MAX}`);
  }
}

function writeIdList(w, list, writeValue) {
  w.varint(list.length);
  let previous = 0;
  for (const [id, value] of list) {
    if (id < previous) throw new RangeError('ids must ascend');
    w.u32(id - previous);
    previous = id;
    writeValue(w, value);
  }
}

/**
 * Decodes one server message. Ids in `Full` and `Delta` lists come back as ids (the gaps undone):
 *   {type: 'Welcome', protocol, tickHz, tick, connectionId, room}
 *   {type: 'Joined', entity, resumeToken: Uint8Array(16), resumed: boolean}
 *   {type: 'Full', tick, entities: [[id, state], ...]}
 *   {type: 'Delta', base, tick, despawned: [id, ...], set: [[id, state], ...], changed: [[id, diff], ...]}
 *   {type: 'Checksum', tick, hash: BigInt}                     {type: 'Pong', nonce, tick}
 *   {type: 'Message', body: Uint8Array}                       (at most MESSAGE_BODY_BYTES_MAX bytes)
 * Throws a DecodeError on anything else, trailing bytes included.
 */
export function decodeServerMsg(bytes, codec = arena) {
  const r = new Reader(bytes);
  const tag = r.u32();
  let msg;
  switch (tag) {
    case ServerTag.WELCOME:
      msg = {
        type: 'Welcome',
        protocol: r.u16(),
        tickHz: r.u16(),
        tick: r.u64(),
        connectionId: r.u64(),
        room: r.str(),
      };
      break;
    case ServerTag.JOINED:
      msg = { type: 'Joined', entity: r.u32(), resumeToken: r.raw(RESUME_TOKEN_BYTES), resumed: r.bool() };
      break;
    case ServerTag.FULL:
      msg = { type: 'Full', tick: r.u64(), entities: readIdList(r, codec.readState) };
      break;
    case ServerTag.DELTA:
      msg = {
        type: 'Delta',
        base: r.u64(),
        tick: r.u64(),
        despawned: readIds(r),
        set: readIdList(r, codec.readState),
        changed: readIdList(r, codec.readDiff),
      };
      break;
    case ServerTag.CHECKSUM:
      msg = { type: 'Checksum', tick: r.u64(), hash: r.u64Big() };
      break;
    case ServerTag.PONG:
      msg = { type: 'Pong', nonce: r.u64(), tick: r.u64() };
      break;
    case ServerTag.MESSAGE:
      msg = { type: 'Message', body: r.byteVec() };
      break;
    default:
      throw new DecodeError(`unknown message or enum tag ${tag}`);
  }
  r.end();
  if (msg.type === 'Message') checkBodyBytes(msg.body, 'Message body', DecodeError);
  return msg;
}

/**
 * The protocol a Welcome announces, read before the rest of it (whose shape may be another version's: a
 * v2 Welcome has no room), or null when `bytes` is not the start of a Welcome.
 */
export function welcomeVersion(bytes) {
  try {
    const r = new Reader(bytes);
    return r.u32() === ServerTag.WELCOME ? r.u16() : null;
  } catch {
    return null;
  }
}

/** Encodes a server message (the inverse of decodeServerMsg): for tools, tests and fake servers. */
export function encodeServerMsg(msg, codec = arena) {
  const w = new Writer();
  switch (msg.type) {
    case 'Welcome':
      w.u32(ServerTag.WELCOME);
      w.u16(msg.protocol);
      w.u16(msg.tickHz);
      w.u64(msg.tick);
      w.u64(msg.connectionId);
      w.str(msg.room);
      break;
    case 'Joined':
      w.u32(ServerTag.JOINED);
      w.u32(msg.entity);
      writeToken(w, msg.resumeToken);
      w.bool(msg.resumed);
      break;
    case 'Full':
      w.u32(ServerTag.FULL);
      w.u64(msg.tick);
      writeIdList(w, msg.entities, codec.writeState);
      break;
    case 'Delta':
      w.u32(ServerTag.DELTA);
      w.u64(msg.base);
      w.u64(msg.tick);
      writeIdList(
        w,
        msg.despawned.map((id) => [id, null]),
        () => {},
      );
      writeIdList(w, msg.set, codec.writeState);
      writeIdList(w, msg.changed, codec.writeDiff);
      break;
    case 'Checksum':
      w.u32(ServerTag.CHECKSUM);
      w.u64(msg.tick);
      w.u64(BigInt(msg.hash));
      break;
    case 'Pong':
      w.u32(ServerTag.PONG);
      w.u64(msg.nonce);
      w.u64(msg.tick);
      break;
    case 'Message':
      w.u32(ServerTag.MESSAGE);
      w.byteVec(messageBody(msg.body, 'Message body'));
      break;
    default:
      throw new RangeError(`not a server message: ${msg.type}`);
  }
  return w.bytes().slice();
}

/**
 * Encodes one client message:
 *   {type: 'Hello', protocol, name, ticket, resume: null | {token: Uint8Array(16), tick}}
 *   {type: 'Input', seq, input}   {type: 'Ping', nonce}   {type: 'Watch', protocol, ticket}
 *   {type: 'Send', body}          (body: a string, sent as UTF-8, or bytes; see messageBody)
 * `ticket` may be left out (sent empty). A name over 32, a ticket over 256 or a body over 1024 bytes is a
 * RangeError.
 */
export function encodeClientMsg(msg, codec = arena, w = new Writer(16)) {
  w.clear();
  switch (msg.type) {
    case 'Hello':
      checkStrBytes(msg.name, NAME_BYTES_MAX, 'name', RangeError);
      checkStrBytes(msg.ticket ?? '', TICKET_BYTES_MAX, 'ticket', RangeError);
      w.u32(ClientTag.HELLO);
      w.u16(msg.protocol);
      w.str(msg.name);
      w.str(msg.ticket ?? '');
      w.option(msg.resume, writeResume);
      break;
    case 'Input':
      w.u32(ClientTag.INPUT);
      w.u32(msg.seq);
      codec.writeInput(w, msg.input);
      break;
    case 'Ping':
      w.u32(ClientTag.PING);
      w.u64(msg.nonce);
      break;
    case 'Watch':
      checkStrBytes(msg.ticket ?? '', TICKET_BYTES_MAX, 'ticket', RangeError);
      w.u32(ClientTag.WATCH);
      w.u16(msg.protocol);
      w.str(msg.ticket ?? '');
      break;
    case 'Send':
      w.u32(ClientTag.SEND);
      w.byteVec(messageBody(msg.body, 'Send body'));
      break;
    default:
      throw new RangeError(`not a client message: ${msg.type}`);
  }
  return w.bytes().slice();
}

/**
 * Decodes one client message (what the server reads), with the server's limits on name, ticket and body
 * lengths: for tools and tests. A Send's body comes back as a Uint8Array.
 */
export function decodeClientMsg(bytes, codec = arena) {
  const r = new Reader(bytes);
  const tag = r.u32();
  let msg;
  switch (tag) {
    case ClientTag.HELLO:
      msg = { type: 'Hello', protocol: r.u16(), name: r.str(), ticket: r.str(), resume: r.option(readResume) };
      break;
    case ClientTag.WATCH:
      msg = { type: 'Watch', protocol: r.u16(), ticket: r.str() };
      break;
    case ClientTag.INPUT:
      msg = { type: 'Input', seq: r.u32(), input: codec.readInput(r) };
      break;
    case ClientTag.PING:
      msg = { type: 'Ping', nonce: r.u64() };
      break;
    case ClientTag.SEND:
      msg = { type: 'Send', body: r.byteVec() };
      break;
    default:
      throw new DecodeError(`unknown message or enum tag ${tag}`);
  }
  r.end();
  if (msg.type === 'Send') checkBodyBytes(msg.body, 'Send body', DecodeError);
  if (msg.type === 'Hello') checkStrBytes(msg.name, NAME_BYTES_MAX, 'name', DecodeError);
  if (msg.ticket !== undefined) checkStrBytes(msg.ticket, TICKET_BYTES_MAX, 'ticket', DecodeError);
  return msg;
}

/** Cuts `name` to at most NAME_BYTES_MAX bytes of UTF-8 without splitting a character. */
export function fitName(name) {
  let out = '';
  let bytes = 0;
  for (const ch of String(name)) {
    const n = utf8Encoder.encode(ch).length;
    if (bytes + n > NAME_BYTES_MAX) break;
    out += ch;
    bytes += n;
  }
  return out;
}

// ---- checksums ----------------------------------------------------------------------------------------

/**
 * 64-bit FNV-1a, as src/proto/mod.rs spells it, in four 16-bit limbs so it runs on plain Numbers.
 * The prime 0x100000001b3 is 2^40 + 0x1b3: limb 0 times 0x1b3 plus limb 2 times 0x100.
 */
export function fnv1a64(bytes) {
  let h0 = 0x2325;
  let h1 = 0x8422;
  let h2 = 0x9ce4;
  let h3 = 0xcbf2;
  for (let i = 0; i < bytes.length; i++) {
    h0 ^= bytes[i];
    const t0 = h0 * 0x1b3;
    const t1 = h1 * 0x1b3 + (t0 >>> 16);
    const t2 = h2 * 0x1b3 + h0 * 0x100 + (t1 >>> 16);
    const t3 = h3 * 0x1b3 + h1 * 0x100 + (t2 >>> 16);
    h0 = t0 & 0xffff;
    h1 = t1 & 0xffff;
    h2 = t2 & 0xffff;
    h3 = t3 & 0xffff;
  }
  return (BigInt(h3) << 48n) | (BigInt(h2) << 32n) | (BigInt(h1) << 16n) | BigInt(h0);
}

// ---- the mirrored world -------------------------------------------------------------------------------

/** Why a mirror cannot follow the server: `kind` is 'wrong-base', 'unknown-entity' or 'checksum-mismatch'. */
export class MirrorError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'MirrorError';
    this.kind = kind;
  }
}

const hex64 = (h) => `0x${h.toString(16).padStart(16, '0')}`;

/** A client's copy of the replicated world (src/sync/mirror.rs, in JavaScript). */
export class Mirror {
  constructor(codec = arena) {
    this.codec = codec;
    /** id -> state; states are updated in place by diffs. */
    this.entities = new Map();
    /** The tick held, once a Full arrived; null before. */
    this.tick = null;
    /** Updates that covered more than one tick (the server had skipped this client while it was slow). */
    this.coalesced = 0;
    this.checksumsVerified = 0;
    this.scratch = new Writer(1024);
  }

  /**
   * Applies a Full, Delta or Checksum; returns what changed (or, for a Checksum, `{tick, hash}`), or null
   * for other messages. Throws a MirrorError when the mirror cannot follow.
   * A change is `{tick, base, full, coalesced, set: [id], changed: [id], despawned: [id]}`.
   */
  apply(msg) {
    switch (msg.type) {
      case 'Full':
        return this.applyFull(msg);
      case 'Delta':
        return this.applyDelta(msg);
      case 'Checksum':
        return this.verify(msg);
      default:
        return null;
    }
  }

  applyFull(msg) {
    const before = this.entities;
    this.entities = new Map(msg.entities);
    const despawned = [];
    for (const id of before.keys()) if (!this.entities.has(id)) despawned.push(id);
    this.tick = msg.tick;
    const set = msg.entities.map(([id]) => id);
    return { tick: msg.tick, base: null, full: true, coalesced: false, set, changed: [], despawned };
  }

  applyDelta(msg) {
    // A resume from tick 0 (a reloaded page, a dropped mirror) always gets a Full (docs/PROTOCOL.md), so a
    // Delta needs the very tick it starts from.
    if (this.tick !== msg.base) {
      throw new MirrorError('wrong-base', `delta from tick ${msg.base}, mirror holds ${this.tick}`);
    }
    for (const id of msg.despawned) this.entities.delete(id);
    for (const [id, state] of msg.set) this.entities.set(id, state);
    for (const [id, diff] of msg.changed) {
      const state = this.entities.get(id);
      if (state === undefined) {
        throw new MirrorError('unknown-entity', `tick ${msg.tick}: diff for unknown entity ${id}`);
      }
      this.codec.applyDiff(state, diff);
    }
    const coalesced = msg.tick > msg.base + 1;
    if (coalesced) this.coalesced += 1;
    this.tick = msg.tick;
    return {
      tick: msg.tick,
      base: msg.base,
      full: false,
      coalesced,
      set: msg.set.map(([id]) => id),
      changed: msg.changed.map(([id]) => id),
      despawned: msg.despawned,
    };
  }

  /** Checks the server's hash of tick `msg.tick` against this mirror. */
  verify(msg) {
    // The server sends a checksum right after the update of the same tick, never on its own.
    if (this.tick !== msg.tick) {
      throw new MirrorError('wrong-base', `checksum for tick ${msg.tick}, mirror holds ${this.tick}`);
    }
    const mine = this.hash();
    if (mine !== msg.hash) {
      throw new MirrorError(
        'checksum-mismatch',
        `tick ${msg.tick}: checksum ${hex64(mine)}, server says ${hex64(msg.hash)}`,
      );
    }
    this.checksumsVerified += 1;
    return { tick: msg.tick, hash: mine };
  }

  /** Forgets everything: the mirror holds no tick until the next Full (a new player, a desync). */
  clear() {
    this.entities = new Map();
    this.tick = null;
  }

  /** FNV-1a 64 over, per entity in ascending id order, varint(id) ++ encode(state). A BigInt. */
  hash() {
    const w = this.scratch;
    w.clear();
    const ids = Array.from(this.entities.keys()).sort((a, b) => a - b);
    for (const id of ids) {
      w.u32(id);
      this.codec.writeState(w, this.entities.get(id));
    }
    return fnv1a64(w.bytes());
  }
}

// ---- rooms --------------------------------------------------------------------------------------------

/** Longest room name, in bytes (the alphabet is ASCII, so in characters too). */
export const ROOM_NAME_BYTES_MAX = 64;
const ROOM_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `name` is a room name: 1 to 64 of `A-Z a-z 0-9 _ -` (case matters; nothing is decoded). */
export function isRoomName(name) {
  return typeof name === 'string' && ROOM_NAME.test(name);
}

/** Returns `name` if it is a room name, else throws a RangeError that says what a room name is. */
export function checkRoomName(name) {
  if (isRoomName(name)) return name;
  const cut = typeof name === 'string' && name.length > 80 ? `${name.slice(0, 80)}...` : name;
  const shown = typeof name === 'string' ? JSON.stringify(cut) : String(name);
  throw new RangeError(`bad room name ${shown}: 1 to ${ROOM_NAME_BYTES_MAX} of A-Z a-z 0-9 _ -`);
}

/** `url` parsed, relative ones against the page's address (where there is a page). */
function parseUrl(url) {
  return new URL(String(url), globalThis.location?.href);
}

/**
 * The upgrade URL of room `room` on the server whose `/ws` URL is `base`: `ws://host/ws` becomes
 * `ws://host/ws/ROOM`. The query is kept (`?ticket=`, and `?type=` with the game's options, which only
 * matter to the connection that creates the room). A base without a path (`ws://host`) means its `/ws`; a
 * path ending in `/ws` behind a prefix (`wss://host/game/ws`) keeps the prefix. `room` null or undefined:
 * `base` as it is, the server's default room. A bad room name is a RangeError, a base whose path does not
 * end in `/ws` (one that names a room already, say) a TypeError.
 */
export function roomUrl(base, room) {
  if (room === null || room === undefined) return String(base);
  checkRoomName(room);
  const u = parseUrl(base);
  let path = u.pathname.replace(/\/+$/, '');
  if (path === '') path = '/ws';
  if (!/(^|\/)ws$/.test(path)) {
    throw new TypeError(`cannot put room ${room} in ${base}: the path must end in /ws (ws://host/ws), not ${u.pathname}`);
  }
  u.pathname = `${path}/${room}`;
  return u.href;
}

/**
 * The `GET /rooms` URL of a server (`/rooms/NAME` with `name`), from any URL of it: its `/ws` URL (as given
 * to connect()), a room's `/ws/ROOM`, or its page's http(s) address. ws becomes http and wss https; a path
 * prefix before `/ws` is kept; the query is dropped (a ticket is not sent along).
 */
export function roomsUrl(base, name) {
  return httpUrl(base, name === undefined ? 'rooms' : `rooms/${checkRoomName(name)}`);
}

/** `path` on the server `base` is a URL of (see roomsUrl): http(s), the prefix before `/ws` kept, no query. */
function httpUrl(base, path) {
  const u = parseUrl(base);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  const m = /^(.*\/)ws(?:\/[^/]*)?\/?$/.exec(u.pathname);
  const prefix = m ? m[1] : '/';
  u.pathname = `${prefix}${path}`;
  u.search = '';
  u.hash = '';
  return u.href;
}

/** An HTTP answer other than 200 from the server: `status` and the server's one-line `body`. */
export class HttpError extends Error {
  constructor(status, body, url) {
    super(`${url}: HTTP ${status}${body ? `: ${body}` : ''}`);
    this.name = 'HttpError';
    this.status = status;
    this.body = body;
  }
}

/** One room of `GET /rooms`, its snake_case fields in this SDK's camelCase. */
function roomInfo(r) {
  if (!r || typeof r !== 'object' || typeof r.name !== 'string') {
    throw new TypeError(`not a room: ${JSON.stringify(r)?.slice(0, 200)}`);
  }
  return {
    name: r.name,
    type: r.type,
    players: r.players,
    playersDetached: r.players_detached,
    spectators: r.spectators,
    /** null: the room type sets no cap. */
    maxPlayers: r.max_players,
    maxSpectators: r.max_spectators,
    tickHz: r.tick_hz,
    tick: r.tick,
    createdUnixS: r.created_unix_s,
  };
}

async function getJson(url, fetchFn, signal) {
  const res = await fetchFn(url, { signal, headers: { accept: 'application/json' } });
  if (res.status !== 200) {
    const body = (await res.text().catch(() => '')).trim().slice(0, 200);
    throw new HttpError(res.status, body, url);
  }
  return res.json();
}

/**
 * One page of the server's rooms, in ascending name order: `GET /rooms`. Resolves
 * `{rooms: [{name, type, players, playersDetached, spectators, maxPlayers, maxSpectators, tickHz, tick,
 * createdUnixS}], next}`; `next` is the name to pass as `after` for the next page, null on the last one.
 * `base` is any URL of the server (see roomsUrl). Options: `limit` (1 to 100; the server's default is
 * 100), `after` (a room name), `signal` (an AbortSignal), `fetch`. A status other than 200 rejects with an
 * HttpError.
 */
export async function listRooms(base, { limit, after, signal, fetch: fetchFn = globalThis.fetch } = {}) {
  const u = new URL(roomsUrl(base));
  if (limit !== undefined) {
    checkUint(limit, 100, 'limit');
    if (limit < 1) throw new RangeError('limit out of range: 0');
    u.searchParams.set('limit', String(limit));
  }
  if (after !== undefined && after !== null) u.searchParams.set('after', checkRoomName(after));
  const body = await getJson(u.href, fetchFn, signal);
  if (!Array.isArray(body?.rooms) || !(body.next === null || typeof body.next === 'string')) {
    throw new TypeError(`${u.href}: not a room list: ${JSON.stringify(body)?.slice(0, 200)}`);
  }
  return { rooms: body.rooms.map(roomInfo), next: body.next };
}

/** One room (`GET /rooms/NAME`), as listRooms gives it, or null when the server has no room of that name. */
export async function getRoom(base, name, { signal, fetch: fetchFn = globalThis.fetch } = {}) {
  try {
    return roomInfo(await getJson(roomsUrl(base, name), fetchFn, signal));
  } catch (error) {
    if (error instanceof HttpError && error.status === 404) return null;
    throw error;
  }
}

// ---- matchmaking --------------------------------------------------------------------------------------

/** Player ids the matchmaker takes (`player`, on a server without tickets): 1 to 64 of A-Z a-z 0-9 _ -. */
const PLAYER_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** The longest request body the server's POST /matchmake reads, in bytes (413 beyond). */
export const MATCHMAKE_BODY_BYTES_MAX = 1024;

/**
 * The `POST /matchmake` URL of a server, from any URL of it (as roomsUrl: its `/ws` URL, a room's, its
 * page's): http(s), the prefix before `/ws` kept, no query.
 */
export function matchmakeUrl(base) {
  return httpUrl(base, 'matchmake');
}

/**
 * The WebSocket URL of a matchmaker's answer: its `connect` (absolute in a cluster, a path from a
 * standalone server) resolved against the URL the request went to, http becoming ws and https wss.
 */
export function seatUrl(connect, requestUrl) {
  const u = new URL(String(connect), requestUrl);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new TypeError(`the matchmaker's connect is not a ws(s) or http(s) URL: ${String(connect).slice(0, 200)}`);
  }
  u.hash = '';
  return u.href;
}

/**
 * The matchmaker refused (an HTTP status other than 200): `status`, `error` (the server's one-line
 * reason, from its `{"error": ...}` body), `retryAfterS` (its Retry-After header, null without one or
 * where a cross-origin page may not read it) and `body`.
 */
export class MatchmakeError extends HttpError {
  constructor(status, error, url, retryAfterS = null) {
    super(status, error, url);
    this.name = 'MatchmakeError';
    this.message = `matchmaking refused: HTTP ${status}${error ? `: ${error}` : ''}`;
    this.error = error;
    this.retryAfterS = retryAfterS;
  }
}

/** The JSON body of a matchmaking request, checked here so a bad one is refused before it is sent. */
function matchmakeRequest({ room, type, player, ticket } = {}) {
  const request = {};
  if (room !== undefined && room !== null) request.room = checkRoomName(room);
  if (type !== undefined && type !== null) {
    if (typeof type !== 'string' || type === '') throw new TypeError(`a room type is a non-empty string, got ${JSON.stringify(type)}`);
    request.type = type;
  }
  if (request.room === undefined && request.type === undefined) {
    throw new TypeError('matchmaking needs a room, a type, or both');
  }
  if (player !== undefined && player !== null) {
    if (!PLAYER_ID.test(player)) throw new RangeError(`bad player id ${JSON.stringify(String(player).slice(0, 80))}: 1 to 64 of A-Z a-z 0-9 _ -`);
    request.player = player;
  }
  if (ticket !== undefined && ticket !== null && ticket !== '') {
    if (typeof ticket !== 'string') throw new TypeError(`a ticket must be a string, got ${typeof ticket}`);
    checkStrBytes(ticket, TICKET_BYTES_MAX, 'ticket', RangeError);
    request.ticket = ticket;
  }
  const body = JSON.stringify(request);
  checkStrBytes(body, MATCHMAKE_BODY_BYTES_MAX, 'matchmaking request', RangeError);
  return body;
}

/** The server's `{"error": "..."}`, or its text as it is when it is not that. */
function errorText(text) {
  try {
    const parsed = JSON.parse(text);
    if (typeof parsed?.error === 'string') return parsed.error;
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 200);
}

const nullable = (v, type) => (v === null || v === undefined ? null : typeof v === type ? v : undefined);

/**
 * Asks the server's matchmaker for a seat: `POST /matchmake` with `{room, type, player, ticket}` (a
 * `room` to join or create, or a `type` for any room of that type with a free seat, else a new one; both:
 * the named room, created with that type; `player` is the player id on a server without tickets, `ticket`
 * the game backend's ticket on one with them). The body is a plain string (no Content-Type of its own),
 * so a browser on another origin sends no CORS preflight. `base` is any URL of the server (see roomsUrl).
 *
 * Resolves `{room, type, process, connect, ticket, expiresUnixS, url}`: the server's answer in camelCase
 * (`process`, `ticket` and `expiresUnixS` are null from a standalone server) and `url`, the WebSocket URL
 * to open (see seatUrl: absolute, the seat ticket in its query where there is one). A status other than
 * 200 rejects with a MatchmakeError (`status`, the server's `error`); a bad argument is refused before
 * anything is sent. Options: `signal` (an AbortSignal), `fetch`.
 */
export async function matchmake(base, { room, type, player, ticket, signal, fetch: fetchFn = globalThis.fetch } = {}) {
  const body = matchmakeRequest({ room, type, player, ticket });
  const url = matchmakeUrl(base);
  const res = await fetchFn(url, { method: 'POST', body, signal });
  const text = await res.text();
  if (res.status !== 200) {
    const retryAfter = Number.parseInt(res.headers?.get?.('retry-after') ?? '', 10);
    throw new MatchmakeError(res.status, errorText(text), url, Number.isFinite(retryAfter) ? retryAfter : null);
  }
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = null;
  }
  const seat = answer && {
    room: answer.room,
    type: answer.type,
    process: nullable(answer.process, 'string'),
    connect: answer.connect,
    ticket: nullable(answer.ticket, 'string'),
    expiresUnixS: nullable(answer.expires_unix_s, 'number'),
  };
  if (
    !seat ||
    !isRoomName(seat.room) ||
    typeof seat.type !== 'string' ||
    typeof seat.connect !== 'string' ||
    [seat.process, seat.ticket, seat.expiresUnixS].includes(undefined)
  ) {
    throw new TypeError(`${url}: not a matchmaking answer: ${text.slice(0, 200)}`);
  }
  return { ...seat, url: seatUrl(seat.connect, url) };
}

// ---- the client ---------------------------------------------------------------------------------------

const DEFAULTS = Object.freeze({
  /** Player name sent in Hello (cut to 32 bytes of UTF-8). */
  name: 'player',
  /**
   * The room to join or create: the URL given becomes its `/ws/ROOM` (see roomUrl; a bad name throws a
   * RangeError at once). Undefined or null: the URL as it is (`/ws` is the server's default room).
   */
  room: undefined,
  /** Send Hello on every connection, and so control an entity; false: send Watch and spectate. */
  join: true,
  /**
   * The authentication ticket sent in Hello or Watch ('' for none; the server ignores it unless it requires
   * tickets). A string, or a function returning a string or a Promise of one, called before every connection
   * attempt so a page can fetch a fresh short-lived ticket from its backend each time.
   */
  ticket: '',
  /** After a lost connection, ask to take the same player back (Hello.resume) and keep the mirror. */
  resume: true,
  /**
   * Where the session (resume token, last input seq) is kept so that a page reload resumes the same player:
   * anything with getItem/setItem/removeItem. Default: the page's sessionStorage (per tab), none in Node.
   * null: keep nothing.
   */
  storage: undefined,
  codec: arena,
  /**
   * Ask the matchmaker (POST /matchmake on the server of the URL given) for a seat before connecting:
   * `{room, type}` as for matchmake(). joinOrCreate() sets it; see Client for what it changes.
   */
  matchmake: undefined,
  /**
   * The player id sent to the matchmaker (1 to 64 of A-Z a-z 0-9 _ -; a server that requires tickets takes
   * the ticket's player instead). Default: a `guest-` id of this tab, kept in `storage`, so a reload, and a
   * seat asked for again later, are the same player (the account a resume is checked against).
   */
  player: undefined,
  /** A matchmaking request without an answer after this long is given up (a failed attempt, retried). */
  matchmakeTimeoutMs: 10_000,
  /** The fetch used for matchmaking (default: the global one, looked up at each request). */
  fetch: undefined,
  /** A Ping every this many ms while open; the Pong gives the round-trip time. */
  pingIntervalMs: 1000,
  /** Close and reconnect when nothing at all arrived for this long (the server sends every tick). */
  silenceTimeoutMs: 10_000,
  /** Inputs are dropped, not queued, while the socket holds more than this many unsent bytes. */
  sendBufferMaxBytes: 64 * 1024,
  /** Period of the housekeeping timer: pings, the silence check, per-second rates. */
  housekeepingMs: 250,
  WebSocket: globalThis.WebSocket,
  now: () => performance.now(),
  /** Wall-clock time, for a seat ticket's expiry (`expires_unix_s`). */
  unixNowMs: () => Date.now(),
  random: Math.random,
});

const DEFAULT_RECONNECT = Object.freeze({
  /** Delay before the first retry; each failure multiplies it by `factor`, up to `maxDelayMs`. */
  initialDelayMs: 250,
  factor: 2,
  maxDelayMs: 10_000,
  /** Each delay is cut by a random fraction up to this, so clients dropped together do not return together. */
  jitter: 0.5,
  /** A connection that lasted this long resets the backoff. */
  stableAfterMs: 5_000,
});

/** Outstanding pings remembered for RTT; older ones are forgotten. */
const PINGS_MAX = 16;
/** Input send times remembered for input -> acknowledgement time. */
const INPUT_TIMES_MAX = 256;
/** 4009s (the room is hosted elsewhere) answered by asking the matchmaker again, between stable connections. */
const RELOCATIONS_MAX = 1;
/** A seat ticket this close to its expiry is not used for a reconnect: the matchmaker gives a fresh one. */
const SEAT_EXPIRY_MARGIN_S = 2;

/** The page's sessionStorage, or null where there is none (Node) or it may not be used (sandboxed frames). */
function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

/**
 * The storage key of the session with the server at `url`: the URL without a `ticket` query parameter
 * (tickets change on every connection, the session does not). The room is in the path (`/ws/ROOM`), so each
 * room has its own session: a resume token belongs to a player of one room.
 */
export function sessionKey(url) {
  let where = String(url);
  try {
    const u = new URL(where);
    u.searchParams.delete('ticket');
    u.hash = '';
    where = u.href;
  } catch {
    // not an absolute URL: use it as it is
  }
  return `tickcast.session ${where}`;
}

const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** Where this tab's guest player id is kept (one for every server and room: it names the player). */
const PLAYER_KEY = 'tickcast.player';

/**
 * This tab's guest player id for the matchmaker, `guest-` and 16 random hex digits (the server's own
 * format for guests): the one in `storage`, else a new one, stored. Without storage, new every time.
 */
function guestPlayer(storage) {
  try {
    const stored = storage?.getItem(PLAYER_KEY);
    if (stored && PLAYER_ID.test(stored)) return stored;
  } catch {
    // unreadable: a new one
  }
  const player = `guest-${toHex(globalThis.crypto.getRandomValues(new Uint8Array(8)))}`;
  try {
    storage?.setItem(PLAYER_KEY, player);
  } catch {
    // full or forbidden: this client keeps it in memory
  }
  return player;
}

/** A stored session {token, entity, seq}, or null when there is none or it does not parse. */
function loadSession(storage, key) {
  let raw;
  try {
    raw = storage?.getItem(key);
  } catch {
    return null;
  }
  if (!raw) return null;
  try {
    const { token, entity, seq } = JSON.parse(raw);
    if (!/^[0-9a-f]{32}$/.test(token) || !Number.isInteger(entity) || !Number.isInteger(seq) || seq < 0) {
      return null;
    }
    const bytes = Uint8Array.from(token.match(/../g), (h) => parseInt(h, 16));
    return { token: bytes, entity, seq: Math.min(seq, 0xffffffff) };
  } catch {
    return null;
  }
}

/**
 * Closes a socket with `code`; where the runtime refuses the code (a browser takes only 1000 and
 * 3000-4999), closes it without one, which the server reads as a lost connection, not a goodbye.
 */
function closeSocket(ws, code, reason) {
  try {
    ws.close(code, reason);
  } catch {
    try {
      ws.close();
    } catch {
      // already closing
    }
  }
}

/** Opens a client and starts connecting. See Client for options, fields and events. */
export function connect(url, options = {}) {
  const client = new Client(url, options);
  client.start();
  return client;
}

/**
 * Opens a client that asks the matchmaker where to play before it connects: `target` is a room name (join
 * it, or create it) or `{room, type}` (`{type}`: any room of that type with a free seat, else a new one;
 * both: the named room, created with that type). `base` is any URL of any process of the server (its
 * `/ws` URL, or the page's address); the matchmaker answers with the URL of the process that hosts the
 * room (a path on a standalone server), and the client connects there. Options as for connect() (not
 * `room`), plus `player`. Returns the Client at once, in state 'connecting' while it matchmakes; a bad
 * room name or type throws at once. See Client, "Matchmaking", for reconnects and 4009.
 */
export function joinOrCreate(base, target, options = {}) {
  const wanted = typeof target === 'string' ? { room: target } : { room: target?.room, type: target?.type };
  return connect(base, { ...options, room: undefined, matchmake: wanted });
}

/**
 * One player's connection to a tickcast server, reconnecting by itself and resuming the same player.
 *
 * Fields for the app (read-only): `state` ('idle', 'connecting', 'open', 'reconnecting', 'closed'),
 * `url` (the upgrade URL, the room's when the `room` option is set; with matchmaking the one the matchmaker
 * answered, null before its first answer), `matchmade` (that answer, null without one), `room` (the room's name from the last
 * Welcome, null before one; with `/ws` it names the default room), `world` (the Mirror), `entity` (own
 * entity id while joined, else null), `connectionId`, `tickHz`,
 * `serverTick`, `lastClose` (why the last open connection ended: {code, reason, meaning, wasClean,
 * byClient, opened}), `lastFailedAttempt` (the same for a retry that never opened, else null),
 * `nextAttemptAt`, `stats`.
 *
 * Resume: every Joined brings a token, a new one on every resume (the server rotates it; the one presented
 * resumes nothing any more), and the client keeps the latest (and stores it, see `storage`). When a
 * connection is lost (any end but `close()`), the next one sends Hello with `resume: {token, tick of the
 * last update applied}` and keeps the mirror; the server answers Joined.resumed true (same entity, and the
 * next update is a Delta from that tick, or a Full) or false (a new player: the mirror is cleared and input
 * seqs start again at 1). `stats.resumes`, `stats.resumesRefused` and `stats.lastResume` ({entity, tick,
 * firstUpdate: {type: 'Delta', base, tick} or {type: 'Full', tick}, null until it arrives}) say how it went.
 *
 * Rooms: a connection is in one room for its whole life; the client always reconnects to the same URL, so
 * the same room, and its stored session is per URL, so per room (a token from one room is never presented
 * in another). 4007 (the room ended) and 4008 (kicked) end the client and forget the session: the player
 * is gone. 4006 (the room is full) is retried with backoff. An upgrade the server refuses with an HTTP
 * status (a bad type, no such room, too many rooms) reaches a browser as a 1006 close that never opened
 * (`lastFailedAttempt`), retried like a lost connection; `getRoom()` can tell the page more.
 *
 * Matchmaking (the `matchmake` option, which joinOrCreate sets): the first attempt asks the matchmaker
 * (POST /matchmake on the URL given, with `player` and the `ticket` option's ticket; `player` is the tab's
 * guest id unless the option names one, so the seat tickets of a reload and of every later seat name the
 * same player, the account its session belongs to) and connects to the
 * URL it answers (`url`; `matchmade` holds the whole answer, a 'matchmade' event tells it). Hello then
 * carries no ticket when the answer's URL holds a seat ticket, else the `ticket` option's. A reconnect after
 * a lost connection goes straight back to the same URL, so the same process, and resumes the player;
 * the matchmaker is asked again first only when that URL cannot serve: the seat ticket is (about to be)
 * expired, the last attempt's upgrade failed (the process is gone, or refused the seat), or the room
 * turned out to be hosted by another process (4009: asked again once; a second 4009 before a connection
 * lasted `reconnect.stableAfterMs` ends the client). The stored session follows the URL without its
 * ticket, so a reload that the matchmaker sends to the same process resumes the player. A matchmaker that
 * refuses (400, 404, 409, 413: the same request would be refused again; 401 too, except once with a
 * `ticket` function) ends the client; any other failure (503, no answer within `matchmakeTimeoutMs`, the
 * network) is a failed attempt, retried with backoff. Both show in `lastFailedAttempt` / `lastClose` with
 * code 0 and the server's reason.
 *
 * Messages: `send(body)` sends a `Send` to the room's game (a string as UTF-8, or bytes; at most 1024
 * bytes; only while joined); each `Message` from the game arrives as a 'message' event whose argument is
 * its body, a Uint8Array (the arena's chat: UTF-8 text).
 *
 * Events (`client.on(type, fn)` returns an unsubscribe function): 'state' {state, previous},
 * 'matchmade' (the matchmaker's answer, see matchmake()), 'welcome' msg (with `room`),
 * 'joined' {entity, resumed, previousEntity}, 'resumed' {entity, tick},
 * 'resumerefused' {entity, previousEntity} (a new player: drop whatever you kept of the old one),
 * 'update' change (see Mirror.apply), 'checksum' {tick, ok, error?}, 'message' body (a Uint8Array),
 * 'rtt' {rttMs, srttMs}, 'ack' {seq, latencyMs}, 'desync' {error}, 'error' {error},
 * 'close' {code, reason, meaning, wasClean, byClient, opened, reconnectInMs (null: not reconnecting)}.
 */
export class Client {
  constructor(url, options = {}) {
    const reconnect = options.reconnect === false ? false : { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.options = { ...DEFAULTS, ...options, reconnect };
    /** With matchmaking: where to ask ({url, wanted}); null without. */
    this.matchmaker = null;
    if (this.options.matchmake) {
      const { room, type } = this.options.matchmake;
      matchmakeRequest({ room, type, player: this.options.player }); // a bad one throws here, at once
      this.matchmaker = { url: matchmakeUrl(url), wanted: { room, type } };
      this.url = null;
    } else {
      this.url = roomUrl(url, this.options.room);
    }
    this.matchmade = null;
    if (this.options.storage === undefined) this.options.storage = defaultStorage();
    /** Who this client says it is to the matchmaker (see the `player` option); null without matchmaking. */
    this.player = this.matchmaker ? (this.options.player ?? guestPlayer(this.options.storage)) : null;
    this.codec = this.options.codec;
    this.world = new Mirror(this.codec);
    this.state = 'idle';
    this.entity = null;
    this.room = null;
    this.connectionId = null;
    this.tickHz = null;
    this.serverTick = null;
    this.lastClose = null;
    this.lastFailedAttempt = null;
    this.nextAttemptAt = null;
    this.stats = {
      connects: 0,
      reconnectAttempts: 0,
      messagesIn: 0,
      bytesIn: 0,
      bytesOut: 0,
      updates: 0,
      fulls: 0,
      coalesced: 0,
      checksumsVerified: 0,
      checksumFailures: 0,
      mirrorErrors: 0,
      decodeErrors: 0,
      inputsSent: 0,
      inputsDropped: 0,
      /** Send messages sent, and Message messages received. */
      sends: 0,
      messages: 0,
      /** Matchmaking requests made (answered or not), and 4009s answered by asking again. */
      matchmakes: 0,
      relocations: 0,
      resumes: 0,
      resumesRefused: 0,
      lastResume: null,
      rttMs: null,
      srttMs: null,
      inputAckMs: null,
      updatesPerSec: 0,
      bytesPerSec: 0,
    };
    this._listeners = new Map();
    this._ws = null;
    this._openedAt = null;
    this._lastHeardAt = 0;
    this._lastPingAt = 0;
    this._userClosed = false;
    this._attempt = 0;
    /** Counts connection attempts, so a ticket that arrives for an abandoned attempt is ignored. */
    this._attemptId = 0;
    this._reconnectTimer = null;
    this._housekeeping = null;
    /** The ticket fetched for the current attempt. */
    this._ticket = '';
    /** A 4004 was already retried with a fresh ticket; cleared once a connection is accepted. */
    this._ticketRetried = false;
    /** Where the session is stored: per URL (without its ticket); null until matchmaking gives a URL. */
    this._storageKey = this.url === null ? null : sessionKey(this.url);
    /** Ask the matchmaker before the next attempt, even though a seat is known (see Client). */
    this._relocate = false;
    /** 4009s answered by asking the matchmaker again since the last stable connection. */
    this._relocations = 0;
    /** Aborts the matchmaking request in flight. */
    this._matchmakeAbort = null;
    /** The player this client is or was: {token, entity}; null before the first Joined. */
    this._session = null;
    /** The resume the current connection's Hello asked for ({token, tick}), until Joined answers it. */
    this._resumeAsked = null;
    /** Joined.resumed was true and the update that follows has not arrived yet. */
    this._awaitingResumedUpdate = false;
    /** The last input seq sent; it carries on across resumes (the server ignores seqs it has passed). */
    this._seq = 0;
    this._ackedSeq = 0;
    this._nonce = 0;
    this._pings = new Map();
    this._inputTimes = new Map();
    this._rates = { at: 0, updates: 0, bytes: 0 };
    this._out = new Writer(64);
    if (this._storageKey !== null) this._loadSession();
  }

  /** Takes the stored session of `_storageKey`, if any (a page reload resumes the player). */
  _loadSession() {
    if (!this.options.join || !this.options.resume) return;
    const stored = loadSession(this.options.storage, this._storageKey);
    if (stored) {
      this._session = { token: stored.token, entity: stored.entity };
      this._seq = stored.seq;
    }
  }

  // -- events

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  _emit(type, event) {
    const fns = this._listeners.get(type);
    if (!fns) return;
    for (const fn of [...fns]) {
      try {
        fn(event);
      } catch (error) {
        // An app callback's bug must not break the connection; rethrow it where the page sees it.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous });
  }

  // -- life cycle

  /** Starts connecting (connect() calls this). */
  start() {
    if (this.state !== 'idle') return;
    const now = this.options.now();
    this._rates = { at: now, updates: 0, bytes: 0 };
    this._housekeeping = setInterval(() => this._tick(), this.options.housekeepingMs);
    this._housekeeping.unref?.();
    this._open();
  }

  /**
   * Closes for good: no reconnect. With 1000 (the default) the server removes the player at once, so the
   * stored session is forgotten too; another code leaves the player to its grace period.
   */
  close(code = CloseCode.NORMAL, reason = 'client closed') {
    this._userClosed = true;
    this._attemptId += 1;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._matchmakeAbort?.abort();
    if (code === CloseCode.NORMAL) this._forgetSession();
    const ws = this._ws;
    if (ws) {
      this._detach(ws);
      closeSocket(ws, code, reason);
      this._closed({ code, reason, wasClean: true, byClient: true });
    } else {
      this._finish();
    }
  }

  /** The own entity's mirrored state, or undefined before joining. */
  get own() {
    return this.entity === null ? undefined : this.world.entities.get(this.entity);
  }

  /** Gets this attempt's ticket (maybe asynchronously), then opens the socket (matchmaking first, maybe). */
  _open() {
    this._reconnectTimer = null;
    this.nextAttemptAt = null;
    this._setState('connecting');
    const attempt = ++this._attemptId;
    if (this.matchmaker) {
      this._openMatchmade(attempt).catch((error) => attempt === this._attemptId && this._matchmakeFailed(error));
      return;
    }
    const source = this.options.ticket;
    let ticket;
    try {
      ticket = typeof source === 'function' ? source() : source;
    } catch (error) {
      return this._ticketFailed(error);
    }
    if (typeof ticket?.then !== 'function') return this._connect(ticket);
    ticket.then(
      (value) => attempt === this._attemptId && this._connect(value),
      (error) => attempt === this._attemptId && this._ticketFailed(error),
    );
  }

  _connect(ticket) {
    if (ticket === undefined || ticket === null) ticket = '';
    if (typeof ticket !== 'string') {
      return this._ticketFailed(new TypeError(`a ticket must be a string, got ${typeof ticket}`));
    }
    try {
      checkStrBytes(ticket, TICKET_BYTES_MAX, 'ticket', RangeError);
    } catch (error) {
      return this._ticketFailed(error);
    }
    this._ticket = ticket;
    let ws;
    try {
      ws = new this.options.WebSocket(this.url);
    } catch (error) {
      // A malformed URL: retrying cannot help.
      this._emit('error', { error });
      this.lastClose = { code: 0, reason: String(error.message), meaning: 'cannot connect', wasClean: false, byClient: true, opened: false };
      this._emit('close', { ...this.lastClose, reconnectInMs: null });
      this._finish();
      return;
    }
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => this._ws === ws && this._onOpen();
    ws.onmessage = (event) => this._ws === ws && this._onMessage(event.data);
    ws.onclose = (event) =>
      this._ws === ws &&
      (this._detach(ws), this._closed({ code: event.code, reason: event.reason, wasClean: event.wasClean, byClient: false }));
    ws.onerror = () => {}; // a close event always follows
    this._ws = ws;
  }

  /**
   * An attempt of a client with a matchmaker: asks it for a seat when the last one cannot serve (see
   * Client, "Matchmaking"), then opens the socket. Every await checks that the attempt is still current.
   */
  async _openMatchmade(attempt) {
    const seat = this.matchmade;
    const ask = seat === null || this._relocate || this._seatExpired();
    // Hello carries the app's ticket only where the URL holds no seat ticket (a standalone server).
    let ticket = '';
    if (ask || seat.ticket === null) {
      try {
        ticket = await this._appTicket();
      } catch (error) {
        if (attempt === this._attemptId) this._ticketFailed(error);
        return;
      }
      if (attempt !== this._attemptId) return;
    }
    if (ask) {
      const abort = new AbortController();
      this._matchmakeAbort = abort;
      const waitMs = this.options.matchmakeTimeoutMs;
      let timer;
      // Raced as well as aborted: a fetch that ignores its signal still cannot hold the attempt.
      const late = new Promise((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`no matchmaking answer within ${waitMs} ms`));
          abort.abort();
        }, waitMs);
      });
      this.stats.matchmakes += 1;
      let answer;
      try {
        const asked = matchmake(this.matchmaker.url, {
          ...this.matchmaker.wanted,
          player: this.player,
          ticket,
          signal: abort.signal,
          fetch: this.options.fetch ?? globalThis.fetch,
        });
        answer = await Promise.race([asked, late]);
      } catch (error) {
        if (attempt === this._attemptId) this._matchmakeFailed(error);
        return;
      } finally {
        clearTimeout(timer);
        if (this._matchmakeAbort === abort) this._matchmakeAbort = null;
      }
      if (attempt !== this._attemptId) return;
      this._relocate = false;
      this._seated(answer);
    }
    this._connect(this.matchmade.ticket === null ? ticket : '');
  }

  /** The app's ticket for this attempt: the `ticket` option, called when it is a function. */
  async _appTicket() {
    const source = this.options.ticket;
    const ticket = (typeof source === 'function' ? await source() : source) ?? '';
    if (typeof ticket !== 'string') throw new TypeError(`a ticket must be a string, got ${typeof ticket}`);
    return ticket;
  }

  /** The seat's ticket is expired or about to be: a reconnect asks the matchmaker for a fresh one. */
  _seatExpired() {
    const at = this.matchmade?.expiresUnixS;
    return typeof at === 'number' && this.options.unixNowMs() / 1000 >= at - SEAT_EXPIRY_MARGIN_S;
  }

  /**
   * The matchmaker answered: connect to its URL from now on. Another URL than before without the ticket
   * (the room moved to another process, or this is the first answer) is another session: what the client
   * held of the old one (token, mirror) means nothing there, and that URL's stored session is taken.
   */
  _seated(answer) {
    this.matchmade = answer;
    this.url = answer.url;
    const key = sessionKey(answer.url);
    if (key !== this._storageKey) {
      const first = this._storageKey === null;
      this._storageKey = key;
      this._session = null;
      if (!first) {
        this.world.clear();
        this._seq = 0;
      }
      this._loadSession();
    }
    this._emit('matchmade', answer);
  }

  /**
   * Matchmaking failed. A refusal the same request would meet again (4xx: a bad room name or type, no such
   * room, a room of another type, a bad ticket) ends the client, except a 401 once with a ticket function
   * (it may fetch a good ticket); anything else (503 with Retry-After, the network, no answer) is a failed
   * attempt, retried with backoff.
   */
  _matchmakeFailed(error) {
    this._emit('error', { error });
    const status = error instanceof HttpError ? error.status : 0;
    let fatal = status >= 400 && status < 500 && status !== 408 && status !== 429;
    if (status === 401 && typeof this.options.ticket === 'function' && !this._ticketRetried) {
      fatal = false;
      this._ticketRetried = true;
    }
    const said = error instanceof MatchmakeError ? `HTTP ${status}: ${error.error}` : String(error?.message ?? error);
    const meaning = fatal ? 'the matchmaker refused' : 'matchmaking failed';
    this._closed({ code: 0, reason: said.slice(0, 120), wasClean: false, byClient: true, meaning, fatal });
  }

  /** The ticket function threw, rejected or gave something unusable: a failed attempt, retried with backoff. */
  _ticketFailed(error) {
    this._emit('error', { error });
    const reason = String(error?.message ?? error).slice(0, 120);
    this._closed({ code: 0, reason, wasClean: false, byClient: true, meaning: 'could not get a ticket' });
  }

  _onOpen() {
    const now = this.options.now();
    this._openedAt = now;
    this._lastHeardAt = now;
    this._lastPingAt = 0;
    this._pings.clear();
    this._inputTimes.clear();
    this.stats.connects += 1;
    this.lastFailedAttempt = null;
    this._setState('open');
    const ticket = this._ticket;
    if (this.options.join) {
      // With no mirror (a page reload, a desync) there is no tick to resume from: 0 asks for everything.
      const resume =
        this.options.resume && this._session ? { token: this._session.token, tick: this.world.tick ?? 0 } : null;
      this._resumeAsked = resume;
      this._send({ type: 'Hello', protocol: PROTOCOL_VERSION, name: fitName(this.options.name), ticket, resume });
    } else {
      this._send({ type: 'Watch', protocol: PROTOCOL_VERSION, ticket });
    }
    this.ping();
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (this._ws === ws) this._ws = null;
  }

  /** Gives up on the current socket from this side: tells the server why, then reconnects (or not). */
  _abort(code, reason, { reconnect = true } = {}) {
    const ws = this._ws;
    if (!ws) return;
    this._detach(ws);
    closeSocket(ws, code, reason);
    if (!reconnect) this._userClosed = true;
    this._closed({ code, reason, wasClean: false, byClient: true });
  }

  _closed({ code, reason, wasClean, byClient, meaning = describeClose(code), fatal = false }) {
    const now = this.options.now();
    const opened = this._openedAt !== null;
    const lasted = opened ? now - this._openedAt : 0;
    this._openedAt = null;
    this.entity = null;
    this._resumeAsked = null;
    this._awaitingResumedUpdate = false;
    const close = { code, reason, meaning, wasClean, byClient, opened };
    // A retry that never opened must not hide why the session ended (1001 stays visible while the
    // server restarts); it is kept apart.
    if (opened || this.lastClose === null) this.lastClose = close;
    this.lastFailedAttempt = opened ? null : close;
    // The room ended or the player was kicked: the token resumes nothing, so a reload must not present it.
    if (!byClient && PLAYER_GONE_CODES.has(code)) this._forgetSession();
    const rc = this.options.reconnect;
    let retry = !this._userClosed && rc && !fatal && !FATAL_CLOSE_CODES.has(code);
    if (code === CloseCode.UNAUTHORIZED) {
      // The same ticket would be refused again; a ticket function may fetch a good one, once.
      retry = retry && typeof this.options.ticket === 'function' && !this._ticketRetried;
      this._ticketRetried = true;
    }
    if (rc && lasted >= rc.stableAfterMs) this._relocations = 0;
    if (code === CloseCode.HOSTED_ELSEWHERE && !byClient) {
      // Only the matchmaker knows where the room is: ask it again, once.
      retry = retry && this.matchmaker !== null && this._relocations < RELOCATIONS_MAX;
      if (retry) {
        this._relocations += 1;
        this.stats.relocations += 1;
        this._relocate = true;
      }
    }
    // An upgrade that failed (the process is gone, or refused the seat): the matchmaker knows better.
    if (this.matchmaker && !opened && code !== 0) this._relocate = true;
    let delay = null;
    if (retry) {
      if (lasted >= rc.stableAfterMs) this._attempt = 0;
      const base = Math.min(rc.maxDelayMs, rc.initialDelayMs * rc.factor ** this._attempt);
      delay = Math.round(base * (1 - rc.jitter * this.options.random()));
      this._attempt += 1;
    }
    this._emit('close', { ...close, reconnectInMs: delay });
    if (delay === null) {
      this._finish();
      return;
    }
    this.nextAttemptAt = now + delay;
    this._setState('reconnecting');
    this._reconnectTimer = setTimeout(() => {
      this.stats.reconnectAttempts += 1;
      this._open();
    }, delay);
  }

  _finish() {
    clearInterval(this._housekeeping);
    this._housekeeping = null;
    this.nextAttemptAt = null;
    this._setState('closed');
  }

  /** Pings, the silence watchdog and the per-second rates. */
  _tick() {
    const now = this.options.now();
    if (this.state === 'open') {
      if (now - this._lastPingAt >= this.options.pingIntervalMs) this.ping();
      if (now - this._lastHeardAt > this.options.silenceTimeoutMs) {
        this._abort(CloseCode.SILENT, `nothing heard for ${Math.round(now - this._lastHeardAt)} ms`);
      }
    }
    const elapsed = now - this._rates.at;
    if (elapsed >= 1000) {
      this.stats.updatesPerSec = ((this.stats.updates - this._rates.updates) * 1000) / elapsed;
      this.stats.bytesPerSec = ((this.stats.bytesIn - this._rates.bytes) * 1000) / elapsed;
      this._rates = { at: now, updates: this.stats.updates, bytes: this.stats.bytesIn };
    }
  }

  // -- the stored session

  /** Keeps {token, entity, last seq} where a reload of the page finds it. Storage errors are not fatal. */
  _storeSession() {
    const storage = this.options.storage;
    if (!storage || !this._session || !this.options.resume || this._storageKey === null) return;
    const { token, entity } = this._session;
    try {
      storage.setItem(this._storageKey, JSON.stringify({ token: toHex(token), entity, seq: this._seq }));
    } catch {
      // full or forbidden: resuming after a reload will not work, resuming after a drop still does
    }
  }

  _forgetSession() {
    this._session = null;
    if (this._storageKey === null) return;
    try {
      this.options.storage?.removeItem(this._storageKey);
    } catch {
      // as above
    }
  }

  // -- sending

  _send(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    const bytes = encodeClientMsg(msg, this.codec, this._out);
    ws.send(bytes);
    this.stats.bytesOut += bytes.length;
    return true;
  }

  /** Sends a Ping; its Pong updates `stats.rttMs` and `stats.srttMs`. */
  ping() {
    const nonce = ++this._nonce;
    if (!this._send({ type: 'Ping', nonce })) return;
    const now = this.options.now();
    this._lastPingAt = now;
    this._pings.set(nonce, now);
    if (this._pings.size > PINGS_MAX) this._pings.delete(this._pings.keys().next().value);
  }

  /**
   * Sends the player's input; returns its seq, or 0 when it was not sent (not joined yet, not open, or the
   * socket is backed up). Seqs start at 1 for a new player and carry on across resumes, page reloads
   * included. The server echoes the last seq it applied in the own entity's state, which is how
   * prediction knows which inputs are still in flight.
   */
  sendInput(input) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || this.entity === null) return 0;
    if (ws.bufferedAmount > this.options.sendBufferMaxBytes) {
      this.stats.inputsDropped += 1;
      return 0;
    }
    const seq = this._seq + 1;
    this._send({ type: 'Input', seq, input });
    this._seq = seq;
    this._storeSession();
    this.stats.inputsSent += 1;
    this._inputTimes.set(seq, this.options.now());
    if (this._inputTimes.size > INPUT_TIMES_MAX) this._inputTimes.delete(this._inputTimes.keys().next().value);
    return seq;
  }

  /**
   * Sends `body` to the room's game as a `Send` (the arena: a chat line): a string is sent as UTF-8, bytes
   * (a Uint8Array, another ArrayBuffer view, an ArrayBuffer) as they are. Only while joined (the server
   * closes a connection that sends one before Joined, or as a spectator: 1008); at most
   * MESSAGE_BODY_BYTES_MAX (1024) bytes (the server would close with 1007). Neither is sent: the first
   * throws an Error, the second a RangeError, as does a socket backed up past `sendBufferMaxBytes`.
   * Returns the number of body bytes sent.
   */
  send(body) {
    const bytes = messageBody(body, 'Send body');
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || this.entity === null) {
      const why = this.state === 'open' && !this.options.join ? 'a spectator has no player' : `the client is ${this.state}`;
      throw new Error(`cannot send before Joined: ${why}`);
    }
    if (ws.bufferedAmount > this.options.sendBufferMaxBytes) {
      throw new RangeError(`cannot send: ${ws.bufferedAmount} bytes are waiting in the socket already`);
    }
    this._send({ type: 'Send', body: bytes });
    this.stats.sends += 1;
    return bytes.length;
  }

  /** The seq of the last input sent by this player (0: none yet). */
  get lastInputSeq() {
    return this._seq;
  }

  // -- receiving

  _onMessage(data) {
    const now = this.options.now();
    this._lastHeardAt = now;
    if (typeof data === 'string') {
      this.stats.decodeErrors += 1;
      this._abort(CloseCode.UNDECODABLE, 'text message: the protocol is binary');
      return;
    }
    this.stats.messagesIn += 1;
    this.stats.bytesIn += data.byteLength;
    let msg;
    const bytes = new Uint8Array(data);
    try {
      msg = decodeServerMsg(bytes, this.codec);
    } catch (error) {
      // A server of another version: its Welcome may not even decode here, but its protocol does.
      const version = welcomeVersion(bytes);
      if (version !== null && version !== PROTOCOL_VERSION) return this._versionMismatch(version);
      this.stats.decodeErrors += 1;
      this._emit('error', { error });
      this._abort(CloseCode.UNDECODABLE, `undecodable: ${error.message}`.slice(0, 120));
      return;
    }
    switch (msg.type) {
      case 'Welcome':
        return this._onWelcome(msg);
      case 'Joined':
        return this._onJoined(msg);
      case 'Full':
      case 'Delta':
        return this._onUpdate(msg, now);
      case 'Checksum':
        return this._onChecksum(msg);
      case 'Pong':
        return this._onPong(msg, now);
      case 'Message':
        this.stats.messages += 1;
        return this._emit('message', msg.body);
    }
  }

  /** The server speaks another protocol: close for good (reconnecting would meet the same server). */
  _versionMismatch(protocol) {
    this._abort(CloseCode.NORMAL, `server speaks protocol ${protocol}, this client ${PROTOCOL_VERSION}`, {
      reconnect: false,
    });
    this.lastClose.meaning = describeClose(CloseCode.VERSION_MISMATCH);
  }

  _onWelcome(msg) {
    if (msg.protocol !== PROTOCOL_VERSION) return this._versionMismatch(msg.protocol);
    this.tickHz = msg.tickHz;
    this.room = msg.room;
    this.connectionId = msg.connectionId;
    this.serverTick = msg.tick;
    this._emit('welcome', msg);
  }

  /** The answer to Hello: the same player taken back (keep the mirror), or a new one (start over). */
  _onJoined(msg) {
    const asked = this._resumeAsked;
    this._resumeAsked = null;
    const previousEntity = this._session?.entity ?? null;
    this._ticketRetried = false;
    this.entity = msg.entity;
    this._session = { token: msg.resumeToken, entity: msg.entity };
    if (msg.resumed) {
      this.stats.resumes += 1;
      this.stats.lastResume = { entity: msg.entity, tick: asked?.tick ?? null, firstUpdate: null };
      this._awaitingResumedUpdate = true;
    } else {
      if (asked) this.stats.resumesRefused += 1;
      // A new player: nothing of the old one applies. A Full follows.
      if (previousEntity !== null) this.world.clear();
      this._seq = 0;
      this._ackedSeq = 0;
      this._inputTimes.clear();
    }
    this._storeSession();
    this._emit('joined', { entity: msg.entity, resumed: msg.resumed, previousEntity });
    if (msg.resumed) this._emit('resumed', { entity: msg.entity, tick: asked?.tick ?? null });
    else if (asked) this._emit('resumerefused', { entity: msg.entity, previousEntity });
  }

  _onUpdate(msg, now) {
    let change;
    try {
      change = this.world.apply(msg);
    } catch (error) {
      return this._desync(error);
    }
    this.stats.updates += 1;
    if (change.full) this.stats.fulls += 1;
    if (change.coalesced) this.stats.coalesced += 1;
    this.serverTick = change.tick;
    this._ticketRetried = false;
    if (this._awaitingResumedUpdate) {
      this._awaitingResumedUpdate = false;
      this.stats.lastResume.firstUpdate = change.full
        ? { type: 'Full', tick: change.tick }
        : { type: 'Delta', base: change.base, tick: change.tick };
    }
    const own = this.own;
    if (own && own.seq > this._seq) {
      // The server applied inputs this client no longer counts (a reload with a stale stored seq): carry
      // on above them, or the next ones would be ignored.
      this._seq = own.seq;
      this._storeSession();
    }
    if (own && own.seq > this._ackedSeq && own.seq <= this._seq) {
      this._ackedSeq = own.seq;
      const sentAt = this._inputTimes.get(own.seq);
      if (sentAt !== undefined) {
        const latencyMs = now - sentAt;
        this.stats.inputAckMs = latencyMs;
        this._emit('ack', { seq: own.seq, latencyMs });
      }
    }
    this._emit('update', change);
  }

  _onChecksum(msg) {
    try {
      this.world.verify(msg);
    } catch (error) {
      if (error.kind === 'checksum-mismatch') this.stats.checksumFailures += 1;
      this._emit('checksum', { tick: msg.tick, ok: false, error });
      return this._desync(error);
    }
    this.stats.checksumsVerified += 1;
    this._emit('checksum', { tick: msg.tick, ok: true });
  }

  /**
   * The mirror cannot follow. The protocol has no resync request, so the mirror is dropped and a new
   * connection resumes the player from tick 0, which brings the whole world again.
   */
  _desync(error) {
    this.stats.mirrorErrors += 1;
    this.world.clear();
    this._emit('desync', { error });
    this._abort(CloseCode.DESYNC, error.message.slice(0, 120));
  }

  _onPong(msg, now) {
    this.serverTick = Math.max(this.serverTick ?? 0, Number(msg.tick));
    const sentAt = this._pings.get(msg.nonce);
    if (sentAt === undefined) return;
    this._pings.delete(msg.nonce);
    const rttMs = now - sentAt;
    const s = this.stats;
    s.rttMs = rttMs;
    s.srttMs = s.srttMs === null ? rttMs : s.srttMs + (rttMs - s.srttMs) / 8;
    this._emit('rtt', { rttMs, srttMs: s.srttMs });
  }
}
