//! Per-connection message rate limiting: a token bucket, plus a leaky "drop debt" that tells a client
//! bursting now and then from one that keeps flooding. Time comes from the caller (the loop's clock).

use std::time::Instant;

/// What to do with one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Over the rate: drop the message, count it.
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
    last: Instant,
}

impl Bucket {
    pub fn new(limit: &RateLimit, now: Instant) -> Self {
        Bucket {
            tokens: limit.burst,
            drop_debt: 0.0,
            last: now,
        }
    }

    pub fn take(&mut self, limit: &RateLimit, now: Instant) -> Verdict {
        let elapsed_s = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed_s * limit.rate_per_s).min(limit.burst);
        self.drop_debt = (self.drop_debt - elapsed_s * limit.rate_per_s).max(0.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        self.drop_debt += 1.0;
        if self.drop_debt > limit.drop_debt_max {
            Verdict::Abuse
        } else {
            Verdict::Drop
        }
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
            match b.take(&LIMIT, now) {
                Verdict::Accept => accepted += 1,
                Verdict::Drop => dropped += 1,
                Verdict::Abuse => return (accepted, dropped, true),
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
    fn a_sustained_flood_is_abuse() {
        let (_, dropped, abused) = flood(1000, 10);
        assert!(abused);
        assert!(dropped > 600, "{dropped}");
    }
}
