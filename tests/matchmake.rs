//! `POST /matchmake` and the backplane across real processes: three servers in one cluster on a real
//! `redis-server` (scripts/test.sh installs it), each with its `--public-url` on its own loopback port.
//! Players matchmade on any process land in one room and see each other; new rooms spread over the
//! processes; racing creates end with one room; seat tickets hold only where they were meant; a chat line
//! said on one process is shown on the others. And the same endpoint on a standalone process.

mod common;

use std::time::{Duration, Instant};

use common::redis::{cluster_secret, free_port, spawn_binary, Redis, CLUSTER_SECRET};
use common::{Client, TestServer, WAIT_MAX};
use serde_json::Value;
use tickcast::sim::arena::ArenaSettings;
use tickcast::ticket;

/// Process `id` of the cluster on `redis`, arena rooms capped at `max_players`.
fn process(redis: &Redis, id: &str, max_players: usize) -> TestServer {
    let port = free_port();
    let (redis_url, id) = (redis.url(), id.to_string());
    TestServer::start_types(
        move |c| {
            c.listen = format!("127.0.0.1:{port}").parse().unwrap();
            c.npcs = 0;
            c.redis = Some(redis_url);
            c.public_url = Some(format!("ws://127.0.0.1:{port}"));
            c.process_id = Some(id);
            c.cluster_secret_file = Some(cluster_secret());
            c.cluster_ttl_ms = 1_000;
        },
        move |cfg| {
            ArenaSettings {
                npcs: cfg.npcs,
                room_max_players: max_players,
                ..ArenaSettings::default()
            }
            .room_types()
        },
    )
}

/// Three processes, `a`, `b` and `c`, each registered in the directory.
fn three(redis: &Redis) -> Vec<TestServer> {
    let procs: Vec<TestServer> = ["a", "b", "c"]
        .iter()
        .map(|id| process(redis, id, 4096))
        .collect();
    for id in ["a", "b", "c"] {
        redis.wait_for(&format!("tickcast:process:{id}"), |v| v.is_some());
    }
    procs
}

/// Asks `server` to matchmake with the JSON `body`: the status and the JSON answer.
fn matchmake(server: &TestServer, body: &str) -> (u16, Value) {
    let (status, text) = server.post("/matchmake", body);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, json)
}

/// The placement `server` answers for `body`, which must succeed.
fn placed(server: &TestServer, body: &str) -> Value {
    let (status, answer) = matchmake(server, body);
    assert_eq!(status, 200, "{answer}");
    answer
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_string()
}

/// The loopback server `connect` points at (its host and port).
fn server_of(answer: &Value) -> TestServer {
    let connect = text(answer, "connect");
    let host = connect
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .unwrap();
    TestServer::external(host.parse().unwrap())
}

#[test]
fn players_matchmade_on_any_process_land_in_one_room_and_see_each_other() {
    let redis = Redis::start();
    let procs = three(&redis);
    let answers: Vec<Value> = procs
        .iter()
        .map(|p| placed(p, r#"{"room":"duel-1"}"#))
        .collect();
    let owner = text(&answers[0], "process");
    for answer in &answers {
        assert_eq!(text(answer, "process"), owner, "{answer}");
        assert_eq!(text(answer, "room"), "duel-1");
        assert!(text(answer, "ticket").starts_with("s1."), "{answer}");
        let connect = text(answer, "connect");
        assert!(connect.contains("/ws/duel-1?ticket=s1."), "{connect}");
    }
    let mut clients: Vec<Client> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut c = Client::connect_url(&text(a, "connect"));
            assert_eq!(c.room, "duel-1");
            c.hello(&format!("p{i}"));
            c
        })
        .collect();
    for c in &mut clients {
        c.wait_for(|m| m.len() == 3);
        c.verify_checksums(2);
    }
    let (status, room) = server_of(&answers[0]).get("/rooms/duel-1");
    assert_eq!(status, 200);
    assert!(room.contains("\"players\":3"), "{room}");
    redis.wait_for("tickcast:room:duel-1", |v| v == Some(owner.as_str()));
}

#[test]
fn new_rooms_spread_over_the_processes() {
    let redis = Redis::start();
    let procs = three(&redis);
    let owners: std::collections::BTreeSet<String> = (0..6)
        .map(|i| {
            text(
                &placed(&procs[0], &format!(r#"{{"room":"spread-{i}"}}"#)),
                "process",
            )
        })
        .collect();
    assert_eq!(
        owners.len(),
        3,
        "six new rooms asked of one process: {owners:?}"
    );
}

#[test]
fn racing_matchmakers_place_one_name_on_one_process() {
    let redis = Redis::start();
    let procs = three(&redis);
    let owners: Vec<String> = std::thread::scope(|s| {
        let asks: Vec<_> = (0..9)
            .map(|i| {
                let p = &procs[i % 3];
                s.spawn(move || text(&placed(p, r#"{"room":"race-1"}"#), "process"))
            })
            .collect();
        asks.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert!(owners.iter().all(|o| *o == owners[0]), "{owners:?}");
}

#[test]
fn a_seat_ticket_admits_only_to_its_room_on_its_process_until_it_expires() {
    let redis = Redis::start();
    let procs = three(&redis);
    let answer = placed(&procs[0], r#"{"room":"seat-1","player":"ann"}"#);
    let (owner, seat) = (text(&answer, "process"), text(&answer, "ticket"));
    assert!(
        seat.starts_with(&format!("s1.ann.seat-1.{owner}.")),
        "{seat}"
    );
    let home = server_of(&answer);
    let elsewhere = procs
        .iter()
        .find(|p| p.addr != home.addr)
        .expect("another process");
    let refused = elsewhere.upgrade_answer(&format!("/ws/seat-1?ticket={seat}"));
    assert_eq!(refused.0, 401, "{refused:?}");
    assert!(
        refused
            .1
            .contains(&format!("seat ticket is for process {owner}")),
        "{refused:?}"
    );
    let refused = home.upgrade_answer(&format!("/ws/seat-2?ticket={seat}"));
    assert_eq!(refused.0, 401);
    assert!(
        refused.1.contains("ticket is for room seat-1"),
        "{refused:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = ticket::issue_seat(CLUSTER_SECRET.as_bytes(), "ann", "seat-1", &owner, now - 1);
    let refused = home.upgrade_answer(&format!("/ws/seat-1?ticket={expired}"));
    assert_eq!(refused, (401, "401 Unauthorized: ticket expired\n".into()));
    let forged = ticket::issue_seat(
        b"a guess at the cluster secret",
        "ann",
        "seat-1",
        &owner,
        now + 9,
    );
    let refused = home.upgrade_answer(&format!("/ws/seat-1?ticket={forged}"));
    assert_eq!(refused.0, 401);
    assert!(
        refused.1.contains("invalid ticket signature"),
        "{refused:?}"
    );
    // The seat itself is good where it was meant.
    let mut c = Client::connect_url(&text(&answer, "connect"));
    c.hello("ann");
    c.wait_for(|m| m.len() == 1);
}

#[test]
fn any_room_of_a_type_fills_before_a_new_one_opens() {
    let redis = Redis::start();
    let procs: Vec<TestServer> = ["a", "b"].iter().map(|id| process(&redis, id, 2)).collect();
    for id in ["a", "b"] {
        redis.wait_for(&format!("tickcast:process:{id}"), |v| v.is_some());
    }
    let answers: Vec<Value> = (0..3)
        .map(|i| placed(&procs[i % 2], r#"{"type":"arena"}"#))
        .collect();
    let rooms: Vec<String> = answers.iter().map(|a| text(a, "room")).collect();
    assert_eq!(rooms[0], rooms[1], "the second seat is in the first room");
    assert_ne!(
        rooms[0], rooms[2],
        "that room is full (2 players): a new one"
    );
    for (answer, room) in answers.iter().zip(&rooms) {
        assert!(room.starts_with("arena-"), "{room}");
        assert!(
            text(answer, "connect").contains("?type=arena&ticket="),
            "{answer}"
        );
    }
    let mut clients: Vec<Client> = answers
        .iter()
        .map(|a| {
            let mut c = Client::connect_url(&text(a, "connect"));
            c.hello("p");
            c
        })
        .collect();
    clients[0].wait_for(|m| m.len() == 2);
    clients[2].wait_for(|m| m.len() == 1);
    // The named room is full for the matchmaker too, as its owner says.
    let (status, answer) = matchmake(&procs[0], &format!(r#"{{"room":"{}"}}"#, rooms[0]));
    assert_eq!(
        (status, text(&answer, "error")),
        (409, format!("room {} is full", rooms[0]))
    );
}

#[test]
fn a_chat_line_said_on_one_process_is_shown_in_arena_rooms_on_the_others() {
    let redis = Redis::start();
    let procs = three(&redis);
    // One player per process, each in a room of its own (placed where the matchmaker says).
    let mut clients: Vec<Client> = ["ann", "bob", "cid"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let body = format!(r#"{{"room":"chat-{i}","player":"{name}"}}"#);
            let mut c = Client::connect_url(&text(&placed(&procs[i], &body), "connect"));
            c.hello(name);
            c.wait_for(|m| m.len() == 1);
            c
        })
        .collect();
    let deadline = Instant::now() + WAIT_MAX;
    // Said again (a second apart, the arena's chat interval) until it arrives: pub/sub keeps nothing for
    // a subscriber that was still connecting.
    let mut said = 0;
    let line = loop {
        assert!(Instant::now() < deadline, "the chat line never arrived");
        clients[0].say(&format!("hello {said}"));
        said += 1;
        let got = recv_message_within(&mut clients[2], Duration::from_millis(1_500));
        if let Some(line) = got {
            break line;
        }
    };
    assert!(line.starts_with("ann: hello "), "{line}");
    // The others see it too (bob's process got it over Redis, ann's own room locally).
    let bob = clients[1].recv_message();
    assert!(bob.starts_with("ann: hello "), "{bob}");
    let own = clients[0].recv_message();
    assert!(own.starts_with("ann: hello "), "{own}");
    // A whisper goes to the account alone, on whichever process it plays.
    std::thread::sleep(Duration::from_millis(1_100));
    clients[1].say("@cid psst");
    loop {
        let got = clients[2].recv_message();
        if got.starts_with("bob (whisper)") {
            assert_eq!(got, "bob (whisper): psst");
            break;
        }
    }
}

/// Reads `client`'s messages for at most `wait`: the first game `Message`, if one came.
fn recv_message_within(client: &mut Client, wait: Duration) -> Option<String> {
    let until = Instant::now() + wait;
    client
        .ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let got = loop {
        if Instant::now() >= until {
            break None;
        }
        match client.ws.read() {
            Ok(tungstenite::Message::Binary(bytes)) => {
                let msg: common::Msg = tickcast::proto::decode(&bytes).unwrap();
                if let common::Msg::Message { body } = &msg {
                    break Some(String::from_utf8(body.clone()).unwrap());
                }
                client.mirror.apply(msg).expect("mirror follows the server");
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    };
    client
        .ws
        .get_ref()
        .set_read_timeout(Some(WAIT_MAX))
        .unwrap();
    got
}

#[test]
fn with_redis_gone_matchmaking_answers_503_and_rooms_play_on() {
    let redis = Redis::start();
    let server = process(&redis, "a", 4096);
    redis.wait_for("tickcast:process:a", |v| v.is_some());
    let mut c = Client::connect_url(&text(&placed(&server, r#"{"room":"on"}"#), "connect"));
    c.hello("a");
    drop(redis);
    let t0 = Instant::now();
    while server.metric("tickcast_cluster_redis_up") == 1 {
        assert!(t0.elapsed() < WAIT_MAX, "redis still counted up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, answer) = matchmake(&server, r#"{"room":"on"}"#);
    assert_eq!(
        (status, text(&answer, "error")),
        (503, "matchmaking unavailable: redis unreachable".into())
    );
    // The room plays on, every tick delivered.
    let from = c.ticks.len();
    let until = c.mirror.tick().unwrap_or(0) + 10;
    c.recv_until(|m| matches!(m, common::Msg::Delta { tick, .. } if *tick >= until));
    c.assert_every_tick_since(from);
}

#[test]
fn after_a_process_is_killed_its_rooms_are_placed_elsewhere() {
    let redis = Redis::start();
    let survivor = process(&redis, "a", 4096);
    let (mut child, addr) = spawn_binary(&redis.url(), "doomed", &["--cluster-ttl-ms", "1000"]);
    let victim = TestServer::external(addr);
    let mut c = Client::connect_at(&victim, "/ws/lobby-9");
    c.hello("v");
    redis.wait_for("tickcast:room:lobby-9", |v| v == Some("doomed"));
    redis.wait_for("tickcast:process:a", |v| v.is_some());
    assert_eq!(
        text(&placed(&survivor, r#"{"room":"lobby-9"}"#), "process"),
        "doomed"
    );
    let t0 = Instant::now();
    while redis.zscore("tickcast:free:arena", "lobby-9").is_none() {
        assert!(
            t0.elapsed() < WAIT_MAX,
            "the room's free seats are never advertised"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // The survivor's heartbeats sweep the dead process's free seats once they expire (one TTL).
    let t0 = Instant::now();
    while redis.zscore("tickcast:free:arena", "lobby-9").is_some() {
        assert!(
            t0.elapsed() < WAIT_MAX,
            "the dead room's seats stay advertised"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Within the TTL the directory forgets the dead process; the room is then placed on the survivor.
    let t0 = Instant::now();
    loop {
        let answer = placed(&survivor, r#"{"room":"lobby-9"}"#);
        if text(&answer, "process") == "a" {
            let mut c = Client::connect_url(&text(&answer, "connect"));
            c.hello("w");
            c.wait_for(|m| m.len() == 1);
            break;
        }
        assert!(t0.elapsed() < WAIT_MAX, "still placed on the dead process");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_standalone_process_matchmakes_itself() {
    let server = TestServer::start(|c| c.npcs = 0);
    let (status, answer) = matchmake(&server, r#"{"room":"solo"}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(text(&answer, "connect"), "/ws/solo");
    assert!(
        answer["process"].is_null() && answer["ticket"].is_null(),
        "{answer}"
    );
    let mut c = Client::connect_at(&server, &text(&answer, "connect"));
    c.hello("solo");
    // Any arena room with a free seat: the one that has a player.
    let any = placed(&server, r#"{"type":"arena"}"#);
    assert_eq!(text(&any, "room"), "solo");
    assert_eq!(text(&any, "connect"), "/ws/solo?type=arena");
    for (body, status, why) in [
        ("nope", 400, "malformed matchmaking request"),
        ("{}", 400, "name a \"room\" or a room \"type\""),
        (r#"{"room":"a.b"}"#, 400, "bad room name"),
        (r#"{"type":"poker"}"#, 400, "unknown room type: poker"),
        (
            r#"{"room":"default"}"#,
            400,
            "the default room is each process's own",
        ),
        (r#"{"room":"x","player":"a b"}"#, 400, "bad player id"),
        (
            r#"{"room":"x","ticket":"s1.a.x.p.1.sig"}"#,
            401,
            "seat tickets are taken only in a cluster",
        ),
    ] {
        let (got, answer) = matchmake(&server, body);
        assert_eq!(got, status, "{body}: {answer}");
        assert!(text(&answer, "error").starts_with(why), "{body}: {answer}");
    }
    let big = format!(r#"{{"room":"{}"}}"#, "x".repeat(1100));
    assert_eq!(server.post("/matchmake", &big).0, 413);
    let no_length = common::http_exchange(server.addr, b"POST /matchmake HTTP/1.1\r\n\r\n");
    assert_eq!(no_length.0, 411);
    assert_eq!(server.get("/matchmake").0, 405);
    let preflight = common::http_exchange(
        server.addr,
        b"OPTIONS /matchmake HTTP/1.1\r\nOrigin: https://game.example\r\n\r\n",
    );
    assert_eq!(preflight.0, 204);
    // The body may trickle in after the head.
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"POST /matchmake HTTP/1.1\r\nContent-Length: 15\r\n\r\n{\"room\":")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"\"late\"}").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"connect\":\"/ws/late\""), "{answer}");
}

#[test]
fn a_standalone_process_without_room_creation_finds_only_what_is_open() {
    let server = TestServer::start(|c| {
        c.npcs = 0;
        c.room_creation = tickcast::config::RoomCreation::Off;
    });
    let (status, answer) = matchmake(&server, r#"{"room":"nowhere"}"#);
    assert_eq!(
        (status, text(&answer, "error")),
        (404, "no room named nowhere".into())
    );
}

#[test]
fn a_player_asking_again_holds_one_seat_and_a_full_room_says_so() {
    let redis = Redis::start();
    let server = process(&redis, "a", 2);
    redis.wait_for("tickcast:process:a", |v| v.is_some());
    for _ in 0..3 {
        placed(&server, r#"{"room":"pair","player":"ann"}"#);
    }
    placed(&server, r#"{"room":"pair","player":"bob"}"#);
    let (status, answer) = matchmake(&server, r#"{"room":"pair","player":"cid"}"#);
    assert_eq!(
        (status, text(&answer, "error")),
        (409, "room pair is full".into())
    );
    // Ann still has her seat.
    placed(&server, r#"{"room":"pair","player":"ann"}"#);
}

#[test]
fn with_room_creation_by_ticket_the_matchmaker_creates_only_what_tickets_allow() {
    let redis = Redis::start();
    let dir = std::env::temp_dir().join(format!("tickcast-mm-backend-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let backend = dir.join("secret");
    const BACKEND: &str = "the game backend's own secret";
    std::fs::write(&backend, BACKEND).unwrap();
    let port = free_port();
    let redis_url = redis.url();
    let server = TestServer::start(move |c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.npcs = 0;
        c.redis = Some(redis_url);
        c.public_url = Some(format!("ws://127.0.0.1:{port}"));
        c.process_id = Some("a".into());
        c.cluster_secret_file = Some(cluster_secret());
        c.cluster_ttl_ms = 1_000;
        c.ticket_secret_file = Some(backend);
        c.room_creation = tickcast::config::RoomCreation::Ticket;
    });
    redis.wait_for("tickcast:process:a", |v| v.is_some());
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let any = ticket::issue(BACKEND.as_bytes(), "ann", expires);
    let bound = ticket::issue_for_room(BACKEND.as_bytes(), "ann", "match-7", expires);
    let ask = |fields: &str| matchmake(&server, &format!("{{{fields}}}"));
    // No ticket, or a seat instead of one: refused.
    assert_eq!(ask(r#""room":"x""#).0, 401);
    // A ticket for any room may not name a new one...
    let (status, answer) = ask(&format!(r#""room":"attacker-made","ticket":"{any}""#));
    assert_eq!(
        (status, text(&answer, "error")),
        (404, "no room named attacker-made".into())
    );
    // ...but may ask for any room of a type, which the matchmaker names.
    let (status, answer) = ask(&format!(r#""type":"arena","ticket":"{any}""#));
    assert_eq!(status, 200, "{answer}");
    assert!(text(&answer, "room").starts_with("arena-"), "{answer}");
    // A ticket bound to a room is for that room, whatever the request says.
    let (status, answer) = ask(&format!(r#""room":"bobs-room","ticket":"{bound}""#));
    assert_eq!(
        (status, text(&answer, "error")),
        (401, "ticket is for room match-7".into())
    );
    let answer = placed(
        &server,
        &format!(r#"{{"type":"arena","ticket":"{bound}"}}"#),
    );
    assert_eq!(text(&answer, "room"), "match-7");
    let seat = text(&answer, "ticket");
    let (status, _) = ask(&format!(r#""room":"match-7","ticket":"{seat}""#));
    assert_eq!(status, 401, "a seat is no backend ticket");
    // The seat creates the room it names, on the process it names.
    let mut c = Client::connect_url(&text(&answer, "connect"));
    c.hello("ann");
    c.wait_for(|m| m.len() == 1);
    assert_eq!(server.get("/rooms/match-7").0, 200);
}
