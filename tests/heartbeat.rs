//! The server pings quiet connections and closes those that stay silent past the idle timeout; a client
//! that answers pings stays, even if it never sends a message of its own.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Client, TestServer, WAIT_MAX};

/// A hand-rolled client: upgrades, then reads raw frames and never answers anything.
fn silent_client(server: &TestServer) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(WAIT_MAX)).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    s
}

/// Reads one unmasked server frame: (opcode, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (h[0] & 0x0f, payload)
}

#[test]
fn silent_connections_are_pinged_then_closed_while_answering_ones_stay() {
    let server = TestServer::start(|c| {
        c.tick_hz = 50;
        c.ping_interval_ms = 100;
        c.idle_timeout_ms = 600;
        c.checksum_every_ticks = 5;
    });
    let mut answering = Client::watching(&server);
    let mut silent = silent_client(&server);
    let silent = std::thread::spawn(move || {
        let mut pinged = false;
        loop {
            match read_frame(&mut silent) {
                (0x9, _) => pinged = true,
                (0x8, payload) => {
                    return (
                        pinged,
                        u16::from_be_bytes([payload[0], payload[1]]),
                        payload[2..].to_vec(),
                    )
                }
                _ => {}
            }
        }
    });
    // Meanwhile the tungstenite client keeps reading, which is when tungstenite answers pings.
    let deadline = std::time::Instant::now() + WAIT_MAX;
    while !silent.is_finished() {
        assert!(std::time::Instant::now() < deadline);
        answering.recv();
    }
    let (pinged, code, reason) = silent.join().unwrap();
    assert!(pinged, "a ping came before the close");
    assert_eq!(code, 4003, "{}", String::from_utf8_lossy(&reason));
    assert!(String::from_utf8_lossy(&reason).contains("idle"));
    // The tungstenite client answered its pings (tungstenite does so as it reads) and is still served.
    answering.verify_checksums(2);
    assert!(server.metric("tickcast_connections_closed_total{reason=\"idle_timeout\"}") == 1);
}
