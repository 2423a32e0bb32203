//! [`InputQueue`]: inputs kept for the next step, with the acknowledgement bookkeeping a game would
//! otherwise hand-roll.
//!
//! The loop hands a game each input as it arrives, between ticks, without a tick number ([`Game::input`]);
//! the input takes effect in the next [`Game::step`], which has the tick, the world and the room. A game
//! that only steers keeps the latest input (the arena does); one whose inputs are commands (fire, build,
//! concede) must not let a newer input overwrite an older one before a step has seen it. This queue keeps
//! every input of a player in arrival order until the step drains it, bounded per player, and remembers
//! the last `seq` it accepted: what the player's entity carries as its acknowledgement
//! (`docs/PROTOCOL.md`: a client measures input-to-ack latency by watching that `seq`).
//!
//! [`Game::input`]: super::Game::input
//! [`Game::step`]: super::Game::step

use std::collections::{BTreeMap, VecDeque};

use super::PlayerId;

/// Inputs one player may have waiting for a step by default; the oldest goes when a newer one comes past
/// it (at 120 messages per second and 20 ticks per second, a client sends about 6 inputs per tick).
pub const INPUTS_PER_PLAYER_DEFAULT: usize = 16;

/// Every player's inputs since the last step that drained them, and the last `seq` accepted per player.
#[derive(Debug, Clone)]
pub struct InputQueue<I> {
    players: BTreeMap<PlayerId, Queue<I>>,
    per_player_max: usize,
    dropped: u64,
}

#[derive(Debug, Clone)]
struct Queue<I> {
    acked: u32,
    pending: VecDeque<(u32, I)>,
}

impl<I> Default for InputQueue<I> {
    fn default() -> Self {
        Self::new(INPUTS_PER_PLAYER_DEFAULT)
    }
}

impl<I> InputQueue<I> {
    /// A queue that keeps at most `per_player_max` (at least 1) inputs waiting per player.
    pub fn new(per_player_max: usize) -> Self {
        InputQueue {
            players: BTreeMap::new(),
            per_player_max: per_player_max.max(1),
            dropped: 0,
        }
    }

    /// Keeps `input` for the next step, unless `seq` is not above the last one accepted from `player`
    /// (a client numbers its inputs from 1, one up each; an old one is a client bug): then it is ignored
    /// and this returns false. A player's queue past its bound loses its oldest input (counted in
    /// [`InputQueue::dropped`]); its `seq` stays acknowledged.
    pub fn push(&mut self, player: PlayerId, seq: u32, input: I) -> bool {
        let queue = self.players.entry(player).or_insert_with(|| Queue {
            acked: 0,
            pending: VecDeque::new(),
        });
        if seq <= queue.acked {
            return false;
        }
        queue.acked = seq;
        if queue.pending.len() == self.per_player_max {
            queue.pending.pop_front();
            self.dropped += 1;
        }
        queue.pending.push_back((seq, input));
        true
    }

    /// `player`'s waiting inputs, oldest first, with their `seq`; the queue is empty afterwards.
    pub fn drain(&mut self, player: PlayerId) -> impl Iterator<Item = (u32, I)> + '_ {
        self.players
            .get_mut(&player)
            .into_iter()
            .flat_map(|queue| queue.pending.drain(..))
    }

    /// The last `seq` accepted from `player` (0 before its first): once a step has drained the player's
    /// inputs, the acknowledgement to put in its entity's state.
    pub fn acked(&self, player: PlayerId) -> u32 {
        self.players.get(&player).map_or(0, |queue| queue.acked)
    }

    /// Forgets `player` (it left): its waiting inputs and its numbering.
    pub fn remove(&mut self, player: PlayerId) {
        self.players.remove(&player);
    }

    /// Inputs dropped for the per-player bound since the queue was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_wait_in_order_until_drained_and_old_seqs_are_ignored() {
        let mut q = InputQueue::new(4);
        assert!(q.push(7, 1, 'a'));
        assert!(q.push(7, 2, 'b'));
        assert!(!q.push(7, 2, 'x'), "a seq not above the last");
        assert!(q.push(9, 5, 'c'));
        assert_eq!(q.acked(7), 2);
        assert_eq!(q.drain(7).collect::<Vec<_>>(), [(1, 'a'), (2, 'b')]);
        assert_eq!(q.drain(7).count(), 0);
        assert_eq!(q.acked(7), 2, "the ack outlives the drain");
        assert_eq!(q.drain(1).count(), 0, "a player with no inputs");
        q.remove(9);
        assert_eq!((q.acked(9), q.drain(9).count()), (0, 0));
    }

    #[test]
    fn past_the_bound_the_oldest_input_goes_and_is_counted() {
        let mut q = InputQueue::new(2);
        for seq in 1..=5 {
            q.push(1, seq, seq);
        }
        assert_eq!(q.drain(1).collect::<Vec<_>>(), [(4, 4), (5, 5)]);
        assert_eq!((q.dropped(), q.acked(1)), (3, 5));
    }
}
