//! A token bucket: how a slow bot caps the bytes it reads per second.

use std::time::{Duration, Instant};

/// Holds up to `burst_bytes` tokens and gains `rate_bps` per second; reading a byte costs one token.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_bps: f64,
    burst_bytes: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. `rate_bps` and `burst_bytes` must be at least 1.
    pub fn new(rate_bps: u64, burst_bytes: u64, now: Instant) -> Self {
        assert!(rate_bps >= 1 && burst_bytes >= 1);
        TokenBucket {
            rate_bps: rate_bps as f64,
            burst_bytes: burst_bytes as f64,
            tokens: burst_bytes as f64,
            updated: now,
        }
    }

    /// Adds the tokens earned since the last refill, up to the burst.
    pub fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_bps).min(self.burst_bytes);
        self.updated = now;
    }

    /// Whole bytes that may be read now.
    pub fn available(&self) -> usize {
        self.tokens as usize
    }

    /// Spends `bytes` tokens (at most what is available).
    pub fn take(&mut self, bytes: usize) {
        self.tokens = (self.tokens - bytes as f64).max(0.0);
    }

    /// When the bucket will be full again, counted from the last refill.
    pub fn full_at(&self) -> Instant {
        let missing = (self.burst_bytes - self.tokens).max(0.0);
        self.updated + Duration::from_secs_f64(missing / self.rate_bps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_full_spends_and_refills_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 100, t0);
        assert_eq!(b.available(), 100);
        b.take(100);
        assert_eq!(b.available(), 0);
        assert_eq!(b.full_at(), t0 + Duration::from_millis(100));
        b.refill(t0 + Duration::from_millis(50));
        assert_eq!(b.available(), 50);
        b.refill(t0 + Duration::from_secs(10));
        assert_eq!(b.available(), 100, "never above the burst");
        assert_eq!(b.full_at(), t0 + Duration::from_secs(10));
    }
}
