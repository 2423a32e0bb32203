//! What a game sees of its room: the room types a server hosts ([`RoomTypes`], each a constructor with its
//! caps and tick rate), what a room is opened with ([`Opening`]), and what a game may ask of its room
//! during a tick ([`RoomControl`]: end the match, kick a player).
//!
//! Every room type of one server builds the same game type `G` (a game with several modes matches on
//! `Opening::kind`, or keeps an enum): rooms share the loop's codec, which is typed by the game's state.

use super::{Game, PlayerId};
use crate::sync::World;

/// Longest room or room type name, in bytes.
pub const ROOM_NAME_LEN_MAX: usize = 64;
/// Most options (query parameters besides `type` and `ticket`) a room is opened with.
pub const ROOM_OPTIONS_MAX: usize = 8;
/// Longest option name, in bytes.
pub const ROOM_OPTION_NAME_LEN_MAX: usize = 32;
/// Longest option value, in bytes.
pub const ROOM_OPTION_VALUE_LEN_MAX: usize = 64;

/// Whether `name` is a valid room (or room type) name: 1 to 64 bytes of `A-Z a-z 0-9 _ -`.
pub fn valid_room_name(name: &str) -> bool {
    (1..=ROOM_NAME_LEN_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a room is being created with: its name, its type, and the options of the upgrade that creates it
/// (the query parameters other than `type` and `ticket`, as written: not percent-decoded).
#[derive(Debug, Clone, Copy)]
pub struct Opening<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub options: &'a [(String, String)],
}

impl Opening<'_> {
    /// The value of option `key`, if the creating client gave it.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Builds a room's game against its fresh world, or refuses the options (the text goes into the 400).
pub type MakeGame<G> =
    Box<dyn FnMut(&mut World<<G as Game>::State>, &Opening<'_>) -> Result<G, String>>;

/// One kind of room a server hosts: a name (`type=` in the upgrade URL), a constructor and its limits.
pub struct RoomType<G: Game> {
    pub(crate) name: String,
    pub(crate) make: MakeGame<G>,
    /// Ticks per second of this type's rooms; `None`: the server's `--tick-hz`.
    pub(crate) tick_hz: Option<u16>,
    /// Most players (attached and detached) in one room; `None`: only the game's `join` refuses.
    pub(crate) max_players: Option<usize>,
    /// Most spectators in one room; `None`: no cap but `--max-connections`.
    pub(crate) max_spectators: Option<usize>,
    /// Backplane topics this type's rooms receive (`Game::topic_message`), from every process.
    pub(crate) topics: Vec<String>,
}

impl<G: Game> RoomType<G> {
    /// A room type named `name` (a valid room name) whose rooms `make` builds.
    pub fn new(
        name: &str,
        make: impl FnMut(&mut World<G::State>, &Opening<'_>) -> Result<G, String> + 'static,
    ) -> Self {
        RoomType {
            name: name.to_string(),
            make: Box::new(make),
            tick_hz: None,
            max_players: None,
            max_spectators: None,
            topics: Vec::new(),
        }
    }

    /// Ticks per second of this type's rooms (1..=128).
    pub fn tick_hz(mut self, hz: u16) -> Self {
        self.tick_hz = Some(hz);
        self
    }

    /// Most players per room; a `Hello` past it is closed with 4006.
    pub fn max_players(mut self, max: usize) -> Self {
        self.max_players = Some(max);
        self
    }

    /// Most spectators per room; a `Watch` past it is closed with 4006.
    pub fn max_spectators(mut self, max: usize) -> Self {
        self.max_spectators = Some(max);
        self
    }

    /// Every room of this type receives what is published to `topic` ([`RoomControl::publish`]) by any
    /// room of any process of the cluster, this one included (`Game::topic_message`). A topic is a valid
    /// room name; a type has at most [`TOPICS_PER_TYPE_MAX`].
    pub fn subscribe(mut self, topic: &str) -> Self {
        self.topics.push(topic.to_string());
        self
    }
}

/// Most topics one room type subscribes to.
pub const TOPICS_PER_TYPE_MAX: usize = 16;
/// Most messages one game callback may send (`RoomControl`'s `broadcast`, `send`, `tell`, `publish`);
/// beyond, they are dropped and counted.
pub const OUTBOX_MAX: usize = 64;

/// The room types a server hosts; the first is the default (plain `/ws`, and `/ws/NAME` without `type=`).
pub struct RoomTypes<G: Game> {
    pub(crate) types: Vec<RoomType<G>>,
}

impl<G: Game> RoomTypes<G> {
    pub fn new(default: RoomType<G>) -> Self {
        RoomTypes {
            types: vec![default],
        }
    }

    /// Adds another room type.
    pub fn with(mut self, room_type: RoomType<G>) -> Self {
        self.types.push(room_type);
        self
    }

    /// Checks every type's name, rate and caps, and that no two share a name.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (i, t) in self.types.iter().enumerate() {
            if !valid_room_name(&t.name) {
                return Err(format!(
                    "room type name {:?}: 1 to 64 of A-Z a-z 0-9 _ -",
                    t.name
                ));
            }
            if self.types[..i].iter().any(|u| u.name == t.name) {
                return Err(format!("room type {} registered twice", t.name));
            }
            if t.tick_hz.is_some_and(|hz| !(1..=128).contains(&hz)) {
                return Err(format!("room type {}: tick_hz must be 1..=128", t.name));
            }
            if t.topics.len() > TOPICS_PER_TYPE_MAX {
                return Err(format!(
                    "room type {}: at most {TOPICS_PER_TYPE_MAX} topics",
                    t.name
                ));
            }
            if let Some(topic) = t.topics.iter().find(|topic| !valid_room_name(topic)) {
                return Err(format!(
                    "room type {}: topic {topic:?}: 1 to 64 of A-Z a-z 0-9 _ -",
                    t.name
                ));
            }
            if t.max_players == Some(0) {
                return Err(format!(
                    "room type {}: max_players must be at least 1",
                    t.name
                ));
            }
        }
        Ok(())
    }

    /// Every type's name and player cap, the default first (what a cluster's matchmaker fills rooms by).
    pub(crate) fn seats(&self) -> Vec<(String, Option<usize>)> {
        self.types
            .iter()
            .map(|t| (t.name.clone(), t.max_players))
            .collect()
    }

    /// Every topic some type subscribes to, once each.
    pub(crate) fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.types.iter().flat_map(|t| t.topics.clone()).collect();
        topics.sort();
        topics.dedup();
        topics
    }

    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.types.iter().position(|t| t.name == name)
    }
}

/// What a game asks of its room (`Game::step`, `Game::message`, `Game::topic_message`).
///
/// Kicks and the end take effect once the room's next tick update has gone out (right after a `step`):
/// kicked players' connections are closed with 4008, an ended room's with 4007, each with the reason
/// given here (cut to fit a close frame). Messages (`broadcast`, `send`, `tell`, `publish`) go as soon as
/// the callback returns, outside the tick's update: at most [`OUTBOX_MAX`] per callback, each body at most
/// [`crate::proto::MESSAGE_BODY_MAX`] bytes; what is past either bound is dropped and counted.
#[derive(Debug, Default)]
pub struct RoomControl {
    pub(crate) kicks: Vec<(PlayerId, String)>,
    pub(crate) ended: Option<String>,
    pub(crate) outbox: Vec<Outgoing>,
    /// Messages dropped for either bound since the loop last looked.
    pub(crate) refused: u64,
}

/// A message a game sent, waiting for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// To every member of the room, players and spectators.
    Room(Vec<u8>),
    /// To one player of the room.
    Player(PlayerId, Vec<u8>),
    /// To every connection whose ticket named `account`, on any process.
    Account(String, Vec<u8>),
    /// To every room subscribed to `topic`, on every process.
    Topic(String, Vec<u8>),
}

impl RoomControl {
    /// Nothing asked.
    pub(crate) fn is_empty(&self) -> bool {
        self.kicks.is_empty() && self.ended.is_none()
    }

    /// Removes `player` from the room: its connection (if it has one) is closed with 4008 `kicked:
    /// <reason>`, and the player leaves (`Game::leave`); its token resumes nothing.
    pub fn kick(&mut self, player: PlayerId, reason: impl Into<String>) {
        self.kicks.push((player, reason.into()));
    }

    /// Ends the room (match over): after this tick's update every connection in it is closed with 4007
    /// `room ended: <reason>`, and the room is gone; its name may be created anew.
    pub fn end(&mut self, reason: impl Into<String>) {
        self.ended.get_or_insert_with(|| reason.into());
    }

    /// Sends `body` to every member of this room (a `Message`, outside the replicated state).
    pub fn broadcast(&mut self, body: &[u8]) {
        self.push(Outgoing::Room(body.to_vec()), body.len());
    }

    /// Sends `body` to `player` of this room, if it is connected.
    pub fn send(&mut self, player: PlayerId, body: &[u8]) {
        self.push(Outgoing::Player(player, body.to_vec()), body.len());
    }

    /// Sends `body` to the player whose ticket named `account` (the game backend's player id), on
    /// whichever process of the cluster it is connected to; at most once, and not at all while Redis is
    /// unreachable (docs/CLUSTER.md, "Backplane").
    pub fn tell(&mut self, account: &str, body: &[u8]) {
        self.push(
            Outgoing::Account(account.to_string(), body.to_vec()),
            body.len(),
        );
    }

    /// Publishes `body` to `topic`: every room whose type subscribes to it, on every process of the
    /// cluster (this one at once, the others through Redis), gets `Game::topic_message`.
    pub fn publish(&mut self, topic: &str, body: &[u8]) {
        self.push(
            Outgoing::Topic(topic.to_string(), body.to_vec()),
            body.len(),
        );
    }

    fn push(&mut self, msg: Outgoing, len: usize) {
        if self.outbox.len() >= OUTBOX_MAX || len > crate::proto::MESSAGE_BODY_MAX {
            self.refused += 1;
            return;
        }
        self.outbox.push(msg);
    }
}
