//! A client that stops reading while others read: it is skipped, the server's queue for it stays bounded,
//! the others get every tick, and when it reads again it gets one coalesced delta (or a Full) after which
//! its mirror matches the checksum. A client stalled past the lag limit is closed with 4001.

mod common;

use std::time::Instant;

use common::{Client, TestServer, WAIT_MAX};
use tickcast::proto::ServerMsg;

fn busy_server(lag_limit_ms: u64) -> TestServer {
    TestServer::start(|c| common::busy(c, lag_limit_ms))
}

#[test]
fn stalled_reader_is_skipped_then_coalesced_while_others_get_every_tick() {
    let server = busy_server(120_000);
    let mut steady = Client::watching(&server);
    let mut stalled = Client::watching_small_rcvbuf(&server, 4096);
    stalled.recv_until(|m| matches!(m, ServerMsg::Full { .. }));
    let stalled_at = stalled.mirror.tick().unwrap();

    // Keep the steady client reading until the server has skipped the stalled one for a while.
    let deadline = Instant::now() + WAIT_MAX;
    let steady_from = steady.ticks.len();
    let mut max_queued = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never skipped"
        );
        for _ in 0..10 {
            steady.recv();
        }
        max_queued = max_queued.max(server.metric("tickcast_queued_bytes"));
        if server.metric("tickcast_updates_skipped_total") >= 20 {
            break;
        }
    }
    // The server's own accounting: what it holds for the stalled client stays bounded by the high-water
    // mark plus one update, far under the hard limit.
    assert!(
        max_queued < common::BUSY_SEND_LIMIT as u64,
        "queued {max_queued} bytes"
    );
    assert_eq!(server.metric("tickcast_slow_consumer_closes_total"), 0);
    // The steady client got every tick, one by one.
    steady.assert_every_tick_since(steady_from);
    assert_eq!(steady.mirror.coalesced, 0);

    // The stalled client reads again: it catches up with one coalesced delta (or a Full), then verifies.
    stalled.wait_for(|m| m.coalesced > 0 || m.fulls > 1);
    stalled.verify_checksums(1);
    assert!(stalled.mirror.tick().unwrap() > stalled_at + 20);
    assert!(server.metric("tickcast_updates_coalesced_total") >= 1);
    steady.verify_checksums(1);
    server.stop();
}

#[test]
fn reader_stalled_past_the_lag_limit_is_closed_with_4001() {
    let server = busy_server(500);
    let mut steady = Client::watching(&server);
    let mut stalled = Client::watching_small_rcvbuf(&server, 4096);
    stalled.recv_until(|m| matches!(m, ServerMsg::Full { .. }));
    let deadline = Instant::now() + WAIT_MAX;
    while server.metric("tickcast_slow_consumer_closes_total") == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never closed"
        );
        for _ in 0..10 {
            steady.recv();
        }
    }
    // What it reads now is what was already in flight, then the close frame.
    let (code, reason) = stalled.expect_close();
    assert_eq!(code, 4001, "{reason}");
    assert!(reason.contains("too slow"), "{reason}");
    // Nobody else paid for it, and once the client hangs up the server lets go of it.
    steady.verify_checksums(1);
    drop(stalled);
    let deadline = Instant::now() + WAIT_MAX;
    while server.metric("tickcast_websockets_open") != 1 {
        assert!(Instant::now() < deadline, "closed connection never reaped");
        steady.recv();
    }
    server.stop();
}
