//! Test harness: a real tickcast server on 127.0.0.1:0 in a thread, a fake server for errors the real
//! one never makes, and helpers to run the swarm in-process or as the `bots` binary.
#![allow(dead_code)]

pub mod cluster;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bots::stats::BotError;
use bots::{Args, Plan, Report};
use clap::Parser;
use tickcast::metrics::Metrics;
use tickcast::proto::{self, ServerMsg};
use tickcast::sim::arena::ArenaEntity;
use tickcast::{Config, Handle, Server};
use tungstenite::Message;

/// Upper bound on any wait in a test: a safety net against hangs, never a measured threshold.
pub const WAIT_MAX: Duration = Duration::from_secs(60);

/// What a test adjusts: the server's settings (through `Deref`, so `c.tick_hz = 50`) and the arena's
/// (`c.npcs`, `c.seed`, `c.room_max_players`), which are the game's and not in the server's `Config`.
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub server: Config,
    pub npcs: usize,
    pub seed: u64,
    /// Most players in one arena room (a `Hello` past it is closed with 4006).
    pub room_max_players: usize,
}

impl TestConfig {
    fn new() -> TestConfig {
        let arena = tickcast::sim::arena::ArenaSettings::default();
        TestConfig {
            server: Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..Config::default()
            },
            npcs: arena.npcs,
            seed: arena.seed,
            room_max_players: arena.room_max_players,
        }
    }
}

impl std::ops::Deref for TestConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.server
    }
}

impl std::ops::DerefMut for TestConfig {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.server
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    handle: Handle,
    thread: Option<JoinHandle<Metrics>>,
}

impl TestServer {
    /// Starts the arena on 127.0.0.1:0 with `cfg` adjusted by `adjust`.
    pub fn start(adjust: impl FnOnce(&mut TestConfig)) -> TestServer {
        let mut cfg = TestConfig::new();
        adjust(&mut cfg);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let arena = tickcast::sim::arena::ArenaSettings {
                npcs: cfg.npcs,
                seed: cfg.seed,
                room_max_players: cfg.room_max_players,
                ..Default::default()
            };
            let mut server = Server::bind(cfg.server, arena.room_types()).expect("bind");
            tx.send((server.local_addr(), server.handle())).unwrap();
            server.run().expect("server loop");
            server.metrics().clone()
        });
        let (addr, handle) = rx.recv().expect("server started");
        TestServer {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// `GET path` on the server's port: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// Drains the server and returns its final metrics.
    pub fn stop(mut self) -> Metrics {
        self.handle.shutdown();
        self.thread.take().unwrap().join().expect("server thread")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// A plain HTTP/1.1 `GET path`: the status and the body (read to its `Content-Length`, or to the
/// server's close).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|| panic!("GET {path} from {addr}: no answer"))
}

/// [`http_get`], `None` when nothing listens or no status came back.
pub fn try_http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    /// Most bytes of an answer read.
    const RESPONSE_BYTES_MAX: usize = 1 << 20;
    let mut sock = std::net::TcpStream::connect(addr).ok()?;
    sock.set_read_timeout(Some(WAIT_MAX)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    sock.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
        assert!(response.len() < RESPONSE_BYTES_MAX, "answer over 1 MiB");
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok())?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Some((status, body))
}

/// Bots flags for `url` plus `extra`.
pub fn args(url: &str, extra: &[&str]) -> Args {
    let mut argv = vec!["bots", "--url", url];
    argv.extend_from_slice(extra);
    Args::try_parse_from(argv).expect("valid bots flags")
}

/// Runs the swarm in this process until its `--duration`; returns the report and every error reported.
pub fn run_swarm(args: Args) -> (Report, Vec<BotError>) {
    let plan = Plan::new(args).expect("valid plan");
    let (_never_stopped, stop) = crossbeam_channel::bounded::<()>(1);
    let mut errors = Vec::new();
    let report = bots::run(plan, &stop, |_| {}, |e| errors.push(e.clone())).expect("run");
    (report, errors)
}

/// A fake server that speaks just enough of the protocol to send each connection `Welcome`, a one-entity
/// `Full` at tick 1 and then a `Checksum` of tick 1 that does not match it.
pub struct WrongChecksumServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Most connections the fake server serves, so a bug cannot keep it going.
const FAKE_CONNECTIONS_MAX: usize = 32;

impl WrongChecksumServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut served = 0;
            while !stopping.load(Ordering::Relaxed) && served < FAKE_CONNECTIONS_MAX {
                match listener.accept() {
                    Ok((sock, _)) => {
                        served += 1;
                        sock.set_nonblocking(false).unwrap();
                        sock.set_read_timeout(Some(WAIT_MAX)).unwrap();
                        serve_wrong_checksum(sock);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        WrongChecksumServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for WrongChecksumServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_wrong_checksum(sock: std::net::TcpStream) {
    let Ok(mut ws) = tungstenite::accept(sock) else {
        return;
    };
    let welcome = ServerMsg::<(), ()>::Welcome {
        protocol: proto::PROTOCOL_VERSION,
        tick_hz: 20,
        tick: 0,
        connection_id: 99,
        room: "default".to_string(),
    };
    let mut full = Vec::new();
    let entity = ArenaEntity { x: 4, y: 8, seq: 0 };
    proto::write_full(&mut full, 1, std::iter::once((0u32, &entity)));
    let wrong = ServerMsg::<(), ()>::Checksum { tick: 1, hash: 1 };
    for payload in [proto::encode(&welcome), full, proto::encode(&wrong)] {
        if ws.send(Message::Binary(payload.into())).is_err() {
            return;
        }
    }
    // Until the bot hangs up (or the read timeout): tungstenite answers its close frame.
    while ws.read().is_ok() {}
}
