//! Who gets a connection: the per-address limits (open connections, accepts per second), the health slots
//! beyond `--max-connections`, and a request head trickled in byte by byte. Each attacker gets its
//! documented answer; a spectator on the same server keeps every tick and `/healthz` answers 200.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use common::{http_exchange, Client, TestServer, WAIT_MAX};

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A connection that says nothing: it holds a slot until the handshake timeout.
fn silent(server: &TestServer) -> TcpStream {
    let s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(WAIT_MAX)).unwrap();
    s
}

/// Everything the server sends on `s` until it closes.
fn answer(mut s: TcpStream) -> String {
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).to_string()
}

/// GET `path` until the answer is not `busy` (a slot frees once the server reaps a closed connection);
/// returns the answer and how many `busy` answers came first.
fn get_once_free(server: &TestServer, path: &str, busy: u16) -> ((u16, String), u64) {
    let deadline = Instant::now() + WAIT_MAX;
    let mut refused = 0;
    loop {
        assert!(Instant::now() < deadline, "{path} stayed {busy}");
        let got = server.get(path);
        if got.0 != busy {
            return (got, refused);
        }
        refused += 1;
    }
}

/// The spectator saw every tick since it joined, in order.
fn assert_no_gaps(c: &mut Client) {
    c.verify_checksums(2);
    assert!(c.ticks.len() > 2, "{:?}", c.ticks);
    c.assert_every_tick();
}

#[test]
fn an_address_over_its_open_connection_cap_gets_429_until_one_closes() {
    let server = TestServer::start(|c| {
        c.max_connections_per_ip = 3;
        c.accepts_per_ip_per_s = 0.0;
        c.handshake_timeout_ms = 60_000;
        c.checksum_every_ticks = 5;
    });
    let mut spectator = Client::watching(&server);
    let first = silent(&server);
    let _second = silent(&server);
    // The listener's backlog is in order: the fourth from 127.0.0.1 is over the cap.
    let text = answer(silent(&server));
    assert!(
        text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{text}"
    );
    assert!(text.contains("Retry-After: 5\r\n"), "{text}");
    assert!(
        text.contains("too many connections from this address"),
        "{text}"
    );
    assert_no_gaps(&mut spectator);

    drop(first);
    let ((status, body), refused_meanwhile) = get_once_free(&server, "/healthz", 429);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let ((status, metrics), more) = get_once_free(&server, "/metrics", 429);
    assert_eq!(status, 200);
    let counted = common::metric_in(
        &metrics,
        "tickcast_connections_closed_total{reason=\"address_connections\"}",
    );
    assert_eq!(counted, Some(1 + refused_meanwhile + more), "{metrics}");
    assert_eq!(
        common::metric_in(&metrics, "tickcast_address_limit_refusals_total"),
        counted
    );
    assert_eq!(
        common::metric_in(&metrics, "tickcast_peer_addresses"),
        Some(1)
    );
    assert_no_gaps(&mut spectator);
}

#[test]
fn an_address_connecting_faster_than_its_rate_gets_429() {
    let server = TestServer::start(|c| {
        c.max_connections_per_ip = 0;
        c.accepts_per_ip_per_s = 0.5;
        c.accept_burst_per_ip = 8.0;
        c.checksum_every_ticks = 5;
    });
    let mut spectator = Client::watching(&server);
    let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    // A burst of 20 back to back: the bucket holds 8 (the spectator took one) and refills at one per 2 s.
    let answers: Vec<(u16, String)> = (0..20)
        .map(|_| http_exchange(server.addr, request))
        .collect();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(ok + refused.len(), 20, "{answers:?}");
    assert!(ok >= 7 && !refused.is_empty(), "{answers:?}");
    assert_eq!(answers[0].0, 200, "{answers:?}");
    for (_, body) in &refused {
        assert!(
            body.contains("connecting too fast from this address"),
            "{body}"
        );
    }
    // Retry-After says when the bucket holds a token again (at most 2 s at 0.5 per second).
    let deadline = Instant::now() + WAIT_MAX;
    let text = loop {
        assert!(Instant::now() < deadline, "never refused again");
        let mut s = silent(&server);
        s.write_all(request).unwrap();
        let text = answer(s);
        if !text.starts_with("HTTP/1.1 200 ") {
            break text;
        }
    };
    assert!(text.starts_with("HTTP/1.1 429 "), "{text}");
    assert!(
        text.contains("Retry-After: 1\r\n") || text.contains("Retry-After: 2\r\n"),
        "{text}"
    );
    assert_no_gaps(&mut spectator);
    let metrics = server.stop();
    assert_eq!(
        metrics.closed_count(tickcast::metrics::CloseReason::AddressRate),
        refused.len() as u64 + 1
    );
}

#[test]
fn at_max_connections_health_and_metrics_still_answer_and_an_upgrade_gets_503() {
    let server = TestServer::start(|c| {
        c.max_connections = 2;
        c.health_slots = 2;
        c.handshake_timeout_ms = 60_000;
        c.checksum_every_ticks = 5;
    });
    let mut a = Client::watching(&server);
    let mut b = Client::watching(&server);

    let (status, body) = server.get("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        common::metric_in(&metrics, "tickcast_websockets_open"),
        Some(2)
    );
    // In a health slot, anything but /healthz and /metrics is refused.
    let (status, body) = http_exchange(server.addr, UPGRADE.as_bytes());
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("server at connection capacity"), "{body}");
    let mut s = silent(&server);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let text = answer(s);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("Retry-After: 5\r\n"), "{text}");

    // Both health slots held by silent clients: the health check takes the oldest one's slot, however
    // many more silent ones keep coming (each newcomer evicts the oldest in turn).
    let mut hold: Vec<TcpStream> = (0..2).map(|_| silent(&server)).collect();
    for round in 0..3 {
        let (status, body) = server.get("/healthz");
        assert_eq!((status, body.as_str()), (200, "ok\n"), "round {round}");
        hold.extend((0..2).map(|_| silent(&server)));
    }
    // The evicted were closed with nothing said; the two newest still hold their slots.
    let newest = hold.split_off(hold.len() - 2);
    for evicted in hold {
        assert_eq!(answer(evicted), "");
    }
    drop(newest);
    let ((status, body), _) = get_once_free(&server, "/healthz", 503);
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    assert_no_gaps(&mut a);
    assert_no_gaps(&mut b);
    let metrics = server.stop();
    assert!(metrics.closed_count(tickcast::metrics::CloseReason::Rejected) >= 3);
}

#[test]
fn a_head_trickled_byte_by_byte_is_still_routed() {
    let server = TestServer::start(|c| c.checksum_every_ticks = 5);
    let mut spectator = Client::watching(&server);
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for i in 0..40 {
        head.push_str(&format!("X-Padding-{i}: {}\r\n", "p".repeat(100)));
    }
    head.push_str("\r\n");
    assert!(head.len() < 8192);
    let mut s = silent(&server);
    s.set_nodelay(true).unwrap();
    for byte in head.as_bytes() {
        s.write_all(std::slice::from_ref(byte)).unwrap();
    }
    let text = answer(s);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nok\n"), "{text}");
    // The same for an upgrade: the trickled head upgrades, and Welcome follows.
    let mut s = silent(&server);
    s.set_nodelay(true).unwrap();
    for byte in UPGRADE.as_bytes() {
        s.write_all(std::slice::from_ref(byte)).unwrap();
    }
    let mut status_line = [0u8; 12];
    s.read_exact(&mut status_line).unwrap();
    assert_eq!(&status_line, b"HTTP/1.1 101");
    assert_no_gaps(&mut spectator);
    assert_eq!(server.get("/healthz").0, 200);
}
