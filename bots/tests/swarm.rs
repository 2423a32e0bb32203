//! The swarm against a real server through real sockets on 127.0.0.1: every behaviour connects, every
//! mirror matches every checksum (coalesced updates included), flappers and slow readers cost no unexpected
//! disconnect, flappers resume their players and keep their mirrors; and the bad cases are reported: a wrong checksum names the bot and the tick, a server that
//! kicks slow readers shows up as unexpected disconnects by close code; a server drain is expected.

mod common;

use bots::mix::Behaviour;
use bots::report::EndedBy;
use bots::Plan;
use common::{args, run_swarm, TestServer, WrongChecksumServer, WAIT_MAX};
use tickcast::metrics::CloseReason;

/// A server whose slow readers fall behind within a fraction of a second: a world big enough that every
/// tick's delta is a few KiB, and small send buffers (kernel and user space) before it skips a connection.
fn server_where_slow_readers_lag() -> TestServer {
    TestServer::start(|c| {
        c.npcs = 400;
        c.checksum_every_ticks = 5;
        c.send_hwm_bytes = 2048;
        c.tcp_notsent_lowat_bytes = 1024;
    })
}

#[test]
fn a_mixed_swarm_connects_follows_the_world_and_sees_no_unexpected_disconnect() {
    let server = server_where_slow_readers_lag();
    let url = server.url();
    // Slow bots read 8 KB/s of a stream about five times that, through a 2 KiB receive buffer, so the
    // server must skip them and send coalesced updates; flappers and rejoiners drop every 150-450 ms.
    let (report, errors) = run_swarm(args(
        &url,
        &[
            "--count",
            "33",
            "--duration",
            "3s",
            "--threads",
            "2",
            "--connect-rate",
            "200",
            "--mix",
            "wander=10,idle=3,slow=6,flapper=6,spectator=5,rejoiner=3",
            "--slow-bps",
            "8000",
            "--slow-rcvbuf-bytes",
            "2048",
            "--flap-ms",
            "300",
            "--retry-base-ms",
            "50",
        ],
    ));
    let metrics = server.stop();
    let summary = format!("{}\nerrors: {errors:?}", report.table());

    assert_eq!(report.bots_ever_connected, 33, "{summary}");
    assert_eq!(report.bots_never_connected, 0, "{summary}");
    assert_eq!(report.checksum_mismatches, 0, "{summary}");
    assert_eq!(report.protocol_errors, 0, "{summary}");
    assert_eq!(report.unexpected_disconnects, 0, "{summary}");
    assert!(errors.is_empty(), "{summary}");
    assert!(report.passed, "{summary}");
    assert!(report.checksums_verified > 0, "{summary}");
    for row in &report.behaviours {
        assert!(
            row.updates_per_sec > 0.0,
            "no updates for {}: {summary}",
            row.behaviour
        );
    }
    let row = |b: Behaviour| {
        report
            .behaviours
            .iter()
            .find(|r| r.behaviour == b.name())
            .unwrap()
    };
    // The slow path really ran: the server coalesced for slow readers, and the bots followed.
    assert!(row(Behaviour::Slow).coalesced_updates > 0, "{summary}");
    assert!(
        metrics.updates_coalesced + metrics.updates_full > 0,
        "{summary}"
    );
    assert!(row(Behaviour::Slow).checksums_verified > 0, "{summary}");
    // Flappers and rejoiners flapped, and each drop was expected; flappers resumed, rejoiners never did.
    for b in [Behaviour::Flapper, Behaviour::Rejoiner] {
        assert!(row(b).expected_disconnects > 0, "{b}: {summary}");
        assert!(row(b).checksums_verified > 0, "{b}: {summary}");
    }
    assert!(report.reconnects > 0, "{summary}");
    assert!(row(Behaviour::Flapper).resumes_honoured > 0, "{summary}");
    assert_eq!(row(Behaviour::Rejoiner).resumes_honoured, 0, "{summary}");
    assert_eq!(report.resumes.refused, 0, "{summary}");
    // Players measured their input latency; spectators and idle bots had none to measure.
    assert!(report.rtt_ms.samples > 0, "{summary}");
    assert_eq!(row(Behaviour::Spectator).rtt_ms.samples, 0, "{summary}");
    assert_eq!(row(Behaviour::Idle).rtt_ms.samples, 0, "{summary}");
}

/// `--verify-fraction`: skimming bots (here all of the wanderers, flappers and slow readers of the second
/// run) still follow every update in order, through coalesced deltas and resumes, and measure their own
/// acks; they count checksums unchecked. A fraction verifies exactly its share of the bots.
#[test]
fn skimming_bots_follow_the_updates_and_measure_their_acks_without_a_mirror() {
    let server = server_where_slow_readers_lag();
    let url = server.url();
    for (fraction, verifying) in [("0", 0), ("0.25", 4)] {
        let (report, errors) = run_swarm(args(
            &url,
            &[
                "--count",
                "16",
                "--duration",
                "3s",
                "--threads",
                "2",
                "--connect-rate",
                "200",
                "--mix",
                "wander=10,slow=3,flapper=3",
                "--slow-bps",
                "8000",
                "--slow-rcvbuf-bytes",
                "2048",
                "--flap-ms",
                "300",
                "--retry-base-ms",
                "50",
                "--verify-fraction",
                fraction,
            ],
        ));
        let summary = format!("{}\nerrors: {errors:?}", report.table());
        assert!(report.passed && errors.is_empty(), "{summary}");
        assert_eq!(report.bots_verifying, verifying, "{summary}");
        assert!(report.checksums_unchecked > 0, "{summary}");
        assert_eq!(report.checksums_verified > 0, verifying > 0, "{summary}");
        assert!(report.inputs.acked > 0, "{summary}");
        assert!(report.coalesced_updates > 0, "{summary}");
        assert!(report.resumes.honoured > 0, "{summary}");
        assert!(report.table().contains("verifying bots"), "{summary}");
    }
    server.stop();
}

#[test]
fn flappers_drop_abruptly_and_resume_from_a_delta_on_the_mirror_they_kept() {
    // The default history (128 ticks, 6.4 s at 20 Hz) and resume grace (10 s): a flapper is back within a
    // second, so every resume is honoured and its first update is a Delta from the tick it presented.
    let server = TestServer::start(|c| {
        c.npcs = 50;
        c.checksum_every_ticks = 5;
    });
    let (report, errors) = run_swarm(args(
        &server.url(),
        &[
            "--count",
            "12",
            "--duration",
            "4s",
            "--threads",
            "2",
            "--mix",
            "flapper=3,wander=1",
            "--flap-ms",
            "300",
            "--retry-base-ms",
            "50",
        ],
    ));
    let metrics = server.stop();
    let summary = format!(
        "{}
errors: {errors:?}
server: {} resumes, {} refused, {} sessions expired",
        report.table(),
        metrics.resumes,
        metrics.resumes_refused,
        metrics.sessions_expired
    );
    let flapper = report
        .behaviours
        .iter()
        .find(|r| r.behaviour == "flapper")
        .unwrap();
    let r = report.resumes;
    // Every flapper drops every 150-450 ms, so about ten times in the run; each drop is followed by a
    // resume that is honoured.
    assert!(r.honoured >= 9, "{summary}");
    assert_eq!(flapper.resumes_honoured, r.honoured, "{summary}");
    assert_eq!(r.refused, 0, "{summary}");
    assert_eq!(metrics.resumes_refused, 0, "{summary}");
    // A resume the bots saw answered is one the server made (it may have made a few whose Joined was
    // still on the way when the flapper dropped again).
    assert!(metrics.resumes >= r.honoured, "{summary}");
    assert!(r.asked >= r.honoured, "{summary}");
    // The first update after a resume was a Delta from the tick the bot presented, applied to the mirror
    // it kept (a Delta from any other tick is a protocol error), never a Full.
    assert!(r.first_update_delta > 0, "{summary}");
    assert_eq!(r.first_update_full, 0, "{summary}");
    assert!(r.first_update_delta <= r.honoured, "{summary}");
    // And the kept mirrors stayed right: checksums verified across resumes, none failed.
    assert!(flapper.checksums_verified > 0, "{summary}");
    assert_eq!(report.checksum_mismatches, 0, "{summary}");
    assert_eq!(report.protocol_errors, 0, "{summary}");
    assert_eq!(report.unexpected_disconnects, 0, "{summary}");
    assert!(flapper.expected_disconnects >= 9, "{summary}");
    assert!(errors.is_empty(), "{summary}");
    assert!(report.passed, "{summary}");
    // Nobody waited out the grace period: every dropped player was taken back.
    assert_eq!(metrics.sessions_expired, 0, "{summary}");
}

#[test]
fn flappers_whose_resumes_are_refused_start_over_as_new_players() {
    // `--resume-grace-ms 0`: a dropped player leaves at once, so every resume names no live player.
    let server = TestServer::start(|c| {
        c.npcs = 20;
        c.checksum_every_ticks = 5;
        c.resume_grace_ms = 0;
    });
    let (report, errors) = run_swarm(args(
        &server.url(),
        &[
            "--count",
            "4",
            "--duration",
            "3s",
            "--mix",
            "flapper",
            "--flap-ms",
            "300",
            "--retry-base-ms",
            "50",
        ],
    ));
    let metrics = server.stop();
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    let r = report.resumes;
    assert!(r.refused >= 4, "{summary}");
    assert_eq!(r.honoured, 0, "{summary}");
    assert_eq!(metrics.resumes, 0, "{summary}");
    assert!(metrics.resumes_refused >= r.refused, "{summary}");
    // Each refusal dropped the mirror: the new player's Full is its first update, and every checksum after
    // it matched.
    assert_eq!(r.first_update_delta + r.first_update_full, 0, "{summary}");
    assert!(report.checksums_verified > 0, "{summary}");
    assert_eq!(report.checksum_mismatches, 0, "{summary}");
    assert_eq!(report.protocol_errors, 0, "{summary}");
    assert_eq!(report.resyncs, 0, "{summary}");
    assert!(report.passed, "{summary}");
}

#[test]
fn a_wrong_checksum_is_an_error_naming_the_bot_and_the_tick() {
    let fake = WrongChecksumServer::start();
    let (report, errors) = run_swarm(args(
        &fake.url(),
        &[
            "--count",
            "1",
            "--duration",
            "1s",
            "--mix",
            "spectator",
            "--retry-base-ms",
            "50",
        ],
    ));
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert!(report.checksum_mismatches >= 1, "{summary}");
    assert!(!report.passed, "{summary}");
    let first = &errors[0];
    assert_eq!(
        (first.bot, first.tick, first.connection),
        (0, Some(1), 99),
        "{summary}"
    );
    assert!(report.errors[0].starts_with("bot 0 "), "{summary}");
    assert!(report.errors[0].contains("tick 1"), "{summary}");
    // Hanging up after the error is the bot's choice, not a disconnect to blame on the server.
    assert_eq!(report.unexpected_disconnects, 0, "{summary}");
}

#[test]
fn a_server_that_kicks_slow_readers_shows_unexpected_disconnects_by_close_code() {
    // No update may wait more than 100 ms: a slow reader is closed with 4001 instead of coalesced for. The
    // slow bots read fast enough (12 KB/s of a stream about three times that) to reach the close frame
    // behind the few KiB already queued to them.
    let server = TestServer::start(|c| {
        c.npcs = 400;
        c.send_hwm_bytes = 1024;
        c.tcp_notsent_lowat_bytes = 1024;
        c.lag_limit_ms = 100;
    });
    let (report, _) = run_swarm(args(
        &server.url(),
        &[
            "--count",
            "4",
            "--duration",
            "3s",
            "--mix",
            "wander=1,slow=1",
            "--slow-bps",
            "12000",
            "--slow-rcvbuf-bytes",
            "2048",
            "--retry-base-ms",
            "50",
        ],
    ));
    let metrics = server.stop();
    let summary = report.table();
    assert!(metrics.closed_count(CloseReason::Lagging) > 0, "{summary}");
    assert!(report.unexpected_disconnects > 0, "{summary}");
    assert!(!report.passed, "{summary}");
    let lagging = report
        .disconnects
        .iter()
        .find(|d| d.code == Some(tickcast::proto::close::LAGGING))
        .unwrap_or_else(|| panic!("no 4001 in {summary}"));
    assert!(!lagging.expected, "{summary}");
    // Only slow readers were kicked.
    let wander = report
        .behaviours
        .iter()
        .find(|r| r.behaviour == "wander")
        .unwrap();
    assert_eq!(wander.unexpected_disconnects, 0, "{summary}");
}

#[test]
fn a_server_drain_is_an_expected_disconnect_and_ends_the_run() {
    let server = TestServer::start(|_| {});
    let plan = Plan::new(args(&server.url(), &["--count", "5", "--duration", "60s"])).unwrap();
    let (connected_tx, connected) = crossbeam_channel::bounded(1);
    let (_no_stop, stop) = crossbeam_channel::bounded::<()>(1);
    let swarm = std::thread::spawn(move || {
        let on_progress = |p: &bots::Progress| {
            if p.connected == 5 {
                let _ = connected_tx.try_send(());
            }
        };
        bots::run(plan, &stop, on_progress, |_| {}).unwrap()
    });
    connected
        .recv_timeout(WAIT_MAX)
        .expect("every bot connected");
    server.stop();
    let report = swarm.join().unwrap();
    let summary = report.table();
    // Every bot was told 1001 and stayed down, which ended the run before its duration.
    assert_eq!(report.ended_by, EndedBy::AllBotsDown, "{summary}");
    let going_away = report
        .disconnects
        .iter()
        .find(|d| d.code == Some(tickcast::proto::close::GOING_AWAY))
        .unwrap_or_else(|| panic!("no 1001 in {summary}"));
    assert_eq!(
        (going_away.count, going_away.expected),
        (5, true),
        "{summary}"
    );
    assert_eq!(report.unexpected_disconnects, 0, "{summary}");
    assert!(report.passed, "{summary}");
}

/// A local port with nothing listening on it (bound, then released).
fn free_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn bots_that_cannot_connect_retry_a_bounded_number_of_times_then_give_up() {
    let addr = free_port();
    let (report, _) = run_swarm(args(
        &format!("ws://{addr}/ws"),
        &[
            "--count",
            "3",
            "--duration",
            "60s",
            "--connect-attempts",
            "3",
            "--retry-base-ms",
            "10",
            "--retry-max-ms",
            "20",
        ],
    ));
    let summary = report.table();
    assert_eq!(
        report.connect_failures.get("tcp connect"),
        Some(&9),
        "{summary}"
    );
    assert_eq!(report.bots_gave_up, 3, "{summary}");
    assert_eq!(report.bots_never_connected, 3, "{summary}");
    // With every bot given up, the run ends on its own.
    assert_eq!(report.ended_by, EndedBy::AllBotsDown, "{summary}");
    assert!(!report.passed, "{summary}");
}

#[test]
fn bots_keep_retrying_until_a_late_server_comes_up() {
    let addr = free_port();
    let plan = Plan::new(args(
        &format!("ws://{addr}/ws"),
        &[
            "--count",
            "3",
            "--duration",
            "60s",
            "--connect-attempts",
            "100",
            "--retry-base-ms",
            "20",
            "--retry-max-ms",
            "200",
        ],
    ))
    .unwrap();
    let (first_progress_tx, first_progress) = crossbeam_channel::bounded(1);
    let (all_connected_tx, all_connected) = crossbeam_channel::bounded(1);
    let (stop_tx, stop) = crossbeam_channel::bounded::<()>(1);
    let swarm = std::thread::spawn(move || {
        let on_progress = |p: &bots::Progress| {
            let _ = first_progress_tx.try_send(());
            if p.connected == 3 {
                let _ = all_connected_tx.try_send(());
            }
        };
        bots::run(plan, &stop, on_progress, |_| {}).unwrap()
    });
    // A second into the run every bot has failed at least once: nothing listened until now.
    first_progress
        .recv_timeout(WAIT_MAX)
        .expect("the run started");
    let server = TestServer::start(|c| c.listen = addr);
    all_connected
        .recv_timeout(WAIT_MAX)
        .expect("every bot connected");
    stop_tx.send(()).unwrap();
    let report = swarm.join().unwrap();
    server.stop();
    let summary = report.table();
    assert!(
        report
            .connect_failures
            .get("tcp connect")
            .is_some_and(|n| *n >= 3),
        "{summary}"
    );
    assert_eq!(report.bots_ever_connected, 3, "{summary}");
    assert_eq!(report.bots_gave_up, 0, "{summary}");
    assert_eq!(report.ended_by, EndedBy::Interrupted, "{summary}");
    assert!(report.passed, "{summary}");
}
