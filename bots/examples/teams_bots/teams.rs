//! The teams game as the bots play it (shared with `bots/tests/teams.rs`).

use bots::BotGame;
use tickcast::sim::Rng;

use crate::game::{TeamsEntity, TeamsInput, ALL_UNITS};

/// Chance per input that a bot orders its squad a new way.
const TURN_PROBABILITY: f32 = 0.1;

#[derive(Debug, Default)]
pub struct Teams;

impl BotGame for Teams {
    type State = TeamsEntity;
    type Input = TeamsInput;

    /// The bot's own entity is its `Player` record, which carries the seq the game applied.
    fn ack(state: &TeamsEntity) -> Option<u32> {
        match state {
            TeamsEntity::Player { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// Orders the whole squad in a random direction, now and then a new one; never concedes (that would
    /// end the match for everyone).
    fn next_input(rng: &mut Rng, previous: Option<&TeamsInput>) -> TeamsInput {
        match previous {
            Some(previous) if rng.next_f32() >= TURN_PROBABILITY => *previous,
            _ => {
                let angle = rng.next_f32() * std::f32::consts::TAU;
                TeamsInput::Order {
                    unit: ALL_UNITS,
                    dx: (angle.cos() * 127.0) as i8,
                    dy: (angle.sin() * 127.0) as i8,
                }
            }
        }
    }
}
