//! Every setting of the server, each a flag with its unit and default. `tickcast --help` prints them all
//! (with the arena's own, `sim::arena::ArenaSettings`, which are the game's and not the server's). The
//! binary also takes each from a `TICKCAST_*` variable and a TOML file ([`sources`]); a library user
//! builds a [`Config`] as a struct: `Config { tick_hz: 30, ..Config::default() }`.

use std::net::SocketAddr;

use clap::Parser;

pub mod sources;

/// tickcast: an authoritative multiplayer game server (binary WebSockets, fixed tick, shared deltas).
#[derive(Debug, Clone, Parser)]
#[command(name = "tickcast", version, about, max_term_width = 110)]
pub struct Config {
    /// Address to listen on for HTTP and WebSocket (`GET /ws`).
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub listen: SocketAddr,

    /// Simulation ticks per second (1..=128).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=128))]
    pub tick_hz: u16,

    /// Send a `Checksum` of the whole world every this many ticks (0: never).
    #[arg(long, default_value_t = 20)]
    pub checksum_every_ticks: u64,

    /// Most ticks run back to back in one turn when the loop is late; ticks further behind are skipped.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub catch_up_ticks_max: u32,

    /// Most WebSocket and HTTP connections open at once; beyond it new connections are refused.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most entities alive in the world (players and wanderers).
    #[arg(long, default_value_t = 65_536)]
    pub max_entities: usize,

    /// How many ticks back a baseline may be and still get a coalesced delta instead of a full snapshot.
    #[arg(long, default_value_t = 128)]
    pub history_ticks: u64,

    /// Most despawns remembered for coalesced deltas; past it, older baselines get a full snapshot.
    #[arg(long, default_value_t = 65_536)]
    pub despawn_log_max: usize,

    /// Send a connection nothing in a tick in which nothing changed since the update it holds (its
    /// `Checksum` included): an idle world costs no sends, and its next `Delta` is from the tick it holds.
    /// Off: every tick sends every member an update, empty or not (clients may time themselves by it).
    #[arg(long)]
    pub skip_unchanged_updates: bool,

    /// A connection with more than this many bytes queued in user space is skipped for updates.
    #[arg(long, default_value_t = 64 * 1024)]
    pub send_hwm_bytes: usize,

    /// A connection with more than this many bytes queued in user space is closed (code 4002).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub send_limit_bytes: usize,

    /// A connection that could not be sent an update for this long is closed (code 4001).
    #[arg(long, default_value_t = 10_000)]
    pub lag_limit_ms: u64,

    /// TCP_NOTSENT_LOWAT on accepted sockets: unsent bytes the kernel holds before it stops taking more.
    #[arg(long, default_value_t = 16 * 1024)]
    pub tcp_notsent_lowat_bytes: u32,

    /// Largest WebSocket message (and frame) a client may send (close 1009 beyond).
    #[arg(long, default_value_t = 4096)]
    pub max_message_bytes: usize,

    /// Read buffer per WebSocket connection, kept for its life (most of an idle connection's memory), and
    /// the most one read() takes; a larger message grows it while it arrives and takes more reads.
    #[arg(long, default_value_t = 256)]
    pub ws_read_buffer_bytes: usize,

    /// Messages per second a client may send on average (all kinds); the excess is dropped and counted.
    #[arg(long, default_value_t = 120.0)]
    pub messages_per_s: f64,

    /// Messages a client may send at once after a quiet spell.
    #[arg(long, default_value_t = 240.0)]
    pub message_burst: f64,

    /// Dropped messages (leaking away at --messages-per-s) past which a client is closed (1008): a client at
    /// up to twice the rate is only dropped, a sustained flood is closed.
    #[arg(long, default_value_t = 1200.0)]
    pub message_drop_limit: f64,

    /// Serve a WebSocket echo (text and binary, same connection code as /ws, no game) at this path, for
    /// conformance suites such as Autobahn's fuzzingclient. Off unless given, e.g. `--echo-path /echo`.
    #[arg(long, value_name = "PATH")]
    pub echo_path: Option<String>,

    /// Require an authentication ticket (`/ws?ticket=...`, see docs/OPERATIONS.md) signed with the secret
    /// in this file (its bytes, a trailing newline removed). Without it, anyone may connect.
    #[arg(long, value_name = "PATH")]
    pub ticket_secret_file: Option<std::path::PathBuf>,

    /// A browser origin allowed to open a WebSocket (repeat the flag for several). None given: any origin.
    /// Requests without an Origin header (non-browser clients) are always allowed.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// After a turn that handled socket events, wait up to this many microseconds (never past the next
    /// tick or timer) before polling again, so inputs that arrive meanwhile are read in one wake-up
    /// instead of one each. Inputs only count at the next tick; what waits is a pong, a handshake or an
    /// HTTP answer, by at most this long. 0: poll at once (docs/PERFORMANCE.md, "Coalescing reads").
    #[arg(long, default_value_t = 0)]
    pub read_coalesce_us: u64,

    /// Most messages handled per connection per loop turn; the rest wait for the next turn.
    #[arg(long, default_value_t = 64)]
    pub messages_per_turn_max: usize,

    /// Largest HTTP request head (request line and headers); beyond it the answer is 431.
    #[arg(long, default_value_t = 8192)]
    pub max_header_bytes: usize,

    /// Time a new connection has to send a complete HTTP request.
    #[arg(long, default_value_t = 5_000)]
    pub handshake_timeout_ms: u64,

    /// The timer pass (timeouts, pings) checks every connection each `--tick-hz` period while there are at
    /// most this many slab slots; past it, a share of them each period, so that each is still checked at
    /// least every 250 ms (its deadlines then up to that late) and idle connections cost no per-tick pass.
    #[arg(long, default_value_t = 4096)]
    pub timer_checks_per_pass_min: usize,

    /// A WebSocket connection that has been quiet this long is sent a ping.
    #[arg(long, default_value_t = 5_000)]
    pub ping_interval_ms: u64,

    /// A WebSocket connection silent this long (pongs included) is closed (code 4003).
    #[arg(long, default_value_t = 15_000)]
    pub idle_timeout_ms: u64,

    /// After the server sends a close frame, how long it waits for the client's before dropping the socket.
    #[arg(long, default_value_t = 2_000)]
    pub close_linger_ms: u64,

    /// On SIGTERM/SIGINT, how long to flush final updates and close frames before exiting anyway.
    #[arg(long, default_value_t = 5_000)]
    pub drain_timeout_ms: u64,

    /// How long a player whose connection dropped keeps its entity, waiting for the client to resume with
    /// its token; then it leaves. 0: players leave as soon as their connection goes (no resume).
    #[arg(long, default_value_t = 10_000)]
    pub resume_grace_ms: u64,

    /// Most players waiting to be resumed at once; beyond it (checked each tick) the longest-waiting leave.
    #[arg(long, default_value_t = 1_000)]
    pub detached_max: usize,

    // ---- What one connection may cost the loop (docs/OPERATIONS.md, "Threat model") ----
    /// Most bytes read from one WebSocket per loop turn; the rest waits for the next turn, so no client
    /// can keep the loop in its connection, whatever it sends.
    #[arg(long, default_value_t = 16 * 1024)]
    pub read_bytes_per_turn_max: usize,

    /// Most WebSocket frames (control frames and fragments included) read from one connection per loop
    /// turn; the rest waits for the next turn.
    #[arg(long, default_value_t = 128)]
    pub frames_per_turn_max: u32,

    /// Most frames one message may come in (a first frame and its continuations); beyond it the
    /// connection is closed (1008). Browsers never fragment; an endless run of empty continuations is an
    /// attack.
    #[arg(long, default_value_t = 64)]
    pub fragments_per_message_max: u32,

    /// Time a client has to finish a frame (or a fragmented message) once its first byte arrived; then it
    /// is closed (1008), so trickling a frame byte by byte cannot hold a slot.
    #[arg(long, default_value_t = 5_000)]
    pub frame_timeout_ms: u64,

    /// Bytes queued in user space across all connections past which catching-up updates (coalesced deltas,
    /// full snapshots) and updates to connections with bytes still queued are deferred to a later tick.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub queued_bytes_max: usize,

    /// A connection that has not taken its first update whole (its queue never emptied) within this long
    /// of it being queued is closed (4001): a client that never reads holds a snapshot only this long.
    #[arg(long, default_value_t = 5_000)]
    pub first_update_lag_limit_ms: u64,

    // -- Ticket lifetime (issue 11). Tickets can be replayed until they expire, so this caps what a leaked
    // one is worth whatever its issuer wrote in it; 300 s leaves room for minute-long tickets, clock skew
    // between the backend and this server, and a reconnect backoff.
    /// A ticket whose expiry is further ahead than now plus this is refused (401 on the upgrade, 4004 in a
    /// message): how long a leaked ticket can be replayed, at most.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub ticket_lifetime_max_s: u64,

    // ---- per-address limits, descriptors and the health slots (docs/OPERATIONS.md) ----
    /// Most connections one client address (an IPv4 address, or an IPv6 /64) may hold open at once; beyond
    /// it a new one is answered 429. Applies to the TCP peer (X-Forwarded-For is never trusted): behind a
    /// proxy or load balancer set it to 0 and limit per client there. 0: no limit.
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_ip: u32,

    /// New connections per second one client address may open on average (token bucket); beyond it a new
    /// one is answered 429. 0: no limit. Load tools on loopback set it (and --max-connections-per-ip) to 0.
    #[arg(long, default_value_t = 64.0)]
    pub accepts_per_ip_per_s: f64,

    /// New connections one client address may open at once after a quiet spell (the bucket's size).
    #[arg(long, default_value_t = 256.0)]
    pub accept_burst_per_ip: f64,

    /// Most client addresses tracked for the per-address limits at once; when full, connections from an
    /// address not yet tracked are answered 503 until entries expire (an address's entry goes once it has
    /// nothing open and its bucket is full again).
    #[arg(long, default_value_t = 65_536)]
    pub peer_table_max: usize,

    /// Connections accepted beyond --max-connections that may only ask for /healthz or /metrics (anything
    /// else there is answered 503), so a full server still answers its health check. Each lasts at most
    /// --handshake-timeout-ms.
    #[arg(long, default_value_t = 16)]
    pub health_slots: usize,

    // ---- rooms (docs/PROTOCOL.md, "Rooms"; docs/OPERATIONS.md) ----
    /// The room plain `/ws` joins, created at start with the first room type and never disposed.
    #[arg(long, default_value = "default", value_parser = parse_room_name)]
    pub default_room: String,

    /// Who may create a room by naming it in the upgrade URL: `open` (anyone), `ticket` (only an upgrade
    /// whose `?ticket=` is bound to that room; needs --ticket-secret-file) or `off` (only the default room
    /// exists).
    #[arg(long, value_enum, default_value_t = RoomCreation::Open, hide_possible_values = true)]
    pub room_creation: RoomCreation,

    /// Most rooms open at once (the default room included); the next create is answered 503.
    #[arg(long, default_value_t = 1_000)]
    pub max_rooms: usize,

    /// Most rooms created by one client address (IPv4 address, IPv6 /64) that are open at once; the next
    /// create from it is answered 429. Applies to the TCP peer: behind a proxy set it to 0 (no limit).
    #[arg(long, default_value_t = 32)]
    pub max_rooms_per_ip: u32,

    /// A room with no connections and no players waiting to resume is disposed after this long (never the
    /// default room); its name can then be created anew.
    #[arg(long, default_value_t = 30_000)]
    pub room_idle_ms: u64,

    // ---- TLS (docs/OPERATIONS.md, "TLS") ----
    /// Serve TLS on the listener: this PEM certificate chain (leaf first), with --tls-key. Every connection
    /// is then TLS (wss://, https://); SIGHUP reloads both files.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<std::path::PathBuf>,

    /// A TLS handshake not finished this long after the accept is dropped (counted as a timeout).
    #[arg(long, default_value_t = 5_000)]
    pub tls_handshake_timeout_ms: u64,

    // ---- cluster mode (docs/CLUSTER.md) ----
    /// Join a cluster whose directory is this Redis (`redis://HOST:PORT/DB`). Without it the process is
    /// standalone.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,

    /// The cluster's name: the prefix of every Redis key it uses.
    #[arg(long, default_value = "tickcast", value_parser = parse_room_name)]
    pub cluster: String,

    /// The WebSocket base URL clients use to reach this process (`ws://host:port` or `wss://...`):
    /// required with --redis, since behind NAT or a proxy the listen address is not what clients dial.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// This process's id in the cluster (1 to 64 of A-Z a-z 0-9 _ -); default: 16 random hex digits.
    #[arg(long, value_name = "ID", value_parser = parse_room_name)]
    pub process_id: Option<String>,

    /// Life of this process's directory entries (its own and its rooms' claims), refreshed every third
    /// of it: a process that dies stops being routed to within this long.
    #[arg(long, default_value_t = 3_000)]
    pub cluster_ttl_ms: u64,

    /// The cluster's shared secret (a file; every process of the cluster reads the same one): it signs
    /// the seat tickets `POST /matchmake` answers, which the process they name checks. Required with
    /// --redis. May be the --ticket-secret-file, but need not.
    #[arg(long, value_name = "PATH")]
    pub cluster_secret_file: Option<std::path::PathBuf>,

    /// Messages this process may publish on the backplane per second (topics and players elsewhere in
    /// the cluster), with a burst as large; beyond, they are dropped and counted.
    #[arg(long, default_value_t = 1_000)]
    pub backplane_messages_per_s: u32,

    // ---- The dashboard (docs/OPERATIONS.md, "Dashboard") ----
    /// The live dashboard at `GET /dashboard` (its data at `GET /dashboard/data`). `auto`: served when
    /// --listen is a loopback address (the local demo) or --dashboard-token-file is given, and then not
    /// to requests a proxy forwarded (`Forwarded`, `X-Forwarded-For`) unless a token is required; `on`:
    /// served on any address; `off`: 404.
    #[arg(long, value_enum, default_value_t = DashboardMode::Auto, hide_possible_values = true)]
    pub dashboard: DashboardMode,

    /// Require this token (the file's bytes, a trailing newline removed: 16 to 256 of A-Z a-z 0-9 - . _ ~)
    /// for the dashboard, as `Authorization: Bearer TOKEN` or `?token=TOKEN`; a missing or wrong one is 401.
    #[arg(long, value_name = "PATH")]
    pub dashboard_token_file: Option<std::path::PathBuf>,

    // ---- Agones (docs/OPERATIONS.md, "Agones") ----
    /// Run as an Agones game server: tell the SDK sidecar Ready once listening, Health while the loop
    /// turns (never when it stalls), the player count (--agones-players-counter), Shutdown after a drain.
    #[arg(long)]
    pub agones: bool,

    /// The Agones SDK sidecar's HTTP port on 127.0.0.1. Default: $AGONES_SDK_HTTP_PORT (Agones sets it),
    /// else 9358.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub agones_sdk_port: Option<u16>,

    /// How often Health goes to the sidecar (only if the loop ran its timers since the last one); keep
    /// it under the GameServer's health.periodSeconds.
    #[arg(long, default_value_t = 2_000)]
    pub agones_health_interval_ms: u64,

    /// An Agones Counter (declared in the GameServer's spec.counters) kept at the number of connected
    /// players, checked every health interval. None: no player count is sent.
    #[arg(long, value_name = "NAME", value_parser = parse_room_name)]
    pub agones_players_counter: Option<String>,
}

/// Who may create rooms (`--room-creation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoomCreation {
    /// Any client, by naming a room that does not exist.
    Open,
    /// Only an upgrade whose `?ticket=` is bound to the room it names (a matchmaker signed it).
    Ticket,
    /// Nobody: only the default room exists.
    Off,
}

/// Whether the dashboard is served (`--dashboard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DashboardMode {
    /// On a loopback `--listen` address, or with a token; off otherwise.
    Auto,
    On,
    Off,
}

impl Config {
    /// Whether `--dashboard` serves the dashboard with these settings.
    pub fn dashboard_served(&self) -> bool {
        match self.dashboard {
            DashboardMode::On => true,
            DashboardMode::Off => false,
            DashboardMode::Auto => {
                self.listen.ip().is_loopback() || self.dashboard_token_file.is_some()
            }
        }
    }
}

fn parse_room_name(name: &str) -> Result<String, String> {
    match crate::sim::room::valid_room_name(name) {
        true => Ok(name.to_string()),
        false => Err("a room name is 1 to 64 of A-Z a-z 0-9 _ -".to_string()),
    }
}

/// The flags' defaults, exactly (clap's own, parsed from no flags): neither the environment nor a file is
/// read here; those are the binary's sources (`config::sources`).
impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["tickcast"])
    }
}

impl Config {
    /// Rejects combinations the flags alone cannot (a limit below its high-water mark, ...).
    pub fn validate(&self) -> Result<(), String> {
        if self.send_limit_bytes < self.send_hwm_bytes {
            return Err(format!(
                "--send-limit-bytes ({}) must be at least --send-hwm-bytes ({})",
                self.send_limit_bytes, self.send_hwm_bytes
            ));
        }
        if self.idle_timeout_ms <= self.ping_interval_ms {
            return Err("--idle-timeout-ms must be longer than --ping-interval-ms".to_string());
        }
        if self.history_ticks == 0 || self.despawn_log_max == 0 || self.max_entities == 0 {
            return Err(
                "--history-ticks, --despawn-log-max and --max-entities must be at least 1"
                    .to_string(),
            );
        }
        if !(self.messages_per_s > 0.0
            && self.message_burst >= 1.0
            && self.message_drop_limit >= 0.0)
        {
            return Err(
                "--messages-per-s must be above 0 and --message-burst at least 1".to_string(),
            );
        }
        if self.read_bytes_per_turn_max == 0
            || self.frames_per_turn_max == 0
            || self.fragments_per_message_max == 0
        {
            return Err("--read-bytes-per-turn-max, --frames-per-turn-max and \
                 --fragments-per-message-max must be at least 1"
                .to_string());
        }
        if !(self.accepts_per_ip_per_s.is_finite() && self.accepts_per_ip_per_s >= 0.0)
            || (self.accepts_per_ip_per_s > 0.0
                && (self.accept_burst_per_ip.is_nan() || self.accept_burst_per_ip < 1.0))
        {
            return Err(
                "--accepts-per-ip-per-s must be 0 or more, and --accept-burst-per-ip at least 1"
                    .to_string(),
            );
        }
        if self.timer_checks_per_pass_min == 0 {
            return Err("--timer-checks-per-pass-min must be at least 1".to_string());
        }
        if self.peer_table_max == 0 {
            return Err("--peer-table-max must be at least 1".to_string());
        }
        if self.max_rooms == 0 {
            return Err("--max-rooms must be at least 1 (the default room)".to_string());
        }
        if self.room_creation == RoomCreation::Ticket && self.ticket_secret_file.is_none() {
            return Err(
                "--room-creation ticket needs --ticket-secret-file: without tickets nobody could create a room"
                    .to_string(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together: give both or neither".to_string());
        }
        if self.read_coalesce_us > 50_000 {
            return Err("--read-coalesce-us must be at most 50000 (50 ms)".to_string());
        }
        if self.tls_handshake_timeout_ms == 0 {
            return Err("--tls-handshake-timeout-ms must be at least 1".to_string());
        }
        if self.redis.is_some() && self.public_url.is_none() {
            return Err(
                "--redis needs --public-url: the URL clients dial to reach this process"
                    .to_string(),
            );
        }
        if self.redis.is_some() && self.cluster_secret_file.is_none() {
            return Err(
                "--redis needs --cluster-secret-file: the secret every process of the cluster signs and checks seat tickets with"
                    .to_string(),
            );
        }
        if self.backplane_messages_per_s == 0 {
            return Err("--backplane-messages-per-s must be at least 1".to_string());
        }
        if let Some(url) = &self.public_url {
            let ok = (url.starts_with("ws://") || url.starts_with("wss://"))
                && url.len() <= 200
                && url
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if !ok {
                return Err(format!(
                    "--public-url {url:?}: a ws:// or wss:// URL of at most 200 printable characters"
                ));
            }
        }
        // A heartbeat every third of the TTL may come a timer tick late and take a Redis timeout: the keys
        // must outlive that.
        let late_ms = self.tick_duration().as_millis() as u64
            + crate::cluster::REDIS_IO_TIMEOUT.as_millis() as u64;
        if self.cluster_ttl_ms * 2 / 3 <= late_ms {
            return Err(format!(
                "--cluster-ttl-ms must be more than 1.5 x (a --tick-hz period + {} ms): at least {} here",
                crate::cluster::REDIS_IO_TIMEOUT.as_millis(),
                late_ms * 3 / 2 + 1
            ));
        }
        for (flag, name) in [
            ("--cluster", Some(&self.cluster)),
            ("--process-id", self.process_id.as_ref()),
        ] {
            if name.is_some_and(|n| !crate::sim::room::valid_room_name(n)) {
                return Err(format!("{flag}: 1 to 64 of A-Z a-z 0-9 _ -"));
            }
        }
        if self.agones {
            let period_ms = self.tick_duration().as_millis() as u64;
            if self.agones_health_interval_ms < (2 * period_ms).max(100)
                || self.agones_health_interval_ms > 60_000
            {
                return Err(format!(
                    "--agones-health-interval-ms must be from {} (two --tick-hz periods, at least 100) to 60000",
                    (2 * period_ms).max(100)
                ));
            }
            crate::agones::Settings::sdk_port(self.agones_sdk_port)?;
        }
        if self.max_message_bytes < 16 {
            return Err("--max-message-bytes must be at least 16".to_string());
        }
        Ok(())
    }

    pub fn rate_limit(&self) -> crate::net::rate::RateLimit {
        crate::net::rate::RateLimit {
            rate_per_s: self.messages_per_s,
            burst: self.message_burst,
            drop_debt_max: self.message_drop_limit,
        }
    }

    pub fn peer_limits(&self) -> crate::net::peers::PeerLimits {
        crate::net::peers::PeerLimits {
            open_max: self.max_connections_per_ip,
            accepts_per_s: self.accepts_per_ip_per_s,
            accept_burst: self.accept_burst_per_ip,
            entries_max: self.peer_table_max,
            rooms_max: self.max_rooms_per_ip,
        }
    }

    /// File descriptors the server may hold at once: every connection, the health slots, and
    /// [`crate::net::socket::DESCRIPTORS_SPARE`] for the listener, epoll, the waker, stdio and the reserve.
    pub fn descriptors_needed(&self) -> u64 {
        (self.max_connections as u64)
            .saturating_add(self.health_slots as u64)
            .saturating_add(crate::net::socket::DESCRIPTORS_SPARE)
    }

    /// The period of the process's own timers (connection timeouts, pings, idle rooms): one `--tick-hz`
    /// tick.
    pub fn tick_duration(&self) -> std::time::Duration {
        tick_period(self.tick_hz)
    }

    /// The TLS certificate and key files, when TLS is on.
    pub fn tls_files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }

    /// The cluster this process joins, with `--redis`.
    pub fn cluster_settings(&self) -> Option<crate::cluster::Settings> {
        Some(crate::cluster::Settings {
            redis_url: self.redis.clone()?,
            cluster: self.cluster.clone(),
            process_id: self
                .process_id
                .clone()
                .unwrap_or_else(crate::cluster::random_process_id),
            public_url: self.public_url.clone()?,
            ttl: std::time::Duration::from_millis(self.cluster_ttl_ms),
            seats: Vec::new(),
        })
    }
}

impl Config {
    /// What the Agones helper needs, with `--agones`.
    pub fn agones_settings(&self) -> Option<Result<crate::agones::Settings, String>> {
        if !self.agones {
            return None;
        }
        Some(
            crate::agones::Settings::sdk_port(self.agones_sdk_port).map(|port| {
                crate::agones::Settings {
                    port,
                    health_interval: std::time::Duration::from_millis(
                        self.agones_health_interval_ms,
                    ),
                    players_counter: self.agones_players_counter.clone(),
                }
            }),
        )
    }
}

/// The length of one tick at `tick_hz`.
pub fn tick_period(tick_hz: u16) -> std::time::Duration {
    std::time::Duration::from_nanos(1_000_000_000 / u64::from(tick_hz.max(1)))
}
