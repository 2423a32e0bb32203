//! Exponential backoff with jitter for reconnects, bounded in attempts.

use std::time::Duration;

use tickcast::sim::Rng;

/// When to try connecting again after a failure, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay ceiling of a planned reconnect and of the retry after a first failure; it doubles with
    /// each further failure.
    pub base: Duration,
    /// The largest delay, however many failures came before.
    pub cap: Duration,
    /// Connect attempts in a row that may fail before the bot gives up (at least 1).
    pub attempts_max: u32,
}

impl Backoff {
    /// The wait before the next attempt, after `failures` failed attempts in a row (0 for a planned
    /// reconnect, such as a flapper's), or `None` when `failures` reached `attempts_max`: give up.
    ///
    /// "Equal jitter": half the exponential delay plus a random part of the other half, so a thousand
    /// bots dropped at once neither reconnect in one burst nor wait for nothing.
    pub fn delay(&self, failures: u32, rng: &mut Rng) -> Option<Duration> {
        if failures >= self.attempts_max {
            return None;
        }
        let doublings = failures.saturating_sub(1);
        let doubled = self
            .base
            .saturating_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX));
        let ceiling = doubled.min(self.cap);
        let half = ceiling / 2;
        Some(half + half.mul_f32(rng.next_f32()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            attempts_max: 5,
        }
    }

    #[test]
    fn delays_grow_stay_within_half_and_whole_of_the_ceiling_and_are_capped() {
        let mut rng = Rng::new(7);
        for _ in 0..100 {
            for (failures, ceiling_ms) in [(0, 100), (1, 100), (2, 200), (3, 400), (4, 800)] {
                let d = backoff().delay(failures, &mut rng).unwrap();
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(d >= ceiling / 2 && d <= ceiling, "{failures}: {d:?}");
            }
        }
    }

    #[test]
    fn gives_up_after_the_attempts() {
        let mut rng = Rng::new(7);
        assert!(backoff().delay(5, &mut rng).is_none());
        assert!(backoff().delay(u32::MAX, &mut rng).is_none());
        let huge = Backoff {
            attempts_max: u32::MAX,
            ..backoff()
        };
        assert!(huge.delay(40, &mut rng).unwrap() <= Duration::from_millis(1000));
        let capped = huge.delay(5, &mut rng).unwrap();
        assert!(
            capped >= Duration::from_millis(500),
            "1600 ms capped to 1000: {capped:?}"
        );
    }
}
