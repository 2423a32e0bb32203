//! One bot: the life of its connection (waiting, dialing, upgrading, open, closing), its behaviour, its
//! view of the world and its measurements. A bot owns no thread and never blocks: its worker calls it when
//! its socket is ready and when its timer is due, and each call does a bounded amount of work.
//!
//! ```text
//!  Waiting --at--> [Matchmaking] --placed--> Dialing --connected--> Upgrading --101--> Open --Welcome-->
//!     ^                 |                       |                       |               |  \
//!     |                 +------- failed --------+-------- failed -------+---------------+   +-- close --> Closing
//!     +--------------------- backoff (or Done after --connect-attempts failures) ---------------------+
//! ```
//!
//! With `--matchmake` every connect attempt begins with a `POST /matchmake` on a socket of its own, driven
//! by the same readiness events (`Matchmaking`): the bot asks for its room (or for any room of
//! `--matchmake-type`, then for the room it was placed in), and dials the answer's `connect` URL, seat
//! ticket included. A request that places the bot nowhere is a failed attempt like any other (a `503`'s
//! `Retry-After` lengthens the wait). Asking again before every attempt is what a client must do: a seat
//! ticket is for one room on one process and expires, and a room may move (a close with 4009 says so).
//!
//! A bot that joins sends `Hello` on `Welcome`, a spectator `Watch` (the server sends nothing else until
//! one of them arrives). A `flapper` resumes: when its connection is lost without its own close frame
//! (its abrupt drops included) it keeps its [`View`] (mirror, entity, resume token) and its input
//! numbering, and its next connection's `Hello` presents the token and the tick the mirror holds; the
//! update after an honoured resume applies to the mirror it kept. Every other bot, and a flapper whose
//! resume is refused, starts again as a new player with an empty mirror.

use std::io;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use tickcast::proto::{self, ClientMsg};
use tickcast::sim::Rng;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

use crate::acks::PendingInputs;
use crate::bucket::TokenBucket;
use crate::config::{valid_room_name, Plan};
use crate::game::{Arena, BotGame};
use crate::matchmake::{self, Ask, HttpAnswer, PlacedRooms};
use crate::mix::Behaviour;
use crate::schedule::TickEstimate;
use crate::stats::{
    BotError, Cause, ConnectFailure, MatchmakeFailure, OpenGauge, Processes, RoomStats, Stats,
};
use crate::stream::{self, BotStream, CallError, HttpCall};
use crate::view::{Seen, UpdateKind, View, ViewError};

/// Messages a bot reads per call; with more waiting, its worker calls it again next turn, so one bot with
/// a backlog of large updates cannot starve the others on the thread.
pub const MESSAGES_PER_TURN_MAX: usize = 16;
/// Inputs a bot sends back to back when its thread ran late; slots further behind are skipped and counted.
pub const INPUT_CATCH_UP_MAX: u32 = 4;
/// Inputs a bot tracks while waiting for their acknowledgement (about 50 s of inputs at 20 per second).
pub const PENDING_INPUTS_MAX: usize = 1024;
pub use crate::game::TURN_PROBABILITY;
/// How many times per second a slow bot reads (its bucket holds `--slow-bps` / this many bytes).
pub const SLOW_READS_PER_S: u64 = 20;
/// Initial read buffer of a bot's WebSocket; it grows to the largest message seen.
const READ_BUFFER_BYTES: usize = 4096;
/// Largest message (and frame) a bot accepts from the server: a `Full` of a very large world fits.
const MESSAGE_BYTES_MAX: usize = 16 << 20;
/// Bytes a bot may have queued for sending before new inputs are dropped (the server is not reading).
const WRITE_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// What a bot needs from its worker during one call.
pub struct Ctx<'a> {
    /// The time of this turn, read once by the worker.
    pub now: Instant,
    pub registry: &'a Registry,
    pub token: Token,
    pub plan: &'a Plan,
    pub stats: &'a mut Stats,
    /// What the bots of this bot's room counted (kept by the worker for the whole run).
    pub room: &'a mut RoomStats,
    pub open: &'a mut OpenGauge,
    /// Correctness errors for the log; the counts live in `stats`.
    pub errors: &'a mut Vec<BotError>,
    /// The processes the worker's bots were placed on (`--matchmake`), for the whole run.
    pub processes: &'a mut Processes,
    /// The rooms the matchmaker chose (`--matchmake-type` without planned rooms), shared by the workers.
    pub placed_rooms: &'a PlacedRooms,
}

/// What comes after a close handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Connect again after a jittered delay.
    Reconnect,
    /// Stay down: the server is going away, or the run is over.
    Retire,
}

enum Link {
    /// Not connected; the next attempt starts `at`.
    Waiting { at: Instant },
    /// `--matchmake`: the request before the connect is under way; `started` is when it began.
    Matchmaking { call: HttpCall, started: Instant },
    /// TCP connect under way; `started` is when the attempt began.
    Dialing { stream: BotStream, started: Instant },
    /// HTTP upgrade under way.
    Upgrading {
        mid: MidHandshake<ClientHandshake<BotStream>>,
        started: Instant,
    },
    /// WebSocket open; see the session for what has been received.
    Open { ws: WebSocket<BotStream> },
    /// A close frame went one way or the other: drain until EOF or `deadline`.
    Closing {
        ws: WebSocket<BotStream>,
        deadline: Instant,
        then: Then,
    },
    /// Gave up, retired, or the run is over.
    Done,
}

/// What a bot knows about its current connection, from the end of the upgrade until it ends.
struct Session<G: BotGame> {
    /// When the connect attempt began, for the connect time.
    started: Instant,
    /// The server's `Welcome` arrived: the bot counts as connected.
    welcomed: bool,
    connection_id: u64,
    view: View<G>,
    schedule: Option<TickEstimate>,
    inputs: PendingInputs,
    /// When the next input is due, once the server said `Joined`.
    next_input_at: Option<Instant>,
    /// When a flapper drops this connection.
    flap_at: Option<Instant>,
    /// When the last update of this connection arrived, for the room's update intervals.
    last_update_at: Option<Instant>,
}

/// Where the matchmaker's last answer sent a bot.
#[derive(Debug, Clone)]
struct Placement {
    /// The WebSocket URL to open (`connect`, resolved; the seat ticket is in it).
    url: String,
    addr: std::net::SocketAddr,
    room: String,
    /// The process, as the worker's [`Processes`] numbers it.
    process: usize,
    /// `wss://`: the name the server's certificate is checked for; `None`: `ws://`.
    tls: Option<rustls::pki_types::ServerName<'static>>,
}

/// One simulated player (or spectator).
pub struct Bot<G: BotGame = Arena> {
    /// The bot's number in the run, 0-based; errors name it.
    pub id: usize,
    pub behaviour: Behaviour,
    /// The bot's room in the plan (0-based; 0 without rooms).
    pub room: u32,
    rng: Rng,
    link: Link,
    session: Option<Session<G>>,
    /// The view a resuming bot carries from a lost connection to its next one (see the module doc).
    kept: Option<View<G>>,
    /// The seq of the last input sent; it carries on across resumed connections and starts again at 0
    /// for a new player.
    seq: u32,
    /// The last input sent, which the game's [`BotGame::next_input`] carries on from.
    input: Option<G::Input>,
    /// Connect attempts that failed in a row.
    failures: u32,
    /// Connections in a row closed with 4006 (room full) before the bot played or watched: they back off
    /// like failed attempts, and the bot gives up after --connect-attempts of them.
    full_streak: u32,
    ever_connected: bool,
    /// The run is ending: never connect again.
    stopping: bool,
    /// A read loop stopped at [`MESSAGES_PER_TURN_MAX`] with more to read; see [`Bot::take_reread`].
    reread: bool,
    /// `--matchmake`: where the last answer sent the bot; replaced by every answer.
    placement: Option<Placement>,
    /// `--matchmake-type` without planned rooms: the room the matchmaker chose, once the bot played (or
    /// watched) there; asked for from then on, so a bot that reconnects comes back to its room and can
    /// resume its player. Until then (a room that turned out full, 4006) it asks for any room again.
    placed_room: Option<String>,
    /// The processes (numbered as in [`Processes`]) this bot was welcomed on, to count bots per process.
    welcomed_on: Vec<usize>,
    /// The deadline the worker's timer holds for this bot (worker bookkeeping).
    pub armed: Option<Instant>,
}

impl<G: BotGame> Bot<G> {
    /// A bot of room `room` that makes its first connect attempt at `first_at`.
    pub fn new(id: usize, behaviour: Behaviour, room: u32, first_at: Instant, seed: u64) -> Self {
        Bot {
            id,
            behaviour,
            room,
            rng: Rng::new(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            link: Link::Waiting { at: first_at },
            session: None,
            kept: None,
            seq: 0,
            input: None,
            failures: 0,
            full_streak: 0,
            ever_connected: false,
            stopping: false,
            reread: false,
            placement: None,
            placed_room: None,
            welcomed_on: Vec::new(),
            armed: None,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.link, Link::Done)
    }

    pub fn ever_connected(&self) -> bool {
        self.ever_connected
    }

    /// Whether the bot stopped reading at [`MESSAGES_PER_TURN_MAX`] with more waiting. The worker must then
    /// call [`Bot::on_reread`] next turn: an edge-triggered socket will not signal again for those bytes.
    pub fn take_reread(&mut self) -> bool {
        std::mem::take(&mut self.reread)
    }

    /// The earliest moment this bot needs its timer, if any.
    pub fn next_wake(&self, plan: &Plan) -> Option<Instant> {
        let timeout = plan.connect_timeout();
        match &self.link {
            Link::Waiting { at } => Some(*at),
            Link::Matchmaking { started, .. } => Some(*started + plan.matchmake_timeout()),
            Link::Dialing { started, .. } | Link::Upgrading { started, .. } => {
                Some(*started + timeout)
            }
            Link::Open { ws } => {
                let s = self.session.as_ref()?;
                let welcome_deadline = (!s.welcomed).then(|| s.started + timeout);
                [
                    welcome_deadline,
                    s.next_input_at,
                    s.flap_at,
                    ws.get_ref().unstarved_at(),
                ]
                .into_iter()
                .flatten()
                .min()
            }
            Link::Closing { deadline, .. } => Some(*deadline),
            Link::Done => None,
        }
    }

    /// The socket is ready (or may be: spurious wake-ups are allowed).
    pub fn on_ready(&mut self, ctx: &mut Ctx, readable: bool, writable: bool) {
        match &mut self.link {
            Link::Matchmaking { .. } => self.matchmake_step(ctx),
            Link::Dialing { stream, .. } => match stream::connected(&stream.sock) {
                Ok(true) => self.upgrade(ctx),
                Ok(false) => {}
                Err(_) => self.attempt_failed(ctx, ConnectFailure::Tcp),
            },
            Link::Upgrading { .. } => {
                let Link::Upgrading { mid, started } = self.take_link() else {
                    unreachable!()
                };
                self.handshake_step(ctx, mid.handshake(), started)
            }
            Link::Open { ws } => {
                if writable {
                    // Errors show up on the read side too; handled there.
                    let _ = ws.flush();
                }
                if readable {
                    self.read_open(ctx);
                }
            }
            Link::Closing { ws, .. } => {
                if writable {
                    // The close frame (or its echo) that a full socket held back.
                    let _ = ws.flush();
                }
                if readable {
                    self.read_closing(ctx);
                }
            }
            Link::Waiting { .. } | Link::Done => {}
        }
    }

    /// A read turn the bot asked for through [`Bot::take_reread`]: it stopped at a per-turn bound (its
    /// messages, or TLS's socket reads) with more to read.
    pub fn on_reread(&mut self, ctx: &mut Ctx) {
        match self.link {
            Link::Open { .. } => self.read_open(ctx),
            Link::Closing { .. } => self.read_closing(ctx),
            Link::Matchmaking { .. } => self.matchmake_step(ctx),
            Link::Upgrading { .. } => {
                let Link::Upgrading { mid, started } = self.take_link() else {
                    unreachable!()
                };
                self.handshake_step(ctx, mid.handshake(), started)
            }
            _ => {}
        }
    }

    /// The bot's timer is due (or may be: every deadline is checked against `ctx.now`).
    pub fn on_timer(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        let timeout = ctx.plan.connect_timeout();
        match &self.link {
            Link::Waiting { at } if *at <= now => self.attempt(ctx),
            Link::Matchmaking { started, .. } if *started + ctx.plan.matchmake_timeout() <= now => {
                let what = format!(
                    "no whole answer within {} ms",
                    ctx.plan.args.matchmake_timeout_ms
                );
                self.matchmake_failed(ctx, MatchmakeFailure::Timeout, what, None)
            }
            Link::Dialing { started, .. } | Link::Upgrading { started, .. }
                if *started + timeout <= now =>
            {
                self.attempt_failed(ctx, ConnectFailure::Timeout)
            }
            Link::Open { ws } => {
                let starved = ws.get_ref().unstarved_at().is_some_and(|at| at <= now);
                let Some(s) = &self.session else { return };
                if !s.welcomed && s.started + timeout <= now {
                    return self.attempt_failed(ctx, ConnectFailure::Timeout);
                }
                if s.flap_at.is_some_and(|at| at <= now) {
                    return self.flap(ctx);
                }
                if s.next_input_at.is_some_and(|at| at <= now) {
                    self.send_inputs(ctx);
                }
                if starved {
                    self.read_open(ctx);
                }
            }
            Link::Closing { deadline, then, .. } if *deadline <= now => {
                let then = *then;
                self.drop_socket(ctx);
                self.after_close(ctx, then);
            }
            _ => {}
        }
    }

    /// The run is over: close cleanly if connected (the close is not counted as a disconnect), then stay
    /// down. Inputs still unacknowledged are sampled with their age, a lower bound of their latency.
    pub fn stop(&mut self, ctx: &mut Ctx) {
        self.stopping = true;
        match &self.link {
            Link::Open { .. } => {
                if let Some(s) = &mut self.session {
                    let b = ctx.stats.of(self.behaviour);
                    for age in s.inputs.drain_ages(ctx.now) {
                        b.rtt.record(age);
                        b.inputs_unacked += 1;
                    }
                }
                self.hang_up(ctx, None, "run over");
            }
            Link::Closing { .. } => {}
            Link::Waiting { .. }
            | Link::Matchmaking { .. }
            | Link::Dialing { .. }
            | Link::Upgrading { .. } => {
                self.drop_socket(ctx);
                self.link = Link::Done;
            }
            Link::Done => {}
        }
    }

    /// The close timeout after [`Bot::stop`] passed: drop whatever is left.
    pub fn abandon(&mut self, ctx: &mut Ctx) {
        self.stopping = true;
        self.end_session(ctx, false);
        self.drop_socket(ctx);
        self.link = Link::Done;
    }

    // ---- matchmaking ------------------------------------------------------------------------------------

    /// A connect attempt begins: with `--matchmake` by asking where, else by dialling --url.
    fn attempt(&mut self, ctx: &mut Ctx) {
        if ctx.plan.matchmaker.is_some() {
            self.matchmake(ctx)
        } else {
            self.dial(ctx)
        }
    }

    /// The room this bot asks the matchmaker for: the one it was placed in, else its planned room
    /// (`None`: any room of `--matchmake-type`).
    fn room_to_ask(&self, plan: &Plan) -> Option<String> {
        self.placed_room
            .clone()
            .or_else(|| plan.room_name(self.room))
    }

    /// Drives the matchmaking request as far as its socket allows.
    fn matchmake_step(&mut self, ctx: &mut Ctx) {
        let Link::Matchmaking { call, started } = &mut self.link else {
            return;
        };
        let started = *started;
        match call.step() {
            Ok(None) => self.reread |= call.take_more(),
            Ok(Some(answer)) => self.answered(ctx, answer, started),
            Err(CallError::Io(what)) => {
                self.matchmake_failed(ctx, MatchmakeFailure::Tcp, what, None)
            }
            Err(CallError::Tls(what)) => {
                self.matchmake_failed(ctx, MatchmakeFailure::Tls, what, None)
            }
            Err(CallError::Answer(what)) => self.bad_answer(ctx, what),
        }
    }

    fn matchmake(&mut self, ctx: &mut Ctx) {
        let Some(m) = &ctx.plan.matchmaker else {
            return self.dial(ctx);
        };
        let room = self.room_to_ask(ctx.plan);
        let player = format!("bot-{}", self.id);
        let request = m.request(&Ask {
            room: room.as_deref(),
            player: &player,
        });
        ctx.stats.matchmake.started(ctx.now);
        self.placement = None;
        let tls = match (&m.tls, &ctx.plan.tls) {
            (None, _) => None,
            (Some(name), Some(config)) => Some((config.clone(), name.clone())),
            (Some(_), None) => {
                let what = "https:// without TLS settings".to_string();
                return self.matchmake_failed(ctx, MatchmakeFailure::Tls, what, None);
            }
        };
        let mut call = match HttpCall::start(m.addr, request, tls) {
            Ok(call) => call,
            Err(e) => {
                return self.matchmake_failed(ctx, MatchmakeFailure::Tcp, e.to_string(), None)
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = ctx
            .registry
            .register(&mut call.stream.sock, ctx.token, interest)
        {
            return self.matchmake_failed(ctx, MatchmakeFailure::Tcp, e.to_string(), None);
        }
        self.link = Link::Matchmaking {
            call,
            started: ctx.now,
        };
    }

    /// The matchmaker answered: a `200` places the bot and it dials at once; any other status is a
    /// failed attempt.
    fn answered(&mut self, ctx: &mut Ctx, answer: HttpAnswer, started: Instant) {
        let now = ctx.now;
        self.drop_socket(ctx);
        ctx.stats
            .matchmake
            .answered(now.saturating_duration_since(started), now);
        if answer.status != 200 {
            let why = MatchmakeFailure::Http(answer.status);
            return self.matchmake_failed(ctx, why, answer.error_text(), answer.retry_after);
        }
        match self.place(ctx, &answer.body) {
            Ok(()) => {
                ctx.stats.matchmake.placed += 1;
                self.dial(ctx)
            }
            Err(what) => self.bad_answer(ctx, what),
        }
    }

    /// Takes a `200`'s answer: checks it names the room asked for, resolves `connect`, and counts the
    /// placement for its process (the answer's `process`, or `host:port` of `connect`).
    fn place(&mut self, ctx: &mut Ctx, body: &[u8]) -> Result<(), String> {
        let m = ctx.plan.matchmaker.as_ref().ok_or("no matchmaker")?;
        let answer = matchmake::parse_answer(body)?;
        if let Some(asked) = self.room_to_ask(ctx.plan) {
            if answer.room != asked {
                return Err(format!(
                    "asked for room {asked:?}, placed in room {:?}",
                    answer.room
                ));
            }
        }
        if !valid_room_name(&answer.room) {
            return Err(format!("placed in room {:?}, not a room name", answer.room));
        }
        if let (Some(want), Some(got)) = (&m.room_type, &answer.room_type) {
            if want != got {
                return Err(format!(
                    "asked for type {want:?}, placed in room {} of type {got:?}",
                    answer.room
                ));
            }
        }
        let connect = m.resolve_connect(&answer.connect)?;
        if connect.tls.is_some() && ctx.plan.tls.is_none() {
            return Err(format!(
                "connect {:?} is wss://, and there are no certificates to trust: give --ca-file (or \
                 --insecure for a local run)",
                answer.connect
            ));
        }
        let addr = ctx
            .processes
            .addr(&connect.authority, matchmake::resolve_authority)?;
        let key = answer.process.as_deref().unwrap_or(&connect.authority);
        let process = ctx.processes.intern(key);
        ctx.processes.of(process).placements += 1;
        if ctx.plan.placed_rooms() {
            // This connection's figures go to the room it was placed in; the bot keeps the room once
            // it plays or watches there (see `placed_room`).
            self.room = ctx.placed_rooms.number(&answer.room);
        }
        self.placement = Some(Placement {
            url: connect.url,
            addr,
            room: answer.room,
            process,
            tls: connect.tls,
        });
        Ok(())
    }

    /// What the matchmaker sent back cannot be used: its fault, so a protocol error too (logged), and a
    /// failed attempt.
    fn bad_answer(&mut self, ctx: &mut Ctx, what: String) {
        ctx.stats.of(self.behaviour).protocol_errors += 1;
        ctx.errors.push(BotError {
            bot: self.id,
            behaviour: self.behaviour,
            connection: 0,
            tick: None,
            what: format!("matchmaking: {what}"),
        });
        self.matchmake_failed(ctx, MatchmakeFailure::BadAnswer, what, None);
    }

    /// A matchmaking request placed the bot nowhere: a failed connect attempt, retried no sooner than
    /// the answer's `Retry-After`.
    fn matchmake_failed(
        &mut self,
        ctx: &mut Ctx,
        why: MatchmakeFailure,
        what: String,
        retry_after: Option<Duration>,
    ) {
        ctx.stats.matchmake.failed(why, || what, ctx.now);
        self.placement = None;
        self.attempt_failed_after(
            ctx,
            ConnectFailure::Matchmake,
            retry_after.unwrap_or_default(),
        );
    }

    // ---- connecting --------------------------------------------------------------------------------------

    fn dial(&mut self, ctx: &mut Ctx) {
        let slow = self.behaviour.reads_slowly();
        let rcvbuf = slow.then_some(ctx.plan.args.slow_rcvbuf_bytes);
        let (addr, tls) = match &self.placement {
            Some(p) => (p.addr, p.tls.clone()),
            None => (ctx.plan.target.addr, ctx.plan.target.tls.clone()),
        };
        let mut sock = match stream::dial(addr, rcvbuf) {
            Ok(sock) => sock,
            Err(_) => return self.attempt_failed(ctx, ConnectFailure::Tcp),
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if ctx
            .registry
            .register(&mut sock, ctx.token, interest)
            .is_err()
        {
            return self.attempt_failed(ctx, ConnectFailure::Tcp);
        }
        let bucket = slow.then(|| {
            let bps = ctx.plan.args.slow_bps;
            TokenBucket::new(bps, (bps / SLOW_READS_PER_S).max(1), ctx.now)
        });
        let stream = match (tls, &ctx.plan.tls) {
            (None, _) => BotStream::new(sock, bucket),
            (Some(name), Some(config)) => {
                match BotStream::tls(sock, bucket, config.clone(), name) {
                    Ok(stream) => stream,
                    // The socket is closed with it; the kernel forgets a closed fd's registration.
                    Err(_) => return self.attempt_failed(ctx, ConnectFailure::Tls),
                }
            }
            (Some(_), None) => {
                let _ = ctx.registry.deregister(&mut sock);
                return self.attempt_failed(ctx, ConnectFailure::Tls);
            }
        };
        self.link = Link::Dialing {
            stream,
            started: ctx.now,
        };
    }

    fn upgrade(&mut self, ctx: &mut Ctx) {
        let Link::Dialing { stream, started } = self.take_link() else {
            unreachable!("upgrade outside Dialing")
        };
        let url = match &self.placement {
            Some(p) => p.url.clone(),
            None => ctx.plan.url_of(self.room),
        };
        let request = match url.into_client_request() {
            Ok(request) => request,
            Err(_) => {
                self.link = Link::Dialing { stream, started };
                return self.attempt_failed(ctx, ConnectFailure::Handshake);
            }
        };
        match ClientHandshake::start(stream, request, Some(ws_config())) {
            Ok(mid) => self.handshake_step(ctx, mid.handshake(), started),
            Err(_) => self.attempt_failed(ctx, ConnectFailure::Handshake),
        }
    }

    fn handshake_step(
        &mut self,
        ctx: &mut Ctx,
        step: Result<
            (
                WebSocket<BotStream>,
                tungstenite::handshake::client::Response,
            ),
            HandshakeError<ClientHandshake<BotStream>>,
        >,
        started: Instant,
    ) {
        match step {
            Ok((mut ws, _response)) => {
                ws.get_mut().cap_reads(ctx.now);
                self.link = Link::Open { ws };
                let view = match self.kept.take() {
                    Some(mut view) => {
                        view.reconnect();
                        view
                    }
                    None => {
                        let view = View::<G>::in_room(match &self.placement {
                            Some(p) => Some(p.room.clone()),
                            None => ctx.plan.room_name(self.room),
                        });
                        match ctx.plan.verifies(self.id) {
                            true => view,
                            false => view.skimming(),
                        }
                    }
                };
                self.session = Some(Session {
                    started,
                    welcomed: false,
                    connection_id: 0,
                    view,
                    schedule: None,
                    inputs: PendingInputs::new(PENDING_INPUTS_MAX),
                    next_input_at: None,
                    flap_at: None,
                    last_update_at: None,
                });
                // Welcome (and maybe more) may have come in with the 101: read it now, the socket
                // will not signal again for bytes already taken.
                self.read_open(ctx)
            }
            Err(HandshakeError::Interrupted(mut mid)) => {
                // Stopped at the bound on TLS reads with more to read: again next turn.
                self.reread |= mid.get_mut().get_mut().take_more();
                self.link = Link::Upgrading { mid, started }
            }
            Err(HandshakeError::Failure(e)) => {
                // The stream went down with the handshake; the kernel forgets a closed fd's registration.
                let why = match e {
                    WsError::Http(response) => ConnectFailure::Http(response.status().as_u16()),
                    WsError::Io(e) if stream::is_tls_error(&e) => ConnectFailure::Tls,
                    _ => ConnectFailure::Handshake,
                };
                self.attempt_failed(ctx, why);
            }
        }
    }

    /// A connect attempt failed: retry after a backoff, or give up after `--connect-attempts`.
    fn attempt_failed(&mut self, ctx: &mut Ctx, why: ConnectFailure) {
        self.attempt_failed_after(ctx, why, Duration::ZERO)
    }

    /// [`Bot::attempt_failed`], waiting at least `at_least` (capped at `--retry-max-ms`) before the next.
    fn attempt_failed_after(&mut self, ctx: &mut Ctx, why: ConnectFailure, at_least: Duration) {
        ctx.stats.connect_failed(why);
        if let Some(p) = &self.placement {
            ctx.processes.of(p.process).connect_failures += 1;
        }
        // A player waiting to be resumed is still there for the next attempt.
        self.end_session(ctx, true);
        self.drop_socket(ctx);
        self.failures += 1;
        if self.stopping {
            self.link = Link::Done;
            return;
        }
        match ctx.plan.backoff.delay(self.failures, &mut self.rng) {
            Some(delay) => {
                let delay = delay.max(at_least.min(ctx.plan.backoff.cap));
                self.link = Link::Waiting {
                    at: ctx.now + delay,
                }
            }
            None => {
                ctx.stats.bots_gave_up += 1;
                self.link = Link::Done;
            }
        }
    }

    // ---- open: reading -----------------------------------------------------------------------------------

    fn read_open(&mut self, ctx: &mut Ctx) {
        if let Link::Open { ws } = &mut self.link {
            ws.get_mut().refill(ctx.now);
        }
        for _ in 0..MESSAGES_PER_TURN_MAX {
            let Link::Open { ws } = &mut self.link else {
                return;
            };
            let result = ws.read();
            ctx.stats.of(self.behaviour).bytes_in += ws.get_mut().take_bytes_in();
            match result {
                Ok(Message::Binary(bytes)) => self.on_message(ctx, &bytes),
                Ok(Message::Close(frame)) => {
                    // tungstenite has queued the echo; Closing sends it and waits for the EOF.
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    self.lost(ctx, Cause::Code(code), true);
                }
                Ok(Message::Text(_)) => self.view_error(
                    ctx,
                    ViewError::OutOfOrder("a text message (the protocol is binary)".into()),
                ),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Pongs tungstenite queued, and inputs a full socket held back.
                    let _ = ws.flush();
                    // TLS stopped at its bound on socket reads: the socket may hold more.
                    self.reread |= ws.get_mut().take_more();
                    return;
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(
                    WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                ) => self.lost(ctx, Cause::Eof, false),
                Err(WsError::Io(_)) => self.lost(ctx, Cause::Io, false),
                Err(e) => {
                    // A frame the WebSocket layer rejects: the server broke the protocol.
                    let what = format!("WebSocket error: {e}");
                    self.view_error(ctx, ViewError::OutOfOrder(what));
                }
            }
        }
        self.reread = true;
    }

    fn on_message(&mut self, ctx: &mut Ctx, bytes: &[u8]) {
        let now = ctx.now;
        let process = self.placement.as_ref().map(|p| p.process);
        let Some(s) = &mut self.session else { return };
        let seen = match s.view.receive(bytes) {
            Ok(seen) => seen,
            Err(e) => return self.view_error(ctx, e),
        };
        let b = ctx.stats.of(self.behaviour);
        match seen {
            // Game messages (the arena's chat, say) are outside the world: counted, their size checked.
            Seen::Message { len } => {
                b.messages += 1;
                b.message_bytes += len as u64;
            }
            Seen::Welcome {
                tick,
                tick_hz,
                connection_id,
            } => {
                s.connection_id = connection_id;
                s.schedule = Some(TickEstimate::from_welcome(tick, tick_hz, now));
                ctx.stats.tick_hz = tick_hz;
                if ctx.room.welcomed_as.is_none() {
                    ctx.room.welcomed_as = s.view.room().map(str::to_string);
                }
                if let Some(p) = process {
                    let room = s.view.room().unwrap_or_default();
                    let key = ctx.processes.key(p);
                    if !ctx.room.processes.contains(key) {
                        ctx.room.processes.insert(key.to_string());
                    }
                    let here = ctx.processes.of(p);
                    here.connections += 1;
                    if !here.rooms.contains(room) {
                        here.rooms.insert(room.to_string());
                    }
                    if !self.welcomed_on.contains(&p) {
                        self.welcomed_on.push(p);
                        here.bots += 1;
                    }
                }
                self.welcomed(ctx);
            }
            Seen::Joined {
                resumed, refused, ..
            } => {
                // The room took the bot: a full room (4006) no longer stands in its way.
                self.full_streak = 0;
                if let (None, Some(p), true) =
                    (&self.placed_room, &self.placement, ctx.plan.placed_rooms())
                {
                    self.placed_room = Some(p.room.clone());
                    ctx.room.bots_placed += 1;
                }
                if resumed {
                    b.resumes_honoured += 1;
                } else {
                    // A new player: its inputs are numbered from 1 again.
                    self.seq = 0;
                    b.resumes_refused += u64::from(refused);
                }
                if self.behaviour.sends_inputs() {
                    s.next_input_at = Some(now);
                }
                // A flapper picks when to drop once its Hello is answered: dropped before the Joined of a
                // resume arrives, it would hold the token that resume just rotated away and join anew
                // (docs/PROTOCOL.md, Resuming), which is the client's loss, not a server fault to measure.
                if self.behaviour.flaps() {
                    let mean = ctx.plan.args.flap_ms as f32;
                    let stay_ms = mean * (0.5 + self.rng.next_f32());
                    s.flap_at = Some(now + Duration::from_secs_f32(stay_ms / 1000.0));
                }
            }
            Seen::Update {
                tick,
                kind,
                own_seq,
            } => {
                b.updates += 1;
                ctx.room.updates += 1;
                if let Some(p) = process {
                    ctx.processes.of(p).updates += 1;
                }
                if let (Some(at), false) = (s.last_update_at, self.behaviour.reads_slowly()) {
                    ctx.room.intervals.record(now.saturating_duration_since(at));
                }
                s.last_update_at = Some(now);
                if !self.behaviour.joins() {
                    self.full_streak = 0;
                    if let (None, Some(p), true) =
                        (&self.placed_room, &self.placement, ctx.plan.placed_rooms())
                    {
                        self.placed_room = Some(p.room.clone());
                        ctx.room.bots_placed += 1;
                    }
                }
                match kind {
                    UpdateKind::Coalesced { skipped } => {
                        b.coalesced += 1;
                        b.ticks_skipped += skipped;
                    }
                    UpdateKind::Resync { skipped } => {
                        b.coalesced += 1;
                        b.resyncs += 1;
                        b.ticks_skipped += skipped;
                    }
                    UpdateKind::ResumeDelta { .. } => b.resume_deltas += 1,
                    UpdateKind::ResumeFull { .. } => b.resume_fulls += 1,
                    UpdateKind::First | UpdateKind::Next => {}
                }
                if let Some(schedule) = &mut s.schedule {
                    b.lateness.record(schedule.lateness(tick, now));
                }
                if let Some(acked) = own_seq {
                    let rtt = &mut b.rtt;
                    b.inputs_acked += s.inputs.ack(acked, now, |d| rtt.record(d)) as u64;
                }
            }
            Seen::ChecksumOk { .. } => {
                b.checksums_verified += 1;
                ctx.room.checksums_verified += 1;
                if let Some(p) = process {
                    ctx.processes.of(p).checksums_verified += 1;
                }
            }
            Seen::ChecksumUnchecked { .. } => b.checksums_unchecked += 1,
            Seen::Pong { .. } => {}
        }
    }

    /// `Welcome` arrived: the bot is connected. Joins (resuming its player if it kept one) or watches.
    fn welcomed(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        let Some(s) = &mut self.session else { return };
        s.welcomed = true;
        ctx.stats.connect_time.record(now - s.started);
        if self.ever_connected {
            ctx.stats.reconnects += 1;
        } else {
            self.ever_connected = true;
            ctx.stats.first_connects += 1;
            ctx.room.first_connects += 1;
        }
        self.failures = 0;
        ctx.open.opened(self.behaviour, now, ctx.stats);
        let hello = if self.behaviour.joins() {
            let resume = s.view.resume_request();
            if resume.is_some() {
                ctx.stats.of(self.behaviour).resumes_asked += 1;
            }
            ClientMsg::<G::Input>::Hello {
                protocol: proto::PROTOCOL_VERSION,
                name: format!("bot-{}", self.id),
                ticket: String::new(),
                resume,
            }
        } else {
            ClientMsg::Watch {
                protocol: proto::PROTOCOL_VERSION,
                ticket: String::new(),
            }
        };
        if let Link::Open { ws } = &mut self.link {
            // A failure here shows up on the next read.
            let _ = ws.send(Message::Binary(proto::encode(&hello).into()));
        }
    }

    /// A correctness error: count it, log it with the bot, connection and tick, and hang up so the
    /// next connection starts again from a `Full` (a diverged mirror would fail every later checksum).
    fn view_error(&mut self, ctx: &mut Ctx, e: ViewError) {
        let b = ctx.stats.of(self.behaviour);
        let here = self.placement.as_ref().map(|p| ctx.processes.of(p.process));
        match e {
            ViewError::ChecksumMismatch { .. } => {
                b.checksum_mismatches += 1;
                ctx.room.checksum_mismatches += 1;
                if let Some(here) = here {
                    here.checksum_mismatches += 1;
                }
            }
            _ => {
                b.protocol_errors += 1;
                ctx.room.protocol_errors += 1;
                if let Some(here) = here {
                    here.protocol_errors += 1;
                }
            }
        }
        ctx.errors.push(BotError {
            bot: self.id,
            behaviour: self.behaviour,
            connection: self.session.as_ref().map_or(0, |s| s.connection_id),
            tick: e.tick(),
            what: e.to_string(),
        });
        self.hang_up(ctx, Some(Cause::AfterError), "client found an error");
    }

    // ---- open: writing -----------------------------------------------------------------------------------

    /// Sends every input due by now (up to [`INPUT_CATCH_UP_MAX`]), each stamped with the moment it was
    /// due, so a late thread adds its lateness to the latency instead of hiding it.
    fn send_inputs(&mut self, ctx: &mut Ctx) {
        let (Link::Open { ws }, Some(s)) = (&mut self.link, &mut self.session) else {
            return;
        };
        let Some(mut due) = s.next_input_at else {
            return;
        };
        let interval = ctx.plan.input_interval();
        let now = ctx.now;
        let b = ctx.stats.of(self.behaviour);
        let mut sent = 0;
        while due <= now && sent < INPUT_CATCH_UP_MAX {
            // A new player (seq 0) starts afresh, as the arena always did.
            let previous = self.input.as_ref().filter(|_| self.seq > 0);
            let next = G::next_input(&mut self.rng, previous);
            self.seq += 1;
            let input = ClientMsg::Input {
                seq: self.seq,
                input: next.clone(),
            };
            self.input = Some(next);
            match ws.write(Message::Binary(proto::encode(&input).into())) {
                // WouldBlock: the frame is queued and goes out with the next flush.
                Ok(()) | Err(WsError::Io(_)) => {
                    b.inputs_sent += 1;
                    if let Some(age) = s.inputs.sent(self.seq, due, now) {
                        b.rtt.record(age);
                        b.inputs_unacked += 1;
                    }
                }
                Err(WsError::WriteBufferFull(_)) => b.inputs_dropped += 1,
                // Closed under us; the read side reports how.
                Err(_) => break,
            }
            due += interval;
            sent += 1;
        }
        if due <= now {
            let behind = (now - due).as_nanos() / interval.as_nanos() + 1;
            let behind = u32::try_from(behind).unwrap_or(u32::MAX);
            b.input_slots_skipped += u64::from(behind);
            due += interval.saturating_mul(behind);
        }
        s.next_input_at = Some(due);
        let _ = ws.flush();
    }

    // ---- ending a connection -----------------------------------------------------------------------------

    /// The server ended the connection (`close_frame`: it sent a close frame, whose echo is queued).
    fn lost(&mut self, ctx: &mut Ctx, cause: Cause, close_frame: bool) {
        let welcomed = self.session.as_ref().is_some_and(|s| s.welcomed);
        if !welcomed {
            return self.attempt_failed(ctx, ConnectFailure::Handshake);
        }
        self.disconnected(ctx, cause);
        // Without a close frame of its own the bot did not say goodbye: its player waits to be resumed,
        // unless the server is going away, already gave the player to another connection, ended the
        // room, kicked the player (whose token then resumes nothing) or closed its copy of a room another
        // process holds (4009: the player was in that copy; the next matchmaking finds the room).
        let gone = [
            proto::close::GOING_AWAY,
            proto::close::REPLACED,
            proto::close::ROOM_ENDED,
            proto::close::KICKED,
            proto::close::ROOM_ELSEWHERE,
        ]
        .map(Cause::Code);
        if cause == Cause::Code(proto::close::ROOM_FULL) {
            self.full_streak += 1;
        }
        self.end_session(ctx, !gone.contains(&cause));
        let then = if cause == Cause::Code(proto::close::GOING_AWAY) {
            Then::Retire
        } else {
            Then::Reconnect
        };
        if close_frame {
            if let Link::Open { ws } = self.take_link() {
                self.closing(ctx, ws, then);
                return;
            }
        }
        self.drop_socket(ctx);
        self.after_close(ctx, then);
    }

    /// The bot ends the connection with a close frame (`cause`: how to count it; `None` at the end of the
    /// run, which is not a disconnect).
    fn hang_up(&mut self, ctx: &mut Ctx, cause: Option<Cause>, reason: &str) {
        let welcomed = self.session.as_ref().is_some_and(|s| s.welcomed);
        if let (Some(cause), true) = (cause, welcomed) {
            self.disconnected(ctx, cause);
        }
        // A close frame with 1000 says goodbye: the server lets the player go at once.
        self.end_session(ctx, false);
        let then = if self.stopping {
            Then::Retire
        } else {
            Then::Reconnect
        };
        match self.take_link() {
            Link::Open { mut ws } => {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: reason.into(),
                };
                // Queued even when the socket is full; Closing keeps flushing.
                let _ = ws.close(Some(frame));
                let _ = ws.flush();
                self.closing(ctx, ws, then);
            }
            other => {
                self.link = other;
                self.drop_socket(ctx);
                self.after_close(ctx, then);
            }
        }
    }

    /// A flapper drops its connection abruptly, as a phone losing its network: no close frame, the TCP
    /// socket shut and closed. It keeps its view and resumes on the next connection. A rejoiner drops
    /// abruptly half the time and with a close frame the other half, and joins anew either way.
    fn flap(&mut self, ctx: &mut Ctx) {
        if self.behaviour.resumes() || self.rng.next_f32() < 0.5 {
            self.disconnected(ctx, Cause::Flap);
            self.end_session(ctx, true);
            if let Link::Open { ws } = &self.link {
                // Already gone or not: either way the server sees no close frame.
                let _ = ws.get_ref().sock.shutdown(Shutdown::Both);
            }
            self.drop_socket(ctx);
            self.after_close(ctx, Then::Reconnect);
        } else {
            self.hang_up(ctx, Some(Cause::Flap), "flapper drop");
        }
    }

    fn closing(&mut self, ctx: &mut Ctx, mut ws: WebSocket<BotStream>, then: Then) {
        // Nothing read now is used: no need to read it slowly.
        ws.get_mut().uncap_reads();
        self.link = Link::Closing {
            ws,
            deadline: ctx.now + ctx.plan.close_timeout(),
            then,
        };
        self.read_closing(ctx);
    }

    /// Drains a closing connection until the server's EOF.
    fn read_closing(&mut self, ctx: &mut Ctx) {
        for _ in 0..MESSAGES_PER_TURN_MAX {
            let Link::Closing { ws, then, .. } = &mut self.link else {
                return;
            };
            let then = *then;
            let result = ws.read();
            // What a closing connection drains (for a slow bot, the server's whole backlog) is not part of
            // the stream the bot measures.
            ws.get_mut().take_bytes_in();
            match result {
                Ok(_) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = ws.flush();
                    self.reread |= ws.get_mut().take_more();
                    return;
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_socket(ctx);
                    return self.after_close(ctx, then);
                }
            }
        }
        self.reread = true;
    }

    /// Counts a connection's end, for the run and for the bot's room.
    fn disconnected(&self, ctx: &mut Ctx, cause: Cause) {
        ctx.stats.disconnected(self.behaviour, cause);
        if !cause.expected() {
            ctx.room.unexpected_disconnects += 1;
            if let Some(p) = &self.placement {
                ctx.processes.of(p.process).unexpected_disconnects += 1;
            }
        }
    }

    /// The connection is gone: reconnect after a jittered delay, or stay down. After closes for a full
    /// room the delay grows as after failed attempts, and the bot gives up after --connect-attempts.
    fn after_close(&mut self, ctx: &mut Ctx, then: Then) {
        self.link = match then {
            Then::Reconnect if !self.stopping => {
                match ctx.plan.backoff.delay(self.full_streak, &mut self.rng) {
                    Some(delay) => Link::Waiting {
                        at: ctx.now + delay,
                    },
                    None => {
                        ctx.stats.bots_gave_up += 1;
                        Link::Done
                    }
                }
            }
            _ => Link::Done,
        };
    }

    /// Ends the session: the bot no longer counts as connected, and inputs still waiting are lost. With
    /// `resumable` (the bot did not say goodbye), a resuming bot keeps the view for its next connection.
    fn end_session(&mut self, ctx: &mut Ctx, resumable: bool) {
        let Some(s) = self.session.take() else { return };
        if s.welcomed {
            ctx.open.closed(self.behaviour, ctx.now, ctx.stats);
        }
        ctx.stats.of(self.behaviour).inputs_lost += s.inputs.len() as u64;
        if resumable && self.behaviour.resumes() && s.view.token().is_some() {
            self.kept = Some(s.view);
        } else {
            self.kept = None;
        }
    }

    fn take_link(&mut self) -> Link {
        std::mem::replace(&mut self.link, Link::Done)
    }

    /// Deregisters and closes the socket of the current link, if it has one; the link becomes `Done`.
    fn drop_socket(&mut self, ctx: &mut Ctx) {
        if let Link::Matchmaking { call, .. } = &mut self.link {
            let _ = ctx.registry.deregister(&mut call.stream.sock);
            self.link = Link::Done;
            return;
        }
        let closing = matches!(self.link, Link::Closing { .. });
        let stream = match &mut self.link {
            Link::Dialing { stream, .. } => Some(stream),
            Link::Upgrading { mid, .. } => Some(mid.get_mut().get_mut()),
            Link::Open { ws } | Link::Closing { ws, .. } => Some(ws.get_mut()),
            Link::Waiting { .. } | Link::Matchmaking { .. } | Link::Done => None,
        };
        if let Some(stream) = stream {
            let bytes = stream.take_bytes_in();
            if !closing {
                ctx.stats.of(self.behaviour).bytes_in += bytes;
            }
            let _ = ctx.registry.deregister(&mut stream.sock);
        }
        self.link = Link::Done;
    }
}

/// The WebSocket settings of every bot: small buffers to start, bounded ones throughout.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(WRITE_BUFFER_BYTES_MAX)
        .max_message_size(Some(MESSAGE_BYTES_MAX))
        .max_frame_size(Some(MESSAGE_BYTES_MAX))
}
