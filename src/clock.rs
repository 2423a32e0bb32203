//! Time, owned by the loop alone: a [`Clock`] the loop reads (injectable, so tests drive time by hand) and
//! the fixed-step [`TickSchedule`] that turns "now" into "run these ticks, skip those".

use std::time::{Duration, Instant};

/// Where the loop gets the time from.
pub trait Clock {
    /// Monotonic time, for the tick schedule and every timeout.
    fn now(&self) -> Instant;

    /// Wall-clock Unix time in seconds, for the expiry of authentication tickets only.
    fn unix_time_s(&self) -> u64;
}

/// The operating system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_time_s(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that moves only when told to. Single-threaded (the loop steps in the test's own thread with
/// `Server::turn`, see `tests/timers.rs`).
#[derive(Debug, Clone)]
pub struct ManualClock(std::rc::Rc<std::cell::Cell<Instant>>, Instant);

impl ManualClock {
    pub fn new(start: Instant) -> Self {
        ManualClock(std::rc::Rc::new(std::cell::Cell::new(start)), start)
    }

    pub fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0.get()
    }

    /// Starts at 1,000,000,000 s and moves with [`ManualClock::advance`].
    fn unix_time_s(&self) -> u64 {
        1_000_000_000 + (self.0.get() - self.1).as_secs()
    }
}

/// What is due at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Ticks to run now, back to back.
    pub run: u32,
    /// Ticks dropped because the loop was further behind than the catch-up bound.
    pub skipped: u64,
    /// How late the first due tick started, for the lateness histogram.
    pub lateness: Duration,
}

/// A fixed-step accumulator: tick k is due at `start + k * period`. When more than `catch_up_max` ticks are
/// due, the extra ones are skipped (counted) and the schedule moves forward, so the game never runs in a
/// burst longer than the bound and time in the game never runs ahead of real time.
#[derive(Debug, Clone)]
pub struct TickSchedule {
    period: Duration,
    next_due: Instant,
    catch_up_max: u32,
}

impl TickSchedule {
    pub fn new(start: Instant, period: Duration, catch_up_max: u32) -> Self {
        assert!(catch_up_max >= 1 && !period.is_zero());
        TickSchedule {
            period,
            next_due: start + period,
            catch_up_max,
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// When the next tick is due.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// Consumes the ticks due at `now`.
    pub fn due(&mut self, now: Instant) -> Due {
        if now < self.next_due {
            return Due {
                run: 0,
                skipped: 0,
                lateness: Duration::ZERO,
            };
        }
        let lateness = now - self.next_due;
        let behind = (lateness.as_nanos() / self.period.as_nanos()) as u64 + 1;
        let run = behind.min(u64::from(self.catch_up_max));
        let skipped = behind - run;
        self.next_due += self.period * (behind as u32);
        Due {
            run: run as u32,
            skipped,
            lateness,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn on_time_ticks_run_one_by_one() {
        let clock = ManualClock::new(Instant::now());
        let mut s = TickSchedule::new(clock.now(), 50 * MS, 4);
        assert_eq!(s.due(clock.now()).run, 0);
        clock.advance(49 * MS);
        assert_eq!(s.due(clock.now()).run, 0);
        clock.advance(MS);
        assert_eq!(
            s.due(clock.now()),
            Due {
                run: 1,
                skipped: 0,
                lateness: Duration::ZERO
            }
        );
        assert_eq!(s.due(clock.now()).run, 0);
        assert_eq!(s.next_due(), clock.now() + 50 * MS);
    }

    #[test]
    fn late_ticks_catch_up_to_the_bound_then_skip() {
        let clock = ManualClock::new(Instant::now());
        let mut s = TickSchedule::new(clock.now(), 50 * MS, 4);
        clock.advance(120 * MS);
        assert_eq!(
            s.due(clock.now()),
            Due {
                run: 2,
                skipped: 0,
                lateness: 70 * MS
            }
        );
        clock.advance(1000 * MS);
        let due = s.due(clock.now());
        assert_eq!((due.run, due.skipped), (4, 16));
        // The schedule is back in the future, on the same grid.
        assert!(s.next_due() > clock.now());
        assert_eq!(s.next_due() - clock.now(), 30 * MS);
    }
}
