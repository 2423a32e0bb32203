//! Game messages outside the tick's update (docs/PROTOCOL.md `Send` and `Message`, docs/CLUSTER.md
//! "Backplane"): a player's `Send` handed to its room's game, and what a game sends through its
//! [`RoomControl`](crate::sim::RoomControl) delivered to its room, to one player, to an account wherever it
//! is connected, or to a topic's rooms on every process.

use super::*;
use crate::sim::PlayerId;

impl<G: Game, C: Clock> Server<G, C> {
    /// Player `player` on connection `k` sent `body`: its game hears it, and what it sends in answer goes.
    pub(super) fn player_sent(&mut self, k: usize, player: PlayerId, body: &[u8]) -> Flow {
        let r = self.room_of(k);
        let room = self.rooms.get_mut(r);
        room.game
            .message(&mut room.world, player, body, &mut room.control);
        Flow::Go
    }
}
