//! Per-connection rate limiting of every frame a client sends (data frames, continuations, pings, pongs):
//! a token bucket, plus a leaky "drop debt" that tells a client bursting now and then from one that keeps
//! flooding. Frames are charged as they arrive; a frame over the rate owes a drop, which the next data
//! message pays (it never reaches the game). Time comes from the caller (the loop's clock).

use std::time::Instant;

/// What the frames just charged mean for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Over the rate: the excess owes drops ([`Bucket::admit`]).
    Drop,
    /// Dropping has gone on too long: close the connection.
    Abuse,
}

/// Settings shared by every connection's bucket.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Messages per second a connection may send on average.
    pub rate_per_s: f64,
    /// Messages a connection may send at once after being quiet.
    pub burst: f64,
    /// Dropped messages, leaking away at `rate_per_s`, past which the client is closed. A client at up to
    /// twice the rate never gets there; one at three times gets there after `drop_debt_max / rate_per_s` s.
    pub drop_debt_max: f64,
}

/// One connection's state.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    drop_debt: f64,
    /// Frames over the rate not yet paid for by a dropped data message; never above the drop debt, so it
    /// leaks away with it.
    drops_owed: u32,
    last: Instant,
}

impl Bucket {
    pub fn new(limit: &RateLimit, now: Instant) -> Self {
        Bucket {
            tokens: limit.burst,
            drop_debt: 0.0,
            drops_owed: 0,
            last: now,
        }
    }

    /// Charges `frames` frames that arrived at `now`.
    pub fn charge(&mut self, limit: &RateLimit, now: Instant, frames: u32) -> Verdict {
        let elapsed_s = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed_s * limit.rate_per_s).min(limit.burst);
        self.drop_debt = (self.drop_debt - elapsed_s * limit.rate_per_s).max(0.0);
        let accepted = self.tokens.floor().min(f64::from(frames));
        self.tokens -= accepted;
        let over = frames - accepted as u32;
        self.drop_debt += f64::from(over);
        self.drops_owed = (self.drops_owed + over).min(self.drop_debt.ceil() as u32);
        if over == 0 {
            Verdict::Accept
        } else if self.drop_debt > limit.drop_debt_max {
            Verdict::Abuse
        } else {
            Verdict::Drop
        }
    }

    /// Whether a data message that just arrived may reach the game: not while frames over the rate owe a
    /// drop (then this message pays one).
    pub fn admit(&mut self) -> bool {
        if self.drops_owed == 0 {
            return true;
        }
        self.drops_owed -= 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMIT: RateLimit = RateLimit {
        rate_per_s: 60.0,
        burst: 120.0,
        drop_debt_max: 600.0,
    };

    /// Sends at `per_s` for `seconds`; returns (accepted, dropped, abused).
    fn flood(per_s: u32, seconds: u32) -> (u32, u32, bool) {
        let start = Instant::now();
        let mut b = Bucket::new(&LIMIT, start);
        let (mut accepted, mut dropped) = (0, 0);
        for i in 0..per_s * seconds {
            let now = start + Duration::from_secs_f64(f64::from(i) / f64::from(per_s));
            if b.charge(&LIMIT, now, 1) == Verdict::Abuse {
                return (accepted, dropped, true);
            }
            match b.admit() {
                true => accepted += 1,
                false => dropped += 1,
            }
        }
        (accepted, dropped, false)
    }

    #[test]
    fn within_the_rate_nothing_is_dropped() {
        assert_eq!(flood(60, 60), (3600, 0, false));
    }

    #[test]
    fn a_burst_is_absorbed_then_the_excess_dropped() {
        let (accepted, dropped, abused) = flood(120, 10);
        assert!(!abused, "twice the rate is dropped, not closed");
        // The burst, then the rate.
        assert!((660..=722).contains(&accepted), "{accepted}");
        assert_eq!(accepted + dropped, 1200);
    }

    #[test]
    fn frames_charged_in_a_batch_owe_as_many_drops_as_single_ones() {
        let start = Instant::now();
        let mut b = Bucket::new(&LIMIT, start);
        // 300 frames at once: 120 in the burst, 180 owe drops.
        assert_eq!(b.charge(&LIMIT, start, 300), Verdict::Drop);
        let admitted = (0..300).filter(|_| b.admit()).count();
        assert_eq!(admitted, 120);
        // The debt leaks at the rate, and what is owed with it: a quiet client starts clean.
        assert_eq!(b.charge(&LIMIT, start, 60), Verdict::Drop);
        let later = start + Duration::from_secs(10);
        assert_eq!(b.charge(&LIMIT, later, 1), Verdict::Accept);
        assert!(b.admit());
    }

    #[test]
    fn a_sustained_flood_is_abuse() {
        let (_, dropped, abused) = flood(1000, 10);
        assert!(abused);
        assert!(dropped > 600, "{dropped}");
    }
}
