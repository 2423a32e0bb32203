//! The server's counters and histograms, rendered as Prometheus text at `GET /metrics`. Plain integers
//! owned by the loop: no atomics, no locks, since only the loop thread touches them.

use std::fmt::Write;
use std::time::Duration;

/// Why a connection ended, as a label of `tickcast_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed (close frame or EOF).
    Peer,
    /// An HTTP exchange finished (response sent).
    HttpDone,
    HttpError,
    HandshakeTimeout,
    IdleTimeout,
    ProtocolError,
    MalformedMessage,
    MessageTooBig,
    VersionMismatch,
    Lagging,
    /// Lagging before the connection ever took an update whole (`--first-update-lag-limit-ms`).
    FirstUpdateLagging,
    SendLimit,
    WorldFull,
    RateLimited,
    Unauthorized,
    /// A frame (or fragmented message) was started and not finished within `--frame-timeout-ms`.
    FrameTimeout,
    /// The player was resumed on a newer connection.
    Replaced,
    Shutdown,
    IoError,
    Rejected,
    /// Refused with 429: the address already held `--max-connections-per-ip` connections.
    AddressConnections,
    /// Refused with 429: the address opened connections faster than `--accepts-per-ip-per-s`.
    AddressRate,
    /// A `Hello` or `Watch` past its room's cap (4006).
    RoomFull,
    /// The game ended the room (4007).
    RoomEnded,
    /// The game kicked the player (4008).
    Kicked,
    /// In a cluster, the room was another process's (4009).
    RoomElsewhere,
    /// An upgrade refused for its room (no such room, unknown or conflicting type, options refused, room
    /// limit).
    RoomRefused,
    /// A TLS handshake that failed or did not finish in time (by why in
    /// `tickcast_tls_handshake_failures_total`).
    TlsHandshake,
}

impl CloseReason {
    pub const ALL: [CloseReason; 28] = [
        CloseReason::Peer,
        CloseReason::HttpDone,
        CloseReason::HttpError,
        CloseReason::HandshakeTimeout,
        CloseReason::IdleTimeout,
        CloseReason::ProtocolError,
        CloseReason::MalformedMessage,
        CloseReason::MessageTooBig,
        CloseReason::VersionMismatch,
        CloseReason::Lagging,
        CloseReason::FirstUpdateLagging,
        CloseReason::SendLimit,
        CloseReason::WorldFull,
        CloseReason::RateLimited,
        CloseReason::Unauthorized,
        CloseReason::FrameTimeout,
        CloseReason::Replaced,
        CloseReason::Shutdown,
        CloseReason::IoError,
        CloseReason::Rejected,
        CloseReason::AddressConnections,
        CloseReason::AddressRate,
        CloseReason::RoomFull,
        CloseReason::RoomEnded,
        CloseReason::Kicked,
        CloseReason::RoomRefused,
        CloseReason::RoomElsewhere,
        CloseReason::TlsHandshake,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::HttpDone => "http_done",
            CloseReason::HttpError => "http_error",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::MalformedMessage => "malformed_message",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::VersionMismatch => "version_mismatch",
            CloseReason::Lagging => "lagging",
            CloseReason::FirstUpdateLagging => "first_update_lagging",
            CloseReason::SendLimit => "send_limit",
            CloseReason::WorldFull => "world_full",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::Unauthorized => "unauthorized",
            CloseReason::FrameTimeout => "frame_timeout",
            CloseReason::Replaced => "replaced",
            CloseReason::Shutdown => "shutdown",
            CloseReason::IoError => "io_error",
            CloseReason::Rejected => "rejected",
            CloseReason::AddressConnections => "address_connections",
            CloseReason::AddressRate => "address_rate",
            CloseReason::RoomFull => "room_full",
            CloseReason::RoomEnded => "room_ended",
            CloseReason::Kicked => "kicked",
            CloseReason::RoomRefused => "room_refused",
            CloseReason::TlsHandshake => "tls_handshake",
            CloseReason::RoomElsewhere => "room_elsewhere",
        }
    }
}

/// A Prometheus histogram over durations with fixed bucket bounds in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds_us: &'static [u64],
    counts: Vec<u64>,
    sum_us: u64,
    count: u64,
}

/// Bucket bounds for tick durations and lateness, in microseconds.
pub const TICK_BUCKETS_US: &[u64] = &[
    25, 50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000,
    20_000, 30_000, 50_000, 100_000, 250_000,
];

impl Histogram {
    pub fn new(bounds_us: &'static [u64]) -> Self {
        Histogram {
            bounds_us,
            counts: vec![0; bounds_us.len()],
            sum_us: 0,
            count: 0,
        }
    }

    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        if let Some(i) = self.bounds_us.iter().position(|&b| us <= b) {
            self.counts[i] += 1;
        }
        self.sum_us += us;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_samples(out, name, "");
    }

    /// The samples alone, each with `label` (`key="value",` or empty) before `le`.
    fn render_samples(&self, out: &mut String, name: &str, label: &str) {
        let mut cumulative = 0;
        for (bound, n) in self.bounds_us.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{label}le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{label}le=\"+Inf\"}} {}", self.count);
        let bare = label.trim_end_matches(',');
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            braces(bare),
            self.sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {}", braces(bare), self.count);
    }
}

/// Buckets of a [`RecentTicks`]: one per bound of [`TICK_BUCKETS_US`], and one past the last.
const RECENT_BUCKETS: usize = TICK_BUCKETS_US.len() + 1;

/// One room's tick durations over the last [`RecentTicks::WINDOW`] to twice that, for the dashboard's
/// tick p99: two fixed-bucket halves (the bounds of [`TICK_BUCKETS_US`]), the older dropped when the
/// newer is a window old. Recording is a bucket search and an add; nothing is allocated after creation.
#[derive(Debug, Clone, Default)]
pub struct RecentTicks {
    current: [u32; RECENT_BUCKETS],
    previous: [u32; RECENT_BUCKETS],
    /// When `current` began; `None` before the first tick.
    since: Option<std::time::Instant>,
}

impl RecentTicks {
    /// How long each half covers.
    pub const WINDOW: Duration = Duration::from_secs(10);

    /// A tick that took `d`, at `now` (the loop's time of the turn).
    pub fn record(&mut self, d: Duration, now: std::time::Instant) {
        let since = *self.since.get_or_insert(now);
        let age = now.saturating_duration_since(since);
        if age >= Self::WINDOW {
            self.previous = match age >= 2 * Self::WINDOW {
                true => [0; RECENT_BUCKETS],
                false => self.current,
            };
            self.current = [0; RECENT_BUCKETS];
            self.since = Some(now);
        }
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = TICK_BUCKETS_US.partition_point(|&b| b < us);
        self.current[i] = self.current[i].saturating_add(1);
    }

    /// The upper bound (microseconds) of the bucket holding quantile `q` of the window's ticks:
    /// `Some(None)` past the last bound, `None` with no ticks.
    pub fn quantile_le_us(&self, q: f64) -> Option<Option<u64>> {
        let counts = || {
            self.current
                .iter()
                .zip(&self.previous)
                .map(|(a, b)| u64::from(*a) + u64::from(*b))
        };
        let total: u64 = counts().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in counts().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(TICK_BUCKETS_US.get(i).copied());
            }
        }
        unreachable!("the rank is at most the total")
    }
}

/// A histogram's samples as plain numbers, for the dashboard's JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistogramSnapshot {
    pub bounds_us: &'static [u64],
    /// Per bucket (not cumulative), one per bound and the last past every bound.
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_us: u64,
}

impl Histogram {
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts = self.counts.clone();
        counts.push(self.count - self.counts.iter().sum::<u64>());
        HistogramSnapshot {
            bounds_us: self.bounds_us,
            counts,
            count: self.count,
            sum_us: self.sum_us,
        }
    }
}

/// Everything `/metrics` reports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub connections_total: u64,
    pub websockets_total: u64,
    pub closed: [u64; CloseReason::ALL.len()],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    /// Client messages dropped for exceeding `--messages-per-s`.
    pub messages_dropped: u64,
    pub http_requests: u64,
    pub ticks: u64,
    pub ticks_skipped: u64,
    /// Loop turns (polls). A few per tick when idle; far more means the loop is spinning.
    pub turns: u64,
    pub updates_delta: u64,
    pub updates_coalesced: u64,
    pub updates_full: u64,
    /// Times a connection was passed over for an update because its queue was above the high-water mark.
    pub updates_skipped: u64,
    /// Of those, the ones skipped for the process-wide `--queued-bytes-max` rather than the connection's
    /// own high-water mark.
    pub updates_deferred: u64,
    /// Times freed memory was given back to the operating system after a burst.
    pub memory_trims: u64,
    /// Players taken back on a new connection with their resume token.
    pub resumes: u64,
    /// `Hello`s whose resume token named no live player (expired, or never issued): joined anew.
    pub resumes_refused: u64,
    /// Detached players removed because nobody resumed them in time (or past `--detached-max`).
    pub sessions_expired: u64,
    /// `accept` failures (out of file descriptors, say); each is retried at the next tick, or answered
    /// through the reserve descriptor.
    pub accept_errors: u64,
    pub rooms_created: u64,
    /// Rooms disposed after `--room-idle-ms` with nobody in them.
    pub rooms_disposed_idle: u64,
    /// Rooms their game ended.
    pub rooms_ended: u64,
    /// Creates refused for `--max-rooms`.
    pub rooms_refused_limit: u64,
    /// `POST /matchmake` answered with where to connect, and refused (any error status).
    pub matchmake_placed: u64,
    pub matchmake_refused: u64,
    /// Game `Message`s queued to a client, and those dropped: the client was behind (past
    /// `--send-hwm-bytes`), or the game passed a bound of its outbox.
    pub game_messages: u64,
    pub game_messages_dropped: u64,
    /// TLS handshakes done, failed by why (`TlsFailure::ALL` order), and certificate reloads.
    pub tls_handshakes: u64,
    pub tls_failures: [u64; crate::net::tls::TlsFailure::ALL.len()],
    pub tls_reloads_ok: u64,
    pub tls_reloads_failed: u64,
    /// Ticks of one room: a room's tick runs its game's steps and queues its updates.
    pub tick_duration: Histogram,
    pub tick_lateness: Histogram,
    /// A room tick split: its game's steps (`Step`), encoding the tick's shared update once (`Encode`),
    /// and queueing it to each member and writing (`Fanout`: a coalesced or full update a member needs is
    /// encoded there, on first demand); and the process's timers, once per `--tick-hz` period (`Timers`).
    pub tick_phases: [Histogram; TickPhase::ALL.len()],
    /// Socket events taken by the polls (events per wake-up: this over `loop_turns_total`).
    pub events: u64,
    /// `read()` system calls on client sockets (reads per message: this over `frames_in_total`).
    pub socket_reads: u64,
}

/// Where a tick's time goes (`tickcast_tick_phase_seconds{phase}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickPhase {
    Step,
    Encode,
    Fanout,
    Timers,
}

impl TickPhase {
    pub const ALL: [TickPhase; 4] = [
        TickPhase::Step,
        TickPhase::Encode,
        TickPhase::Fanout,
        TickPhase::Timers,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TickPhase::Step => "step",
            TickPhase::Encode => "encode",
            TickPhase::Fanout => "fanout",
            TickPhase::Timers => "timers",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections_total: 0,
            websockets_total: 0,
            closed: [0; CloseReason::ALL.len()],
            bytes_in: 0,
            bytes_out: 0,
            frames_in: 0,
            frames_out: 0,
            messages_dropped: 0,
            http_requests: 0,
            ticks: 0,
            ticks_skipped: 0,
            turns: 0,
            updates_delta: 0,
            updates_coalesced: 0,
            updates_full: 0,
            updates_skipped: 0,
            updates_deferred: 0,
            memory_trims: 0,
            resumes: 0,
            resumes_refused: 0,
            sessions_expired: 0,
            accept_errors: 0,
            rooms_created: 0,
            rooms_disposed_idle: 0,
            rooms_ended: 0,
            rooms_refused_limit: 0,
            matchmake_placed: 0,
            matchmake_refused: 0,
            game_messages: 0,
            game_messages_dropped: 0,
            tls_handshakes: 0,
            tls_failures: [0; crate::net::tls::TlsFailure::ALL.len()],
            tls_reloads_ok: 0,
            tls_reloads_failed: 0,
            tick_duration: Histogram::new(TICK_BUCKETS_US),
            tick_lateness: Histogram::new(TICK_BUCKETS_US),
            tick_phases: std::array::from_fn(|_| Histogram::new(TICK_BUCKETS_US)),
            events: 0,
            socket_reads: 0,
        }
    }
}

/// Gauges read from the loop at render time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub connections_open: usize,
    pub websockets_open: usize,
    pub players: usize,
    pub players_detached: usize,
    pub entities: usize,
    pub queued_bytes: usize,
    pub draining: bool,
    /// Client addresses tracked for the per-address limits.
    pub peer_addresses: usize,
    pub rooms_open: usize,
    /// In cluster mode only.
    pub cluster: Option<ClusterGauges>,
    /// TLS is on (`--tls-cert`).
    pub tls: bool,
    /// With `--agones` only: the SDK helper's requests.
    pub agones: Option<crate::agones::AgonesStats>,
}

/// What the cluster helper reports (docs/CLUSTER.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterGauges {
    pub redis_up: bool,
    pub dropped: u64,
    pub claims_lost: u64,
    /// The backplane's counters (docs/CLUSTER.md, "Backplane").
    pub backplane: crate::backplane::BackplaneStats,
}

impl Metrics {
    /// A TLS handshake failed for `why`.
    pub fn tls_failed(&mut self, why: crate::net::tls::TlsFailure) {
        self.tls_failures[why as usize] += 1;
    }

    pub fn closed(&mut self, reason: CloseReason) {
        self.closed[reason as usize] += 1;
    }

    pub fn closed_count(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize]
    }

    /// `tickcast_slow_consumer_closes_total`: closed for lagging or passing the send limit.
    pub fn slow_consumer_closes(&self) -> u64 {
        self.closed_count(CloseReason::Lagging)
            + self.closed_count(CloseReason::FirstUpdateLagging)
            + self.closed_count(CloseReason::SendLimit)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP tickcast_build_info Always 1: the version, git commit and wire protocol this process runs.\n\
             # TYPE tickcast_build_info gauge\n\
             tickcast_build_info{{version=\"{}\",commit=\"{}\",protocol=\"{}\"}} 1",
            crate::VERSION,
            crate::COMMIT,
            crate::proto::PROTOCOL_VERSION
        );
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP tickcast_{name} {help}\n# TYPE tickcast_{name} {kind}\ntickcast_{name} {value}");
        };
        one(
            "connections_open",
            "gauge",
            "Open TCP connections (HTTP and WebSocket).",
            g.connections_open as u64,
        );
        one(
            "websockets_open",
            "gauge",
            "Open WebSocket connections.",
            g.websockets_open as u64,
        );
        one(
            "players",
            "gauge",
            "Players with a connection, in every room.",
            g.players as u64,
        );
        one(
            "players_detached",
            "gauge",
            "Players whose connection dropped, kept for --resume-grace-ms in case they resume.",
            g.players_detached as u64,
        );
        one(
            "entities",
            "gauge",
            "Entities alive in every room's replicated world.",
            g.entities as u64,
        );
        one(
            "queued_bytes",
            "gauge",
            "Bytes queued in user space across all connections.",
            g.queued_bytes as u64,
        );
        one(
            "draining",
            "gauge",
            "1 while the server drains for shutdown.",
            u64::from(g.draining),
        );
        one(
            "connections_total",
            "counter",
            "TCP connections accepted.",
            self.connections_total,
        );
        one(
            "websockets_total",
            "counter",
            "WebSocket upgrades completed.",
            self.websockets_total,
        );
        one(
            "http_requests_total",
            "counter",
            "HTTP requests answered (upgrades included).",
            self.http_requests,
        );
        one(
            "bytes_in_total",
            "counter",
            "Bytes read from sockets.",
            self.bytes_in,
        );
        one(
            "bytes_out_total",
            "counter",
            "Bytes written to sockets.",
            self.bytes_out,
        );
        one(
            "frames_in_total",
            "counter",
            "WebSocket messages received.",
            self.frames_in,
        );
        one(
            "frames_out_total",
            "counter",
            "WebSocket update frames queued (delta, coalesced, full).",
            self.frames_out,
        );
        one(
            "messages_dropped_total",
            "counter",
            "Client messages dropped for exceeding --messages-per-s.",
            self.messages_dropped,
        );
        one(
            "ticks_total",
            "counter",
            "Simulation ticks run.",
            self.ticks,
        );
        one(
            "loop_turns_total",
            "counter",
            "Turns of the event loop (one poll each): a few per tick when idle, more under load.",
            self.turns,
        );
        one(
            "poll_events_total",
            "counter",
            "Socket events the loop's polls returned (over loop_turns_total: events per wake-up).",
            self.events,
        );
        one(
            "socket_reads_total",
            "counter",
            "read() calls on client sockets (over frames_in_total: reads per message).",
            self.socket_reads,
        );
        one(
            "ticks_skipped_total",
            "counter",
            "Ticks skipped because the loop fell behind the catch-up bound.",
            self.ticks_skipped,
        );
        one(
            "updates_delta_total",
            "counter",
            "Shared per-tick deltas queued.",
            self.updates_delta,
        );
        one(
            "updates_coalesced_total",
            "counter",
            "Coalesced deltas queued to connections that had been skipped.",
            self.updates_coalesced,
        );
        one(
            "full_snapshots_total",
            "counter",
            "Full snapshots queued.",
            self.updates_full,
        );
        one(
            "updates_skipped_total",
            "counter",
            "Updates not queued because the connection was above its high-water mark.",
            self.updates_skipped,
        );
        one(
            "updates_deferred_total",
            "counter",
            "Updates skipped because the bytes queued across all connections were over --queued-bytes-max.",
            self.updates_deferred,
        );
        one(
            "memory_trims_total",
            "counter",
            "Times freed memory was given back to the operating system after a burst.",
            self.memory_trims,
        );
        one(
            "resumes_total",
            "counter",
            "Players taken back on a new connection with their resume token.",
            self.resumes,
        );
        one(
            "resumes_refused_total",
            "counter",
            "Resume tokens that named no live player (the client joined anew).",
            self.resumes_refused,
        );
        one(
            "sessions_expired_total",
            "counter",
            "Detached players removed after --resume-grace-ms (or beyond --detached-max).",
            self.sessions_expired,
        );
        one(
            "rooms_open",
            "gauge",
            "Rooms open (the default room included), at most --max-rooms.",
            g.rooms_open as u64,
        );
        one(
            "rooms_created_total",
            "counter",
            "Rooms created (the default room included).",
            self.rooms_created,
        );
        one(
            "rooms_refused_total",
            "counter",
            "Upgrades refused for their room: no such room, unknown or conflicting type, options refused, --max-rooms.",
            self.closed_count(CloseReason::RoomRefused),
        );
        one(
            "room_limit_refusals_total",
            "counter",
            "Room creates refused because --max-rooms rooms were open (also in rooms_refused_total).",
            self.rooms_refused_limit,
        );
        one(
            "matchmake_placed_total",
            "counter",
            "POST /matchmake answered with where to connect.",
            self.matchmake_placed,
        );
        one(
            "matchmake_refused_total",
            "counter",
            "POST /matchmake answered with an error status (bad request, redis unreachable, no capacity, ...).",
            self.matchmake_refused,
        );
        one(
            "game_messages_total",
            "counter",
            "Game Messages (chat lines, notices) queued to clients.",
            self.game_messages,
        );
        one(
            "game_messages_dropped_total",
            "counter",
            "Game Messages dropped: the client was past --send-hwm-bytes, or the game passed its outbox bounds.",
            self.game_messages_dropped,
        );
        one(
            "peer_addresses",
            "gauge",
            "Client addresses tracked for the per-address limits (bounded by --peer-table-max).",
            g.peer_addresses as u64,
        );
        one(
            "accept_errors_total",
            "counter",
            "accept() failures, such as running out of file descriptors (EMFILE, ENFILE).",
            self.accept_errors,
        );
        one(
            "address_limit_refusals_total",
            "counter",
            "Connections answered 429 for a per-address limit (--max-connections-per-ip, --accepts-per-ip-per-s).",
            self.closed_count(CloseReason::AddressConnections)
                + self.closed_count(CloseReason::AddressRate),
        );
        one(
            "slow_consumer_closes_total",
            "counter",
            "Connections closed for lagging or passing the send limit.",
            self.slow_consumer_closes(),
        );
        let _ = writeln!(
            out,
            "# HELP tickcast_rooms_disposed_total Rooms gone, by why: idle (--room-idle-ms) or ended (by the game).\n\
             # TYPE tickcast_rooms_disposed_total counter\n\
             tickcast_rooms_disposed_total{{reason=\"idle\"}} {}\n\
             tickcast_rooms_disposed_total{{reason=\"ended\"}} {}",
            self.rooms_disposed_idle, self.rooms_ended
        );
        if let Some(c) = g.cluster {
            let _ = writeln!(
                out,
                "# HELP tickcast_cluster_redis_up 1 while the cluster's Redis answers.\n\
                 # TYPE tickcast_cluster_redis_up gauge\ntickcast_cluster_redis_up {}\n\
                 # HELP tickcast_cluster_dropped_total Messages to the Redis helper dropped because it was behind.\n\
                 # TYPE tickcast_cluster_dropped_total counter\ntickcast_cluster_dropped_total {}\n\
                 # HELP tickcast_cluster_claims_lost_total Rooms closed because another process holds them.\n\
                 # TYPE tickcast_cluster_claims_lost_total counter\ntickcast_cluster_claims_lost_total {}",
                u8::from(c.redis_up),
                c.dropped,
                c.claims_lost
            );
            let b = c.backplane;
            let _ = writeln!(
                out,
                "# HELP tickcast_backplane_published_total Backplane messages handed to Redis.
                 # TYPE tickcast_backplane_published_total counter
tickcast_backplane_published_total {}
                 # HELP tickcast_backplane_received_total Backplane messages from other processes handed to the loop.
                 # TYPE tickcast_backplane_received_total counter
tickcast_backplane_received_total {}
                 # HELP tickcast_backplane_dropped_total Backplane messages dropped, by why: queue (the publisher was behind), rate (--backplane-messages-per-s), down (Redis unreachable), incoming (the loop was behind), refused (too large), malformed (received, unreadable).
                 # TYPE tickcast_backplane_dropped_total counter
                 tickcast_backplane_dropped_total{{reason=\"queue\"}} {}
                 tickcast_backplane_dropped_total{{reason=\"rate\"}} {}
                 tickcast_backplane_dropped_total{{reason=\"down\"}} {}
                 tickcast_backplane_dropped_total{{reason=\"incoming\"}} {}
                 tickcast_backplane_dropped_total{{reason=\"refused\"}} {}
                 tickcast_backplane_dropped_total{{reason=\"malformed\"}} {}",
                b.published,
                b.received,
                b.dropped_queue,
                b.dropped_rate,
                b.dropped_down,
                b.dropped_incoming,
                b.refused,
                b.malformed
            );
        }
        if g.tls {
            let _ = writeln!(
                out,
                "# HELP tickcast_tls_handshakes_total TLS handshakes completed.\n\
                 # TYPE tickcast_tls_handshakes_total counter\ntickcast_tls_handshakes_total {}\n\
                 # HELP tickcast_tls_handshake_failures_total TLS handshakes that failed, by why: not_tls (a plain request), eof, alert, protocol, timeout (--tls-handshake-timeout-ms).\n\
                 # TYPE tickcast_tls_handshake_failures_total counter",
                self.tls_handshakes
            );
            for why in crate::net::tls::TlsFailure::ALL {
                let _ = writeln!(
                    out,
                    "tickcast_tls_handshake_failures_total{{reason=\"{}\"}} {}",
                    why.label(),
                    self.tls_failures[why as usize]
                );
            }
            let _ = writeln!(
                out,
                "# HELP tickcast_tls_reloads_total Certificate reloads (SIGHUP), by result.\n\
                 # TYPE tickcast_tls_reloads_total counter\n\
                 tickcast_tls_reloads_total{{result=\"ok\"}} {}\n\
                 tickcast_tls_reloads_total{{result=\"failed\"}} {}",
                self.tls_reloads_ok, self.tls_reloads_failed
            );
        }
        if let Some(a) = g.agones {
            let name = "tickcast_agones_requests_total";
            let _ = writeln!(
                out,
                "# HELP {name} Requests to the Agones SDK sidecar, by request and result (ok: a 2xx answer).\n# TYPE {name} counter"
            );
            for request in crate::agones::Request::ALL {
                for (result, counts) in [("ok", &a.ok), ("failed", &a.failed)] {
                    let _ = writeln!(
                        out,
                        "{name}{{request=\"{}\",result=\"{result}\"}} {}",
                        request.label(),
                        counts[request as usize]
                    );
                }
            }
            let _ = writeln!(
                out,
                "# HELP tickcast_agones_health_skipped_total Health periods with no Health sent: the loop had not run its timers since the last (a stall).\n\
                 # TYPE tickcast_agones_health_skipped_total counter\ntickcast_agones_health_skipped_total {}",
                a.health_skipped
            );
        }
        let _ = writeln!(
            out,
            "# HELP tickcast_connections_closed_total Connections closed, by reason."
        );
        let _ = writeln!(out, "# TYPE tickcast_connections_closed_total counter");
        for reason in CloseReason::ALL {
            let _ = writeln!(
                out,
                "tickcast_connections_closed_total{{reason=\"{}\"}} {}",
                reason.label(),
                self.closed[reason as usize]
            );
        }
        self.tick_duration.render(
            &mut out,
            "tickcast_tick_duration_seconds",
            "Time to run one room's tick and queue its updates (every room's ticks together).",
        );
        self.tick_lateness.render(
            &mut out,
            "tickcast_tick_lateness_seconds",
            "How late a room's tick started against its schedule (every room's ticks together).",
        );
        let name = "tickcast_tick_phase_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Where tick time goes: a room's game steps (step), encoding its shared update once (encode), queueing and sending it to each member (fanout), the process's timers once per --tick-hz period (timers).\n# TYPE {name} histogram"
        );
        for phase in TickPhase::ALL {
            let label = format!("phase=\"{}\",", phase.label());
            self.tick_phases[phase as usize].render_samples(&mut out, name, &label);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn recent_ticks_cover_one_to_two_windows_and_name_the_bucket_of_a_quantile() {
        let ms = Duration::from_millis;
        let (t0, mut recent) = (Instant::now(), RecentTicks::default());
        assert_eq!(recent.quantile_le_us(0.99), None);
        for _ in 0..99 {
            recent.record(Duration::from_micros(40), t0);
        }
        recent.record(ms(2), t0);
        assert_eq!(recent.quantile_le_us(0.99), Some(Some(50)));
        assert_eq!(recent.quantile_le_us(1.0), Some(Some(2_000)));
        // A window later the first half is kept beside the new one...
        let t1 = t0 + RecentTicks::WINDOW;
        recent.record(ms(300), t1);
        assert_eq!(
            recent.quantile_le_us(1.0),
            Some(None),
            "past the last bound"
        );
        assert_eq!(recent.quantile_le_us(0.5), Some(Some(50)));
        // ... and dropped the window after; a gap of two windows drops both.
        recent.record(ms(1), t1 + RecentTicks::WINDOW);
        assert_eq!(recent.quantile_le_us(0.01), Some(Some(1_000)));
        recent.record(Duration::from_micros(10), t1 + 4 * RecentTicks::WINDOW);
        assert_eq!(recent.quantile_le_us(1.0), Some(Some(25)));
    }

    #[test]
    fn a_histogram_snapshot_counts_past_the_last_bound() {
        let mut h = Histogram::new(TICK_BUCKETS_US);
        h.record(Duration::from_micros(30));
        h.record(Duration::from_secs(1));
        let s = h.snapshot();
        assert_eq!(s.counts.len(), TICK_BUCKETS_US.len() + 1);
        assert_eq!((s.counts[1], s.counts[TICK_BUCKETS_US.len()]), (1, 1));
        assert_eq!((s.count, s.sum_us), (2, 1_000_030));
    }
}
