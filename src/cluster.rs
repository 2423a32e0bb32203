//! Cluster mode (`--redis`): this process's entry in a directory of processes and rooms kept in Redis,
//! so many processes act as one service (docs/CLUSTER.md). The loop never talks to Redis: it hands
//! [`ToRedis`] messages to one helper thread over a bounded channel (what does not fit is dropped and
//! counted) and reads the helper's [`FromRedis`] answers, which wake it through the loop's `mio::Waker`,
//! as signals do. If Redis is slow or gone, only the helper waits; it reconnects with backoff.
//!
//! Keys (all under `<cluster>:`, the cluster name of `--cluster`):
//!
//! | key | value | life |
//! |---|---|---|
//! | `<cluster>:process:<id>` | JSON: public URL, rooms, players, capacity, draining, version | `PX --cluster-ttl-ms`, rewritten every heartbeat |
//! | `<cluster>:processes` | sorted set: process id -> the Unix ms its entry expires | members past their score are dead; pruned by every heartbeat |
//! | `<cluster>:room:<name>` | the id of the process that owns room `<name>` | `PX --cluster-ttl-ms`, claimed with a script that sets it only if absent and refreshes it only if ours; set for the chosen process by the matchmaker (`PX` [`SEAT_TICKET_LIFETIME`]) when it places a new room |
//! | `<cluster>:free:<type>` | sorted set: room name -> its free player seats, for rooms of type `<type>` with a player cap | rewritten by every heartbeat; a seat given by the matchmaker takes one; a room's release removes it |
//!
//! Matchmaking (`POST /matchmake`) runs here too, off the loop: the loop hands over an [`Ask`] and gets a
//! [`Placement`] (or why not) back, then signs the seat ticket itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

/// Messages the loop may have waiting for the helper; beyond, new ones are dropped (and counted).
pub const TO_REDIS_MAX: usize = 256;
/// Answers the helper may have waiting for the loop; beyond, it waits (it is the helper's to wait, not
/// the loop's), so no answer is lost.
pub const FROM_REDIS_MAX: usize = 1024;
/// How long one Redis connect, read or write may take before the helper calls Redis unreachable.
pub const REDIS_IO_TIMEOUT: Duration = Duration::from_millis(500);
/// Releases kept while Redis is unreachable, sent once it is back (a heartbeat repeats claims, not
/// releases); beyond, a release is dropped (counted) and its key expires within the TTL.
const PENDING_RELEASES_MAX: usize = 16_384;
/// Reconnect backoff: the first wait, doubled after every failure up to the cap.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Sets the room key to `ARGV[1]` (our id) for `ARGV[2]` ms if nobody holds it, refreshes it if we do;
/// returns 1 when the room is ours, else the id of the process that holds it.
const CLAIM: &str = r#"local owner = redis.call('GET', KEYS[1])
if owner == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if owner == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return owner"#;
/// The matchmaker's placement of a room nobody holds: sets the room key to `ARGV[1]` (the chosen process)
/// for `ARGV[2]` ms if it is absent or still names `ARGV[3]` (a process that is gone); returns the owner,
/// so that of two matchmakers racing for one name both answer the same process.
const SEAT: &str = r#"local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[3] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return ARGV[1] end
return owner"#;
/// How long a seat ticket is good for, and how long the matchmaker reserves a new room's name for the
/// process it chose, so the player it sent there finds it still theirs.
pub const SEAT_TICKET_LIFETIME: Duration = Duration::from_secs(30);
/// A matchmaking request older than this when the helper gets to it is answered busy (503): its client
/// is about to give up, and the helper is behind.
pub const MATCHMAKE_DEADLINE: Duration = Duration::from_secs(2);
/// Rooms with a free seat the matchmaker considers per request for "any room of this type".
const FREE_CANDIDATES: usize = 8;

/// Deletes the room key (`KEYS[1]`) and the room's free seats (`KEYS[2]`, `KEYS[3]`: the seats and their
/// expiry; member `ARGV[2]`) if we (`ARGV[1]`) hold it: a process that lost the room leaves the
/// owner's seats alone.
const RELEASE: &str = r#"if redis.call('GET', KEYS[1]) == ARGV[1] then
redis.call('DEL', KEYS[1]) redis.call('ZREM', KEYS[2], ARGV[2]) redis.call('ZREM', KEYS[3], ARGV[2]) return 1 end
return 0"#;
/// A seat for one player in room `ARGV[1]`: 1 if it has one (its hold `KEYS[2]` exists, or the room's
/// free seats `KEYS[1]` are unknown), or takes one (a free seat less, the hold set for `ARGV[2]` ms);
/// 0 if the room has no free seat. Asking again for the same room takes no second seat.
const TAKE: &str = r#"local free = redis.call('ZSCORE', KEYS[1], ARGV[1])
if free == false or redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
if tonumber(free) < 1 then return 0 end
redis.call('ZINCRBY', KEYS[1], -1, ARGV[1]) redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) return 1"#;
/// Removes the rooms whose free seats expired (`KEYS[2]`, scored by the Unix ms they expire, up to
/// `ARGV[1]`) from both sets, at most `ARGV[2]` of them: a room placed but never created, or one of a
/// process that died, leaves the sets within its expiry.
const SWEEP: &str = r#"local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) redis.call('ZREM', KEYS[2], unpack(gone)) end
return #gone"#;
/// Expired free-seat entries one heartbeat removes per room type, at most.
const SWEEP_MAX: usize = 256;
/// Seconds a seat ticket is still taken past its lifetime, for clocks of two processes that disagree.
const SEAT_CLOCK_SLACK_S: u64 = 10;
/// The furthest ahead a seat ticket's expiry may be when it is checked: its lifetime plus the slack.
pub const SEAT_EXPIRY_AHEAD_MAX_S: u64 = SEAT_TICKET_LIFETIME.as_secs() + SEAT_CLOCK_SLACK_S;

/// Who this process is in which cluster, and where Redis is.
#[derive(Debug, Clone)]
pub struct Settings {
    pub redis_url: String,
    pub cluster: String,
    pub process_id: String,
    /// The WebSocket base URL clients use to reach this process (`--public-url`).
    pub public_url: String,
    /// Life of every key this process writes; heartbeats come every third of it.
    pub ttl: Duration,
    /// Every room type this process hosts, with its player cap (`None`: uncapped), the default type
    /// first: what the matchmaker needs to fill rooms of a type. Every process of a cluster hosts the same
    /// game.
    pub seats: Vec<(String, Option<usize>)>,
}

/// A room as the directory sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomBeat {
    pub name: Box<str>,
    pub kind: Box<str>,
    /// Player seats still free, for a type with a player cap.
    pub free: Option<usize>,
}

/// A `POST /matchmake` the loop hands over, for the connection `conn` (slab key, connection id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub conn: (usize, u64),
    /// The room asked for; `None`: any room of `kind` with a free seat.
    pub room: Option<String>,
    /// The room type (the default type when the request named none).
    pub kind: String,
    /// Whether a room that exists nowhere may be placed (`--room-creation` and the request's ticket).
    pub may_create: bool,
    /// Who asks: a seat it already holds in a room is not taken twice.
    pub player: String,
    pub asked_at: Instant,
}

/// Where the matchmaker sends a player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub room: String,
    pub kind: String,
    /// The owning process's id and public URL.
    pub process: String,
    pub url: String,
}

/// Why the matchmaker placed nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchError {
    /// Redis is unreachable or refused; the helper's words go to stderr, not to the client.
    Unavailable,
    /// No live process that is not draining has room for a new room.
    NoCapacity,
    /// The room's owner is draining.
    Draining(String),
    /// The room's owner said, at its last heartbeat, that it has no free seat (less those given since).
    Full(String),
    /// Nothing to join and nothing may be created (`--room-creation`); the text says which.
    NotFound(String),
    /// The helper is behind (the request waited past [`MATCHMAKE_DEADLINE`]).
    Busy,
}

/// One process as the directory describes it (its entry's JSON).
#[derive(Debug, Clone, serde::Deserialize)]
struct ProcessEntry {
    id: String,
    url: String,
    rooms: usize,
    players: usize,
    room_capacity: usize,
    draining: bool,
}

/// What this process says of itself in every heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub rooms: usize,
    pub players: usize,
    /// Rooms it may still open (`--max-rooms` less the open ones).
    pub room_capacity: usize,
    pub draining: bool,
}

/// From the loop to the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToRedis {
    /// Rewrite the process entry and claim or refresh every room listed (all the rooms it holds).
    Heartbeat {
        info: ProcessInfo,
        rooms: Vec<RoomBeat>,
    },
    /// A room was just created here: claim it now rather than at the next heartbeat.
    Claim(Box<str>),
    /// A room here is gone.
    Release(RoomBeat),
    /// Release these rooms and remove this process from the directory (the end of a drain), then stop.
    Leave { rooms: Vec<RoomBeat> },
    /// Place a player (`POST /matchmake`).
    Matchmake(Ask),
}

/// From the helper to the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRedis {
    /// Redis answered (after being unreachable, or at start).
    Up,
    /// Redis is unreachable, or refuses what the helper writes; why.
    Down(String),
    /// Another process holds room `room`: this copy must go.
    Lost { room: Box<str>, owner: String },
    /// The answer to an [`Ask`].
    Placed {
        conn: (usize, u64),
        result: Result<Placement, MatchError>,
    },
}

/// The loop's end of the helper.
pub struct Cluster {
    pub settings: Settings,
    tx: Sender<ToRedis>,
    pub rx: Receiver<FromRedis>,
    /// Whether Redis answered last time the helper tried; with why not.
    pub down: Option<String>,
    /// Messages dropped because the helper was behind.
    pub dropped: u64,
    /// Rooms closed because another process holds them.
    pub claims_lost: u64,
    /// When the last heartbeat was handed over.
    pub beat_at: Option<Instant>,
    /// The cluster's shared secret (`--cluster-secret-file`): signs and checks seat tickets.
    pub secret: Vec<u8>,
    helper: Option<JoinHandle<()>>,
}

impl Cluster {
    /// Starts the helper thread, which wakes the loop through `waker` whenever it has an answer.
    pub fn start(
        settings: Settings,
        secret: Vec<u8>,
        waker: Arc<Waker>,
    ) -> std::io::Result<Cluster> {
        let client = redis::Client::open(settings.redis_url.as_str()).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--redis: {e}"))
        })?;
        let (tx, helper_rx) = crossbeam_channel::bounded(TO_REDIS_MAX);
        let (helper_tx, rx) = crossbeam_channel::bounded(FROM_REDIS_MAX);
        let helper = Helper {
            client,
            settings: settings.clone(),
            rx: helper_rx,
            tx: helper_tx,
            waker,
            con: None,
            up: None,
            backoff: BACKOFF_MIN,
            retry_at: None,
            pending_releases: HashMap::new(),
            processes: Vec::new(),
            table_at: None,
            placed: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("redis".into())
            .spawn(move || helper.run())?;
        Ok(Cluster {
            settings,
            tx,
            rx,
            down: Some("not connected yet".into()),
            dropped: 0,
            claims_lost: 0,
            beat_at: None,
            secret,
            helper: Some(thread),
        })
    }

    /// Hands a matchmaking request to the helper; false (the caller answers 503) when the helper's queue
    /// is half full: the other half is kept for heartbeats and releases, which a flood of requests must
    /// not crowd out.
    pub fn ask(&mut self, ask: Ask) -> bool {
        if self.tx.len() >= TO_REDIS_MAX / 2 {
            return false;
        }
        self.tx.try_send(ToRedis::Matchmake(ask)).is_ok()
    }

    /// Hands `msg` to the helper, or drops it (counted) if the helper is that far behind.
    pub fn send(&mut self, msg: ToRedis) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped += 1,
        }
    }

    /// Whether a heartbeat is due at `now`: every third of the TTL.
    pub fn beat_due(&self, now: Instant) -> bool {
        self.beat_at.map_or(true, |at| {
            now.saturating_duration_since(at) >= self.settings.ttl / 3
        })
    }

    /// At the end of a drain: asks the helper to release `rooms` and remove this process from the
    /// directory, and waits for it at most `wait` (the entries would expire within the TTL anyway).
    pub fn leave(&mut self, rooms: Vec<RoomBeat>, wait: Duration) {
        let deadline = Instant::now() + wait;
        if self
            .tx
            .send_timeout(ToRedis::Leave { rooms }, wait)
            .is_err()
        {
            self.dropped += 1;
            return;
        }
        let Some(helper) = self.helper.take() else {
            return;
        };
        while !helper.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The helper thread: owns the Redis connection, and is the only one to wait on it.
struct Helper {
    client: redis::Client,
    settings: Settings,
    rx: Receiver<ToRedis>,
    tx: Sender<FromRedis>,
    waker: Arc<Waker>,
    con: Option<redis::Connection>,
    /// What was last told to the loop: `Some(true)` up, `Some(false)` down.
    up: Option<bool>,
    backoff: Duration,
    /// While unreachable, when to try connecting again.
    retry_at: Option<Instant>,
    /// Releases that could not be sent, for when Redis is back (at most `PENDING_RELEASES_MAX`): room
    /// name -> its type.
    pending_releases: HashMap<Box<str>, Box<str>>,
    /// The live processes as last read from the directory (for matchmaking), and when.
    processes: Vec<ProcessEntry>,
    table_at: Option<Instant>,
    /// New rooms this helper placed on each process since it last read the table, so a burst of
    /// requests spreads instead of piling onto the process that looked least loaded.
    placed: HashMap<String, usize>,
}

impl Helper {
    fn run(mut self) {
        loop {
            // Wake at least every backoff period, to reconnect while the loop has nothing to say.
            let msg = match self.rx.recv_timeout(self.backoff) {
                Ok(msg) => Some(msg),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
            let leave = matches!(msg, Some(ToRedis::Leave { .. }));
            match msg {
                Some(ToRedis::Matchmake(ask)) => {
                    let conn = ask.conn;
                    let result = match self.connected() {
                        false => Err(MatchError::Unavailable),
                        true => match self.flush_releases().and_then(|()| self.matchmake(&ask)) {
                            Ok(result) => {
                                self.say_up();
                                result
                            }
                            Err(e) => {
                                self.judge(Err(e));
                                Err(MatchError::Unavailable)
                            }
                        },
                    };
                    self.tell(FromRedis::Placed { conn, result });
                }
                // Unreachable: a release waits for Redis (a claim or heartbeat is repeated anyway).
                Some(ToRedis::Release(room)) if !self.connected() => self.keep_release(room),
                Some(ToRedis::Claim(room)) if !self.connected() => {
                    self.pending_releases.remove(&room);
                }
                Some(msg) if self.connected() => {
                    if let ToRedis::Claim(room) = &msg {
                        self.pending_releases.remove(room);
                    }
                    let result = self.flush_releases().and_then(|()| self.handle(msg));
                    self.judge(result);
                }
                Some(_) => {}
                None => {
                    if self.connected() && !self.pending_releases.is_empty() {
                        let result = self.flush_releases();
                        self.judge(result);
                    }
                }
            }
            if leave {
                return;
            }
        }
    }

    /// After a round trip: a connection error drops the connection (reconnect with backoff); an error
    /// Redis answered (NOAUTH, OOM, READONLY, ...) keeps it but says Redis is not doing its part.
    fn judge(&mut self, result: redis::RedisResult<()>) {
        match result {
            Ok(()) => self.say_up(),
            Err(e)
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal() =>
            {
                self.lost(e.to_string())
            }
            Err(e) => {
                if self.up != Some(false) {
                    self.up = Some(false);
                    self.tell(FromRedis::Down(format!("redis refused a write: {e}")));
                }
            }
        }
    }

    fn say_up(&mut self) {
        if self.up != Some(true) {
            self.up = Some(true);
            self.tell(FromRedis::Up);
        }
    }

    fn keep_release(&mut self, room: RoomBeat) {
        if self.pending_releases.len() < PENDING_RELEASES_MAX {
            self.pending_releases.insert(room.name, room.kind);
        }
    }

    /// Sends the releases that waited for Redis.
    fn flush_releases(&mut self) -> redis::RedisResult<()> {
        if self.pending_releases.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (room, kind) in &self.pending_releases {
            self.release_into(&mut pipe, room, kind);
        }
        let con = self.con.as_mut().expect("connected");
        pipe.query::<()>(con)?;
        self.pending_releases.clear();
        Ok(())
    }

    /// A connection, made now if there is none and the backoff allows.
    fn connected(&mut self) -> bool {
        if self.con.is_some() {
            return true;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        let con = self
            .client
            .get_connection_with_timeout(REDIS_IO_TIMEOUT)
            .and_then(|mut con| {
                con.set_read_timeout(Some(REDIS_IO_TIMEOUT))?;
                con.set_write_timeout(Some(REDIS_IO_TIMEOUT))?;
                // A TCP connect is not an answer: Redis must say PONG (NOAUTH, LOADING, ... fail here).
                redis::cmd("PING").query::<String>(&mut con)?;
                Ok(con)
            });
        match con {
            Ok(con) => {
                self.con = Some(con);
                self.backoff = BACKOFF_MIN;
                self.retry_at = None;
                self.say_up();
                true
            }
            Err(e) => {
                self.lost(e.to_string());
                false
            }
        }
    }

    /// Redis went away: drop the connection, back off, tell the loop once.
    fn lost(&mut self, why: String) {
        self.con = None;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        if self.up != Some(false) {
            self.up = Some(false);
            self.tell(FromRedis::Down(why));
        }
    }

    fn tell(&self, msg: FromRedis) {
        // Bounded: if the loop is that far behind, the helper waits for it (the loop never waits for us).
        if self.tx.send(msg).is_ok() {
            let _ = self.waker.wake();
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.settings.cluster)
    }

    /// Adds to `pipe` the release of room `room` of type `kind`: its name, if ours, and its free seats.
    fn release_into(&self, pipe: &mut redis::Pipeline, room: &str, kind: &str) {
        pipe.cmd("EVAL")
            .arg(RELEASE)
            .arg(3)
            .arg(self.key("room", room))
            .arg(self.key("free", kind))
            .arg(self.key("free-until", kind))
            .arg(&self.settings.process_id)
            .arg(room)
            .ignore();
    }

    fn handle(&mut self, msg: ToRedis) -> redis::RedisResult<()> {
        let s = &self.settings;
        let ttl_ms = s.ttl.as_millis() as u64;
        let con = self.con.as_mut().expect("connected");
        match msg {
            ToRedis::Heartbeat { info, rooms } => {
                let now_ms = unix_ms();
                let entry = format!(
                    "{{\"id\":\"{}\",\"url\":\"{}\",\"rooms\":{},\"players\":{},\"room_capacity\":{},\"draining\":{},\"version\":\"{}\"}}",
                    s.process_id,
                    s.public_url,
                    info.rooms,
                    info.players,
                    info.room_capacity,
                    info.draining,
                    env!("CARGO_PKG_VERSION"),
                );
                let processes = format!("{}:processes", s.cluster);
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(format!("{}:process:{}", s.cluster, s.process_id))
                    .arg(entry)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore()
                    .cmd("ZADD")
                    .arg(&processes)
                    .arg(now_ms + ttl_ms)
                    .arg(&s.process_id)
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&processes)
                    .arg("-inf")
                    .arg(now_ms)
                    .ignore();
                for room in &rooms {
                    pipe.cmd("EVAL")
                        .arg(CLAIM)
                        .arg(1)
                        .arg(format!("{}:room:{}", s.cluster, room.name))
                        .arg(&s.process_id)
                        .arg(ttl_ms);
                }
                // Free seats after the claims, so each claim's answer is the (3 + i)th; each good for a TTL
                // (the owner rewrites them at every heartbeat; a dead owner's are swept).
                let mut extra = 0;
                for room in &rooms {
                    if let Some(free) = room.free {
                        pipe.cmd("ZADD")
                            .arg(format!("{}:free:{}", s.cluster, room.kind))
                            .arg(free)
                            .arg(&*room.name)
                            .cmd("ZADD")
                            .arg(format!("{}:free-until:{}", s.cluster, room.kind))
                            .arg(now_ms + ttl_ms)
                            .arg(&*room.name);
                        extra += 2;
                    }
                }
                for (kind, cap) in &s.seats {
                    if cap.is_some() {
                        pipe.cmd("EVAL")
                            .arg(SWEEP)
                            .arg(2)
                            .arg(format!("{}:free:{kind}", s.cluster))
                            .arg(format!("{}:free-until:{kind}", s.cluster))
                            .arg(now_ms)
                            .arg(SWEEP_MAX);
                        extra += 1;
                    }
                }
                // Each command's answer on its own, so one refused claim does not hide the others'.
                let count = 3 + rooms.len() + extra;
                let answers = redis::ConnectionLike::req_packed_commands(
                    con,
                    &pipe.get_packed_pipeline(),
                    0,
                    count,
                )?;
                let mut refused = None;
                for answer in &answers[..3] {
                    if let redis::Value::ServerError(e) = answer {
                        refused.get_or_insert_with(|| format!("{e:?}"));
                    }
                }
                let claims = answers.iter().skip(3).take(rooms.len()).cloned();
                for answer in answers.iter().skip(3 + rooms.len()) {
                    if let redis::Value::ServerError(e) = answer {
                        refused.get_or_insert_with(|| format!("{e:?}"));
                    }
                }
                for (room, answer) in rooms.into_iter().zip(claims) {
                    let room = room.name;
                    match answer {
                        redis::Value::ServerError(e) => {
                            refused.get_or_insert_with(|| format!("{e:?}"));
                        }
                        answer => self.claimed(room, answer),
                    }
                }
                if let Some(why) = refused {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::ResponseError,
                        "refused",
                        why,
                    )));
                }
            }
            ToRedis::Claim(room) => {
                let answer: redis::Value = redis::cmd("EVAL")
                    .arg(CLAIM)
                    .arg(1)
                    .arg(format!("{}:room:{room}", s.cluster))
                    .arg(&s.process_id)
                    .arg(ttl_ms)
                    .query(con)?;
                self.claimed(room, answer);
            }
            ToRedis::Release(room) => {
                let mut pipe = redis::pipe();
                self.release_into(&mut pipe, &room.name, &room.kind);
                let con = self.con.as_mut().expect("connected");
                let released = pipe.query::<()>(con);
                if released.is_err() {
                    self.keep_release(room);
                }
                released?;
            }
            ToRedis::Leave { rooms } => {
                let mut pipe = redis::pipe();
                for room in &rooms {
                    self.release_into(&mut pipe, &room.name, &room.kind);
                }
                pipe.cmd("DEL")
                    .arg(self.key("process", &self.settings.process_id))
                    .ignore()
                    .cmd("ZREM")
                    .arg(format!("{}:processes", self.settings.cluster))
                    .arg(&self.settings.process_id)
                    .ignore();
                let con = self.con.as_mut().expect("connected");
                pipe.query::<()>(con)?;
            }
            ToRedis::Matchmake(_) => unreachable!("answered in run"),
        }
        Ok(())
    }

    /// The answer of a claim: 1 is ours; anything else names the owner.
    fn claimed(&self, room: Box<str>, answer: redis::Value) {
        match answer {
            redis::Value::Int(1) => {}
            redis::Value::BulkString(owner) => self.tell(FromRedis::Lost {
                room,
                owner: String::from_utf8_lossy(&owner).into_owned(),
            }),
            other => self.tell(FromRedis::Lost {
                room,
                owner: format!("{other:?}"),
            }),
        }
    }
}

/// The matchmaker: where a player asking for a room (or for any room of a type) goes.
impl Helper {
    fn matchmake(&mut self, ask: &Ask) -> redis::RedisResult<Result<Placement, MatchError>> {
        if ask.asked_at.elapsed() > MATCHMAKE_DEADLINE {
            return Ok(Err(MatchError::Busy));
        }
        self.read_processes(false)?;
        if let Some(room) = &ask.room {
            return self.place_named(room, ask);
        }
        // Any room of this type with a free seat: the fullest first, so rooms fill before new ones open.
        let free_key = self.key("free", &ask.kind);
        let con = self.con.as_mut().expect("connected");
        let names: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&free_key)
            .arg(1)
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(FREE_CANDIDATES)
            .query(con)?;
        if !names.is_empty() {
            let keys: Vec<String> = names.iter().map(|n| self.key("room", n)).collect();
            let con = self.con.as_mut().expect("connected");
            let owners: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(con)?;
            let mut stale = Vec::new();
            for (name, owner) in names.iter().zip(owners) {
                let live = owner
                    .as_deref()
                    .and_then(|o| self.live(o))
                    .map(|p| self.placement(name, &ask.kind, p));
                match live {
                    Some(Ok(placement)) => {
                        if self.take_seat(name, ask)? {
                            return Ok(Ok(placement));
                        }
                    }
                    Some(Err(_)) => {} // draining
                    None => stale.push(name.clone()),
                }
            }
            if !stale.is_empty() {
                let until_key = self.key("free-until", &ask.kind);
                let con = self.con.as_mut().expect("connected");
                redis::pipe()
                    .cmd("ZREM")
                    .arg(&free_key)
                    .arg(&stale)
                    .cmd("ZREM")
                    .arg(until_key)
                    .arg(&stale)
                    .query::<()>(con)?;
            }
        }
        if !ask.may_create {
            let why = format!("no room of type {} has a free seat", ask.kind);
            return Ok(Err(MatchError::NotFound(why)));
        }
        let room = new_room_name(&ask.kind);
        self.place_named(&room, ask)
    }

    /// A seat for `ask`'s player in `room` (one per player and room, held for a seat ticket's life);
    /// false when the owner's last count, less the seats given since, leaves none.
    fn take_seat(&mut self, room: &str, ask: &Ask) -> redis::RedisResult<bool> {
        let free_key = self.key("free", &ask.kind);
        let hold_key = self.seat_key(room, &ask.player);
        let con = self.con.as_mut().expect("connected");
        let taken: i64 = redis::cmd("EVAL")
            .arg(TAKE)
            .arg(2)
            .arg(free_key)
            .arg(hold_key)
            .arg(room)
            .arg(SEAT_TICKET_LIFETIME.as_millis() as u64)
            .query(con)?;
        Ok(taken == 1)
    }

    /// The key that says `player` holds a seat in `room`.
    fn seat_key(&self, room: &str, player: &str) -> String {
        format!("{}:seat:{room}:{player}", self.settings.cluster)
    }

    /// Room `room`: its owner if a live process holds it, else (if rooms may be created) the least loaded
    /// process, which the room's name is reserved for (atomically: of two matchmakers racing for one
    /// name, both answer the same).
    fn place_named(
        &mut self,
        room: &str,
        ask: &Ask,
    ) -> redis::RedisResult<Result<Placement, MatchError>> {
        let kind = ask.kind.as_str();
        let key = self.key("room", room);
        let con = self.con.as_mut().expect("connected");
        let owner: Option<String> = redis::cmd("GET").arg(&key).query(con)?;
        if owner.as_deref().is_some_and(|o| self.live(o).is_none()) {
            // An owner this table does not know may have registered since it was read: read it again
            // before taking the room from it, or a live room would be placed twice.
            self.read_processes(true)?;
        }
        let owned = owner
            .as_deref()
            .and_then(|o| self.live(o))
            .map(|p| self.placement(room, kind, p));
        if let Some(placed) = owned {
            if placed.is_ok() && !self.take_seat(room, ask)? {
                return Ok(Err(MatchError::Full(room.to_string())));
            }
            return Ok(placed);
        }
        if !ask.may_create {
            return Ok(Err(MatchError::NotFound(format!("no room named {room}"))));
        }
        let Some(candidate) = self.least_loaded() else {
            return Ok(Err(MatchError::NoCapacity));
        };
        let lifetime_ms = SEAT_TICKET_LIFETIME.as_millis() as u64;
        let con = self.con.as_mut().expect("connected");
        let winner: String = redis::cmd("EVAL")
            .arg(SEAT)
            .arg(1)
            .arg(&key)
            .arg(&candidate)
            .arg(lifetime_ms)
            .arg(owner.as_deref().unwrap_or(""))
            .query(con)?;
        if winner == candidate {
            *self.placed.entry(candidate).or_default() += 1;
            // Advertise the new room's seats at once (until the seat ticket expires, unless its owner
            // creates it and counts them), so the next "any room of this type" fills it; this player's
            // seat is taken.
            let cap = self.settings.seats.iter().find(|(t, _)| t == kind);
            if let Some(&(_, Some(max))) = cap {
                let hold_key = self.seat_key(room, &ask.player);
                let (free_key, until_key) = (self.key("free", kind), self.key("free-until", kind));
                let con = self.con.as_mut().expect("connected");
                redis::pipe()
                    .cmd("ZADD")
                    .arg(free_key)
                    .arg(max.saturating_sub(1))
                    .arg(room)
                    .cmd("ZADD")
                    .arg(until_key)
                    .arg(unix_ms() + lifetime_ms)
                    .arg(room)
                    .cmd("SET")
                    .arg(hold_key)
                    .arg(1)
                    .arg("PX")
                    .arg(lifetime_ms)
                    .query::<()>(con)?;
            }
        }
        if self.live(&winner).is_none() {
            // Another matchmaker chose a process this one has not read yet.
            self.read_processes(true)?;
        }
        Ok(match self.live(&winner) {
            Some(p) => self.placement(room, kind, p),
            None => Err(MatchError::NoCapacity),
        })
    }

    fn placement(&self, room: &str, kind: &str, p: &ProcessEntry) -> Result<Placement, MatchError> {
        if p.draining {
            return Err(MatchError::Draining(room.to_string()));
        }
        Ok(Placement {
            room: room.to_string(),
            kind: kind.to_string(),
            process: p.id.clone(),
            url: p.url.clone(),
        })
    }

    fn live(&self, id: &str) -> Option<&ProcessEntry> {
        self.processes.iter().find(|p| p.id == id)
    }

    /// The live process that is not draining and has the fewest rooms (counting those placed on it since
    /// the table was read), then the fewest players; `None` if none can open a room.
    fn least_loaded(&self) -> Option<String> {
        let placed = |p: &ProcessEntry| self.placed.get(&p.id).copied().unwrap_or(0);
        self.processes
            .iter()
            .filter(|p| !p.draining && p.room_capacity > placed(p))
            .min_by_key(|p| (p.rooms + placed(p), p.players))
            .map(|p| p.id.clone())
    }

    /// Reads the live processes' entries, unless they were read less than a heartbeat ago (`force`:
    /// read anyway). Bounded: one `ZRANGEBYSCORE` and one `MGET`.
    fn read_processes(&mut self, force: bool) -> redis::RedisResult<()> {
        let fresh = self
            .table_at
            .is_some_and(|at| at.elapsed() < self.settings.ttl / 3);
        if fresh && !force {
            return Ok(());
        }
        let con = self.con.as_mut().expect("connected");
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(format!("{}:processes", self.settings.cluster))
            .arg(unix_ms())
            .arg("+inf")
            .query(con)?;
        self.processes.clear();
        if !ids.is_empty() {
            let keys: Vec<String> = ids.iter().map(|id| self.key("process", id)).collect();
            let con = self.con.as_mut().expect("connected");
            let entries: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(con)?;
            // An entry gone (expired between the two reads) or unreadable is a process not to route to.
            self.processes = entries
                .iter()
                .flatten()
                .filter_map(|json| serde_json::from_str(json).ok())
                .collect();
        }
        self.placed.clear();
        self.table_at = Some(Instant::now());
        Ok(())
    }
}

/// A fresh name for a room of type `kind`: the type (cut to leave room) and 8 random hex digits.
pub(crate) fn new_room_name(kind: &str) -> String {
    let cut = &kind[..kind.len().min(crate::sim::room::ROOM_NAME_LEN_MAX - 9)];
    format!("{cut}-{}", random_hex::<4>())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh process id: 16 hex digits from the operating system's random source.
pub fn random_process_id() -> String {
    random_hex::<8>()
}

/// `N` bytes from the operating system's random source, as 2N hex digits.
fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
