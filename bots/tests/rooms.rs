//! Bots in rooms (protocol 3, docs/PROTOCOL.md "Rooms") against the real server through real sockets on
//! 127.0.0.1: `--rooms K --room-size N` puts N bots in each of K rooms, each bot is welcomed into the room
//! it asked for and follows that room's world and checksums, the server lists exactly those players per
//! room, and the report counts per room. A server that welcomes a bot into another room is caught; a
//! bot past a room's player cap (4006) backs off and gives up.

mod common;

use bots::Plan;
use common::{args, http_get, run_swarm, TestServer, WrongChecksumServer};
use tickcast::metrics::CloseReason;

/// The `players` of every room in a `GET /rooms` answer, by name.
fn players_by_room(body: &str) -> Vec<(String, u64)> {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no rooms in {body}"))
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["players"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn bots_spread_over_rooms_each_follow_their_own_room() {
    let server = TestServer::start(|c| {
        c.npcs = 5;
        c.checksum_every_ticks = 5;
    });
    let addr = server.addr;
    let plan = Plan::new(args(
        &server.url(),
        &[
            "--rooms",
            "3",
            "--room-size",
            "2",
            "--duration",
            "3s",
            "--threads",
            "2",
            "--connect-rate",
            "100",
        ],
    ))
    .unwrap();
    assert_eq!(plan.count, 6);
    // Once every bot is connected, what the server says its rooms hold.
    let mut listed = None;
    let mut errors = Vec::new();
    let (_never, stop) = crossbeam_channel::bounded::<()>(1);
    let report = bots::run(
        plan,
        &stop,
        |p| {
            if p.connected == 6 && listed.is_none() {
                listed = Some(http_get(addr, "/rooms"));
            }
        },
        |e| errors.push(e.clone()),
    )
    .unwrap();
    let summary = format!("{}\nerrors: {errors:?}\nlisted: {listed:?}", report.table());

    // Every bot was welcomed into the room it asked for (a Welcome naming another room is a protocol
    // error) and its mirror matched its room's checksums.
    assert!(report.passed, "{summary}");
    assert!(errors.is_empty(), "{summary}");
    assert_eq!(report.protocol_errors, 0, "{summary}");
    assert_eq!(report.checksum_mismatches, 0, "{summary}");
    let names: Vec<&str> = report.rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["bots-0", "bots-1", "bots-2"], "{summary}");
    for room in &report.rooms {
        assert_eq!(room.bots, 2, "{summary}");
        assert_eq!(room.bots_ever_connected, 2, "{}: {summary}", room.name);
        assert!(room.checksums_verified > 0, "{}: {summary}", room.name);
        assert_eq!(room.checksum_mismatches, 0, "{}: {summary}", room.name);
        assert_eq!(room.protocol_errors, 0, "{}: {summary}", room.name);
        assert_eq!(room.unexpected_disconnects, 0, "{}: {summary}", room.name);
        assert!(room.updates > 0, "{}: {summary}", room.name);
        assert!(
            room.update_interval_ms.samples > 0,
            "{}: {summary}",
            room.name
        );
    }
    let s = &report.rooms_summary;
    assert_eq!((s.count, s.bots_min, s.bots_max), (3, 2, 2), "{summary}");
    assert_eq!(s.rooms_all_connected, 3, "{summary}");
    assert_eq!(
        s.rooms_with_mismatches + s.rooms_with_errors,
        0,
        "{summary}"
    );
    assert!(s.worst_room.is_some(), "{summary}");
    assert!(
        report.table().contains("worst room interval p99"),
        "{summary}"
    );

    // The server put two players in each of the three rooms (and none in its default room).
    let (status, body) = listed.unwrap_or_else(|| panic!("never all connected: {summary}"));
    assert_eq!(status, 200, "{body}");
    let rooms = players_by_room(&body);
    for name in ["bots-0", "bots-1", "bots-2"] {
        assert_eq!(
            rooms.iter().find(|(n, _)| n == name).map(|(_, p)| *p),
            Some(2),
            "{name} in {body}"
        );
    }
    let others: u64 = rooms
        .iter()
        .filter(|(n, _)| !n.starts_with("bots-"))
        .map(|(_, p)| p)
        .sum();
    assert_eq!(others, 0, "{body}");
}

#[test]
fn a_url_naming_a_room_puts_every_bot_in_it_and_the_report_names_it() {
    let server = TestServer::start(|c| {
        c.npcs = 3;
        c.checksum_every_ticks = 5;
    });
    let url = format!("{}/solo_1", server.url());
    let (report, errors) = run_swarm(args(&url, &["--count", "2", "--duration", "2s"]));
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert!(report.passed, "{summary}");
    assert_eq!(report.rooms.len(), 1, "{summary}");
    assert_eq!(report.rooms[0].name, "solo_1", "{summary}");
    assert_eq!(report.rooms[0].bots_ever_connected, 2, "{summary}");
    assert!(report.rooms[0].checksums_verified > 0, "{summary}");
    let (status, body) = server.get("/rooms/solo_1");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn without_rooms_the_report_names_the_default_room_from_welcome() {
    let server = TestServer::start(|c| {
        c.npcs = 3;
        c.checksum_every_ticks = 5;
    });
    let (report, errors) = run_swarm(args(&server.url(), &["--count", "3", "--duration", "2s"]));
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert!(report.passed, "{summary}");
    assert_eq!(report.rooms.len(), 1, "{summary}");
    // The server's default room, `/ws`, is named `default` unless --default-room says otherwise.
    assert_eq!(report.rooms[0].name, "default", "{summary}");
    assert_eq!(
        (report.rooms[0].bots, report.rooms[0].bots_ever_connected),
        (3, 3),
        "{summary}"
    );
    assert!(report.rooms[0].update_interval_ms.samples > 0, "{summary}");
}

#[test]
fn a_welcome_naming_another_room_is_a_protocol_error_of_that_room() {
    // The fake server welcomes every connection into `default`, whatever room its URL asked for.
    let fake = WrongChecksumServer::start();
    let (report, errors) = run_swarm(args(
        &fake.url(),
        &[
            "--rooms",
            "1",
            "--count",
            "1",
            "--duration",
            "1s",
            "--mix",
            "spectator",
            "--retry-base-ms",
            "50",
        ],
    ));
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert!(report.protocol_errors >= 1, "{summary}");
    assert!(!report.passed, "{summary}");
    assert!(
        errors[0]
            .what
            .contains("asked for room \"bots-0\", Welcome says room \"default\""),
        "{summary}"
    );
    assert_eq!(report.rooms[0].name, "bots-0", "{summary}");
    assert!(report.rooms[0].protocol_errors >= 1, "{summary}");
    assert_eq!(report.rooms_summary.rooms_with_errors, 1, "{summary}");
    // The bot never got as far as a checksum: the wrong room stopped it at Welcome.
    assert_eq!(report.checksums_verified, 0, "{summary}");
}

#[test]
fn a_bot_past_the_room_cap_is_closed_with_4006_backs_off_and_gives_up() {
    // Rooms of at most 2 players, 3 bots asking for the same room: the third is refused every time.
    let server = TestServer::start(|c| {
        c.npcs = 0;
        c.room_max_players = 2;
    });
    let (report, errors) = run_swarm(args(
        &server.url(),
        &[
            "--rooms",
            "1",
            "--room-size",
            "3",
            "--duration",
            "2s",
            "--connect-attempts",
            "3",
            "--retry-base-ms",
            "10",
            "--retry-max-ms",
            "20",
        ],
    ));
    let metrics = server.stop();
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    let full = report
        .disconnects
        .iter()
        .find(|d| d.code == Some(tickcast::proto::close::ROOM_FULL))
        .unwrap_or_else(|| panic!("no 4006 in {summary}"));
    // --connect-attempts closes in a row, then the bot stopped trying.
    assert_eq!((full.count, full.expected), (3, false), "{summary}");
    assert_eq!(report.bots_gave_up, 1, "{summary}");
    assert_eq!(metrics.closed_count(CloseReason::RoomFull), 3, "{summary}");
    assert!(!report.passed, "{summary}");
    assert_eq!(report.rooms[0].unexpected_disconnects, 3, "{summary}");
    assert_eq!(report.rooms_summary.rooms_with_errors, 1, "{summary}");
    // The two bots inside played on, their mirrors right.
    assert_eq!(report.checksum_mismatches, 0, "{summary}");
    assert!(report.checksums_verified > 0, "{summary}");
}
