//! TLS on the loop (`--tls-cert`, `--tls-key`), with a certificate made at test time: a rustls client
//! plays over wss:// and its mirror matches every checksum; https:// serves the health check; a plain
//! request to the TLS port is told so and closed, a handshake left half-done is dropped at the timeout, a
//! slow TLS reader is skipped, coalesced and closed like a plain one, and a reload swaps the certificate
//! for new connections while old ones play on. Nobody else notices any of it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tls::{https_get, https_metric, TestCert};
use common::{Client, TestServer, WAIT_MAX};
use tickcast::proto::ServerMsg;

fn tls_server(cert: &TestCert, adjust: impl FnOnce(&mut common::TestConfig)) -> TestServer {
    let (c, k) = (cert.cert.clone(), cert.key.clone());
    TestServer::start(move |cfg| {
        cfg.npcs = 4;
        cfg.tls_cert = Some(c);
        cfg.tls_key = Some(k);
        adjust(cfg);
    })
}

#[test]
fn a_client_plays_over_wss_and_https_serves_the_health_check() {
    let cert = TestCert::new("play");
    let server = tls_server(&cert, |_| {});
    let mut c = Client::connect_tls(&server, "/ws/secure", cert.client_config());
    assert_eq!(c.room, "secure");
    c.hello("ann");
    c.input(1, 0);
    c.wait_for(|m| m.len() == 5);
    c.verify_checksums(3);
    assert_eq!(
        https_get(&server, cert.client_config(), "/healthz"),
        (200, "ok\n".into())
    );
    let (status, metrics) = https_get(&server, cert.client_config(), "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tickcast_tls_handshakes_total "),
        "{metrics}"
    );
}

#[test]
fn a_plain_request_to_the_tls_port_is_told_and_closed_and_nobody_notices() {
    let cert = TestCert::new("plain");
    let server = tls_server(&cert, |_| {});
    let mut bystander = Client::connect_tls(&server, "/ws", cert.client_config());
    bystander.hello("b");
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(WAIT_MAX)).unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = plain.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request"), "{answer:?}");
    assert!(
        answer.ends_with("this port speaks TLS: use https://\n"),
        "{answer:?}"
    );
    bystander.verify_checksums(2);
    let (_, metrics) = https_get(&server, cert.client_config(), "/metrics");
    assert!(
        metrics.contains("tickcast_tls_handshake_failures_total{reason=\"not_tls\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_handshake_left_half_done_is_dropped_at_the_timeout() {
    let cert = TestCert::new("stall");
    let server = tls_server(&cert, |c| c.tls_handshake_timeout_ms = 200);
    let mut bystander = Client::connect_tls(&server, "/ws", cert.client_config());
    bystander.hello("b");
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.set_read_timeout(Some(WAIT_MAX)).unwrap();
    // The first bytes of a TLS record header, then nothing.
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let t0 = Instant::now();
    let mut sink = [0u8; 64];
    let n = stalled.read(&mut sink).unwrap_or(0);
    assert_eq!(n, 0, "closed without a word: it cannot read one");
    assert!(t0.elapsed() < WAIT_MAX);
    bystander.verify_checksums(1);
    let (_, metrics) = https_get(&server, cert.client_config(), "/metrics");
    assert!(
        metrics.contains("tickcast_tls_handshake_failures_total{reason=\"timeout\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_reload_gives_new_connections_the_new_certificate_and_old_ones_play_on() {
    let mut cert = TestCert::new("reload");
    let server = tls_server(&cert, |_| {});
    let old_trust = cert.client_config();
    let mut old = Client::connect_tls(&server, "/ws", old_trust.clone());
    old.hello("old");
    cert.renew();
    server
        .handle
        .as_ref()
        .unwrap()
        .send(tickcast::Command::ReloadTls);
    let new_trust = cert.client_config();
    // Bounded wait for the loop to take the command; then new handshakes show the new certificate.
    let t0 = Instant::now();
    while common::tls::tls_stream(&server, new_trust.clone()).is_err() {
        assert!(
            t0.elapsed() < WAIT_MAX,
            "the new certificate is never served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        common::tls::tls_stream(&server, old_trust).is_err(),
        "the old certificate is no longer served"
    );
    old.verify_checksums(2);
    // A broken pair is refused; the server keeps the last good one.
    std::fs::write(&cert.key, "not a key").unwrap();
    server
        .handle
        .as_ref()
        .unwrap()
        .send(tickcast::Command::ReloadTls);
    let t0 = Instant::now();
    loop {
        let (_, metrics) = https_get(&server, new_trust.clone(), "/metrics");
        if metrics.contains("tickcast_tls_reloads_total{result=\"failed\"} 1") {
            assert!(
                metrics.contains("tickcast_tls_reloads_total{result=\"ok\"} 1"),
                "{metrics}"
            );
            break;
        }
        assert!(
            t0.elapsed() < WAIT_MAX,
            "the broken reload is never counted: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut late = Client::connect_tls(&server, "/ws", new_trust);
    late.hello("late");
    late.verify_checksums(1);
}

/// The slow-consumer tests' busy server (`common::busy`), over TLS.
fn busy_tls_server(cert: &TestCert, lag_limit_ms: u64) -> TestServer {
    tls_server(cert, |c| common::busy(c, lag_limit_ms))
}

#[test]
fn a_stalled_tls_reader_is_skipped_then_coalesced_while_others_get_every_tick() {
    let cert = TestCert::new("stalled");
    let server = busy_tls_server(&cert, 120_000);
    let trust = cert.client_config();
    let mut steady = Client::connect_tls(&server, "/ws", trust.clone());
    steady.watch();
    let mut stalled = Client::watching_tls_small_rcvbuf(&server, trust.clone(), 4096);
    stalled.recv_until(|m| matches!(m, ServerMsg::Full { .. }));
    let stalled_at = stalled.mirror.tick().unwrap();
    let deadline = Instant::now() + WAIT_MAX;
    let steady_from = steady.ticks.len();
    let mut max_queued = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the stalled TLS client was never skipped"
        );
        for _ in 0..10 {
            steady.recv();
        }
        max_queued = max_queued.max(https_metric(
            &server,
            trust.clone(),
            "tickcast_queued_bytes",
        ));
        if https_metric(&server, trust.clone(), "tickcast_updates_skipped_total") >= 20 {
            break;
        }
    }
    // What the server holds for it, in its queue and inside TLS, stays far under the hard limit.
    assert!(
        max_queued < common::BUSY_SEND_LIMIT as u64,
        "queued {max_queued} bytes"
    );
    steady.assert_every_tick_since(steady_from);
    stalled.wait_for(|m| m.coalesced > 0 || m.fulls > 1);
    stalled.verify_checksums(1);
    assert!(stalled.mirror.tick().unwrap() > stalled_at + 20);
    steady.verify_checksums(1);
}

#[test]
fn a_tls_reader_stalled_past_the_lag_limit_is_closed() {
    let cert = TestCert::new("lagging");
    let server = busy_tls_server(&cert, 500);
    let trust = cert.client_config();
    let mut steady = Client::connect_tls(&server, "/ws", trust.clone());
    steady.watch();
    let mut stalled = Client::watching_tls_small_rcvbuf(&server, trust.clone(), 4096);
    stalled.recv_until(|m| matches!(m, ServerMsg::Full { .. }));
    let deadline = Instant::now() + WAIT_MAX;
    while https_metric(
        &server,
        trust.clone(),
        "tickcast_slow_consumer_closes_total",
    ) == 0
    {
        assert!(
            Instant::now() < deadline,
            "the stalled TLS client was never closed"
        );
        for _ in 0..10 {
            steady.recv();
        }
    }
    let (code, _) = stalled.expect_close();
    assert!([4001, 4002].contains(&code), "closed with {code}");
    steady.verify_checksums(1);
}

#[test]
fn sighup_to_the_binary_reloads_the_certificate() {
    use std::io::BufRead;
    let mut cert = TestCert::new("sighup");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["--listen", "127.0.0.1:0", "--npcs", "0", "--tls-cert"])
        .arg(&cert.cert)
        .arg("--tls-key")
        .arg(&cert.key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut killed = common::redis::Killed(child);
    let mut line = String::new();
    std::io::BufReader::new(killed.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("https://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no https address in {line:?}"));
    let server = TestServer::external(addr.parse().unwrap());
    let old_trust = cert.client_config();
    assert_eq!(https_get(&server, old_trust.clone(), "/healthz").0, 200);
    cert.renew();
    // SAFETY: kill(2) with a live child's pid and a signal number; no memory is shared.
    assert_eq!(unsafe { libc::kill(killed.0.id() as i32, libc::SIGHUP) }, 0);
    let new_trust = cert.client_config();
    let t0 = Instant::now();
    while common::tls::tls_stream(&server, new_trust.clone()).is_err() {
        assert!(
            t0.elapsed() < WAIT_MAX,
            "SIGHUP never brought the new certificate"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(common::tls::tls_stream(&server, old_trust).is_err());
    // SIGTERM still drains and exits 0 (SIGHUP did not take the signal thread away).
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::kill(killed.0.id() as i32, libc::SIGTERM) },
        0
    );
    assert!(killed.0.wait().unwrap().success());
}

#[test]
fn a_missing_or_broken_key_stops_the_start_with_the_reason() {
    let cert = TestCert::new("broken");
    std::fs::write(&cert.key, "not a key").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert.cert)
        .arg("--tls-key")
        .arg(&cert.key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert.cert)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-cert and --tls-key go together"),
        "{stderr}"
    );
}
