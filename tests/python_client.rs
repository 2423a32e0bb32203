//! An independent client in Python (the `websockets` library, written from docs/PROTOCOL.md alone) against
//! the real server: it joins, mirrors the world, verifies checksums and sees its input acknowledged; it
//! spectates after `Watch` (and hears nothing before it); it drops its connection without a close frame and
//! resumes its player onto the mirror it kept; it takes its player over from a connection still open (which
//! is closed with 4005); two of its clients in two rooms each see their own room alone; its players chat
//! in the arena (protocol v4 `Send` and `Message`) and every arena room hears them; and it reads every
//! test vector of the document. Over TLS (`wss://`, Python's `ssl`) against a server whose certificate
//! this test makes (rcgen; no key is committed), trusted through `TICKCAST_CA_FILE`: it plays with every
//! checksum matched, and resumes after an abrupt drop; without the certificate trusted it is refused.

mod common;

use std::process::{Command, Output};

use common::tls::{https_get, TestCert};
use common::TestServer;

/// The interpreter `scripts/test.sh` prepared (a venv with `websockets`), else the system's.
fn python() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    if std::path::Path::new(venv).exists() {
        venv.to_string()
    } else {
        "python3".to_string()
    }
}

/// Runs `tests/py/client.py` with `args` and `TICKCAST_CA_FILE` set to `ca_file` (or unset).
fn run_client(args: &[&str], ca_file: Option<&std::path::Path>) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/client.py");
    let mut command = Command::new(python());
    command
        .arg(script)
        .args(args)
        .env_remove("TICKCAST_CA_FILE");
    if let Some(path) = ca_file {
        command.env("TICKCAST_CA_FILE", path);
    }
    command.output().expect("run python3")
}

/// Runs `tests/py/client.py` with `args`; returns its one-line JSON summary.
fn client(args: &[&str]) -> String {
    client_trusting(args, None)
}

/// [`client`] trusting the certificates of `ca_file` for wss:// and https:// (`TICKCAST_CA_FILE`).
fn client_trusting(args: &[&str], ca_file: Option<&std::path::Path>) -> String {
    let out = run_client(args, ca_file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client {args:?} failed (scripts/test.sh installs its `websockets` into .venv):\n{stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of a top-level scalar field of the summary: a number, `true`/`false`, or a string's contents.
fn field<'a>(summary: &'a str, name: &str) -> &'a str {
    let key = format!("\"{name}\": ");
    let at = summary
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {summary}"));
    let rest = &summary[at + key.len()..];
    match rest.strip_prefix('"') {
        Some(text) => &text[..text.find('"').expect("closing quote")],
        None => rest.split([',', '}']).next().unwrap().trim(),
    }
}

fn number(summary: &str, name: &str) -> u64 {
    field(summary, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {summary}"))
}

/// The server every scenario runs against: a busy world at 50 Hz, a checksum every 5 ticks, the default
/// history (128 ticks) and resume grace (10 s).
fn server() -> TestServer {
    TestServer::start(|c| {
        c.npcs = 200;
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
    })
}

#[test]
fn python_websockets_client_mirrors_the_world_and_matches_every_checksum() {
    let server = server();
    let summary = client(&["play", &server.url(), "5"]);
    assert!(number(&summary, "checksums_verified") >= 5, "{summary}");
    assert_eq!(number(&summary, "acked_seq"), 1, "{summary}");
    assert_eq!(number(&summary, "token_len"), 16, "{summary}");
    assert_eq!(
        number(&summary, "entities"),
        201,
        "200 wanderers and the python player: {summary}"
    );
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"malformed_message\"}"),
        0
    );
}

/// [`server`], serving TLS with `cert` (every connection wss:// or https://).
fn tls_server(cert: &TestCert) -> TestServer {
    let (c, k) = (cert.cert.clone(), cert.key.clone());
    TestServer::start(move |cfg| {
        cfg.npcs = 200;
        cfg.tick_hz = 50;
        cfg.checksum_every_ticks = 5;
        cfg.tls_cert = Some(c);
        cfg.tls_key = Some(k);
    })
}

/// A metric of a TLS server, read over https://.
fn tls_metric(server: &TestServer, cert: &TestCert, name: &str) -> u64 {
    let (status, body) = https_get(server, cert.client_config(), "/metrics");
    assert_eq!(status, 200, "{body}");
    common::metric_in(&body, name).unwrap_or_else(|| panic!("metric {name} not in:\n{body}"))
}

/// The wss:// URL of a TLS server's default room, by IP address (the certificate names 127.0.0.1 as an
/// IP address too, and Python checks it).
fn wss_url(server: &TestServer) -> String {
    format!("wss://{}/ws", server.addr)
}

#[test]
fn python_client_plays_over_wss_trusting_the_test_certificate_and_matches_every_checksum() {
    let cert = TestCert::new("py-play");
    let server = tls_server(&cert);
    let summary = client_trusting(&["play", &wss_url(&server), "5"], Some(&cert.cert));
    assert!(number(&summary, "checksums_verified") >= 5, "{summary}");
    assert_eq!(number(&summary, "acked_seq"), 1, "{summary}");
    assert_eq!(number(&summary, "token_len"), 16, "{summary}");
    assert_eq!(
        number(&summary, "entities"),
        201,
        "200 wanderers and the python player: {summary}"
    );
    // It really was TLS: the server completed a handshake for it (and one for this request).
    assert_eq!(
        tls_metric(&server, &cert, "tickcast_tls_handshakes_total"),
        2,
        "{summary}"
    );
    assert_eq!(
        tls_metric(
            &server,
            &cert,
            "tickcast_connections_closed_total{reason=\"malformed_message\"}"
        ),
        0
    );
}

#[test]
fn python_client_resumes_over_wss_after_an_abrupt_drop_onto_the_mirror_it_kept() {
    let cert = TestCert::new("py-resume");
    let server = tls_server(&cert);
    let summary = client_trusting(&["resume", &wss_url(&server), "3"], Some(&cert.cert));
    assert_eq!(
        number(&summary, "resumed_entity"),
        number(&summary, "entity"),
        "{summary}"
    );
    assert_eq!(field(&summary, "first_update_kind"), "Delta", "{summary}");
    assert_eq!(
        number(&summary, "first_update_base"),
        number(&summary, "resume_tick"),
        "{summary}"
    );
    assert!(number(&summary, "checksums_after") >= 3, "{summary}");
    assert_eq!(number(&summary, "acked_seq_after"), 4, "{summary}");
    assert_eq!(
        tls_metric(&server, &cert, "tickcast_resumes_total"),
        2,
        "{summary}"
    );
}

#[test]
fn python_client_refuses_a_wss_server_whose_certificate_it_does_not_trust() {
    let cert = TestCert::new("py-untrusted");
    let server = tls_server(&cert);
    // No TICKCAST_CA_FILE: the system's roots, which do not hold a certificate made a moment ago.
    let out = run_client(&["play", &wss_url(&server), "1"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("CERTIFICATE_VERIFY_FAILED"), "{stderr}");
    // The server saw one handshake fail (how depends on how Python hangs up: an alert, or just the
    // close), and completed only the one of this request.
    let (_, metrics) = https_get(&server, cert.client_config(), "/metrics");
    let failed: u64 = ["not_tls", "eof", "alert", "protocol", "timeout"]
        .iter()
        .map(|reason| {
            let name = format!("tickcast_tls_handshake_failures_total{{reason=\"{reason}\"}}");
            common::metric_in(&metrics, &name).unwrap_or_else(|| panic!("{name} in {metrics}"))
        })
        .sum();
    assert_eq!(failed, 1, "{metrics}");
    let done = common::metric_in(&metrics, "tickcast_tls_handshakes_total");
    assert_eq!(done, Some(1), "{metrics}");
}

#[test]
fn python_spectator_hears_nothing_before_watch_and_then_follows_the_world() {
    let server = server();
    let summary = client(&["watch", &server.url(), "3"]);
    assert_eq!(field(&summary, "first_update"), "Full", "{summary}");
    assert!(number(&summary, "checksums_verified") >= 3, "{summary}");
    assert_eq!(
        number(&summary, "entities"),
        200,
        "no entity of its own: {summary}"
    );
}

#[test]
fn python_client_resumes_its_player_after_an_abrupt_drop_onto_the_mirror_it_kept() {
    let server = server();
    let summary = client(&["resume", &server.url(), "3"]);
    // Same player, and the update after the resume is a Delta from the tick it last applied.
    assert_eq!(
        number(&summary, "resumed_entity"),
        number(&summary, "entity"),
        "{summary}"
    );
    assert_eq!(field(&summary, "first_update_kind"), "Delta", "{summary}");
    assert_eq!(
        number(&summary, "first_update_base"),
        number(&summary, "resume_tick"),
        "{summary}"
    );
    // The kept mirror stayed right, and the input numbering carried on.
    assert!(number(&summary, "checksums_before") >= 3, "{summary}");
    assert!(number(&summary, "checksums_after") >= 3, "{summary}");
    assert_eq!(number(&summary, "acked_seq_before"), 3, "{summary}");
    assert_eq!(number(&summary, "acked_seq_after"), 4, "{summary}");
    assert!(number(&summary, "min_seq_after_resume") >= 3, "{summary}");
    // The resume rotated the token: the old one then joined anew, the new one resumed.
    assert_eq!(
        field(&summary, "resumed_with_old_token"),
        "false",
        "{summary}"
    );
    assert_eq!(
        field(&summary, "resumed_with_new_token"),
        "true",
        "{summary}"
    );
    // After a goodbye (close 1000) the token resumed nothing.
    assert_eq!(
        field(&summary, "resumed_after_goodbye"),
        "false",
        "{summary}"
    );
    assert_eq!(
        field(&summary, "first_update_after_goodbye"),
        "Full",
        "{summary}"
    );
    assert_eq!(server.metric("tickcast_resumes_total"), 2, "{summary}");
    assert_eq!(
        server.metric("tickcast_resumes_refused_total"),
        2,
        "{summary}"
    );
}

#[test]
fn python_client_takes_over_its_player_from_a_connection_still_open_which_gets_4005() {
    let server = server();
    let summary = client(&["takeover", &server.url(), "3"]);
    assert_eq!(number(&summary, "old_close_code"), 4005, "{summary}");
    assert!(number(&summary, "checksums_after") >= 3, "{summary}");
    assert_eq!(server.metric("tickcast_resumes_total"), 1, "{summary}");
}

#[test]
fn python_clients_in_two_rooms_each_see_only_their_own_room() {
    let server = TestServer::start(|c| {
        c.npcs = 10;
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
    });
    // Two players in red-1 (one moves: seq 3), one in blue_2 (seq 5); the script itself checks that no
    // room's mirror holds the other room's player.
    let summary = client(&["rooms", &server.url(), "3", "red-1", "blue_2"]);
    // Each connection was welcomed into the room its URL named; plain /ws is the default room.
    assert_eq!(field(&summary, "room_a"), "red-1", "{summary}");
    assert_eq!(field(&summary, "room_a_second"), "red-1", "{summary}");
    assert_eq!(field(&summary, "room_b"), "blue_2", "{summary}");
    assert_eq!(field(&summary, "default_room"), "default", "{summary}");
    // Each room has its own wanderers (10 per room) and its own players: the entity sets differ.
    assert_eq!(number(&summary, "entities_a1"), 12, "{summary}");
    assert_eq!(number(&summary, "entities_a2"), 12, "{summary}");
    assert_eq!(number(&summary, "entities_b"), 11, "{summary}");
    assert_eq!(field(&summary, "same_ids_a1_a2"), "true", "{summary}");
    assert_eq!(number(&summary, "own_seq_a1"), 3, "{summary}");
    assert_eq!(number(&summary, "own_seq_b"), 5, "{summary}");
    // Each mirror matched its own room's checksums.
    for who in ["a1", "a2", "b"] {
        assert!(
            number(&summary, &format!("checksums_{who}")) >= 3,
            "{who}: {summary}"
        );
    }
    // GET /rooms counted the players per room while they played.
    assert_eq!(number(&summary, "listed_players_a"), 2, "{summary}");
    assert_eq!(number(&summary, "listed_players_b"), 1, "{summary}");
    assert_eq!(field(&summary, "listed_type_a"), "arena", "{summary}");
    // A room name outside A-Z a-z 0-9 _ - is refused at the upgrade.
    assert_eq!(number(&summary, "bad_name_status"), 400, "{summary}");
    let (status, body) = server.get("/rooms/red-1");
    assert_eq!(status, 200, "{body}");
    // The default room and the two the clients created.
    assert_eq!(server.metric("tickcast_rooms_open"), 3, "{summary}");
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"malformed_message\"}"),
        0
    );
}

#[test]
fn python_players_chat_and_every_arena_room_hears_the_line() {
    let server = TestServer::start(|c| {
        c.npcs = 5;
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
    });
    // Two players in chat-a, a spectator in chat-b: the script asserts each heard exactly
    // ["py-ann: hello from python", "py-bob: from bob éé…"] (Ann's second line, said in the same
    // second, dropped), in that order, and that every mirror still matched its room's checksums.
    let summary = client(&["chat", &server.url(), "3", "chat-a", "chat-b"]);
    assert_eq!(
        field(&summary, "ann_line"),
        "py-ann: hello from python",
        "the text is trimmed and the line names its speaker: {summary}"
    );
    assert_eq!(number(&summary, "lines_heard_by_each"), 2, "{summary}");
    // Bob's 309-byte text was cut to at most 200 bytes (at a character boundary) behind "py-bob: ".
    let bob_line = number(&summary, "bob_line_bytes");
    assert!(
        bob_line <= 8 + 200 && bob_line > 8 + 190,
        "{bob_line}: {summary}"
    );
    for who in ["ann", "bob", "eve"] {
        assert!(
            number(&summary, &format!("checksums_{who}")) >= 3,
            "{who}: {summary}"
        );
    }
    // A spectator's Send is closed 1008, a body over 1024 bytes 1007.
    assert_eq!(number(&summary, "spectator_send_close"), 1008, "{summary}");
    assert_eq!(
        field(&summary, "spectator_send_reason"),
        "Send before Hello",
        "{summary}"
    );
    assert_eq!(number(&summary, "too_long_close"), 1007, "{summary}");
    assert!(
        field(&summary, "too_long_reason").contains("1025"),
        "{summary}"
    );
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"malformed_message\"}"),
        1,
        "the oversized Send alone: {summary}"
    );
}

#[test]
fn python_players_chat_on_one_process_and_an_arena_room_on_another_hears_them() {
    let redis = common::redis::Redis::start();
    let flags = ["--tick-hz", "50", "--checksum-every-ticks", "5"];
    // Both killed when dropped, a failing test included.
    let (_one, a) = common::redis::spawn_binary(&redis.url(), "p1", &flags);
    let (_two, b) = common::redis::spawn_binary(&redis.url(), "p2", &flags);
    // Ann and Bob play in chat-a on p1, Eve watches chat-b on p2: the line crosses the backplane.
    let (url_a, url_b) = (format!("ws://{a}/ws"), format!("ws://{b}/ws"));
    let summary = client(&["chat", &url_a, "3", "chat-a", "chat-b", &url_b]);
    assert_eq!(number(&summary, "lines_heard_by_each"), 2, "{summary}");
    assert_eq!(
        field(&summary, "ann_line"),
        "py-ann: hello from python",
        "{summary}"
    );
    for who in ["ann", "bob", "eve"] {
        assert!(
            number(&summary, &format!("checksums_{who}")) >= 3,
            "{who}: {summary}"
        );
    }
    assert_eq!(redis.get("tickcast:room:chat-a").as_deref(), Some("p1"));
    assert_eq!(redis.get("tickcast:room:chat-b").as_deref(), Some("p2"));
}

#[test]
fn python_client_decodes_and_encodes_every_vector_of_the_protocol_document() {
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md");
    let summary = client(&["vectors", doc]);
    assert_eq!(number(&summary, "vectors_checked"), 15, "{summary}");
}
