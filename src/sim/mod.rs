//! The simulation: the [`Game`] trait a game developer implements, the room types a server hosts
//! ([`room`]), and the built-in [`arena`] demo.
//!
//! A game never reads a clock and never touches I/O: the loop hands it each input as it arrives
//! ([`Game::input`], between ticks), then a tick number, a fixed `dt` and the replicated [`World`] to
//! mutate ([`Game::step`]). One game instance runs one room.

pub mod arena;
mod inputs;
mod rng;
pub mod room;

pub use inputs::{InputQueue, INPUTS_PER_PLAYER_DEFAULT};
pub use rng::Rng;
pub use room::{Opening, RoomControl, RoomType, RoomTypes};

use serde::de::DeserializeOwned;

use crate::sync::{EntityId, Replicate, World};

/// Identifies a player from `join` to `leave`, across resumed connections; never reused. (It is the id of
/// the connection that joined.)
pub type PlayerId = u64;

/// Who is joining: what the client's `Hello` and its authentication ticket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joining<'a> {
    /// The name from `Hello` (at most 32 bytes; not unique, not checked).
    pub name: &'a str,
    /// The player id from the ticket the connection presented: the game backend's own id for this player,
    /// checked by signature. `None` when tickets are not in use (`--ticket-secret-file`).
    pub account: Option<&'a str>,
}

/// A game tickcast can host, one instance per room. The loop calls `join`, `leave`, `input`, `detached`
/// and `resumed` between ticks, as they happen, and `step` once per tick of the room. Changes made between
/// ticks reach clients with the next tick's update.
///
/// A player's life: `join`, then inputs; when its connection drops without a goodbye the player is
/// `detached` and keeps its entity for `--resume-grace-ms`; a client that comes back with the resume token
/// in that time is `resumed` (no second `join`), otherwise the player `leave`s.
///
/// **Entities.** The entity `join` returns is the player's *primary* entity: the one `Joined` names (on a
/// resume too), and the one whose state should carry the last input `seq` the game applied, which is how
/// a client sees its inputs acknowledged. A player may own more entities (units, projectiles): the game
/// spawns and despawns them in any callback, and says in their state whose they are (an `owner` field
/// holding the primary entity's id is enough: the client knows that id from `Joined`). `leave` removes
/// them all. `examples/teams` is such a game (`docs/GAME-API.md`).
///
/// **Inputs and ticks.** An input that arrives between ticks takes effect in the next `step`, the one
/// whose `tick` is one above the world's at arrival. `input` gets no world and no room: a game keeps the
/// input and applies it in `step`, which has both. [`InputQueue`] keeps every input in order until the
/// step (commands that a newer input must not overwrite) and the acknowledged `seq` per player.
pub trait Game {
    /// The payload of a client's `Input` message.
    type Input: DeserializeOwned;
    /// The replicated state of one entity.
    type State: Replicate;

    /// A connection sent `Hello`: spawn its primary entity (and any others it owns). `None` refuses it
    /// (the world is full: close 1013); a game that refuses despawns what it spawned for the player.
    fn join(
        &mut self,
        world: &mut World<Self::State>,
        player: PlayerId,
        joining: Joining<'_>,
    ) -> Option<EntityId>;

    /// The player is gone for good (said goodbye, or its grace period ran out): remove what it owned.
    fn leave(&mut self, world: &mut World<Self::State>, player: PlayerId);

    /// The player's connection dropped; it may come back. Its entity stays (a game might stop it moving).
    fn detached(&mut self, _world: &mut World<Self::State>, _player: PlayerId) {}

    /// A detached player is back on a new connection.
    fn resumed(&mut self, _world: &mut World<Self::State>, _player: PlayerId) {}

    /// The player's latest input, with its sequence number, as it arrives (in order per connection; a
    /// resumed client carries on its numbering). Typically stored (or queued: [`InputQueue`]) and applied
    /// in the next `step`.
    fn input(&mut self, player: PlayerId, seq: u32, input: Self::Input);

    /// The player sent `body` (a `Send`: a chat line, a vote), outside its inputs. What the game sends in
    /// answer, through `room`, goes as soon as this returns.
    fn message(
        &mut self,
        _world: &mut World<Self::State>,
        _player: PlayerId,
        _body: &[u8],
        _room: &mut RoomControl,
    ) {
    }

    /// Someone published `body` to `topic`, one of this room type's topics ([`RoomType::subscribe`]): a
    /// room of this process or of another one in the cluster. At most once, in order per publisher.
    fn topic_message(
        &mut self,
        _world: &mut World<Self::State>,
        _topic: &str,
        _body: &[u8],
        _room: &mut RoomControl,
    ) {
    }

    /// Advances the simulation by one fixed step of `dt_s` seconds to `tick`. `room` takes what the game
    /// asks of its room (end the match, kick a player), done once the tick's update is out.
    fn step(
        &mut self,
        world: &mut World<Self::State>,
        tick: u64,
        dt_s: f32,
        room: &mut RoomControl,
    );
}
