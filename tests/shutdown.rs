//! SIGTERM drains the real binary: every client gets its final update and a 1001 close, /healthz says 503
//! while draining, and the process exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{http_exchange, Client, TestServer};
use tickcast::proto::ServerMsg;

#[test]
fn sigterm_sends_final_updates_and_1001_then_exits_zero() {
    let (mut child, mut stderr, addr) = common::spawn_listening(&[
        "--listen",
        "127.0.0.1:0",
        "--npcs",
        "10",
        "--tick-hz",
        "50",
        "--drain-timeout-ms",
        "30000",
        "--close-linger-ms",
        "60000",
    ]);
    let server = TestServer::external(addr);

    let mut player = Client::connect(&server);
    player.hello("p");
    let mut spectator = Client::watching(&server);
    spectator.recv_until(|m| matches!(m, ServerMsg::Full { .. }));
    // A client that never reads keeps the drain open until it hangs up.
    let lingering = std::net::TcpStream::connect(addr).unwrap();
    use std::io::Write;
    (&lingering)
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    player.verify_checksums(1);

    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    for client in [&mut player, &mut spectator] {
        let (code, reason) = client.expect_close();
        assert_eq!(code, 1001, "{reason}");
        assert_eq!(reason, "server shutting down");
    }
    let (status, body) = http_exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(
        (status, body.trim()),
        (503, "503 Service Unavailable: draining")
    );
    let (status, _) = http_exchange(
        addr,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: eA==\r\n\r\n",
    );
    assert_eq!(status, 503, "no new players while draining");
    drop(lingering);
    drop((player, spectator));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    while stderr.read_line(&mut rest).unwrap() > 0 {}
    assert!(rest.contains("drained"), "{rest}");
}

#[test]
fn sigterm_still_drains_and_exits_zero_when_nobody_reads_stderr_any_more() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["--listen", "127.0.0.1:0", "--npcs", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    // The supervisor stops reading: every later line the server writes meets a closed pipe.
    drop(stderr);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > common::WAIT_MAX {
            let _ = child.kill();
            panic!("SIGTERM did not end the server: its signal thread died writing to stderr?");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
