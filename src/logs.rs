//! What the library logs, and the bound on how much. The library only emits `tracing` events; the binary
//! (`src/main.rs`) installs the subscriber that writes them to stderr, as text or JSON
//! (`docs/OPERATIONS.md`, "Logs").
//!
//! Events that a client can cause at will (a limit it hit, a room it made) go through [`Warnings`]: at
//! most a few of each kind per second, the rest counted and reported as `suppressed` on the next one of
//! that kind that passes. So however hard a flood tries, what it writes to the log is bounded, and the
//! loop thread (whose writes to stderr are blocking) never spends its turn logging. The limiter takes the
//! loop's `now`: it reads no clock.
//!
//! No event carries a ticket, a resume token, a secret, a request URL or a query string: a connection is
//! named by its id and peer address, a room by its name.

use std::time::{Duration, Instant};

/// The kinds of rate-limited events, each with its own budget per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// A client's frames over `--messages-per-s` were dropped.
    MessagesDropped,
    /// A client was closed for its frame rate (`--message-drop-limit`).
    RateLimited,
    /// A slow consumer was closed (`--lag-limit-ms`, `--first-update-lag-limit-ms`, `--send-limit-bytes`).
    SlowConsumer,
    /// `accept` failed (out of file descriptors, say).
    AcceptError,
    /// A connection refused at the accept: `--max-connections`, the per-address limits, the peer table.
    ConnectionLimit,
    /// A room created or disposed: lifecycle, but clients cause it, so it is bounded too.
    Room,
}

impl Warning {
    const ALL: [Warning; 6] = [
        Warning::MessagesDropped,
        Warning::RateLimited,
        Warning::SlowConsumer,
        Warning::AcceptError,
        Warning::ConnectionLimit,
        Warning::Room,
    ];

    /// Events of this kind let through per second.
    pub fn per_s(self) -> u32 {
        match self {
            Warning::Room => ROOM_EVENTS_PER_S,
            _ => WARNINGS_PER_S,
        }
    }

    /// The `kind` field of its events.
    pub fn name(self) -> &'static str {
        match self {
            Warning::MessagesDropped => "messages_dropped",
            Warning::RateLimited => "rate_limited",
            Warning::SlowConsumer => "slow_consumer",
            Warning::AcceptError => "accept_error",
            Warning::ConnectionLimit => "connection_limit",
            Warning::Room => "room",
        }
    }
}

/// Warnings of one kind let through per second.
pub const WARNINGS_PER_S: u32 = 5;
/// Room created / disposed events let through per second.
pub const ROOM_EVENTS_PER_S: u32 = 50;
const WINDOW: Duration = Duration::from_secs(1);

/// One kind's window: when it began, what it let through, what it held back since the last one let
/// through.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

/// The per-kind limiter: a fixed array, one window per [`Warning`] kind (bounded memory, no allocation).
#[derive(Debug, Clone)]
pub struct Warnings {
    windows: [Window; Warning::ALL.len()],
}

impl Default for Warnings {
    fn default() -> Self {
        let empty = Window {
            start: None,
            passed: 0,
            suppressed: 0,
        };
        Warnings {
            windows: [empty; Warning::ALL.len()],
        }
    }
}

impl Warnings {
    /// Whether an event of `kind` may be logged at `now`: `Some(suppressed)`, how many of its kind were
    /// held back since the last one let through, or `None` (this one is counted instead).
    pub fn admit(&mut self, kind: Warning, now: Instant) -> Option<u64> {
        let w = &mut self.windows[kind as usize];
        let fresh = match w.start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= WINDOW,
        };
        if fresh {
            w.start = Some(now);
            w.passed = 0;
        }
        if w.passed >= kind.per_s() {
            w.suppressed += 1;
            return None;
        }
        w.passed += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    #[test]
    fn each_kind_passes_its_budget_per_second_and_the_next_one_through_counts_the_rest() {
        let clock = ManualClock::new(Instant::now());
        let mut w = Warnings::default();
        for _ in 0..WARNINGS_PER_S {
            assert_eq!(w.admit(Warning::RateLimited, clock.now()), Some(0));
        }
        for _ in 0..7 {
            assert_eq!(w.admit(Warning::RateLimited, clock.now()), None);
        }
        // Another kind has its own budget.
        assert_eq!(w.admit(Warning::AcceptError, clock.now()), Some(0));
        clock.advance(Duration::from_millis(999));
        assert_eq!(w.admit(Warning::RateLimited, clock.now()), None);
        clock.advance(Duration::from_millis(1));
        assert_eq!(w.admit(Warning::RateLimited, clock.now()), Some(8));
        assert_eq!(w.admit(Warning::RateLimited, clock.now()), Some(0));
    }

    #[test]
    fn room_events_have_a_larger_budget() {
        let clock = ManualClock::new(Instant::now());
        let mut w = Warnings::default();
        let passed = (0..1000)
            .filter(|_| w.admit(Warning::Room, clock.now()).is_some())
            .count();
        assert_eq!(passed, ROOM_EVENTS_PER_S as usize);
        clock.advance(WINDOW);
        assert_eq!(w.admit(Warning::Room, clock.now()), Some(1000 - 50));
    }

    #[test]
    fn kinds_index_their_own_window() {
        for (i, kind) in Warning::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i);
        }
    }
}
