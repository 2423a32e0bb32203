//! A client connects and receives Welcome, Full, then a Delta every tick, its mirror matching every
//! Checksum; a player's input moves its entity and is acknowledged.

mod common;

use common::{Client, TestServer};
use tickcast::proto::ServerMsg;

#[test]
fn spectator_receives_full_then_a_delta_every_tick_and_checksums_match() {
    let server = TestServer::start(|c| {
        c.npcs = 50;
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
    });
    let mut client = Client::watching(&server);
    assert_eq!(client.tick_hz, 50);
    let first = client.recv();
    assert!(
        matches!(first, ServerMsg::Full { .. }),
        "first update must be Full, got {first:?}"
    );
    assert_eq!(client.mirror.len(), 50);
    client.verify_checksums(4);
    // Nobody is slow here, so every tick arrived as its own delta: no gaps.
    for pair in client.ticks.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "ticks {:?}", client.ticks);
    }
    assert_eq!(client.mirror.coalesced, 0);
    server.stop();
}

#[test]
fn player_input_moves_its_entity_and_is_acknowledged() {
    let server = TestServer::start(|c| c.tick_hz = 50);
    let mut client = Client::connect(&server);
    let entity = client.hello("alice");
    let mut watcher = Client::watching(&server);
    client.wait_for(|m| m.get(entity).is_some());
    let start = *client.mirror.get(entity).unwrap();
    assert_eq!(start.seq, 0);
    // Head away from the nearer wall so the move is visible.
    let dx = if start.x > 4000 { -1 } else { 1 };
    let seq = client.input(dx, 0);
    client.wait_for(|m| m.get(entity).unwrap().seq == seq && m.get(entity).unwrap().x != start.x);
    let moved = *client.mirror.get(entity).unwrap();
    assert_eq!(
        moved.seq, seq,
        "the server acknowledges the input it applied"
    );
    assert_ne!(moved.x, start.x, "the entity moved along x");
    assert_eq!(moved.y, start.y, "and not along y");
    // Another client's mirror converges on the same state for that entity.
    let tick = client.mirror.tick().unwrap();
    watcher.wait_for(|m| m.tick() >= Some(tick));
    while watcher.mirror.tick() > client.mirror.tick() {
        client.recv();
    }
    while watcher.mirror.tick() < client.mirror.tick() {
        watcher.recv();
    }
    assert_eq!(watcher.mirror.get(entity), client.mirror.get(entity));
    server.stop();
}
