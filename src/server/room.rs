//! A room: one match, the unit of simulation and replication. It owns its game, its replicated world and
//! history, its tick schedule, its players (sessions) and the list of connections that play or watch in
//! it; the update fan-out iterates that list, never every connection. The loop owns the rooms, the
//! connections and the clock. (One room per process for now: the default room every `/ws` joins.)

use std::time::Instant;

use super::sessions::{ConnRef, Sessions};
use crate::clock::TickSchedule;
use crate::config::Config;
use crate::net::conn::Conn;
use crate::sim::{Game, PlayerId};
use crate::sync::{Updates, World, WorldLimits};

pub(super) struct Room<G: Game> {
    pub game: G,
    pub world: World<G::State>,
    /// When its ticks are due; a late room catches up and skips on its own.
    pub schedule: TickSchedule,
    /// The frames of its current update phase, encoded once for all its members.
    pub updates: Updates,
    /// Every player from join to leave, by id and by resume token.
    pub sessions: Sessions,
    /// The connections that play or watch here (`Hello` or `Watch` said), in no order; each knows its
    /// place (`Conn::member_at`), so one leaves in O(1). Changed only by `add_member` and `remove_member`.
    pub members: Vec<ConnRef>,
    /// Reused list of detached players whose time is up.
    pub expired: Vec<PlayerId>,
}

impl<G: Game> Room<G> {
    /// A room whose game `make_game` builds against its fresh world, ticking from `now`.
    pub fn new(
        cfg: &Config,
        now: Instant,
        make_game: impl FnOnce(&mut World<G::State>) -> G,
    ) -> Self {
        let mut world = World::new(WorldLimits {
            entities_max: cfg.max_entities,
            history_ticks: cfg.history_ticks,
            despawn_log_max: cfg.despawn_log_max,
        });
        let game = make_game(&mut world);
        Room {
            game,
            world,
            schedule: TickSchedule::new(now, cfg.tick_duration(), cfg.catch_up_ticks_max),
            updates: Updates::default(),
            sessions: Sessions::default(),
            members: Vec::new(),
            expired: Vec::new(),
        }
    }

    /// Connection `conn` (the one at `member.key`) plays or watches here from now on; once.
    pub fn add_member(&mut self, member: ConnRef, conn: &mut Conn) {
        if conn.member_at.is_none() {
            conn.member_at = Some(self.members.len());
            self.members.push(member);
        }
    }

    /// Connection `conn` is going: it leaves the list. The member moved into its place is told where it
    /// now is, through `moved`.
    pub fn remove_member(&mut self, conn: &mut Conn, moved: impl FnOnce(ConnRef, usize)) {
        let Some(at) = conn.member_at.take() else {
            return;
        };
        self.members.swap_remove(at);
        if let Some(&other) = self.members.get(at) {
            moved(other, at);
        }
    }
}
