//! Input -> acknowledgement latency without coordinated omission.
//!
//! A bot sends inputs on a fixed schedule whatever the server does, and each input is timed from the
//! moment it was *due*, not the moment the bot got round to sending it, so a stalled bot or server adds its
//! stall to every input it delayed. The server echoes the last input seq it applied inside the player's own
//! entity; one update can acknowledge many inputs, and each of them gets its own sample.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Inputs sent and not yet acknowledged, oldest first.
#[derive(Debug, Clone)]
pub struct PendingInputs {
    sent: VecDeque<(u32, Instant)>,
    /// Most inputs waiting at once; past it the oldest is given up on (and still sampled, see
    /// [`PendingInputs::sent`]).
    capacity: usize,
}

impl PendingInputs {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity >= 1);
        PendingInputs {
            sent: VecDeque::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Records input `seq`, due at `due`. When the queue is full the oldest input is given up on and
    /// returned with how long it had waited by `now`: a lower bound of its latency, which the caller
    /// records so that a server that stops acknowledging shows up in the tail instead of vanishing.
    pub fn sent(&mut self, seq: u32, due: Instant, now: Instant) -> Option<Duration> {
        debug_assert!(self.sent.back().map_or(true, |&(s, _)| s < seq));
        let evicted = if self.sent.len() == self.capacity {
            self.sent
                .pop_front()
                .map(|(_, at)| now.saturating_duration_since(at))
        } else {
            None
        };
        self.sent.push_back((seq, due));
        evicted
    }

    /// The server has applied every input up to `acked`: each one waiting gets `record(now - due)`.
    /// Returns how many were acknowledged.
    pub fn ack(&mut self, acked: u32, now: Instant, mut record: impl FnMut(Duration)) -> usize {
        let mut n = 0;
        while let Some(&(seq, due)) = self.sent.front() {
            if seq > acked {
                break;
            }
            record(now.saturating_duration_since(due));
            self.sent.pop_front();
            n += 1;
        }
        n
    }

    /// Forgets every waiting input (the connection is gone), returning how long each had waited by `now`.
    pub fn drain_ages(&mut self, now: Instant) -> impl Iterator<Item = Duration> + '_ {
        self.sent
            .drain(..)
            .map(move |(_, due)| now.saturating_duration_since(due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_update_acknowledges_every_input_up_to_its_seq_each_timed_from_its_due_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = PendingInputs::new(8);
        for seq in 1..=3 {
            assert_eq!(p.sent(seq, t0 + ms(10 * u64::from(seq)), t0), None);
        }
        let mut samples = Vec::new();
        assert_eq!(p.ack(2, t0 + ms(50), |d| samples.push(d)), 2);
        assert_eq!(samples, vec![ms(40), ms(30)]);
        assert_eq!(
            p.ack(2, t0 + ms(60), |d| samples.push(d)),
            0,
            "no double count"
        );
        assert_eq!(p.len(), 1);
        let ages: Vec<_> = p.drain_ages(t0 + ms(100)).collect();
        assert_eq!(ages, vec![ms(70)]);
        assert!(p.is_empty());
    }

    #[test]
    fn a_full_queue_gives_up_on_the_oldest_and_reports_its_age() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = PendingInputs::new(2);
        p.sent(1, t0, t0);
        p.sent(2, t0 + ms(10), t0 + ms(10));
        assert_eq!(p.sent(3, t0 + ms(20), t0 + ms(25)), Some(ms(25)));
        assert_eq!(p.len(), 2);
    }
}
