//! Arbitrary bytes from a client of a real server: one arena server is started in-process on
//! 127.0.0.1:0 (small limits) and every input becomes one fresh TCP connection. The first byte picks how
//! the rest is sent:
//!
//! | `data[0] % 3` | what goes on the wire                                                          |
//! |---------------|--------------------------------------------------------------------------------|
//! | 0             | the bytes, raw (an HTTP request head, or anything else)                         |
//! | 1             | a valid WebSocket upgrade, then the bytes raw (WebSocket frames, or not)        |
//! | 2             | a valid WebSocket upgrade, then the bytes cut into masked client frames (below) |
//!
//! Four more bits of `data[0]` (bits 6 and 7 are free, but still count in `% 3`):
//!
//! | bit          | effect                                                                                      |
//! |--------------|---------------------------------------------------------------------------------------------|
//! | 2 (`0x04`)   | wait for the `101` and the `Welcome` before sending the rest (otherwise the rest rides in the same write as the request: the server's "early frames" path) |
//! | 3 (`0x08`)   | cork the socket, so the last bytes and the client's FIN leave in one segment                |
//! | 4 (`0x10`)   | repeat: after sending as above, send the input's tail again and again (below), while a `/healthz` probe runs on a second connection |
//! | 5 (`0x20`)   | upgrade into room `fuzz-0` .. `fuzz-3` (bits 6 and 7 pick it; join or create) instead of plain `/ws` |
//!
//! In mode 2 each frame is taken from the input as `b0 ctl len_lo len_hi payload...`: `b0` goes on the wire
//! as is (FIN, RSV bits, any opcode), `ctl` bit 0 sends the frame unmasked (a protocol error), the payload
//! is the next `len` bytes (fewer at the end of the input), masked with a fixed key unless `ctl` says not.
//! The header announces the payload actually sent, so mode 2 never sends half a frame; mode 1 can.
//!
//! **Repeat** (bit 4): the tail is everything after the first unit of the input (mode 0: the head, up to
//! and including the first blank line; mode 1: the first WebSocket frame, RFC 6455 layout; mode 2: the
//! first `b0 ctl len payload` record), or the whole input when nothing follows that unit. So
//! `[binary, FIN 0][continuation]...` streams empty continuations forever behind one opened message, and
//! `[Watch][ping]` floods pings from a spectator (a verbatim repeat of a whole body would reopen the
//! message each time, which tungstenite refuses at once). The tail goes out back to back, at most
//! [`REPEAT_TIMES_MAX`] times and for at most [`REPEAT_FOR`], and stops early on a write error, when the
//! server closes (its close frame, EOF or a reset) or when the probe is done. The probe (a `GET /healthz`
//! on its own connection) starts once [`PROBE_AFTER_BYTES`] of the tail are written or [`PROBE_AFTER`]
//! has passed (so the server is already busy with the stream) and must get 200 within [`HEALTH_WAIT`];
//! and if the client was still streaming when [`REPEAT_FOR`] ran out, the answer must have come before
//! that: one connection may not keep the loop to itself while its bytes keep coming.
//!
//! Then the client half-closes and reads until the server closes. The oracles:
//! - the server never panics (libFuzzer turns a panic on any thread into a crash);
//! - it closes the connection within [`CLOSE_WAIT`] of the client's EOF (no leaked connection);
//! - it answers a valid upgrade with `101`, and anything it sends after is well-formed server frames whose
//!   binary messages decode as `ServerMsg` (a cut-off last frame is fine: the server may drop a dead peer);
//! - in repeat mode, the `/healthz` probe above is answered while the client streams;
//! - afterwards a fresh `GET /healthz` answers 200, and every [`CLIENT_CHECK_EVERY`] inputs a real
//!   tungstenite client still gets `Welcome` and then a `Full`.
//!
//! All of them hold in repeat mode too: what the client reads while it streams joins the answer that the
//! frame oracle checks, and the close oracle's [`CLOSE_WAIT`] starts at the EOF after the stream, when
//! the server has at most the socket buffers' backlog left to read at a turn's budget per turn (a frame
//! stream is closed by the fragment cap or the rate limit long before, and a closing connection goes
//! within `--close-linger-ms`, 500 ms here).
//!
//! Every wait is bounded; everything stays on 127.0.0.1. `FUZZ_NO_CLOSE_CHECK=1` drops the "closes after
//! the client's EOF" oracle and waits only [`CLOSE_WAIT_UNCHECKED`] for the close, to explore past an open
//! finding of that kind (see `docs/FUZZING.md`).
#![no_main]

use std::io::{Cursor, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tickcast::net::frame;
use tickcast::proto::{self, ClientMsg, ServerMsg};
use tickcast::sim::arena::{ArenaDiff, ArenaEntity, ArenaInput, ArenaSettings};
use tickcast::{Config, Server};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

type Msg = ServerMsg<ArenaEntity, ArenaDiff>;

/// How long the server has to close after the client's EOF, and the bound on every other socket wait.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The wait for the close under `FUZZ_NO_CLOSE_CHECK=1`.
const CLOSE_WAIT_UNCHECKED: Duration = Duration::from_millis(100);
/// How long `/healthz` may take to answer, generous because the fuzzing machine's cores are shared.
const HEALTH_WAIT: Duration = Duration::from_secs(5);
/// A real client checks Welcome + Full once every this many inputs (it costs a tick or two of waiting).
const CLIENT_CHECK_EVERY: u64 = 256;
/// Longest input used; the rest is ignored, so one input is one bounded connection.
const INPUT_MAX_BYTES: usize = 64 * 1024;
/// Bit 4 of `data[0]`: the repeat mode.
const REPEAT: u8 = 0x10;
/// Mode bit: upgrade into a named room (`/ws/fuzz-N`, N from bits 6 and 7) instead of `/ws`.
const ROOM: u8 = 0x20;
/// The repeat mode sends its tail at most this many times...
const REPEAT_TIMES_MAX: usize = 1_000_000;
/// ... and for at most this long.
const REPEAT_FOR: Duration = Duration::from_secs(2);
/// One write of the repeated tail is the tail repeated to at least this many bytes.
const REPEAT_CHUNK_MIN: usize = 64 * 1024;
/// The longest the stream waits on one write before it looks at the clock and the probe again.
const REPEAT_WRITE_WAIT: Duration = Duration::from_millis(50);
/// The repeat mode's `/healthz` probe starts once this many bytes of the tail are written...
const PROBE_AFTER_BYTES: usize = 256 * 1024;
/// ... or once the stream has run this long, whichever comes first (or when the stream ends).
const PROBE_AFTER: Duration = Duration::from_millis(200);
/// The RFC 6455 example masking key.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

static RUNS: AtomicU64 = AtomicU64::new(0);

/// The server, started on first use and left running for the life of the fuzzing process.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let cfg = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tick_hz: 50,
            max_message_bytes: 1024,
            max_header_bytes: 1024,
            handshake_timeout_ms: 1_000,
            close_linger_ms: 500,
            // Every input is a fresh connection from 127.0.0.1, hundreds a second: the per-address limits
            // would answer 429 to most of them.
            max_connections_per_ip: 0,
            accepts_per_ip_per_s: 0.0,
            max_rooms_per_ip: 0,
            ..Config::default()
        };
        cfg.validate().expect("fuzz server config");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("tickcast-server".into())
            .spawn(move || {
                let arena = ArenaSettings {
                    npcs: 4,
                    seed: 1,
                    ..ArenaSettings::default()
                };
                let mut server = Server::bind(cfg, arena.room_types()).expect("bind");
                tx.send(server.local_addr()).unwrap();
                server.run().expect("server loop ended with an error");
                panic!("server loop returned without being asked to stop");
            })
            .unwrap();
        rx.recv_timeout(HEALTH_WAIT).expect("server started")
    })
}

fuzz_target!(|data: &[u8]| {
    let addr = server();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let rest = &rest[..rest.len().min(INPUT_MAX_BYTES)];
    let wait_for_101 = mode & 0x04 != 0;
    let cork = mode & 0x08 != 0;
    let repeat = mode & REPEAT != 0;
    match mode % 3 {
        0 => {
            let tail = repeat.then(|| tail_of(rest, head_len(rest)).to_vec());
            let answer = exchange(addr, rest, &[], cork, tail.as_deref());
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            );
        }
        m => {
            let (body, tail) = if m == 1 {
                let tail = repeat.then(|| tail_of(rest, raw_frame_len(rest)).to_vec());
                (rest.to_vec(), tail)
            } else {
                let tail = repeat.then(|| frames(tail_of(rest, Some(first_record_len(rest)))));
                (frames(rest), tail)
            };
            let upgrade = match mode & ROOM != 0 {
                true => String::from_utf8_lossy(UPGRADE)
                    .replacen("/ws", &format!("/ws/fuzz-{}", mode >> 6), 1)
                    .into_bytes(),
                false => UPGRADE.to_vec(),
            };
            let (head, after) = if wait_for_101 {
                (upgrade, body)
            } else {
                ([&upgrade[..], &body].concat(), Vec::new())
            };
            let answer = exchange(addr, &head, &after, cork, tail.as_deref());
            check_websocket_answer(&answer);
        }
    }
    check_health(addr);
    if RUNS
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(CLIENT_CHECK_EVERY)
    {
        check_real_client(addr);
    }
});

/// What the repeat mode repeats: `bytes` after its first `first` bytes, or all of them when that leaves
/// nothing (or the first unit is not whole).
fn tail_of(bytes: &[u8], first: Option<usize>) -> &[u8] {
    match first {
        Some(n) if n < bytes.len() => &bytes[n..],
        _ => bytes,
    }
}

/// Mode 0's first unit: the bytes up to and including the first blank line.
fn head_len(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

/// Mode 1's first unit: the length of the WebSocket frame `bytes` start with (header, mask, payload),
/// if all of it is there.
fn raw_frame_len(bytes: &[u8]) -> Option<usize> {
    let (&b1, after) = bytes.get(1).zip(bytes.get(2..))?;
    let (ext, len) = match b1 & 0x7f {
        126 => (
            2,
            u64::from(u16::from_be_bytes(after.get(..2)?.try_into().ok()?)),
        ),
        127 => (8, u64::from_be_bytes(after.get(..8)?.try_into().ok()?)),
        n => (0, u64::from(n)),
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let total = usize::try_from(len).ok()?.checked_add(2 + ext + mask)?;
    (total <= bytes.len()).then_some(total)
}

/// Mode 2's first unit: the input bytes [`frames`] makes its first frame of.
fn first_record_len(rest: &[u8]) -> usize {
    match rest {
        [_, _, lo, hi, tail @ ..] => {
            4 + usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len())
        }
        // A record without a whole length takes the rest of the input (see `frames`).
        _ => rest.len(),
    }
}

/// Cuts `rest` into client frames as the module docs say.
fn frames(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rest.len() + rest.len() / 2);
    while let [b0, ctl, tail @ ..] = rest {
        let (len, tail) = match tail {
            [lo, hi, tail @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), tail),
            _ => (0, &[][..]),
        };
        let (payload, tail) = tail.split_at(len.min(tail.len()));
        let masked = ctl & 1 == 0;
        out.push(*b0);
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&MASK);
            out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
        } else {
            out.extend_from_slice(payload);
        }
        rest = tail;
    }
    out
}

/// Connects, sends `head`; if `after` is not empty waits for the server's `101` and first frame, then sends
/// it; in repeat mode (`repeat` is the tail) streams the tail while a `/healthz` probe runs
/// ([`stream_and_probe`]); half-closes; returns everything the server sent until it closed. Panics if it
/// does not close.
fn exchange(
    addr: SocketAddr,
    head: &[u8],
    after: &[u8],
    cork: bool,
    repeat: Option<&[u8]>,
) -> Vec<u8> {
    let mut sock = TcpStream::connect_timeout(&addr, CLOSE_WAIT).expect("connect");
    sock.set_read_timeout(Some(CLOSE_WAIT)).unwrap();
    sock.set_write_timeout(Some(CLOSE_WAIT)).unwrap();
    sock.set_nodelay(true).unwrap();
    let mut answer = Vec::new();
    // Write errors are the server's right (it may close while we send); reading says what happened.
    let sent = if after.is_empty() {
        set_cork(&sock, cork);
        sock.write_all(head).is_ok()
    } else if sock.write_all(head).is_ok() {
        let deadline = Instant::now() + CLOSE_WAIT;
        while !has_first_frame(&answer) && read_some(&mut sock, &mut answer, deadline) {}
        set_cork(&sock, cork);
        sock.write_all(after).is_ok()
    } else {
        false
    };
    if let Some(tail) = repeat {
        stream_and_probe(addr, &mut sock, tail, sent, &mut answer);
        sock.set_write_timeout(Some(CLOSE_WAIT)).unwrap();
    }
    // With the cork on, the FIN rides in the segment that carries the last bytes.
    let _ = sock.shutdown(Shutdown::Write);
    let checked = std::env::var_os("FUZZ_NO_CLOSE_CHECK").is_none();
    let wait = if checked {
        CLOSE_WAIT
    } else {
        CLOSE_WAIT_UNCHECKED
    };
    let deadline = Instant::now() + wait;
    while read_some(&mut sock, &mut answer, deadline) {}
    assert!(
        !checked || Instant::now() < deadline,
        "server did not close the connection within {wait:?} of the client's EOF \
         ({} bytes received)",
        answer.len()
    );
    // No TIME_WAIT left behind on this side: at fuzzing rates they would use up the ephemeral ports.
    let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
    answer
}

/// Why the repeat mode's stream stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    /// The `/healthz` probe was done (answered, or gave up).
    ProbeDone,
    /// [`REPEAT_TIMES_MAX`] tails were sent.
    Times,
    /// [`REPEAT_FOR`] ran out with the client still streaming.
    Time,
    /// The server closed: its close frame, EOF or a reset (or the first bytes could not be sent).
    Closed,
    /// A write failed.
    WriteFailed,
}

/// The repeat mode: writes `tail` back to back (bounded as the module docs say), reading what the server
/// sends into `answer` meanwhile, and runs the `/healthz` probe on a second connection. Panics if the
/// probe is not answered 200 within [`HEALTH_WAIT`], or was not answered while the client still streamed.
fn stream_and_probe(
    addr: SocketAddr,
    sock: &mut TcpStream,
    tail: &[u8],
    sent: bool,
    answer: &mut Vec<u8>,
) {
    let start = Instant::now();
    let deadline = start + REPEAT_FOR;
    let per_chunk = REPEAT_CHUNK_MIN.div_ceil(tail.len().max(1));
    let chunk = tail.repeat(per_chunk);
    let probe_done = Arc::new(AtomicBool::new(false));
    let mut probe = None;
    let (mut times, mut written, mut scanned) = (0usize, 0usize, 0usize);
    // Bytes of the chunk now being written: `times` counts whole tails sent.
    let (mut pending, mut off) = (0usize, 0usize);
    let end = loop {
        if probe.is_none() && (written >= PROBE_AFTER_BYTES || start.elapsed() >= PROBE_AFTER) {
            probe = Some((spawn_probe(addr, &probe_done), Instant::now()));
        }
        if probe_done.load(Ordering::SeqCst) {
            break StreamEnd::ProbeDone;
        }
        if !sent || tail.is_empty() {
            break StreamEnd::Closed;
        }
        let now = Instant::now();
        if now >= deadline {
            break StreamEnd::Time;
        }
        if off == pending {
            if times >= REPEAT_TIMES_MAX {
                break StreamEnd::Times;
            }
            let n = per_chunk.min(REPEAT_TIMES_MAX - times);
            times += n;
            (pending, off) = (n * tail.len(), 0);
        }
        let wait = (deadline - now).clamp(Duration::from_millis(1), REPEAT_WRITE_WAIT);
        sock.set_write_timeout(Some(wait)).unwrap();
        match sock.write(&chunk[off..pending]) {
            Ok(0) => break StreamEnd::WriteFailed,
            Ok(n) => {
                off += n;
                written += n;
            }
            // The socket is full for now (the write timeout): look at the clock and the probe again.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break StreamEnd::WriteFailed,
        }
        if !take_available(sock, answer) || server_sent_close(answer, &mut scanned) {
            break StreamEnd::Closed;
        }
    };
    let stream_end = Instant::now();
    let (probe, probe_start) =
        probe.unwrap_or_else(|| (spawn_probe(addr, &probe_done), Instant::now()));
    let (health, answered_at) = probe.join().expect("the /healthz probe panicked");
    let ok = is_health_ok(&health);
    // Starved: the client streamed for all of REPEAT_FOR, the probe was waiting for most of it (it starts
    // within PROBE_AFTER plus one write wait), and no answer came before the stream stopped.
    assert!(
        !(end == StreamEnd::Time
            && (!ok || answered_at > stream_end)
            && stream_end.saturating_duration_since(probe_start) >= REPEAT_FOR / 2),
        "the loop was starved: /healthz was not answered while one connection streamed its tail \
         ({} bytes, {times} times, {written} bytes in {:?}); answered {:?} after the stream stopped: {:?}",
        tail.len(),
        stream_end - start,
        answered_at.saturating_duration_since(stream_end),
        String::from_utf8_lossy(&health[..health.len().min(200)])
    );
    assert!(
        ok,
        "/healthz answered {:?} while a client streamed (stream ended: {end:?})",
        String::from_utf8_lossy(&health)
    );
}

/// Starts the `/healthz` probe on its own thread; it sets `done` when it has its answer (or gave up) and
/// returns the answer and when it came.
fn spawn_probe(
    addr: SocketAddr,
    done: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<u8>, Instant)> {
    let done = done.clone();
    std::thread::Builder::new()
        .name("healthz-probe".into())
        .spawn(move || {
            let answer = health(addr);
            let at = Instant::now();
            done.store(true, Ordering::SeqCst);
            (answer, at)
        })
        .expect("spawn the /healthz probe")
}

/// Takes what the server has sent so far without waiting; false once it has closed (EOF or reset).
fn take_available(sock: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    sock.set_nonblocking(true).unwrap();
    let mut chunk = [0u8; 16 * 1024];
    let open = loop {
        match sock.read(&mut chunk) {
            Ok(0) => break false,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
            Err(_) => break false,
        }
    };
    sock.set_nonblocking(false).unwrap();
    open
}

/// Whether the server's frames in `answer` (after a `101` head) include a close frame; `scanned` is how
/// far the frames were already looked at.
fn server_sent_close(answer: &[u8], scanned: &mut usize) -> bool {
    if *scanned == 0 {
        if !answer.starts_with(b"HTTP/1.1 101 ") {
            return false;
        }
        match head_len(answer) {
            Some(n) => *scanned = n,
            None => return false,
        }
    }
    while let Some(len) = frame::frame_len(&answer[*scanned..]) {
        let frame = &answer[*scanned..];
        if frame[0] & 0x0f == 0x8 {
            return true;
        }
        if frame.len() < len {
            return false;
        }
        *scanned += len;
    }
    false
}

fn set_cork(sock: &TcpStream, cork: bool) {
    if cork {
        socket2::SockRef::from(sock)
            .set_cork(true)
            .expect("TCP_CORK");
    }
}

/// Whether `answer` holds a whole HTTP head and, behind it, one whole frame (the `Welcome`).
fn has_first_frame(answer: &[u8]) -> bool {
    let Some(head_end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let frames = &answer[head_end + 4..];
    frame::frame_len(frames).is_some_and(|n| frames.len() >= n)
}

/// Reads once into `out`; false at EOF, reset, or the deadline.
fn read_some(sock: &mut TcpStream, out: &mut Vec<u8>, deadline: Instant) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if Instant::now() >= deadline {
            return false;
        }
        match sock.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // The read timeout: let the deadline check decide.
                let _ = sock.set_read_timeout(Some(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ));
            }
            // Reset by the server (it closed with our bytes unread): closed.
            Err(_) => return false,
        }
    }
}

/// A valid upgrade gets `101`, then well-formed server frames; binary messages decode as `ServerMsg`.
fn check_websocket_answer(answer: &[u8]) {
    if answer.is_empty() {
        // The server may reset a connection whose input it did not read; nothing to check.
        return;
    }
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    let head = String::from_utf8_lossy(&answer[..head_end.unwrap_or(answer.len()).min(300)]);
    const SWITCHING: &str = "HTTP/1.1 101 ";
    assert!(
        head.starts_with(SWITCHING) || SWITCHING.starts_with(&*head),
        "a valid upgrade was answered with {head:?}"
    );
    let Some(head_end) = head_end else {
        return;
    };
    let stream = &answer[head_end..];
    // tungstenite, as a client, refuses any frame after the server's Close ("Remote sent after having
    // closed"): the server must send nothing after it, not even the pong it owed (docs/FUZZING.md, O2).
    let replay = Replay(Cursor::new(stream));
    let mut ws = WebSocket::from_raw_socket(replay, Role::Client, None);
    loop {
        match ws.read() {
            Ok(Message::Binary(bytes)) => {
                if let Err(e) = proto::decode::<Msg>(&bytes) {
                    panic!("server sent a message that does not decode ({e}): {bytes:02x?}");
                }
            }
            Ok(Message::Close(_) | Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("server sent {other:?}"),
            // The end of what was received: whole, or cut off inside a frame.
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ),
            ) => break,
            Err(e) => panic!(
                "server frames do not parse: {e} (stream {:02x?})",
                &stream[..stream.len().min(256)]
            ),
        }
    }
}

/// What the server sent, replayed to a client-role tungstenite; what it writes back (pongs, the close
/// echo) goes nowhere.
struct Replay<'a>(Cursor<&'a [u8]>);

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Replay<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn check_health(addr: SocketAddr) {
    let answer = health(addr);
    assert!(
        is_health_ok(&answer),
        "/healthz answered {:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// Asks `GET /healthz` on a fresh connection; what came back within [`HEALTH_WAIT`].
fn health(addr: SocketAddr) -> Vec<u8> {
    let mut sock = TcpStream::connect_timeout(&addr, HEALTH_WAIT).expect("connect for /healthz");
    sock.set_read_timeout(Some(HEALTH_WAIT)).unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send /healthz");
    let mut answer = Vec::new();
    let deadline = Instant::now() + HEALTH_WAIT;
    while read_some(&mut sock, &mut answer, deadline) {}
    let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
    answer
}

fn is_health_ok(answer: &[u8]) -> bool {
    answer.starts_with(b"HTTP/1.1 200 ") && answer.ends_with(b"\r\n\r\nok\n")
}

/// A real tungstenite client that sends `Watch` gets Welcome, then a Full, within [`HEALTH_WAIT`].
fn check_real_client(addr: SocketAddr) {
    let sock = TcpStream::connect_timeout(&addr, HEALTH_WAIT).expect("connect for the client");
    sock.set_read_timeout(Some(HEALTH_WAIT)).unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}/ws"), Restarting(sock)).expect("client handshake");
    let watch = proto::encode(&ClientMsg::<ArenaInput>::Watch {
        protocol: proto::PROTOCOL_VERSION,
        ticket: String::new(),
    });
    ws.send(Message::Binary(watch.into()))
        .expect("client sends Watch");
    let deadline = Instant::now() + HEALTH_WAIT;
    let mut welcomed = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "no Welcome + Full within {HEALTH_WAIT:?}"
        );
        match ws.read().expect("client read") {
            Message::Binary(bytes) => match proto::decode::<Msg>(&bytes).expect("decode") {
                ServerMsg::Welcome { .. } if !welcomed => welcomed = true,
                ServerMsg::Full { .. } if welcomed => break,
                other => panic!("expected Welcome then Full, got {other:?}"),
            },
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("client got {other:?}"),
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    let _ = socket2::SockRef::from(&ws.get_ref().0).set_linger(Some(Duration::ZERO));
}

/// A blocking socket whose reads and writes start again after a signal: libFuzzer's timeout alarm
/// (SIGALRM) interrupts them, and tungstenite passes `Interrupted` up as an error.
struct Restarting(TcpStream);

impl Read for Restarting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl Write for Restarting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
