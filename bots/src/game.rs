//! What the bots need to know of a game: the state type of its entities (to mirror them and check
//! checksums), how an entity shows the input seq the server applied (the ack), and how a bot makes its
//! next input. The arena ([`Arena`]) is the default; a developer load-tests their own game by
//! implementing [`BotGame`] for it and calling [`crate::run_with`] (see `bots/examples/`).

use serde::Serialize;
use tickcast::sim::arena::{ArenaEntity, ArenaInput};
use tickcast::sim::Rng;
use tickcast::sync::Replicate;

/// A game the bots can play: its replicated entity state and its input.
pub trait BotGame: std::fmt::Debug + Default + 'static {
    /// One entity's replicated state, as the server's deltas carry it.
    type State: Replicate;
    /// What a player sends in `Input` messages.
    type Input: Serialize + Clone + std::fmt::Debug;

    /// The input seq the server has applied for the player whose entity is `state` (the
    /// acknowledgement the bots measure latency by); `None` when the game's entities do not show it,
    /// which leaves every input unacknowledged.
    fn ack(state: &Self::State) -> Option<u32>;

    /// The next input a bot sends; `previous` is the last one it sent (`None` for a new player's first).
    /// Draws only from `rng`, so a run is repeatable for a `--seed`.
    fn next_input(rng: &mut Rng, previous: Option<&Self::Input>) -> Self::Input;
}

/// Chance per input that a wandering arena bot picks a new random direction.
pub const TURN_PROBABILITY: f32 = 0.1;

/// The arena (`tickcast::sim::arena`): the bots' default game.
#[derive(Debug, Default, Clone, Copy)]
pub struct Arena;

impl BotGame for Arena {
    type State = ArenaEntity;
    type Input = ArenaInput;

    fn ack(state: &ArenaEntity) -> Option<u32> {
        Some(state.seq)
    }

    /// Keeps the direction, turning to a random one with [`TURN_PROBABILITY`] per input (always for the
    /// first).
    fn next_input(rng: &mut Rng, previous: Option<&ArenaInput>) -> ArenaInput {
        match previous {
            Some(previous) if rng.next_f32() >= TURN_PROBABILITY => *previous,
            _ => random_direction(rng),
        }
    }
}

fn random_direction(rng: &mut Rng) -> ArenaInput {
    let angle = rng.next_f32() * std::f32::consts::TAU;
    ArenaInput {
        dx: (angle.cos() * 127.0) as i8,
        dy: (angle.sin() * 127.0) as i8,
    }
}
