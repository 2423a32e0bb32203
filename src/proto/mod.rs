//! Wire protocol v4: the message types and their codec. The only module that knows the byte format.
//!
//! Every message is one binary WebSocket message holding one value encoded with bincode 2's `standard()`
//! configuration: little-endian, variable-length integers (see `docs/PROTOCOL.md` for the exact rules),
//! enums as a varint variant index followed by the variant's fields, sequences as a varint length followed
//! by the elements. Entity ids inside `Full` and `Delta` lists are sent as gaps from the previous id of the
//! same list (the first from 0), so a run of neighbouring ids costs one byte each.
//!
//! The server never builds a `ServerMsg::Full` or `ServerMsg::Delta` value: it streams them straight from
//! the world with [`write_full`] and [`write_delta`], which produce exactly the bytes the derived
//! `Deserialize` of [`ServerMsg`] reads (a test checks both ways). No I/O and no clock here.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Protocol version carried in `Welcome` and `Hello`; bumped whenever a byte on the wire changes.
pub const PROTOCOL_VERSION: u16 = 4;

/// Upper bound on the bytes bincode may claim while decoding one client message, whatever the frame
/// says; the WebSocket layer bounds the frame itself (`--max-message-bytes`).
pub const CLIENT_DECODE_LIMIT_BYTES: usize = 64 * 1024;

/// Longest player name accepted in `Hello`, in bytes of UTF-8.
pub const NAME_LEN_MAX: usize = 32;

/// Longest body of a `Send` (client to game) and of a `Message` (game to client), in bytes.
pub const MESSAGE_BODY_MAX: usize = 1024;

/// Bytes in a resume token.
pub const RESUME_TOKEN_LEN: usize = 16;

/// A player's resume token: random, given in `Joined`, presented in `Hello` to take the player back after a
/// dropped connection. A secret: whoever holds it can control the player until the session ends.
pub type ResumeToken = [u8; RESUME_TOKEN_LEN];

/// Messages from the server. `S` is the game's replicated entity state, `D` its per-tick diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerMsg<S, D> {
    /// Sent once, right after the upgrade. Nothing else follows until the client sends `Hello` or `Watch`.
    /// `tick_hz` and `tick` are the room's; `room` is its name.
    Welcome {
        protocol: u16,
        tick_hz: u16,
        tick: u64,
        connection_id: u64,
        room: String,
    },
    /// Answer to `Hello`: the entity this player controls and the token that resumes the player after a
    /// dropped connection. `resumed` says the `Hello`'s resume was honoured: same player, same entity.
    Joined {
        entity: u32,
        resume_token: ResumeToken,
        resumed: bool,
    },
    /// The whole replicated world at `tick`. Replaces whatever the client had.
    Full { tick: u64, entities: Vec<(u32, S)> },
    /// The changes from `base` (the tick the client already has) to `tick`. Apply `despawned`, then `set`
    /// (whole states), then `changed` (diffs against the entity's state at `base`).
    Delta {
        base: u64,
        tick: u64,
        despawned: Vec<u32>,
        set: Vec<(u32, S)>,
        changed: Vec<(u32, D)>,
    },
    /// Hash of the whole replicated world at `tick` (see [`world_hash`]), for checking a mirror.
    Checksum { tick: u64, hash: u64 },
    /// Answer to `Ping`: the client's nonce and the server's last completed tick.
    Pong { nonce: u64, tick: u64 },
    /// A message from the game to this client, outside the replicated state (a chat line, a notice),
    /// whose bytes only the game and its clients understand; at most [`MESSAGE_BODY_MAX`] bytes. It may
    /// come from another process of the cluster (docs/CLUSTER.md, "Backplane").
    Message { body: Vec<u8> },
}

/// Messages from a client. `I` is the game's input payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMsg<I> {
    /// Join as a player, or take one back with `resume`. `protocol` must equal [`PROTOCOL_VERSION`];
    /// `ticket` is an authentication ticket (empty: none, or it came with the upgrade as `?ticket=`).
    Hello {
        protocol: u16,
        name: String,
        ticket: String,
        resume: Option<Resume>,
    },
    /// The player's latest input. `seq` increases by one per input; the server echoes the last one it
    /// applied inside the player's entity state so the client can measure input -> acknowledgement time.
    Input { seq: u32, input: I },
    /// Asks for a `Pong` carrying the same nonce.
    Ping { nonce: u64 },
    /// Watch without playing: the connection receives updates and controls nothing.
    Watch { protocol: u16, ticket: String },
    /// A message from a player to its room's game, outside inputs (a chat line, a vote): at most
    /// [`MESSAGE_BODY_MAX`] bytes, only after `Joined`.
    Send { body: Vec<u8> },
}

/// What a reconnecting client presents in `Hello`: the token from its last `Joined` and the tick of the
/// last update it applied, so the server can send only what changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub token: ResumeToken,
    pub tick: u64,
}

/// Variant indices of [`ServerMsg`], as they appear on the wire.
pub mod tag {
    pub const WELCOME: u32 = 0;
    pub const JOINED: u32 = 1;
    pub const FULL: u32 = 2;
    pub const DELTA: u32 = 3;
    pub const CHECKSUM: u32 = 4;
    pub const PONG: u32 = 5;
    pub const MESSAGE: u32 = 6;
}

/// Variant indices of [`ClientMsg`], as they appear on the wire.
pub mod client_tag {
    pub const HELLO: u32 = 0;
    pub const INPUT: u32 = 1;
    pub const PING: u32 = 2;
    pub const WATCH: u32 = 3;
    pub const SEND: u32 = 4;
}

/// The tags of [`ServerMsg`]'s variants on the wire (docs/PROTOCOL.md), for a client that reads a message's
/// fields itself.
pub mod server_tag {
    pub const WELCOME: u32 = 0;
    pub const JOINED: u32 = 1;
    pub const FULL: u32 = 2;
    pub const DELTA: u32 = 3;
    pub const CHECKSUM: u32 = 4;
    pub const PONG: u32 = 5;
    pub const MESSAGE: u32 = 6;
}

/// Why a message could not be decoded. The text is what goes into the close reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    bincode::serde::encode_into_std_write(value, out, config())
        .expect("writing to a Vec cannot fail");
}

/// Encodes `value` into a new buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, value);
    out
}

/// Decodes one whole message; trailing bytes are an error, so a message means exactly one thing.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let limited = config().with_limit::<CLIENT_DECODE_LIMIT_BYTES>();
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, limited).map_err(|e| DecodeError(describe(&e)))?;
    if used != bytes.len() {
        return Err(DecodeError(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// Decodes one value from the front of `bytes` and says how many bytes it took: for a client that walks a
/// message's fields itself (the bots' skimming view reads a `Delta` only up to its own entity).
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), DecodeError> {
    let limited = config().with_limit::<CLIENT_DECODE_LIMIT_BYTES>();
    bincode::serde::decode_from_slice(bytes, limited).map_err(|e| DecodeError(describe(&e)))
}

/// Decodes a client message and checks what the types alone cannot (name, ticket and body length).
pub fn decode_client<I: DeserializeOwned>(bytes: &[u8]) -> Result<ClientMsg<I>, DecodeError> {
    let msg: ClientMsg<I> = decode(bytes)?;
    let (name, ticket) = match &msg {
        ClientMsg::Send { body } if body.len() > MESSAGE_BODY_MAX => {
            return Err(DecodeError(format!(
                "Send body is {} bytes, the limit is {MESSAGE_BODY_MAX}",
                body.len()
            )))
        }
        ClientMsg::Hello { name, ticket, .. } => (name.as_str(), ticket.as_str()),
        ClientMsg::Watch { ticket, .. } => ("", ticket.as_str()),
        _ => return Ok(msg),
    };
    if name.len() > NAME_LEN_MAX {
        return Err(DecodeError(format!(
            "name is {} bytes, the limit is {NAME_LEN_MAX}",
            name.len()
        )));
    }
    if ticket.len() > crate::ticket::TICKET_LEN_MAX {
        return Err(DecodeError(format!(
            "ticket is {} bytes, the limit is {}",
            ticket.len(),
            crate::ticket::TICKET_LEN_MAX
        )));
    }
    Ok(msg)
}

/// The protocol version a `Hello` or `Watch` announces, read from its first two fields alone, so a client
/// of another version is told so (close 4000) even when the rest of its message has another shape.
/// `None` for every other message, and for bytes too short to say.
pub fn announced_version(bytes: &[u8]) -> Option<u16> {
    let ((tag, protocol), _): ((u32, u16), usize) =
        bincode::serde::decode_from_slice(bytes, config()).ok()?;
    matches!(tag, client_tag::HELLO | client_tag::WATCH).then_some(protocol)
}

fn describe(e: &bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as E;
    match e {
        E::UnexpectedEnd { additional } => format!("message ends {additional} byte(s) too early"),
        E::UnexpectedVariant { found, .. } => format!("unknown message or enum tag {found}"),
        E::LimitExceeded => "message claims more bytes than allowed".to_string(),
        E::InvalidIntegerType { .. } => "malformed varint".to_string(),
        E::Utf8 { .. } => "string is not valid UTF-8".to_string(),
        // serde's own texts, e.g. "invalid value: integer `9`, expected variant index 0 <= i < 3".
        E::OtherString(text) => text.clone(),
        other => format!("malformed message: {other}"),
    }
}

/// Streams a `ServerMsg::Full` for the entities yielded in ascending id order.
pub fn write_full<'a, S: Serialize + 'a>(
    out: &mut Vec<u8>,
    tick: u64,
    entities: impl ExactSizeIterator<Item = (u32, &'a S)>,
) {
    encode_into(out, &tag::FULL);
    encode_into(out, &tick);
    write_id_list(out, entities);
}

/// Streams a `ServerMsg::Delta`. Each iterator yields ascending ids.
pub fn write_delta<'a, S: Serialize + 'a, D: Serialize>(
    out: &mut Vec<u8>,
    base: u64,
    tick: u64,
    despawned: impl ExactSizeIterator<Item = u32>,
    set: impl ExactSizeIterator<Item = (u32, &'a S)>,
    changed: impl ExactSizeIterator<Item = (u32, D)>,
) {
    encode_into(out, &tag::DELTA);
    encode_into(out, &base);
    encode_into(out, &tick);
    encode_into(out, &(despawned.len() as u64));
    let mut previous = 0;
    for id in despawned {
        encode_into(out, &gap(&mut previous, id));
    }
    write_id_list(out, set);
    encode_into(out, &(changed.len() as u64));
    let mut previous = 0;
    for (id, diff) in changed {
        encode_into(out, &gap(&mut previous, id));
        encode_into(out, &diff);
    }
}

fn write_id_list<'a, S: Serialize + 'a>(
    out: &mut Vec<u8>,
    items: impl ExactSizeIterator<Item = (u32, &'a S)>,
) {
    encode_into(out, &(items.len() as u64));
    let mut previous = 0;
    for (id, state) in items {
        encode_into(out, &gap(&mut previous, id));
        encode_into(out, state);
    }
}

fn gap(previous: &mut u32, id: u32) -> u32 {
    debug_assert!(id >= *previous, "ids must ascend");
    let gap = id - *previous;
    *previous = id;
    gap
}

/// Turns the gap-encoded ids of a decoded list back into ids, in place.
pub fn ungap<T>(list: &mut [(u32, T)]) {
    let mut previous = 0u32;
    for (id, _) in list.iter_mut() {
        previous = previous.wrapping_add(*id);
        *id = previous;
    }
}

/// Turns a decoded gap-encoded despawn list back into ids, in place.
pub fn ungap_ids(list: &mut [u32]) {
    let mut previous = 0u32;
    for id in list.iter_mut() {
        previous = previous.wrapping_add(*id);
        *id = previous;
    }
}

/// 64-bit FNV-1a over, for each entity in ascending id order, the encoding of its id (a `u32` varint)
/// followed by the encoding of its state. `scratch` is reused to avoid allocating.
pub fn world_hash<'a, S: Serialize + 'a>(
    scratch: &mut Vec<u8>,
    entities: impl Iterator<Item = (u32, &'a S)>,
) -> u64 {
    let mut hash = Fnv1a::new();
    for (id, state) in entities {
        scratch.clear();
        encode_into(scratch, &id);
        encode_into(scratch, state);
        hash.write(scratch);
    }
    hash.finish()
}

/// 64-bit FNV-1a, spelled out so every client language can match it.
pub struct Fnv1a(u64);

impl Fnv1a {
    pub const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    pub const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Self {
        Fnv1a(Self::OFFSET_BASIS)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;

/// WebSocket close codes the server sends, with the reason text it puts beside them. See `docs/PROTOCOL.md`.
pub mod close {
    /// The client closed first; the server echoes its code.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down (drain on SIGTERM/SIGINT).
    pub const GOING_AWAY: u16 = 1001;
    /// A WebSocket framing error (unmasked frame, bad opcode, ...).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame: the protocol is binary only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A binary message that does not decode as a `ClientMsg`.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message in the wrong state (`Input` before `Hello`, a second `Hello` or `Watch`).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame or message over `--max-message-bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server cannot take this player now (the world is full).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// `Hello` or `Watch` carried another protocol version.
    pub const VERSION_MISMATCH: u16 = 4000;
    /// Slow consumer: no update could be queued for longer than `--lag-limit-ms`.
    pub const LAGGING: u16 = 4001;
    /// Slow consumer: bytes queued in user space passed `--send-limit-bytes`.
    pub const SEND_LIMIT: u16 = 4002;
    /// Nothing was heard from the client for `--idle-timeout-ms`, pings included.
    pub const IDLE_TIMEOUT: u16 = 4003;
    /// Tickets are required and the first message brought none, a malformed, a forged or an expired one
    /// (or none came within `--handshake-timeout-ms`).
    pub const UNAUTHORIZED: u16 = 4004;
    /// The player was resumed on a newer connection; this one is closed.
    pub const REPLACED: u16 = 4005;
    /// The room is full: a `Hello` past its player cap, a `Watch` past its spectator cap.
    pub const ROOM_FULL: u16 = 4006;
    /// The game ended the room (match over), after that tick's update.
    pub const ROOM_ENDED: u16 = 4007;
    /// The game kicked this player, who is gone.
    pub const KICKED: u16 = 4008;
    /// Cluster mode: another process holds this room; this copy is closed.
    pub const ROOM_ELSEWHERE: u16 = 4009;
}
