//! The mirror as a bot runs it, fed the exact bytes a server sends: sequences of deltas, coalesced
//! deltas, full snapshots and checksums, checked against a reference world kept here.

use std::collections::BTreeMap;

use tickcast::proto::{self, ServerMsg};
use tickcast::sim::arena::ArenaEntity;
use tickcast::sync::{MirrorError, Replicate};

use super::*;

/// The arena's view: what every test here drives.
type View = super::View<Arena>;

type State = BTreeMap<u32, ArenaEntity>;

/// A reference server: the world at every tick, encoded the way the real one encodes it.
struct Reference {
    worlds: BTreeMap<u64, State>,
}

fn entity(x: u16, y: u16, seq: u32) -> ArenaEntity {
    ArenaEntity { x, y, seq }
}

impl Reference {
    fn new(tick: u64, world: State) -> Self {
        Reference {
            worlds: BTreeMap::from([(tick, world)]),
        }
    }

    fn at(&self, tick: u64) -> &State {
        &self.worlds[&tick]
    }

    /// Records the world of `tick` as the one before it changed by `change`.
    fn step(&mut self, tick: u64, change: impl FnOnce(&mut State)) {
        let mut world = self.worlds.last_key_value().unwrap().1.clone();
        change(&mut world);
        self.worlds.insert(tick, world);
    }

    fn welcome(tick: u64) -> Vec<u8> {
        proto::encode(&ServerMsg::<(), ()>::Welcome {
            protocol: proto::PROTOCOL_VERSION,
            tick_hz: 20,
            tick,
            connection_id: 7,
            room: "default".to_string(),
        })
    }

    fn full(&self, tick: u64) -> Vec<u8> {
        let mut out = Vec::new();
        proto::write_full(&mut out, tick, self.at(tick).iter().map(|(id, s)| (*id, s)));
        out
    }

    fn delta(&self, base: u64, tick: u64) -> Vec<u8> {
        let (old, new) = (self.at(base), self.at(tick));
        let despawned: Vec<u32> = old
            .keys()
            .filter(|id| !new.contains_key(id))
            .copied()
            .collect();
        let set: Vec<(u32, &ArenaEntity)> = new
            .iter()
            .filter(|(id, _)| !old.contains_key(id))
            .map(|(id, s)| (*id, s))
            .collect();
        let changed: Vec<_> = new
            .iter()
            .filter_map(|(id, s)| {
                let prev = old.get(id)?;
                (prev != s).then(|| (*id, s.diff(prev)))
            })
            .collect();
        let mut out = Vec::new();
        proto::write_delta(
            &mut out,
            base,
            tick,
            despawned.into_iter(),
            set.into_iter(),
            changed.into_iter(),
        );
        out
    }

    fn checksum(&self, tick: u64) -> Vec<u8> {
        let hash = proto::world_hash(
            &mut Vec::new(),
            self.at(tick).iter().map(|(id, s)| (*id, s)),
        );
        proto::encode(&ServerMsg::<(), ()>::Checksum { tick, hash })
    }
}

const TOKEN: proto::ResumeToken = [7; 16];
/// The token a resume of the `TOKEN` player brings back (every resume rotates it).
const ROTATED: proto::ResumeToken = [8; 16];

fn joined(entity: u32, resume_token: proto::ResumeToken, resumed: bool) -> Vec<u8> {
    proto::encode(&ServerMsg::<(), ()>::Joined {
        entity,
        resume_token,
        resumed,
    })
}

fn mirrored(view: &View) -> State {
    view.mirror()
        .expect("a verifying view")
        .iter()
        .map(|(id, s)| (id, *s))
        .collect()
}

fn update(tick: u64, kind: UpdateKind, own_seq: Option<u32>) -> Seen {
    Seen::Update {
        tick,
        kind,
        own_seq,
    }
}

/// Two players and a wanderer at tick 10.
fn start() -> Reference {
    Reference::new(
        10,
        BTreeMap::from([
            (0, entity(100, 100, 0)),
            (1, entity(200, 200, 0)),
            (5, entity(300, 300, 0)),
        ]),
    )
}

#[test]
fn full_then_consecutive_deltas_follow_the_world_and_match_every_checksum() {
    let mut server = start();
    let mut view = View::new();
    assert!(matches!(
        view.receive(&Reference::welcome(10)),
        Ok(Seen::Welcome {
            tick: 10,
            tick_hz: 20,
            connection_id: 7
        })
    ));
    assert_eq!(
        view.receive(&joined(1, TOKEN, false)),
        Ok(Seen::Joined {
            entity: 1,
            resumed: false,
            refused: false
        })
    );
    assert_eq!(view.token(), Some(TOKEN));
    assert_eq!(
        view.receive(&server.full(10)),
        Ok(update(10, UpdateKind::First, Some(0)))
    );
    assert_eq!(
        view.receive(&server.checksum(10)),
        Ok(Seen::ChecksumOk { tick: 10 })
    );
    for tick in 11..=15u64 {
        server.step(tick, |w| {
            w.get_mut(&0).unwrap().x += 40;
            let me = w.get_mut(&1).unwrap();
            me.y -= 3;
            me.seq = tick as u32;
        });
        assert_eq!(
            view.receive(&server.delta(tick - 1, tick)),
            Ok(update(tick, UpdateKind::Next, Some(tick as u32)))
        );
        assert_eq!(
            view.receive(&server.checksum(tick)),
            Ok(Seen::ChecksumOk { tick })
        );
        assert_eq!(&mirrored(&view), server.at(tick));
    }
}

#[test]
fn coalesced_deltas_with_spawns_and_despawns_are_gaps_not_errors() {
    let mut server = start();
    let mut view = View::new();
    view.receive(&Reference::welcome(10)).unwrap();
    view.receive(&server.full(10)).unwrap();
    server.step(11, |w| {
        w.remove(&0);
    });
    server.step(12, |w| {
        w.insert(0, entity(7, 7, 0)); // the id is reused by a new entity
        w.insert(9, entity(9, 9, 0));
    });
    server.step(13, |w| {
        w.get_mut(&5).unwrap().x = 0;
        w.remove(&1);
    });
    // The bot was behind: it gets one delta 10 -> 13.
    assert_eq!(
        view.receive(&server.delta(10, 13)),
        Ok(update(13, UpdateKind::Coalesced { skipped: 2 }, None))
    );
    assert!(UpdateKind::Coalesced { skipped: 2 }.is_gap());
    assert_eq!(
        view.receive(&server.checksum(13)),
        Ok(Seen::ChecksumOk { tick: 13 })
    );
    assert_eq!(&mirrored(&view), server.at(13));
    // And then it keeps up again.
    server.step(14, |w| w.get_mut(&9).unwrap().y = 10);
    assert_eq!(
        view.receive(&server.delta(13, 14)),
        Ok(update(14, UpdateKind::Next, None))
    );
    assert_eq!(
        view.receive(&server.checksum(14)),
        Ok(Seen::ChecksumOk { tick: 14 })
    );
}

#[test]
fn a_later_full_snapshot_replaces_the_mirror_as_a_resync() {
    let mut server = start();
    let mut view = View::new();
    view.receive(&Reference::welcome(10)).unwrap();
    view.receive(&server.full(10)).unwrap();
    for tick in 11..=40 {
        server.step(tick, |w| {
            w.get_mut(&5).unwrap().x += 1;
        });
    }
    server.step(41, |w| {
        w.remove(&0);
    });
    assert_eq!(
        view.receive(&server.full(41)),
        Ok(update(41, UpdateKind::Resync { skipped: 30 }, None))
    );
    assert_eq!(&mirrored(&view), server.at(41));
    assert_eq!(
        view.receive(&server.checksum(41)),
        Ok(Seen::ChecksumOk { tick: 41 })
    );
    assert_eq!(
        view.receive(&server.full(41)),
        Err(ViewError::OutOfOrder(
            "Full for tick 41 after tick 41".into()
        ))
    );
}

#[test]
fn a_wrong_checksum_is_a_mismatch_at_its_tick() {
    let server = start();
    let mut view = View::new();
    view.receive(&Reference::welcome(10)).unwrap();
    view.receive(&server.full(10)).unwrap();
    let wrong = proto::encode(&ServerMsg::<(), ()>::Checksum { tick: 10, hash: 42 });
    let err = view.receive(&wrong).unwrap_err();
    assert!(matches!(
        err,
        ViewError::ChecksumMismatch {
            tick: 10,
            server: 42,
            ..
        }
    ));
    assert_eq!(err.tick(), Some(10));
}

#[test]
fn a_diverged_mirror_fails_its_next_checksum() {
    let mut server = start();
    let mut view = View::new();
    view.receive(&Reference::welcome(10)).unwrap();
    view.receive(&server.full(10)).unwrap();
    server.step(11, |w| w.get_mut(&0).unwrap().x = 1);
    server.step(12, |w| w.get_mut(&0).unwrap().x = 2);
    // A server bug: the delta 10 -> 12 carries entity 0's change against tick 11 instead of tick 10, so the
    // mirror lands on the wrong x. Nothing in the delta shows it; the checksum does.
    let mut buggy = Vec::new();
    let prev = server.at(11)[&0];
    let cur = server.at(12)[&0];
    proto::write_delta::<ArenaEntity, _>(
        &mut buggy,
        10,
        12,
        std::iter::empty(),
        std::iter::empty(),
        std::iter::once((0u32, cur.diff(&prev))),
    );
    assert!(view.receive(&buggy).is_ok(), "the delta itself looks fine");
    assert!(matches!(
        view.receive(&server.checksum(12)),
        Err(ViewError::ChecksumMismatch { tick: 12, .. })
    ));
}

#[test]
fn protocol_violations_are_errors() {
    let server = start();
    let mut other_version = View::new();
    let welcome = proto::encode(&ServerMsg::<(), ()>::Welcome {
        protocol: proto::PROTOCOL_VERSION + 1,
        tick_hz: 20,
        tick: 0,
        connection_id: 1,
        room: "default".to_string(),
    });
    assert_eq!(
        other_version.receive(&welcome),
        Err(ViewError::Version {
            server: proto::PROTOCOL_VERSION + 1
        })
    );
    let mut view = View::new();
    assert!(matches!(
        view.receive(&server.full(10)),
        Err(ViewError::OutOfOrder(_))
    ));
    view.receive(&Reference::welcome(10)).unwrap();
    assert!(matches!(
        view.receive(&Reference::welcome(10)),
        Err(ViewError::OutOfOrder(_))
    ));
    assert!(matches!(
        view.receive(&[0xff, 0xff]),
        Err(ViewError::Decode(_))
    ));
    // A delta that does not move forward.
    assert_eq!(
        view.receive(&server.delta(10, 10)),
        Err(ViewError::OutOfOrder(
            "Delta from tick 10 to tick 10".into()
        ))
    );
    // A delta before any Full: the mirror holds no base.
    let mut server = server;
    server.step(11, |_| {});
    assert_eq!(
        view.receive(&server.delta(10, 11)),
        Err(ViewError::Mirror(MirrorError::WrongBase {
            have: None,
            base: 10
        }))
    );
    // A checksum for a tick the mirror does not hold.
    view.receive(&server.full(10)).unwrap();
    assert!(matches!(
        view.receive(&server.checksum(11)),
        Err(ViewError::Mirror(_))
    ));
}

/// A player at tick 12 (joined as entity 1, then a `Full` and two deltas), its connection lost.
fn player_at_12(server: &mut Reference) -> View {
    let mut view = View::new();
    view.receive(&Reference::welcome(10)).unwrap();
    view.receive(&joined(1, TOKEN, false)).unwrap();
    view.receive(&server.full(10)).unwrap();
    for tick in 11..=12 {
        server.step(tick, |w| w.get_mut(&1).unwrap().seq = tick as u32);
        view.receive(&server.delta(tick - 1, tick)).unwrap();
    }
    view.reconnect();
    view
}

#[test]
fn an_honoured_resume_keeps_the_mirror_and_takes_a_delta_from_the_tick_presented() {
    let mut server = start();
    let mut view = player_at_12(&mut server);
    assert_eq!(
        view.resume_request(),
        Some(proto::Resume {
            token: TOKEN,
            tick: 12
        })
    );
    // The new connection starts with Welcome like any other.
    assert!(matches!(
        view.receive(&server.full(12)),
        Err(ViewError::OutOfOrder(_))
    ));
    view.receive(&Reference::welcome(15)).unwrap();
    assert_eq!(
        view.receive(&joined(1, ROTATED, true)),
        Ok(Seen::Joined {
            entity: 1,
            resumed: true,
            refused: false
        })
    );
    for tick in 13..=16 {
        server.step(tick, |w| w.get_mut(&0).unwrap().x += 1);
    }
    // Away for ticks 13..=15: one delta from 12 is not a coalesced gap but the resume's own update.
    assert_eq!(
        view.receive(&server.delta(12, 16)),
        Ok(update(16, UpdateKind::ResumeDelta { skipped: 3 }, Some(12)))
    );
    assert!(!UpdateKind::ResumeDelta { skipped: 3 }.is_gap());
    assert_eq!(
        view.receive(&server.checksum(16)),
        Ok(Seen::ChecksumOk { tick: 16 })
    );
    server.step(17, |w| w.get_mut(&1).unwrap().seq = 13);
    assert_eq!(
        view.receive(&server.delta(16, 17)),
        Ok(update(17, UpdateKind::Next, Some(13)))
    );
    assert_eq!(&mirrored(&view), server.at(17));
}

#[test]
fn an_honoured_resume_past_the_history_takes_a_full() {
    let mut server = start();
    let mut view = player_at_12(&mut server);
    view.resume_request().unwrap();
    view.receive(&Reference::welcome(40)).unwrap();
    view.receive(&joined(1, ROTATED, true)).unwrap();
    for tick in 13..=40 {
        server.step(tick, |w| w.get_mut(&5).unwrap().y += 1);
    }
    assert_eq!(
        view.receive(&server.full(40)),
        Ok(update(40, UpdateKind::ResumeFull { skipped: 27 }, Some(12)))
    );
    assert_eq!(
        view.receive(&server.checksum(40)),
        Ok(Seen::ChecksumOk { tick: 40 })
    );
}

#[test]
fn a_refused_resume_is_a_new_player_whose_mirror_starts_again() {
    let mut server = start();
    let mut view = player_at_12(&mut server);
    view.resume_request().unwrap();
    view.receive(&Reference::welcome(20)).unwrap();
    let other = [9; 16];
    assert_eq!(
        view.receive(&joined(4, other, false)),
        Ok(Seen::Joined {
            entity: 4,
            resumed: false,
            refused: true
        })
    );
    assert_eq!(
        (view.entity(), view.token(), view.tick()),
        (Some(4), Some(other), None)
    );
    server.step(13, |w| {
        w.insert(4, entity(1, 1, 0));
    });
    assert_eq!(
        view.receive(&server.full(13)),
        Ok(update(13, UpdateKind::First, Some(0)))
    );
    // The next connection resumes the new player.
    view.reconnect();
    assert_eq!(
        view.resume_request(),
        Some(proto::Resume {
            token: other,
            tick: 13
        })
    );
}

#[test]
fn a_resume_before_the_first_update_presents_no_tick_the_history_holds() {
    let mut view = View::new();
    assert_eq!(view.resume_request(), None, "no player yet");
    view.receive(&Reference::welcome(10)).unwrap();
    view.receive(&joined(1, TOKEN, false)).unwrap();
    view.reconnect();
    assert_eq!(
        view.resume_request(),
        Some(proto::Resume {
            token: TOKEN,
            tick: RESUME_TICK_NONE
        })
    );
    let server = start();
    view.receive(&Reference::welcome(10)).unwrap();
    view.receive(&joined(1, ROTATED, true)).unwrap();
    assert_eq!(
        view.receive(&server.full(10)),
        Ok(update(10, UpdateKind::ResumeFull { skipped: 0 }, Some(0)))
    );
}

#[test]
fn a_resume_the_server_gets_wrong_is_an_error() {
    let mut server = start();
    // Resumed without asking.
    let mut view = View::new();
    view.receive(&Reference::welcome(10)).unwrap();
    assert!(matches!(
        view.receive(&joined(1, ROTATED, true)),
        Err(ViewError::OutOfOrder(_))
    ));
    // Resumed as another entity, or with the token it presented (not rotated).
    let mut view = player_at_12(&mut server);
    view.resume_request().unwrap();
    view.receive(&Reference::welcome(12)).unwrap();
    assert!(matches!(
        view.receive(&joined(2, ROTATED, true)),
        Err(ViewError::OutOfOrder(_))
    ));
    let mut view = player_at_12(&mut start());
    view.resume_request().unwrap();
    view.receive(&Reference::welcome(12)).unwrap();
    assert_eq!(
        view.receive(&joined(1, TOKEN, true)),
        Err(ViewError::OutOfOrder(
            "resumed with the token it presented: a resume must rotate it".into()
        ))
    );
    // A delta from a tick other than the one presented.
    let mut server = start();
    let mut view = player_at_12(&mut server);
    view.resume_request().unwrap();
    view.receive(&Reference::welcome(14)).unwrap();
    view.receive(&joined(1, ROTATED, true)).unwrap();
    server.step(13, |_| {});
    server.step(14, |_| {});
    assert_eq!(
        view.receive(&server.delta(13, 14)),
        Err(ViewError::OutOfOrder(
            "resumed from tick 12, then a Delta from tick 13".into()
        ))
    );
    // A resumed player whose seq went back (the server forgot the inputs it applied), or whose entity is
    // gone.
    let mut server = start();
    let mut view = player_at_12(&mut server);
    view.resume_request().unwrap();
    view.receive(&Reference::welcome(13)).unwrap();
    view.receive(&joined(1, ROTATED, true)).unwrap();
    server.step(13, |w| w.get_mut(&1).unwrap().seq = 0);
    assert_eq!(
        view.receive(&server.delta(12, 13)),
        Err(ViewError::OutOfOrder(
            "the resumed player's input seq went back from 12 to 0".into()
        ))
    );
    let mut server = start();
    let mut view = player_at_12(&mut server);
    view.resume_request().unwrap();
    view.receive(&Reference::welcome(13)).unwrap();
    view.receive(&joined(1, ROTATED, true)).unwrap();
    server.step(13, |w| {
        w.remove(&1);
    });
    assert!(matches!(
        view.receive(&server.full(13)),
        Err(ViewError::OutOfOrder(_))
    ));
}

#[test]
fn after_a_resume_the_next_one_presents_the_rotated_token() {
    let mut server = start();
    let mut view = player_at_12(&mut server);
    view.resume_request().unwrap();
    view.receive(&Reference::welcome(12)).unwrap();
    view.receive(&joined(1, ROTATED, true)).unwrap();
    assert_eq!(view.token(), Some(ROTATED), "the new token is kept");
    server.step(13, |_| {});
    view.receive(&server.delta(12, 13)).unwrap();
    view.reconnect();
    assert_eq!(
        view.resume_request(),
        Some(proto::Resume {
            token: ROTATED,
            tick: 13
        })
    );
    // Honoured again: a third token, and the one after presents it.
    let third = [9; 16];
    view.receive(&Reference::welcome(13)).unwrap();
    assert_eq!(
        view.receive(&joined(1, third, true)),
        Ok(Seen::Joined {
            entity: 1,
            resumed: true,
            refused: false
        })
    );
    view.reconnect();
    assert_eq!(view.resume_request().unwrap().token, third);
}

#[test]
fn a_resume_whose_joined_was_lost_presents_the_old_token_and_joins_anew() {
    let mut server = start();
    let mut view = player_at_12(&mut server);
    view.resume_request().unwrap();
    view.receive(&Reference::welcome(12)).unwrap();
    // The connection drops before the Joined (and its new token) arrives: the view still holds the old
    // token, which the server rotated away, so the next Hello presents it and is answered as a new player.
    view.reconnect();
    assert_eq!(view.resume_request().unwrap().token, TOKEN);
    view.receive(&Reference::welcome(14)).unwrap();
    let fresh = [3; 16];
    assert_eq!(
        view.receive(&joined(6, fresh, false)),
        Ok(Seen::Joined {
            entity: 6,
            resumed: false,
            refused: true
        })
    );
    assert_eq!(
        (view.entity(), view.token(), view.tick()),
        (Some(6), Some(fresh), None)
    );
}

fn welcome_in(room: &str) -> Vec<u8> {
    proto::encode(&ServerMsg::<(), ()>::Welcome {
        protocol: proto::PROTOCOL_VERSION,
        tick_hz: 20,
        tick: 0,
        connection_id: 7,
        room: room.to_string(),
    })
}

#[test]
fn welcome_must_name_the_room_the_bot_asked_for() {
    let mut view = View::in_room(Some("bots-1".to_string()));
    assert!(matches!(
        view.receive(&welcome_in("bots-1")),
        Ok(Seen::Welcome { tick: 0, .. })
    ));
    assert_eq!(view.room(), Some("bots-1"));

    let mut view = View::in_room(Some("bots-1".to_string()));
    let err = view.receive(&welcome_in("bots-10")).unwrap_err();
    assert_eq!(
        err,
        ViewError::WrongRoom {
            asked: "bots-1".into(),
            got: "bots-10".into()
        }
    );
    assert!(err.to_string().contains("bots-10"), "{err}");
    assert_eq!(err.tick(), None);
    // Not welcomed: nothing else is accepted on that connection.
    assert!(view.receive(&Reference::welcome(1)).is_err());

    // The default room (/ws) may have any name; the view remembers it.
    let mut view = View::new();
    view.receive(&welcome_in("lobby")).unwrap();
    assert_eq!(view.room(), Some("lobby"));
}

#[test]
fn a_kept_view_checks_the_room_again_on_its_next_connection() {
    let mut view = View::in_room(Some("r".to_string()));
    view.receive(&welcome_in("r")).unwrap();
    view.receive(&joined(0, [1; 16], false)).unwrap();
    view.reconnect();
    assert!(matches!(
        view.receive(&welcome_in("other")),
        Err(ViewError::WrongRoom { .. })
    ));
    view.reconnect();
    view.receive(&welcome_in("r")).unwrap();
}

fn message(body: &[u8]) -> Vec<u8> {
    proto::encode(&ServerMsg::<(), ()>::Message {
        body: body.to_vec(),
    })
}

#[test]
fn game_messages_are_seen_with_their_size_and_never_touch_the_mirror() {
    let server = start();
    let mut view = View::new();
    // Like every message, not before Welcome.
    assert!(matches!(
        view.receive(&message(b"ann: hi")),
        Err(ViewError::OutOfOrder(_))
    ));
    view.receive(&Reference::welcome(10)).unwrap();
    assert_eq!(
        view.receive(&message(b"ann: hi")),
        Ok(Seen::Message { len: 7 })
    );
    view.receive(&server.full(10)).unwrap();
    let before = mirrored(&view);
    let longest = vec![b'x'; proto::MESSAGE_BODY_MAX];
    assert_eq!(
        view.receive(&message(&longest)),
        Ok(Seen::Message {
            len: proto::MESSAGE_BODY_MAX
        })
    );
    assert_eq!(mirrored(&view), before, "a message is outside the world");
    assert_eq!(view.tick(), Some(10));
    // Over the protocol's limit: the server broke the protocol.
    let err = view
        .receive(&message(&vec![b'x'; proto::MESSAGE_BODY_MAX + 1]))
        .unwrap_err();
    assert_eq!(
        err,
        ViewError::MessageTooLong {
            len: proto::MESSAGE_BODY_MAX + 1
        }
    );
    assert!(err.to_string().contains("1025 bytes"), "{err}");
    // The world goes on after it.
    view.receive(&server.checksum(10)).unwrap();
}

/// A skimming view sees what a verifying one sees (the same updates, kinds and own seqs), except that it
/// leaves checksums unchecked: fed the same bytes, through spawns, despawns and a reused id of its own
/// entity, coalesced deltas and a resync.
#[test]
fn a_skimming_view_sees_what_a_verifying_view_sees_but_checks_no_checksum() {
    let mut server = start();
    let mut verifying = View::new();
    let mut skimming = View::new().skimming();
    assert!(verifying.verifies() && !skimming.verifies());
    let mut stream = vec![
        Reference::welcome(10),
        joined(1, TOKEN, false),
        server.full(10),
        server.checksum(10),
    ];
    for tick in 11..=14u64 {
        server.step(tick, |w| {
            w.get_mut(&0).unwrap().x += 40;
            w.get_mut(&5).unwrap().y += 1;
            w.get_mut(&1).unwrap().seq = tick as u32;
        });
        stream.push(server.delta(tick - 1, tick));
        stream.push(server.checksum(tick));
    }
    // Our entity goes (14 -> 15), comes back with another state (15 -> 16, in `set`), then a delta over
    // both (coalesced 14 -> 16), then a Full resync.
    server.step(15, |w| {
        w.remove(&1);
    });
    stream.push(server.delta(14, 15));
    server.step(16, |w| {
        w.insert(1, entity(1, 1, 99));
        w.insert(3, entity(3, 3, 0));
    });
    stream.push(server.delta(15, 16));
    server.step(17, |w| w.get_mut(&1).unwrap().seq = 100);
    stream.push(server.delta(16, 17));
    for tick in 18..=20u64 {
        server.step(tick, |w| w.get_mut(&1).unwrap().seq = tick as u32);
    }
    stream.push(server.delta(17, 20));
    stream.push(server.checksum(20));
    server.step(21, |w| w.get_mut(&3).unwrap().x = 9);
    server.step(22, |w| w.get_mut(&1).unwrap().seq = 22);
    stream.push(server.full(22));
    let mut own_seqs = Vec::new();
    for bytes in &stream {
        let v = verifying.receive(bytes).unwrap();
        let s = skimming.receive(bytes).unwrap();
        match (v, s) {
            (Seen::ChecksumOk { tick }, Seen::ChecksumUnchecked { tick: t }) => assert_eq!(tick, t),
            (v, s) => assert_eq!(v, s),
        }
        if let Seen::Update { own_seq, .. } = s {
            own_seqs.push(own_seq);
        }
    }
    assert_eq!(skimming.tick(), Some(22));
    let expected = [0, 11, 12, 13, 14].map(Some).into_iter();
    let expected: Vec<_> = expected
        .chain([None, Some(99), Some(100), Some(20), Some(22)])
        .collect();
    assert_eq!(own_seqs, expected);
    // It still refuses a delta from a tick it does not hold, and a checksum of another tick.
    server.step(23, |w| w.get_mut(&1).unwrap().seq = 23);
    server.step(24, |w| w.get_mut(&1).unwrap().seq = 24);
    assert_eq!(
        skimming.receive(&server.delta(23, 24)),
        Err(ViewError::Mirror(MirrorError::WrongBase {
            have: Some(22),
            base: 23
        }))
    );
    assert!(matches!(
        skimming.receive(&server.checksum(23)),
        Err(ViewError::Mirror(MirrorError::WrongBase { .. }))
    ));
}
