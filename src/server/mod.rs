//! The loop. One thread owns the listener, every connection, every room (its game, its replicated world,
//! its players) and the clock. Other threads reach it only through [`Handle`] (a crossbeam channel plus a
//! `mio::Waker`).
//!
//! The split: the transport half of [`Server`] is the poll, the listener, the connections and HTTP
//! (`accept.rs`, `read.rs`, `closing.rs`); the rooms half is `room::Rooms`, each room with its game,
//! world, updates and sessions (`room.rs`, `players.rs`, `tick.rs`). A connection is in one room from its
//! upgrade on (`Conn::membership`); a room's fan-out iterates its members, never every connection.
//!
//! Each turn, in this order (see [`Server::turn`]):
//!
//! 1. **poll** for socket events, sleeping at most until the next room tick or timer is due;
//! 2. **read and decode**: commands from other threads, accepts, HTTP requests, WebSocket messages
//!    (handed to their room's game as they arrive);
//! 3. **run due ticks**: every room whose tick is due, each on its own schedule and phase: its game
//!    steps once per tick;
//! 4. **build and queue updates**, per room right after its ticks: each distinct update is encoded once
//!    and the same bytes are queued to every member that needs them, written straight to the socket when
//!    its queue is empty; then, once per `--tick-hz` period, the process's timers (handshake, ping, idle,
//!    close linger, idle rooms);
//! 5. **write** what is still queued, installing WRITABLE interest only while bytes remain;
//! 6. **reap** connections marked dead during the turn (never mid-iteration).

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role as WsRole, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

mod accept;
mod closes;
mod closing;
mod dashboard;
mod directory;
mod matchmake;
mod messages;
mod players;
mod read;
mod room;
mod routes;
mod sessions;
mod tick;

use self::closes::Close;
use crate::clock::{Clock, SystemClock, TickSchedule};
use crate::config::Config;
use crate::metrics::{CloseReason, Gauges, Metrics};
use crate::net::conn::{Closing, Conn, Phase, Role, WsState};
use crate::net::{frame, http, socket};
use crate::proto::{self, ClientMsg, ServerMsg};
use crate::sim::{Game, RoomTypes};
use crate::sync::UpdateKind;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Socket events taken per poll; more wait for the next turn.
const EVENTS_MAX: usize = 1024;
/// Connections accepted per turn, so a connect flood cannot starve ticks.
const ACCEPTS_PER_TURN_MAX: usize = 256;
/// Bytes discarded per closing connection per turn while waiting for its EOF.
const DISCARD_PER_TURN_MAX: usize = 64 * 1024;
/// How long a drained process waits for the Redis helper to take it out of the directory.
const CLUSTER_LEAVE_WAIT: Duration = Duration::from_millis(500);
/// How often, at most, the per-address table is swept for addresses with nothing open and a full bucket.
const PEER_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A `tracing` event of a kind clients can cause, through the server's [`crate::logs::Warnings`]: at most
/// a few per kind per second, each with `kind` and `suppressed` (those of its kind held back since the
/// last one). `limited!(self, Warning::X, warn, "text", field = value)`.
macro_rules! limited {
    ($server:expr, $kind:expr, $level:ident, $($rest:tt)+) => {{
        let kind: crate::logs::Warning = $kind;
        if let Some(suppressed) = $server.warnings.admit(kind, $server.now) {
            tracing::$level!(kind = kind.name(), suppressed, $($rest)+);
        }
    }};
}
pub(super) use limited;

/// What a handler did to the connection it was handed: whether its caller may go on with it (read its
/// next message, say). Every path that closes or kills the connection returns `Stop`, so a caller acts on
/// the answer instead of looking the connection up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Go,
    Stop,
}

/// What other threads can ask of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Drain: final updates, close every client with 1001, exit.
    Shutdown,
    /// Load `--tls-cert` and `--tls-key` again (SIGHUP): new handshakes use them; a bad pair is refused
    /// with a log line and the old one stays.
    ReloadTls,
}

/// A way into the loop from other threads.
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
}

impl Handle {
    pub fn send(&self, command: Command) {
        // The loop may already be gone; then there is nothing to tell it.
        if self.tx.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }

    pub fn shutdown(&self) {
        self.send(Command::Shutdown);
    }
}

/// The server: see the module docs for the turn order. Its two halves are `net` (the transport) and
/// `rooms`; the rest is what the loop as a whole owns: settings, clock, timers, metrics, the drain.
pub struct Server<G: Game, C: Clock = SystemClock> {
    cfg: Config,
    /// The poll, the listener, every connection and the per-turn lists over them.
    net: Transport,
    /// Every match: its game, world, schedule, players and members; by name and by when it ticks next.
    rooms: room::Rooms<G>,
    /// The process's own timers (connection timeouts, pings, idle rooms): once per `--tick-hz` period.
    timers: TickSchedule,
    /// Bytes queued across all connections, for `--queued-bytes-max`: counted at every timer tick, plus
    /// what fan-outs queued since, less what was written since. Between counts it misses only the small
    /// messages queued outside the fan-out (`Welcome`, `Joined`, `Pong`, control frames).
    queued_estimate: usize,
    /// The largest memory estimate since memory was last given back (`tick.rs`, `note_queued`).
    memory_peak: usize,
    last_trim: Instant,
    /// Reused list of rooms idle long enough to dispose.
    idle_rooms: Vec<usize>,
    clock: C,
    /// The time read once per turn, after poll.
    now: Instant,
    metrics: Metrics,
    commands: Receiver<Command>,
    handle: Handle,
    /// When draining, the moment to give up flushing and exit.
    drain_deadline: Option<Instant>,
    /// The secret tickets are signed with (`--ticket-secret-file`); `None`: no tickets required.
    ticket_secret: Option<Vec<u8>>,
    /// This process's end of the cluster directory (`--redis`); `None`: standalone.
    cluster: Option<crate::cluster::Cluster>,
    /// `POST /matchmake` requests with the cluster's matchmaker, by connection id (at most
    /// `cluster::TO_REDIS_MAX / 2` plus the answers not yet taken: `Cluster::ask` refuses beyond).
    matchmaking: std::collections::HashMap<u64, matchmake::Waiting>,
    /// Game messages waiting for their rooms, and connections by account (`messages.rs`).
    mail: messages::Mail,
    /// The Agones SDK helper (`--agones`): told at every timer tick that the loop lives; `None`: off.
    agones: Option<crate::agones::Agones>,
    /// The bound on events clients can cause (limits hit, rooms made): a few per kind per second.
    warnings: crate::logs::Warnings,
    /// `GET /dashboard` (`--dashboard`, `--dashboard-token-file`); `None`: not served (404).
    dashboard: Option<dashboard::Dashboard>,
}

/// The transport half of the server: the poll, the listener, every connection (in any phase: HTTP, or a
/// WebSocket in a room) and the lists a turn keeps over them. It knows nothing of games or rooms beyond
/// each connection's `membership`.
struct Transport {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    conns: Slab<Conn>,
    /// Reused by every turn's poll.
    events: Events,
    next_conn_id: u64,
    /// Connections with queued bytes to write at the end of the turn.
    write_list: Vec<usize>,
    /// Connections whose queue the kernel did not take whole, waiting for WRITABLE (exactly those with
    /// `Conn::writable_interest`): with the write list, every connection with bytes queued, so the timers
    /// count the queued bytes without visiting every connection.
    backlogged: std::collections::HashSet<usize>,
    /// Where the timer pass goes on checking connections (slab key), when there are too many to check
    /// every tick (`--timer-checks-per-pass-min`).
    timer_cursor: usize,
    /// Connections that spent their read budget this turn and may have more to read; each at most once
    /// (`Conn::on_reread_list`), so the list is bounded by the connections.
    reread_list: Vec<(usize, u64)>,
    /// Connections that hit a limit during an iteration, closed right after it.
    close_list: Vec<(usize, Close)>,
    /// Connections marked dead this turn, reaped at its end.
    dead_list: Vec<usize>,
    /// The listener may hold more connections than one turn accepts.
    accept_pending: bool,
    /// `accept` failed (out of file descriptors, say): try again at the next tick, not in a busy loop.
    accept_stalled: bool,
    ws_open: usize,
    /// Reused buffer for small per-connection messages (Welcome, Joined, Pong, HTTP answers).
    scratch: Vec<u8>,
    /// Open connections, accept buckets and rooms created per client address (`--max-connections-per-ip`,
    /// ...).
    peers: crate::net::peers::Peers,
    /// When `peers` was last swept.
    peers_swept_at: Instant,
    /// Connections in the `--health-slots` beyond `--max-connections`, oldest first: (slab key, connection
    /// id). At most `--health-slots`.
    spare_slots: std::collections::VecDeque<(usize, u64)>,
    /// A descriptor (`/dev/null`) given up when `accept` says EMFILE, to answer one client and close it.
    reserve_fd: Option<std::fs::File>,
    /// TLS settings for new connections (`--tls-cert`); `None`: plain. Replaced on SIGHUP; a connection
    /// keeps the settings it was accepted with.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Socket events the last poll returned (for `--read-coalesce-us`).
    events_last_turn: usize,
}

impl<G: Game> Server<G, SystemClock> {
    /// Binds the listener and opens the default room (`--default-room`, of the first room type); other
    /// rooms are created as clients name them.
    pub fn bind(cfg: Config, types: RoomTypes<G>) -> io::Result<Self> {
        Self::bind_with_clock(cfg, SystemClock, types)
    }
}

impl<G: Game, C: Clock> Server<G, C> {
    pub fn bind_with_clock(cfg: Config, clock: C, types: RoomTypes<G>) -> io::Result<Self> {
        let invalid = |e| io::Error::new(io::ErrorKind::InvalidInput, e);
        cfg.validate().map_err(invalid)?;
        let ticket_secret = match &cfg.ticket_secret_file {
            None => None,
            Some(path) => Some(read_secret("--ticket-secret-file", path)?),
        };
        let dashboard_token = dashboard::read_token(&cfg)?;
        socket::raise_descriptor_limit(cfg.descriptors_needed())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let reserve_fd = Some(socket::open_reserve()?);
        let tls = match cfg.tls_files() {
            Some((cert, key)) => Some(crate::net::tls::load(cert, key).map_err(invalid)?),
            None => None,
        };
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(cfg.listen)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut mail = messages::Mail::default();
        let cluster = match (cfg.cluster_settings(), &cfg.cluster_secret_file) {
            (Some(mut settings), Some(secret)) => {
                settings.seats = types.seats();
                let rate = cfg.backplane_messages_per_s;
                let topics = types.topics();
                let backplane =
                    crate::backplane::Backplane::start(&settings, &topics, rate, waker.clone())?;
                mail.backplane = Some(backplane);
                let secret = read_secret("--cluster-secret-file", secret)?;
                Some(crate::cluster::Cluster::start(
                    settings,
                    secret,
                    waker.clone(),
                )?)
            }
            _ => None,
        };
        // The listener is bound and listening: the helper's first words to the sidecar are Ready.
        let agones = match cfg.agones_settings() {
            Some(settings) => Some(crate::agones::Agones::start(settings.map_err(invalid)?)?),
            None => None,
        };
        let (tx, commands) = crossbeam_channel::bounded(16);
        let now = clock.now();
        let rooms = room::Rooms::new(&cfg, types, now, clock.unix_time_s()).map_err(invalid)?;
        let mut metrics = Metrics::default();
        metrics.rooms_created += 1;
        let mut server = Server {
            net: Transport {
                local_addr: listener.local_addr()?,
                events: Events::with_capacity(EVENTS_MAX),
                poll,
                listener,
                conns: Slab::new(),
                next_conn_id: 1,
                write_list: Vec::new(),
                backlogged: Default::default(),
                timer_cursor: 0,
                reread_list: Vec::new(),
                close_list: Vec::new(),
                dead_list: Vec::new(),
                accept_pending: false,
                accept_stalled: false,
                ws_open: 0,
                scratch: Vec::new(),
                peers: crate::net::peers::Peers::new(cfg.peer_limits()),
                peers_swept_at: now,
                spare_slots: Default::default(),
                reserve_fd,
                tls,
                events_last_turn: 0,
            },
            rooms,
            timers: TickSchedule::new(now, cfg.tick_duration(), 1),
            queued_estimate: 0,
            memory_peak: 0,
            last_trim: now,
            idle_rooms: Vec::new(),
            clock,
            now,
            metrics,
            commands,
            handle: Handle { tx, waker },
            drain_deadline: None,
            ticket_secret,
            cluster,
            matchmaking: Default::default(),
            mail,
            agones,
            warnings: Default::default(),
            dashboard: dashboard::Dashboard::new(&cfg, dashboard_token, now),
            cfg,
        };
        // In a cluster, the process's entry goes first: no claim of its rooms reaches Redis before it.
        server.cluster_beat(true);
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs until a drain finishes; in a cluster, then releases its rooms and leaves the directory
    /// (waiting for Redis at most `CLUSTER_LEAVE_WAIT`: the entries expire within `--cluster-ttl-ms`
    /// anyway); under Agones, then says Shutdown (waiting at most `agones::SHUTDOWN_WAIT`).
    pub fn run(&mut self) -> io::Result<()> {
        while !self.turn(None)? {}
        tracing::info!(
            ticks = self.metrics.ticks,
            websockets_served = self.metrics.websockets_total,
            websockets_cut = self.net.ws_open,
            "drained"
        );
        if let Some(cluster) = &mut self.cluster {
            // Its rooms' names go back too, so another process may create them at once.
            cluster.leave(self.rooms.beats(), CLUSTER_LEAVE_WAIT);
        }
        if let Some(agones) = &mut self.agones {
            agones.shutdown(crate::agones::SHUTDOWN_WAIT);
        }
        Ok(())
    }

    /// One turn of the loop: waits for socket events at most `max_wait` (`None`: until the next tick or
    /// deadline is due), then does the turn's work in the order of the module docs. True once a drain has
    /// finished. [`Self::run`] is nothing but turns; a test that injects a [`crate::clock::ManualClock`]
    /// steps the loop with `turn(Some(Duration::ZERO))` between moving the clock and talking to it.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<bool> {
        let mut events = std::mem::replace(&mut self.net.events, Events::with_capacity(0));
        let result = self.turn_with(&mut events, max_wait);
        self.net.events = events;
        result
    }

    fn turn_with(&mut self, events: &mut Events, max_wait: Option<Duration>) -> io::Result<bool> {
        // `--read-coalesce-us`: after a busy turn, let more input arrive before the next wake-up (bounded,
        // and never past what is due: `poll_timeout` is zero when work waits).
        if self.cfg.read_coalesce_us > 0 && self.net.events_last_turn > 0 && max_wait.is_none() {
            let wait = Duration::from_micros(self.cfg.read_coalesce_us).min(self.poll_timeout());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        let timeout = match max_wait {
            Some(wait) => wait.min(self.poll_timeout()),
            None => self.poll_timeout(),
        };
        // 1. poll
        match self.net.poll.poll(events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => other?,
        }
        self.now = self.clock.now();
        self.metrics.turns += 1;

        // 2. read and decode. Those that spent their read budget last turn are read after the events,
        // once; those that spend it this turn wait for the next.
        let mut reread = std::mem::take(&mut self.net.reread_list);
        self.take_commands();
        self.take_cluster_news();
        self.take_backplane();
        self.net.events_last_turn = 0;
        for event in events.iter() {
            self.metrics.events += 1;
            self.net.events_last_turn += 1;
            match event.token() {
                LISTENER => self.net.accept_pending = true,
                WAKER => {}
                Token(k) => {
                    // Errors and hang-ups are found by reading: the read returns them.
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    if event.is_read_closed() || event.is_error() {
                        if let Some(conn) = self.net.conns.get_mut(k) {
                            conn.peer_closed = true;
                        }
                    }
                    self.on_socket_event(k, readable, event.is_writable())
                }
            }
        }
        if self.net.accept_pending {
            self.accept();
        }
        for (k, id) in reread.drain(..) {
            // By id: the connection listed may have been reaped and its slab key given to another.
            if let Some(conn) = self.net.conns.get_mut(k).filter(|c| c.id == id) {
                conn.on_reread_list = false;
                self.on_socket_event(k, true, false);
            }
        }
        self.net.reread_list = keep_capacity(reread, std::mem::take(&mut self.net.reread_list));

        // Topic messages (published here last turn, or from the backplane) reach their rooms.
        if self.mail.has_topics() {
            self.deliver_topics();
        }

        // 3. run due ticks, 4. build and queue updates: every room that is due, then the timers
        while let Some(key) = self.rooms.take_due(self.now) {
            self.run_room(key);
        }
        if self.timers.due(self.now).run > 0 {
            self.run_timers();
        }

        // 5. write
        self.flush_writes();

        // 6. reap
        self.reap();
        Ok(self.drain_finished())
    }

    fn poll_timeout(&self) -> Duration {
        if !self.net.reread_list.is_empty() || self.net.accept_pending || self.mail.has_work() {
            return Duration::ZERO;
        }
        let now = self.clock.now();
        let mut until = self.timers.next_due();
        if let Some(due) = self.rooms.next_due() {
            until = until.min(due);
        }
        if let Some(deadline) = self.drain_deadline {
            until = until.min(deadline);
        }
        until.saturating_duration_since(now)
    }

    fn take_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Shutdown => self.begin_drain(),
                Command::ReloadTls => self.reload_tls(),
            }
        }
    }

    /// SIGHUP: the certificate and key files again. New handshakes use them; connections keep theirs. A
    /// pair that does not load leaves the old one in place, with a log line saying why.
    fn reload_tls(&mut self) {
        let Some((cert, key)) = self.cfg.tls_files() else {
            tracing::warn!("SIGHUP: no --tls-cert to reload");
            return;
        };
        match crate::net::tls::load(cert, key) {
            Ok(config) => {
                self.net.tls = Some(config);
                self.metrics.tls_reloads_ok += 1;
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Err(why) => {
                self.metrics.tls_reloads_failed += 1;
                tracing::error!(%why, "TLS reload refused, keeping the old certificate");
            }
        }
    }

    pub fn gauges(&self) -> Gauges {
        let rooms = || self.rooms.iter().map(|(_, room)| room);
        Gauges {
            connections_open: self.net.conns.len(),
            websockets_open: self.net.ws_open,
            players: rooms().map(|r| r.sessions.attached()).sum(),
            players_detached: rooms().map(|r| r.sessions.detached()).sum(),
            entities: rooms().map(|r| r.world.len()).sum(),
            queued_bytes: self.net.conns.iter().map(|(_, c)| c.queued()).sum(),
            draining: self.drain_deadline.is_some(),
            peer_addresses: self.net.peers.len(),
            rooms_open: self.rooms.len(),
            tls: self.net.tls.is_some(),
            agones: self.agones.as_ref().map(|a| a.stats()),
            cluster: self
                .cluster
                .as_ref()
                .map(|c| crate::metrics::ClusterGauges {
                    redis_up: c.down.is_none(),
                    dropped: c.dropped,
                    claims_lost: c.claims_lost,
                    backplane: self
                        .mail
                        .backplane
                        .as_ref()
                        .map(|b| b.stats())
                        .unwrap_or_default(),
                }),
        }
    }
}

/// Reads the secret file `flag` names: its bytes, without a trailing newline; one under 16 bytes is refused.
fn read_secret(flag: &str, path: &std::path::Path) -> io::Result<Vec<u8>> {
    let mut secret = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{flag} {}: {e}", path.display())))?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    if secret.len() < 16 {
        let why = format!(
            "{flag} {}: the secret must be at least 16 bytes",
            path.display()
        );
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    Ok(secret)
}

/// The emptied per-turn list `drained` with whatever was `added` to the live one meanwhile: the lists
/// keep their allocation from turn to turn.
fn keep_capacity<T>(mut drained: Vec<T>, added: Vec<T>) -> Vec<T> {
    debug_assert!(drained.is_empty());
    drained.extend(added);
    drained
}

/// Marks `conn` (key `k`) dead and lists it for reaping, once; the first reason sticks.
fn mark_dead(conn: &mut Conn, k: usize, reason: CloseReason, dead_list: &mut Vec<usize>) {
    if conn.dead.is_none() {
        conn.dead = Some(reason);
        dead_list.push(k);
    }
}

/// Encodes `msg` and appends it as one binary frame.
fn append_message<S: serde::Serialize, D: serde::Serialize>(
    out: &mut Vec<u8>,
    msg: &ServerMsg<S, D>,
) {
    let payload = proto::encode(msg);
    frame::write_binary(out, &payload);
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
