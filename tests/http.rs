//! HTTP on the WebSocket port: health, metrics, the page, and a clear status for every bad request.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{http_exchange, metric_in, TestServer, WAIT_MAX};

#[test]
fn health_metrics_and_page() {
    let server = TestServer::start(|_| {});
    assert_eq!(server.get("/healthz"), (200, "ok\n".to_string()));
    let (status, page) = server.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "tickcast_connections_open",
        "tickcast_connections_total",
        "tickcast_bytes_in_total",
        "tickcast_bytes_out_total",
        "tickcast_frames_in_total",
        "tickcast_frames_out_total",
        "tickcast_ticks_total",
        "tickcast_ticks_skipped_total",
        "tickcast_updates_coalesced_total",
        "tickcast_full_snapshots_total",
        "tickcast_slow_consumer_closes_total",
        "tickcast_tick_duration_seconds_count",
        "tickcast_tick_lateness_seconds_count",
        "tickcast_poll_events_total",
        "tickcast_socket_reads_total",
    ] {
        assert!(
            metric_in(&metrics, name).is_some(),
            "{name} missing from\n{metrics}"
        );
    }
    assert!(metrics.contains("tickcast_connections_closed_total{reason=\"http_done\"}"));
    // The tick split by phase, each a histogram of its own under one bounded label.
    for phase in ["step", "encode", "fanout", "timers"] {
        let count = format!("tickcast_tick_phase_seconds_count{{phase=\"{phase}\"}} ");
        assert!(metrics.contains(&count), "{count} missing from\n{metrics}");
        let bucket =
            format!("tickcast_tick_phase_seconds_bucket{{phase=\"{phase}\",le=\"+Inf\"}} ");
        assert!(metrics.contains(&bucket), "{bucket} missing");
    }
    assert!(metric_in(&metrics, "tickcast_connections_total").unwrap() >= 3);
    // What this process is: the version, the commit it was built from, the protocol it speaks.
    let build_info = format!(
        "tickcast_build_info{{version=\"{}\",commit=\"{}\",protocol=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        tickcast::COMMIT,
        tickcast::proto::PROTOCOL_VERSION
    );
    assert!(
        metrics.contains(&build_info),
        "{build_info} missing from\n{metrics}"
    );
    assert!(metrics.contains("# TYPE tickcast_build_info gauge\n"));
}

#[test]
fn bad_requests_get_a_status_and_a_reason() {
    let server = TestServer::start(|c| c.max_header_bytes = 1024);
    let cases: [(&[u8], u16, &str); 6] = [
        (b"GET /nope HTTP/1.1\r\n\r\n", 404, "not found"),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, "use GET"),
        (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426, "upgrade"),
        (b"\x16\x03\x01\x02\x00 not http\r\n\r\n", 400, "malformed"),
        (
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: x\r\n\r\n",
            426,
            "version",
        ),
        (
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
            "Sec-WebSocket-Key",
        ),
    ];
    for (request, status, why) in cases {
        let (got, body) = http_exchange(server.addr, request);
        assert_eq!(got, status, "{}", String::from_utf8_lossy(request));
        assert!(body.contains(why), "{body:?} should say {why:?}");
    }
    let big = format!("GET / HTTP/1.1\r\nX-Filler: {}\r\n\r\n", "a".repeat(2000));
    let (got, body) = http_exchange(server.addr, big.as_bytes());
    assert_eq!(got, 431, "{body}");
    // None of it hurt the server.
    assert_eq!(server.get("/healthz").0, 200);
}

#[test]
fn a_request_not_finished_in_time_is_answered_408_and_closed() {
    let server = TestServer::start(|c| c.handshake_timeout_ms = 200);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(WAIT_MAX)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("not completed in time"), "{answer}");
    assert!(server.metric("tickcast_connections_closed_total{reason=\"handshake_timeout\"}") >= 1);
}
