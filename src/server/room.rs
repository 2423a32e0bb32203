//! Rooms: one match each, the unit of simulation and replication. A [`Room`] owns its game, its replicated
//! world and history, its tick schedule, its players (sessions) and the list of connections in it; the
//! update fan-out iterates that list, never every connection. [`Rooms`] is the loop's table of them: by
//! name (ordered, for `GET /rooms` pages), and by when each is next due to tick. The loop owns the rooms,
//! the connections and the clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Bound;
use std::time::{Duration, Instant};

use slab::Slab;

use super::sessions::{ConnRef, Sessions};
use crate::clock::TickSchedule;
use crate::config::{tick_period, Config};
use crate::net::conn::{Conn, Membership};
use crate::net::peers::PeerKey;
use crate::sim::{Game, Opening, PlayerId, RoomControl, RoomTypes};
use crate::sync::{Updates, World, WorldLimits};

/// The fraction of a tick period between the phases of consecutive rooms (the golden ratio's): any
/// number of rooms created one after another land spread over the period, never two on one instant.
const PHASE_STEP: f64 = 0.618_033_988_749_894_9;

pub(super) struct Room<G: Game> {
    /// Unique for the process's life (slab keys are reused).
    pub id: u64,
    pub name: Box<str>,
    /// Index of its type in the server's [`RoomTypes`].
    pub kind: usize,
    pub tick_hz: u16,
    pub max_players: Option<usize>,
    pub max_spectators: Option<usize>,
    pub created_unix_s: u64,
    /// The default room: never disposed for being idle, and opened anew when its game ends it.
    pub permanent: bool,
    /// The address that created it, while the per-address limits are on (`--max-rooms-per-ip`).
    pub creator: Option<PeerKey>,
    /// Some member said `Hello` or `Watch` here once. A room nobody ever entered is disposed as soon as
    /// it empties, not after `--room-idle-ms`: opening rooms and leaving costs a client its connections.
    pub entered: bool,
    pub game: G,
    pub world: World<G::State>,
    /// When its ticks are due; a late room catches up and skips on its own.
    pub schedule: TickSchedule,
    /// The frames of its current update phase, encoded once for all its members.
    pub updates: Updates,
    /// The tick every member that said `Hello` or `Watch` held after the last fan-out (none was held
    /// back, none is new since); `None` otherwise. While the world has not changed since (`World::
    /// changed_at`), `--skip-unchanged-updates` skips the fan-out without visiting a member. Cleared by a
    /// new role.
    pub members_current: Option<u64>,
    /// The last tick that skipped the fan-out so: it counts as an update for each member's lag.
    pub quiet_at: Instant,
    /// Every player from join to leave, by id and by resume token.
    pub sessions: Sessions,
    /// Every upgraded connection in this room (waiting for its `Hello` or `Watch`, watching, or playing),
    /// in no order; each knows its place (`Conn::membership`), so one leaves in O(1). Changed only by
    /// `add_member` and `remove_member`.
    pub members: Vec<ConnRef>,
    /// Members that sent `Watch` (and no `Hello` since).
    pub spectators: usize,
    /// What the game asked of the room during its last step.
    pub control: RoomControl,
    /// Since when it has had no members and no players; `None` while it has any.
    pub idle_since: Option<Instant>,
    /// Reused list of detached players whose time is up.
    pub expired: Vec<PlayerId>,
    /// Its ticks' durations over the last 10 to 20 s (the dashboard's tick p99).
    pub recent_ticks: crate::metrics::RecentTicks,
}

impl<G: Game> Room<G> {
    /// Connection `conn` (the one at `member.key`) is in this room (at slab key `key`) from now on; once.
    pub fn add_member(&mut self, key: usize, member: ConnRef, conn: &mut Conn) {
        debug_assert!(conn.membership.is_none(), "a connection is in one room");
        conn.membership = Some(Membership {
            room: key,
            at: self.members.len(),
        });
        self.members.push(member);
        self.idle_since = None;
    }

    /// Connection `conn` is going: it leaves the list. The member moved into its place is told where it
    /// now is, through `moved`.
    pub fn remove_member(&mut self, conn: &mut Conn, moved: impl FnOnce(ConnRef, usize)) {
        let Some(Membership { at, .. }) = conn.membership.take() else {
            return;
        };
        self.members.swap_remove(at);
        if let Some(&other) = self.members.get(at) {
            moved(other, at);
        }
    }

    /// Nobody in it: no connection, no player (detached players waiting to resume keep it alive).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.sessions.is_empty()
    }

    /// Players counted against `max_players`: every session, detached ones included.
    pub fn players(&self) -> usize {
        self.sessions.attached() + self.sessions.detached()
    }
}

/// Why a room could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CreateError {
    /// `--max-rooms` rooms are open.
    Limit,
    /// The game refused the options; its words.
    Refused(String),
}

pub(super) struct Rooms<G: Game> {
    pub types: RoomTypes<G>,
    slab: Slab<Room<G>>,
    by_name: BTreeMap<Box<str>, usize>,
    /// When each room's next tick is due, earliest first: (due, slab key, room id). One entry per room,
    /// pushed after each of its tick phases; an entry of a room since removed is dropped when it surfaces.
    due: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_id: u64,
    /// `--default-room`.
    default_name: String,
    limits: WorldLimits,
    catch_up_ticks_max: u32,
    default_tick_hz: u16,
    max_rooms: usize,
}

impl<G: Game> Rooms<G> {
    /// The table with its default room, `cfg.default_room` of the first type, created at `now`.
    pub fn new(
        cfg: &Config,
        types: RoomTypes<G>,
        now: Instant,
        unix_s: u64,
    ) -> Result<Self, String> {
        types.validate()?;
        let mut rooms = Rooms {
            types,
            slab: Slab::new(),
            by_name: BTreeMap::new(),
            due: BinaryHeap::new(),
            next_id: 0,
            default_name: cfg.default_room.clone(),
            limits: WorldLimits {
                entities_max: cfg.max_entities,
                history_ticks: cfg.history_ticks,
                despawn_log_max: cfg.despawn_log_max,
            },
            catch_up_ticks_max: cfg.catch_up_ticks_max,
            default_tick_hz: cfg.tick_hz,
            max_rooms: cfg.max_rooms,
        };
        rooms.open_default(now, unix_s)?;
        Ok(rooms)
    }

    /// Opens the default room (`--default-room`, of the first type, no options), permanent: at start, and
    /// again when its game ended it, so plain `/ws` always has a room.
    pub fn open_default(&mut self, now: Instant, unix_s: u64) -> Result<usize, String> {
        let name = self.default_name.clone();
        let kind = self.types.types[0].name.clone();
        let opening = Opening {
            name: &name,
            kind: &kind,
            options: &[],
        };
        let key = self
            .create(0, &opening, None, now, unix_s)
            .map_err(|e| match e {
                CreateError::Refused(why) => format!("the default room {name}: {why}"),
                CreateError::Limit => format!("the default room {name}: --max-rooms reached"),
            })?;
        self.slab[key].permanent = true;
        Ok(key)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, key: usize) -> &Room<G> {
        &self.slab[key]
    }

    pub fn get_mut(&mut self, key: usize) -> &mut Room<G> {
        &mut self.slab[key]
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &Room<G>)> {
        self.slab.iter()
    }

    /// The rooms a cluster directory holds for this process, with their free seats: every room but the
    /// default one, which is each process's own.
    pub fn beats(&self) -> Vec<crate::cluster::RoomBeat> {
        let rooms = self.slab.iter().map(|(_, room)| room);
        rooms
            .filter(|r| !r.permanent)
            .map(|r| self.beat(r))
            .collect()
    }

    /// Room `room` as the directory sees it.
    pub fn beat(&self, room: &Room<G>) -> crate::cluster::RoomBeat {
        crate::cluster::RoomBeat {
            name: room.name.clone(),
            kind: self.types.types[room.kind].name.as_str().into(),
            free: room
                .max_players
                .map(|max| max.saturating_sub(room.players())),
        }
    }

    /// Up to `limit` rooms named after `after`, in name order.
    pub fn page(&self, after: Option<&str>, limit: usize) -> impl Iterator<Item = &Room<G>> {
        let from = match after {
            Some(name) => Bound::Excluded(name),
            None => Bound::Unbounded,
        };
        self.by_name
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .map(|(_, &key)| &self.slab[key])
    }

    /// Creates room `opening.name` (not open yet) of type `kind`, by a client at `creator`; its slab key.
    pub fn create(
        &mut self,
        kind: usize,
        opening: &Opening<'_>,
        creator: Option<PeerKey>,
        now: Instant,
        unix_s: u64,
    ) -> Result<usize, CreateError> {
        debug_assert!(self.find(opening.name).is_none());
        if self.slab.len() >= self.max_rooms {
            return Err(CreateError::Limit);
        }
        let room_type = &mut self.types.types[kind];
        let mut world = World::new(self.limits);
        let game = (room_type.make)(&mut world, opening).map_err(CreateError::Refused)?;
        let tick_hz = room_type.tick_hz.unwrap_or(self.default_tick_hz);
        let period = tick_period(tick_hz);
        let id = self.next_id;
        self.next_id += 1;
        // Each room ticks at its own phase of the period, so rooms do not all tick at one instant.
        let phase = period.mul_f64((id as f64 * PHASE_STEP).fract());
        let room = Room {
            id,
            name: opening.name.into(),
            kind,
            tick_hz,
            max_players: room_type.max_players,
            max_spectators: room_type.max_spectators,
            created_unix_s: unix_s,
            permanent: false,
            creator,
            entered: false,
            game,
            world,
            schedule: TickSchedule::new(now + phase, period, self.catch_up_ticks_max),
            updates: Updates::default(),
            members_current: None,
            quiet_at: now,
            sessions: Sessions::default(),
            members: Vec::new(),
            spectators: 0,
            control: RoomControl::default(),
            idle_since: Some(now),
            expired: Vec::new(),
            recent_ticks: Default::default(),
        };
        let due = room.schedule.next_due();
        let key = self.slab.insert(room);
        self.by_name.insert(opening.name.into(), key);
        self.due.push(Reverse((due, key, id)));
        Ok(key)
    }

    /// Removes room `key`, which no connection is in any more.
    pub fn remove(&mut self, key: usize) -> Room<G> {
        let room = self.slab.remove(key);
        debug_assert!(
            room.members.is_empty(),
            "connections left in a removed room"
        );
        self.by_name.remove(&room.name);
        room
    }

    /// When the next room is due to tick, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((due, _, _))| *due)
    }

    /// A room whose tick is due at `now`, taken off the schedule: the caller runs it, then puts it back
    /// with [`Self::scheduled`]. Each room comes at most once per turn (its next tick is in the future once
    /// run), so a turn runs at most every room once.
    pub fn take_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(&Reverse((due, key, id))) = self.due.peek() {
            if due > now {
                return None;
            }
            self.due.pop();
            if self.slab.get(key).is_some_and(|room| room.id == id) {
                return Some(key);
            }
        }
        None
    }

    /// Puts room `key`, just run, back on the schedule.
    pub fn scheduled(&mut self, key: usize) {
        let room = &self.slab[key];
        self.due
            .push(Reverse((room.schedule.next_due(), key, room.id)));
    }

    /// Rooms (not the default one) empty for `idle` at `now`, and those nobody ever entered that are
    /// empty now; marks the newly empty ones.
    pub fn idle(&mut self, now: Instant, idle: Duration, out: &mut Vec<usize>) {
        out.clear();
        for (key, room) in self.slab.iter_mut() {
            if room.permanent || !room.is_empty() {
                room.idle_since = None;
                continue;
            }
            let since = *room.idle_since.get_or_insert(now);
            if !room.entered || now.saturating_duration_since(since) >= idle {
                out.push(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::arena::ArenaSettings;

    #[test]
    fn the_ticks_of_rooms_created_together_are_spread_over_the_period() {
        const ROOMS: usize = 200;
        let cfg = Config {
            max_rooms: ROOMS + 1,
            ..Config::default()
        };
        let now = Instant::now();
        let mut rooms = Rooms::new(&cfg, ArenaSettings::default().room_types(), now, 0).unwrap();
        for i in 0..ROOMS {
            let name = format!("r{i}");
            let opening = Opening {
                name: &name,
                kind: "arena",
                options: &[],
            };
            rooms.create(0, &opening, None, now, 0).unwrap();
        }
        let period = cfg.tick_duration();
        let mut due: Vec<Duration> = rooms
            .iter()
            .map(|(_, room)| room.schedule.next_due() - now - period)
            .collect();
        due.sort_unstable();
        assert!(due.iter().all(|d| *d < period), "phases within one period");
        let mut gaps: Vec<Duration> = due.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.push(period - due[ROOMS] + due[0]);
        // No two rooms on one instant, and no gap more than three times the even share: the golden ratio
        // sequence leaves gaps of at most three sizes.
        let even = period / (ROOMS as u32 + 1);
        assert!(gaps.iter().all(|g| !g.is_zero()), "two rooms tick at once");
        assert!(
            gaps.iter().all(|g| *g < even * 3),
            "a gap of {:?}",
            gaps.iter().max()
        );
    }

    #[test]
    fn a_room_comes_off_the_schedule_once_per_due_tick_and_a_removed_one_never() {
        let cfg = Config::default();
        let now = Instant::now();
        let mut rooms = Rooms::new(&cfg, ArenaSettings::default().room_types(), now, 0).unwrap();
        let opening = Opening {
            name: "gone",
            kind: "arena",
            options: &[],
        };
        let gone = rooms.create(0, &opening, None, now, 0).unwrap();
        rooms.remove(gone);
        let later = now + cfg.tick_duration() * 2;
        let key = rooms.take_due(later).expect("the default room is due");
        assert_eq!(rooms.get(key).name.as_ref(), "default");
        assert_eq!(
            rooms.take_due(later),
            None,
            "taken once; the removed room's entry is dropped"
        );
        rooms.get_mut(key).schedule.due(later);
        rooms.scheduled(key);
        assert_eq!(
            rooms.take_due(later),
            None,
            "its next tick is in the future"
        );
        assert_eq!(rooms.next_due(), Some(rooms.get(key).schedule.next_due()));
    }
}
