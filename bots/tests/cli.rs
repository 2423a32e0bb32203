//! The `bots` binary as a developer runs it: the table on stdout, the JSON file with its top-level keys,
//! the live line on stderr, the exit status, and Ctrl-C that stops the run and still prints the report.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{TestServer, WAIT_MAX};

fn bots() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bots"))
}

fn json_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tickcast-bots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_clean_run_prints_the_table_writes_the_json_and_exits_zero() {
    let server = TestServer::start(|c| c.npcs = 20);
    let path = json_path("clean.json");
    let out = bots()
        .args([
            "--url",
            &server.url(),
            "--count",
            "6",
            "--duration",
            "2s",
            "--threads",
            "2",
        ])
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    server.stop();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("result: PASS"), "{stdout}");
    assert!(stdout.contains("input -> ack ms"), "{stdout}");
    // The live line comes once a second, before the run's end at two seconds.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("connected") && l.contains("ack p99")),
        "{stderr}"
    );

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for key in [
        "connected",
        "checksum_mismatches",
        "updates_per_sec",
        "bytes_per_sec",
    ] {
        assert!(json[key].is_number(), "{key} in {json:#}");
    }
    for key in ["coalesced_updates", "unexpected_disconnects"] {
        assert!(json[key].is_number(), "{key} in {json:#}");
    }
    for q in ["p50", "p90", "p99", "max"] {
        assert!(json["rtt_ms"][q].is_number(), "rtt_ms.{q} in {json:#}");
    }
    assert_eq!(json["connected"], 6);
    assert_eq!(json["checksum_mismatches"], 0);
    assert_eq!(json["unexpected_disconnects"], 0);
    assert!(json["updates_per_sec"].as_f64().unwrap() > 0.0);
    assert!(json["rtt_ms"]["samples"].as_u64().unwrap() > 0);
}

#[test]
fn unexpected_disconnects_make_the_exit_status_non_zero() {
    let server = TestServer::start(|c| {
        c.npcs = 400;
        c.send_hwm_bytes = 1024;
        c.tcp_notsent_lowat_bytes = 1024;
        c.lag_limit_ms = 100;
    });
    let path = json_path("kicked.json");
    let out = bots()
        .args([
            "--url",
            &server.url(),
            "--count",
            "2",
            "--duration",
            "3s",
            "--mix",
            "slow",
        ])
        .args([
            "--slow-bps",
            "12000",
            "--slow-rcvbuf-bytes",
            "2048",
            "--retry-base-ms",
            "50",
        ])
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    server.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("result: FAIL"), "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        json["unexpected_disconnects"].as_u64().unwrap() > 0,
        "{json:#}"
    );
    assert_eq!(json["passed"], false);
}

#[test]
fn ctrl_c_stops_the_run_cleanly_and_still_prints_the_report() {
    let server = TestServer::start(|_| {});
    let path = json_path("interrupted.json");
    let mut child = bots()
        .args(["--url", &server.url(), "--count", "4", "--duration", "10m"])
        .arg("--json")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first live line: the bots are running.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + WAIT_MAX;
    let mut line = String::new();
    while !line.contains("ack p99") {
        assert!(
            Instant::now() < deadline,
            "no progress line within {WAIT_MAX:?}"
        );
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "bots exited early"
        );
    }
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let out = child.wait_with_output().unwrap();
    server.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["ended_by"], "interrupted");
    assert_eq!(json["connected"], 4);
}
