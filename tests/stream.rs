//! A client connects and receives Welcome, Full, then a Delta every tick, its mirror matching every
//! Checksum; a player's input moves its entity and is acknowledged.

mod common;

use common::{Client, TestServer};
use std::time::{Duration, Instant};

use tickcast::proto::{ClientMsg, ServerMsg};

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
    client.assert_every_tick();
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

#[test]
fn members_come_and_go_in_any_order_and_everyone_left_still_gets_every_tick() {
    use std::time::Instant;
    let server = TestServer::start(|c| {
        c.npcs = 8;
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
    });
    // The room's member list is reordered as members leave (the last takes the leaver's place); a
    // mistake there would starve someone or send to a closed connection.
    let mut members: Vec<Option<Client>> =
        (0..6).map(|_| Some(Client::watching(&server))).collect();
    let mut player = Client::connect(&server);
    // The player's Hello makes it the last member; the first leaver's place goes to it.
    player.hello("p");
    // Each round: one leaves and is reaped (moving the last member into its place), one joins.
    let reaped = |members: &[Option<Client>], extra: u64, server: &TestServer| {
        let open = extra + members.iter().flatten().count() as u64;
        let deadline = Instant::now() + common::WAIT_MAX;
        while server.metric("tickcast_websockets_open") != open {
            assert!(Instant::now() < deadline, "closed members never reaped");
        }
    };
    for leaver in [0, 3, 5, 1] {
        members[leaver] = None;
        reaped(&members, 1, &server);
        members.push(Some(Client::watching(&server)));
    }
    // Now those that were moved leave too: the player (moved first) and the newest.
    drop(player);
    let newest = members.len() - 1;
    members[newest] = None;
    members[6] = None;
    reaped(&members, 0, &server);
    for client in members.iter_mut().flatten() {
        let from = client.ticks.len();
        client.verify_checksums(2);
        client.assert_every_tick_since(from);
    }
    assert_eq!(server.get("/healthz").0, 200);
}

#[test]
fn with_reads_coalesced_every_tick_still_arrives_and_inputs_are_applied() {
    let server = TestServer::start(|c| {
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
        c.read_coalesce_us = 5_000;
    });
    let mut player = Client::connect(&server);
    let entity = player.hello("coalesced");
    let mut watcher = Client::watching(&server);
    watcher.recv_until(|m| matches!(m, ServerMsg::Full { .. }));
    let from = watcher.ticks.len();
    for _ in 0..20 {
        let seq = player.input(1, 0);
        player.wait_for(|m| m.get(entity).is_some_and(|e| e.seq == seq));
    }
    watcher.verify_checksums(4);
    watcher.assert_every_tick_since(from);
    let invalid = tickcast::Config {
        read_coalesce_us: 50_001,
        ..tickcast::Config::default()
    };
    assert!(invalid
        .validate()
        .unwrap_err()
        .contains("--read-coalesce-us"));
}

/// `--skip-unchanged-updates`: a watcher of a world where nothing moves is sent nothing (no empty
/// `Delta`, no `Checksum`) tick after tick; the first change reaches it as one `Delta` from the tick it
/// holds, and its mirror still matches the checksums after it.
#[test]
fn with_unchanged_updates_skipped_an_idle_world_sends_nothing_until_it_changes() {
    let server = TestServer::start(|c| {
        c.npcs = 0;
        c.tick_hz = 50;
        c.checksum_every_ticks = 1;
        c.skip_unchanged_updates = true;
    });
    let mut watcher = Client::watching(&server);
    let ServerMsg::Full { tick: held, .. } = watcher.recv() else {
        panic!("a Full first")
    };
    assert!(matches!(watcher.recv(), ServerMsg::Checksum { tick, .. } if tick == held));
    // Ticks pass in which nothing changes: the player's Pongs say how many (bounded).
    let mut player = Client::connect(&server);
    let deadline = Instant::now() + common::WAIT_MAX;
    loop {
        assert!(Instant::now() < deadline, "the server's tick did not move");
        player.send(&ClientMsg::Ping { nonce: 1 });
        let pong = player.recv_until(|m| matches!(m, ServerMsg::Pong { .. }));
        if matches!(pong, ServerMsg::Pong { tick, .. } if tick >= held + 5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let entity = player.hello("mover");
    match watcher.recv() {
        ServerMsg::Delta {
            base, tick, set, ..
        } => {
            assert_eq!(base, held, "the Delta is from the tick the watcher holds");
            assert!(tick >= held + 5, "idle ticks sent nothing (tick {tick})");
            assert_eq!(set.len(), 1, "the new player's entity");
        }
        other => panic!("expected the change as a Delta, got {other:?}"),
    }
    watcher.wait_for(|m| m.get(entity).is_some());
    let seq = player.input(1, 0);
    watcher.wait_for(|m| m.get(entity).is_some_and(|e| e.seq == seq));
    watcher.verify_checksums(2);
}
