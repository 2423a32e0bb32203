//! Where the server's tick schedule is, as seen from one bot: how late each update arrives.
//!
//! The server runs tick `T` at `origin + T * period` and sends its update right after, so an update can
//! never arrive before its tick is due. The bot does not know `origin`; it keeps the tightest bound the
//! arrivals allow: starting from `Welcome` (sent after tick `W` ran), every update that arrives earlier
//! than the current estimate moves the estimate back to it. Lateness is then "arrival minus the earliest
//! moment consistent with everything seen", which is zero for the fastest update and grows with queueing
//! in the server, the kernel and the bot. It is never negative, and it can only be underestimated early on.
//!
//! If the server skips ticks (it was further behind than its catch-up bound), its tick numbers fall
//! behind wall time and every later update of that connection reads as late by the skipped ticks.

use std::time::{Duration, Instant};

/// The estimated schedule of one connection.
#[derive(Debug, Clone, Copy)]
pub struct TickEstimate {
    period: Duration,
    /// A tick and the earliest moment its update could have been sent, per what has been seen.
    anchor_tick: u64,
    anchor_at: Instant,
}

impl TickEstimate {
    /// From a `Welcome` carrying `tick` at `tick_hz` that arrived `at`.
    pub fn from_welcome(tick: u64, tick_hz: u16, at: Instant) -> Self {
        TickEstimate {
            period: Duration::from_nanos(1_000_000_000 / u64::from(tick_hz.max(1))),
            anchor_tick: tick,
            anchor_at: at,
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// How late the update for `tick`, arrived `at`, is against the schedule; tightens the estimate.
    pub fn lateness(&mut self, tick: u64, at: Instant) -> Duration {
        let Some(ahead) = tick.checked_sub(self.anchor_tick) else {
            // Ticks only move forward on one connection; an older one says nothing new.
            return Duration::ZERO;
        };
        let periods = u32::try_from(ahead).unwrap_or(u32::MAX);
        let due = self.anchor_at + self.period.saturating_mul(periods);
        if at < due {
            self.anchor_tick = tick;
            self.anchor_at = at;
            return Duration::ZERO;
        }
        at - due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_measured_against_the_earliest_consistent_schedule() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Welcome at tick 10 arrived late in its period: 30 ms after tick 10 ran (t0).
        let mut s = TickEstimate::from_welcome(10, 20, t0 + ms(30));
        assert_eq!(s.period(), ms(50));
        // Tick 11 ran at t0 + 50 and arrived 2 ms later: earlier than the estimate, which moves back.
        assert_eq!(s.lateness(11, t0 + ms(52)), Duration::ZERO);
        // Tick 12 arrives 12 ms after it ran: 10 ms later than the fastest seen so far.
        assert_eq!(s.lateness(12, t0 + ms(112)), ms(10));
        // A coalesced update for tick 20 arriving on time.
        assert_eq!(s.lateness(20, t0 + ms(502)), Duration::ZERO);
        assert_eq!(
            s.lateness(5, t0 + ms(600)),
            Duration::ZERO,
            "a tick before the anchor"
        );
    }
}
