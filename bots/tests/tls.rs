//! The bots over TLS (`wss://`, `https://`) through real sockets on 127.0.0.1, against servers serving
//! TLS with a certificate made at test time (rcgen; no key is committed): a mixed swarm trusting the
//! certificate with `--ca-file` connects, follows the world and matches every checksum (slow readers
//! and flappers included, with no unexpected disconnect); `--insecure` plays without verifying and says
//! so at the start; a draining server's 1001 is read through TLS and is expected; a certificate the
//! bots do not trust fails every attempt as `tls`, and the server sees the bots' alerts; a self-signed
//! certificate that says it is a CA (openssl's default) is trusted through `--ca-file` for its own
//! names, and for no other; plain `ws://`
//! to a TLS port is refused; `--matchmake https://` places the bots on a standalone process (its path
//! answer becomes `wss://`) and on a cluster whose processes answer their absolute `wss://` public URLs.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use bots::mix::Behaviour;
use bots::report::EndedBy;
use bots::Plan;
use common::cluster::Cluster;
use common::tls::{tls_server, TestCert};
use common::{args, run_swarm, WAIT_MAX};
use tickcast::net::tls::TlsFailure;

/// The wss:// URL of a TLS test server's default room, by IP address (the certificate names
/// 127.0.0.1 as an IP address too).
fn wss_url(server: &common::TestServer) -> String {
    format!("wss://{}/ws", server.addr)
}

#[test]
fn a_mixed_swarm_plays_over_wss_trusting_the_test_certificate_and_every_checksum_verifies() {
    let cert = TestCert::new("swarm");
    // As in swarm.rs: a world whose deltas are a few KiB and small send buffers, so the slow readers
    // fall behind (now with TLS's own buffer in the way too) and the server must skip and coalesce; a
    // checksum every tick, so that each update a slow reader gets is checked.
    let server = tls_server(&cert, |c| {
        c.npcs = 400;
        c.checksum_every_ticks = 1;
        c.send_hwm_bytes = 2048;
        c.tcp_notsent_lowat_bytes = 1024;
    });
    let url = wss_url(&server);
    let [ca, pem] = cert.ca_flag();
    let (report, errors) = run_swarm(args(
        &url,
        &[
            &ca,
            &pem,
            "--count",
            "20",
            "--duration",
            "3s",
            "--threads",
            "2",
            "--connect-rate",
            "200",
            "--mix",
            "wander=8,slow=4,flapper=4,spectator=4",
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
    let summary = format!(
        "{}\nerrors: {errors:?}\nserver: {} TLS handshakes, failures {:?}",
        report.table(),
        metrics.tls_handshakes,
        metrics.tls_failures
    );

    assert_eq!(report.bots_ever_connected, 20, "{summary}");
    assert_eq!(report.bots_never_connected, 0, "{summary}");
    assert!(report.connect_failures.is_empty(), "{summary}");
    assert_eq!(report.checksum_mismatches, 0, "{summary}");
    assert_eq!(report.protocol_errors, 0, "{summary}");
    assert_eq!(report.unexpected_disconnects, 0, "{summary}");
    assert!(errors.is_empty(), "{summary}");
    assert!(report.passed, "{summary}");
    let row = |b: Behaviour| {
        report
            .behaviours
            .iter()
            .find(|r| r.behaviour == b.name())
            .unwrap()
    };
    for b in [
        Behaviour::Wander,
        Behaviour::Slow,
        Behaviour::Flapper,
        Behaviour::Spectator,
    ] {
        assert!(row(b).checksums_verified > 0, "{b}: {summary}");
        assert!(row(b).updates_per_sec > 0.0, "{b}: {summary}");
    }
    // Slow readers through TLS were skipped and sent coalesced updates, and their mirrors followed.
    assert!(row(Behaviour::Slow).coalesced_updates > 0, "{summary}");
    // Flappers dropped and came back over new TLS connections, resuming their players.
    assert!(
        row(Behaviour::Flapper).expected_disconnects > 0,
        "{summary}"
    );
    assert!(row(Behaviour::Flapper).resumes_honoured > 0, "{summary}");
    assert!(report.reconnects > 0, "{summary}");
    assert!(report.rtt_ms.samples > 0, "{summary}");
    // Every connection was a TLS handshake the server completed (flappers' included), none failed.
    assert!(
        metrics.tls_handshakes >= 20 + report.reconnects,
        "{summary}"
    );
    assert_eq!(
        metrics.tls_failures,
        [0; TlsFailure::ALL.len()],
        "{summary}"
    );
}

#[test]
fn insecure_bots_play_without_verifying_the_certificate_and_say_so_at_the_start() {
    let cert = TestCert::new("insecure");
    let server = tls_server(&cert, |c| {
        c.npcs = 20;
        c.checksum_every_ticks = 5;
    });
    // The binary, as a developer runs it: no --ca-file, so only --insecure lets the self-signed
    // certificate through.
    let out = Command::new(env!("CARGO_BIN_EXE_bots"))
        .args(["--url", &wss_url(&server), "--insecure"])
        .args(["--count", "4", "--duration", "2s", "--threads", "1"])
        .output()
        .unwrap();
    let metrics = server.stop();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("result: PASS"), "{stdout}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("bots: WARNING: --insecure: server certificates are NOT verified"),
        "the warning comes first: {stderr}"
    );
    assert!(metrics.tls_handshakes >= 4, "{stdout}\n{stderr}");

    // --help says it too.
    let help = Command::new(env!("CARGO_BIN_EXE_bots"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--insecure") && help.contains("DANGEROUS"),
        "{help}"
    );
    assert!(help.contains("--ca-file <PEM>"), "{help}");
    // Both together make no sense: refused as a bad flag (exit status 2).
    let both = Command::new(env!("CARGO_BIN_EXE_bots"))
        .args(["--url", "wss://127.0.0.1:9/ws", "--insecure", "--ca-file"])
        .arg(&cert.cert)
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "{both:?}");
}

#[test]
fn a_tls_server_draining_is_an_expected_disconnect_read_through_tls_and_ends_the_run() {
    let cert = TestCert::new("drain");
    let server = tls_server(&cert, |c| c.npcs = 4);
    let [ca, pem] = cert.ca_flag();
    let plan = Plan::new(args(
        &wss_url(&server),
        &[&ca, &pem, "--count", "5", "--duration", "60s"],
    ))
    .unwrap();
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
    // Every bot read the server's 1001 close frame through TLS and stayed down, which ended the run
    // before its duration.
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

#[test]
fn a_certificate_the_bots_do_not_trust_fails_every_attempt_as_tls() {
    let served = TestCert::new("untrusted-served");
    let other = TestCert::new("untrusted-other");
    let server = tls_server(&served, |c| c.npcs = 4);
    let [ca, pem] = other.ca_flag();
    let (report, errors) = run_swarm(args(
        &wss_url(&server),
        &[
            &ca,
            &pem,
            "--count",
            "3",
            "--duration",
            "2s",
            "--threads",
            "1",
            "--connect-attempts",
            "2",
            "--retry-base-ms",
            "50",
        ],
    ));
    let metrics = server.stop();
    let summary = format!(
        "{}\nerrors: {errors:?}\nserver: {} TLS handshakes, failures {:?}",
        report.table(),
        metrics.tls_handshakes,
        metrics.tls_failures
    );
    assert!(!report.passed, "{summary}");
    assert_eq!(report.bots_never_connected, 3, "{summary}");
    assert_eq!(report.bots_gave_up, 3, "{summary}");
    assert_eq!(
        report.connect_failures.get("tls"),
        Some(&6),
        "2 attempts for each of 3 bots, each refused in the handshake: {summary}"
    );
    assert_eq!(report.connect_failures.len(), 1, "{summary}");
    assert_eq!(metrics.tls_handshakes, 0, "{summary}");
    // Every attempt's handshake failed on the server too, and the bots told it why: a TLS alert
    // (unknown issuer), sent before they closed.
    assert_eq!(metrics.tls_failures.iter().sum::<u64>(), 6, "{summary}");
    assert!(
        metrics.tls_failures[TlsFailure::Alert as usize] > 0,
        "{summary}"
    );
}

#[test]
fn a_self_signed_certificate_that_says_it_is_a_ca_is_trusted_with_ca_file_for_its_names_only() {
    // openssl req -x509 marks its self-signed certificate CA:TRUE; webpki alone refuses that as a
    // server's own certificate, --ca-file trusts it when the server shows exactly that certificate.
    let cert = TestCert::made("ca-flagged", &["localhost", "127.0.0.1"], true);
    let server = tls_server(&cert, |c| {
        c.npcs = 4;
        c.checksum_every_ticks = 5;
    });
    let [ca, pem] = cert.ca_flag();
    let flags = [
        &ca,
        &pem,
        "--count",
        "3",
        "--duration",
        "2s",
        "--threads",
        "1",
    ];
    let (report, errors) = run_swarm(args(&wss_url(&server), &flags));
    server.stop();
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert!(report.passed, "{summary}");
    assert_eq!(report.bots_ever_connected, 3, "{summary}");
    assert!(report.connect_failures.is_empty(), "{summary}");
    assert!(report.checksums_verified > 0, "{summary}");

    // The same kind of certificate for another name: the exception trusts the certificate for its
    // names, not for the address, so every attempt at 127.0.0.1 fails its handshake.
    let elsewhere = TestCert::made("ca-flagged-elsewhere", &["game.invalid"], true);
    let server = tls_server(&elsewhere, |c| c.npcs = 4);
    let [ca, pem] = elsewhere.ca_flag();
    let flags = [
        &ca,
        &pem,
        "--count",
        "2",
        "--duration",
        "1s",
        "--threads",
        "1",
        "--connect-attempts",
        "1",
    ];
    let (report, errors) = run_swarm(args(&wss_url(&server), &flags));
    let metrics = server.stop();
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert!(!report.passed, "{summary}");
    assert_eq!(report.bots_never_connected, 2, "{summary}");
    assert_eq!(report.connect_failures.get("tls"), Some(&2), "{summary}");
    assert_eq!(metrics.tls_handshakes, 0, "{summary}");
}

#[test]
fn plain_ws_to_a_tls_port_is_refused_at_the_upgrade() {
    let cert = TestCert::new("plain");
    let server = tls_server(&cert, |c| c.npcs = 4);
    let (report, errors) = run_swarm(args(
        &server.url(),
        &[
            "--count",
            "2",
            "--duration",
            "1s",
            "--threads",
            "1",
            "--connect-attempts",
            "1",
        ],
    ));
    server.stop();
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert!(!report.passed, "{summary}");
    assert_eq!(report.bots_never_connected, 2, "{summary}");
    // The server answers a plain request on its TLS port with a plain 400.
    assert_eq!(
        report.connect_failures.get("http 400"),
        Some(&2),
        "{summary}"
    );
}

#[test]
fn bots_matchmake_over_https_on_a_standalone_process_and_play_over_wss() {
    let cert = TestCert::new("matchmake");
    let server = tls_server(&cert, |c| {
        c.npcs = 3;
        c.checksum_every_ticks = 5;
    });
    let base = format!("https://{}", server.addr);
    let [ca, pem] = cert.ca_flag();
    let mut argv = vec!["bots", "--matchmake", &base, &ca, &pem];
    argv.extend([
        "--rooms",
        "2",
        "--room-size",
        "2",
        "--duration",
        "2s",
        "--threads",
        "1",
    ]);
    let (report, errors) = run_swarm(<bots::Args as clap::Parser>::parse_from(argv));
    let here = server.addr.to_string();
    let metrics = server.stop();
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert!(report.passed, "{summary}");
    assert!(errors.is_empty(), "{summary}");
    let m = report.matchmake.as_ref().unwrap();
    assert_eq!((m.requests, m.answered, m.placed), (4, 4, 4), "{summary}");
    assert!(m.failures.is_empty(), "{summary}");
    assert_eq!(report.bots_ever_connected, 4, "{summary}");
    // The answer's path resolved against https://ADDR/matchmake: wss:// on the same process.
    assert_eq!(report.processes.len(), 1, "{summary}");
    assert_eq!(report.processes[0].process, here, "{summary}");
    for room in &report.rooms {
        assert!(room.checksums_verified > 0, "{}: {summary}", room.name);
    }
    // Four matchmaking requests and four WebSockets, every one over TLS.
    assert_eq!(metrics.tls_handshakes, 8, "{summary}");
}

#[test]
fn bots_matchmake_over_https_in_a_tls_cluster_and_play_on_the_owners_wss_public_urls() {
    let cert = TestCert::new("cluster");
    let flags = [
        "--npcs",
        "3",
        "--checksum-every-ticks",
        "5",
        "--max-connections-per-ip",
        "0",
        "--accepts-per-ip-per-s",
        "0",
        "--max-rooms-per-ip",
        "0",
    ];
    let cluster = Cluster::start_tls(3, &flags, &cert);
    let base = cluster.http_url(0);
    assert!(base.starts_with("https://"), "{base}");
    let [ca, pem] = cert.ca_flag();
    let mut argv = vec!["bots", "--matchmake", &base, &ca, &pem];
    argv.extend([
        "--rooms",
        "6",
        "--room-size",
        "2",
        "--duration",
        "3s",
        "--threads",
        "2",
        "--connect-rate",
        "60",
        "--mix",
        "wander=1,flapper=1",
        "--flap-ms",
        "800",
    ]);
    let (report, errors) = run_swarm(<bots::Args as clap::Parser>::parse_from(argv));
    let summary = format!(
        "{}\nerrors: {errors:?}\nprocesses: {:#?}",
        report.table(),
        report.processes
    );
    assert!(report.passed, "{summary}");
    assert!(errors.is_empty(), "{summary}");
    assert_eq!(report.bots_ever_connected, 12, "{summary}");
    let m = report.matchmake.as_ref().unwrap();
    assert!(m.failures.is_empty(), "{summary}");
    assert!(m.placed >= 12, "{summary}");
    // Flappers came back through the matchmaker to their process and resumed.
    assert!(report.resumes.honoured > 0, "{summary}");
    for room in &report.rooms {
        assert_eq!(room.bots_ever_connected, 2, "{}: {summary}", room.name);
        assert!(room.checksums_verified > 0, "{}: {summary}", room.name);
        assert_eq!(room.processes.len(), 1, "{}: {summary}", room.name);
    }
    // Rooms on more than one process: some bots followed an absolute wss:// URL to another process
    // than the matchmaker's, checking its certificate there.
    let used: BTreeSet<&str> = report
        .rooms
        .iter()
        .map(|r| r.processes[0].as_str())
        .collect();
    assert!(used.len() > 1, "rooms spread: {summary}");
}
