//! The real binary's log (`--log-format`, `--log-filter`): the lifecycle and every close at `debug`, in
//! text and JSON, and never a ticket, a resume token or a secret, whatever the clients bring; warnings a
//! flood causes are bounded per second.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::{Client, TestServer};
use tickcast::proto::{self, ClientMsg, ServerMsg};
use tickcast::ticket;

const SECRET: &str = "the log test's secret, 16 bytes or more";

/// The binary, its stderr read to the end by a thread (so the pipe never fills), and its address.
struct Logged {
    child: Child,
    addr: SocketAddr,
    first_line: String,
    rest: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Logged {
    fn start(args: &[&str]) -> Logged {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
            .args(["--listen", "127.0.0.1:0", "--npcs", "0", "--tick-hz", "50"])
            .args(args)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first_line = String::new();
        stderr.read_line(&mut first_line).unwrap();
        let addr = first_line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
            .unwrap_or_else(|| panic!("no address in {first_line:?}"))
            .parse()
            .unwrap();
        let rest = Arc::new(Mutex::new(String::new()));
        let sink = rest.clone();
        let reader = std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        Logged {
            child,
            addr,
            first_line,
            rest,
            reader: Some(reader),
        }
    }

    /// SIGTERM, wait for the exit, and everything the process logged after its first line.
    fn stop(mut self) -> String {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        self.reader.take().unwrap().join().unwrap();
        let rest = self.rest.lock().unwrap().clone();
        rest
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secret_file(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tickcast-logs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    path
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hello(ticket: &str) -> ClientMsg<tickcast::sim::arena::ArenaInput> {
    ClientMsg::Hello {
        protocol: proto::PROTOCOL_VERSION,
        name: "p".into(),
        ticket: ticket.into(),
        resume: None,
    }
}

/// The ways a resume token could be written into a line: hex, base64url, bincode-ish Debug.
fn token_spellings(token: &proto::ResumeToken) -> Vec<String> {
    vec![
        data_encoding::HEXLOWER.encode(token),
        data_encoding::HEXUPPER.encode(token),
        data_encoding::BASE64URL_NOPAD.encode(token),
        data_encoding::BASE64.encode(token),
        format!("{token:?}"),
    ]
}

/// Plays what a log must keep secrets out of: a ticket on the upgrade URL, one in `Hello`, a forged one,
/// a resume with a ticket, a room named in the URL, a bad ticket closed 4004, a clean goodbye. Returns the
/// strings no log line may hold.
fn play_with_secrets(addr: SocketAddr) -> Vec<String> {
    let server = TestServer::external(addr);
    let now = now_s();
    let in_url = ticket::issue(SECRET.as_bytes(), "alice", now + 60);
    let in_hello = ticket::issue(SECRET.as_bytes(), "alice", now + 61);
    let forged = ticket::issue(b"not the secret, but long enough", "mallory", now + 60);
    let in_room = ticket::issue_for_room(SECRET.as_bytes(), "bob", "logroom", now + 60);

    // A forged ticket on the upgrade: 401, the URL and its query never logged.
    let (status, _) = server.upgrade_answer(&format!("/ws?ticket={forged}"));
    assert_eq!(status, 401);

    // Alice joins with a ticket in the URL, takes an update, and drops without a close: detached.
    let mut alice = Client::connect_with_ticket(&server, &in_url);
    alice.send(&hello(""));
    alice.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    alice.recv_until(|m| matches!(m, ServerMsg::Full { .. } | ServerMsg::Delta { .. }));
    let first_token = alice.resume_token.expect("Joined has a token");
    // She comes back with her token and a ticket in Hello; the new token is rotated.
    let mut again = alice.reconnect_resuming_with(&server, None, &in_hello);
    assert_eq!(again.resumed, Some(true));
    let second_token = again.resume_token.expect("a rotated token");
    again.recv_until(|m| matches!(m, ServerMsg::Full { .. } | ServerMsg::Delta { .. }));
    // And leaves with 1000.
    again.ws.close(None).unwrap();
    while again.ws.read().is_ok() {}

    // Bob opens a room of his own with a room-bound ticket, and leaves it.
    let mut bob = Client::connect_at(&server, &format!("/ws/logroom?ticket={in_room}"));
    bob.send(&hello(""));
    bob.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    let bob_token = bob.resume_token.expect("Joined has a token");
    drop(bob);

    // Mallory brings her forged ticket in Hello: 4004.
    let mut mallory = Client::connect(&server);
    mallory.send(&hello(&forged));
    let (code, _) = mallory.expect_close();
    assert_eq!(code, 4004);

    let mut secrets = vec![in_url, in_hello, forged, in_room, SECRET.to_string()];
    for token in [first_token, second_token, bob_token] {
        secrets.extend(token_spellings(&token));
    }
    secrets
}

fn assert_no_secret(log: &str, secrets: &[String]) {
    for secret in secrets {
        // A ticket's signature alone (the part after the last dot) must not show either.
        let signature = secret.rsplit('.').next().unwrap_or(secret);
        for needle in [secret.as_str(), signature] {
            assert!(
                !log.contains(needle),
                "the log holds a secret ({needle}):\n{log}"
            );
        }
    }
    assert!(
        !log.contains("ticket="),
        "a query string in the log:\n{log}"
    );
}

#[test]
fn debug_text_logs_every_close_with_its_code_and_never_a_ticket_or_token() {
    let secret = secret_file("text");
    let server = Logged::start(&[
        "--log-filter",
        "debug",
        "--ticket-secret-file",
        secret.to_str().unwrap(),
    ]);
    assert!(
        server
            .first_line
            .contains("INFO tickcast: listening on http://127.0.0.1:"),
        "{}",
        server.first_line
    );
    let secrets = play_with_secrets(server.addr);
    let log = server.stop();

    // Mallory's close, with its code and reason; every connection's end with its label.
    let unauthorized = log
        .lines()
        .find(|l| l.contains("closing connection") && l.contains("code=4004"))
        .unwrap_or_else(|| panic!("no 4004 close in:\n{log}"));
    assert!(unauthorized.contains("DEBUG"), "{unauthorized}");
    assert!(
        unauthorized.contains("label=\"unauthorized\"")
            && unauthorized.contains("reason=invalid ticket signature"),
        "{unauthorized}"
    );
    assert!(log.contains("connection closed"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("connection closed") && l.contains("label=\"peer\"")),
        "{log}"
    );
    // The lifecycle: Bob's room, the drain.
    let created = log
        .lines()
        .find(|l| l.contains("room created"))
        .unwrap_or_else(|| panic!("no room created in:\n{log}"));
    assert!(created.contains("room=logroom"), "{created}");
    assert!(created.contains("type=arena"), "{created}");
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("drained"), "{log}");
    assert_no_secret(&log, &secrets);
    let _ = std::fs::remove_dir_all(secret.parent().unwrap());
}

#[test]
fn json_logs_are_one_object_a_line_with_the_address_first_and_never_a_ticket_or_token() {
    let secret = secret_file("json");
    let server = Logged::start(&[
        "--log-format",
        "json",
        "--log-filter",
        "debug",
        "--ticket-secret-file",
        secret.to_str().unwrap(),
    ]);
    let first: serde_json::Value = serde_json::from_str(&server.first_line).unwrap();
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["target"], "tickcast");
    assert!(first["message"]
        .as_str()
        .unwrap()
        .starts_with("listening on http://127.0.0.1:"));
    assert_eq!(first["addr"], server.addr.to_string());
    assert_eq!(first["tls"], false);
    let secrets = play_with_secrets(server.addr);
    let log = server.stop();

    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let close = events
        .iter()
        .find(|e| e["message"] == "closing connection" && e["code"] == 4004)
        .unwrap_or_else(|| panic!("no 4004 close in:\n{log}"));
    assert_eq!(close["level"], "DEBUG");
    assert_eq!(close["label"], "unauthorized");
    assert!(close["conn"].is_u64(), "{close}");
    let room = events
        .iter()
        .find(|e| e["message"] == "room created")
        .unwrap_or_else(|| panic!("no room created in:\n{log}"));
    assert_eq!(room["room"], "logroom");
    assert_eq!(room["suppressed"], 0);
    assert!(events.iter().any(|e| e["message"] == "drained"), "{log}");
    assert_no_secret(&log, &secrets);
    let _ = std::fs::remove_dir_all(secret.parent().unwrap());
}

#[test]
fn refusals_in_a_connect_flood_are_logged_at_most_five_a_second() {
    // One connection per address: every further connect is refused with 429, and would be a warning.
    let server = Logged::start(&["--max-connections-per-ip", "1"]);
    let _holder = std::net::TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    let refused = 60;
    for _ in 0..refused {
        let (status, _) = common::http_exchange(server.addr, b"GET /healthz HTTP/1.1\r\n\r\n");
        assert_eq!(status, 429);
    }
    let elapsed_s = started.elapsed().as_secs();
    drop(_holder);
    let log = server.stop();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("connection refused"))
        .collect();
    assert!(!warnings.is_empty(), "{log}");
    // The flood spanned at most elapsed_s + 1 one-second windows (plus one for the window straddling
    // the start), five each.
    let windows = elapsed_s as usize + 2;
    assert!(
        warnings.len() <= 5 * windows,
        "{} warnings over {elapsed_s} s:\n{log}",
        warnings.len()
    );
    // What was held back is counted in the next one let through: nothing is counted twice.
    let suppressed: usize = warnings
        .iter()
        .map(|l| {
            let n = l.split("suppressed=").nth(1).expect("a suppressed count");
            n.split_whitespace()
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert!(warnings.len() + suppressed <= refused, "{log}");
    assert!(
        warnings
            .iter()
            .all(|l| l.contains("kind=\"connection_limit\"")),
        "{log}"
    );
}
