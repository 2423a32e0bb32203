//! What the bots count and time. A worker accumulates a [`Stats`] and hands it to the main thread every
//! report interval (then starts a fresh one); the main thread adds them up. Nothing here reads a clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::mix::Behaviour;

/// Longest duration a histogram tells apart; longer samples are recorded as this.
const LATENCY_MAX: Duration = Duration::from_secs(100);
/// Significant decimal digits the histograms keep: 2 is 1 % resolution, at about 20 KiB a histogram.
const LATENCY_DIGITS: u8 = 2;

/// A latency histogram, in microseconds.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        let max_us = LATENCY_MAX.as_micros() as u64;
        Latency(Histogram::new_with_bounds(1, max_us, LATENCY_DIGITS).expect("valid bounds"))
    }
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        self.0.saturating_record(us);
    }

    pub fn add(&mut self, other: &Latency) {
        self.0.add(&other.0).expect("same bounds");
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The quantile `q` (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn summary(&self) -> Quantiles {
        let max = if self.0.is_empty() {
            0.0
        } else {
            self.0.max() as f64 / 1000.0
        };
        Quantiles {
            p50: round3(self.quantile_ms(0.50)),
            p90: round3(self.quantile_ms(0.90)),
            p99: round3(self.quantile_ms(0.99)),
            max: round3(max),
            samples: self.0.len(),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Quantiles of a latency, in milliseconds, and how many samples they come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

/// Why a connection ended, from the bot's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// The server sent a close frame with this code (1005 when the frame carried none).
    Code(u16),
    /// The server closed the TCP connection without a close frame.
    Eof,
    /// The connection failed: reset, broken pipe, or a WebSocket error.
    Io,
    /// A flapper dropped its connection on purpose.
    Flap,
    /// The bot hung up after a correctness error, to start again from a `Full`; the error itself is
    /// counted where it belongs.
    AfterError,
}

impl Cause {
    /// Expected disconnects are the ones the run asked for: flappers, the bot's own hang-up after an
    /// error, and the server going away (1001, its drain). Every other one is a finding.
    pub fn expected(self) -> bool {
        matches!(
            self,
            Cause::Flap | Cause::AfterError | Cause::Code(tickcast::proto::close::GOING_AWAY)
        )
    }

    pub fn label(self) -> String {
        match self {
            Cause::Code(code) => format!("close {code}"),
            Cause::Eof => "eof without close".to_string(),
            Cause::Io => "connection error".to_string(),
            Cause::Flap => "flapper drop".to_string(),
            Cause::AfterError => "hang-up after error".to_string(),
        }
    }
}

/// Why a connect attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnectFailure {
    /// The TCP connect was refused or failed.
    Tcp,
    /// The server answered the upgrade with this HTTP status (503: at connection capacity).
    Http(u16),
    /// The TLS handshake failed (`wss://`): the certificate was not trusted or not for the host, no
    /// protocol version or cipher in common, or the server broke TLS.
    Tls,
    /// The upgrade failed otherwise (bad answer, connection closed).
    Handshake,
    /// `--matchmake`: the request before the connect placed the bot nowhere (see the matchmaking
    /// failures for why).
    Matchmake,
    /// No `Welcome` within `--connect-timeout-ms`.
    Timeout,
}

impl ConnectFailure {
    pub fn label(self) -> String {
        match self {
            ConnectFailure::Tcp => "tcp connect".to_string(),
            ConnectFailure::Http(status) => format!("http {status}"),
            ConnectFailure::Tls => "tls".to_string(),
            ConnectFailure::Handshake => "upgrade".to_string(),
            ConnectFailure::Matchmake => "matchmake".to_string(),
            ConnectFailure::Timeout => "timeout".to_string(),
        }
    }
}

/// Why a matchmaking request placed no bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchmakeFailure {
    /// The TCP connect to the matchmaker was refused or failed, or the connection broke.
    Tcp,
    /// The TLS handshake with an `https://` matchmaker failed (its certificate was not trusted, say).
    Tls,
    /// No whole answer within `--matchmake-timeout-ms`.
    Timeout,
    /// The matchmaker answered this status (400, 404, 409, 503, ...).
    Http(u16),
    /// The answer was not HTTP, or a `200` whose body is not an answer (or names another room than the
    /// one asked for, or a `connect` the bots cannot open): a protocol error too.
    BadAnswer,
}

impl MatchmakeFailure {
    pub fn label(self) -> String {
        match self {
            MatchmakeFailure::Tcp => "tcp connect".to_string(),
            MatchmakeFailure::Tls => "tls".to_string(),
            MatchmakeFailure::Timeout => "timeout".to_string(),
            MatchmakeFailure::Http(status) => format!("http {status}"),
            MatchmakeFailure::BadAnswer => "bad answer".to_string(),
        }
    }
}

/// The matchmaking requests (`--matchmake`) of a report interval, or summed, of the run.
#[derive(Debug, Clone, Default)]
pub struct MatchmakeStats {
    /// `POST /matchmake` requests started.
    pub requests: u64,
    /// Of those, answered with a whole HTTP answer (any status).
    pub answered: u64,
    /// Answered `200` with an answer the bot used: a placement.
    pub placed: u64,
    /// From the start of the TCP connect to the whole answer, every answered request.
    pub latency: Latency,
    pub failures: BTreeMap<MatchmakeFailure, u64>,
    /// The first error text seen per failure (the answer's `{"error": ...}`, or what was wrong).
    pub examples: BTreeMap<MatchmakeFailure, String>,
    /// When the first request started and the last one ended, for the request rate.
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
}

impl MatchmakeStats {
    pub fn started(&mut self, now: Instant) {
        self.requests += 1;
        self.first_at = Some(self.first_at.map_or(now, |t| t.min(now)));
    }

    pub fn answered(&mut self, latency: Duration, now: Instant) {
        self.answered += 1;
        self.latency.record(latency);
        self.ended(now);
    }

    pub fn failed(&mut self, why: MatchmakeFailure, what: impl FnOnce() -> String, now: Instant) {
        *self.failures.entry(why).or_default() += 1;
        self.examples.entry(why).or_insert_with(what);
        self.ended(now);
    }

    fn ended(&mut self, now: Instant) {
        self.last_at = Some(self.last_at.map_or(now, |t| t.max(now)));
    }

    pub fn add(&mut self, o: &MatchmakeStats) {
        self.requests += o.requests;
        self.answered += o.answered;
        self.placed += o.placed;
        self.latency.add(&o.latency);
        for (k, v) in &o.failures {
            *self.failures.entry(*k).or_default() += v;
        }
        for (k, v) in &o.examples {
            self.examples.entry(*k).or_insert_with(|| v.clone());
        }
        self.first_at = match (self.first_at, o.first_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_at = match (self.last_at, o.last_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What the bots placed on one process (by the matchmaker's `process`, or the `host:port` of its
/// `connect`) saw there. A worker keeps one per process for the whole run and hands them over in its
/// last report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// Matchmaking answers that sent a bot here.
    pub placements: u64,
    /// Bots welcomed here at least once (a bot belongs to one worker, so the workers' sums are exact).
    pub bots: u64,
    /// Connections welcomed here.
    pub connections: u64,
    /// The rooms those connections were welcomed into.
    pub rooms: BTreeSet<String>,
    pub updates: u64,
    pub checksums_verified: u64,
    pub checksum_mismatches: u64,
    pub protocol_errors: u64,
    pub unexpected_disconnects: u64,
    /// Connect attempts that failed after the matchmaker sent the bot here (refused, an HTTP error at
    /// the upgrade such as a refused ticket, no `Welcome` in time).
    pub connect_failures: u64,
}

impl ProcessStats {
    pub fn add(&mut self, o: &ProcessStats) {
        self.placements += o.placements;
        self.bots += o.bots;
        self.connections += o.connections;
        self.rooms.extend(o.rooms.iter().cloned());
        self.updates += o.updates;
        self.checksums_verified += o.checksums_verified;
        self.checksum_mismatches += o.checksum_mismatches;
        self.protocol_errors += o.protocol_errors;
        self.unexpected_disconnects += o.unexpected_disconnects;
        self.connect_failures += o.connect_failures;
    }

    /// Checksum mismatches, protocol errors, unexpected disconnects and failed connects.
    pub fn errors(&self) -> u64 {
        self.checksum_mismatches
            + self.protocol_errors
            + self.unexpected_disconnects
            + self.connect_failures
    }
}

/// A worker's table of the processes its bots were placed on: a small index per process (what a bot
/// holds), the figures of each, and the addresses their hosts resolved to (resolved once per worker).
#[derive(Debug, Default)]
pub struct Processes {
    keys: Vec<String>,
    index: HashMap<String, usize>,
    stats: Vec<ProcessStats>,
    addrs: HashMap<String, SocketAddr>,
}

impl Processes {
    /// The index of process `key`, added if new.
    pub fn intern(&mut self, key: &str) -> usize {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let i = self.keys.len();
        self.keys.push(key.to_string());
        self.index.insert(key.to_string(), i);
        self.stats.push(ProcessStats::default());
        i
    }

    pub fn key(&self, i: usize) -> &str {
        &self.keys[i]
    }

    pub fn of(&mut self, i: usize) -> &mut ProcessStats {
        &mut self.stats[i]
    }

    /// The address of `authority` (`host:port`), resolved the first time it is asked for.
    pub fn addr(
        &mut self,
        authority: &str,
        resolve: impl FnOnce(&str) -> Result<SocketAddr, String>,
    ) -> Result<SocketAddr, String> {
        if let Some(addr) = self.addrs.get(authority) {
            return Ok(*addr);
        }
        let addr = resolve(authority)?;
        self.addrs.insert(authority.to_string(), addr);
        Ok(addr)
    }

    /// The figures by process key.
    pub fn into_map(self) -> BTreeMap<String, ProcessStats> {
        self.keys.into_iter().zip(self.stats).collect()
    }
}

/// What bots of one behaviour saw.
#[derive(Debug, Clone, Default)]
pub struct BehaviourStats {
    /// Bot-microseconds with a welcomed connection open: the denominator of the per-bot rates.
    pub connected_us: u64,
    /// `Full` and `Delta` messages applied.
    pub updates: u64,
    /// Bytes read from sockets, WebSocket framing and HTTP upgrade included.
    pub bytes_in: u64,
    /// Updates that skipped ticks: coalesced deltas plus resync `Full`s.
    pub coalesced: u64,
    /// Of those, `Full`s replacing a mirror (the bot was behind by more than the server's history).
    pub resyncs: u64,
    /// Ticks never seen on their own because of those gaps.
    pub ticks_skipped: u64,
    pub checksums_verified: u64,
    /// `Checksum`s a skimming bot (`--verify-fraction`) received and did not check.
    pub checksums_unchecked: u64,
    pub checksum_mismatches: u64,
    /// Messages the mirror could not follow or decode, or that broke the protocol's order.
    pub protocol_errors: u64,
    pub inputs_sent: u64,
    pub inputs_acked: u64,
    /// Inputs still unacknowledged when the run ended, or given up on when too many were waiting; each is
    /// also sampled into `rtt` with its age then, a lower bound of its latency.
    pub inputs_unacked: u64,
    /// Inputs whose connection ended before they were acknowledged (flappers, disconnects).
    pub inputs_lost: u64,
    /// Inputs never sent because the bot's write buffer was full (the server stopped reading).
    pub inputs_dropped: u64,
    /// Input slots skipped because the bot's thread fell further behind its schedule than it catches up:
    /// the bots machine is overloaded.
    pub input_slots_skipped: u64,
    /// Input -> acknowledgement latency, each input timed from when it was due.
    pub rtt: Latency,
    /// How late each update arrived against the server's tick schedule.
    pub lateness: Latency,
    pub disconnects_expected: u64,
    pub disconnects_unexpected: u64,
    /// `Hello`s that presented a resume token (resuming bots, after a lost connection).
    pub resumes_asked: u64,
    /// Of those, answered `Joined { resumed: true }`: same player, mirror kept.
    pub resumes_honoured: u64,
    /// Answered `Joined { resumed: false }`: a new player (the grace period passed, say).
    pub resumes_refused: u64,
    /// First updates after an honoured resume that were a `Delta` from the tick presented.
    pub resume_deltas: u64,
    /// First updates after an honoured resume that were a `Full` (the tick had left the history).
    pub resume_fulls: u64,
    /// Game `Message`s received (chat lines, say): counted, their size checked, nothing else.
    pub messages: u64,
    pub message_bytes: u64,
}

impl BehaviourStats {
    pub fn add(&mut self, o: &BehaviourStats) {
        self.connected_us += o.connected_us;
        self.updates += o.updates;
        self.bytes_in += o.bytes_in;
        self.coalesced += o.coalesced;
        self.resyncs += o.resyncs;
        self.ticks_skipped += o.ticks_skipped;
        self.checksums_verified += o.checksums_verified;
        self.checksums_unchecked += o.checksums_unchecked;
        self.checksum_mismatches += o.checksum_mismatches;
        self.protocol_errors += o.protocol_errors;
        self.inputs_sent += o.inputs_sent;
        self.inputs_acked += o.inputs_acked;
        self.inputs_unacked += o.inputs_unacked;
        self.inputs_lost += o.inputs_lost;
        self.inputs_dropped += o.inputs_dropped;
        self.input_slots_skipped += o.input_slots_skipped;
        self.rtt.add(&o.rtt);
        self.lateness.add(&o.lateness);
        self.disconnects_expected += o.disconnects_expected;
        self.disconnects_unexpected += o.disconnects_unexpected;
        self.resumes_asked += o.resumes_asked;
        self.resumes_honoured += o.resumes_honoured;
        self.resumes_refused += o.resumes_refused;
        self.resume_deltas += o.resume_deltas;
        self.resume_fulls += o.resume_fulls;
        self.messages += o.messages;
        self.message_bytes += o.message_bytes;
    }

    /// Connected bot-seconds.
    pub fn connected_s(&self) -> f64 {
        self.connected_us as f64 / 1e6
    }
}

/// Everything a worker counted over one report interval (or, summed, over the run).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub behaviours: [BehaviourStats; Behaviour::ALL.len()],
    /// From the start of a connect attempt to its `Welcome`.
    pub connect_time: Latency,
    /// Bots whose first connection opened.
    pub first_connects: u64,
    /// Connections opened again after a disconnect.
    pub reconnects: u64,
    pub connect_failures: BTreeMap<ConnectFailure, u64>,
    /// Bots that failed `--connect-attempts` times in a row and stopped trying.
    pub bots_gave_up: u64,
    pub disconnects: BTreeMap<Cause, u64>,
    /// Tick rate the server announced in `Welcome` (the last one seen; 0 before any).
    pub tick_hz: u16,
    /// Matchmaking requests (`--matchmake`).
    pub matchmake: MatchmakeStats,
}

impl Stats {
    pub fn of(&mut self, behaviour: Behaviour) -> &mut BehaviourStats {
        &mut self.behaviours[behaviour.index()]
    }

    pub fn disconnected(&mut self, behaviour: Behaviour, cause: Cause) {
        *self.disconnects.entry(cause).or_default() += 1;
        let b = self.of(behaviour);
        if cause.expected() {
            b.disconnects_expected += 1;
        } else {
            b.disconnects_unexpected += 1;
        }
    }

    pub fn connect_failed(&mut self, why: ConnectFailure) {
        *self.connect_failures.entry(why).or_default() += 1;
    }

    pub fn add(&mut self, o: &Stats) {
        for (mine, theirs) in self.behaviours.iter_mut().zip(&o.behaviours) {
            mine.add(theirs);
        }
        self.connect_time.add(&o.connect_time);
        self.first_connects += o.first_connects;
        self.reconnects += o.reconnects;
        for (k, v) in &o.connect_failures {
            *self.connect_failures.entry(*k).or_default() += v;
        }
        self.bots_gave_up += o.bots_gave_up;
        for (k, v) in &o.disconnects {
            *self.disconnects.entry(*k).or_default() += v;
        }
        if o.tick_hz != 0 {
            self.tick_hz = o.tick_hz;
        }
        self.matchmake.add(&o.matchmake);
    }

    /// The sum over every behaviour that passes `keep`.
    pub fn sum(&self, keep: impl Fn(Behaviour) -> bool) -> BehaviourStats {
        let mut total = BehaviourStats::default();
        for b in Behaviour::ALL.into_iter().filter(|b| keep(*b)) {
            total.add(&self.behaviours[b.index()]);
        }
        total
    }
}

/// Widths of the buckets of an [`Intervals`] histogram: 0.5 ms up to [`INTERVAL_FINE_MAX`], then each
/// bucket 2^(1/8) (9 %) wider than the one before, up to [`INTERVAL_MAX`]; longer samples land in the last.
const INTERVAL_FINE_US: u64 = 500;
/// End of the fine (0.5 ms) buckets: five tick periods at 20 Hz.
const INTERVAL_FINE_MAX: Duration = Duration::from_millis(256);
/// Fine buckets, then coarse ones: 2^(1/8) steps from 256 ms to 256 ms x 2^8 (65.5 s).
const INTERVAL_FINE_BUCKETS: usize = 512;
const INTERVAL_COARSE_BUCKETS: usize = 64;
/// Longest interval told apart.
pub const INTERVAL_MAX: Duration = Duration::from_millis(256 * 256);

/// A compact histogram of update intervals (the gap between two consecutive updates one bot received),
/// one per room: 576 counters (2.3 KiB), 0.5 ms resolution up to 256 ms and 9 % beyond, so a run of
/// thousands of rooms stays small. [`Latency`] is the precise one, for run-wide figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intervals {
    counts: Box<[u32]>,
    samples: u64,
    max_us: u64,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            counts: vec![0; INTERVAL_FINE_BUCKETS + INTERVAL_COARSE_BUCKETS].into_boxed_slice(),
            samples: 0,
            max_us: 0,
        }
    }
}

impl Intervals {
    fn bucket(us: u64) -> usize {
        let fine_max = INTERVAL_FINE_MAX.as_micros() as u64;
        if us < fine_max {
            return (us / INTERVAL_FINE_US) as usize;
        }
        let steps = ((us as f64 / fine_max as f64).log2() * 8.0) as usize;
        INTERVAL_FINE_BUCKETS + steps.min(INTERVAL_COARSE_BUCKETS - 1)
    }

    /// The upper bound of bucket `i`, in microseconds.
    fn upper_us(i: usize) -> u64 {
        if i < INTERVAL_FINE_BUCKETS {
            return (i as u64 + 1) * INTERVAL_FINE_US;
        }
        let fine_max = INTERVAL_FINE_MAX.as_micros() as f64;
        (fine_max * 2f64.powf((i - INTERVAL_FINE_BUCKETS + 1) as f64 / 8.0)) as u64
    }

    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let slot = &mut self.counts[Self::bucket(us)];
        *slot = slot.saturating_add(1);
        self.samples += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn add(&mut self, other: &Intervals) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
        self.samples += other.samples;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The quantile `q` (0..=1) in milliseconds, as the upper bound of its bucket (never above the
    /// max); 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.samples == 0 {
            return 0.0;
        }
        let rank = ((q * self.samples as f64).ceil() as u64).clamp(1, self.samples);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Self::upper_us(i).min(self.max_us) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    pub fn summary(&self) -> IntervalQuantiles {
        IntervalQuantiles {
            p50: round3(self.quantile_ms(0.50)),
            p99: round3(self.quantile_ms(0.99)),
            max: round3(self.max_us as f64 / 1000.0),
            samples: self.samples,
        }
    }
}

/// Quantiles of an [`Intervals`] histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct IntervalQuantiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

/// What the bots of one room saw. A worker keeps one per room its bots are in for the whole run and
/// hands them over in its last report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// The room `Welcome` named (the first one seen), for a run whose --url names no room.
    pub welcomed_as: Option<String>,
    /// Bots of the room whose first connection opened.
    pub first_connects: u64,
    pub updates: u64,
    pub checksums_verified: u64,
    pub checksum_mismatches: u64,
    /// Protocol errors, a `Welcome` naming another room among them.
    pub protocol_errors: u64,
    pub unexpected_disconnects: u64,
    /// Gaps between consecutive updates of one connection, slow bots left out.
    pub intervals: Intervals,
    /// The processes its bots were welcomed on (`--matchmake`): one, unless the room moved.
    pub processes: BTreeSet<String>,
    /// `--matchmake-type` without planned rooms: bots the matchmaker placed here that played (or
    /// watched) here, and so stay.
    pub bots_placed: u64,
}

impl RoomStats {
    pub fn add(&mut self, o: &RoomStats) {
        if self.welcomed_as.is_none() {
            self.welcomed_as.clone_from(&o.welcomed_as);
        }
        self.first_connects += o.first_connects;
        self.updates += o.updates;
        self.checksums_verified += o.checksums_verified;
        self.checksum_mismatches += o.checksum_mismatches;
        self.protocol_errors += o.protocol_errors;
        self.unexpected_disconnects += o.unexpected_disconnects;
        self.intervals.add(&o.intervals);
        self.processes.extend(o.processes.iter().cloned());
        self.bots_placed += o.bots_placed;
    }
}

/// Bots with a welcomed connection open now, per behaviour, integrated over time into each
/// behaviour's `connected_us`. Owned by a worker; the bots tell it when they open and close.
#[derive(Debug, Clone)]
pub struct OpenGauge {
    open: [u64; Behaviour::ALL.len()],
    since: Instant,
}

impl OpenGauge {
    pub fn new(now: Instant) -> Self {
        OpenGauge {
            open: [0; Behaviour::ALL.len()],
            since: now,
        }
    }

    /// Adds the connected time up to `now` into `stats`.
    pub fn settle(&mut self, now: Instant, stats: &mut Stats) {
        let us = now.saturating_duration_since(self.since).as_micros() as u64;
        for (open, b) in self.open.iter().zip(stats.behaviours.iter_mut()) {
            b.connected_us += open * us;
        }
        self.since = self.since.max(now);
    }

    pub fn opened(&mut self, behaviour: Behaviour, now: Instant, stats: &mut Stats) {
        self.settle(now, stats);
        self.open[behaviour.index()] += 1;
    }

    pub fn closed(&mut self, behaviour: Behaviour, now: Instant, stats: &mut Stats) {
        self.settle(now, stats);
        let open = &mut self.open[behaviour.index()];
        debug_assert!(*open > 0, "closed more than opened");
        *open = open.saturating_sub(1);
    }

    /// Bots connected now.
    pub fn total(&self) -> u64 {
        self.open.iter().sum()
    }
}

/// A correctness error one bot saw, for the log: which bot, on which connection, at which tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotError {
    pub bot: usize,
    pub behaviour: Behaviour,
    /// The server's id of the connection (from `Welcome`; 0 before it).
    pub connection: u64,
    pub tick: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for BotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bot {} ({}, connection {})",
            self.bot, self.behaviour, self.connection
        )?;
        if let Some(tick) = self.tick {
            write!(f, " tick {tick}")?;
        }
        write!(f, ": {}", self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_are_in_milliseconds_and_merge() {
        let mut a = Latency::default();
        for ms in 1..=100 {
            a.record(Duration::from_millis(ms));
        }
        let mut b = Latency::default();
        b.record(Duration::from_secs(1000));
        a.add(&b);
        let q = a.summary();
        assert_eq!(q.samples, 101);
        // 101 samples: the median is the 51st, p99 the 100th; 2 significant digits is within 1 %.
        assert!((q.p50 - 51.0).abs() <= 0.51, "{q:?}");
        assert!((q.p99 - 100.0).abs() <= 1.0, "{q:?}");
        assert!(q.max >= 99_000.0, "saturated at the bound: {q:?}");
        assert_eq!(Latency::default().summary(), Quantiles::default());
    }

    #[test]
    fn the_open_gauge_integrates_connected_time_per_behaviour() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut stats = Stats::default();
        let mut gauge = OpenGauge::new(t0);
        gauge.opened(Behaviour::Wander, t0, &mut stats);
        gauge.opened(Behaviour::Wander, t0 + s(1), &mut stats);
        gauge.opened(Behaviour::Idle, t0 + s(1), &mut stats);
        gauge.closed(Behaviour::Wander, t0 + s(2), &mut stats);
        gauge.settle(t0 + s(3), &mut stats);
        assert_eq!(gauge.total(), 2);
        // Wander: 1 s alone, 1 s two of them, 1 s one of them.
        assert_eq!(stats.of(Behaviour::Wander).connected_s(), 4.0);
        assert_eq!(stats.of(Behaviour::Idle).connected_s(), 2.0);
    }

    #[test]
    fn disconnects_split_into_expected_and_unexpected() {
        let mut s = Stats::default();
        s.disconnected(Behaviour::Flapper, Cause::Flap);
        s.disconnected(Behaviour::Wander, Cause::Code(1001));
        s.disconnected(Behaviour::Slow, Cause::Code(4001));
        s.disconnected(Behaviour::Wander, Cause::Eof);
        let all = s.sum(|_| true);
        assert_eq!(
            (all.disconnects_expected, all.disconnects_unexpected),
            (2, 2)
        );
        assert_eq!(s.disconnects[&Cause::Code(4001)], 1);
        let mut total = Stats::default();
        total.add(&s);
        total.add(&s);
        assert_eq!(total.sum(|_| true).disconnects_unexpected, 4);
        assert_eq!(total.disconnects[&Cause::Flap], 2);
    }

    #[test]
    fn intervals_have_half_millisecond_buckets_up_to_256_ms_and_merge() {
        let mut a = Intervals::default();
        for _ in 0..99 {
            a.record(Duration::from_micros(50_200));
        }
        a.record(Duration::from_millis(130));
        let q = a.summary();
        assert_eq!(q.samples, 100);
        // 50.2 ms is in the bucket 50.0..50.5 ms; the 100th sample is the max.
        assert_eq!(q.p50, 50.5, "{q:?}");
        assert_eq!(q.p99, 50.5, "{q:?}");
        assert_eq!(q.max, 130.0, "{q:?}");
        let mut b = Intervals::default();
        b.record(Duration::from_secs(3));
        b.record(Duration::from_secs(1000));
        a.add(&b);
        let q = a.summary();
        assert_eq!(q.samples, 102);
        assert_eq!(
            q.max, 1_000_000.0,
            "the max is exact, beyond the last bucket too"
        );
        // Past 256 ms a bucket is at most 9 % wide.
        let mut c = Intervals::default();
        c.record(Duration::from_millis(3000));
        let p = c.quantile_ms(0.5);
        assert!((3000.0..=3000.0 * 1.1).contains(&p), "{p}");
        assert_eq!(Intervals::default().summary(), IntervalQuantiles::default());
        // The quantile never reads above the max, even inside a wide bucket.
        let mut d = Intervals::default();
        d.record(Duration::from_millis(300));
        assert_eq!(d.quantile_ms(0.99), 300.0);
    }

    #[test]
    fn room_stats_add_up_and_keep_the_first_name() {
        let mut a = RoomStats {
            first_connects: 2,
            checksum_mismatches: 1,
            ..RoomStats::default()
        };
        a.intervals.record(Duration::from_millis(50));
        let b = RoomStats {
            welcomed_as: Some("default".into()),
            first_connects: 1,
            updates: 10,
            ..a.clone()
        };
        a.add(&b);
        assert_eq!(
            (a.first_connects, a.updates, a.checksum_mismatches),
            (3, 10, 2)
        );
        assert_eq!(a.welcomed_as.as_deref(), Some("default"));
        assert_eq!(a.intervals.samples(), 2);
    }
}
