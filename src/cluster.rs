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
//! | `<cluster>:room:<name>` | the id of the process that owns room `<name>` | `PX --cluster-ttl-ms`, claimed with a script that sets it only if absent and refreshes it only if ours |

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
/// Deletes the room key if we hold it.
const RELEASE: &str = r#"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0"#;

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
        rooms: Vec<Box<str>>,
    },
    /// A room was just created here: claim it now rather than at the next heartbeat.
    Claim(Box<str>),
    /// A room here is gone.
    Release(Box<str>),
    /// Release these rooms and remove this process from the directory (the end of a drain), then stop.
    Leave { rooms: Vec<Box<str>> },
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
    helper: Option<JoinHandle<()>>,
}

impl Cluster {
    /// Starts the helper thread, which wakes the loop through `waker` whenever it has an answer.
    pub fn start(settings: Settings, waker: Arc<Waker>) -> std::io::Result<Cluster> {
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
            pending_releases: std::collections::HashSet::new(),
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
            helper: Some(thread),
        })
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
    pub fn leave(&mut self, rooms: Vec<Box<str>>, wait: Duration) {
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
    /// Releases that could not be sent, for when Redis is back (at most `PENDING_RELEASES_MAX`).
    pending_releases: std::collections::HashSet<Box<str>>,
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

    fn keep_release(&mut self, room: Box<str>) {
        if self.pending_releases.len() < PENDING_RELEASES_MAX {
            self.pending_releases.insert(room);
        }
    }

    /// Sends the releases that waited for Redis.
    fn flush_releases(&mut self) -> redis::RedisResult<()> {
        if self.pending_releases.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for room in &self.pending_releases {
            pipe.cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(self.key("room", room))
                .arg(&self.settings.process_id)
                .ignore();
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
                        .arg(format!("{}:room:{room}", s.cluster))
                        .arg(&s.process_id)
                        .arg(ttl_ms);
                }
                // Each command's answer on its own, so one refused claim does not hide the others'.
                let count = 3 + rooms.len();
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
                for (room, answer) in rooms.into_iter().zip(answers.into_iter().skip(3)) {
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
                let key = self.key("room", &room);
                let con = self.con.as_mut().expect("connected");
                let released = redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(key)
                    .arg(&self.settings.process_id)
                    .query::<()>(con);
                if released.is_err() {
                    self.keep_release(room);
                }
                released?;
            }
            ToRedis::Leave { rooms } => {
                let mut pipe = redis::pipe();
                for room in &rooms {
                    pipe.cmd("EVAL")
                        .arg(RELEASE)
                        .arg(1)
                        .arg(format!("{}:room:{room}", s.cluster))
                        .arg(&s.process_id)
                        .ignore();
                }
                pipe.cmd("DEL")
                    .arg(format!("{}:process:{}", s.cluster, s.process_id))
                    .ignore()
                    .cmd("ZREM")
                    .arg(format!("{}:processes", s.cluster))
                    .arg(&s.process_id)
                    .ignore()
                    .query::<()>(con)?;
            }
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

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh process id: 16 hex digits from the operating system's random source.
pub fn random_process_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
