//! The teams example (`examples/teams`), served in-process and played by real WebSocket clients: each
//! player's squad appears, inputs are acknowledged through the player's primary entity, a hit that happens
//! while a spectator is skipped as a slow consumer reaches it in the coalesced catch-up (the board's
//! counters are state, not messages), and the match ends with 4007 and the result the last update carries.

mod common;

#[path = "../examples/teams/game.rs"]
mod game;

use std::net::TcpStream;
use std::time::Instant;

use common::{ClientStream, TestServer, WAIT_MAX};
use game::{Board, Ending, Phase, TeamsDiff, TeamsEntity, TeamsInput, TeamsSettings};
use tickcast::proto::{self, ClientMsg, ServerMsg};
use tickcast::sync::Mirror;
use tungstenite::{Message, WebSocket};

type Msg = ServerMsg<TeamsEntity, TeamsDiff>;

/// What a read gave: a message (applied to the mirror), or the server's close.
enum Got {
    Msg(Msg),
    Closed(u16, String),
}

/// A real WebSocket client of the teams game, with a mirror and every board it held, by tick.
struct Player {
    ws: WebSocket<ClientStream>,
    mirror: Mirror<TeamsEntity>,
    entity: Option<u32>,
    /// Ticks of every update applied, in order, with the board as of that tick.
    boards: Vec<(u64, Board)>,
    seq: u32,
}

impl Player {
    fn connect(server: &TestServer, path: &str) -> Player {
        let stream = TcpStream::connect(server.addr).unwrap();
        Self::upgrade(server, path, stream)
    }

    /// Over a socket with a small receive buffer, so that not reading fills it quickly.
    fn connect_small_rcvbuf(server: &TestServer, path: &str) -> Player {
        let stream = common::small_rcvbuf_stream(server, 4096);
        Self::upgrade(server, path, stream)
    }

    fn upgrade(server: &TestServer, path: &str, stream: TcpStream) -> Player {
        stream.set_read_timeout(Some(WAIT_MAX)).unwrap();
        let url = format!("ws://{}{path}", server.addr);
        let (ws, _) = tungstenite::client(url, ClientStream::from(stream)).expect("handshake");
        let mut p = Player {
            ws,
            mirror: Mirror::new(),
            entity: None,
            boards: Vec::new(),
            seq: 0,
        };
        assert!(matches!(p.recv(), ServerMsg::Welcome { .. }));
        p
    }

    fn send(&mut self, msg: &ClientMsg<TeamsInput>) {
        let bytes = proto::encode(msg);
        self.ws.send(Message::Binary(bytes.into())).expect("send");
    }

    fn hello(&mut self, name: &str) -> u32 {
        self.send(&common::hello_msg(name));
        self.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
        self.entity.expect("Joined")
    }

    fn watch(&mut self) {
        self.send(&common::watch_msg());
    }

    fn input(&mut self, input: TeamsInput) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        self.send(&ClientMsg::Input { seq, input });
        seq
    }

    /// The next message or the close; a message is applied to the mirror (a checksum mismatch panics).
    fn next(&mut self) -> Got {
        loop {
            match self.ws.read().expect("read") {
                Message::Binary(bytes) => {
                    let msg: Msg = proto::decode(&bytes).expect("decode server message");
                    if let ServerMsg::Joined { entity, .. } = msg {
                        self.entity = Some(entity);
                    }
                    let moved = self.mirror.apply(msg.clone()).expect("mirror follows");
                    if let Some(tick) = moved {
                        self.boards.push((tick, self.board()));
                    }
                    return Got::Msg(msg);
                }
                Message::Close(Some(frame)) => {
                    return Got::Closed(u16::from(frame.code), frame.reason.to_string())
                }
                Message::Close(None) => return Got::Closed(1005, String::new()),
                _ => {}
            }
        }
    }

    fn recv(&mut self) -> Msg {
        match self.next() {
            Got::Msg(msg) => msg,
            Got::Closed(code, reason) => panic!("closed {code} {reason}"),
        }
    }

    fn recv_until(&mut self, mut pred: impl FnMut(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            assert!(Instant::now() < deadline, "no such message in {WAIT_MAX:?}");
            let msg = self.recv();
            if pred(&msg) {
                return msg;
            }
        }
    }

    fn wait_for(&mut self, mut pred: impl FnMut(&Mirror<TeamsEntity>) -> bool) {
        let deadline = Instant::now() + WAIT_MAX;
        while !pred(&self.mirror) {
            assert!(
                Instant::now() < deadline,
                "mirror condition not met in {WAIT_MAX:?}"
            );
            self.recv();
        }
    }

    /// Reads to the close, applying what comes before it (the final update).
    fn until_close(&mut self) -> (u16, String) {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            assert!(Instant::now() < deadline, "no close in {WAIT_MAX:?}");
            if let Got::Closed(code, reason) = self.next() {
                return (code, reason);
            }
        }
    }

    fn board(&self) -> Board {
        match self.mirror.get(0) {
            Some(TeamsEntity::Board(board)) => *board,
            other => panic!("entity 0 is not the board: {other:?}"),
        }
    }

    /// `(team, seq)` of the player whose primary entity is `entity`.
    fn player(&self, entity: u32) -> Option<(u8, u32)> {
        match self.mirror.get(entity)? {
            TeamsEntity::Player { team, seq } => Some((*team, *seq)),
            _ => None,
        }
    }

    /// The teams of the units `owner` owns.
    fn units_of(&self, owner: u32) -> Vec<u8> {
        self.mirror
            .iter()
            .filter_map(|(_, e)| match *e {
                TeamsEntity::Unit { owner: o, team, .. } if o == owner => Some(team),
                _ => None,
            })
            .collect()
    }
}

const UNITS: usize = 48;

#[test]
fn squads_play_a_hit_reaches_a_skipped_spectator_and_the_match_ends_with_its_result() {
    let server = TestServer::start_types(
        |c| {
            // Every stalled update stays queued (no close for lag or bytes), so the spectator is skipped;
            // the history (82 s at 100 Hz) outlasts the test's waits, so it catches up with a coalesced
            // delta, not a Full.
            c.history_ticks = 8192;
            c.checksum_every_ticks = 10;
            c.send_hwm_bytes = common::BUSY_SEND_HWM;
            c.send_limit_bytes = common::BUSY_SEND_LIMIT;
            c.tcp_notsent_lowat_bytes = 4096;
            c.lag_limit_ms = 120_000;
            c.idle_timeout_ms = 120_000;
            c.ping_interval_ms = 60_000;
        },
        |_| {
            TeamsSettings {
                tick_hz: 100,
                seed: 7,
            }
            .room_types()
        },
    );
    // No match limit the test would wait for: it ends when red concedes.
    let path = format!("/ws/duel?units={UNITS}&score=10000&match_s=3600");
    let mut stalled = Player::connect_small_rcvbuf(&server, &path);
    stalled.watch();
    stalled.recv_until(|m| matches!(m, ServerMsg::Full { .. }));
    // From here the spectator reads nothing until told.

    let mut red = Player::connect(&server, &path);
    let red_id = red.hello("ann");
    let mut blue = Player::connect(&server, &path);
    let blue_id = blue.hello("bo");

    // Each player's primary entity names its team; its squad appears, on its team.
    red.wait_for(|m| m.len() == 1 + 2 * (1 + UNITS));
    assert_eq!(red.player(red_id).map(|p| p.0), Some(0));
    assert_eq!(red.player(blue_id).map(|p| p.0), Some(1));
    assert_eq!(red.units_of(red_id), [0; UNITS]);
    assert_eq!(red.units_of(blue_id), [1; UNITS]);
    blue.wait_for(|m| m.len() == 1 + 2 * (1 + UNITS));
    assert_eq!(blue.units_of(red_id).len(), UNITS);

    // An order is acknowledged through the primary entity's seq.
    let seq = red.input(TeamsInput::Order {
        unit: 0,
        dx: 0,
        dy: 127,
    });
    red.wait_for(
        |m| matches!(m.get(red_id), Some(TeamsEntity::Player { seq: s, .. }) if *s == seq),
    );

    // Both players read until the server has skipped the spectator for a while.
    let deadline = Instant::now() + WAIT_MAX;
    while server.metric("tickcast_updates_skipped_total") < 20 {
        assert!(Instant::now() < deadline, "the spectator was never skipped");
        for _ in 0..10 {
            red.recv();
            blue.recv();
        }
    }
    // From the server's tick now on, every update passes the spectator by: wait for a hit after it.
    red.send(&ClientMsg::Ping { nonce: 1 });
    let ServerMsg::Pong { tick: skipping, .. } =
        red.recv_until(|m| matches!(m, ServerMsg::Pong { .. }))
    else {
        unreachable!()
    };
    let hit = loop {
        assert!(
            Instant::now() < deadline,
            "no hit while the spectator was skipped"
        );
        red.recv();
        blue.recv();
        if let Some(hit) = red.board().last_hit.filter(|h| h.tick > skipping) {
            break hit;
        }
    };
    let hits_then = red.board().hits;

    // The spectator reads again: the hit's tick never reaches it on its own, the coalesced delta it
    // catches up with brings the board with the hit counted, and the checksum agrees.
    stalled.wait_for(|m| m.coalesced > 0 && m.tick() > Some(hit.tick));
    assert_eq!(stalled.mirror.fulls, 1, "caught up with a Full");
    assert!(
        stalled.boards.iter().all(|(tick, _)| *tick != hit.tick),
        "the spectator got tick {} on its own",
        hit.tick
    );
    let seen = stalled.board();
    assert!(seen.hits >= hits_then, "{} < {hits_then}", seen.hits);
    let hit_seen = seen.last_hit.expect("a hit");
    assert!(hit_seen.tick >= hit.tick);
    let checked = stalled.mirror.checksums_verified;
    stalled.wait_for(|m| m.checksums_verified > checked);

    // Red concedes: blue wins, the last update says so to everyone, then the room closes with 4007.
    red.input(TeamsInput::Concede);
    let mut finals = Vec::new();
    for p in [&mut red, &mut blue, &mut stalled] {
        let (code, reason) = p.until_close();
        let board = p.board();
        assert_eq!(
            board.phase,
            Phase::Over {
                winner: Some(1),
                why: Ending::Forfeit
            }
        );
        let result = game::result_text(&board).unwrap();
        assert!(result.starts_with("blue wins"), "{result}");
        assert_eq!((code, reason), (4007, format!("room ended: {result}")));
        finals.push((p.mirror.tick(), board));
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]), "{finals:?}");
    assert!(finals[0].1.hits >= hits_then);
    let ended = server.metric("tickcast_rooms_disposed_total{reason=\"ended\"}");
    assert_eq!(ended, 1);
}
