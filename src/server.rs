//! The loop. One thread owns the listener, every connection, the game, the replicated world and the clock.
//! Other threads reach it only through [`Handle`] (a crossbeam channel plus a `mio::Waker`).
//!
//! Each turn, in this order (see [`Server::run`]):
//!
//! 1. **poll** for socket events, sleeping at most until the next tick is due;
//! 2. **read and decode**: commands from other threads, accepts, HTTP requests, WebSocket messages
//!    (handed to the game as they arrive);
//! 3. **run due ticks**: the fixed-step schedule says how many; the game steps once per tick;
//! 4. **build and queue updates**: each distinct update is encoded once and the same bytes are queued to
//!    every connection that needs them, written straight to the socket when its queue is empty;
//!    then timers (handshake, ping, idle, close linger) are checked;
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
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use crate::clock::{Clock, SystemClock, TickSchedule};
use crate::config::Config;
use crate::metrics::{CloseReason, Gauges, Metrics};
use crate::net::conn::{Closing, Conn, Phase, WsState};
use crate::net::{frame, http, socket};
use crate::proto::{self, close, ClientMsg, ServerMsg};
use crate::sim::Game;
use crate::sync::{UpdateKind, Updates, World, WorldLimits};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Socket events taken per poll; more wait for the next turn.
const EVENTS_MAX: usize = 1024;
/// Connections accepted per turn, so a connect flood cannot starve ticks.
const ACCEPTS_PER_TURN_MAX: usize = 256;
/// Bytes discarded per closing connection per turn while waiting for its EOF.
const DISCARD_PER_TURN_MAX: usize = 64 * 1024;

/// What other threads can ask of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Drain: final updates, close every client with 1001, exit.
    Shutdown,
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

/// The server: see the module docs for the turn order.
pub struct Server<G: Game, C: Clock = SystemClock> {
    cfg: Config,
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    conns: Slab<Conn>,
    game: G,
    world: World<G::State>,
    clock: C,
    /// The time read once per turn, after poll.
    now: Instant,
    schedule: TickSchedule,
    updates: Updates,
    metrics: Metrics,
    commands: Receiver<Command>,
    handle: Handle,
    /// When draining, the moment to give up flushing and exit.
    drain_deadline: Option<Instant>,
    next_conn_id: u64,
    /// Connections with queued bytes to write at the end of the turn.
    write_list: Vec<usize>,
    /// Connections that hit `--messages-per-turn-max` and have more to read.
    reread_list: Vec<usize>,
    /// Connections that hit a limit during an iteration, closed right after it.
    close_list: Vec<(usize, u16, CloseReason)>,
    /// Connections marked dead this turn, reaped at its end.
    dead_list: Vec<usize>,
    /// The listener may hold more connections than one turn accepts.
    accept_pending: bool,
    /// `accept` failed (out of file descriptors, say): try again at the next tick, not in a busy loop.
    accept_stalled: bool,
    ws_open: usize,
    players: usize,
    /// Reused buffer for small per-connection messages (Welcome, Joined, Pong).
    scratch: Vec<u8>,
}

impl<G: Game> Server<G, SystemClock> {
    /// Binds the listener; `make_game` builds the game against the fresh world (to spawn wanderers, say).
    pub fn bind(
        cfg: Config,
        make_game: impl FnOnce(&mut World<G::State>) -> G,
    ) -> io::Result<Self> {
        Self::bind_with_clock(cfg, SystemClock, make_game)
    }
}

impl<G: Game, C: Clock> Server<G, C> {
    pub fn bind_with_clock(
        cfg: Config,
        clock: C,
        make_game: impl FnOnce(&mut World<G::State>) -> G,
    ) -> io::Result<Self> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(cfg.listen)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, commands) = crossbeam_channel::bounded(16);
        let mut world = World::new(WorldLimits {
            entities_max: cfg.max_entities,
            history_ticks: cfg.history_ticks,
            despawn_log_max: cfg.despawn_log_max,
        });
        let game = make_game(&mut world);
        let now = clock.now();
        Ok(Server {
            local_addr: listener.local_addr()?,
            schedule: TickSchedule::new(now, cfg.tick_duration(), cfg.catch_up_ticks_max),
            poll,
            listener,
            conns: Slab::new(),
            game,
            world,
            clock,
            now,
            updates: Updates::default(),
            metrics: Metrics::default(),
            commands,
            handle: Handle { tx, waker },
            drain_deadline: None,
            next_conn_id: 1,
            write_list: Vec::new(),
            reread_list: Vec::new(),
            close_list: Vec::new(),
            dead_list: Vec::new(),
            accept_pending: false,
            accept_stalled: false,
            ws_open: 0,
            players: 0,
            scratch: Vec::new(),
            cfg,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs until a drain finishes.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_MAX);
        loop {
            // 1. poll
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, Some(timeout)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => other?,
            }
            self.now = self.clock.now();

            // 2. read and decode
            self.take_commands();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_pending = true,
                    WAKER => {}
                    Token(k) => {
                        // Errors and hang-ups are found by reading: the read returns them.
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        self.on_socket_event(k, readable, event.is_writable())
                    }
                }
            }
            if self.accept_pending {
                self.accept();
            }
            for k in std::mem::take(&mut self.reread_list) {
                self.on_socket_event(k, true, false);
            }

            // 3. run due ticks, 4. build and queue updates
            let due = self.schedule.due(self.now);
            if due.run > 0 {
                self.run_ticks(due);
            }

            // 5. write
            self.flush_writes();

            // 6. reap
            self.reap();
            if self.drain_finished() {
                return Ok(());
            }
        }
    }

    fn poll_timeout(&self) -> Duration {
        if !self.reread_list.is_empty() || self.accept_pending {
            return Duration::ZERO;
        }
        let now = self.clock.now();
        let mut until = self.schedule.next_due();
        if let Some(deadline) = self.drain_deadline {
            until = until.min(deadline);
        }
        until.saturating_duration_since(now)
    }

    fn take_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Shutdown => self.begin_drain(),
            }
        }
    }

    // ---- 2. read and decode ----------------------------------------------------------------------------

    /// Accepts up to `ACCEPTS_PER_TURN_MAX` connections; `accept_pending` stays set while more may wait
    /// (the listener is edge-triggered, so it will not report them again).
    fn accept(&mut self) {
        self.accept_pending = false;
        for _ in 0..ACCEPTS_PER_TURN_MAX {
            let (sock, _) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EMFILE and friends: leave the rest in the backlog and try again next tick.
                Err(_) => {
                    self.accept_stalled = true;
                    return;
                }
            };
            self.metrics.connections_total += 1;
            if self.conns.len() >= self.cfg.max_connections {
                refuse_at_capacity(sock);
                self.metrics.closed(CloseReason::Rejected);
                continue;
            }
            self.register(sock);
        }
        self.accept_pending = true;
    }

    fn register(&mut self, mut sock: TcpStream) {
        if socket::tune(&sock, self.cfg.tcp_notsent_lowat_bytes).is_err() {
            self.metrics.closed(CloseReason::IoError);
            return;
        }
        let entry = self.conns.vacant_entry();
        if self
            .poll
            .registry()
            .register(&mut sock, Token(entry.key()), Interest::READABLE)
            .is_err()
        {
            self.metrics.closed(CloseReason::IoError);
            return;
        }
        entry.insert(Conn::new(sock, self.next_conn_id, self.now));
        self.next_conn_id += 1;
    }

    fn on_socket_event(&mut self, k: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(k) else {
            return;
        };
        if conn.dead.is_some() {
            return;
        }
        if writable {
            self.want_write(k);
        }
        if !readable {
            return;
        }
        let conn = &mut self.conns[k];
        if conn.closing.is_some() {
            self.discard_input(k);
        } else if matches!(conn.phase, Phase::Http { .. }) {
            self.read_http(k);
        } else {
            self.read_ws(k);
        }
    }

    fn want_write(&mut self, k: usize) {
        let conn = &mut self.conns[k];
        if !conn.on_write_list {
            conn.on_write_list = true;
            self.write_list.push(k);
        }
    }

    /// A closing connection's input is read and dropped until EOF, so the close is clean (no RST).
    fn discard_input(&mut self, k: usize) {
        let conn = &mut self.conns[k];
        let reason = conn.closing.map_or(CloseReason::Peer, |c| c.reason);
        let mut sink = [0u8; 4096];
        let mut total = 0;
        let outcome = loop {
            if total >= DISCARD_PER_TURN_MAX {
                break Some(false);
            }
            match conn.sock.read(&mut sink) {
                Ok(0) => break None,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Some(true),
                Err(_) => break None,
            }
        };
        self.metrics.bytes_in += total as u64;
        match outcome {
            None => self.kill(k, reason),
            Some(false) => self.reread_list.push(k),
            Some(true) => {}
        }
    }

    /// Marks a connection for reaping at the end of the turn; the first reason sticks.
    fn kill(&mut self, k: usize, reason: CloseReason) {
        mark_dead(&mut self.conns[k], k, reason, &mut self.dead_list);
    }

    fn read_http(&mut self, k: usize) {
        let max = self.cfg.max_header_bytes;
        let conn = &mut self.conns[k];
        let Phase::Http { buf } = &mut conn.phase else {
            unreachable!("read_http on a WebSocket")
        };
        // Read at most one byte past the limit: enough to know the head is too large.
        let mut chunk = [0u8; 2048];
        let failed = loop {
            let room = (max + 1).saturating_sub(buf.len()).min(chunk.len());
            if room == 0 {
                break None;
            }
            match conn.sock.read(&mut chunk[..room]) {
                Ok(0) => break Some(CloseReason::Peer),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    self.metrics.bytes_in += n as u64;
                    conn.last_heard = self.now;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(_) => break Some(CloseReason::IoError),
            }
        };
        if let Some(reason) = failed {
            return self.kill(k, reason);
        }
        match http::route(buf, max) {
            Ok(None) => {}
            Ok(Some(route)) => self.answer_http(k, route),
            Err(refusal) => self.refuse_http(k, &refusal, CloseReason::HttpError),
        }
    }

    /// Sends an HTTP answer written by `write` and closes the connection after it.
    fn reply_http(&mut self, k: usize, reason: CloseReason, write: impl FnOnce(&mut Vec<u8>)) {
        self.metrics.http_requests += 1;
        self.scratch.clear();
        write(&mut self.scratch);
        self.send_scratch(k);
        self.start_close(k, reason);
    }

    fn refuse_http(&mut self, k: usize, refusal: &http::Refusal, reason: CloseReason) {
        self.reply_http(k, reason, |out| http::write_refusal(out, refusal));
    }

    fn answer_http(&mut self, k: usize, route: http::Route) {
        use http::Route;
        let draining = self.drain_deadline.is_some();
        let done = CloseReason::HttpDone;
        match route {
            Route::Health if draining => self.refuse_http(
                k,
                &http::Refusal {
                    status: 503,
                    why: "draining",
                },
                done,
            ),
            Route::Health => self.reply_http(k, done, |out| {
                http::write_response(out, 200, "text/plain; charset=utf-8", b"ok\n", "")
            }),
            Route::Metrics => {
                let text = self.metrics.render(&self.gauges());
                self.reply_http(k, done, |out| {
                    http::write_response(out, 200, "text/plain; version=0.0.4", text.as_bytes(), "")
                })
            }
            Route::Asset(asset) => self.reply_http(k, done, |out| {
                http::write_response(out, 200, asset.content_type, asset.body, "")
            }),
            Route::Upgrade { .. } if draining => {
                let refusal = http::Refusal {
                    status: 503,
                    why: "server is shutting down",
                };
                self.refuse_http(k, &refusal, CloseReason::HttpError)
            }
            Route::Upgrade { key, head_len } => self.upgrade(k, &key, head_len),
        }
    }

    fn upgrade(&mut self, k: usize, key: &str, head_len: usize) {
        self.metrics.http_requests += 1;
        self.metrics.websockets_total += 1;
        self.ws_open += 1;
        let config = WebSocketConfig::default()
            .read_buffer_size(self.cfg.ws_read_buffer_bytes)
            .write_buffer_size(0)
            .max_write_buffer_size(self.cfg.send_limit_bytes)
            .max_message_size(Some(self.cfg.max_message_bytes))
            .max_frame_size(Some(self.cfg.max_message_bytes));
        let conn = &mut self.conns[k];
        let Phase::Http { buf } =
            std::mem::replace(&mut conn.phase, Phase::Http { buf: Vec::new() })
        else {
            unreachable!("upgrade of a WebSocket")
        };
        // Frames the client sent right behind its request are already in `buf`.
        let early = buf[head_len..].to_vec();
        conn.phase = Phase::Ws(Box::new(WsState {
            ctx: WebSocketContext::from_partially_read(early, Role::Server, Some(config)),
            baseline: None,
            last_update_at: self.now,
            player: false,
            pinged: false,
        }));
        self.scratch.clear();
        http::write_upgrade(&mut self.scratch, key);
        self.send_scratch(k);
        self.conns[k].out.frames_begin_here();
        self.scratch.clear();
        let welcome = ServerMsg::<(), ()>::Welcome {
            protocol: proto::PROTOCOL_VERSION,
            tick_hz: self.cfg.tick_hz,
            tick: self.world.tick(),
            connection_id: self.conns[k].id,
        };
        append_message(&mut self.scratch, &welcome);
        self.send_scratch(k);
        self.read_ws(k);
    }

    /// Queues `scratch` to connection `k`.
    fn send_scratch(&mut self, k: usize) {
        match self.conns[k].queue(&self.scratch) {
            Ok(n) => self.metrics.bytes_out += n as u64,
            Err(_) => return self.kill(k, CloseReason::IoError),
        }
        if !self.conns[k].out.is_empty() {
            self.want_write(k);
        }
    }

    fn read_ws(&mut self, k: usize) {
        let mut budget = self.cfg.messages_per_turn_max;
        loop {
            if budget == 0 {
                // Edge-triggered: the socket will not report again what is already buffered.
                self.reread_list.push(k);
                break;
            }
            budget -= 1;
            let conn = &mut self.conns[k];
            let (phase, mut io) = conn.io();
            let Phase::Ws(ws) = phase else {
                unreachable!("read_ws before upgrade")
            };
            let result = ws.ctx.read(&mut io);
            let bytes_in = io.bytes_in;
            if bytes_in > 0 {
                ws.pinged = false;
                conn.last_heard = self.now;
                self.metrics.bytes_in += bytes_in as u64;
            }
            match result {
                Ok(Message::Binary(bytes)) => {
                    self.metrics.frames_in += 1;
                    self.on_message(k, &bytes);
                }
                Ok(Message::Text(_)) => self.close(
                    k,
                    close::UNSUPPORTED_DATA,
                    "text frames are not supported: send binary",
                    CloseReason::ProtocolError,
                ),
                Ok(Message::Close(_)) => {
                    // tungstenite has queued the echo of the client's close frame.
                    self.start_close(k, CloseReason::Peer);
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.on_ws_error(k, e),
            }
            let conn = &self.conns[k];
            if conn.closing.is_some() || conn.dead.is_some() {
                break;
            }
        }
        self.flush_control(k);
    }

    /// Moves whatever tungstenite queued (pongs, close echoes) into the output queue, and polices its size.
    fn flush_control(&mut self, k: usize) {
        let conn = &mut self.conns[k];
        if conn.dead.is_some() {
            return;
        }
        let (phase, mut io) = conn.io();
        if let Phase::Ws(ws) = phase {
            let _ = ws.ctx.flush(&mut io);
        }
        if !conn.out.is_empty() {
            self.want_write(k);
        }
        if self.conns[k].out.pending() > self.cfg.send_limit_bytes
            && self.conns[k].closing.is_none()
        {
            self.close(
                k,
                close::SEND_LIMIT,
                "send buffer limit exceeded",
                CloseReason::SendLimit,
            );
        }
    }

    fn on_ws_error(&mut self, k: usize, e: WsError) {
        use tungstenite::error::ProtocolError;
        match e {
            WsError::ConnectionClosed | WsError::AlreadyClosed => self.kill(k, CloseReason::Peer),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                self.kill(k, CloseReason::Peer)
            }
            WsError::Io(_) => self.kill(k, CloseReason::IoError),
            WsError::Capacity(e) => {
                let reason = format!("message too big: {e}");
                self.close(
                    k,
                    close::MESSAGE_TOO_BIG,
                    &reason,
                    CloseReason::MessageTooBig,
                )
            }
            WsError::Utf8(_) => self.close(
                k,
                close::INVALID_PAYLOAD,
                "invalid UTF-8",
                CloseReason::ProtocolError,
            ),
            WsError::Protocol(p) => {
                let reason = format!("WebSocket protocol error: {p}");
                self.close(
                    k,
                    close::PROTOCOL_ERROR,
                    &reason,
                    CloseReason::ProtocolError,
                )
            }
            other => {
                let reason = format!("error: {other}");
                self.close(
                    k,
                    close::PROTOCOL_ERROR,
                    &reason,
                    CloseReason::ProtocolError,
                )
            }
        }
    }

    fn on_message(&mut self, k: usize, bytes: &[u8]) {
        let msg = match proto::decode_client::<G::Input>(bytes) {
            Ok(msg) => msg,
            Err(e) => {
                let reason = format!("malformed message: {e}");
                return self.close(
                    k,
                    close::INVALID_PAYLOAD,
                    &reason,
                    CloseReason::MalformedMessage,
                );
            }
        };
        let conn = &mut self.conns[k];
        let player = conn.player_id();
        let Phase::Ws(ws) = &mut conn.phase else {
            unreachable!("message before upgrade")
        };
        match msg {
            ClientMsg::Hello { protocol, .. } if protocol != proto::PROTOCOL_VERSION => {
                let reason = format!(
                    "protocol version mismatch: client speaks {protocol}, server speaks {}",
                    proto::PROTOCOL_VERSION
                );
                self.close(
                    k,
                    close::VERSION_MISMATCH,
                    &reason,
                    CloseReason::VersionMismatch,
                )
            }
            ClientMsg::Hello { .. } if ws.player => self.close(
                k,
                close::POLICY_VIOLATION,
                "Hello sent twice",
                CloseReason::ProtocolError,
            ),
            ClientMsg::Hello { name, .. } => match self.game.join(&mut self.world, player, &name) {
                Some(entity) => {
                    ws.player = true;
                    self.players += 1;
                    self.scratch.clear();
                    append_message(&mut self.scratch, &ServerMsg::<(), ()>::Joined { entity });
                    self.send_scratch(k);
                }
                None => self.close(
                    k,
                    close::TRY_AGAIN_LATER,
                    "the world is full",
                    CloseReason::WorldFull,
                ),
            },
            ClientMsg::Input { .. } if !ws.player => self.close(
                k,
                close::POLICY_VIOLATION,
                "Input before Hello",
                CloseReason::ProtocolError,
            ),
            ClientMsg::Input { seq, input } => self.game.input(player, seq, input),
            ClientMsg::Ping { nonce } => {
                self.scratch.clear();
                append_message(
                    &mut self.scratch,
                    &ServerMsg::<(), ()>::Pong {
                        nonce,
                        tick: self.world.tick(),
                    },
                );
                self.send_scratch(k);
            }
        }
    }

    // ---- 3. run due ticks, 4. build and queue updates ----------------------------------------------------

    fn run_ticks(&mut self, due: crate::clock::Due) {
        let started = self.clock.now();
        self.metrics.tick_lateness.record(due.lateness);
        self.metrics.ticks_skipped += due.skipped;
        let dt_s = self.schedule.period().as_secs_f32();
        let first = self.world.tick() + 1;
        for _ in 0..due.run {
            let tick = self.world.tick() + 1;
            self.game.step(&mut self.world, tick, dt_s);
            self.world.complete_tick();
            self.metrics.ticks += 1;
        }
        let every = self.cfg.checksum_every_ticks;
        let checksum = every > 0 && (first - 1) / every != self.world.tick() / every;
        self.send_updates(checksum, false);
        self.check_timers();
        self.accept_pending |= std::mem::take(&mut self.accept_stalled);
        self.metrics
            .tick_duration
            .record(self.clock.now() - started);
    }

    /// Queues the current tick's update to every connection that needs it. `force` (the final update of a
    /// drain) ignores the high-water mark.
    fn send_updates(&mut self, checksum: bool, force: bool) {
        let tick = self.world.tick();
        self.updates.begin(&self.world, checksum);
        for (k, conn) in self.conns.iter_mut() {
            let pending = conn.out.pending();
            let Some(ws) = conn.live_ws() else { continue };
            if ws.baseline == Some(tick) {
                continue;
            }
            if !force && pending > self.cfg.send_hwm_bytes {
                self.metrics.updates_skipped += 1;
                if self.now.saturating_duration_since(ws.last_update_at)
                    > Duration::from_millis(self.cfg.lag_limit_ms)
                {
                    self.close_list
                        .push((k, close::LAGGING, CloseReason::Lagging));
                }
                continue;
            }
            let (range, kind) = self.updates.for_baseline(&self.world, ws.baseline);
            match kind {
                UpdateKind::Delta => self.metrics.updates_delta += 1,
                UpdateKind::Coalesced => self.metrics.updates_coalesced += 1,
                UpdateKind::Full => self.metrics.updates_full += 1,
            }
            ws.baseline = Some(tick);
            ws.last_update_at = self.now;
            self.metrics.frames_out += 1;
            match conn.queue(self.updates.bytes(range)) {
                Ok(n) => self.metrics.bytes_out += n as u64,
                Err(_) => {
                    mark_dead(conn, k, CloseReason::IoError, &mut self.dead_list);
                    continue;
                }
            }
            if !conn.out.is_empty() && !conn.on_write_list {
                conn.on_write_list = true;
                self.write_list.push(k);
            }
            if conn.out.pending() > self.cfg.send_limit_bytes {
                self.close_list
                    .push((k, close::SEND_LIMIT, CloseReason::SendLimit));
            }
        }
        self.close_pending();
    }

    fn close_pending(&mut self) {
        for (k, code, reason) in std::mem::take(&mut self.close_list) {
            let text = match reason {
                CloseReason::Lagging => format!(
                    "too slow: no update could be sent for {} ms",
                    self.cfg.lag_limit_ms
                ),
                CloseReason::SendLimit => {
                    format!("send buffer passed {} bytes", self.cfg.send_limit_bytes)
                }
                CloseReason::IdleTimeout => format!("idle for {} ms", self.cfg.idle_timeout_ms),
                _ => String::from("closing"),
            };
            self.close(k, code, &text, reason);
        }
    }

    /// Handshake and idle timeouts, pings, and close lingers. Runs once per tick: timers are as precise as
    /// a tick, which is plenty for limits measured in seconds.
    fn check_timers(&mut self) {
        let now = self.now;
        let ms = Duration::from_millis;
        let (handshake, ping, idle) = (
            ms(self.cfg.handshake_timeout_ms),
            ms(self.cfg.ping_interval_ms),
            ms(self.cfg.idle_timeout_ms),
        );
        let mut timed_out_http = Vec::new();
        for (k, conn) in self.conns.iter_mut() {
            if conn.dead.is_some() {
                continue;
            }
            if let Some(closing) = conn.closing {
                if now >= closing.deadline {
                    mark_dead(conn, k, closing.reason, &mut self.dead_list);
                }
                continue;
            }
            let quiet = now.saturating_duration_since(conn.last_heard);
            let opened = conn.opened_at;
            let (phase, mut io) = conn.io();
            match phase {
                Phase::Http { .. } => {
                    if now.saturating_duration_since(opened) > handshake {
                        timed_out_http.push(k);
                    }
                }
                Phase::Ws(_) if quiet > idle => {
                    self.close_list
                        .push((k, close::IDLE_TIMEOUT, CloseReason::IdleTimeout));
                }
                Phase::Ws(ws) if quiet > ping && !ws.pinged => {
                    ws.pinged = true;
                    if ws
                        .ctx
                        .write(&mut io, Message::Ping(Default::default()))
                        .is_ok()
                    {
                        let _ = ws.ctx.flush(&mut io);
                    }
                    if !conn.on_write_list {
                        conn.on_write_list = true;
                        self.write_list.push(k);
                    }
                }
                Phase::Ws(_) => {}
            }
        }
        let refusal = http::Refusal {
            status: 408,
            why: "request not completed in time",
        };
        for k in timed_out_http {
            self.refuse_http(k, &refusal, CloseReason::HandshakeTimeout);
        }
        self.close_pending();
    }

    // ---- closing -----------------------------------------------------------------------------------------

    /// Sends a close frame with `code` and `reason`, then closes once it is written (or at the linger
    /// deadline).
    fn close(&mut self, k: usize, code: u16, reason: &str, why: CloseReason) {
        let conn = &mut self.conns[k];
        if conn.closing.is_some() || conn.dead.is_some() {
            return;
        }
        if matches!(why, CloseReason::Lagging | CloseReason::SendLimit) {
            // What is queued is stale; let the close frame through right behind the frame in flight.
            conn.out.drop_unsent_frames();
        }
        let (phase, mut io) = conn.io();
        if let Phase::Ws(ws) = phase {
            // A close reason must fit a control frame: 125 bytes minus the code.
            let reason = truncate_utf8(reason, 123);
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_string().into(),
            };
            let _ = ws.ctx.close(&mut io, Some(frame));
            let _ = ws.ctx.flush(&mut io);
        }
        self.start_close(k, why);
    }

    /// Marks a connection closing: what is queued still goes out, then the write side is shut.
    fn start_close(&mut self, k: usize, reason: CloseReason) {
        let conn = &mut self.conns[k];
        if conn.closing.is_none() {
            let deadline = self.now + Duration::from_millis(self.cfg.close_linger_ms);
            conn.closing = Some(Closing {
                reason,
                deadline,
                write_shut: false,
            });
            // Counted when decided, not when the socket finally goes, so the metric is prompt.
            self.metrics.closed(reason);
        }
        self.want_write(k);
    }

    // ---- 5. write ----------------------------------------------------------------------------------------

    fn flush_writes(&mut self) {
        for k in std::mem::take(&mut self.write_list) {
            let Some(conn) = self.conns.get_mut(k) else {
                continue;
            };
            conn.on_write_list = false;
            if conn.dead.is_some() {
                continue;
            }
            match conn.out.write_to(&mut conn.sock) {
                Ok(n) => self.metrics.bytes_out += n as u64,
                Err(_) => {
                    let reason = conn.closing.map_or(CloseReason::IoError, |c| c.reason);
                    mark_dead(conn, k, reason, &mut self.dead_list);
                    continue;
                }
            }
            let want_writable = !conn.out.is_empty();
            if want_writable != conn.writable_interest {
                let interest = if want_writable {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if self
                    .poll
                    .registry()
                    .reregister(&mut conn.sock, Token(k), interest)
                    .is_err()
                {
                    mark_dead(conn, k, CloseReason::IoError, &mut self.dead_list);
                    continue;
                }
                conn.writable_interest = want_writable;
            }
            if let Some(closing) = &mut conn.closing {
                if conn.out.is_empty() && !closing.write_shut {
                    closing.write_shut = true;
                    if conn.sock.shutdown(std::net::Shutdown::Write).is_err() {
                        let reason = closing.reason;
                        mark_dead(conn, k, reason, &mut self.dead_list);
                    }
                }
            }
        }
    }

    // ---- 6. reap -----------------------------------------------------------------------------------------

    fn reap(&mut self) {
        for k in std::mem::take(&mut self.dead_list) {
            let mut conn = self.conns.remove(k);
            let _ = self.poll.registry().deregister(&mut conn.sock);
            if let Phase::Ws(ws) = &conn.phase {
                self.ws_open -= 1;
                if ws.player {
                    self.players -= 1;
                    self.game.leave(&mut self.world, conn.player_id());
                }
            }
            if conn.closing.is_none() {
                self.metrics.closed(conn.dead.expect("on the dead list"));
            }
        }
    }

    // ---- drain -------------------------------------------------------------------------------------------

    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() {
            return;
        }
        self.drain_deadline = Some(self.now + Duration::from_millis(self.cfg.drain_timeout_ms));
        // Everyone gets the current tick (coalesced or full if they were behind), then 1001.
        self.send_updates(false, true);
        let open: Vec<usize> = self
            .conns
            .iter_mut()
            .filter_map(|(k, c)| c.live_ws().map(|_| k))
            .collect();
        for k in open {
            self.close(
                k,
                close::GOING_AWAY,
                "server shutting down",
                CloseReason::Shutdown,
            );
        }
    }

    fn drain_finished(&self) -> bool {
        match self.drain_deadline {
            None => false,
            Some(deadline) => self.ws_open == 0 || self.clock.now() >= deadline,
        }
    }

    pub fn gauges(&self) -> Gauges {
        Gauges {
            connections_open: self.conns.len(),
            websockets_open: self.ws_open,
            players: self.players,
            entities: self.world.len(),
            queued_bytes: self.conns.iter().map(|(_, c)| c.out.pending()).sum(),
            draining: self.drain_deadline.is_some(),
        }
    }
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

/// Answers a connection over `--max-connections` with a 503 as far as one non-blocking write goes.
fn refuse_at_capacity(mut sock: TcpStream) {
    use std::io::Write;
    let mut out = Vec::new();
    http::write_refusal(
        &mut out,
        &http::Refusal {
            status: 503,
            why: "server at connection capacity",
        },
    );
    let _ = sock.write(&out);
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
