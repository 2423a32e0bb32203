//! Per-address admission: how many connections one client address holds open, and how fast it opens new
//! ones (a token bucket). Keyed by the TCP peer: an IPv4 address, or an IPv6 peer's /64 (one subscriber
//! usually gets a whole /64, so keying by the full address would give an attacker 2^64 identities).
//! `X-Forwarded-For` is never looked at: any client can write it. Time comes from the caller.
//!
//! The table is bounded: an entry goes as soon as its address has no open connection and its bucket is
//! full again (checked when its last connection goes, and by [`Peers::sweep`]); past `entries_max` a new
//! address is refused ([`Refused::TableFull`]) until entries go. Addresses already in the table are
//! unaffected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Who a connection counts against: an IPv4 address or an IPv6 /64 (IPv4-mapped IPv6 counts as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    V4(u32),
    V6Net64(u64),
}

impl PeerKey {
    pub fn of(ip: IpAddr) -> PeerKey {
        match ip {
            IpAddr::V4(v4) => PeerKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey::V4(u32::from(v4)),
                None => PeerKey::V6Net64((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The per-address limits; 0 turns each off.
#[derive(Debug, Clone, Copy)]
pub struct PeerLimits {
    /// Connections one address may hold open at once (`--max-connections-per-ip`).
    pub open_max: u32,
    /// New connections per second one address may open on average (`--accepts-per-ip-per-s`).
    pub accepts_per_s: f64,
    /// New connections one address may open at once after a quiet spell (`--accept-burst-per-ip`).
    pub accept_burst: f64,
    /// Addresses tracked at once (`--peer-table-max`).
    pub entries_max: usize,
    /// Rooms one address may have created that are still open (`--max-rooms-per-ip`); 0: no limit.
    pub rooms_max: u32,
}

impl PeerLimits {
    /// Whether any per-address limit is on; if none is, nothing is tracked.
    pub fn any(&self) -> bool {
        self.open_max > 0 || self.accepts_per_s > 0.0 || self.rooms_max > 0
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address already holds `open_max` connections.
    TooManyOpen,
    /// The address's bucket is empty.
    TooFast,
    /// The table holds `entries_max` addresses and this is a new one.
    TableFull,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    open: u32,
    /// Rooms this address created that are still open.
    rooms: u32,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Entry {
    fn refill(&mut self, limits: &PeerLimits, now: Instant) {
        let elapsed_s = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed_s * limits.accepts_per_s).min(limits.accept_burst);
        self.at = now;
    }

    /// No open connection, no open room and a full bucket: the entry says nothing a fresh one would not.
    fn idle(&self, limits: &PeerLimits) -> bool {
        self.open == 0
            && self.rooms == 0
            && (limits.accepts_per_s <= 0.0 || self.tokens >= limits.accept_burst)
    }
}

/// The table of addresses with open connections or a bucket still refilling.
#[derive(Debug)]
pub struct Peers {
    limits: PeerLimits,
    entries: HashMap<PeerKey, Entry>,
}

impl Peers {
    pub fn new(limits: PeerLimits) -> Self {
        Peers {
            limits,
            entries: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts a new connection from `key`, or says why not. An admitted connection must be
    /// [`release`](Self::release)d exactly once when it goes.
    pub fn admit(&mut self, key: PeerKey, now: Instant) -> Result<(), Refused> {
        let limits = self.limits;
        let full = self.entries.len() >= limits.entries_max;
        let entry = match self.entries.get_mut(&key) {
            Some(entry) => entry,
            None if full => return Err(Refused::TableFull),
            None => self.entries.entry(key).or_insert(Entry {
                open: 0,
                rooms: 0,
                tokens: limits.accept_burst,
                at: now,
            }),
        };
        entry.refill(&limits, now);
        if limits.open_max > 0 && entry.open >= limits.open_max {
            return Err(Refused::TooManyOpen);
        }
        if limits.accepts_per_s > 0.0 {
            if entry.tokens < 1.0 {
                return Err(Refused::TooFast);
            }
            entry.tokens -= 1.0;
        }
        entry.open += 1;
        Ok(())
    }

    /// A connection [`admit`](Self::admit)ted for `key` has gone.
    pub fn release(&mut self, key: PeerKey, now: Instant) {
        let limits = self.limits;
        let Some(entry) = self.entries.get_mut(&key) else {
            debug_assert!(false, "release of an address not in the table");
            return;
        };
        debug_assert!(entry.open > 0, "release without admit");
        entry.open = entry.open.saturating_sub(1);
        entry.refill(&limits, now);
        if entry.idle(&limits) {
            self.entries.remove(&key);
        }
    }

    /// Counts a room created by a connection from `key` (which holds an entry: the connection is open);
    /// false, and nothing counted, if the address already has `rooms_max` rooms open. A counted room must
    /// be [`room_gone`](Self::room_gone) exactly once.
    pub fn create_room(&mut self, key: PeerKey) -> bool {
        let rooms_max = self.limits.rooms_max;
        let Some(entry) = self.entries.get_mut(&key) else {
            debug_assert!(false, "a room created from an address not in the table");
            return true;
        };
        if rooms_max > 0 && entry.rooms >= rooms_max {
            return false;
        }
        entry.rooms += 1;
        true
    }

    /// A room [`create_room`](Self::create_room) counted for `key` is gone.
    pub fn room_gone(&mut self, key: PeerKey, now: Instant) {
        let limits = self.limits;
        let Some(entry) = self.entries.get_mut(&key) else {
            debug_assert!(false, "room_gone of an address not in the table");
            return;
        };
        debug_assert!(entry.rooms > 0, "room_gone without create_room");
        entry.rooms = entry.rooms.saturating_sub(1);
        entry.refill(&limits, now);
        if entry.idle(&limits) {
            self.entries.remove(&key);
        }
    }

    /// Removes every entry with no open connection or room whose bucket has refilled.
    pub fn sweep(&mut self, now: Instant) {
        let limits = self.limits;
        self.entries.retain(|_, entry| {
            entry.refill(&limits, now);
            !entry.idle(&limits)
        });
    }

    /// How long until `key` may open a connection as far as its bucket goes, rounded up to whole seconds
    /// (at least 1): the `Retry-After` of a [`Refused::TooFast`].
    pub fn retry_after_s(&self, key: PeerKey) -> u64 {
        let Some(entry) = self.entries.get(&key) else {
            return 1;
        };
        if self.limits.accepts_per_s <= 0.0 {
            return 1;
        }
        let wait_s = (1.0 - entry.tokens).max(0.0) / self.limits.accepts_per_s;
        wait_s.ceil().max(1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: PeerLimits = PeerLimits {
        open_max: 3,
        accepts_per_s: 2.0,
        accept_burst: 4.0,
        entries_max: 2,
        rooms_max: 2,
    };

    fn v4(s: &str) -> PeerKey {
        PeerKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_peers_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(v4("2001:db8:1:2::1"), v4("2001:db8:1:2:ffff::9"));
        assert_ne!(v4("2001:db8:1:2::1"), v4("2001:db8:1:3::1"));
        assert_eq!(v4("::ffff:10.0.0.1"), v4("10.0.0.1"));
        assert_ne!(v4("10.0.0.1"), v4("10.0.0.2"));
    }

    #[test]
    fn open_cap_then_release_admits_again() {
        let now = Instant::now();
        let mut p = Peers::new(PeerLimits {
            accepts_per_s: 0.0,
            ..LIMITS
        });
        let a = v4("10.0.0.1");
        for _ in 0..3 {
            assert_eq!(p.admit(a, now), Ok(()));
        }
        assert_eq!(p.admit(a, now), Err(Refused::TooManyOpen));
        p.release(a, now);
        assert_eq!(p.admit(a, now), Ok(()));
        for _ in 0..3 {
            p.release(a, now);
        }
        assert!(
            p.is_empty(),
            "an address with nothing open and no bucket goes at once"
        );
    }

    #[test]
    fn an_address_holds_at_most_rooms_max_rooms_and_its_entry_outlives_its_connections_while_it_does(
    ) {
        let now = Instant::now();
        let mut p = Peers::new(PeerLimits {
            accepts_per_s: 0.0,
            ..LIMITS
        });
        let a = v4("10.0.0.1");
        p.admit(a, now).unwrap();
        assert!(p.create_room(a));
        assert!(p.create_room(a));
        assert!(!p.create_room(a), "a third room from one address");
        p.release(a, now);
        assert_eq!(p.len(), 1, "its rooms are still open");
        p.room_gone(a, now);
        p.admit(a, now).unwrap();
        assert!(p.create_room(a), "one room gone, one more may be created");
        p.release(a, now);
        p.room_gone(a, now);
        p.room_gone(a, now);
        assert!(p.is_empty());
    }

    #[test]
    fn bucket_refuses_a_burst_and_refills_with_time() {
        let t0 = Instant::now();
        let mut p = Peers::new(PeerLimits {
            open_max: 0,
            ..LIMITS
        });
        let a = v4("10.0.0.1");
        for _ in 0..4 {
            assert_eq!(p.admit(a, t0), Ok(()));
        }
        assert_eq!(p.admit(a, t0), Err(Refused::TooFast));
        assert_eq!(p.retry_after_s(a), 1);
        assert_eq!(p.admit(a, t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(
            p.admit(a, t0 + Duration::from_millis(500)),
            Err(Refused::TooFast)
        );
    }

    #[test]
    fn the_table_is_bounded_and_entries_go_once_idle_and_refilled() {
        let t0 = Instant::now();
        let mut p = Peers::new(LIMITS);
        let (a, b, c) = (v4("10.0.0.1"), v4("10.0.0.2"), v4("10.0.0.3"));
        p.admit(a, t0).unwrap();
        p.admit(b, t0).unwrap();
        assert_eq!(p.admit(c, t0), Err(Refused::TableFull));
        // Known addresses still get in while the table is full.
        assert_eq!(p.admit(a, t0), Ok(()));
        p.release(b, t0);
        assert_eq!(p.len(), 2, "b's bucket is still refilling");
        p.sweep(t0 + Duration::from_millis(100));
        assert_eq!(p.len(), 2);
        p.sweep(t0 + Duration::from_secs(1));
        assert_eq!(
            p.len(),
            1,
            "b refilled (1 token at 2/s) and holds nothing open"
        );
        assert_eq!(p.admit(c, t0 + Duration::from_secs(1)), Ok(()));
    }
}
