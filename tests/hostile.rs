//! Clients that attack the loop itself rather than the game: floods of frames that never make a message,
//! frames trickled byte by byte, connections that never say who they are, readers that never read. Each
//! gets its documented close code and reason, and an honest spectator on the same server keeps receiving
//! every tick meanwhile (counted updates, no gaps) while `/healthz` answers 200.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_frame, close_of, server_frame, Client, TestServer, UPGRADE, WAIT_MAX};
use tickcast::proto::{self, ClientMsg};
use tickcast::sim::arena::{Arena, ArenaEntity, ArenaInput};
use tungstenite::Message;

const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// An attacker on a raw socket: it upgrades, then writes whatever bytes it likes and watches for the
/// server's close frame.
struct Attacker {
    sock: TcpStream,
    /// Bytes from the server after the 101 head, not yet parsed.
    inbox: Vec<u8>,
    close: Option<(u16, String)>,
}

impl Attacker {
    /// Upgrades and sends `Watch`, so the handshake deadline does not end the attack first.
    fn watching(server: &TestServer) -> Attacker {
        let mut attacker = Attacker::upgrade(server);
        let watch = proto::encode(&ClientMsg::<ArenaInput>::Watch {
            protocol: proto::PROTOCOL_VERSION,
            ticket: String::new(),
        });
        attacker.send(&client_frame(true, BINARY, &watch));
        attacker
    }

    fn upgrade(server: &TestServer) -> Attacker {
        let mut sock = TcpStream::connect(server.addr).unwrap();
        sock.set_read_timeout(Some(WAIT_MAX)).unwrap();
        sock.set_write_timeout(Some(WAIT_MAX)).unwrap();
        sock.write_all(UPGRADE).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            sock.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101 "), "upgrade refused");
        Attacker {
            sock,
            inbox: Vec::new(),
            close: None,
        }
    }

    /// Writes `bytes`; false once the server no longer takes them (it closed, or reset the connection).
    fn send(&mut self, bytes: &[u8]) -> bool {
        self.sock.write_all(bytes).is_ok()
    }

    /// Writes `chunk` up to `times` times, stopping early once the server's close frame has arrived.
    fn flood(&mut self, chunk: &[u8], times: usize) {
        for _ in 0..times {
            if !self.send(chunk) {
                break;
            }
            self.take_available();
            if self.close.is_some() {
                break;
            }
        }
    }

    /// Takes what the server has sent so far without waiting.
    fn take_available(&mut self) {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
            }
        }
        self.sock.set_nonblocking(false).unwrap();
        self.parse();
    }

    /// Finds the close frame among the server's (unmasked) frames.
    fn parse(&mut self) {
        while self.close.is_none() {
            let Some((opcode, payload, len)) = server_frame(&self.inbox) else {
                return;
            };
            if opcode == 0x8 {
                self.close = Some(close_of(payload));
            }
            self.inbox.drain(..len);
        }
    }

    /// After the close frame, reads to the server's EOF: nothing may follow the close (RFC 6455 5.5.1,
    /// and tungstenite clients refuse it).
    fn expect_nothing_after_close(&mut self) {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            assert!(Instant::now() < deadline, "no EOF after the close");
            match self.sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The server resets a socket whose input it had not read: what came before still counts.
                Err(_) => break,
            }
        }
        assert!(
            self.inbox.is_empty(),
            "the server sent {:02x?} after its close frame",
            &self.inbox[..self.inbox.len().min(32)]
        );
    }

    /// Reads until the server's close frame; its code and reason.
    fn expect_close(&mut self) -> (u16, String) {
        let deadline = Instant::now() + WAIT_MAX;
        let mut buf = [0u8; 16 * 1024];
        while self.close.is_none() {
            assert!(Instant::now() < deadline, "no close frame");
            match self.sock.read(&mut buf) {
                Ok(0) => panic!("the server hung up without a close frame"),
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
            self.parse();
        }
        self.close.clone().unwrap()
    }
}

/// These tests load the machine on purpose (two streams at full speed); run one at a time, so that one
/// test's flood is not another test's late tick.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The honest spectator each test keeps beside its attacker, once it matched a checksum, and how many
/// ticks it had seen by then (from there on it must see every one).
fn bystander(server: &TestServer) -> (Client, usize) {
    let mut bystander = Client::watching(server);
    bystander.verify_checksums(1);
    let from = bystander.ticks.len();
    (bystander, from)
}

/// The attack cost the bystander nothing: its mirror still matches, it saw every tick since `from`,
/// `/healthz` answers and the loop is idle again.
fn assert_unharmed(server: &TestServer, bystander: &mut Client, from: usize) {
    bystander.verify_checksums(1);
    bystander.assert_every_tick_since(from);
    assert_healthy(server, bystander);
}

/// Once an attack is over the loop is idle again: a few turns per tick (polls for the tick, the
/// bystander's writes, these metric requests), not a spin on a connection it thinks has more to read.
fn assert_healthy(server: &TestServer, bystander: &mut Client) {
    assert_eq!(server.get("/healthz").0, 200);
    let (turns, ticks) = (
        server.metric("tickcast_loop_turns_total"),
        server.metric("tickcast_ticks_total"),
    );
    for _ in 0..20 {
        bystander.recv();
    }
    let turns = server.metric("tickcast_loop_turns_total") - turns;
    let ticks = server.metric("tickcast_ticks_total") - ticks;
    assert!(
        turns <= 4 * ticks + 16,
        "{turns} loop turns in {ticks} ticks: the loop is spinning"
    );
}

#[test]
fn two_clients_streaming_empty_continuations_cannot_freeze_the_loop() {
    let _serial = one_at_a_time();
    // The fragment cap, the message deadline and the rate limit are lifted, so only the per-turn read
    // budget stands between these two and the loop: it must keep ticking while they stream.
    let server = TestServer::start(|c| {
        c.tick_hz = 20;
        c.checksum_every_ticks = 5;
        c.fragments_per_message_max = u32::MAX;
        c.frame_timeout_ms = 600_000;
        c.idle_timeout_ms = 600_000;
        c.messages_per_s = 1e12;
        c.message_burst = 1e12;
    });
    let (mut bystander, from) = bystander(&server);
    const FRAMES_PER_CHUNK: usize = 10_000;
    const CHUNKS: usize = 150;
    let streaming = Arc::new(AtomicBool::new(true));
    let attackers: Vec<_> = (0..2)
        .map(|_| {
            let mut attacker = Attacker::watching(&server);
            let streaming = streaming.clone();
            std::thread::spawn(move || {
                attacker.send(&client_frame(false, BINARY, b""));
                let chunk = client_frame(false, CONTINUATION, b"").repeat(FRAMES_PER_CHUNK);
                attacker.flood(&chunk, CHUNKS);
                streaming.store(false, Ordering::SeqCst);
                // The message ends at last: empty, so it does not decode.
                attacker.send(&client_frame(true, CONTINUATION, b""));
                attacker.expect_close()
            })
        })
        .collect();
    let mut updates_during = 0;
    let deadline = Instant::now() + WAIT_MAX;
    while streaming.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the attack never ended");
        bystander.recv();
        updates_during += 1;
    }
    for attacker in attackers {
        let (code, reason) = attacker.join().unwrap();
        assert_eq!(code, 1007, "{reason}");
        assert!(reason.contains("malformed message"), "{reason}");
    }
    assert!(
        updates_during >= 2,
        "the bystander heard {updates_during} updates while the attack streamed"
    );
    assert_unharmed(&server, &mut bystander, from);
    // The server read every byte of both streams, a turn's budget at a time.
    let streamed = 2 * FRAMES_PER_CHUNK * CHUNKS * 6;
    assert!(server.metric("tickcast_bytes_in_total") >= streamed as u64);
}

#[test]
fn a_message_in_endless_empty_fragments_is_closed_past_the_fragment_cap() {
    let _serial = one_at_a_time();
    let server = TestServer::start(|c| {
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
    });
    let (mut bystander, from) = bystander(&server);
    let mut attacker = Attacker::watching(&server);
    attacker.send(&client_frame(false, BINARY, b"x"));
    attacker.flood(&client_frame(false, CONTINUATION, b"").repeat(1000), 100);
    let (code, reason) = attacker.expect_close();
    assert_eq!(code, 1008, "{reason}");
    assert_eq!(reason, "message in more than 64 frames");
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"protocol_error\"}"),
        1
    );
    assert_unharmed(&server, &mut bystander, from);
}

#[test]
fn floods_of_pongs_and_of_pings_are_closed_by_the_rate_limit() {
    let _serial = one_at_a_time();
    let server = TestServer::start(|c| {
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
    });
    let (mut bystander, from) = bystander(&server);
    for opcode in [PONG, PING] {
        let mut attacker = Attacker::watching(&server);
        attacker.flood(&client_frame(true, opcode, b"hi").repeat(1000), 100);
        let (code, reason) = attacker.expect_close();
        assert_eq!(code, 1008, "opcode {opcode}: {reason}");
        assert!(reason.contains("rate limit exceeded"), "{reason}");
        attacker.expect_nothing_after_close();
        bystander.verify_checksums(1);
    }
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"rate_limited\"}"),
        2
    );
    assert_unharmed(&server, &mut bystander, from);
}

#[test]
fn a_connection_that_answers_pings_but_never_says_hello_is_closed_at_the_deadline() {
    let _serial = one_at_a_time();
    let server = TestServer::start(|c| {
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
        c.handshake_timeout_ms = 400;
        // Pinged well before the deadline: answering pings must not keep it open.
        c.ping_interval_ms = 100;
        c.idle_timeout_ms = 60_000;
    });
    let (mut bystander, from) = bystander(&server);
    let mut silent = Client::connect(&server);
    // tungstenite answers each ping as it reads; nothing else is ever sent.
    let deadline = Instant::now() + WAIT_MAX;
    let (code, reason) = loop {
        assert!(Instant::now() < deadline, "never closed");
        match silent.ws.read().expect("read") {
            Message::Close(Some(frame)) => break (u16::from(frame.code), frame.reason.to_string()),
            Message::Ping(_) => {}
            other => panic!("a silent connection was sent {other:?}"),
        }
    };
    assert_eq!(code, 1008, "{reason}");
    assert_eq!(reason, "no Hello or Watch within 400 ms");
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"handshake_timeout\"}"),
        1
    );
    // The bystander, which sent Watch at once, is still there.
    assert_unharmed(&server, &mut bystander, from);
}

#[test]
fn a_frame_trickled_byte_by_byte_is_closed_at_the_frame_deadline() {
    let _serial = one_at_a_time();
    let server = TestServer::start(|c| {
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
        c.frame_timeout_ms = 500;
        c.idle_timeout_ms = 60_000;
        c.ping_interval_ms = 30_000;
    });
    let (mut bystander, from) = bystander(&server);
    // It sent Watch, so the handshake deadline does not apply; then it begins a 4,000-byte frame.
    let mut attacker = Attacker::watching(&server);
    let frame = client_frame(true, BINARY, &[0u8; 4000]);
    attacker.send(&frame[..10]);
    let mut writer = attacker.sock.try_clone().unwrap();
    let trickling = Arc::new(AtomicBool::new(true));
    let trickle = {
        let trickling = trickling.clone();
        std::thread::spawn(move || {
            // One byte every 100 ms, each of which the idle timer would count as sound; bounded.
            for &byte in &frame[10..300] {
                if !trickling.load(Ordering::SeqCst) || writer.write_all(&[byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (code, reason) = attacker.expect_close();
    trickling.store(false, Ordering::SeqCst);
    trickle.join().unwrap();
    assert_eq!(code, 1008, "{reason}");
    assert_eq!(reason, "frame not completed within 500 ms");
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"frame_timeout\"}"),
        1
    );
    assert_unharmed(&server, &mut bystander, from);
}

#[test]
fn readers_that_never_read_a_big_world_stay_inside_the_memory_budget_and_are_closed() {
    let _serial = one_at_a_time();
    const STATUES: u16 = 4_000;
    const BUDGET: usize = 40_000;
    const STALLED: usize = 8;
    let server = TestServer::start_game(
        |c| {
            c.tick_hz = 20;
            c.checksum_every_ticks = 5;
            c.npcs = 4;
            c.queued_bytes_max = BUDGET;
            // Smaller than the Full: over the budget, the Fulls wait.
            c.send_hwm_bytes = 16 * 1024;
            c.first_update_lag_limit_ms = 1_000;
            c.close_linger_ms = 3_000;
            c.tcp_notsent_lowat_bytes = 4096;
            c.idle_timeout_ms = 120_000;
            c.ping_interval_ms = 60_000;
        },
        // The arena plus thousands of entities nothing moves: a big `Full`, small deltas.
        |world, cfg| {
            let arena = Arena::new(world, cfg.npcs, cfg.seed);
            for i in 0..STATUES {
                let at = ArenaEntity { x: i, y: i, seq: 0 };
                world.spawn(at).expect("room for statues");
            }
            arena
        },
    );
    let (mut bystander, from) = bystander(&server);
    // An upper bound on one Full: everything the bystander was sent so far, its Full included.
    let full_bytes = server.metric("tickcast_bytes_out_total");
    // Each of these reads its Welcome and then nothing, over a socket with a 4 KB receive buffer.
    let mut stalled: Vec<Client> = (0..STALLED)
        .map(|_| Client::watching_small_rcvbuf(&server, 4096))
        .collect();
    let mut max_queued = 0;
    let first = "tickcast_connections_closed_total{reason=\"first_update_lagging\"}";
    let deadline = Instant::now() + WAIT_MAX;
    // A few at a time get their Full while the budget allows, never take it and are closed; the memory
    // they held frees once their close lingers out, and the next ones get theirs.
    while server.metric(first) < STALLED as u64 {
        assert!(
            Instant::now() < deadline,
            "the stalled readers were never closed"
        );
        bystander.recv();
        max_queued = max_queued.max(server.metric("tickcast_queued_bytes"));
    }
    // Past the budget the Fulls wait for memory to free up instead of piling up: the total stays within
    // the budget plus one Full.
    assert!(
        max_queued <= (BUDGET as u64 + full_bytes),
        "queued {max_queued} bytes against a budget of {BUDGET} and a Full of at most {full_bytes}"
    );
    assert!(server.metric("tickcast_updates_deferred_total") > 0);
    // Waiting for memory is not lagging: nobody was closed for the budget's sake.
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"lagging\"}"),
        0
    );
    // What each reads now is the part of its Full in flight, then its close frame; the earliest ones
    // lingered out (3 s) before this test read them, and were reset without one.
    let mut closes = 0;
    for client in &mut stalled {
        let close = loop {
            match client.ws.read() {
                Ok(Message::Close(Some(frame))) => break Some(frame),
                Ok(_) => {}
                Err(_) => break None,
            }
        };
        if let Some(frame) = close {
            assert_eq!(u16::from(frame.code), 4001, "{}", frame.reason);
            assert_eq!(
                frame.reason.as_str(),
                "too slow: the first update was not taken within 1000 ms"
            );
            closes += 1;
        }
    }
    assert!(closes >= 1, "no stalled reader found its close frame");
    assert_unharmed(&server, &mut bystander, from);
}

#[test]
fn readers_that_never_read_cannot_hide_behind_the_memory_budget() {
    let _serial = one_at_a_time();
    const STALLED: usize = 6;
    // A budget so small that the stalled readers' queues alone keep the server over it: were waiting for
    // the budget an excuse, their lag clocks would never run and they would hold their slots for ever.
    let server = TestServer::start(|c| {
        c.tick_hz = 20;
        c.checksum_every_ticks = 5;
        c.npcs = 300;
        c.queued_bytes_max = 1;
        c.lag_limit_ms = 1_000;
        c.close_linger_ms = 500;
        c.tcp_notsent_lowat_bytes = 4096;
        c.idle_timeout_ms = 120_000;
        c.ping_interval_ms = 60_000;
    });
    let (mut bystander, from) = bystander(&server);
    let _stalled: Vec<Client> = (0..STALLED)
        .map(|_| Client::watching_small_rcvbuf(&server, 4096))
        .collect();
    let deadline = Instant::now() + WAIT_MAX;
    while server.metric("tickcast_slow_consumer_closes_total") < STALLED as u64 {
        assert!(
            Instant::now() < deadline,
            "never-reading clients kept their slots behind the budget"
        );
        bystander.recv();
    }
    assert!(server.metric("tickcast_updates_deferred_total") > 0);
    // The bystander, which reads, kept getting the tick's delta all along.
    assert_unharmed(&server, &mut bystander, from);
}
