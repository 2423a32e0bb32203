//! Reconnect with continuity: a player cut off mid-game keeps its entity for the grace period; coming back
//! with its resume token and the last tick it applied, it gets the same entity and a delta from that tick
//! (a `Full` when the history no longer reaches it), and a new token: the one it came with resumes nothing
//! any more. After the grace period, or after a goodbye, it is gone.

mod common;

use std::net::Shutdown;

use common::{Client, TestServer};
use tickcast::proto::ServerMsg;

fn server(adjust: impl FnOnce(&mut tickcast::Config)) -> TestServer {
    TestServer::start(|c| {
        c.npcs = 10;
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
        adjust(c);
    })
}

/// A player that has joined, moved, and verified a checksum; `watcher` has seen its entity.
fn moving_player(server: &TestServer, watcher: &mut Client) -> (Client, u32) {
    let mut player = Client::connect(server);
    let entity = player.hello("runner");
    player.wait_for(|m| m.get(entity).is_some());
    let x = player.mirror.get(entity).unwrap().x;
    let seq = player.input(if x > 4000 { -1 } else { 1 }, 0);
    player.wait_for(|m| m.get(entity).unwrap().seq == seq);
    player.verify_checksums(1);
    watcher.wait_for(|m| m.get(entity).is_some());
    (player, entity)
}

/// Cuts the connection off the way a network does: no close frame, just the socket gone.
fn cut_off(client: &Client) {
    client.ws.get_ref().shutdown(Shutdown::Both).unwrap();
}

#[test]
fn a_player_cut_off_mid_game_resumes_its_entity_with_a_delta_from_its_last_tick() {
    let server = server(|_| {});
    let mut watcher = Client::watching(&server);
    let (mut player, entity) = moving_player(&server, &mut watcher);
    let token = player.resume_token.unwrap();
    let last = player.mirror.tick().unwrap();
    cut_off(&player);

    // The entity stays in the world (stopped) while the player is away for a few ticks.
    watcher.wait_for(|m| m.tick() > Some(last + 10));
    assert!(watcher.mirror.get(entity).is_some(), "the entity waits");
    assert_eq!(server.metric("tickcast_players_detached"), 1);

    let mut player = player.reconnect_resuming(&server);
    assert_eq!(player.resumed, Some(true));
    assert_eq!(player.entity, Some(entity), "the same entity");
    assert_ne!(player.resume_token, Some(token), "a new token (rotated)");
    // Only what changed while it was away, applied to the mirror it kept (a mismatch would panic).
    match player.recv() {
        ServerMsg::Delta { base, tick, .. } => {
            assert_eq!(base, last, "a delta from the last tick it applied");
            assert!(tick > last + 10);
        }
        other => panic!("expected a Delta from tick {last}, got {other:?}"),
    }
    player.verify_checksums(2);

    // It plays on: its next input (seq carried on) is applied and acknowledged.
    let seq = player.input(0, 1);
    player.wait_for(|m| m.get(entity).unwrap().seq == seq);
    assert_eq!(server.metric("tickcast_resumes_total"), 1);
    assert_eq!(server.metric("tickcast_players"), 1);
    assert_eq!(server.metric("tickcast_players_detached"), 0);
    watcher.verify_checksums(1);
}

#[test]
fn a_resume_from_beyond_the_history_gets_a_full() {
    let server = server(|c| c.history_ticks = 4);
    let mut watcher = Client::watching(&server);
    let (mut player, entity) = moving_player(&server, &mut watcher);
    let last = player.mirror.tick().unwrap();
    cut_off(&player);
    watcher.wait_for(|m| m.tick() > Some(last + 8));
    let mut player = player.reconnect_resuming(&server);
    assert_eq!((player.resumed, player.entity), (Some(true), Some(entity)));
    let first = player.recv();
    assert!(
        matches!(first, ServerMsg::Full { .. }),
        "tick {last} left the 4-tick history: {first:?}"
    );
    player.verify_checksums(1);
}

#[test]
fn a_resume_holding_nothing_tick_0_gets_a_full() {
    let server = server(|_| {});
    let mut watcher = Client::watching(&server);
    let (mut player, entity) = moving_player(&server, &mut watcher);
    cut_off(&player);
    // A reloaded page: the token survived, the mirror did not.
    player.mirror = Default::default();
    let token = player.resume_token.unwrap();
    let mut again = Client::connect(&server);
    again.send(&tickcast::proto::ClientMsg::Hello {
        protocol: tickcast::proto::PROTOCOL_VERSION,
        name: "reloaded".into(),
        ticket: String::new(),
        resume: Some(tickcast::proto::Resume { token, tick: 0 }),
    });
    again.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    assert_eq!((again.resumed, again.entity), (Some(true), Some(entity)));
    let first = again.recv();
    assert!(matches!(first, ServerMsg::Full { .. }), "{first:?}");
    again.verify_checksums(1);
}

#[test]
fn the_newer_connection_wins_and_the_old_one_is_closed_4005() {
    let server = server(|_| {});
    let mut watcher = Client::watching(&server);
    // The old connection stays open (as when the network vanished and the server has not noticed yet).
    let (mut old, entity) = moving_player(&server, &mut watcher);
    let player = old.reconnect_resuming(&server);
    assert_eq!((player.resumed, player.entity), (Some(true), Some(entity)));
    let (code, reason) = old.expect_close();
    assert_eq!(code, 4005, "{reason}");
    assert_eq!(reason, "player resumed on another connection");
    assert_eq!(server.metric("tickcast_players"), 1);
}

#[test]
fn after_the_grace_period_the_entity_is_removed_and_the_token_joins_anew() {
    let server = server(|c| c.resume_grace_ms = 200);
    let mut watcher = Client::watching(&server);
    let (mut player, entity) = moving_player(&server, &mut watcher);
    let token = player.resume_token.unwrap();
    cut_off(&player);
    watcher.wait_for(|m| m.get(entity).is_none());
    assert_eq!(server.metric("tickcast_sessions_expired_total"), 1);

    let mut player = player.reconnect_resuming(&server);
    assert_eq!(player.resumed, Some(false), "a new player");
    assert_ne!(player.resume_token, Some(token), "with a new token");
    let first = player.recv();
    assert!(matches!(first, ServerMsg::Full { .. }), "{first:?}");
    let new_entity = player.entity.unwrap();
    assert!(player.mirror.get(new_entity).is_some());
    assert_eq!(server.metric("tickcast_resumes_refused_total"), 1);
    watcher.verify_checksums(1);
}

#[test]
fn detached_players_beyond_the_cap_leave_oldest_first() {
    let server = server(|c| c.detached_max = 1);
    let mut watcher = Client::watching(&server);
    let (first, first_entity) = moving_player(&server, &mut watcher);
    cut_off(&first);
    let (second, second_entity) = moving_player(&server, &mut watcher);
    cut_off(&second);
    watcher.wait_for(|m| m.get(first_entity).is_none());
    assert!(
        watcher.mirror.get(second_entity).is_some(),
        "the newer one waits"
    );
    assert_eq!(server.metric("tickcast_players_detached"), 1);
    assert_eq!(server.metric("tickcast_sessions_expired_total"), 1);
}

#[test]
fn a_goodbye_ends_the_player_at_once_even_before_the_connection_is_gone() {
    let server = server(|_| {});
    let mut watcher = Client::watching(&server);
    let (mut player, _) = moving_player(&server, &mut watcher);
    // Close 1000, and keep the TCP connection open: the token must already resume nothing.
    player
        .ws
        .close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
    player.ws.flush().unwrap();
    let token = player.resume_token;
    let again = player.reconnect_resuming(&server);
    assert_eq!(again.resumed, Some(false), "a goodbye is final");
    assert_ne!(
        again.resume_token, token,
        "a new player (its entity may reuse the id)"
    );
    assert_eq!(server.metric("tickcast_players_detached"), 0);
    assert_eq!(server.metric("tickcast_sessions_expired_total"), 0);
    assert_eq!(server.metric("tickcast_resumes_refused_total"), 1);
}

#[test]
fn with_resume_off_a_dropped_player_leaves_at_once() {
    let server = server(|c| c.resume_grace_ms = 0);
    let mut watcher = Client::watching(&server);
    let (player, entity) = moving_player(&server, &mut watcher);
    cut_off(&player);
    watcher.wait_for(|m| m.get(entity).is_none());
    assert_eq!(server.metric("tickcast_players_detached"), 0);
}

#[test]
fn a_resume_rotates_the_token_the_old_one_then_joins_anew_and_the_new_one_resumes() {
    let server = server(|_| {});
    let mut watcher = Client::watching(&server);
    let (mut player, entity) = moving_player(&server, &mut watcher);
    let first = player.resume_token.unwrap();
    cut_off(&player);
    let mut player = player.reconnect_resuming(&server);
    assert_eq!((player.resumed, player.entity), (Some(true), Some(entity)));
    let second = player.resume_token.unwrap();
    assert_ne!(second, first, "the resume's Joined carries a new token");
    player.verify_checksums(1);
    cut_off(&player);

    // Whoever still holds the first token (a copy seen in a log, say) takes nothing back: a new player.
    let mut stale = Client::connect(&server);
    stale.hello_resuming(first, 0, "");
    stale.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
    assert_eq!(stale.resumed, Some(false), "the old token resumes nothing");
    assert_ne!(stale.entity, Some(entity), "a new entity");
    assert!(![first, second].contains(&stale.resume_token.unwrap()));
    assert_eq!(server.metric("tickcast_resumes_refused_total"), 1);
    assert_eq!(
        server.metric("tickcast_players_detached"),
        1,
        "ours still waits"
    );

    // The rotated token does resume, from the kept mirror, and rotates again.
    let mut player = player.reconnect_resuming(&server);
    assert_eq!((player.resumed, player.entity), (Some(true), Some(entity)));
    let third = player.resume_token.unwrap();
    assert!(![first, second].contains(&third), "rotated again");
    player.verify_checksums(2);
    assert_eq!(server.metric("tickcast_resumes_total"), 2);
    assert_eq!(server.metric("tickcast_players_detached"), 0);
    watcher.verify_checksums(1);
    watcher.assert_every_tick();
    assert_eq!(server.get("/healthz").0, 200);
}
