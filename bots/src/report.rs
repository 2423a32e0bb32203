//! The end-of-run report: the figures (one struct, serialised as the `--json` file), the readable table
//! printed on stdout, and the verdict that sets the exit status.
//!
//! Headline latencies (`rtt_ms`, `lateness_ms`) leave slow bots out: their reads are capped on purpose, so
//! their latency measures the cap, not the server. Rates (`updates_per_sec`, `bytes_per_sec`) are means over
//! every bot. Each behaviour has its own row with everything.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::Plan;
use crate::mix::Behaviour;
use crate::stats::{BehaviourStats, Quantiles, Stats};
use crate::swarm::Summary;

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
    pub checksums_verified: u64,
    pub checksum_mismatches: u64,
    pub protocol_errors: u64,
    pub expected_disconnects: u64,
    pub unexpected_disconnects: u64,
    pub disconnects: Vec<DisconnectRow>,
    pub behaviours: Vec<BehaviourRow>,
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
        let bots = plan.args.count as u64;
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
            url: plan.target.url.clone(),
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
            checksums_verified: all.checksums_verified,
            checksum_mismatches: all.checksum_mismatches,
            protocol_errors: all.protocol_errors,
            expected_disconnects: all.disconnects_expected,
            unexpected_disconnects: all.disconnects_unexpected,
            disconnects,
            behaviours,
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
        row(
            &mut t,
            "checksum mismatches",
            self.checksum_mismatches.to_string(),
        );
        row(&mut t, "protocol errors", self.protocol_errors.to_string());

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
}
