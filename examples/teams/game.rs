//! The teams game: two teams, red and blue; each player commands a squad of units that march between the
//! bases and fire at enemies in range. A hit takes one hit point; a unit out of hit points goes back to
//! its base whole, and the shooter's team scores. The match ends when a team reaches the score, when time
//! runs out (the higher score wins, or a draw), or when a team concedes or has nobody left.
//!
//! What it shows of the API (`docs/GAME-API.md` walks through it):
//!
//! - a player owns several entities: `join` returns the player's *primary* entity (a `Player` record:
//!   team and acknowledged input `seq`), the one `Joined` names; its units say whose they are with
//!   `owner`, the primary entity's id;
//! - one state type for entities of several kinds (an enum), with a compact diff per kind;
//! - discrete events clients must not miss, in the replicated state: the board's score and hit counter
//!   only grow, and it keeps the last hit, so a client that was skipped and catches up with one coalesced
//!   delta (or a `Full`) sees every point and counts every hit;
//! - commands as inputs (an order for one unit, a concession) queued with `InputQueue`, so a newer input
//!   never overwrites one a step has not seen, and acknowledged through the primary entity's `seq`;
//! - a match that ends: the last update carries the result (`Phase::Over`), then every connection is
//!   closed with 4007 `room ended: <result>`.
//!
//! Deterministic: no clock, positions from a seeded `Rng`, every loop in entity id order.

// Shared with tests/example_teams.rs, which uses all of it; the example binary does not.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tickcast::sim::{
    Game, InputQueue, Joining, Opening, PlayerId, Rng, RoomControl, RoomType, RoomTypes,
};
use tickcast::sync::{EntityId, Replicate, World};

// ---- the rules ----------------------------------------------------------------------------------------

/// The field, in units: red's base is the left edge, blue's the right.
pub const FIELD_W: f32 = 800.0;
pub const FIELD_H: f32 = 400.0;
/// How far from its edge a team's base is.
pub const BASE_INSET: f32 = 40.0;
/// Units per second.
pub const SPEED: f32 = 120.0;
/// How far a unit fires.
pub const RANGE: f32 = 40.0;
/// Seconds between two shots of one unit.
pub const COOLDOWN_S: f32 = 0.5;
pub const HP_MAX: u8 = 3;
pub const TEAM_NAMES: [&str; 2] = ["red", "blue"];

/// The room options (`/ws/ROOM?units=5&score=10&match_s=120`), given by the client that creates the
/// room: units per player, the score that wins, and the match's length in seconds, with their bounds.
pub const UNITS_DEFAULT: u16 = 3;
pub const UNITS_MAX: u16 = 64;
pub const SCORE_DEFAULT: u16 = 20;
pub const SCORE_MAX: u16 = 10_000;
pub const MATCH_S_DEFAULT: u16 = 180;
pub const MATCH_S_MAX: u16 = 3_600;
/// Most players in one room (and so most entities: 1 + players x (1 + units)).
pub const PLAYERS_MAX: usize = 8;
/// `TeamsInput::Order::unit` for every unit of the player.
pub const ALL_UNITS: u8 = u8::MAX;

/// The rules of one room, from its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub units: u16,
    pub score_to_win: u16,
    pub match_s: u16,
}

impl Rules {
    /// The rules a room is opened with: its options, each within its bounds, else the defaults.
    pub fn from_opening(opening: &Opening<'_>) -> Result<Rules, String> {
        let option = |key: &str, default: u16, max: u16| match opening.option(key) {
            None => Ok(default),
            Some(v) => match v.parse::<u16>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("{key} must be 1 to {max}")),
            },
        };
        Ok(Rules {
            units: option("units", UNITS_DEFAULT, UNITS_MAX)?,
            score_to_win: option("score", SCORE_DEFAULT, SCORE_MAX)?,
            match_s: option("match_s", MATCH_S_DEFAULT, MATCH_S_MAX)?,
        })
    }
}

/// The game's settings as the example's `main` serves it (the server's are its `Config`).
#[derive(Debug, Clone, Copy)]
pub struct TeamsSettings {
    pub tick_hz: u16,
    /// Mixed with each room's name: rooms of one seed differ, and a room is reproducible.
    pub seed: u64,
}

impl Default for TeamsSettings {
    fn default() -> Self {
        TeamsSettings {
            tick_hz: 30,
            seed: 1,
        }
    }
}

impl TeamsSettings {
    /// One room type, `teams`, at `tick_hz`, at most [`PLAYERS_MAX`] players a room.
    pub fn room_types(self) -> RoomTypes<Teams> {
        let make = move |world: &mut World<TeamsEntity>, opening: &Opening<'_>| {
            let rules = Rules::from_opening(opening)?;
            let mut name_hash = tickcast::proto::Fnv1a::new();
            name_hash.write(opening.name.as_bytes());
            Teams::new(world, rules, self.seed ^ name_hash.finish())
        };
        RoomTypes::new(
            RoomType::new("teams", make)
                .tick_hz(self.tick_hz)
                .max_players(PLAYERS_MAX),
        )
    }
}

// ---- what clients see -----------------------------------------------------------------------------------

/// One replicated entity. Its kind never changes while it lives (an id reused later is a new spawn, sent
/// whole), so the diff needs no case for a change of kind beyond `Replace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeamsEntity {
    /// The match: one per room, spawned first (id 0).
    Board(Board),
    /// A player's primary entity: its team and the last input `seq` the game applied (the ack).
    Player { team: u8, seq: u32 },
    /// One unit: whose (the owner's primary entity), its team, its position in whole units, hit points.
    Unit {
        owner: EntityId,
        team: u8,
        x: u16,
        y: u16,
        hp: u8,
    },
}

/// The match as everyone sees it. `score` and `hits` only grow while the room lives: a client holding an
/// older board knows exactly how many points and hits it did not see one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    pub phase: Phase,
    /// Points of red and blue.
    pub score: [u16; 2],
    /// Hits since the match began.
    pub hits: u32,
    /// The latest hit.
    pub last_hit: Option<Hit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Until both teams have a player.
    Waiting,
    /// The match runs until tick `ends_at` at the latest.
    Playing { ends_at: u64 },
    /// Over: the last update of the room; `winner` is a team, `None` for a draw.
    Over { winner: Option<u8>, why: Ending },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    Score,
    Time,
    /// The losing team conceded, or has no player left.
    Forfeit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub tick: u64,
    pub shooter: EntityId,
    pub target: EntityId,
}

/// The change of an entity over a tick: a unit's steps and hit points, a player's ack, or (the board, a
/// few times a match) the new state whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeamsDiff {
    Unit { dx: i16, dy: i16, dhp: i8 },
    Player { dseq: u32 },
    Replace(TeamsEntity),
}

impl Replicate for TeamsEntity {
    type Diff = TeamsDiff;

    fn diff(&self, prev: &Self) -> TeamsDiff {
        use TeamsEntity::{Player, Unit};
        match (*self, *prev) {
            (
                Unit {
                    owner,
                    team,
                    x,
                    y,
                    hp,
                },
                Unit {
                    owner: o,
                    team: t,
                    x: px,
                    y: py,
                    hp: php,
                },
            ) if (owner, team) == (o, t) => TeamsDiff::Unit {
                dx: x.wrapping_sub(px) as i16,
                dy: y.wrapping_sub(py) as i16,
                dhp: hp.wrapping_sub(php) as i8,
            },
            (Player { team, seq }, Player { team: t, seq: s }) if team == t => TeamsDiff::Player {
                dseq: seq.wrapping_sub(s),
            },
            _ => TeamsDiff::Replace(*self),
        }
    }

    fn apply(&mut self, diff: &TeamsDiff) {
        match (self, diff) {
            (TeamsEntity::Unit { x, y, hp, .. }, TeamsDiff::Unit { dx, dy, dhp }) => {
                *x = x.wrapping_add(*dx as u16);
                *y = y.wrapping_add(*dy as u16);
                *hp = hp.wrapping_add(*dhp as u8);
            }
            (TeamsEntity::Player { seq, .. }, TeamsDiff::Player { dseq }) => {
                *seq = seq.wrapping_add(*dseq);
            }
            (state, TeamsDiff::Replace(new)) => *state = *new,
            // A diff of another kind is a broken server: left as it is, the checksum will say so.
            _ => {}
        }
    }
}

/// What a player sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeamsInput {
    /// Unit `unit` of the player's squad (0-based, [`ALL_UNITS`] for all) heads in direction `(dx, dy)`;
    /// `(0, 0)` gives it back to its march between the bases.
    Order { unit: u8, dx: i8, dy: i8 },
    /// The player's team gives up: the other one wins.
    Concede,
}

// ---- the game -----------------------------------------------------------------------------------------

/// One room's match.
#[derive(Debug)]
pub struct Teams {
    rules: Rules,
    board_id: EntityId,
    board: Board,
    players: BTreeMap<PlayerId, Member>,
    /// Every unit, by entity id (the order shots are resolved in).
    units: BTreeMap<EntityId, Body>,
    inputs: InputQueue<TeamsInput>,
    rng: Rng,
}

#[derive(Debug)]
struct Member {
    entity: EntityId,
    team: u8,
    /// The player's units, in squad order (what `Order::unit` counts).
    units: Vec<EntityId>,
}

#[derive(Debug)]
struct Body {
    owner: EntityId,
    team: u8,
    x: f32,
    y: f32,
    hp: u8,
    cooldown_s: f32,
    /// A player's order (a unit direction), else `None`: march, `heading` along x.
    order: Option<(f32, f32)>,
    heading: f32,
}

impl Body {
    fn replicated(&self) -> TeamsEntity {
        TeamsEntity::Unit {
            owner: self.owner,
            team: self.team,
            x: self.x.round() as u16,
            y: self.y.round() as u16,
            hp: self.hp,
        }
    }

    /// Back at its base, whole, marching towards the enemy.
    fn respawn(&mut self) {
        self.x = base_x(self.team);
        self.hp = HP_MAX;
        self.cooldown_s = 0.0;
        self.heading = toward_enemy(self.team);
    }

    fn advance(&mut self, dt_s: f32) {
        let (vx, vy) = self.order.unwrap_or((self.heading, 0.0));
        self.x = (self.x + vx * SPEED * dt_s).clamp(0.0, FIELD_W);
        self.y = (self.y + vy * SPEED * dt_s).clamp(0.0, FIELD_H);
        // A marching unit turns at either base.
        if self.order.is_none() {
            if self.x >= base_x(1) {
                self.heading = -1.0;
            } else if self.x <= base_x(0) {
                self.heading = 1.0;
            }
        }
    }
}

fn base_x(team: u8) -> f32 {
    match team {
        0 => BASE_INSET,
        _ => FIELD_W - BASE_INSET,
    }
}

fn toward_enemy(team: u8) -> f32 {
    match team {
        0 => 1.0,
        _ => -1.0,
    }
}

impl Teams {
    /// A match of `rules`, reproducible from `seed`: spawns the board (the room's first entity).
    pub fn new(world: &mut World<TeamsEntity>, rules: Rules, seed: u64) -> Result<Teams, String> {
        let board = Board {
            phase: Phase::Waiting,
            score: [0, 0],
            hits: 0,
            last_hit: None,
        };
        let board_id = world
            .spawn(TeamsEntity::Board(board))
            .ok_or("the world holds no entity")?;
        Ok(Teams {
            rules,
            board_id,
            board,
            players: BTreeMap::new(),
            units: BTreeMap::new(),
            inputs: InputQueue::default(),
            rng: Rng::new(seed),
        })
    }

    fn team_size(&self, team: u8) -> usize {
        self.players.values().filter(|m| m.team == team).count()
    }

    /// Applies what `player` sent since the last step; whether its team conceded.
    fn obey(&mut self, world: &mut World<TeamsEntity>, player: PlayerId) -> bool {
        let Some(member) = self.players.get(&player) else {
            return false;
        };
        let mut conceded = false;
        for (_seq, input) in self.inputs.drain(player) {
            match input {
                TeamsInput::Order { unit, dx, dy } => {
                    let (dx, dy) = (f32::from(dx), f32::from(dy));
                    let len = (dx * dx + dy * dy).sqrt();
                    let order = (len > 0.0).then(|| (dx / len, dy / len));
                    let squad = &member.units;
                    let chosen = match unit {
                        ALL_UNITS => &squad[..],
                        i => squad.get(usize::from(i)..=usize::from(i)).unwrap_or(&[]),
                    };
                    for id in chosen {
                        self.units.get_mut(id).expect("a squad's unit").order = order;
                    }
                }
                TeamsInput::Concede => conceded = true,
            }
        }
        // The ack: the last seq the game took, on the player's primary entity.
        let seq = self.inputs.acked(player);
        world.set(
            member.entity,
            TeamsEntity::Player {
                team: member.team,
                seq,
            },
        );
        conceded
    }

    /// Every unit that can fires at the nearest enemy in range (positions as the tick began; ties to the
    /// lower id); a unit out of hit points goes home and the shooter's team scores.
    /// Each ready unit shoots the nearest enemy in range. A scan of every unit per unit: O(units²) per
    /// tick, 262,144 distance checks at the bounds (8 players x 64 units). Fine for an example; a game
    /// that lets clients create such rooms should keep a spatial grid, or bound players x units lower,
    /// because a step's cost is what one client can make the loop pay per room it creates.
    fn fire(&mut self, tick: u64, dt_s: f32) {
        let mut shots = Vec::new();
        for (&id, body) in &self.units {
            if body.cooldown_s > 0.0 {
                continue;
            }
            let nearest = self
                .units
                .iter()
                .filter(|(_, other)| other.team != body.team)
                .map(|(&other_id, other)| {
                    let (dx, dy) = (other.x - body.x, other.y - body.y);
                    (dx * dx + dy * dy, other_id)
                })
                .filter(|&(d2, _)| d2 <= RANGE * RANGE)
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            if let Some((_, target)) = nearest {
                shots.push((id, target));
            }
        }
        for body in self.units.values_mut() {
            body.cooldown_s = (body.cooldown_s - dt_s).max(0.0);
        }
        for (shooter, target) in shots {
            let team = self.units[&shooter].team;
            self.units.get_mut(&shooter).expect("shooter").cooldown_s = COOLDOWN_S;
            let hit = self.units.get_mut(&target).expect("target");
            hit.hp = hit.hp.saturating_sub(1);
            if hit.hp == 0 {
                hit.respawn();
                let score = &mut self.board.score[usize::from(team)];
                *score = score.saturating_add(1);
            }
            self.board.hits += 1;
            self.board.last_hit = Some(Hit {
                tick,
                shooter,
                target,
            });
        }
    }

    /// How the match ends at `tick`, if it does: a concession, a team with nobody, the score, the time.
    fn result(&self, tick: u64, ends_at: u64, conceded: [bool; 2]) -> Option<(Option<u8>, Ending)> {
        let [red, blue] = self.board.score;
        for team in 0..2u8 {
            if conceded[usize::from(team)] || self.team_size(team) == 0 {
                return Some((Some(1 - team), Ending::Forfeit));
            }
        }
        let goal = self.rules.score_to_win;
        if red >= goal || blue >= goal {
            return Some((Some(if red >= goal { 0 } else { 1 }), Ending::Score));
        }
        (tick >= ends_at).then(|| {
            let winner = match red.cmp(&blue) {
                std::cmp::Ordering::Greater => Some(0),
                std::cmp::Ordering::Less => Some(1),
                std::cmp::Ordering::Equal => None,
            };
            (winner, Ending::Time)
        })
    }
}

/// The text after `room ended: ` in the 4007 close: `red wins 5-3 (score)`, `draw 2-2 (time)`.
pub fn result_text(board: &Board) -> Option<String> {
    let Phase::Over { winner, why } = board.phase else {
        return None;
    };
    let [red, blue] = board.score;
    let why = match why {
        Ending::Score => "score",
        Ending::Time => "time",
        Ending::Forfeit => "forfeit",
    };
    Some(match winner {
        Some(team) => format!(
            "{} wins {red}-{blue} ({why})",
            TEAM_NAMES[usize::from(team)]
        ),
        None => format!("draw {red}-{blue} ({why})"),
    })
}

impl Game for Teams {
    type Input = TeamsInput;
    type State = TeamsEntity;

    /// Joins the smaller team (red on a tie) with a squad at its base; returns the player's record, its
    /// primary entity. Refused (1013) when the world cannot hold the whole squad.
    fn join(
        &mut self,
        world: &mut World<TeamsEntity>,
        player: PlayerId,
        _joining: Joining<'_>,
    ) -> Option<EntityId> {
        let team = u8::from(self.team_size(1) < self.team_size(0));
        let entity = world.spawn(TeamsEntity::Player { team, seq: 0 })?;
        let mut units = Vec::with_capacity(usize::from(self.rules.units));
        for _ in 0..self.rules.units {
            let mut body = Body {
                owner: entity,
                team,
                x: 0.0,
                y: BASE_INSET + self.rng.next_f32() * (FIELD_H - 2.0 * BASE_INSET),
                hp: HP_MAX,
                cooldown_s: 0.0,
                order: None,
                heading: 0.0,
            };
            body.respawn();
            let Some(id) = world.spawn(body.replicated()) else {
                // Not enough room for the squad: undo the join.
                for id in units {
                    world.despawn(id);
                    self.units.remove(&id);
                }
                world.despawn(entity);
                return None;
            };
            self.units.insert(id, body);
            units.push(id);
        }
        let member = Member {
            entity,
            team,
            units,
        };
        self.players.insert(player, member);
        Some(entity)
    }

    fn leave(&mut self, world: &mut World<TeamsEntity>, player: PlayerId) {
        if let Some(member) = self.players.remove(&player) {
            for id in member.units {
                self.units.remove(&id);
                world.despawn(id);
            }
            world.despawn(member.entity);
        }
        self.inputs.remove(player);
    }

    /// A player whose connection dropped: its units march on their own until it is back.
    fn detached(&mut self, _world: &mut World<TeamsEntity>, player: PlayerId) {
        if let Some(member) = self.players.get(&player) {
            for id in &member.units {
                self.units.get_mut(id).expect("a squad's unit").order = None;
            }
        }
    }

    fn input(&mut self, player: PlayerId, seq: u32, input: TeamsInput) {
        self.inputs.push(player, seq, input);
    }

    fn step(
        &mut self,
        world: &mut World<TeamsEntity>,
        tick: u64,
        dt_s: f32,
        room: &mut RoomControl,
    ) {
        let mut conceded = [false; 2];
        let players: Vec<PlayerId> = self.players.keys().copied().collect();
        for player in players {
            if self.obey(world, player) {
                conceded[usize::from(self.players[&player].team)] = true;
            }
        }
        match self.board.phase {
            Phase::Waiting if self.team_size(0) > 0 && self.team_size(1) > 0 => {
                let ticks = (f32::from(self.rules.match_s) / dt_s).round() as u64;
                self.board.phase = Phase::Playing {
                    ends_at: tick + ticks,
                };
            }
            Phase::Playing { ends_at } => {
                for body in self.units.values_mut() {
                    body.advance(dt_s);
                }
                self.fire(tick, dt_s);
                if let Some((winner, why)) = self.result(tick, ends_at, conceded) {
                    self.board.phase = Phase::Over { winner, why };
                    room.end(result_text(&self.board).expect("over"));
                }
            }
            _ => {}
        }
        world.set(self.board_id, TeamsEntity::Board(self.board));
        for (&id, body) in &self.units {
            world.set(id, body.replicated());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_diff_applies_exactly() {
        let unit = |x, hp| TeamsEntity::Unit {
            owner: 1,
            team: 0,
            x,
            y: 7,
            hp,
        };
        let board = TeamsEntity::Board(Board {
            phase: Phase::Waiting,
            score: [1, 2],
            hits: 3,
            last_hit: None,
        });
        let player = |seq| TeamsEntity::Player { team: 1, seq };
        let pairs = [
            (unit(10, 3), unit(0, 1)),
            (unit(0, 0), unit(800, 3)),
            (player(9), player(u32::MAX)),
            (board, unit(1, 1)),
            (unit(1, 1), board),
        ];
        for (cur, mut prev) in pairs {
            let diff = cur.diff(&prev);
            prev.apply(&diff);
            assert_eq!(prev, cur);
        }
    }
}
