//! The reference workload every benchmark and bot runs (`docs/PERFORMANCE.md`): a 2000 x 2000 world where each player steers one entity at
//! 200 units/s, plus optional server-side wanderers (`--npcs`) so a lone visitor sees motion.
//!
//! Positions are simulated in `f32` and replicated quantised to quarter units, so a diff is exact and one
//! tick of movement at 20 Hz (10 units, 40 quarters) fits a one-byte varint.

/// The arena's own settings: flags of the `tickcast` binary beside the server's `Config`, since they
/// are the game's, not the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ArenaSettings {
    /// Server-side wandering entities in the arena, so a lone visitor sees motion (0 for load tests).
    #[arg(long, default_value_t = 16)]
    pub npcs: usize,

    /// Seed of the arena's random numbers (spawn points, wanderers), mixed with each room's name.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Most players in one arena room; a `Hello` past it is closed with 4006.
    #[arg(long, default_value_t = 4096)]
    pub room_max_players: usize,

    /// Most spectators in one arena room; a `Watch` past it is closed with 4006.
    #[arg(long, default_value_t = 4096)]
    pub room_max_spectators: usize,
}

impl Default for ArenaSettings {
    fn default() -> Self {
        ArenaSettings {
            npcs: 16,
            seed: 1,
            room_max_players: 4096,
            room_max_spectators: 4096,
        }
    }
}

/// Most wanderers the creator of a room may ask for with `?npcs=N`.
pub const NPCS_OPTION_MAX: usize = 64;

/// The backplane topic of the arena's chat: a line said in any arena room, on any process, is shown in
/// all of them.
pub const CHAT_TOPIC: &str = "chat";
/// Longest chat text kept, in bytes (longer is cut at a character boundary).
pub const CHAT_TEXT_MAX: usize = 200;
/// Seconds of game time a player waits between two chat lines; lines said faster are dropped.
pub const CHAT_INTERVAL_S: f64 = 1.0;

impl ArenaSettings {
    /// The arena as the binary serves it: one room type, `arena`, capped as the flags say. The client that
    /// creates a room may ask for `?npcs=N` wanderers (0 to 64) instead of `--npcs`.
    pub fn room_types(self) -> RoomTypes<Arena> {
        let make = move |world: &mut World<ArenaEntity>, opening: &Opening<'_>| {
            let npcs = match opening.option("npcs") {
                None => self.npcs,
                Some(n) => match n.parse::<usize>() {
                    Ok(n) if n <= NPCS_OPTION_MAX => n,
                    _ => return Err(format!("npcs must be 0 to {NPCS_OPTION_MAX}")),
                },
            };
            // Rooms of one seed differ: each mixes in its name.
            let mut name_hash = crate::proto::Fnv1a::new();
            name_hash.write(opening.name.as_bytes());
            Ok(Arena::new(world, npcs, self.seed ^ name_hash.finish()))
        };
        RoomTypes::new(
            RoomType::new("arena", make)
                .max_players(self.room_max_players)
                .max_spectators(self.room_max_spectators)
                .subscribe(CHAT_TOPIC),
        )
    }
}

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Game, Joining, Opening, PlayerId, Rng, RoomControl, RoomType, RoomTypes};
use crate::sync::{EntityId, Replicate, World};

/// World width and height, in units.
pub const WORLD_SIZE: f32 = 2000.0;
/// Speed of every moving entity, in units per second.
pub const SPEED: f32 = 200.0;
/// Replicated positions are in 1/`QUANTA_PER_UNIT` units.
pub const QUANTA_PER_UNIT: f32 = 4.0;
/// How often, per second, a wanderer picks a new direction on average (0.1 per 50 ms, as the bots do).
const WANDER_TURNS_PER_S: f32 = 2.0;

/// One arena entity as replicated: position in quarter units and, for a player, the last input sequence
/// the server applied (0 for wanderers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct ArenaEntity {
    pub x: u16,
    pub y: u16,
    pub seq: u32,
}

/// The change of an [`ArenaEntity`] over a tick: small signed steps and a sequence increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArenaDiff {
    pub dx: i16,
    pub dy: i16,
    pub dseq: u32,
}

impl Replicate for ArenaEntity {
    type Diff = ArenaDiff;

    fn diff(&self, prev: &Self) -> ArenaDiff {
        ArenaDiff {
            dx: self.x.wrapping_sub(prev.x) as i16,
            dy: self.y.wrapping_sub(prev.y) as i16,
            dseq: self.seq.wrapping_sub(prev.seq),
        }
    }

    fn apply(&mut self, diff: &ArenaDiff) {
        self.x = self.x.wrapping_add(diff.dx as u16);
        self.y = self.y.wrapping_add(diff.dy as u16);
        self.seq = self.seq.wrapping_add(diff.dseq);
    }
}

/// A player's steering: a direction, normalised by the server; `(0, 0)` stands still.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ArenaInput {
    pub dx: i8,
    pub dy: i8,
}

#[derive(Debug, Clone)]
struct Body {
    entity: EntityId,
    x: f32,
    y: f32,
    /// Unit direction times speed, in units per second.
    vx: f32,
    vy: f32,
    seq: u32,
}

impl Body {
    fn replicated(&self) -> ArenaEntity {
        ArenaEntity {
            x: quantise(self.x),
            y: quantise(self.y),
            seq: self.seq,
        }
    }

    fn steer(&mut self, input: ArenaInput) {
        let (dx, dy) = (f32::from(input.dx), f32::from(input.dy));
        let len = (dx * dx + dy * dy).sqrt();
        (self.vx, self.vy) = if len == 0.0 {
            (0.0, 0.0)
        } else {
            (dx / len * SPEED, dy / len * SPEED)
        };
    }

    /// Moves by one step; returns whether it hit a wall.
    fn advance(&mut self, dt_s: f32) -> bool {
        let (x, y) = (self.x + self.vx * dt_s, self.y + self.vy * dt_s);
        self.x = x.clamp(0.0, WORLD_SIZE);
        self.y = y.clamp(0.0, WORLD_SIZE);
        self.x != x || self.y != y
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` with control characters (newlines, escapes) made spaces: a chat line is one line.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn quantise(v: f32) -> u16 {
    (v * QUANTA_PER_UNIT).round() as u16
}

/// The arena game. Wanderers are spawned by [`Arena::new`]; players by `join`.
#[derive(Debug)]
pub struct Arena {
    players: HashMap<PlayerId, Body>,
    wanderers: Vec<Body>,
    rng: Rng,
    /// Who may chat: each player's name and when it last said something.
    speakers: HashMap<PlayerId, Speaker>,
    /// Game time, in seconds: the sum of the steps' `dt`.
    clock_s: f64,
}

#[derive(Debug)]
struct Speaker {
    name: String,
    last_line_s: Option<f64>,
}

impl Arena {
    /// An arena with `wanderers` server-side entities, reproducible from `seed`.
    pub fn new(world: &mut World<ArenaEntity>, wanderers: usize, seed: u64) -> Self {
        let mut arena = Arena {
            players: HashMap::new(),
            wanderers: Vec::with_capacity(wanderers),
            rng: Rng::new(seed),
            speakers: HashMap::new(),
            clock_s: 0.0,
        };
        for _ in 0..wanderers {
            let Some(mut body) = arena.spawn(world) else {
                break;
            };
            let input = arena.random_direction();
            body.steer(input);
            arena.wanderers.push(body);
        }
        arena
    }

    fn spawn(&mut self, world: &mut World<ArenaEntity>) -> Option<Body> {
        let x = self.rng.next_f32() * WORLD_SIZE;
        let y = self.rng.next_f32() * WORLD_SIZE;
        let mut body = Body {
            entity: 0,
            x,
            y,
            vx: 0.0,
            vy: 0.0,
            seq: 0,
        };
        body.entity = world.spawn(body.replicated())?;
        Some(body)
    }

    fn random_direction(&mut self) -> ArenaInput {
        let angle = self.rng.next_f32() * std::f32::consts::TAU;
        ArenaInput {
            dx: (angle.cos() * 127.0) as i8,
            dy: (angle.sin() * 127.0) as i8,
        }
    }
}

impl Game for Arena {
    type Input = ArenaInput;
    type State = ArenaEntity;

    fn join(
        &mut self,
        world: &mut World<ArenaEntity>,
        player: PlayerId,
        joining: Joining<'_>,
    ) -> Option<EntityId> {
        let body = self.spawn(world)?;
        let entity = body.entity;
        if let Some(old) = self.players.insert(player, body) {
            world.despawn(old.entity);
        }
        let name = match printable(joining.name.trim()) {
            name if name.is_empty() => format!("player-{player}"),
            name => name,
        };
        let speaker = Speaker {
            name,
            last_line_s: None,
        };
        self.speakers.insert(player, speaker);
        Some(entity)
    }

    fn leave(&mut self, world: &mut World<ArenaEntity>, player: PlayerId) {
        if let Some(body) = self.players.remove(&player) {
            world.despawn(body.entity);
        }
        self.speakers.remove(&player);
    }

    /// A chat line: `<name>: <text>` to every arena room of the cluster (topic [`CHAT_TOPIC`]), or, for
    /// `@<account> <text>`, a whisper to that account wherever it plays, echoed to the speaker. At most one
    /// line per [`CHAT_INTERVAL_S`] per player; text that is not UTF-8 or is blank is dropped.
    fn message(
        &mut self,
        _world: &mut World<ArenaEntity>,
        player: PlayerId,
        body: &[u8],
        room: &mut RoomControl,
    ) {
        let Some(speaker) = self.speakers.get_mut(&player) else {
            return;
        };
        let Ok(text) = std::str::from_utf8(body) else {
            return;
        };
        let text = printable(cut(text.trim(), CHAT_TEXT_MAX));
        let quiet = speaker
            .last_line_s
            .is_some_and(|at| self.clock_s - at < CHAT_INTERVAL_S);
        if text.is_empty() || quiet {
            return;
        }
        speaker.last_line_s = Some(self.clock_s);
        let whisper = text
            .strip_prefix('@')
            .and_then(|rest| rest.split_once(' '))
            .filter(|(account, rest)| !account.is_empty() && !rest.trim().is_empty());
        match whisper {
            Some((account, rest)) => {
                let line = format!("{} (whisper): {}", speaker.name, rest.trim());
                room.tell(account, line.as_bytes());
                room.send(player, line.as_bytes());
            }
            None => {
                let line = format!("{}: {text}", speaker.name);
                room.publish(CHAT_TOPIC, line.as_bytes());
            }
        }
    }

    /// A chat line from any arena room: shown to everyone in this one.
    fn topic_message(
        &mut self,
        _world: &mut World<ArenaEntity>,
        _topic: &str,
        body: &[u8],
        room: &mut RoomControl,
    ) {
        room.broadcast(body);
    }

    /// A player whose connection dropped stands still until it comes back and steers again.
    fn detached(&mut self, _world: &mut World<ArenaEntity>, player: PlayerId) {
        if let Some(body) = self.players.get_mut(&player) {
            body.steer(ArenaInput::default());
        }
    }

    fn input(&mut self, player: PlayerId, seq: u32, input: ArenaInput) {
        if let Some(body) = self.players.get_mut(&player) {
            // Inputs arrive in order on one TCP stream, and a resumed client carries on its numbering (the
            // last applied seq is in its entity's state): an old seq is a client bug, ignore it.
            if seq > body.seq {
                body.seq = seq;
                body.steer(input);
            }
        }
    }

    fn step(&mut self, world: &mut World<ArenaEntity>, _tick: u64, dt_s: f32, _: &mut RoomControl) {
        self.clock_s += f64::from(dt_s);
        for body in self.players.values_mut() {
            body.advance(dt_s);
            world.set(body.entity, body.replicated());
        }
        let turn_chance = WANDER_TURNS_PER_S * dt_s;
        for i in 0..self.wanderers.len() {
            let turn = self.rng.next_f32() < turn_chance;
            let direction = turn.then(|| self.random_direction());
            let body = &mut self.wanderers[i];
            if let Some(direction) = direction {
                body.steer(direction);
            }
            if body.advance(dt_s) {
                // Bounce off the wall it hit.
                if body.x <= 0.0 || body.x >= WORLD_SIZE {
                    body.vx = -body.vx;
                }
                if body.y <= 0.0 || body.y >= WORLD_SIZE {
                    body.vy = -body.vy;
                }
            }
            world.set(body.entity, body.replicated());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::room::Outgoing;

    fn joined(arena: &mut Arena, world: &mut World<ArenaEntity>, player: PlayerId, name: &str) {
        let joining = Joining {
            name,
            account: None,
        };
        arena
            .join(world, player, joining)
            .expect("room for a player");
    }

    fn said(
        arena: &mut Arena,
        world: &mut World<ArenaEntity>,
        player: PlayerId,
        text: &str,
    ) -> Vec<Outgoing> {
        let mut room = RoomControl::default();
        arena.message(world, player, text.as_bytes(), &mut room);
        room.outbox
    }

    #[test]
    fn a_chat_line_is_published_named_cut_to_one_line_and_one_a_second() {
        let mut world = World::new(crate::sync::WorldLimits::default());
        let mut arena = Arena::new(&mut world, 0, 1);
        joined(&mut arena, &mut world, 7, "ann\nbob");
        let line = |text: &str| Outgoing::Topic(CHAT_TOPIC.into(), text.as_bytes().to_vec());
        assert_eq!(
            said(&mut arena, &mut world, 7, "  hi\tthere "),
            [line("ann bob: hi there")]
        );
        // Within the interval: dropped; a step of game time later: said.
        assert_eq!(said(&mut arena, &mut world, 7, "again"), []);
        arena.step(
            &mut world,
            1,
            CHAT_INTERVAL_S as f32,
            &mut RoomControl::default(),
        );
        let long = "é".repeat(150);
        let cut = format!("ann bob: {}", "é".repeat(CHAT_TEXT_MAX / 2));
        assert_eq!(said(&mut arena, &mut world, 7, &long), [line(&cut)]);
        // Blank, not UTF-8, or from nobody: nothing.
        arena.step(
            &mut world,
            2,
            CHAT_INTERVAL_S as f32,
            &mut RoomControl::default(),
        );
        assert_eq!(said(&mut arena, &mut world, 7, "   "), []);
        assert_eq!(said(&mut arena, &mut world, 99, "who"), []);
        let mut room = RoomControl::default();
        arena.message(&mut world, 7, &[0xff, 0xfe], &mut room);
        assert!(room.outbox.is_empty());
    }

    #[test]
    fn a_whisper_goes_to_the_account_and_back_to_the_speaker() {
        let mut world = World::new(crate::sync::WorldLimits::default());
        let mut arena = Arena::new(&mut world, 0, 1);
        joined(&mut arena, &mut world, 7, "");
        let whisper = b"player-7 (whisper): psst".to_vec();
        assert_eq!(
            said(&mut arena, &mut world, 7, "@cid  psst"),
            [
                Outgoing::Account("cid".into(), whisper.clone()),
                Outgoing::Player(7, whisper)
            ]
        );
    }

    #[test]
    fn a_chat_line_from_the_topic_goes_to_the_whole_room() {
        let mut world = World::new(crate::sync::WorldLimits::default());
        let mut arena = Arena::new(&mut world, 0, 1);
        let mut room = RoomControl::default();
        arena.topic_message(&mut world, CHAT_TOPIC, b"bob: hi", &mut room);
        assert_eq!(room.outbox, [Outgoing::Room(b"bob: hi".to_vec())]);
    }
}
