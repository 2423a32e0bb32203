//! `--matchmake` (docs/LOAD-TESTING.md, "Matchmaking") through real sockets and real processes on
//! 127.0.0.1: a real `redis-server` and three real `tickcast` processes in one cluster, the bots asking
//! one of them where each room is. Every bot of a room lands on the process that holds it (and the
//! processes' own room lists and the directory in Redis agree), rooms spread over the processes, each
//! bot's mirror matches its room's checksums, flappers come back to their process and resume, and the
//! per-process report adds up to the run's figures. Also: "any room of a type" (`--matchmake-type`), one
//! standalone process (whose `connect` is a path), and a matchmaker that refuses (503 with
//! `Retry-After`) or answers a room that was not asked for.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bots::report::Report;
use bots::{Args, Plan};
use clap::Parser;
use common::cluster::Cluster;
use common::{http_get, run_swarm, TestServer, WAIT_MAX};

/// Flags of every cluster process: a few wanderers per room, a checksum every 5 ticks, and the
/// per-address limits off (every bot comes from 127.0.0.1).
const PROCESS_FLAGS: [&str; 10] = [
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

/// Bots flags: `flags` (no --url: with --matchmake it is not dialled).
fn bots_args(flags: &[&str]) -> Args {
    let mut argv = vec!["bots"];
    argv.extend_from_slice(flags);
    Args::try_parse_from(argv).expect("valid bots flags")
}

/// Runs the swarm; `during` is called once, at the first progress line at or after `at`, while the
/// bots play (to look at the servers then).
fn run_with(args: Args, at: Duration, during: impl FnOnce()) -> (Report, Vec<String>) {
    let plan = Plan::new(args).expect("valid plan");
    let (_never, stop) = crossbeam_channel::bounded::<()>(1);
    let mut errors = Vec::new();
    let mut during = Some(during);
    let report = bots::run(
        plan,
        &stop,
        |p| {
            if p.elapsed >= at {
                if let Some(f) = during.take() {
                    f();
                }
            }
        },
        |e| errors.push(e.to_string()),
    )
    .expect("run");
    (report, errors)
}

/// The names of the rooms a process lists (`GET /rooms`), its default room left out.
fn listed_rooms(addr: SocketAddr) -> BTreeSet<String> {
    let (status, body) = http_get(addr, "/rooms");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no rooms in {body}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .filter(|name| name != "default")
        .collect()
}

/// The per-process rows add up to the run's figures, and each room is on exactly one process, the one
/// whose row lists it.
fn check_processes_add_up(report: &Report, summary: &str) {
    let sum = |f: fn(&bots::report::ProcessRow) -> u64| report.processes.iter().map(f).sum::<u64>();
    let m = report.matchmake.as_ref().expect("a matchmake section");
    assert_eq!(sum(|p| p.placements), m.placed, "{summary}");
    assert_eq!(sum(|p| p.updates), report.updates, "{summary}");
    assert_eq!(
        sum(|p| p.checksums_verified),
        report.checksums_verified,
        "{summary}"
    );
    assert_eq!(
        sum(|p| p.connections),
        report.bots_ever_connected + report.reconnects,
        "every welcomed connection is on one process: {summary}"
    );
    assert_eq!(
        sum(|p| p.bots),
        report.bots_ever_connected,
        "no bot changed process: {summary}"
    );
    assert_eq!(sum(|p| p.errors), 0, "{summary}");
    for room in &report.rooms {
        assert_eq!(room.processes.len(), 1, "{}: {summary}", room.name);
        let on = &room.processes[0];
        let row = report
            .processes
            .iter()
            .find(|p| p.process == *on)
            .unwrap_or_else(|| panic!("{on} has no row: {summary}"));
        assert!(
            row.room_names.contains(&room.name),
            "{} on {on}: {summary}",
            room.name
        );
    }
    assert_eq!(
        sum(|p| p.rooms),
        report.rooms.len() as u64,
        "each room on one process: {summary}"
    );
    assert_eq!(
        m.latency_ms.samples, m.answered,
        "every answer timed: {summary}"
    );
    // Each request placed its bot, failed, or was cut short by the end of the run (at most one per bot).
    let failed: u64 = m.failures.iter().map(|f| f.count).sum();
    assert!(m.placed + failed <= m.requests, "{summary}");
    assert!(m.requests - m.placed - failed <= report.bots, "{summary}");
}

#[test]
fn bots_of_a_room_land_on_the_process_that_holds_it_and_rooms_spread_over_the_cluster() {
    let cluster = Cluster::start(3, &PROCESS_FLAGS);
    let args = bots_args(&[
        "--matchmake",
        &cluster.http_url(0),
        "--rooms",
        "6",
        "--room-size",
        "3",
        "--duration",
        "4s",
        "--threads",
        "2",
        "--connect-rate",
        "60",
        // Flappers drop their connection and come back: each comeback asks the matchmaker again.
        "--mix",
        "wander=2,flapper=1",
        "--flap-ms",
        "1000",
    ]);
    // While the bots play: which rooms each process lists, and who owns each room in the directory.
    let listed = Mutex::new(None);
    let (report, errors) = run_with(args, Duration::from_secs(2), || {
        let by_process: BTreeMap<String, BTreeSet<String>> = cluster
            .processes
            .iter()
            .map(|(id, addr)| (id.clone(), listed_rooms(*addr)))
            .collect();
        let owners: BTreeMap<String, Option<String>> = (0..6)
            .map(|r| {
                let room = format!("bots-{r}");
                let owner = cluster.redis.get(&format!("tickcast:room:{room}"));
                (room, owner)
            })
            .collect();
        *listed.lock().unwrap() = Some((by_process, owners));
    });
    let (by_process, owners) = listed.into_inner().unwrap().expect("looked during the run");
    let summary = format!(
        "{}\nerrors: {errors:#?}\nlisted: {by_process:?}\nowners: {owners:?}\nprocesses: {:#?}",
        report.table(),
        report.processes
    );

    // Every bot connected, every mirror matched every checksum of its room, no unexpected disconnect.
    assert!(report.passed, "{summary}");
    assert!(errors.is_empty(), "{summary}");
    assert_eq!(report.bots_ever_connected, 18, "{summary}");
    let m = report.matchmake.as_ref().unwrap();
    assert!(m.failures.is_empty(), "{summary}");
    assert!(m.placed >= 18, "{summary}");
    assert!(
        m.requests > 18,
        "flappers asked again when they came back: {summary}"
    );
    // They came back to the process holding their room: the same player, resumed.
    assert!(report.resumes.honoured > 0, "{summary}");
    assert_eq!(report.resumes.refused, 0, "{summary}");

    // All bots of one room on one process; the rooms on more than one process.
    for room in &report.rooms {
        assert_eq!(room.bots_ever_connected, 3, "{}: {summary}", room.name);
        assert!(room.checksums_verified > 0, "{}: {summary}", room.name);
        assert_eq!(room.processes.len(), 1, "{}: {summary}", room.name);
        let on = &room.processes[0];
        // The process the bots were welcomed on is the one that holds the room: it lists it, and the
        // directory names it as the owner.
        assert!(
            by_process[on].contains(&room.name),
            "{} on {on}: {summary}",
            room.name
        );
        assert_eq!(
            owners[&room.name].as_deref(),
            Some(on.as_str()),
            "{summary}"
        );
    }
    let used: BTreeSet<&str> = report
        .rooms
        .iter()
        .map(|r| r.processes[0].as_str())
        .collect();
    assert!(used.len() > 1, "rooms spread: {summary}");
    // No process holds a room the bots were not welcomed into there.
    for row in &report.processes {
        let names: BTreeSet<String> = row.room_names.iter().cloned().collect();
        assert_eq!(by_process[&row.process], names, "{summary}");
    }
    check_processes_add_up(&report, &summary);
    // The table shows the section.
    let table = report.table();
    assert!(table.contains("matchmaking (http://127.0.0.1:"), "{table}");
    assert!(table.contains("latency ms"), "{table}");
}

#[test]
fn bots_asking_for_any_room_of_a_type_fill_rooms_the_matchmaker_chooses() {
    // Rooms of at most 4 players: 10 bots need at least 3 rooms.
    let mut flags = PROCESS_FLAGS.to_vec();
    flags.extend(["--room-max-players", "4"]);
    let cluster = Cluster::start(2, &flags);
    let args = bots_args(&[
        "--matchmake",
        &cluster.http_url(1),
        "--matchmake-type",
        "arena",
        "--count",
        "10",
        "--duration",
        "3s",
        "--threads",
        "2",
        "--connect-rate",
        "40",
    ]);
    let (report, errors) = run_with(args, Duration::from_secs(1), || {});
    let summary = format!(
        "{}\nerrors: {errors:#?}\nprocesses: {:#?}",
        report.table(),
        report.processes
    );
    assert!(errors.is_empty(), "{summary}");
    assert_eq!(report.checksum_mismatches, 0, "{summary}");
    assert_eq!(report.protocol_errors, 0, "{summary}");
    assert_eq!(report.bots_gave_up, 0, "{summary}");
    // A room's free seats in the directory are the matchmaker's estimate until its owner's next
    // heartbeat: a bot sent to a room that filled meanwhile is closed with 4006 and asks for any room
    // again. That is the only disconnect allowed here.
    for d in report.disconnects.iter().filter(|d| !d.expected) {
        assert_eq!(d.code, Some(tickcast::proto::close::ROOM_FULL), "{summary}");
    }
    // Every bot plays in a room the matchmaker chose, named after the type, at most 4 to a room.
    assert!(report.rooms.len() >= 3, "{summary}");
    let placed: u32 = report.rooms.iter().map(|r| r.bots).sum();
    assert_eq!(placed, 10, "{summary}");
    for room in &report.rooms {
        assert!(room.name.starts_with("arena-"), "{summary}");
        assert!((1..=4).contains(&room.bots), "{}: {summary}", room.name);
        assert!(room.checksums_verified > 0, "{}: {summary}", room.name);
        assert_eq!(room.processes.len(), 1, "{}: {summary}", room.name);
    }
    let used: BTreeSet<&str> = report
        .rooms
        .iter()
        .map(|r| r.processes[0].as_str())
        .collect();
    assert_eq!(
        used.len(),
        2,
        "new rooms go to the least loaded process: {summary}"
    );
    let m = report.matchmake.as_ref().unwrap();
    assert!(m.placed >= 10, "{summary}");
    assert_eq!(
        report.processes.iter().map(|p| p.placements).sum::<u64>(),
        m.placed,
        "{summary}"
    );
    assert_eq!(
        report.processes.iter().map(|p| p.updates).sum::<u64>(),
        report.updates,
        "{summary}"
    );
}

#[test]
fn a_standalone_process_answers_a_path_and_the_bots_connect_to_it() {
    let server = TestServer::start(|c| {
        c.npcs = 3;
        c.checksum_every_ticks = 5;
    });
    let base = format!("http://{}", server.addr);
    let (report, errors) = run_swarm(bots_args(&[
        "--matchmake",
        &base,
        "--rooms",
        "2",
        "--room-size",
        "2",
        "--duration",
        "2s",
        "--threads",
        "1",
    ]));
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert!(report.passed, "{summary}");
    let m = report.matchmake.as_ref().unwrap();
    assert_eq!((m.requests, m.answered, m.placed), (4, 4, 4), "{summary}");
    assert!(m.failures.is_empty(), "{summary}");
    // No process id standalone: the process is the host:port `connect` resolved to (this server).
    let here = server.addr.to_string();
    assert_eq!(report.processes.len(), 1, "{summary}");
    let row = &report.processes[0];
    assert_eq!(row.process, here, "{summary}");
    assert_eq!((row.bots, row.rooms), (4, 2), "{summary}");
    assert_eq!(row.room_names, ["bots-0", "bots-1"], "{summary}");
    for room in &report.rooms {
        assert_eq!(room.processes, std::slice::from_ref(&here), "{summary}");
        assert!(room.checksums_verified > 0, "{summary}");
    }
    check_processes_add_up(&report, &summary);
    let (status, body) = server.get("/rooms/bots-1");
    assert_eq!(status, 200, "{body}");
}

/// A fake matchmaker: answers every request with `answer`, records each request (and when it came).
struct FakeMatchmaker {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Most requests the fake answers, so a bug cannot keep it going.
const FAKE_REQUESTS_MAX: usize = 32;

/// An HTTP answer with `status` (e.g. `503 Service Unavailable`), `headers` (each ending in CRLF) and a
/// JSON `body` of the right length.
fn answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

impl FakeMatchmaker {
    fn start(answer: String) -> FakeMatchmaker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut served = 0;
            while !stopping.load(Ordering::Relaxed) && served < FAKE_REQUESTS_MAX {
                let Ok((mut sock, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                served += 1;
                let at = Instant::now();
                sock.set_nonblocking(false).unwrap();
                sock.set_read_timeout(Some(WAIT_MAX)).unwrap();
                let request = read_request(&mut sock);
                seen.lock().unwrap().push((at, request));
                let _ = sock.write_all(answer.as_bytes());
            }
        });
        FakeMatchmaker {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<(Instant, String)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeMatchmaker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request, head and `Content-Length` body (bounded), as text.
fn read_request(sock: &mut std::net::TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    while bytes.len() < 16 * 1024 {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if body.len() >= length.unwrap_or(0) {
                return text;
            }
        }
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn a_refusing_matchmaker_is_a_failed_attempt_retried_after_its_retry_after_then_given_up() {
    let fake = FakeMatchmaker::start(answer(
        "503 Service Unavailable",
        "Retry-After: 1\r\n",
        r#"{"error":"no process can take a new room"}"#,
    ));
    let (report, errors) = run_swarm(bots_args(&[
        "--matchmake",
        &fake.url(),
        "--rooms",
        "1",
        "--count",
        "1",
        "--duration",
        "3s",
        "--connect-attempts",
        "2",
        "--retry-base-ms",
        "10",
    ]));
    let requests = fake.requests();
    let summary = format!(
        "{}\nerrors: {errors:?}\nrequests: {requests:#?}",
        report.table()
    );
    // What the bot asked: its room and its player, as JSON of the length it said.
    assert_eq!(requests.len(), 2, "{summary}");
    let (head, body) = requests[0].1.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("POST /matchmake HTTP/1.1\r\n"),
        "{summary}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{summary}"
    );
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"room": "bots-0", "player": "bot-0"}),
        "{summary}"
    );
    // Retry-After: 1 held the retry back a second, though the backoff alone says 5..10 ms.
    let gap = requests[1].0 - requests[0].0;
    assert!(gap >= Duration::from_secs(1), "{gap:?}: {summary}");
    // Two failed attempts, then the bot gave up: the run fails.
    let m = report.matchmake.as_ref().unwrap();
    assert_eq!((m.requests, m.answered, m.placed), (2, 2, 0), "{summary}");
    assert_eq!(m.failures.len(), 1, "{summary}");
    let f = &m.failures[0];
    assert_eq!((f.status, f.count), (Some(503), 2), "{summary}");
    assert_eq!(f.example, "no process can take a new room", "{summary}");
    assert_eq!(
        report.connect_failures.get("matchmake"),
        Some(&2),
        "{summary}"
    );
    assert_eq!(report.bots_gave_up, 1, "{summary}");
    assert_eq!(report.bots_ever_connected, 0, "{summary}");
    assert!(!report.passed, "{summary}");
    assert!(report.processes.is_empty(), "placed nowhere: {summary}");
}

#[test]
fn a_matchmaker_that_places_a_bot_in_another_room_is_a_protocol_error() {
    let fake = FakeMatchmaker::start(answer(
        "200 OK",
        "",
        r#"{"room":"elsewhere","process":null,"connect":"/ws/elsewhere"}"#,
    ));
    let (report, errors) = run_swarm(bots_args(&[
        "--matchmake",
        &fake.url(),
        "--rooms",
        "1",
        "--count",
        "1",
        "--duration",
        "1s",
        "--connect-attempts",
        "1",
    ]));
    let summary = format!("{}\nerrors: {errors:?}", report.table());
    assert_eq!(report.protocol_errors, 1, "{summary}");
    assert!(
        errors[0]
            .what
            .contains("matchmaking: asked for room \"bots-0\", placed in room \"elsewhere\""),
        "{summary}"
    );
    let m = report.matchmake.as_ref().unwrap();
    assert_eq!(m.failures[0].cause, "bad answer", "{summary}");
    assert_eq!(m.placed, 0, "{summary}");
    assert!(!report.passed, "{summary}");
}
