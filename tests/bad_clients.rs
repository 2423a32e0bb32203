//! Malformed or misbehaving clients get the documented close code with a reason, and cost nobody else
//! anything: a bystander keeps receiving every tick and its mirror keeps matching.

mod common;

use common::{Client, TestServer};
use tickcast::proto::{self, ClientMsg};
use tickcast::sim::arena::ArenaInput;
use tungstenite::Message;

fn server() -> TestServer {
    TestServer::start(|c| {
        c.npcs = 20;
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
        c.max_message_bytes = 256;
    })
}

#[test]
fn each_kind_of_bad_message_gets_its_close_code_and_nobody_else_notices() {
    let server = server();
    let mut bystander = Client::connect(&server);
    bystander.hello("bystander");
    let cases: Vec<(&str, Message, u16, &str)> = vec![
        (
            "unknown tag",
            Message::Binary(vec![9].into()),
            1007,
            "expected variant index",
        ),
        (
            "truncated varint",
            Message::Binary(vec![2, 0xfd, 1].into()),
            1007,
            "too early",
        ),
        (
            "empty message",
            Message::Binary(Vec::new().into()),
            1007,
            "too early",
        ),
        (
            "trailing bytes",
            Message::Binary(vec![2, 1, 0].into()),
            1007,
            "trailing",
        ),
        (
            "length beyond the message",
            Message::Binary(vec![0, 4, 0xfc, 0, 0, 0, 1].into()),
            1007,
            "malformed",
        ),
        ("text frame", Message::Text("hello".into()), 1003, "binary"),
        (
            "invalid UTF-8 in a name",
            Message::Binary(vec![0, 4, 2, 0xff, 0xfe].into()),
            1007,
            "UTF-8",
        ),
        (
            "too big",
            Message::Binary(vec![0; 300].into()),
            1009,
            "too big",
        ),
        (
            "input before hello",
            Message::Binary(
                proto::encode(&ClientMsg::Input {
                    seq: 1,
                    input: ArenaInput { dx: 1, dy: 0 },
                })
                .into(),
            ),
            1008,
            "Input before Hello",
        ),
        (
            "wrong protocol version",
            Message::Binary(
                // A version 1 Hello: (protocol, name), without the fields version 2 added.
                vec![0, 1, 1, b'x'].into(),
            ),
            4000,
            "client speaks 1, server speaks 4",
        ),
    ];
    for (what, msg, code, why) in cases {
        let mut bad = Client::connect(&server);
        bad.ws.send(msg).unwrap();
        let (got, reason) = bad.expect_close();
        assert_eq!(got, code, "{what}: {reason}");
        assert!(
            reason.contains(why),
            "{what}: {reason:?} should say {why:?}"
        );
        bystander.verify_checksums(1);
    }
    // The bystander never missed a tick and is still the only player.
    bystander.assert_every_tick();
    assert_eq!(server.metric("tickcast_players"), 1);
    assert!(server.metric("tickcast_connections_closed_total{reason=\"malformed_message\"}") >= 5);

    let mut twice = Client::connect(&server);
    twice.hello("twice");
    twice.send(&ClientMsg::Hello {
        protocol: proto::PROTOCOL_VERSION,
        name: "again".into(),
        ticket: String::new(),
        resume: None,
    });
    let (code, reason) = twice.expect_close();
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("Hello sent twice"), "{reason}");
}

#[test]
fn junk_instead_of_frames_after_the_upgrade_is_a_protocol_error() {
    use std::io::Write;
    let server = server();
    let mut bad = Client::connect(&server);
    // An unmasked frame: clients must mask (RFC 6455 5.1).
    bad.ws.get_mut().write_all(&[0x82, 0x01, 0x00]).unwrap();
    let (code, reason) = bad.expect_close();
    assert_eq!(code, 1002, "{reason}");
}

#[test]
fn a_client_that_closes_is_answered_and_its_player_removed() {
    let server = server();
    let mut watcher = Client::watching(&server);
    let mut leaver = Client::connect(&server);
    let entity = leaver.hello("leaver");
    watcher.wait_for(|m| m.get(entity).is_some());
    // 1000: a goodbye, so the player leaves now instead of waiting to be resumed.
    leaver
        .ws
        .close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
    // The server echoes the close, as RFC 6455 asks.
    loop {
        match leaver.ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("expected a clean close, got {e}"),
        }
    }
    watcher.wait_for(|m| m.get(entity).is_none());
    watcher.verify_checksums(1);
}

/// Sends `bytes` and the FIN in one segment (TCP_CORK), as the `connection` fuzz target found.
fn send_then_fin_in_one_segment(stream: &std::net::TcpStream, bytes: &[u8]) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a live c_int with its size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    (&*stream).write_all(bytes).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
}

#[test]
fn a_hang_up_right_behind_a_partial_frame_or_a_hello_is_seen_at_once() {
    use std::io::Read;
    let server = TestServer::start(|c| {
        c.tick_hz = 50;
        c.idle_timeout_ms = 600_000;
        c.ping_interval_ms = 300_000;
    });
    let mut watcher = Client::watching(&server);
    // One byte of a frame header, then EOF; and a whole masked Hello, then EOF.
    let hello = proto::encode(&ClientMsg::<ArenaInput>::Hello {
        protocol: proto::PROTOCOL_VERSION,
        name: "x".into(),
        ticket: String::new(),
        resume: None,
    });
    let mut masked_hello = vec![0x82, 0x80 | hello.len() as u8, 1, 2, 3, 4];
    masked_hello.extend(
        hello
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
    );
    for tail in [vec![0x82], masked_hello] {
        let mut client = Client::connect(&server);
        let stream = client.ws.get_ref().try_clone().unwrap();
        send_then_fin_in_one_segment(&stream, &tail);
        // The server must notice the EOF now, not at the idle timeout: it closes its side.
        let mut sink = Vec::new();
        let _ = client.ws.get_mut().read_to_end(&mut sink);
    }
    // Nobody is left behind: no connection lingers, and the player waits detached (in case it resumes).
    let deadline = std::time::Instant::now() + common::WAIT_MAX;
    while server.metric("tickcast_players") != 0 || server.metric("tickcast_websockets_open") != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "a hung-up connection was kept"
        );
        watcher.recv();
    }
}
