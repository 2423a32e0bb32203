//! The end-of-run report: the figures (one struct, serialised as the `--json` file), the readable table
//! printed on stdout, and the verdict that sets the exit status.
//!
//! Headline latencies (`rtt_ms`, `lateness_ms`) leave slow bots out: their reads are capped on purpose, so
//! their latency measures the cap, not the server. Rates (`updates_per_sec`, `bytes_per_sec`) are means over
//! every bot. Each behaviour has its own row with everything.
//!
//! Rooms: the JSON holds a row for every room; the table a few summary lines and the worst
//! [`ROOMS_SHOWN_MAX`] rooms (problems first, then the longest update-interval p99), however many rooms
//! the run had.
//!
//! Matchmaking (`--matchmake`): the requests (count, rate, latency, failures by status) and a row per
//! process the bots were placed on (bots, rooms, updates, errors there).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::Plan;
use crate::mix::Behaviour;
use crate::stats::{
    BehaviourStats, IntervalQuantiles, Intervals, MatchmakeFailure, MatchmakeStats, ProcessStats,
    Quantiles, RoomStats, Stats,
};
use crate::swarm::Summary;

/// Rooms the table lists one by one (the worst); the JSON has them all.
pub const ROOMS_SHOWN_MAX: usize = 5;

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// `--duration` passed.
    Duration,
    /// Ctrl-C (or the caller's stop channel).
    Interrupted,
    /// Every bot gave up or retired (say, the server drained) before the duration.
    AllBotsDown,
}

/// Input counts of the headline bots (slow bots left out, like the latencies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Inputs {
    pub sent: u64,
    pub acked: u64,
    /// Still waiting at the end (sampled into `rtt_ms` with their age then, a lower bound).
    pub unacked_at_end: u64,
    /// Their connection ended first (flappers).
    pub lost_on_disconnect: u64,
    /// Never sent: the bot's write buffer was full.
    pub dropped: u64,
    /// Slots skipped because a bot thread fell behind: the bots machine was overloaded.
    pub slots_skipped: u64,
}

/// Resumes of players after lost connections (`flapper` bots), all bots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Resumes {
    /// `Hello`s that presented a resume token.
    pub asked: u64,
    /// Answered `Joined { resumed: true }`: same player and entity, mirror kept.
    pub honoured: u64,
    /// Answered `Joined { resumed: false }`: a new player, mirror dropped.
    pub refused: u64,
    /// First updates after an honoured resume that were a `Delta` from the tick the bot presented.
    pub first_update_delta: u64,
    /// First updates after an honoured resume that were a `Full` (that tick had left the history).
    pub first_update_full: u64,
}

impl Resumes {
    pub fn of(b: &BehaviourStats) -> Resumes {
        Resumes {
            asked: b.resumes_asked,
            honoured: b.resumes_honoured,
            refused: b.resumes_refused,
            first_update_delta: b.resume_deltas,
            first_update_full: b.resume_fulls,
        }
    }
}

/// The figures of one behaviour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BehaviourRow {
    pub behaviour: &'static str,
    pub bots: u64,
    pub updates_per_sec: f64,
    pub bytes_per_sec: f64,
    pub rtt_ms: Quantiles,
    pub lateness_ms: Quantiles,
    pub coalesced_updates: u64,
    pub checksums_verified: u64,
    pub checksum_mismatches: u64,
    pub protocol_errors: u64,
    pub expected_disconnects: u64,
    pub unexpected_disconnects: u64,
    pub resumes_honoured: u64,
    pub resumes_refused: u64,
}

/// The figures of one room.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomRow {
    /// The room's name: the one the bots asked for, or (for the default room) the one `Welcome` named.
    pub name: String,
    /// Bots the plan put in the room.
    pub bots: u32,
    /// Of those, the ones whose first connection opened.
    pub bots_ever_connected: u64,
    pub updates: u64,
    pub checksums_verified: u64,
    pub checksum_mismatches: u64,
    /// Protocol errors (a `Welcome` naming another room among them).
    pub protocol_errors: u64,
    pub unexpected_disconnects: u64,
    /// Gaps between consecutive updates one bot received, slow bots left out (0.5 ms buckets).
    pub update_interval_ms: IntervalQuantiles,
    /// `--matchmake`: the processes its bots were welcomed on (one, unless the room moved); empty
    /// without matchmaking.
    pub processes: Vec<String>,
}

impl RoomRow {
    /// Whether the room had a problem: a bot that never connected, a mismatch, an error.
    pub fn troubled(&self) -> bool {
        self.bots_ever_connected < u64::from(self.bots)
            || self.checksum_mismatches + self.protocol_errors + self.unexpected_disconnects > 0
    }
}

/// The rooms in a few numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomsSummary {
    pub count: u32,
    /// Bots per room, fewest and most.
    pub bots_min: u32,
    pub bots_max: u32,
    /// Rooms whose every bot connected.
    pub rooms_all_connected: u32,
    pub rooms_with_mismatches: u32,
    /// Rooms with protocol errors or unexpected disconnects.
    pub rooms_with_errors: u32,
    /// Update intervals of every room together.
    pub update_interval_ms: IntervalQuantiles,
    /// The middle room's update-interval p99 (rooms with samples), and the worst one's.
    pub update_interval_p99_median_room_ms: f64,
    pub worst_room: Option<String>,
    pub worst_room_update_interval_ms: IntervalQuantiles,
}

impl RoomsSummary {
    fn of(rows: &[RoomRow], all: &Intervals) -> RoomsSummary {
        let count = |f: &dyn Fn(&RoomRow) -> bool| rows.iter().filter(|r| f(r)).count() as u32;
        let mut p99s: Vec<&RoomRow> = rows
            .iter()
            .filter(|r| r.update_interval_ms.samples > 0)
            .collect();
        p99s.sort_by(|a, b| {
            a.update_interval_ms
                .p99
                .total_cmp(&b.update_interval_ms.p99)
        });
        let worst = p99s.last();
        RoomsSummary {
            count: rows.len() as u32,
            bots_min: rows.iter().map(|r| r.bots).min().unwrap_or(0),
            bots_max: rows.iter().map(|r| r.bots).max().unwrap_or(0),
            rooms_all_connected: count(&|r| r.bots_ever_connected >= u64::from(r.bots)),
            rooms_with_mismatches: count(&|r| r.checksum_mismatches > 0),
            rooms_with_errors: count(&|r| r.protocol_errors + r.unexpected_disconnects > 0),
            update_interval_ms: all.summary(),
            update_interval_p99_median_room_ms: p99s
                .get(p99s.len() / 2)
                .map_or(0.0, |r| r.update_interval_ms.p99),
            worst_room: worst.map(|r| r.name.clone()),
            worst_room_update_interval_ms: worst
                .map_or_else(IntervalQuantiles::default, |r| r.update_interval_ms),
        }
    }
}

/// A row for every room of the plan, in room order; when the matchmaker chose the rooms
/// (`placed_rooms`, by number), a row for each room it placed bots in, whose `bots` are those that
/// played (or watched) there.
fn room_rows(
    plan: &Plan,
    rooms: &BTreeMap<u32, RoomStats>,
    placed_rooms: &[String],
) -> (Vec<RoomRow>, Intervals) {
    let empty = RoomStats::default();
    let mut all = Intervals::default();
    let count = if plan.placed_rooms() {
        placed_rooms.len() as u32
    } else {
        plan.room_count()
    };
    let rows = (0..count)
        .map(|room| {
            let s = rooms.get(&room).unwrap_or(&empty);
            all.add(&s.intervals);
            let (name, bots) = if plan.placed_rooms() {
                let name = placed_rooms[room as usize].clone();
                (name, u32::try_from(s.bots_placed).unwrap_or(u32::MAX))
            } else {
                let name = plan
                    .room_name(room)
                    .or_else(|| s.welcomed_as.clone())
                    .unwrap_or_else(|| "(default room)".to_string());
                (name, plan.bots_in(room))
            };
            RoomRow {
                name,
                bots,
                bots_ever_connected: s.first_connects,
                updates: s.updates,
                checksums_verified: s.checksums_verified,
                checksum_mismatches: s.checksum_mismatches,
                protocol_errors: s.protocol_errors,
                unexpected_disconnects: s.unexpected_disconnects,
                update_interval_ms: s.intervals.summary(),
                processes: s.processes.iter().cloned().collect(),
            }
        })
        .collect();
    (rows, all)
}

/// One kind of failed matchmaking request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchmakeFailureRow {
    /// `http 503`, `tcp connect`, `timeout`, `bad answer`.
    pub cause: String,
    /// The HTTP status, when the matchmaker answered one.
    pub status: Option<u16>,
    pub count: u64,
    /// The first error text seen (the answer's `error`, or what was wrong with it).
    pub example: String,
}

/// The matchmaking requests of a run (`--matchmake`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchmakeRow {
    /// The URL the bots POSTed to.
    pub url: String,
    /// Requests started; each ends placed, failed, or cut short by the end of the run.
    pub requests: u64,
    /// Answered with a whole HTTP answer, any status.
    pub answered: u64,
    /// Answered `200` and used: the bot dialled the `connect` URL.
    pub placed: u64,
    /// Requests per second from the first request's start to the last one's end (the ramp-up, mostly):
    /// the rate the matchmaker served, not its capacity unless the bots asked faster than it answered.
    pub requests_per_sec: f64,
    /// From the start of the TCP connect to the whole answer, every answered request (any status).
    pub latency_ms: Quantiles,
    pub failures: Vec<MatchmakeFailureRow>,
}

impl MatchmakeRow {
    fn of(url: String, m: &MatchmakeStats) -> MatchmakeRow {
        let span = match (m.first_at, m.last_at) {
            (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        MatchmakeRow {
            url,
            requests: m.requests,
            answered: m.answered,
            placed: m.placed,
            requests_per_sec: if span > 0.0 {
                round1(m.requests as f64 / span)
            } else {
                0.0
            },
            latency_ms: m.latency.summary(),
            failures: m
                .failures
                .iter()
                .map(|(why, count)| MatchmakeFailureRow {
                    cause: why.label(),
                    status: match why {
                        MatchmakeFailure::Http(status) => Some(*status),
                        _ => None,
                    },
                    count: *count,
                    example: m.examples.get(why).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// What the bots placed on one process saw there (`--matchmake`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
    /// The matchmaker's `process` id, or `host:port` of `connect` when it names none (standalone).
    pub process: String,
    /// Bots welcomed on it at least once.
    pub bots: u64,
    /// Matchmaking answers that sent a bot to it.
    pub placements: u64,
    /// Connections welcomed on it.
    pub connections: u64,
    /// Rooms those connections were welcomed into, and their names.
    pub rooms: u64,
    pub room_names: Vec<String>,
    pub updates: u64,
    pub checksums_verified: u64,
    pub checksum_mismatches: u64,
    pub protocol_errors: u64,
    pub unexpected_disconnects: u64,
    /// Connect attempts that failed after an answer sent the bot here.
    pub connect_failures: u64,
    /// The four above together.
    pub errors: u64,
}

impl ProcessRow {
    fn of(process: &str, p: &ProcessStats) -> ProcessRow {
        ProcessRow {
            process: process.to_string(),
            bots: p.bots,
            placements: p.placements,
            connections: p.connections,
            rooms: p.rooms.len() as u64,
            room_names: p.rooms.iter().cloned().collect(),
            updates: p.updates,
            checksums_verified: p.checksums_verified,
            checksum_mismatches: p.checksum_mismatches,
            protocol_errors: p.protocol_errors,
            unexpected_disconnects: p.unexpected_disconnects,
            connect_failures: p.connect_failures,
            errors: p.errors(),
        }
    }
}

/// One line of the disconnects table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisconnectRow {
    pub cause: String,
    /// The close code, when the server sent one.
    pub code: Option<u16>,
    pub expected: bool,
    pub count: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What the bots were pointed at: --url, or the matchmaker (`--matchmake`).
    pub url: String,
    pub bots: u64,
    pub threads: usize,
    pub mix: String,
    /// How long the run lasted, ramp-up included.
    pub duration_s: f64,
    pub ended_by: EndedBy,
    /// The server's tick rate, from `Welcome` (0 if no bot got one).
    pub tick_hz: u16,
    /// Peak bots connected at once (sampled every worker report).
    pub connected: u64,
    pub bots_ever_connected: u64,
    pub bots_never_connected: u64,
    pub bots_gave_up: u64,
    pub reconnects: u64,
    /// Players taken back after a lost connection, and what the first update after it was.
    pub resumes: Resumes,
    /// From TCP connect to `Welcome`, every successful attempt.
    pub connect_ms: Quantiles,
    /// Failed connect attempts by reason (each retried until `--connect-attempts`).
    pub connect_failures: BTreeMap<String, u64>,
    /// Updates received per connected bot-second, all bots.
    pub updates_per_sec: f64,
    /// Bytes received per connected bot-second, all bots.
    pub bytes_per_sec: f64,
    pub updates: u64,
    pub bytes: u64,
    /// Updates that skipped ticks (coalesced deltas and resync fulls), all bots.
    pub coalesced_updates: u64,
    pub resyncs: u64,
    pub ticks_skipped: u64,
    /// Update arrival against the server's tick schedule, slow bots left out.
    pub lateness_ms: Quantiles,
    /// Input -> acknowledgement, slow bots left out.
    pub rtt_ms: Quantiles,
    pub inputs: Inputs,
    /// `--verify-fraction`, and the bots it made verify (mirror the world, check every checksum); the
    /// others skimmed, and their checksums are `checksums_unchecked`.
    pub verify_fraction: f64,
    pub bots_verifying: u64,
    pub checksums_verified: u64,
    pub checksums_unchecked: u64,
    pub checksum_mismatches: u64,
    pub protocol_errors: u64,
    /// Game `Message`s received (outside the world: counted, their size checked), and their bytes.
    pub messages: u64,
    pub message_bytes: u64,
    pub expected_disconnects: u64,
    pub unexpected_disconnects: u64,
    pub disconnects: Vec<DisconnectRow>,
    pub behaviours: Vec<BehaviourRow>,
    /// The rooms in a few numbers (one room when the run has no --rooms).
    pub rooms_summary: RoomsSummary,
    /// Every room, in room order.
    pub rooms: Vec<RoomRow>,
    /// `--matchmake`: the requests; `null` without matchmaking.
    pub matchmake: Option<MatchmakeRow>,
    /// `--matchmake`: one row per process the bots were placed on, by name; empty without.
    pub processes: Vec<ProcessRow>,
    /// The first correctness errors, each with bot, connection and tick.
    pub errors: Vec<String>,
    /// No mismatches, no protocol errors, no unexpected disconnects, and (unless the run was interrupted
    /// or the server drained) no bot gave up and every bot connected.
    pub passed: bool,
}

fn rate(count: u64, b: &BehaviourStats) -> f64 {
    let s = b.connected_s();
    if s > 0.0 {
        round1(count as f64 / s)
    } else {
        0.0
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

impl Report {
    pub fn new(plan: &Plan, stats: &Stats, run: &Summary) -> Report {
        let all = stats.sum(|_| true);
        let headline = stats.sum(|b| !b.reads_slowly());
        let bots = u64::from(plan.count);
        let (rooms, all_intervals) = room_rows(plan, &run.rooms, &run.placed_rooms);
        let ever = stats.first_connects;
        let behaviours: Vec<BehaviourRow> = Behaviour::ALL
            .into_iter()
            .filter(|b| plan.args.mix.weight(*b) > 0)
            .map(|b| {
                let s = &stats.behaviours[b.index()];
                BehaviourRow {
                    behaviour: b.name(),
                    bots: run.behaviours.iter().filter(|x| **x == b).count() as u64,
                    updates_per_sec: rate(s.updates, s),
                    bytes_per_sec: rate(s.bytes_in, s),
                    rtt_ms: s.rtt.summary(),
                    lateness_ms: s.lateness.summary(),
                    coalesced_updates: s.coalesced,
                    checksums_verified: s.checksums_verified,
                    checksum_mismatches: s.checksum_mismatches,
                    protocol_errors: s.protocol_errors,
                    expected_disconnects: s.disconnects_expected,
                    unexpected_disconnects: s.disconnects_unexpected,
                    resumes_honoured: s.resumes_honoured,
                    resumes_refused: s.resumes_refused,
                }
            })
            .collect();
        let disconnects = stats
            .disconnects
            .iter()
            .map(|(cause, count)| DisconnectRow {
                cause: cause.label(),
                code: match cause {
                    crate::stats::Cause::Code(code) => Some(*code),
                    _ => None,
                },
                expected: cause.expected(),
                count: *count,
            })
            .collect();
        let mut report = Report {
            url: plan.target_label(),
            bots,
            threads: plan.threads,
            mix: plan.args.mix.to_string(),
            duration_s: round1(run.elapsed.as_secs_f64()),
            ended_by: run.ended_by,
            tick_hz: stats.tick_hz,
            connected: run.peak_connected,
            bots_ever_connected: ever,
            bots_never_connected: bots.saturating_sub(ever),
            bots_gave_up: stats.bots_gave_up,
            reconnects: stats.reconnects,
            resumes: Resumes::of(&all),
            connect_ms: stats.connect_time.summary(),
            connect_failures: stats
                .connect_failures
                .iter()
                .map(|(k, v)| (k.label(), *v))
                .collect(),
            updates_per_sec: rate(all.updates, &all),
            bytes_per_sec: rate(all.bytes_in, &all),
            updates: all.updates,
            bytes: all.bytes_in,
            coalesced_updates: all.coalesced,
            resyncs: all.resyncs,
            ticks_skipped: all.ticks_skipped,
            lateness_ms: headline.lateness.summary(),
            rtt_ms: headline.rtt.summary(),
            inputs: Inputs {
                sent: headline.inputs_sent,
                acked: headline.inputs_acked,
                unacked_at_end: headline.inputs_unacked,
                lost_on_disconnect: headline.inputs_lost,
                dropped: headline.inputs_dropped,
                slots_skipped: headline.input_slots_skipped,
            },
            verify_fraction: plan.args.verify_fraction,
            bots_verifying: (0..plan.count as usize)
                .filter(|id| plan.verifies(*id))
                .count() as u64,
            checksums_verified: all.checksums_verified,
            checksums_unchecked: all.checksums_unchecked,
            checksum_mismatches: all.checksum_mismatches,
            protocol_errors: all.protocol_errors,
            messages: all.messages,
            message_bytes: all.message_bytes,
            expected_disconnects: all.disconnects_expected,
            unexpected_disconnects: all.disconnects_unexpected,
            disconnects,
            behaviours,
            rooms_summary: RoomsSummary::of(&rooms, &all_intervals),
            rooms,
            matchmake: plan
                .matchmaker
                .as_ref()
                .map(|m| MatchmakeRow::of(m.url.to_string(), &stats.matchmake)),
            processes: run
                .processes
                .iter()
                .map(|(name, p)| ProcessRow::of(name, p))
                .collect(),
            errors: run.errors.clone(),
            passed: false,
        };
        report.passed = report.failures().is_empty();
        report
    }

    /// What made the run fail, one line each; empty when it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.checksum_mismatches > 0 {
            out.push(format!("{} checksum mismatches", self.checksum_mismatches));
        }
        if self.protocol_errors > 0 {
            out.push(format!("{} protocol errors", self.protocol_errors));
        }
        if self.unexpected_disconnects > 0 {
            out.push(format!(
                "{} unexpected disconnects",
                self.unexpected_disconnects
            ));
        }
        // Once the server announced its drain (1001), bots that cannot connect any more are no finding;
        // nor are bots an interrupt kept from their turn.
        let server_went_away = self
            .disconnects
            .iter()
            .any(|d| d.code == Some(tickcast::proto::close::GOING_AWAY));
        if self.bots_gave_up > 0 && !server_went_away {
            out.push(format!(
                "{} bots gave up connecting after --connect-attempts failures",
                self.bots_gave_up
            ));
        }
        if self.bots_never_connected > 0
            && self.ended_by != EndedBy::Interrupted
            && !server_went_away
        {
            out.push(format!(
                "{} of {} bots never connected",
                self.bots_never_connected, self.bots
            ));
        }
        out
    }

    /// The rooms section of the table: a few lines, then the worst rooms.
    fn rooms_table(&self, t: &mut String) {
        let r = &self.rooms_summary;
        let row = |t: &mut String, name: &str, value: String| {
            let _ = writeln!(t, "  {name:<26} {value}");
        };
        let _ = writeln!(t, "\nrooms");
        let names = match (self.rooms.first(), self.rooms.last()) {
            (Some(first), Some(last)) if self.rooms.len() > 1 => {
                format!(" ({} .. {})", first.name, last.name)
            }
            (Some(only), _) => format!(" ({})", only.name),
            _ => String::new(),
        };
        let sizes = if r.bots_min == r.bots_max {
            format!("{} bots each", r.bots_min)
        } else {
            format!("{} to {} bots each", r.bots_min, r.bots_max)
        };
        row(t, "rooms", format!("{}{names}, {sizes}", r.count));
        row(
            t,
            "every bot connected",
            format!("in {} of {} rooms", r.rooms_all_connected, r.count),
        );
        row(
            t,
            "rooms with mismatches",
            format!(
                "{} ({} mismatches in all)",
                r.rooms_with_mismatches, self.checksum_mismatches
            ),
        );
        row(
            t,
            "rooms with errors",
            format!(
                "{} (protocol errors, unexpected disconnects)",
                r.rooms_with_errors
            ),
        );
        let i = &r.update_interval_ms;
        row(
            t,
            "update interval ms *",
            format!(
                "p50 {:.1}  p99 {:.1}  max {:.1}  ({} samples, all rooms)",
                i.p50, i.p99, i.max, i.samples
            ),
        );
        if let Some(worst) = &r.worst_room {
            row(
                t,
                "worst room interval p99",
                format!(
                    "{:.1} ms in {worst} (the median room: {:.1} ms)",
                    r.worst_room_update_interval_ms.p99, r.update_interval_p99_median_room_ms
                ),
            );
        }
        let mut shown: Vec<&RoomRow> = self.rooms.iter().collect();
        shown.sort_by(|a, b| {
            b.troubled().cmp(&a.troubled()).then(
                b.update_interval_ms
                    .p99
                    .total_cmp(&a.update_interval_ms.p99),
            )
        });
        shown.truncate(ROOMS_SHOWN_MAX);
        let width = shown
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(4)
            .clamp(4, 24);
        let title = if shown.len() < self.rooms.len() {
            format!("  the worst {} of {} rooms:", shown.len(), self.rooms.len())
        } else {
            "  by room:".to_string()
        };
        let _ = writeln!(t, "{title}");
        let _ = writeln!(
            t,
            "    {:<width$} {:>6} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8}",
            "room",
            "bots",
            "connected",
            "mismatch",
            "proto",
            "unexpected",
            "int p50",
            "int p99",
            "int max"
        );
        for room in shown {
            let q = &room.update_interval_ms;
            let _ = writeln!(
                t,
                "    {:<width$} {:>6} {:>9} {:>9} {:>8} {:>10} {:>8.1} {:>8.1} {:>8.1}",
                room.name,
                room.bots,
                room.bots_ever_connected,
                room.checksum_mismatches,
                room.protocol_errors,
                room.unexpected_disconnects,
                q.p50,
                q.p99,
                q.max
            );
        }
    }

    /// The matchmaking section of the table: the requests, then one line per process.
    fn matchmake_table(&self, t: &mut String) {
        let Some(m) = &self.matchmake else { return };
        let _ = writeln!(t, "\nmatchmaking ({})", m.url);
        let row = |t: &mut String, name: &str, value: String| {
            let _ = writeln!(t, "  {name:<26} {value}");
        };
        row(
            t,
            "requests",
            format!(
                "{} (answered {}, placed {}), {:.1}/s while asking",
                m.requests, m.answered, m.placed, m.requests_per_sec
            ),
        );
        let q = &m.latency_ms;
        row(
            t,
            "latency ms",
            format!(
                "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  ({} samples)",
                q.p50, q.p90, q.p99, q.max, q.samples
            ),
        );
        let failures = if m.failures.is_empty() {
            "none".to_string()
        } else {
            m.failures
                .iter()
                .map(|f| format!("{}: {} ({:?})", f.cause, f.count, f.example))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row(t, "failures", failures);
        let _ = writeln!(t, "\nprocesses");
        let width = self
            .processes
            .iter()
            .map(|p| p.process.len())
            .max()
            .unwrap_or(0)
            .max("process".len());
        let _ = writeln!(
            t,
            "  {:<width$} {:>6} {:>7} {:>6} {:>6} {:>10} {:>10} {:>7}",
            "process", "bots", "placed", "conns", "rooms", "updates", "checksums", "errors"
        );
        for p in &self.processes {
            let _ = writeln!(
                t,
                "  {:<width$} {:>6} {:>7} {:>6} {:>6} {:>10} {:>10} {:>7}",
                p.process,
                p.bots,
                p.placements,
                p.connections,
                p.rooms,
                p.updates,
                p.checksums_verified,
                p.errors
            );
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The readable table for stdout.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let q = |q: &Quantiles| {
            format!(
                "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  ({} samples)",
                q.p50, q.p90, q.p99, q.max, q.samples
            )
        };
        let _ = writeln!(
            t,
            "tickcast bots: {} bots ({}) against {}, {} threads, {:.1} s ({})",
            self.bots,
            self.mix,
            self.url,
            self.threads,
            self.duration_s,
            match self.ended_by {
                EndedBy::Duration => "full duration",
                EndedBy::Interrupted => "interrupted",
                EndedBy::AllBotsDown => "every bot went down",
            }
        );
        let row = |t: &mut String, name: &str, value: String| {
            let _ = writeln!(t, "  {name:<26} {value}");
        };
        let _ = writeln!(t, "\nconnections");
        row(
            &mut t,
            "connected at peak",
            format!(
                "{} of {} (ever {}, never {}, gave up {})",
                self.connected,
                self.bots,
                self.bots_ever_connected,
                self.bots_never_connected,
                self.bots_gave_up
            ),
        );
        row(&mut t, "connect time ms", q(&self.connect_ms));
        row(&mut t, "reconnects", self.reconnects.to_string());
        let r = &self.resumes;
        row(
            &mut t,
            "resumes",
            format!(
                "asked {}: honoured {} (first update: delta {}, full {}), refused {}",
                r.asked, r.honoured, r.first_update_delta, r.first_update_full, r.refused
            ),
        );
        let failures = if self.connect_failures.is_empty() {
            "none".to_string()
        } else {
            self.connect_failures
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row(&mut t, "failed connect attempts", failures);

        let _ = writeln!(t, "\nupdates (server at {} Hz)", self.tick_hz);
        row(
            &mut t,
            "per bot",
            format!(
                "{:.1} updates/s, {:.1} KiB/s",
                self.updates_per_sec,
                self.bytes_per_sec / 1024.0
            ),
        );
        row(
            &mut t,
            "total",
            format!(
                "{} updates, {:.1} MiB",
                self.updates,
                self.bytes as f64 / (1024.0 * 1024.0)
            ),
        );
        row(
            &mut t,
            "coalesced updates",
            format!(
                "{} ({} resyncs, {} ticks skipped)",
                self.coalesced_updates, self.resyncs, self.ticks_skipped
            ),
        );
        row(&mut t, "lateness ms *", q(&self.lateness_ms));

        let _ = writeln!(t, "\ninputs *");
        row(&mut t, "input -> ack ms", q(&self.rtt_ms));
        let i = &self.inputs;
        row(
            &mut t,
            "inputs",
            format!(
                "sent {}, acked {}, unacked at end {}, lost on disconnect {}, dropped {}, slots skipped {}",
                i.sent, i.acked, i.unacked_at_end, i.lost_on_disconnect, i.dropped, i.slots_skipped
            ),
        );

        let _ = writeln!(t, "\ncorrectness");
        row(
            &mut t,
            "checksums verified",
            self.checksums_verified.to_string(),
        );
        if self.bots_verifying < self.bots {
            row(
                &mut t,
                "verifying bots",
                format!(
                    "{} of {} (--verify-fraction {}); the others skimmed: {} checksums unchecked",
                    self.bots_verifying, self.bots, self.verify_fraction, self.checksums_unchecked
                ),
            );
        }
        row(
            &mut t,
            "checksum mismatches",
            self.checksum_mismatches.to_string(),
        );
        row(&mut t, "protocol errors", self.protocol_errors.to_string());
        if self.messages > 0 {
            row(
                &mut t,
                "game messages",
                format!("{} ({} bytes)", self.messages, self.message_bytes),
            );
        }

        let _ = writeln!(t, "\ndisconnects");
        row(&mut t, "expected", self.expected_disconnects.to_string());
        row(
            &mut t,
            "unexpected",
            self.unexpected_disconnects.to_string(),
        );
        for d in &self.disconnects {
            let kind = if d.expected { "expected" } else { "UNEXPECTED" };
            row(
                &mut t,
                &format!("  {}", d.cause),
                format!("{} ({kind})", d.count),
            );
        }

        let _ = writeln!(t, "\nby behaviour");
        let _ = writeln!(
            t,
            "  {:<10} {:>6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9} {:>10}",
            "behaviour",
            "bots",
            "upd/s/bot",
            "KiB/s/bot",
            "ack p50",
            "ack p99",
            "late p99",
            "coalesced",
            "mismatch",
            "unexpected"
        );
        for b in &self.behaviours {
            let ack = |v: f64| {
                if b.rtt_ms.samples == 0 {
                    "-".to_string()
                } else {
                    format!("{v:.1}")
                }
            };
            let _ = writeln!(
                t,
                "  {:<10} {:>6} {:>10.1} {:>10.1} {:>9} {:>9} {:>9.1} {:>10} {:>9} {:>10}",
                b.behaviour,
                b.bots,
                b.updates_per_sec,
                b.bytes_per_sec / 1024.0,
                ack(b.rtt_ms.p50),
                ack(b.rtt_ms.p99),
                b.lateness_ms.p99,
                b.coalesced_updates,
                b.checksum_mismatches,
                b.unexpected_disconnects
            );
        }
        self.rooms_table(&mut t);
        self.matchmake_table(&mut t);
        let _ = writeln!(
            t,
            "\n* slow bots left out: their reads are capped on purpose (see their row). Latencies in ms."
        );
        if !self.errors.is_empty() {
            let _ = writeln!(t, "\nfirst errors");
            for e in &self.errors {
                let _ = writeln!(t, "  {e}");
            }
        }
        if self.inputs.slots_skipped > 0 {
            let _ = writeln!(
                t,
                "\nwarning: the bots fell behind their schedule ({} input slots skipped): these figures \
                 measure the bots machine as well as the server; give the bots more cores",
                self.inputs.slots_skipped
            );
        }
        let failures = self.failures();
        if failures.is_empty() {
            let _ = writeln!(t, "\nresult: PASS");
        } else {
            let _ = writeln!(t, "\nresult: FAIL ({})", failures.join(", "));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::config::Args;

    fn report(stats: &Stats, ended_by: EndedBy) -> Report {
        let args = Args::parse_from(["bots", "--count", "3", "--mix", "wander=2,slow=1"]);
        let plan = Plan::new(args).unwrap();
        let run = Summary {
            elapsed: Duration::from_secs(10),
            ended_by,
            peak_connected: 3,
            behaviours: plan.args.mix.assign(3),
            errors: Vec::new(),
            rooms: BTreeMap::new(),
            processes: BTreeMap::new(),
            placed_rooms: Vec::new(),
        };
        Report::new(&plan, stats, &run)
    }

    #[test]
    fn rates_are_per_connected_bot_second_and_latencies_leave_slow_bots_out() {
        let mut stats = Stats {
            first_connects: 3,
            ..Stats::default()
        };
        let wander = stats.of(Behaviour::Wander);
        wander.connected_us = 20_000_000;
        wander.updates = 400;
        wander.rtt.record(Duration::from_millis(30));
        let slow = stats.of(Behaviour::Slow);
        slow.connected_us = 10_000_000;
        slow.updates = 50;
        slow.rtt.record(Duration::from_secs(3));
        let r = report(&stats, EndedBy::Duration);
        assert_eq!(r.updates_per_sec, 15.0, "450 updates over 30 bot-seconds");
        assert_eq!(r.rtt_ms.samples, 1);
        assert!(r.rtt_ms.max < 31.0, "{:?}", r.rtt_ms);
        let slow_row = r.behaviours.iter().find(|b| b.behaviour == "slow").unwrap();
        assert_eq!((slow_row.bots, slow_row.updates_per_sec), (1, 5.0));
        assert!(r.passed, "{:?}", r.failures());
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in [
            "connected",
            "checksum_mismatches",
            "updates_per_sec",
            "bytes_per_sec",
            "rtt_ms",
            "coalesced_updates",
            "unexpected_disconnects",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        for key in [
            "asked",
            "honoured",
            "refused",
            "first_update_delta",
            "first_update_full",
        ] {
            assert!(json["resumes"][key].is_u64(), "resumes.{key}");
        }
        for key in ["resumes_honoured", "resumes_refused"] {
            assert!(json["behaviours"][0][key].is_u64(), "behaviours[0].{key}");
        }
        assert!(r.table().contains("result: PASS"));
        assert!(r.table().contains("resumes"));
    }

    #[test]
    fn the_verdict_fails_on_errors_and_on_bots_that_never_connected_unless_interrupted() {
        let mut stats = Stats {
            first_connects: 2,
            ..Stats::default()
        };
        let r = report(&stats, EndedBy::Duration);
        assert_eq!(
            r.failures(),
            vec!["1 of 3 bots never connected".to_string()]
        );
        assert!(report(&stats, EndedBy::Interrupted).passed);
        stats.first_connects = 3;
        stats.of(Behaviour::Wander).checksum_mismatches = 1;
        stats.disconnected(Behaviour::Slow, crate::stats::Cause::Code(4001));
        let r = report(&stats, EndedBy::Interrupted);
        assert!(!r.passed);
        assert_eq!(r.failures().len(), 2, "{:?}", r.failures());
        assert!(r.table().contains("close 4001"));
    }

    #[test]
    fn bots_that_cannot_reconnect_after_the_server_drained_are_no_finding() {
        let mut stats = Stats {
            first_connects: 2,
            bots_gave_up: 1,
            ..Stats::default()
        };
        assert_eq!(report(&stats, EndedBy::AllBotsDown).failures().len(), 2);
        stats.disconnected(Behaviour::Wander, crate::stats::Cause::Code(1001));
        assert!(report(&stats, EndedBy::AllBotsDown).passed);
    }

    fn rooms_report(flags: &[&str], rooms: BTreeMap<u32, RoomStats>) -> Report {
        let mut argv = vec!["bots"];
        argv.extend_from_slice(flags);
        let plan = Plan::new(Args::parse_from(argv)).unwrap();
        let stats = Stats {
            first_connects: rooms.values().map(|r| r.first_connects).sum(),
            ..Stats::default()
        };
        let run = Summary {
            elapsed: Duration::from_secs(10),
            ended_by: EndedBy::Duration,
            peak_connected: u64::from(plan.count),
            behaviours: plan.args.mix.assign(plan.count as usize),
            errors: Vec::new(),
            rooms,
            processes: BTreeMap::new(),
            placed_rooms: Vec::new(),
        };
        Report::new(&plan, &stats, &run)
    }

    fn room(bots: u64, interval_ms: u64, mismatches: u64) -> RoomStats {
        let mut r = RoomStats {
            first_connects: bots,
            bots_placed: bots,
            checksum_mismatches: mismatches,
            ..RoomStats::default()
        };
        for _ in 0..100 {
            r.intervals.record(Duration::from_millis(interval_ms));
        }
        r
    }

    #[test]
    fn every_room_has_a_row_and_the_summary_names_the_worst() {
        let rooms = BTreeMap::from([
            (0, room(2, 50, 0)),
            (1, room(2, 70, 0)),
            (2, room(1, 40, 3)),
        ]);
        let r = rooms_report(&["--rooms", "3", "--room-size", "2"], rooms);
        let names: Vec<&str> = r.rooms.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["bots-0", "bots-1", "bots-2"]);
        assert_eq!(r.rooms[2].bots, 2);
        assert_eq!(r.rooms[2].bots_ever_connected, 1);
        assert_eq!(r.rooms[2].checksum_mismatches, 3);
        let s = &r.rooms_summary;
        assert_eq!((s.count, s.bots_min, s.bots_max), (3, 2, 2));
        assert_eq!((s.rooms_all_connected, s.rooms_with_mismatches), (2, 1));
        assert_eq!(s.worst_room.as_deref(), Some("bots-1"));
        assert_eq!(s.worst_room_update_interval_ms.p99, 70.0);
        assert_eq!(s.update_interval_p99_median_room_ms, 50.0);
        assert_eq!(s.update_interval_ms.samples, 300);
        let table = r.table();
        assert!(table.contains("70.0 ms in bots-1"), "{table}");
        // The troubled room comes first, then the longest p99.
        let at = |name: &str| table.find(&format!("    {name} ")).unwrap();
        assert!(
            at("bots-2") < at("bots-1") && at("bots-1") < at("bots-0"),
            "{table}"
        );
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["rooms"].as_array().unwrap().len(), 3);
        assert_eq!(json["rooms"][1]["update_interval_ms"]["p99"], 70.0);
        assert_eq!(json["rooms_summary"]["worst_room"], "bots-1");
    }

    #[test]
    fn the_table_lists_a_few_rooms_however_many_the_json_holds() {
        let rooms = (0..200)
            .map(|i| (i, room(1, 40 + u64::from(i % 7), 0)))
            .collect();
        let r = rooms_report(&["--rooms", "200", "--room-size", "1"], rooms);
        assert_eq!(r.rooms.len(), 200);
        let table = r.table();
        let listed = table.lines().filter(|l| l.starts_with("    bots-")).count();
        assert_eq!(listed, ROOMS_SHOWN_MAX, "{table}");
        assert!(table.contains("the worst 5 of 200 rooms"), "{table}");
        assert!(table.contains("result: PASS"), "{table}");
    }

    #[test]
    fn without_rooms_the_one_room_is_named_by_its_welcome() {
        let mut default = room(3, 50, 0);
        default.welcomed_as = Some("lobby".into());
        let r = rooms_report(&["--count", "3"], BTreeMap::from([(0, default)]));
        assert_eq!(r.rooms.len(), 1);
        assert_eq!(r.rooms[0].name, "lobby");
        assert_eq!(r.rooms[0].bots, 3);
        assert!(
            r.table().contains("1 (lobby), 3 bots each"),
            "{}",
            r.table()
        );
    }

    #[test]
    fn matchmaking_has_its_section_and_a_row_per_process() {
        let argv = [
            "bots",
            "--matchmake",
            "http://127.0.0.1:9101",
            "--rooms",
            "2",
            "--room-size",
            "2",
        ];
        let plan = Plan::new(Args::parse_from(argv)).unwrap();
        let t0 = std::time::Instant::now();
        let mut stats = Stats {
            first_connects: 4,
            ..Stats::default()
        };
        for i in 0..5u64 {
            stats.matchmake.started(t0);
            stats.matchmake.answered(
                Duration::from_millis(2 + i),
                t0 + Duration::from_millis(500),
            );
        }
        stats.matchmake.placed = 4;
        stats.matchmake.failed(
            MatchmakeFailure::Http(503),
            || "no process can take a new room".into(),
            t0 + Duration::from_millis(500),
        );
        let process = |room: &str, bots: u64| ProcessStats {
            placements: bots,
            bots,
            connections: bots,
            rooms: [room.to_string()].into(),
            updates: 100,
            checksums_verified: 5,
            ..ProcessStats::default()
        };
        let room_on = |p: &str| {
            let mut r = RoomStats {
                first_connects: 2,
                ..RoomStats::default()
            };
            r.processes.insert(p.to_string());
            r
        };
        let run = Summary {
            elapsed: Duration::from_secs(10),
            ended_by: EndedBy::Duration,
            peak_connected: 4,
            behaviours: plan.args.mix.assign(4),
            errors: Vec::new(),
            rooms: BTreeMap::from([(0, room_on("p1")), (1, room_on("p2"))]),
            processes: BTreeMap::from([
                ("p1".to_string(), process("bots-0", 2)),
                ("p2".to_string(), process("bots-1", 2)),
            ]),
            placed_rooms: Vec::new(),
        };
        let r = Report::new(&plan, &stats, &run);
        let m = r.matchmake.as_ref().unwrap();
        assert_eq!((m.requests, m.answered, m.placed), (5, 5, 4));
        assert_eq!(m.requests_per_sec, 10.0, "5 requests over 0.5 s");
        assert_eq!(m.latency_ms.samples, 5);
        assert!((m.latency_ms.p50 - 4.0).abs() < 0.1, "{:?}", m.latency_ms);
        assert_eq!(m.failures[0].status, Some(503));
        assert_eq!(m.failures[0].example, "no process can take a new room");
        let names: Vec<&str> = r.processes.iter().map(|p| p.process.as_str()).collect();
        assert_eq!(names, ["p1", "p2"]);
        assert_eq!(r.processes[0].room_names, ["bots-0"]);
        assert_eq!(r.rooms[1].processes, ["p2"]);
        assert!(r.url.contains("matchmaking"), "{}", r.url);
        let table = r.table();
        assert!(
            table.contains("matchmaking (http://127.0.0.1:9101/matchmake)"),
            "{table}"
        );
        assert!(table.contains("http 503: 1"), "{table}");
        assert!(table.contains("\n  p2 "), "{table}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["matchmake"]["latency_ms"]["samples"], 5);
        assert_eq!(json["processes"][1]["bots"], 2);
        assert_eq!(json["rooms"][0]["processes"][0], "p1");
        // Without --matchmake: no section, `null` in the JSON.
        let plain = report(&Stats::default(), EndedBy::Interrupted);
        assert!(plain.matchmake.is_none() && plain.processes.is_empty());
        assert!(!plain.table().contains("matchmaking"));
    }

    #[test]
    fn rooms_the_matchmaker_chose_are_listed_by_name_with_the_bots_placed_there() {
        let argv = [
            "bots",
            "--matchmake",
            "http://127.0.0.1:9101",
            "--matchmake-type",
            "arena",
            "--count",
            "5",
        ];
        let plan = Plan::new(Args::parse_from(argv)).unwrap();
        let run = Summary {
            elapsed: Duration::from_secs(10),
            ended_by: EndedBy::Duration,
            peak_connected: 5,
            behaviours: plan.args.mix.assign(5),
            errors: Vec::new(),
            rooms: BTreeMap::from([(0, room(3, 50, 0)), (1, room(2, 50, 0))]),
            processes: BTreeMap::new(),
            placed_rooms: vec!["arena-a".into(), "arena-b".into()],
        };
        let stats = Stats {
            first_connects: 5,
            ..Stats::default()
        };
        let r = Report::new(&plan, &stats, &run);
        let rows: Vec<(&str, u32)> = r.rooms.iter().map(|r| (r.name.as_str(), r.bots)).collect();
        assert_eq!(rows, [("arena-a", 3), ("arena-b", 2)]);
        assert!(r.passed, "{:?}", r.failures());
    }
}
