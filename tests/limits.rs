//! Limits that protect the server from a client: connection capacity, the Origin allow-list and the
//! message rate. Each gets its documented answer and a metric; bystanders are unaffected.

mod common;

use std::time::Instant;

use common::{http_exchange, Client, TestServer, WAIT_MAX};
use tickcast::proto::{self, ClientMsg};
use tickcast::sim::arena::ArenaInput;

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn connections_over_capacity_get_503_with_retry_after() {
    let server = TestServer::start(|c| c.max_connections = 2);
    let mut a = Client::watching(&server);
    let mut b = Client::watching(&server);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(WAIT_MAX)).unwrap();
    use std::io::{Read, Write};
    s.write_all(format!("{UPGRADE}\r\n").as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("Retry-After: 5\r\n"), "{answer}");
    assert!(answer.contains("connection capacity"), "{answer}");
    a.verify_checksums(1);
    b.verify_checksums(1);
    drop(a);
    // The slot frees once a client leaves (the server reaps it when its close completes).
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        assert!(Instant::now() < deadline, "the slot never freed");
        b.recv();
        let stream = std::net::TcpStream::connect(server.addr).unwrap();
        if let Ok((mut c, _)) = tungstenite::client(server.url(), stream) {
            assert!(
                matches!(c.read().unwrap(), tungstenite::Message::Binary(_)),
                "Welcome"
            );
            break;
        }
    }
}

#[test]
fn origins_outside_the_allow_list_get_403() {
    let server = TestServer::start(|c| c.allowed_origins = vec!["https://game.example.com".into()]);
    let (status, body) = http_exchange(
        server.addr,
        format!("{UPGRADE}Origin: https://evil.example\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("origin not allowed"));
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(WAIT_MAX)).unwrap();
    use std::io::{BufRead, Write};
    s.write_all(format!("{UPGRADE}Origin: https://game.example.com\r\n\r\n").as_bytes())
        .unwrap();
    let mut status_line = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut status_line)
        .unwrap();
    assert!(status_line.starts_with("HTTP/1.1 101 "), "{status_line}");
    // Non-browser clients send no Origin and are let in.
    Client::watching(&server).verify_checksums(1);
}

#[test]
fn a_message_flood_is_dropped_then_closed_with_1008() {
    let server = TestServer::start(|c| {
        c.messages_per_s = 20.0;
        c.message_burst = 20.0;
        c.message_drop_limit = 200.0;
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
    });
    let mut bystander = Client::connect(&server);
    bystander.hello("bystander");
    let mut flooder = Client::connect(&server);
    flooder.hello("flooder");
    let input = proto::encode(&ClientMsg::Input {
        seq: 1,
        input: ArenaInput { dx: 1, dy: 0 },
    });
    // Far more than 20 per second plus the drop allowance, as fast as the socket takes them.
    for _ in 0..2000 {
        if flooder
            .ws
            .send(tungstenite::Message::Binary(input.clone().into()))
            .is_err()
        {
            break;
        }
    }
    let (code, reason) = flooder.expect_close();
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("rate limit"), "{reason}");
    assert!(server.metric("tickcast_messages_dropped_total") >= 100);
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"rate_limited\"}"),
        1
    );
    bystander.verify_checksums(2);
}
