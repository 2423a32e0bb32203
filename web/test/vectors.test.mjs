// The SDK against the wire vectors: docs/PROTOCOL.md's (the contract) and web/test/vectors.md's (edge cases
// derived from the Rust codec). Each vector is decoded, compared with what it means, re-encoded to the same
// bytes, and every truncation of it must be refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import {
  DecodeError,
  Mirror,
  PROTOCOL_VERSION,
  decodeClientMsg,
  decodeServerMsg,
  encodeClientMsg,
  encodeServerMsg,
} from '../tickcast.js';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const PROTOCOL_MD = here('../../docs/PROTOCOL.md');
const EXTRA_MD = here('./vectors.md');

const SERVER_VARIANTS = new Set(['Welcome', 'Joined', 'Full', 'Delta', 'Checksum', 'Pong', 'Message']);
const CLIENT_VARIANTS = new Set(['Hello', 'Input', 'Ping', 'Watch', 'Send']);

/** The protocol version docs/PROTOCOL.md describes (its title); its vectors carry that number. */
const DOC_VERSION = Number(/^# tickcast wire protocol, version (\d+)$/m.exec(readFileSync(PROTOCOL_MD, 'utf8'))?.[1]);

/** The ```vector blocks of a markdown file: {name, message (or undefined), bytes, line}. */
function parseVectors(markdown) {
  const vectors = [];
  const re = /^```vector\n([\s\S]*?)^```/gm;
  for (let m; (m = re.exec(markdown)); ) {
    const fields = {};
    for (const row of m[1].split('\n')) {
      const at = row.indexOf(':');
      if (at > 0) fields[row.slice(0, at).trim()] = row.slice(at + 1).trim();
    }
    assert.ok(fields.name && fields.hex !== undefined, `vector block without name or hex: ${m[1]}`);
    const hex = fields.hex.split(/\s+/).filter(Boolean);
    const bytes = Uint8Array.from(hex.map((h) => parseInt(h, 16)));
    const line = markdown.slice(0, m.index).split('\n').length;
    vectors.push({ name: fields.name, message: fields.message, bytes, line });
  }
  return vectors;
}

// ---- Rust Debug text -> a plain value ------------------------------------------------------------------
// Structs become {$name, ...fields}, tuples and lists arrays, integers BigInts, strings strings, `true` and
// `false` booleans, `None` null and `Some(x)` x.

function parseDebug(text) {
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const expect = (ch) => {
    ws();
    assert.equal(text[i], ch, `expected '${ch}' at ${i} in: ${text}`);
    i++;
  };
  const list = (close) => {
    const items = [];
    ws();
    while (text[i] !== close) {
      items.push(value());
      ws();
      if (text[i] === ',') i++;
      ws();
    }
    i++;
    return items;
  };
  const value = () => {
    ws();
    const ch = text[i];
    if (ch === '[') return i++, list(']');
    if (ch === '(') return i++, list(')');
    if (ch === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const raw = text.slice(i, end + 1).replace(/\\u\{([0-9a-fA-F]+)\}/g, (_, h) => `\\u{${h}}`);
      i = end + 1;
      return JSON.parse(raw.replace(/\\u\{([0-9a-fA-F]+)\}/g, (_, h) => String.fromCodePoint(parseInt(h, 16))));
    }
    const num = /^-?(0x[0-9a-fA-F_]+|[0-9_]+)/.exec(text.slice(i));
    if (num) {
      i += num[0].length;
      const s = num[0].replace(/_/g, '');
      return s.startsWith('-') ? -BigInt(s.slice(1)) : BigInt(s);
    }
    const ident = /^[A-Za-z_][A-Za-z0-9_:]*/.exec(text.slice(i));
    const name = ident ? ident[0].split('::').pop() : undefined;
    if (ident) i += ident[0].length;
    ws();
    if (text[i] === '{') {
      i++;
      const fields = { $name: name };
      ws();
      while (text[i] !== '}') {
        const key = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i));
        assert.ok(key, `field name expected at ${i} in: ${text}`);
        i += key[0].length;
        expect(':');
        fields[key[0]] = value();
        ws();
        if (text[i] === ',') i++;
        ws();
      }
      i++;
      return fields;
    }
    if (text[i] === '(' && name) {
      i++;
      const items = list(')');
      if (name === 'Some') return assert.equal(items.length, 1), items[0];
      return { $name: name, $tuple: items };
    }
    assert.ok(name, `cannot parse at ${i}: ${text}`);
    if (name === 'None') return null;
    if (name === 'true' || name === 'false') return name === 'true';
    return { $name: name };
  };
  const v = value();
  ws();
  assert.equal(i, text.length, `trailing text in: ${text}`);
  return v;
}

/** A decoded SDK message as the same plain shape: snake_case fields, BigInt integers, no struct names. */
function plain(v) {
  if (typeof v === 'number' || typeof v === 'bigint') return BigInt(v);
  if (Array.isArray(v) || v instanceof Uint8Array) return Array.from(v, plain);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === 'type') continue;
      out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = plain(x);
    }
    return out;
  }
  return v;
}

function withoutNames(v) {
  if (Array.isArray(v)) return v.map(withoutNames);
  if (v && typeof v === 'object' && typeof v !== 'bigint') {
    const out = {};
    for (const [k, x] of Object.entries(v)) if (k !== '$name') out[k] = withoutNames(x);
    return out;
  }
  return v;
}

/** The message with the ids of its lists turned back into the gaps that travel on the wire. */
function gapped(msg) {
  const gaps = (ids) => ids.map((id, k) => id - (k === 0 ? 0 : ids[k - 1]));
  const pairs = (list) => {
    const g = gaps(list.map(([id]) => id));
    return list.map(([, v], k) => [g[k], v]);
  };
  if (msg.type === 'Full') return { ...msg, entities: pairs(msg.entities) };
  if (msg.type === 'Delta') {
    return { ...msg, despawned: gaps(msg.despawned), set: pairs(msg.set), changed: pairs(msg.changed) };
  }
  return msg;
}

/**
 * Compares a decoded message with a vector's `message` text. `ids`: 'gaps' (the Rust Debug of the wire
 * value), 'ids', or 'either' (a document may write lists either way; one reading must match as a whole).
 */
function assertMeans(msg, text, ids) {
  const expected = parseDebug(text);
  assert.equal(msg.type, expected.$name, `message kind in: ${text}`);
  const want = withoutNames(expected);
  const asGaps = plain(gapped(msg));
  const asIds = plain(msg);
  if (ids === 'gaps') return assert.deepEqual(asGaps, want);
  if (ids === 'ids') return assert.deepEqual(asIds, want);
  try {
    assert.deepEqual(asIds, want);
  } catch {
    assert.deepEqual(asGaps, want, `neither ids nor gaps match: ${text}`);
  }
}

function kindOf(vector) {
  const variant = vector.message && /^(?:\w+::)*(\w+)/.exec(vector.message)[1];
  if (SERVER_VARIANTS.has(variant)) return 'server';
  if (CLIENT_VARIANTS.has(variant)) return 'client';
  if (PROTOCOL_EXPECTED[vector.name]) return PROTOCOL_EXPECTED[vector.name].kind;
  try {
    decodeServerMsg(vector.bytes);
    return 'server';
  } catch {
    return 'client';
  }
}

const codecFor = (kind) =>
  kind === 'server'
    ? { decode: decodeServerMsg, encode: encodeServerMsg }
    : { decode: decodeClientMsg, encode: encodeClientMsg };

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');

/** Decode, re-encode to the same bytes, refuse every truncation and a trailing byte. */
function checkBytes(vector) {
  const kind = kindOf(vector);
  const { decode, encode } = codecFor(kind);
  const msg = decode(vector.bytes);
  assert.equal(hex(encode(msg)), hex(vector.bytes), `${vector.name}: re-encoding differs`);
  for (let n = 0; n < vector.bytes.length; n++) {
    assert.throws(() => decode(vector.bytes.subarray(0, n)), DecodeError, `${vector.name}: ${n}-byte prefix`);
  }
  const longer = new Uint8Array(vector.bytes.length + 1);
  longer.set(vector.bytes);
  assert.throws(() => decode(longer), /1 trailing bytes/, `${vector.name}: trailing byte`);
  return msg;
}

// What docs/PROTOCOL.md's vectors mean, from the text beside each block (its blocks carry name and hex).
// `since`: the version that added the vector (older documents need not carry it).
const TOKEN = Uint8Array.from({ length: 16 }, (_, i) => i);
const utf8 = (text) => new TextEncoder().encode(text);
const PROTOCOL_EXPECTED = {
  welcome: {
    kind: 'server',
    msg: { type: 'Welcome', protocol: DOC_VERSION, tickHz: 20, tick: 300, connectionId: 7, room: 'arena-1' },
  },
  joined: { kind: 'server', msg: { type: 'Joined', entity: 3, resumeToken: TOKEN, resumed: false } },
  'joined-resumed': { kind: 'server', msg: { type: 'Joined', entity: 3, resumeToken: TOKEN, resumed: true } },
  full: {
    kind: 'server',
    msg: {
      type: 'Full',
      tick: 300,
      entities: [
        [0, { x: 4000, y: 100, seq: 0 }],
        [2, { x: 8000, y: 0, seq: 5 }],
      ],
    },
  },
  delta: {
    kind: 'server',
    msg: {
      type: 'Delta',
      base: 300,
      tick: 301,
      despawned: [5],
      set: [[7, { x: 1, y: 2, seq: 0 }]],
      changed: [
        [0, { dx: 40, dy: -40, dseq: 1 }],
        [2, { dx: -3, dy: 0, dseq: 0 }],
      ],
    },
  },
  checksum: { kind: 'server', msg: { type: 'Checksum', tick: 300, hash: 0x8351febdc124346cn } },
  pong: { kind: 'server', msg: { type: 'Pong', nonce: 99, tick: 301 } },
  hello: { kind: 'client', msg: { type: 'Hello', protocol: DOC_VERSION, name: 'ann', ticket: '', resume: null } },
  'hello-resume': {
    kind: 'client',
    msg: { type: 'Hello', protocol: DOC_VERSION, name: 'ann', ticket: '', resume: { token: TOKEN, tick: 300 } },
  },
  watch: { kind: 'client', msg: { type: 'Watch', protocol: DOC_VERSION, ticket: 't.k' } },
  input: { kind: 'client', msg: { type: 'Input', seq: 1, input: { dx: 1, dy: -1 } } },
  ping: { kind: 'client', msg: { type: 'Ping', nonce: 1000 } },
  send: { kind: 'client', since: 4, msg: { type: 'Send', body: utf8('hi') } },
  message: { kind: 'server', since: 4, msg: { type: 'Message', body: utf8('ann: hi') } },
  'world-hash': { kind: 'hash' },
};

test('docs/PROTOCOL.md vectors decode to what the document says and re-encode to the same bytes', () => {
  const vectors = parseVectors(readFileSync(PROTOCOL_MD, 'utf8'));
  assert.ok(vectors.length >= 13, `expected the protocol's vectors, found ${vectors.length}`);
  const byName = new Map();
  for (const vector of vectors) {
    const known = PROTOCOL_EXPECTED[vector.name];
    if (known?.kind === 'hash') continue;
    const msg = checkBytes(vector);
    byName.set(vector.name, msg);
    if (known) assert.deepEqual(msg, known.msg, `docs/PROTOCOL.md:${vector.line} ${vector.name}`);
    if (vector.message) assertMeans(msg, vector.message, 'either');
  }
  for (const [name, known] of Object.entries(PROTOCOL_EXPECTED)) {
    if ((known.since ?? 0) > DOC_VERSION) continue;
    assert.ok(vectors.some((v) => v.name === name), `docs/PROTOCOL.md lost its '${name}' vector`);
  }
});

test('docs/PROTOCOL.md describes the version this SDK speaks', () => {
  assert.equal(DOC_VERSION, PROTOCOL_VERSION);
});

test('docs/PROTOCOL.md: the full world hashes to its checksum and world-hash vectors, and the delta applies', () => {
  const vectors = new Map(parseVectors(readFileSync(PROTOCOL_MD, 'utf8')).map((v) => [v.name, v]));
  const mirror = new Mirror();
  const full = decodeServerMsg(vectors.get('full').bytes);
  mirror.apply(full);
  const worldHash = vectors.get('world-hash').bytes;
  assert.equal(worldHash.length, 8);
  const le = new DataView(worldHash.buffer, worldHash.byteOffset).getBigUint64(0, true);
  assert.equal(mirror.hash(), le);
  const checksum = decodeServerMsg(vectors.get('checksum').bytes);
  assert.equal(checksum.tick, full.tick);
  assert.deepEqual(mirror.apply(checksum), { tick: full.tick, hash: le });

  const delta = decodeServerMsg(vectors.get('delta').bytes);
  assert.equal(delta.base, full.tick);
  const change = mirror.apply(delta);
  assert.deepEqual(change.despawned, [5]);
  assert.equal(mirror.tick, delta.tick);
  assert.deepEqual([...mirror.entities.keys()].sort((a, b) => a - b), [0, 2, 7]);
  assert.deepEqual(mirror.entities.get(0), { x: 4040, y: 60, seq: 1 });
  assert.deepEqual(mirror.entities.get(2), { x: 7997, y: 0, seq: 5 });
});

test('web/test/vectors.md (from the Rust codec) decode to their Rust Debug text and re-encode', () => {
  const vectors = parseVectors(readFileSync(EXTRA_MD, 'utf8'));
  assert.ok(vectors.length >= 24);
  for (const vector of vectors) {
    assert.ok(vector.message, `${vector.name} has no message`);
    const msg = checkBytes(vector);
    assertMeans(msg, vector.message, 'gaps');
  }
});

test('web/test/vectors.md: checksum-of-full is the hash of the full vector, empty world hashes to the basis', () => {
  const vectors = new Map(parseVectors(readFileSync(EXTRA_MD, 'utf8')).map((v) => [v.name, v]));
  const mirror = new Mirror();
  mirror.apply(decodeServerMsg(vectors.get('full').bytes));
  assert.equal(mirror.apply(decodeServerMsg(vectors.get('checksum-of-full').bytes)).tick, 12);
  assert.equal(new Mirror().hash(), 0xcbf29ce484222325n);
  // u64 values past 2^53 - 1 come back as BigInts, never rounded.
  assert.equal(decodeServerMsg(vectors.get('pong-u64').bytes).nonce, 0xffffffffffffffffn);
  assert.equal(decodeClientMsg(vectors.get('hello-resume-u64').bytes).resume.tick, 9007199254740993n);
  // Tokens are Uint8Arrays of 16 bytes, copies that do not hold on to the message's buffer.
  const { resumeToken } = decodeServerMsg(vectors.get('joined').bytes);
  assert.ok(resumeToken instanceof Uint8Array && resumeToken.length === 16);
  assert.equal(resumeToken.byteOffset, 0);
  assert.equal(resumeToken.buffer.byteLength, 16);
});

test('malformed server messages are refused with the reason', () => {
  const bad = (bytes, pattern) => assert.throws(() => decodeServerMsg(Uint8Array.from(bytes)), pattern);
  bad([7], /unknown message or enum tag 7/);
  bad([0xfb, 7, 0], /unknown message or enum tag 7/);
  bad([6], /1 byte\(s\) too early/); // a Message without its length
  bad([6, 2, 0x61], /a list of 2 items cannot fit in the 1 bytes left/);
  bad([1, 0xfd, 1, 0, 0, 0, 0, 0, 0, 0], /malformed varint/); // a u32 with a u64 marker
  bad([0, 0xfc, 1, 0, 0, 0, 20, 0, 0], /malformed varint/); // a u16 with a u32 marker
  bad([0, 1, 20, 0xff], /malformed varint/);
  bad([2, 1, 200, 0], /cannot fit/); // 200 entities claimed in 1 byte
  bad([2, 1, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1], /cannot fit/);
  bad([1], /1 byte\(s\) too early/);
  const token = Array.from({ length: 16 }, (_, i) => i);
  bad([1, 3, ...token, 2], /invalid bool value 2/); // Joined.resumed is 00 or 01
  bad([1, 3, ...token.slice(0, 15)], /too early/); // a token is 16 bytes, no length prefix
  bad([0, 2, 20, 0, 1], /1 byte\(s\) too early/); // a v2 Welcome: no room
  bad([0, 3, 20, 0, 1, 3, 0x61, 0x62], /a list of 3 items cannot fit in the 2 bytes left/); // a room name cut short
  bad([0, 3, 20, 0, 1, 2, 0xc3, 0x28], /not valid UTF-8/);
  assert.throws(() => decodeClientMsg(Uint8Array.from([0, 3, 2, 0xc3, 0x28, 0, 0])), /not valid UTF-8/);
});

test('malformed client messages are refused with the reason: Option bytes, lengths, limits', () => {
  const bad = (bytes, pattern) => assert.throws(() => decodeClientMsg(Uint8Array.from(bytes)), pattern);
  const ann = [0, 3, 3, 0x61, 0x6e, 0x6e, 0];
  for (const b of [2, 3, 0xff]) bad([...ann, b], new RegExp(`invalid Option tag ${b}`)); // only 00 and 01
  bad([...ann, 1, 0, 1, 2], /too early/); // Some, then a token cut short
  bad([0, 3, 3, 0x61, 0x6e, 0x6e], /too early/); // a v1-shaped Hello: no ticket, no resume
  bad([3, 3], /too early/); // Watch without its ticket
  bad([5, 2, 0], /unknown message or enum tag 5/);
  bad([4], /1 byte\(s\) too early/); // a Send without its length
  bad([4, 0xfb, 0x01, 0x04, ...new Array(1025).fill(0x61)], /Send body is 1025 bytes, the limit is 1024/);
  bad([0, 3, 33, ...new Array(33).fill(0x61), 0, 0], /name is 33 bytes, the limit is 32/);
  bad([3, 3, 0xfb, 1, 1, ...new Array(257).fill(0x78)], /ticket is 257 bytes, the limit is 256/);

  const hello = (fields) => encodeClientMsg({ type: 'Hello', protocol: 3, name: 'ann', ...fields });
  assert.deepEqual(Array.from(hello({})), [...ann, 0], 'ticket and resume may be left out');
  assert.throws(() => hello({ ticket: 'x'.repeat(257) }), { name: 'RangeError', message: /257 bytes/ });
  assert.throws(() => hello({ resume: { token: new Uint8Array(15), tick: 1 } }), /16 bytes, got 15/);
  assert.throws(() => hello({ name: 'x'.repeat(33) }), /name is 33 bytes/);
  assert.throws(() => encodeServerMsg({ type: 'Joined', entity: 1, resumeToken: new Uint8Array(16), resumed: 1 }), /bool/);
});

test('a delta from a baseline the mirror does not hold, and a diff for an unknown id, are mirror errors', () => {
  const mirror = new Mirror();
  mirror.apply({ type: 'Full', tick: 5, entities: [[1, { x: 1, y: 1, seq: 0 }]] });
  const delta = { type: 'Delta', base: 4, tick: 6, despawned: [], set: [], changed: [] };
  assert.throws(() => mirror.apply(delta), { name: 'MirrorError', kind: 'wrong-base' });
  const unknown = { ...delta, base: 5, changed: [[9, { dx: 1, dy: 0, dseq: 0 }]] };
  assert.throws(() => mirror.apply(unknown), { kind: 'unknown-entity' });
  assert.throws(() => mirror.apply({ type: 'Checksum', tick: 5, hash: 1n }), { kind: 'checksum-mismatch' });
});

test('an empty mirror takes no Delta, not even one from tick 0 (a resume from 0 always gets a Full)', () => {
  const fromZero = { type: 'Delta', base: 0, tick: 40, despawned: [4], set: [[2, { x: 1, y: 1, seq: 0 }]], changed: [] };
  const mirror = new Mirror();
  assert.throws(() => mirror.apply(fromZero), { kind: 'wrong-base' });
  mirror.apply({ type: 'Full', tick: 40, entities: [[2, { x: 1, y: 1, seq: 0 }]] });
  assert.equal(mirror.tick, 40);
  assert.deepEqual([...mirror.entities.keys()], [2]);
});
