//! Rooms through real sockets: many matches in one process, addressed by the upgrade URL, each with its own
//! world, players, caps and life (docs/PROTOCOL.md, "Rooms").

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::{Client, Msg, TestServer, WAIT_MAX};
use tickcast::proto::{self, ServerMsg};
use tickcast::sim::arena::{Arena, ArenaEntity, ArenaInput};
use tickcast::sim::{Game, Joining, PlayerId, RoomControl, RoomType, RoomTypes};
use tickcast::sync::{EntityId, World};

/// `GET path` as JSON.
fn json(server: &TestServer, path: &str) -> serde_json::Value {
    let (status, body) = server.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Waits (bounded by WAIT_MAX) until `GET /rooms/NAME` says `done`.
fn wait_room(server: &TestServer, name: &str, done: impl Fn(u16, &str) -> bool) {
    let t0 = Instant::now();
    loop {
        let (status, body) = server.get(&format!("/rooms/{name}"));
        if done(status, &body) {
            return;
        }
        assert!(
            t0.elapsed() < WAIT_MAX,
            "room {name} never got there: {status} {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The ids of the entities a client's mirror holds.
fn ids(c: &Client) -> BTreeSet<u32> {
    c.mirror.iter().map(|(id, _)| id).collect()
}

#[test]
fn two_rooms_never_see_each_others_entities_and_each_checksum_is_its_own() {
    let server = TestServer::start(|c| {
        c.npcs = 0;
        c.tick_hz = 50;
        c.checksum_every_ticks = 2;
    });
    let mut red = Client::connect_at(&server, "/ws/red?npcs=3");
    let mut blue = Client::connect_at(&server, "/ws/blue");
    assert_eq!((red.room.as_str(), blue.room.as_str()), ("red", "blue"));
    let (r, b) = (red.hello("r"), blue.hello("b"));
    red.wait_for(|m| m.len() == 4);
    blue.wait_for(|m| m.len() == 1);
    red.verify_checksums(3);
    blue.verify_checksums(3);
    // Each world holds its own entities only: red's three wanderers and its player, blue's player.
    assert_eq!(ids(&red).len(), 4);
    assert!(ids(&red).contains(&r));
    assert_eq!(ids(&blue), BTreeSet::from([b]));
    let mut plain = Client::connect(&server);
    assert_eq!(plain.room, "default", "plain /ws is the default room");
    plain.hello("d");
    plain.wait_for(|m| m.len() == 1);
    blue.verify_checksums(2);
    assert_eq!(
        ids(&blue),
        BTreeSet::from([b]),
        "a join elsewhere changes nothing here"
    );
}

#[test]
fn concurrent_first_joins_of_one_name_create_exactly_one_room() {
    let server = TestServer::start(|c| c.npcs = 0);
    let addr = server.addr;
    let joined: Vec<(String, u32)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let server = TestServer::external(addr);
                s.spawn(move || {
                    let mut c = Client::connect_at(&server, "/ws/race");
                    let entity = c.hello(&format!("p{i}"));
                    c.wait_for(|m| !m.is_empty());
                    (c.room.clone(), entity)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(joined.iter().all(|(room, _)| room == "race"));
    let entities: BTreeSet<u32> = joined.iter().map(|(_, e)| *e).collect();
    assert_eq!(entities.len(), 8, "eight players of one world");
    let rooms = json(&server, "/rooms");
    let names: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "race"]);
    assert_eq!(server.metric("tickcast_rooms_created_total"), 2);
    assert_eq!(server.metric("tickcast_rooms_open"), 2);
}

/// The arena with caps, a fast room type, and a referee: input `dx = 100` ends the room, `dx = -100` gets
/// the sender kicked, at the next tick.
fn referee_types(max_players: usize, max_spectators: usize) -> RoomTypes<Referee> {
    let make = |world: &mut World<ArenaEntity>, _: &tickcast::sim::Opening<'_>| {
        Ok(Referee {
            arena: Arena::new(world, 0, 1),
            end: false,
            kicks: Vec::new(),
        })
    };
    RoomTypes::new(
        RoomType::new("arena", make)
            .max_players(max_players)
            .max_spectators(max_spectators),
    )
    .with(RoomType::new("fast", make).tick_hz(40))
}

struct Referee {
    arena: Arena,
    end: bool,
    kicks: Vec<PlayerId>,
}

impl Game for Referee {
    type Input = ArenaInput;
    type State = ArenaEntity;

    fn join(
        &mut self,
        world: &mut World<ArenaEntity>,
        player: PlayerId,
        joining: Joining<'_>,
    ) -> Option<EntityId> {
        self.arena.join(world, player, joining)
    }

    fn leave(&mut self, world: &mut World<ArenaEntity>, player: PlayerId) {
        self.arena.leave(world, player)
    }

    fn input(&mut self, player: PlayerId, seq: u32, input: ArenaInput) {
        match input.dx {
            100 => self.end = true,
            -100 => self.kicks.push(player),
            _ => self.arena.input(player, seq, input),
        }
    }

    fn step(
        &mut self,
        world: &mut World<ArenaEntity>,
        tick: u64,
        dt_s: f32,
        room: &mut RoomControl,
    ) {
        self.arena.step(world, tick, dt_s, room);
        for player in self.kicks.drain(..) {
            room.kick(player, "asked for it");
        }
        if self.end {
            room.end("match over");
        }
    }
}

#[test]
fn a_full_room_refuses_a_hello_and_a_watch_with_4006_while_another_room_accepts() {
    let server = TestServer::start_types(|c| c.npcs = 0, |_| referee_types(2, 1));
    let mut a = Client::connect_at(&server, "/ws/small");
    let mut b = Client::connect_at(&server, "/ws/small");
    a.hello("a");
    b.hello("b");
    let mut third = Client::connect_at(&server, "/ws/small");
    third.send(&tickcast::proto::ClientMsg::Hello {
        protocol: proto::PROTOCOL_VERSION,
        name: "c".into(),
        ticket: String::new(),
        resume: None,
    });
    assert_eq!(
        third.expect_close(),
        (4006, "room is full: 2 players".into())
    );
    let mut eye = Client::connect_at(&server, "/ws/small");
    eye.watch();
    let mut second_eye = Client::connect_at(&server, "/ws/small");
    second_eye.send(&tickcast::proto::ClientMsg::Watch {
        protocol: proto::PROTOCOL_VERSION,
        ticket: String::new(),
    });
    assert_eq!(
        second_eye.expect_close(),
        (4006, "room is full: 1 spectators".into())
    );
    let mut elsewhere = Client::connect_at(&server, "/ws/other");
    elsewhere.hello("c");
    elsewhere.wait_for(|m| m.len() == 1);
    let small = json(&server, "/rooms/small");
    assert_eq!(
        (small["players"].as_u64(), small["spectators"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        (
            small["max_players"].as_u64(),
            small["max_spectators"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"room_full\"}"),
        2
    );
}

#[test]
fn the_game_kicks_a_player_with_4008_and_ends_its_room_with_4007_after_the_final_update() {
    let server = TestServer::start_types(|c| c.npcs = 0, |_| referee_types(8, 8));
    let mut a = Client::connect_at(&server, "/ws/match");
    let mut b = Client::connect_at(&server, "/ws/match");
    let mut eye = Client::connect_at(&server, "/ws/match");
    let (ea, eb) = (a.hello("a"), b.hello("b"));
    eye.watch();
    eye.wait_for(|m| m.len() == 2);
    let token = b.resume_token.unwrap();
    b.input(-100, 0);
    assert_eq!(b.expect_close(), (4008, "kicked: asked for it".into()));
    eye.wait_for(|m| m.get(eb).is_none());
    // Kicked is gone: its token resumes nothing, a new player joins in its place.
    let mut back = Client::connect_at(&server, "/ws/match");
    back.hello_resuming(token, 0, "");
    back.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    assert_eq!(back.resumed, Some(false));
    a.input(100, 0);
    for c in [&mut a, &mut back, &mut eye] {
        let (code, reason) = c.expect_close();
        assert_eq!((code, reason.as_str()), (4007, "room ended: match over"));
    }
    assert!(
        eye.mirror.get(ea).is_some(),
        "the final update came before the close"
    );
    // The name is free at once: the next upgrade creates a fresh room, ticks from 0 again.
    let (status, _) = server.get("/rooms/match");
    assert_eq!(status, 404);
    let fresh = Client::connect_at(&server, "/ws/match");
    assert_eq!(fresh.room, "match");
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"kicked\"}"),
        1
    );
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"room_ended\"}"),
        3
    );
}

#[test]
fn an_empty_room_is_disposed_after_room_idle_ms_and_its_name_can_be_created_anew() {
    let server = TestServer::start(|c| {
        c.npcs = 0;
        c.room_idle_ms = 100;
        c.resume_grace_ms = 300;
    });
    let mut c = Client::connect_at(&server, "/ws/brief");
    c.hello("a");
    c.wait_for(|m| m.len() == 1);
    // Dropped without a goodbye: the detached player keeps the room alive through its grace period.
    drop(c);
    wait_room(&server, "brief", |status, body| {
        status == 200 && body.contains("\"players_detached\":1")
    });
    wait_room(&server, "brief", |status, _| status == 404);
    assert_eq!(
        server.metric("tickcast_rooms_disposed_total{reason=\"idle\"}"),
        1
    );
    let again = Client::connect_at(&server, "/ws/brief");
    assert_eq!(again.room, "brief");
    assert_eq!(server.metric("tickcast_rooms_created_total"), 3);
    // The default room is never disposed.
    assert_eq!(server.get("/rooms/default").0, 200);
}

#[test]
fn a_resume_lands_in_the_room_of_its_token_and_means_nothing_in_another() {
    let server = TestServer::start(|c| c.npcs = 0);
    let mut c = Client::connect_at(&server, "/ws/home");
    let entity = c.hello("a");
    c.wait_for(|m| m.len() == 1);
    let token = c.resume_token.unwrap();
    let mut away = Client::connect_at(&server, "/ws/away");
    away.hello_resuming(token, 0, "");
    away.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    assert_eq!(away.resumed, Some(false), "another room's token joins anew");
    let mut back = Client::connect_at(&server, "/ws/home");
    back.hello_resuming(token, 0, "");
    back.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    assert_eq!((back.resumed, back.entity), (Some(true), Some(entity)));
    assert_eq!(c.expect_close().0, 4005, "the old connection is replaced");
}

#[test]
fn upgrades_refused_for_their_room_get_the_documented_status_and_reason() {
    let server = TestServer::start_types(
        |c| {
            c.npcs = 0;
            c.max_rooms = 3;
        },
        |_| referee_types(8, 8),
    );
    let refusals = [
        ("/ws/a.b", 400, "bad room name: 1 to 64 of A-Z a-z 0-9 _ -"),
        ("/ws/x?type=poker", 400, "unknown room type: poker"),
        (
            "/ws/default?type=fast",
            409,
            "room default is of type arena, not fast",
        ),
    ];
    for (path, status, why) in refusals {
        let (got, body) = server.upgrade_answer(path);
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(why), "{path}: {body:?} should say {why:?}");
    }
    let fast = Client::connect_at(&server, "/ws/quick?type=fast");
    assert_eq!(fast.tick_hz, 40, "a room type's own tick rate");
    let _one_more = Client::connect_at(&server, "/ws/third");
    let (status, body) = server.upgrade_answer("/ws/fourth");
    assert_eq!(status, 503);
    assert!(body.contains("room limit reached: 3 rooms"), "{body}");
    assert_eq!(server.metric("tickcast_room_limit_refusals_total"), 1);
    // The bad name is refused by the routes (an http_error), before any room is looked at.
    assert_eq!(server.metric("tickcast_rooms_refused_total"), 3);
}

#[test]
fn with_creation_off_only_the_default_room_exists_and_arena_options_are_checked() {
    let off = TestServer::start(|c| c.room_creation = tickcast::config::RoomCreation::Off);
    let (status, body) = off.upgrade_answer("/ws/mine");
    assert_eq!(
        (status, body.trim_end()),
        (404, "404 Not Found: no room named mine")
    );
    assert_eq!(Client::connect(&off).room, "default");
    let open = TestServer::start(|_| {});
    let (status, body) = open.upgrade_answer("/ws/crowd?npcs=999");
    assert_eq!(status, 400);
    assert!(
        body.contains("room options refused: npcs must be 0 to 64"),
        "{body}"
    );
}

#[test]
fn the_room_list_matches_what_clients_see_and_pages() {
    let server = TestServer::start(|c| c.npcs = 0);
    let mut players = Vec::new();
    for (room, n) in [("b", 2), ("a", 1), ("c", 3)] {
        for i in 0..n {
            let mut c = Client::connect_at(&server, &format!("/ws/{room}"));
            c.hello(&format!("{room}{i}"));
            players.push(c);
        }
    }
    let mut eye = Client::connect_at(&server, "/ws/c");
    eye.watch();
    eye.wait_for(|m| m.len() == 3);
    let page = json(&server, "/rooms?limit=2");
    let rooms = page["rooms"].as_array().unwrap();
    let names: Vec<&str> = rooms.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(page["next"], "b");
    let rest = json(&server, "/rooms?limit=2&after=b");
    let rest_rooms = rest["rooms"].as_array().unwrap();
    let names: Vec<&str> = rest_rooms
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "default"]);
    assert_eq!(rest["next"], serde_json::Value::Null);
    let c = json(&server, "/rooms/c");
    assert_eq!(c["type"], "arena");
    assert_eq!(
        (c["players"].as_u64(), c["spectators"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(c["tick_hz"].as_u64(), Some(u64::from(eye.tick_hz)));
    assert!(c["tick"].as_u64().unwrap() >= eye.mirror.tick().unwrap());
    assert_eq!(server.get("/rooms/nope").0, 404);
    assert_eq!(server.metric("tickcast_players"), 6);
}

#[test]
fn a_stalled_reader_in_one_room_does_not_delay_another_rooms_ticks() {
    let server = TestServer::start(|c| {
        c.npcs = 0;
        c.tick_hz = 50;
        c.send_hwm_bytes = 4096;
        c.tcp_notsent_lowat_bytes = 4096;
    });
    let mut stalled = Client::watching_small_rcvbuf_at(&server, "/ws/busy?npcs=64", 4096);
    stalled.recv_until(|m| matches!(m, Msg::Full { .. }));
    let mut calm = Client::connect_at(&server, "/ws/calm");
    calm.hello("c");
    calm.wait_for(|m| m.len() == 1);
    let from = calm.ticks.len();
    let until = calm.mirror.tick().unwrap() + 100;
    calm.recv_until(|m| matches!(m, Msg::Delta { tick, .. } if *tick >= until));
    calm.assert_every_tick_since(from);
    assert!(
        server.metric("tickcast_updates_skipped_total") > 0,
        "the stalled reader was skipped"
    );
}

#[test]
fn a_drain_closes_every_room_with_1001_after_its_final_update() {
    let server = TestServer::start(|c| c.npcs = 0);
    let mut clients: Vec<Client> = ["x", "y", "z"]
        .iter()
        .map(|room| {
            let mut c = Client::connect_at(&server, &format!("/ws/{room}"));
            c.hello(room);
            c.wait_for(|m| m.len() == 1);
            c
        })
        .collect();
    let metrics = server.stop();
    for c in &mut clients {
        let (code, reason) = c.expect_close();
        assert_eq!(
            (code, reason.as_str()),
            (1001, "server shutting down"),
            "room {}",
            c.room
        );
    }
    assert_eq!(
        metrics.closed_count(tickcast::metrics::CloseReason::Shutdown),
        3
    );
}

#[test]
fn the_game_ending_the_default_room_opens_it_anew_so_plain_ws_always_has_a_room() {
    let server = TestServer::start_types(|c| c.npcs = 0, |_| referee_types(8, 8));
    let mut a = Client::connect(&server);
    a.hello("a");
    a.wait_for(|m| m.len() == 1);
    a.input(100, 0);
    assert_eq!(a.expect_close(), (4007, "room ended: match over".into()));
    let mut b = Client::connect(&server);
    assert_eq!(b.room, "default");
    b.hello("b");
    b.wait_for(|m| m.len() == 1);
    assert_eq!(server.metric("tickcast_rooms_open"), 1);
    assert_eq!(
        server.metric("tickcast_rooms_disposed_total{reason=\"ended\"}"),
        1
    );
}

#[test]
fn one_address_holds_at_most_max_rooms_per_ip_and_a_room_nobody_entered_goes_when_it_empties() {
    let server = TestServer::start(|c| {
        c.npcs = 0;
        c.max_rooms_per_ip = 2;
        // Far longer than any wait here: a room that goes does so because nobody entered it.
        c.room_idle_ms = 600_000;
    });
    let mut one = Client::connect_at(&server, "/ws/one");
    one.hello("a");
    let two = Client::connect_at(&server, "/ws/two");
    let (status, body) = server.upgrade_answer("/ws/three");
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("too many rooms created from this address: 2 open"),
        "{body}"
    );
    // Joining an existing room is not creating one.
    let _also_one = Client::connect_at(&server, "/ws/one");
    // Room two was never entered (no Hello, no Watch): it goes as its only connection does.
    drop(two);
    wait_room(&server, "two", |status, _| status == 404);
    let three = Client::connect_at(&server, "/ws/three");
    assert_eq!(three.room, "three");
    assert_eq!(server.get("/rooms/one").0, 200, "an entered room stays");
}

#[test]
fn detached_max_bounds_the_players_waiting_to_resume_over_every_room() {
    let server = TestServer::start(|c| {
        c.npcs = 0;
        c.detached_max = 1;
        c.resume_grace_ms = 600_000;
    });
    for room in ["p", "q"] {
        let mut c = Client::connect_at(&server, &format!("/ws/{room}"));
        c.hello(room);
        c.wait_for(|m| m.len() == 1);
        // Dropped without a goodbye: detached, waiting to resume.
    }
    let t0 = Instant::now();
    while server.metric("tickcast_sessions_expired_total") < 1 {
        assert!(t0.elapsed() < WAIT_MAX, "nobody left past --detached-max");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(server.metric("tickcast_players_detached"), 1);
    assert_eq!(server.metric("tickcast_sessions_expired_total"), 1);
}

#[test]
fn room_creation_by_ticket_needs_tickets() {
    let cfg = tickcast::Config {
        room_creation: tickcast::config::RoomCreation::Ticket,
        ..tickcast::Config::default()
    };
    let why = cfg.validate().unwrap_err();
    assert!(
        why.contains("--room-creation ticket needs --ticket-secret-file"),
        "{why}"
    );
}

/// The head of the answer to `GET path` with `Origin: origin`.
fn head_with_origin(server: &TestServer, path: &str, origin: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(WAIT_MAX)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split("\r\n\r\n").next().unwrap().to_string()
}

#[test]
fn a_page_of_another_origin_may_read_the_room_list_as_allow_origin_says() {
    let open = TestServer::start(|_| {});
    let head = head_with_origin(&open, "/rooms", "https://game.example");
    assert!(
        head.contains("\r\nAccess-Control-Allow-Origin: *"),
        "{head}"
    );
    let head = head_with_origin(&open, "/rooms/none", "https://game.example");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(
        head.contains("\r\nAccess-Control-Allow-Origin: *"),
        "{head}"
    );
    let listed = TestServer::start(|c| c.allowed_origins = vec!["https://game.example".into()]);
    let head = head_with_origin(&listed, "/rooms/default", "https://game.example");
    assert!(
        head.contains("\r\nAccess-Control-Allow-Origin: https://game.example\r\nVary: Origin"),
        "{head}"
    );
    let head = head_with_origin(&listed, "/rooms", "https://elsewhere.example");
    assert!(!head.contains("Access-Control-Allow-Origin"), "{head}");
}
