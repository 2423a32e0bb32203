//! The Agones lifecycle (`--agones`, docs/OPERATIONS.md, "Agones"): a helper thread that tells the Agones
//! SDK sidecar, over its REST API on `127.0.0.1:$AGONES_SDK_HTTP_PORT`, that this game server is
//! `Ready`, that it is healthy while the loop turns, how many players it has, and to `Shutdown` after a
//! drain. The loop never talks to the sidecar: it bumps a heartbeat and stores its player count in
//! atomics once per `--tick-hz` period, and hands over one message at the end ([`Agones::shutdown`]).
//!
//! What is sent, as Agones 1.41 and later document it (the stable SDK and the Beta Counters, on by default
//! since Counters and Lists went Beta in 1.41; the Alpha player tracking, `/alpha/player/...`, is off by
//! default and meant to give way to Lists, so it is not used):
//!
//! | when | request | body |
//! |---|---|---|
//! | at start, then every health period until the sidecar says 2xx (it may start after us) | `POST /ready` | `{}` |
//! | every health period, **only if the loop ran its timers since the last one** | `POST /health` | `{}` |
//! | every health period when the count changed, with `--agones-players-counter NAME` | `PATCH /v1beta1/counters/NAME` | `{"count":"N"}` |
//! | once the drain is over | `POST /shutdown` | `{}` |
//!
//! The stall rule: a loop that is stuck (a bug, a wedged system call) stops advancing the heartbeat, so
//! Health stops, and Agones marks the game server Unhealthy after its `health.failureThreshold` periods
//! and replaces it. The player count is a level, not a stream of connect and disconnect events: the
//! helper sets the Counter to the count it last read, so nothing can be lost or drift when a request
//! fails (it is sent again at the next period).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// The sidecar's HTTP port when neither `--agones-sdk-port` nor `AGONES_SDK_HTTP_PORT` says otherwise.
pub const SDK_HTTP_PORT_DEFAULT: u16 = 9358;
/// How long one connect, write or read to the sidecar may take before the request counts as failed.
pub const SDK_IO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a drained process waits for the helper to send `Shutdown` (one request and its timeouts).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// The most bytes of an answer read to find its status line.
const ANSWER_HEAD_MAX: usize = 1024;
/// How often the helper looks whether the loop has started (its first timer pass), before Ready.
const LOOP_START_POLL: Duration = Duration::from_millis(20);

/// What the helper needs: where the sidecar is and how often to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The sidecar's HTTP port on 127.0.0.1.
    pub port: u16,
    /// How often `Health` (and the player count) goes out.
    pub health_interval: Duration,
    /// The Counter (in the GameServer's `spec.counters`) to keep at the number of connected players.
    pub players_counter: Option<String>,
}

impl Settings {
    /// The port `--agones-sdk-port` gives, else `AGONES_SDK_HTTP_PORT` (Agones sets it in the game
    /// server's container), else 9358; an environment value that is not a port is an error.
    pub fn sdk_port(flag: Option<u16>) -> Result<u16, String> {
        if let Some(port) = flag {
            return Ok(port);
        }
        match std::env::var("AGONES_SDK_HTTP_PORT") {
            Err(_) => Ok(SDK_HTTP_PORT_DEFAULT),
            Ok(text) => text
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("AGONES_SDK_HTTP_PORT={text:?} is not a port")),
        }
    }
}

/// The requests the helper makes, as labels of `tickcast_agones_requests_total{request}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Ready,
    Health,
    Players,
    Shutdown,
}

impl Request {
    pub const ALL: [Request; 4] = [
        Request::Ready,
        Request::Health,
        Request::Players,
        Request::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Request::Ready => "ready",
            Request::Health => "health",
            Request::Players => "players",
            Request::Shutdown => "shutdown",
        }
    }
}

/// The helper's counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgonesStats {
    /// Requests the sidecar answered 2xx, by [`Request`] (in `Request::ALL` order).
    pub ok: [u64; Request::ALL.len()],
    /// Requests that failed (no answer, an error status), by [`Request`].
    pub failed: [u64; Request::ALL.len()],
    /// Health periods with no Health sent because the loop had not run its timers since the last one.
    pub health_skipped: u64,
}

/// What the loop and the helper share: written by one side each, read without a lock.
#[derive(Debug, Default)]
struct Shared {
    /// Bumped by the loop every time it runs its timers (once per `--tick-hz` period).
    heartbeat: AtomicU64,
    /// Connected players over every room, as of the loop's last timers.
    players: AtomicU64,
    ok: [AtomicU64; Request::ALL.len()],
    failed: [AtomicU64; Request::ALL.len()],
    health_skipped: AtomicU64,
}

/// From the loop to the helper.
enum ToSdk {
    /// The drain is over: send `Shutdown`, then stop.
    Shutdown,
}

/// The loop's end of the helper.
pub struct Agones {
    shared: Arc<Shared>,
    tx: Sender<ToSdk>,
    helper: Option<JoinHandle<()>>,
}

impl Agones {
    /// Starts the helper thread; it sends `Ready` at once (the listener is bound and listening).
    pub fn start(settings: Settings) -> io::Result<Agones> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = crossbeam_channel::bounded(1);
        let helper = Helper {
            sdk: Sdk {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port)),
            },
            settings,
            shared: shared.clone(),
            rx,
            failing: [false; Request::ALL.len()],
        };
        let thread = std::thread::Builder::new()
            .name("agones".into())
            .spawn(move || helper.run())?;
        Ok(Agones {
            shared,
            tx,
            helper: Some(thread),
        })
    }

    /// Called by the loop once per `--tick-hz` period (its timers): the loop is alive, with `players`
    /// players connected. Two relaxed stores; never waits.
    pub fn beat(&self, players: usize) {
        self.shared.players.store(players as u64, Ordering::Relaxed);
        self.shared.heartbeat.fetch_add(1, Ordering::Relaxed);
    }

    /// At the end of a drain: asks the helper to send `Shutdown` and waits for it at most `wait`.
    pub fn shutdown(&mut self, wait: Duration) {
        let Some(helper) = self.helper.take() else {
            return;
        };
        // The channel holds one message and only this one is ever sent, so it never finds it full.
        if self.tx.try_send(ToSdk::Shutdown).is_err() {
            return;
        }
        let deadline = Instant::now() + wait;
        while !helper.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stats(&self) -> AgonesStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AgonesStats {
            ok: std::array::from_fn(|i| load(&self.shared.ok[i])),
            failed: std::array::from_fn(|i| load(&self.shared.failed[i])),
            health_skipped: load(&self.shared.health_skipped),
        }
    }
}

/// The helper thread: the only one to talk to the sidecar.
struct Helper {
    sdk: Sdk,
    settings: Settings,
    shared: Arc<Shared>,
    rx: Receiver<ToSdk>,
    /// Whether the last request of each kind failed: a log line when that changes, not one per period.
    failing: [bool; Request::ALL.len()],
}

impl Helper {
    fn run(mut self) {
        let mut ready = false;
        // Ready waits for the loop's first timer pass: the loop is running (and the listening line is
        // out, so nothing of ours is logged before it). The heartbeat starts at 0 (not whatever it is when
        // this thread gets to run: the loop may have beaten already).
        let at_start = 0;
        let mut heartbeat_seen = at_start;
        let mut players_sent = None;
        // The first period only sends Ready: the loop has not had a period to prove itself yet.
        let mut first = true;
        let mut next = Instant::now();
        loop {
            match self
                .rx
                .recv_timeout(next.saturating_duration_since(Instant::now()))
            {
                Ok(ToSdk::Shutdown) => {
                    self.send(Request::Shutdown, "POST", "/shutdown", "{}");
                    return;
                }
                // The server is gone without a drain (dropped, or its loop failed): stop, and let
                // Health's absence tell Agones.
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let running = self.shared.heartbeat.load(Ordering::Relaxed) != at_start;
            next = Instant::now()
                + match running {
                    true => self.settings.health_interval,
                    false => LOOP_START_POLL,
                };
            if !running {
                continue;
            }
            if !ready {
                ready = self.send(Request::Ready, "POST", "/ready", "{}");
            }
            if std::mem::take(&mut first) {
                // Health from the next period on, for the timer passes after this one.
                heartbeat_seen = self.shared.heartbeat.load(Ordering::Relaxed);
                continue;
            }
            let heartbeat = self.shared.heartbeat.load(Ordering::Relaxed);
            if heartbeat != heartbeat_seen {
                heartbeat_seen = heartbeat;
                self.send(Request::Health, "POST", "/health", "{}");
            } else {
                self.shared.health_skipped.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(counter) = self.settings.players_counter.clone() {
                let players = self.shared.players.load(Ordering::Relaxed);
                if players_sent != Some(players) {
                    let path = format!("/v1beta1/counters/{counter}");
                    let body = format!("{{\"count\":\"{players}\"}}");
                    if self.send(Request::Players, "PATCH", &path, &body) {
                        players_sent = Some(players);
                    }
                }
            }
        }
    }

    /// Makes one request and counts it; true when the sidecar answered 2xx.
    fn send(&mut self, request: Request, method: &str, path: &str, body: &str) -> bool {
        let result = self.sdk.request(method, path, body);
        let ok = matches!(result, Ok(200..=299));
        let counters = match ok {
            true => &self.shared.ok,
            false => &self.shared.failed,
        };
        counters[request as usize].fetch_add(1, Ordering::Relaxed);
        let failing = &mut self.failing[request as usize];
        if ok == *failing {
            *failing = !ok;
            match result {
                Ok(status) if ok => {
                    tracing::info!(method, path, status, "agones: the SDK sidecar answers")
                }
                Ok(status) => tracing::warn!(method, path, status, "agones: request refused"),
                Err(e) => tracing::warn!(
                    method,
                    path,
                    sidecar = %self.sdk.addr,
                    error = %e,
                    "agones: request failed"
                ),
            }
        }
        ok
    }
}

/// A minimal HTTP/1.1 client for the sidecar: one connection per request (`Connection: close`), every
/// step under [`SDK_IO_TIMEOUT`], the answer read only as far as its status line.
struct Sdk {
    addr: SocketAddr,
}

impl Sdk {
    /// The answer's status code.
    fn request(&self, method: &str, path: &str, body: &str) -> io::Result<u16> {
        let mut stream = TcpStream::connect_timeout(&self.addr, SDK_IO_TIMEOUT)?;
        stream.set_read_timeout(Some(SDK_IO_TIMEOUT))?;
        stream.set_write_timeout(Some(SDK_IO_TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr.port(),
            body.len()
        );
        stream.write_all(request.as_bytes())?;
        let mut head = [0u8; ANSWER_HEAD_MAX];
        let mut len = 0;
        while len < head.len() {
            match stream.read(&mut head[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if head[..len].contains(&b'\n') {
                break;
            }
        }
        status_of(&head[..len]).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the answer has no HTTP status line",
            )
        })
    }
}

/// The status code of an answer's first line, `HTTP/1.x NNN ...`.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = words.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_of(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0"),
            Some(404)
        );
        assert_eq!(status_of(b"HTTP/1.1 200"), Some(200));
        assert_eq!(status_of(b""), None);
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 2000 OK\r\n"), None);
    }

    #[test]
    fn the_port_flag_wins_over_the_environment() {
        assert_eq!(Settings::sdk_port(Some(4000)), Ok(4000));
    }
}
