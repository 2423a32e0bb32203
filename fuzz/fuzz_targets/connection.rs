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
//! Two more bits of `data[0]`: bit 2 (`0x04`) makes the client wait for the `101` and the `Welcome` before
//! sending the rest (otherwise the rest rides in the same write as the request: the server's "early frames"
//! path); bit 3 (`0x08`) corks the socket, so the last bytes and the client's FIN leave in one segment.
//!
//! In mode 2 each frame is taken from the input as `b0 ctl len_lo len_hi payload...`: `b0` goes on the wire
//! as is (FIN, RSV bits, any opcode), `ctl` bit 0 sends the frame unmasked (a protocol error), the payload
//! is the next `len` bytes (fewer at the end of the input), masked with a fixed key unless `ctl` says not.
//!
//! Then the client half-closes and reads until the server closes. The oracles:
//! - the server never panics (libFuzzer turns a panic on any thread into a crash);
//! - it closes the connection within [`CLOSE_WAIT`] of the client's EOF (no leaked connection);
//! - it answers a valid upgrade with `101`, and anything it sends after is well-formed server frames whose
//!   binary messages decode as `ServerMsg` (a cut-off last frame is fine: the server may drop a dead peer);
//! - afterwards a fresh `GET /healthz` answers 200, and every [`CLIENT_CHECK_EVERY`] inputs a real
//!   tungstenite client still gets `Welcome` and then a `Full`.
//!
//! Every wait is bounded; everything stays on 127.0.0.1. `FUZZ_NO_CLOSE_CHECK=1` drops the "closes after
//! the client's EOF" oracle and waits only [`CLOSE_WAIT_UNCHECKED`] for the close, to explore past an open
//! finding of that kind (see `docs/FUZZING.md`).
#![no_main]

use std::io::{Cursor, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tickcast::net::frame;
use tickcast::proto::{self, ClientMsg, ServerMsg};
use tickcast::sim::arena::{Arena, ArenaDiff, ArenaEntity, ArenaInput};
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
            npcs: 4,
            max_message_bytes: 1024,
            max_header_bytes: 1024,
            handshake_timeout_ms: 1_000,
            close_linger_ms: 500,
            // Every input is a fresh connection from 127.0.0.1, hundreds a second: the per-address limits
            // would answer 429 to most of them.
            max_connections_per_ip: 0,
            accepts_per_ip_per_s: 0.0,
            ..Config::default()
        };
        cfg.validate().expect("fuzz server config");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("tickcast-server".into())
            .spawn(move || {
                let (npcs, seed) = (cfg.npcs, cfg.seed);
                let mut server =
                    Server::bind(cfg, |world| Arena::new(world, npcs, seed)).expect("bind");
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
    match mode % 3 {
        0 => {
            let answer = exchange(addr, rest, &[], cork);
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            );
        }
        m => {
            let body = if m == 1 { rest.to_vec() } else { frames(rest) };
            let (head, after) = if wait_for_101 {
                (UPGRADE.to_vec(), body)
            } else {
                ([UPGRADE, &body].concat(), Vec::new())
            };
            let answer = exchange(addr, &head, &after, cork);
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
/// it; half-closes; returns everything the server sent until it closed. Panics if it does not close.
fn exchange(addr: SocketAddr, head: &[u8], after: &[u8], cork: bool) -> Vec<u8> {
    let mut sock = TcpStream::connect_timeout(&addr, CLOSE_WAIT).expect("connect");
    sock.set_read_timeout(Some(CLOSE_WAIT)).unwrap();
    sock.set_write_timeout(Some(CLOSE_WAIT)).unwrap();
    sock.set_nodelay(true).unwrap();
    let mut answer = Vec::new();
    // Write errors are the server's right (it may close while we send); reading says what happened.
    if after.is_empty() {
        set_cork(&sock, cork);
        let _ = sock.write_all(head);
    } else if sock.write_all(head).is_ok() {
        let deadline = Instant::now() + CLOSE_WAIT;
        while !has_first_frame(&answer) && read_some(&mut sock, &mut answer, deadline) {}
        set_cork(&sock, cork);
        let _ = sock.write_all(after);
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
    let mut sock = TcpStream::connect_timeout(&addr, HEALTH_WAIT).expect("connect for /healthz");
    sock.set_read_timeout(Some(HEALTH_WAIT)).unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send /healthz");
    let mut answer = Vec::new();
    let deadline = Instant::now() + HEALTH_WAIT;
    while read_some(&mut sock, &mut answer, deadline) {}
    let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
    assert!(
        answer.starts_with(b"HTTP/1.1 200 ") && answer.ends_with(b"\r\n\r\nok\n"),
        "/healthz answered {:?}",
        String::from_utf8_lossy(&answer)
    );
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
