//! Game messages outside the tick's update on one process: a player's `Send` reaches its game, and the
//! arena's chat line reaches every member of every arena room here, spectators included; `Send` is for
//! players only and bounded in size.

mod common;

use common::{Client, TestServer};
use tickcast::proto::{ClientMsg, MESSAGE_BODY_MAX};

#[test]
fn a_chat_line_reaches_every_arena_room_of_the_process_spectators_included() {
    let server = TestServer::start(|c| c.npcs = 0);
    let mut ann = Client::connect_at(&server, "/ws/red");
    ann.hello("ann");
    let mut bob = Client::connect_at(&server, "/ws/blue");
    bob.hello("bob");
    let mut eve = Client::connect_at(&server, "/ws/blue");
    eve.watch();
    ann.say("hello, blue");
    for c in [&mut ann, &mut bob, &mut eve] {
        assert_eq!(c.recv_message(), "ann: hello, blue");
    }
    assert!(server.metric("tickcast_game_messages_total") >= 3);
}

#[test]
fn send_is_for_players_and_bounded() {
    let server = TestServer::start(|c| c.npcs = 0);
    let mut pending = Client::connect(&server);
    pending.say("too early");
    assert_eq!(pending.expect_close(), (1008, "Send before Hello".into()));
    let mut spectator = Client::watching(&server);
    spectator.say("spectators do not speak");
    assert_eq!(spectator.expect_close(), (1008, "Send before Hello".into()));
    let mut big = Client::connect(&server);
    big.hello("big");
    big.send(&ClientMsg::Send {
        body: vec![b'x'; MESSAGE_BODY_MAX + 1],
    });
    let (code, reason) = big.expect_close();
    assert_eq!(code, 1007, "{reason}");
    assert!(
        reason.contains("Send body is 1025 bytes, the limit is 1024"),
        "{reason}"
    );
}
