//! The Agones lifecycle (`--agones`) against a small local HTTP server standing in for the Agones SDK
//! sidecar, which cannot run here (it needs a Kubernetes cluster with Agones installed): it records the
//! method, path, headers and body of every request, as Agones's REST API documents them, and answers
//! `200 {}` (or the status a test asks for). Checked: Ready first, Health repeating while the loop turns
//! and never while it does not (a loop stepped by hand stands for a stalled one), the players Counter
//! following a player in and out, and Shutdown only after the drain closed every connection.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Client, TestServer, UPGRADE, WAIT_MAX};
use tickcast::clock::ManualClock;
use tickcast::sim::arena::ArenaSettings;
use tickcast::{Config, Server};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;

/// One request as the sidecar saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    body: String,
}

/// The stand-in sidecar: a thread accepting on 127.0.0.1:0, at most `REQUESTS_MAX` requests.
struct Sidecar {
    port: u16,
    rx: mpsc::Receiver<Seen>,
    /// Everything received so far, in order.
    seen: Vec<Seen>,
}

const REQUESTS_MAX: usize = 5_000;

impl Sidecar {
    /// Answers every request with `status_for(path)` and a `{}` body.
    fn start(status_for: fn(&str) -> u16) -> Sidecar {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(REQUESTS_MAX) {
                let Ok(stream) = stream else { continue };
                let Some(seen) = serve(stream, status_for) else {
                    continue;
                };
                if tx.send(seen).is_err() {
                    return;
                }
            }
        });
        Sidecar {
            port,
            rx,
            seen: Vec::new(),
        }
    }

    /// Takes what arrived since the last call, without waiting.
    fn take(&mut self) -> &[Seen] {
        while let Ok(seen) = self.rx.try_recv() {
            self.seen.push(seen);
        }
        &self.seen
    }

    /// Waits (at most `WAIT_MAX`) until `done` holds for everything received so far.
    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&[Seen]) -> bool) {
        let deadline = Instant::now() + WAIT_MAX;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(seen) => self.seen.push(seen),
                Err(_) => panic!("{what}: never came; the sidecar saw {:#?}", self.seen),
            }
        }
    }

    fn count(&self, path: &str) -> usize {
        self.seen.iter().filter(|s| s.path == path).count()
    }
}

/// Reads one request (head and `Content-Length` body) and answers it.
fn serve(mut stream: TcpStream, status_for: fn(&str) -> u16) -> Option<Seen> {
    stream.set_read_timeout(Some(WAIT_MAX)).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    assert_eq!(words.next(), Some("HTTP/1.1"), "{line}");
    let (mut length, mut content_type) = (0, None);
    for _ in 0..64 {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "content-type" => content_type = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let status = status_for(&path);
    let answer = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let _ = stream.write_all(answer.as_bytes());
    Some(Seen {
        method,
        path,
        content_type,
        body: String::from_utf8(body).ok()?,
    })
}

fn all_ok(_: &str) -> u16 {
    200
}

/// The way Agones documents each call: method, body, JSON.
fn assert_call(seen: &Seen, method: &str, path: &str, body: &str) {
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str(), seen.body.as_str()),
        (method, path, body),
        "{seen:?}"
    );
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/json"),
        "{seen:?}"
    );
}

#[test]
fn ready_health_players_and_shutdown_after_the_drain() {
    let mut sidecar = Sidecar::start(all_ok);
    let port = sidecar.port.to_string();
    let (mut child, mut stderr, addr) = common::spawn_listening(&[
        "--listen",
        "127.0.0.1:0",
        "--npcs",
        "0",
        "--tick-hz",
        "50",
        "--drain-timeout-ms",
        "60000",
        "--close-linger-ms",
        "60000",
        "--agones",
        "--agones-health-interval-ms",
        "100",
        "--agones-sdk-port",
        &port,
        "--agones-players-counter",
        "players",
    ]);
    // Lines the server writes later (the sidecar answering) must not fill a pipe nobody reads.
    std::thread::spawn(move || {
        let mut rest = String::new();
        while stderr.read_line(&mut rest).is_ok_and(|n| n > 0) {}
    });
    let server = TestServer::external(addr);

    // Ready first, then Health period after period while the loop turns.
    sidecar.wait_until("Ready and three Health", |s| {
        s.iter().filter(|s| s.path == "/health").count() >= 3
    });
    assert_call(&sidecar.seen[0], "POST", "/ready", "{}");
    assert_eq!(
        sidecar.count("/ready"),
        1,
        "Ready once: {:#?}",
        sidecar.seen
    );
    for health in sidecar.seen.iter().filter(|s| s.path == "/health") {
        assert_call(health, "POST", "/health", "{}");
    }
    // No player yet: the Counter is set to 0.
    let counter = "/v1beta1/counters/players";
    sidecar.wait_until("the players Counter at 0", |s| {
        s.iter().any(|s| s.path == counter)
    });
    let first = sidecar.seen.iter().find(|s| s.path == counter).unwrap();
    assert_call(first, "PATCH", counter, r#"{"count":"0"}"#);

    // A player comes: 1; it leaves (close 1000): 0 again.
    let mut player = Client::connect(&server);
    player.hello("p");
    sidecar.wait_until("the players Counter at 1", |s| {
        s.iter()
            .any(|s| s.path == counter && s.body == r#"{"count":"1"}"#)
    });
    let before = sidecar.count(counter);
    player
        .ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .unwrap();
    while player.ws.read().is_ok() {}
    // Hung up too: the server waits (--close-linger-ms) for the end of the TCP stream after a close.
    drop(player);
    sidecar.wait_until("the players Counter back at 0", |s| {
        s.iter()
            .filter(|s| s.path == counter)
            .skip(before)
            .any(|s| s.body == r#"{"count":"0"}"#)
    });
    // Set on change only: one PATCH per count seen (0, 1, 0), not one per period.
    assert_eq!(sidecar.count(counter), 3, "{:#?}", sidecar.seen);
    let metrics = server.get("/metrics").1;
    for (request, result) in [("ready", "ok"), ("health", "ok"), ("players", "ok")] {
        let line =
            format!("tickcast_agones_requests_total{{request=\"{request}\",result=\"{result}\"}} ");
        let value: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("{line} missing:\n{metrics}"))
            .parse()
            .unwrap();
        assert!(value >= 1, "{line}{value}");
    }

    // SIGTERM drains. A WebSocket that never reads keeps the drain open: no Shutdown while it is.
    let lingering = TcpStream::connect(addr).unwrap();
    (&lingering).write_all(UPGRADE).unwrap();
    let mut watcher = Client::watching(&server);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(watcher.expect_close().0, 1001);
    let healths = sidecar.count("/health");
    // Health goes on through the drain (the loop still turns); Shutdown has not come.
    sidecar.wait_until("Health during the drain", |s| {
        s.iter().filter(|s| s.path == "/health").count() > healths
    });
    assert_eq!(sidecar.count("/shutdown"), 0, "{:#?}", sidecar.seen);

    // The last connection goes: the drain is over, Shutdown is the last call, the process exits 0.
    drop(lingering);
    drop(watcher);
    sidecar.wait_until("Shutdown", |s| s.iter().any(|s| s.path == "/shutdown"));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let last = sidecar.take().last().unwrap().clone();
    assert_call(&last, "POST", "/shutdown", "{}");
    assert_eq!(sidecar.count("/shutdown"), 1);
}

#[test]
fn no_health_while_the_loop_does_not_turn() {
    // The loop runs in this thread, turned by hand under a manual clock: while the test does not turn
    // it, it is exactly a stalled loop (its timers do not run), while the helper thread goes on.
    let mut sidecar = Sidecar::start(|path| match path {
        // A Counter the GameServer does not declare: Agones answers 404 NOT_FOUND.
        "/v1beta1/counters/seats" => 404,
        _ => 200,
    });
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tick_hz: 20,
        agones: true,
        agones_sdk_port: Some(sidecar.port),
        agones_health_interval_ms: 100,
        agones_players_counter: Some("seats".into()),
        ..Config::default()
    };
    let clock = ManualClock::new(Instant::now());
    let arena = ArenaSettings {
        npcs: 0,
        ..ArenaSettings::default()
    };
    let mut server = Server::bind_with_clock(cfg, clock.clone(), arena.room_types()).unwrap();
    let skipped = |server: &Server<_, _>| server.gauges().agones.unwrap().health_skipped;
    let wait_skipped = |server: &Server<_, _>, n: u64| {
        let deadline = Instant::now() + WAIT_MAX;
        while skipped(server) < n {
            assert!(Instant::now() < deadline, "the helper never judged");
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    // Nothing before the loop runs: its first timer pass sends Ready.
    clock.advance(Duration::from_millis(50));
    for _ in 0..3 {
        server.turn(Some(Duration::ZERO)).unwrap();
    }
    sidecar.wait_until("Ready", |s| s.iter().any(|s| s.path == "/ready"));
    // Two periods judged with the loop standing still: no Health.
    wait_skipped(&server, 2);
    sidecar.take();
    assert_eq!(sidecar.count("/health"), 0, "{:#?}", sidecar.seen);
    assert_eq!(sidecar.count("/ready"), 1, "{:#?}", sidecar.seen);

    // The loop runs its timers once: Health follows.
    clock.advance(Duration::from_millis(50));
    for _ in 0..3 {
        server.turn(Some(Duration::ZERO)).unwrap();
    }
    sidecar.wait_until("Health after a turn", |s| {
        s.iter().any(|s| s.path == "/health")
    });
    // Stalled again: two more periods judged, still that one Health.
    let judged = skipped(&server);
    wait_skipped(&server, judged + 2);
    sidecar.take();
    assert_eq!(sidecar.count("/health"), 1, "{:#?}", sidecar.seen);

    // The Counter the sidecar refuses is counted as failed, and tried again (it is never taken as set).
    sidecar.wait_until("the refused Counter, twice", |s| {
        s.iter()
            .filter(|s| s.path == "/v1beta1/counters/seats")
            .count()
            >= 2
    });
    let stats = server.gauges().agones.unwrap();
    let players = tickcast::agones::Request::Players as usize;
    assert!(stats.failed[players] >= 2, "{stats:?}");
    assert_eq!(stats.ok[players], 0, "{stats:?}");
    // Dropped without a drain (no run): the helper stops and says nothing more, no Shutdown.
    drop(server);
}

#[test]
fn agones_flags_are_checked() {
    let cfg = |interval: u64| Config {
        agones: true,
        agones_sdk_port: Some(9358),
        agones_health_interval_ms: interval,
        ..Config::default()
    };
    // Under two --tick-hz periods (50 ms each at 20 Hz) or 100 ms, Health could not prove a turn.
    let err = cfg(99).validate().unwrap_err();
    assert!(err.contains("--agones-health-interval-ms"), "{err}");
    assert!(cfg(100).validate().is_ok());
    assert!(cfg(60_001).validate().is_err());
}
