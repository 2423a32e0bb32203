//! Authentication tickets (`--ticket-secret-file`): an upgrade without a valid, unexpired ticket gets 401
//! with a reason; a valid one connects; the ticket never shows up in /metrics.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{http_exchange, TestServer};
use tickcast::net::ticket;

const SECRET: &str = "a shared secret of at least 16 bytes";

fn upgrade(server: &TestServer, target: &str) -> (u16, String) {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    http_exchange(server.addr, request.as_bytes())
}

#[test]
fn tickets_are_required_checked_and_never_shown() {
    let dir = std::env::temp_dir().join(format!("tickcast-tickets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let server = TestServer::start(|c| c.ticket_secret_file = Some(secret_file.clone()));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let (status, body) = upgrade(&server, "/ws");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("a ticket is required"), "{body}");

    let forged = ticket::issue(b"not the shared secret at all", "mallory", now + 60);
    let (status, body) = upgrade(&server, &format!("/ws?ticket={forged}"));
    assert_eq!(status, 401);
    assert!(body.contains("invalid ticket signature"), "{body}");

    let expired = ticket::issue(SECRET.as_bytes(), "alice", now - 1);
    let (status, body) = upgrade(&server, &format!("/ws?ticket={expired}"));
    assert_eq!(status, 401);
    assert!(body.contains("ticket expired"), "{body}");

    let (status, body) = upgrade(&server, "/ws?ticket=junk");
    assert_eq!(status, 401);
    assert!(body.contains("malformed ticket"), "{body}");

    let valid = ticket::issue(SECRET.as_bytes(), "alice", now + 60);
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(common::WAIT_MAX)).unwrap();
    let url = format!("ws://{}/ws?ticket={valid}", server.addr);
    let (mut ws, response) = tungstenite::client(url, stream).expect("a valid ticket upgrades");
    assert_eq!(response.status(), 101);
    assert!(
        matches!(ws.read().unwrap(), tungstenite::Message::Binary(_)),
        "Welcome"
    );

    let (_, metrics) = server.get("/metrics");
    assert!(
        !metrics.contains(&valid) && !metrics.contains("alice"),
        "tickets stay out of metrics"
    );
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"unauthorized\"}"),
        4
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_too_short_secret_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("tickcast-short-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, "short").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["--listen", "127.0.0.1:0", "--ticket-secret-file"])
        .arg(&secret_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 16 bytes"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
