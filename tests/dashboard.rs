//! The live dashboard over real sockets: off is 404; with a token, a missing or wrong one is 401 and the
//! right one (header or query) gets the page and the JSON; `auto` without a token refuses what a proxy
//! forwarded; the snapshot's numbers are `/metrics`' own; a bad token file stops the start, and the
//! token is never in the log. The page in a browser: `web/test/dashboard.test.mjs`.

mod common;

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use common::{metric_in, Client, TestServer};
use tickcast::config::DashboardMode;

const TOKEN: &str = "dash-0123456789abcdef";

/// A file holding `text` in a fresh directory of this test's own, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("tickcast-dash-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// GET `target` with `headers` (each ending in CRLF): (status, the whole answer, head and body).
fn get(server: &TestServer, target: &str, headers: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(common::WAIT_MAX)).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok());
    (
        status.unwrap_or_else(|| panic!("no status in {answer:?}")),
        answer,
    )
}

#[test]
fn off_is_404_for_the_page_and_the_data() {
    let server = TestServer::start(|c| c.dashboard = DashboardMode::Off);
    for path in ["/dashboard", "/dashboard/data", "/dashboard?token=x"] {
        let (status, body) = server.get(path);
        assert_eq!(
            (status, body.as_str()),
            (404, "404 Not Found: not found\n"),
            "{path}"
        );
    }
    assert_eq!(server.get("/metrics").0, 200);
}

#[test]
fn a_token_is_required_in_the_header_or_the_query() {
    let file = TempFile::new("token", &format!("{TOKEN}\n"));
    let server = TestServer::start(|c| c.dashboard_token_file = Some(file.0.clone()));
    let (status, body) = server.get("/dashboard/data");
    assert_eq!(status, 401);
    assert_eq!(
        body,
        "401 Unauthorized: dashboard token required: Authorization: Bearer TOKEN, or ?token=TOKEN\n"
    );
    let wrong = [
        get(
            &server,
            "/dashboard/data",
            "Authorization: Bearer dash-0123456789abcdeF\r\n",
        ),
        get(
            &server,
            "/dashboard",
            "Authorization: Bearer dash-0123456789abcdef0\r\n",
        ),
        get(&server, "/dashboard?token=dash-0123456789abcde", ""),
        // The header wins over the query.
        get(
            &server,
            &format!("/dashboard?token={TOKEN}"),
            "Authorization: Bearer x\r\n",
        ),
    ];
    for (status, answer) in wrong {
        assert_eq!(status, 401, "{answer}");
        assert!(answer.contains("WWW-Authenticate: Bearer"), "{answer}");
        assert!(
            answer.ends_with("401 Unauthorized: wrong dashboard token\n"),
            "{answer}"
        );
    }
    let (status, page) = server.get(&format!("/dashboard?token={TOKEN}"));
    assert_eq!(status, 200);
    assert!(page.contains("<title>tickcast dashboard</title>"), "{page}");
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let (status, answer) = get(&server, "/dashboard/data", &bearer);
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("Content-Security-Policy: default-src 'none'"),
        "{answer}"
    );
    let json = answer.split("\r\n\r\n").nth(1).unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(snapshot["rooms_open"], 1);
    // Refusals are counted like any other.
    let metrics = server.get("/metrics").1;
    let unauthorized = "tickcast_connections_closed_total{reason=\"unauthorized\"}";
    assert_eq!(metric_in(&metrics, unauthorized), Some(5));
}

#[test]
fn auto_without_a_token_serves_loopback_but_not_what_a_proxy_forwarded() {
    let server = TestServer::start(|_| {});
    assert_eq!(server.get("/dashboard").0, 200);
    for header in [
        "X-Forwarded-For: 203.0.113.7\r\n",
        "Forwarded: for=203.0.113.7\r\n",
    ] {
        let (status, answer) = get(&server, "/dashboard/data", header);
        assert_eq!(status, 403, "{answer}");
        assert!(answer.contains("not served through a proxy"), "{answer}");
    }
    // `on` serves them.
    let on = TestServer::start(|c| c.dashboard = DashboardMode::On);
    assert_eq!(
        get(&on, "/dashboard/data", "X-Forwarded-For: 203.0.113.7\r\n").0,
        200
    );
}

/// The snapshot, over the real socket, as `serde_json::Value`.
fn snapshot(server: &TestServer) -> serde_json::Value {
    let (status, body) = server.get("/dashboard/data");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_snapshot_holds_the_numbers_of_metrics_and_the_rooms() {
    let server = TestServer::start(|c| c.npcs = 2);
    let mut players = Vec::new();
    for room in ["red", "red", "blue"] {
        let mut client = Client::connect_at(&server, &format!("/ws/{room}"));
        client.hello("p");
        client.verify_checksums(1);
        players.push(client);
    }
    let mut watcher = Client::connect_at(&server, "/ws/blue");
    watcher.watch();
    watcher.verify_checksums(1);
    let snap = snapshot(&server);
    let metrics = server.get("/metrics").1;
    let metric = |name: &str| metric_in(&metrics, name).unwrap();
    // Gauges that nothing moves between the two requests: equal.
    assert_eq!(snap["players"], 3);
    assert_eq!(snap["players"], metric("tickcast_players"));
    assert_eq!(snap["websockets_open"], metric("tickcast_websockets_open"));
    assert_eq!(snap["rooms_open"], metric("tickcast_rooms_open"));
    assert_eq!(snap["spectators"], 1);
    // Counters only grow between the two.
    for (total, name) in [
        ("bytes_out", "tickcast_bytes_out_total"),
        ("frames_out", "tickcast_frames_out_total"),
        ("ticks", "tickcast_ticks_total"),
        (
            "slow_consumer_closes",
            "tickcast_slow_consumer_closes_total",
        ),
    ] {
        let shown = snap["totals"][total].as_u64().unwrap();
        assert!(shown <= metric(name), "{total}: {shown} > {}", metric(name));
    }
    assert!(snap["totals"]["bytes_out"].as_u64().unwrap() > 0);
    let ticks = snap["tick_duration"]["count"].as_u64().unwrap();
    assert!(ticks > 0 && ticks <= metric("tickcast_tick_duration_seconds_count"));
    let counts = snap["tick_duration"]["counts"].as_array().unwrap();
    assert_eq!(
        counts.iter().map(|c| c.as_u64().unwrap()).sum::<u64>(),
        ticks
    );
    // The busiest room first, each with its players, spectators and a tick p99.
    let rooms = snap["rooms"].as_array().unwrap();
    let names: Vec<_> = rooms.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["blue", "red", "default"]);
    assert_eq!(
        (
            rooms[0]["players"].as_u64(),
            rooms[0]["spectators"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(rooms[1]["players"], 2);
    for room in rooms {
        assert!(
            room["tick_p99_us"].as_u64().is_some_and(|us| us > 0),
            "{room}"
        );
    }
}

#[test]
fn the_room_list_is_bounded_to_the_busiest_fifty() {
    let server = TestServer::start(|c| {
        c.npcs = 0;
        c.max_rooms_per_ip = 0;
        c.accepts_per_ip_per_s = 0.0;
    });
    // Rooms stay open while someone is in them: one watcher each, and players in two of them.
    let mut clients = Vec::new();
    for i in 0..55 {
        let mut client = Client::connect_at(&server, &format!("/ws/r{i:02}"));
        client.watch();
        clients.push(client);
    }
    for room in ["r07", "r07", "r42"] {
        let mut client = Client::connect_at(&server, &format!("/ws/{room}"));
        client.hello("p");
        clients.push(client);
    }
    for client in &mut clients {
        client.verify_checksums(1);
    }
    let snap = snapshot(&server);
    assert_eq!(snap["rooms_open"], 56);
    let rooms = snap["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 50);
    assert_eq!(
        (rooms[0]["name"].as_str(), rooms[1]["name"].as_str()),
        (Some("r07"), Some("r42"))
    );
    // The default room, empty, is among those left out.
    assert!(rooms.iter().all(|r| r["name"] != "default"));
}

#[test]
fn a_bad_token_file_stops_the_start_and_the_token_is_never_logged() {
    let bin = env!("CARGO_BIN_EXE_tickcast");
    for (text, why) in [
        ("short", "at least 16 bytes"),
        (
            "has spaces in it, sixteen+",
            "at most 256 of A-Z a-z 0-9 - . _ ~",
        ),
    ] {
        let file = TempFile::new("bad", text);
        let out = std::process::Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--dashboard-token-file"])
            .arg(&file.0)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why) && !stderr.contains(text), "{stderr}");
    }
    let file = TempFile::new("log", TOKEN);
    let path = file.0.to_str().unwrap();
    let args = ["--listen", "127.0.0.1:0", "--dashboard-token-file", path];
    let (mut child, mut stderr, addr) = common::spawn_listening(&args);
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains(&format!(
            "dashboard at http://{addr}/dashboard (token required)"
        )),
        "{line}"
    );
    let server = TestServer::external(addr);
    assert_eq!(
        get(&server, &format!("/dashboard/data?token={TOKEN}"), "").0,
        200
    );
    assert_eq!(
        get(&server, "/dashboard/data?token=wrong-token-guess", "").0,
        401
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(!format!("{line}{rest}").contains(TOKEN), "{line}{rest}");
}
