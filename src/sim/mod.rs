//! The simulation: the [`Game`] trait a game developer implements, and the built-in [`arena`] demo.
//!
//! A game never reads a clock and never touches I/O: the loop hands it a tick number and a fixed `dt`, the
//! inputs that arrived since the last tick, and the replicated [`World`] to mutate.

pub mod arena;
mod rng;

pub use rng::Rng;

use serde::de::DeserializeOwned;

use crate::sync::{EntityId, Replicate, World};

/// Identifies a connection that joined as a player; stable for the connection's life, never reused.
pub type PlayerId = u64;

/// A game tickcast can host. The loop calls `join`, `leave` and `input` between ticks, as messages arrive,
/// and `step` once per tick. Changes made between ticks reach clients with the next tick's update.
pub trait Game {
    /// The payload of a client's `Input` message.
    type Input: DeserializeOwned;
    /// The replicated state of one entity.
    type State: Replicate;

    /// A connection sent `Hello`: spawn its entity. `None` refuses it (the world is full).
    fn join(
        &mut self,
        world: &mut World<Self::State>,
        player: PlayerId,
        name: &str,
    ) -> Option<EntityId>;

    /// The player's connection is gone: remove what it owned.
    fn leave(&mut self, world: &mut World<Self::State>, player: PlayerId);

    /// The player's latest input, with its sequence number. Typically stored and applied in `step`.
    fn input(&mut self, player: PlayerId, seq: u32, input: Self::Input);

    /// Advances the simulation by one fixed step of `dt_s` seconds to `tick`.
    fn step(&mut self, world: &mut World<Self::State>, tick: u64, dt_s: f32);
}
