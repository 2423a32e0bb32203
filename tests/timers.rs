//! Every timer, under a clock that moves only when the test says: the loop runs in the test's own thread,
//! one turn at a time (`Server::turn`), and `ManualClock` jumps. So each deadline is checked on both
//! sides (nothing just before it, the documented answer just after), with no real waiting and no timing
//! assumption. Timers are checked once per tick, so "just after" is one tick after.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{client_frame, close_of, server_frame, UPGRADE, WAIT_MAX};
use tickcast::clock::ManualClock;
use tickcast::proto::{self, ClientMsg, ServerMsg};
use tickcast::sim::arena::{Arena, ArenaDiff, ArenaEntity, ArenaInput, ArenaSettings};
use tickcast::{Config, Server};

type Msg = ServerMsg<ArenaEntity, ArenaDiff>;

const TICK: Duration = Duration::from_millis(50);

/// A server stepped by hand under a manual clock (20 Hz, 4 wanderers).
struct Stepped {
    server: Server<Arena, ManualClock>,
    clock: ManualClock,
}

impl Stepped {
    fn start(adjust: impl FnOnce(&mut Config)) -> Stepped {
        Self::start_with(4, adjust)
    }

    /// With `npcs` wanderers (0: a world that moves only when players do).
    fn start_with(npcs: usize, adjust: impl FnOnce(&mut Config)) -> Stepped {
        let mut cfg = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tick_hz: 20,
            ..Config::default()
        };
        adjust(&mut cfg);
        let clock = ManualClock::new(Instant::now());
        let arena = ArenaSettings {
            npcs,
            seed: 1,
            ..ArenaSettings::default()
        };
        let server = Server::bind_with_clock(cfg, clock.clone(), arena.room_types()).expect("bind");
        Stepped { server, clock }
    }

    /// Turns the loop until `done` holds for what `client` has received (bytes are kept in `seen`), with
    /// the clock standing still; bounded by [`WAIT_MAX`] of real time.
    fn until(&mut self, client: &mut Peer, mut done: impl FnMut(&Peer) -> bool) {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            self.server.turn(Some(Duration::from_millis(5))).unwrap();
            client.take();
            if done(client) {
                return;
            }
            assert!(Instant::now() < deadline, "nothing came: {client:?}");
        }
    }

    /// Moves the clock by `by`, one tick at a time (as a live loop would see it), turning the loop after
    /// each step until nothing is left to do.
    fn advance(&mut self, by: Duration) {
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(TICK);
            self.clock.advance(step);
            left -= step;
            for _ in 0..3 {
                self.server.turn(Some(Duration::ZERO)).unwrap();
            }
        }
    }

    /// Moves the clock a tick at a time until `done` holds for `client`; the ticks it took.
    fn tick_until(&mut self, client: &mut Peer, mut done: impl FnMut(&Peer) -> bool) -> u32 {
        for ticks in 1..=10_000 {
            self.advance(TICK);
            // Let what the server wrote this tick arrive, with the clock standing still.
            for _ in 0..4 {
                self.server.turn(Some(Duration::from_millis(2))).unwrap();
                client.take();
            }
            if done(client) {
                return ticks;
            }
        }
        panic!("not within 10,000 ticks: {client:?}");
    }

    fn connect(&mut self) -> Peer {
        let sock = TcpStream::connect(self.server.local_addr()).unwrap();
        sock.set_nonblocking(true).unwrap();
        Peer {
            sock,
            seen: Vec::new(),
            eof: false,
        }
    }

    /// A connection that upgraded and read its `Welcome`.
    fn upgraded(&mut self) -> Peer {
        let mut peer = self.connect();
        peer.send(UPGRADE);
        self.until(&mut peer, |p| p.frames().1.iter().any(|(op, _)| *op == 0x2));
        peer
    }
}

/// A raw client on a non-blocking socket: what it received so far, and whether the server hung up.
#[derive(Debug)]
struct Peer {
    sock: TcpStream,
    seen: Vec<u8>,
    eof: bool,
}

impl Peer {
    fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.send(&client_frame(true, opcode, payload));
    }

    fn send_msg(&mut self, msg: &ClientMsg<ArenaInput>) {
        self.send_frame(0x2, &proto::encode(msg));
    }

    /// Takes whatever has arrived, without waiting.
    fn take(&mut self) {
        let mut buf = [0u8; 65536];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.eof = true;
                    return;
                }
            }
        }
    }

    /// The HTTP head (if any) and the whole server frames after it: (opcode, payload).
    fn frames(&self) -> (String, Vec<(u8, Vec<u8>)>) {
        let (head, mut rest) = match self.seen.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => (
                String::from_utf8_lossy(&self.seen[..at]).to_string(),
                &self.seen[at + 4..],
            ),
            None => return (String::from_utf8_lossy(&self.seen).to_string(), Vec::new()),
        };
        let mut frames = Vec::new();
        while let Some((opcode, payload, len)) = server_frame(rest) {
            frames.push((opcode, payload.to_vec()));
            rest = &rest[len..];
        }
        (head, frames)
    }

    /// The server's close frame, once it came: code and reason.
    fn close(&self) -> Option<(u16, String)> {
        self.frames()
            .1
            .into_iter()
            .find_map(|(op, p)| (op == 0x8).then(|| close_of(&p)))
    }

    fn pings(&self) -> usize {
        self.frames().1.iter().filter(|(op, _)| *op == 0x9).count()
    }

    /// The server messages received, decoded.
    fn messages(&self) -> Vec<Msg> {
        self.frames()
            .1
            .into_iter()
            .filter(|(op, _)| *op == 0x2)
            .map(|(_, p)| proto::decode(&p).expect("a server message"))
            .collect()
    }

    fn joined(&self) -> Option<(proto::ResumeToken, bool)> {
        self.messages().into_iter().find_map(|m| match m {
            ServerMsg::Joined {
                resume_token,
                resumed,
                ..
            } => Some((resume_token, resumed)),
            _ => None,
        })
    }
}

fn hello(resume: Option<proto::Resume>) -> ClientMsg<ArenaInput> {
    ClientMsg::Hello {
        protocol: proto::PROTOCOL_VERSION,
        name: "p".into(),
        ticket: String::new(),
        resume,
    }
}

fn watch() -> ClientMsg<ArenaInput> {
    ClientMsg::Watch {
        protocol: proto::PROTOCOL_VERSION,
        ticket: String::new(),
    }
}

#[test]
fn a_request_head_not_finished_in_time_gets_408_and_not_a_tick_sooner() {
    let mut h = Stepped::start(|c| c.handshake_timeout_ms = 5_000);
    let mut peer = h.connect();
    peer.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n");
    h.until(&mut peer, |_| true);
    h.advance(Duration::from_millis(5_000));
    peer.take();
    assert!(peer.seen.is_empty() && !peer.eof, "answered early");
    h.advance(TICK);
    h.until(&mut peer, |p| p.eof);
    let (head, _) = peer.frames();
    assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
}

#[test]
fn an_upgraded_connection_must_say_hello_or_watch_by_the_deadline() {
    let mut h = Stepped::start(|c| {
        c.handshake_timeout_ms = 5_000;
        c.ping_interval_ms = 1_000;
        c.idle_timeout_ms = 60_000;
    });
    let mut silent = h.upgraded();
    let mut watcher = h.upgraded();
    watcher.send_msg(&watch());
    h.until(&mut watcher, |_| true);
    // It answers every ping, which keeps the idle timer quiet but not the handshake deadline.
    let mut answered = 0;
    for _ in 0..(4_950 / 50) {
        h.advance(TICK);
        silent.take();
        while answered < silent.pings() {
            silent.send_frame(0xa, b"");
            answered += 1;
        }
    }
    assert!(answered >= 1, "pinged before the deadline");
    assert_eq!(silent.close(), None, "closed early");
    h.advance(TICK * 2);
    h.until(&mut silent, |p| p.close().is_some());
    assert_eq!(
        silent.close(),
        Some((1008, "no Hello or Watch within 5000 ms".to_string()))
    );
    // The one that said Watch at once is still there, receiving.
    watcher.take();
    assert_eq!(watcher.close(), None);
    assert!(watcher
        .messages()
        .iter()
        .any(|m| matches!(m, ServerMsg::Full { .. })));
}

#[test]
fn a_quiet_connection_is_pinged_then_closed_while_one_that_answers_stays() {
    let mut h = Stepped::start(|c| {
        c.ping_interval_ms = 1_000;
        c.idle_timeout_ms = 3_000;
    });
    let (mut silent, mut answering) = (h.upgraded(), h.upgraded());
    for peer in [&mut silent, &mut answering] {
        peer.send_msg(&watch());
    }
    h.until(&mut answering, |_| true);
    // Quiet for the ping interval (plus a tick, as timers go by ticks): both are pinged.
    h.advance(Duration::from_millis(1_000) + TICK);
    h.until(&mut silent, |p| p.pings() == 1);
    h.until(&mut answering, |p| p.pings() == 1);
    answering.send_frame(0xa, b"");
    h.until(&mut answering, |_| true);
    // Up to the idle timeout, nobody is closed.
    h.advance(Duration::from_millis(2_000) - TICK);
    silent.take();
    assert_eq!(silent.close(), None, "closed before the idle timeout");
    h.advance(TICK * 2);
    h.until(&mut silent, |p| p.close().is_some());
    assert_eq!(silent.close(), Some((4003, "idle for 3000 ms".to_string())));
    // The one that answered was heard 1,050 ms in: it is pinged again, and stays.
    answering.take();
    assert_eq!(answering.close(), None);
    assert_eq!(answering.pings(), 2);
}

#[test]
fn a_frame_left_half_sent_is_closed_at_the_frame_deadline_and_not_before() {
    let mut h = Stepped::start(|c| {
        c.frame_timeout_ms = 2_000;
        c.idle_timeout_ms = 60_000;
        c.ping_interval_ms = 30_000;
    });
    let mut peer = h.upgraded();
    peer.send_msg(&watch());
    // The header of a 100-byte binary frame, its mask, and 10 of its bytes.
    peer.send(&[0x82, 0x80 | 100, 0, 0, 0, 0]);
    peer.send(&[0; 10]);
    h.until(&mut peer, |_| true);
    // The server reads those bytes within a tick of their sending: the deadline runs from then.
    h.advance(Duration::from_millis(2_000) - TICK);
    peer.take();
    assert_eq!(peer.close(), None, "closed early");
    let ticks = h.tick_until(&mut peer, |p| p.close().is_some());
    assert!(ticks <= 3, "closed {ticks} ticks after the deadline");
    assert_eq!(
        peer.close(),
        Some((1008, "frame not completed within 2000 ms".to_string()))
    );
}

#[test]
fn after_its_close_frame_a_connection_lingers_for_the_clients_close_then_is_dropped() {
    let mut h = Stepped::start(|c| {
        c.handshake_timeout_ms = 1_000;
        c.close_linger_ms = 2_000;
    });
    let mut peer = h.upgraded();
    // Closed (no Hello) at a tick we see: the linger runs from that tick.
    h.tick_until(&mut peer, |p| p.close().is_some());
    // The client never answers the close (it reads the server's EOF and keeps its end open): the server
    // waits out the linger, then lets the socket go.
    let open = |h: &Stepped| h.server.gauges().connections_open;
    h.advance(Duration::from_millis(2_000) - TICK);
    assert_eq!(open(&h), 1, "dropped before the linger was over");
    h.advance(TICK * 2);
    assert_eq!(open(&h), 0, "still held after the linger");
}

#[test]
fn a_dropped_player_is_resumed_within_its_grace_period_and_joins_anew_after_it() {
    let mut h = Stepped::start(|c| c.resume_grace_ms = 10_000);
    let mut first = h.upgraded();
    first.send_msg(&hello(None));
    h.until(&mut first, |p| p.joined().is_some());
    let (token, _) = first.joined().unwrap();
    // Gone without a close frame: the player waits to be resumed.
    drop(first);
    h.advance(Duration::from_millis(9_900));
    let mut back = h.upgraded();
    back.send_msg(&hello(Some(proto::Resume { token, tick: 0 })));
    h.until(&mut back, |p| p.joined().is_some());
    let (token, resumed) = back.joined().unwrap();
    assert!(resumed, "resumed inside the grace period");
    // Again, and this time past the grace period: the token resumes nothing.
    drop(back);
    h.advance(Duration::from_millis(10_000) + TICK * 2);
    let mut late = h.upgraded();
    late.send_msg(&hello(Some(proto::Resume { token, tick: 0 })));
    h.until(&mut late, |p| p.joined().is_some());
    assert_eq!(late.joined().map(|(_, resumed)| resumed), Some(false));
}

#[test]
fn an_empty_room_is_disposed_at_its_idle_deadline_and_not_a_tick_sooner() {
    const IDLE: Duration = Duration::from_millis(1_000);
    let mut h = Stepped::start(|c| {
        c.room_idle_ms = IDLE.as_millis() as u64;
        c.resume_grace_ms = 0;
    });
    let upgrade = std::str::from_utf8(UPGRADE)
        .unwrap()
        .replacen("/ws", "/ws/brief", 1);
    let mut peer = h.connect();
    peer.send(upgrade.as_bytes());
    h.until(&mut peer, |p| p.frames().1.iter().any(|(op, _)| *op == 0x2));
    peer.send_msg(&hello(None));
    h.until(&mut peer, |p| p.joined().is_some());
    assert_eq!(h.server.gauges().rooms_open, 2);
    // The player goes (no resume): the room is empty from the next timer tick on.
    drop(peer);
    let t0 = Instant::now();
    while h.server.gauges().players > 0 {
        h.server.turn(Some(Duration::from_millis(5))).unwrap();
        assert!(
            t0.elapsed() < WAIT_MAX,
            "the dropped player was never reaped"
        );
    }
    h.advance(IDLE - TICK);
    assert_eq!(
        h.server.gauges().rooms_open,
        2,
        "disposed before --room-idle-ms"
    );
    h.advance(TICK * 2);
    assert_eq!(
        h.server.gauges().rooms_open,
        1,
        "still open past --room-idle-ms"
    );
    assert_eq!(h.server.metrics().rooms_disposed_idle, 1);
}

/// Past `--timer-checks-per-pass-min` connections a timer pass checks only a share of them, and yet
/// every deadline is met within the sweep (250 ms): here 40 unfinished request heads, at most 4 checked a
/// tick, are all answered 408 once their time is up, not all in the first tick and none before.
#[test]
fn past_the_checks_per_pass_every_connection_is_still_timed_out_within_the_sweep() {
    let mut h = Stepped::start(|c| {
        c.handshake_timeout_ms = 5_000;
        c.timer_checks_per_pass_min = 4;
    });
    let mut peers: Vec<Peer> = (0..40).map(|_| h.connect()).collect();
    for p in &mut peers {
        p.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n");
    }
    let mut first = peers.pop().unwrap();
    h.until(&mut first, |_| true);
    peers.push(first);
    h.advance(Duration::from_millis(5_000));
    let answered = |h: &mut Stepped, peers: &mut Vec<Peer>| {
        for _ in 0..4 {
            h.server.turn(Some(Duration::from_millis(2))).unwrap();
        }
        peers.iter_mut().for_each(Peer::take);
        peers.iter().filter(|p| p.eof).count()
    };
    assert_eq!(answered(&mut h, &mut peers), 0, "answered early");
    h.advance(TICK);
    let after_one_tick = answered(&mut h, &mut peers);
    assert!(
        after_one_tick < peers.len(),
        "all {after_one_tick} checked in one pass"
    );
    h.advance(Duration::from_millis(250));
    assert_eq!(
        answered(&mut h, &mut peers),
        peers.len(),
        "a deadline missed the sweep"
    );
    for p in &peers {
        assert!(
            p.frames().0.starts_with("HTTP/1.1 408 "),
            "{:?}",
            p.frames().0
        );
    }
}

/// `--skip-unchanged-updates` and a late turn: the loop runs two ticks at once, the first spawns a
/// player's entity and the second changes nothing; the watcher must still be sent the spawn (the world's
/// last change counts, not the last tick's delta). Found by review: before, it was skipped for good.
#[test]
fn with_unchanged_updates_skipped_a_change_in_a_catch_up_tick_still_reaches_the_watcher() {
    let mut h = Stepped::start_with(0, |c| {
        c.skip_unchanged_updates = true;
        c.checksum_every_ticks = 0;
    });
    let mut watcher = h.upgraded();
    watcher.send_msg(&watch());
    h.tick_until(&mut watcher, |p| {
        p.messages()
            .iter()
            .any(|m| matches!(m, ServerMsg::Full { .. }))
    });
    let mut player = h.upgraded();
    player.send_msg(&hello(None));
    h.until(&mut player, |p| p.joined().is_some());
    let before = watcher.messages().len();
    // Two ticks due in one turn: the spawn lands in the first, the second changes nothing.
    h.clock.advance(TICK * 2);
    for _ in 0..4 {
        h.server.turn(Some(Duration::from_millis(2))).unwrap();
        watcher.take();
    }
    h.tick_until(&mut watcher, |p| p.messages().len() > before);
    let spawned = watcher.messages()[before..].iter().any(|m| {
        matches!(m, ServerMsg::Delta { set, .. } | ServerMsg::Full { entities: set, .. } if !set.is_empty())
    });
    assert!(
        spawned,
        "the watcher never got the spawn: {:?}",
        &watcher.messages()[before..]
    );
}
