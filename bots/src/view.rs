//! One bot's view of the world: decodes each server message, applies `Full` and `Delta` to a
//! [`Mirror`], checks every `Checksum`, and says what happened. No I/O and no clock, so the whole
//! correctness check is unit-tested on bytes.
//!
//! A view can outlive its connection: a bot that resumes its player (`Hello.resume`, see *Resuming* in
//! `docs/PROTOCOL.md`) carries the view to the next connection ([`View::reconnect`]), presents its token
//! and the tick its mirror holds ([`View::resume_request`]), and keeps the mirror when the server honours
//! the resume, so the update that follows applies to it. A refused resume is a new player: the mirror
//! starts again from the `Full` that follows.
//!
//! A view either **verifies** (the default: the whole world is mirrored and every `Checksum` checked) or
//! **skims** ([`View::skimming`], the bots' `--verify-fraction`): it keeps only its own entity and the
//! tick it holds, reads a `Full` or `Delta` only up to its own entry (the rest is neither decoded nor
//! checked), and counts each `Checksum` unchecked. A skimming view still checks the order of updates
//! (a `Delta` from the tick it holds), its own entity's presence and its acks; it costs a few ns per entity
//! in front of its own instead of a decode and an apply of every entity, so one core drives more bots.
//!
//! A view belongs to one room (docs/PROTOCOL.md, Rooms): the bot asks for it in its upgrade URL, every
//! `Welcome` must name it, and the mirror follows that room's world, ticks and checksums alone.

use serde::de::DeserializeOwned;
use tickcast::proto::{self, server_tag, DecodeError, Resume, ResumeToken, ServerMsg};
use tickcast::sync::{Mirror, MirrorError, Replicate};

use crate::game::{Arena, BotGame};

/// A server message of game `G` (the arena by default).
pub type Msg<G = Arena> = ServerMsg<<G as BotGame>::State, Diff<G>>;
/// The diff of one entity of game `G`.
type Diff<G> = <<G as BotGame>::State as Replicate>::Diff;

/// What a message did to the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A game `Message` (a chat line, say) of `len` bytes: outside the replicated state, nothing to check
    /// but its size (at most [`proto::MESSAGE_BODY_MAX`]) and that it came after `Welcome`.
    Message {
        len: usize,
    },
    /// The first message of a connection.
    Welcome {
        tick: u64,
        tick_hz: u16,
        connection_id: u64,
    },
    /// The entity this bot controls. `resumed`: the server honoured the resume the bot asked for (same
    /// player, mirror kept); `refused`: the bot asked to resume and is a new player instead.
    Joined {
        entity: u32,
        resumed: bool,
        refused: bool,
    },
    /// A `Full` or `Delta` was applied: the mirror now holds `tick`. `own_seq` is the input seq the
    /// server has applied for this bot's entity, once the entity is in the world.
    Update {
        tick: u64,
        kind: UpdateKind,
        own_seq: Option<u32>,
    },
    /// A `Checksum` matched the mirror.
    ChecksumOk {
        tick: u64,
    },
    /// A `Checksum` a skimming view did not check (it holds no mirror to hash).
    ChecksumUnchecked {
        tick: u64,
    },
    Pong {
        nonce: u64,
        tick: u64,
    },
}

/// How an update relates to the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// The first `Full` of the connection.
    First,
    /// A delta from the previous tick: nothing missed.
    Next,
    /// A delta over `skipped` ticks the bot never saw on their own: the server coalesced them because
    /// the bot was behind. A gap, not an error.
    Coalesced { skipped: u64 },
    /// A `Full` replacing a mirror the bot already had: the bot was behind by more than the server's
    /// history. Also a gap, not an error.
    Resync { skipped: u64 },
    /// The first update after an honoured resume: a `Delta` from the tick the bot presented, over the
    /// `skipped` ticks it was away. What the protocol promises while the server's history reaches back.
    ResumeDelta { skipped: u64 },
    /// The first update after an honoured resume: a `Full`, because the presented tick had left the
    /// server's history (or the bot held no tick). Not an error, but it costs what a resume saves.
    ResumeFull { skipped: u64 },
}

impl UpdateKind {
    /// Whether ticks were skipped on the way to this update.
    pub fn is_gap(self) -> bool {
        matches!(
            self,
            UpdateKind::Coalesced { .. } | UpdateKind::Resync { .. }
        )
    }
}

/// Why the view could not follow the server; each is a correctness error of the server (or the bot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewError {
    /// The bytes are not a server message.
    Decode(DecodeError),
    /// `Welcome` announced a protocol version other than the bots' own.
    Version { server: u16 },
    /// `Welcome` named another room than the one the bot asked for in its upgrade URL.
    WrongRoom { asked: String, got: String },
    /// A message the protocol does not allow here (anything before `Welcome`, an update going back).
    OutOfOrder(String),
    /// The mirror could not apply a delta (from a base it does not hold, for an unknown entity).
    Mirror(MirrorError),
    /// The mirror's hash at `tick` differs from the server's.
    ChecksumMismatch { tick: u64, server: u64, mirror: u64 },
    /// A game `Message` longer than the protocol allows ([`proto::MESSAGE_BODY_MAX`]).
    MessageTooLong { len: usize },
}

impl ViewError {
    /// The tick the error is about, when there is one.
    pub fn tick(&self) -> Option<u64> {
        match self {
            ViewError::ChecksumMismatch { tick, .. } => Some(*tick),
            ViewError::Mirror(MirrorError::UnknownEntity { tick, .. }) => Some(*tick),
            ViewError::Mirror(MirrorError::IdOutOfRange { tick, .. }) => Some(*tick),
            ViewError::Mirror(MirrorError::WrongBase { base, .. }) => Some(*base),
            ViewError::Mirror(MirrorError::ChecksumMismatch { tick, .. }) => Some(*tick),
            ViewError::Decode(_)
            | ViewError::Version { .. }
            | ViewError::WrongRoom { .. }
            | ViewError::OutOfOrder(_)
            | ViewError::MessageTooLong { .. } => None,
        }
    }
}

impl std::fmt::Display for ViewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ViewError::Decode(e) => write!(f, "undecodable server message: {e}"),
            ViewError::Version { server } => write!(
                f,
                "server speaks protocol {server}, the bots speak {}",
                proto::PROTOCOL_VERSION
            ),
            ViewError::WrongRoom { asked, got } => {
                write!(f, "asked for room {asked:?}, Welcome says room {got:?}")
            }
            ViewError::OutOfOrder(what) => write!(f, "out of order: {what}"),
            ViewError::MessageTooLong { len } => write!(
                f,
                "a game Message of {len} bytes, over the {} the protocol allows",
                proto::MESSAGE_BODY_MAX
            ),
            ViewError::Mirror(e) => write!(f, "mirror cannot follow: {e}"),
            ViewError::ChecksumMismatch {
                tick,
                server,
                mirror,
            } => write!(
                f,
                "checksum mismatch at tick {tick}: mirror {mirror:#018x}, server {server:#018x}"
            ),
        }
    }
}

/// The tick a bot presents in `Hello.resume` when its mirror holds none (it dropped before its first
/// update): no server history reaches it, so the answer is a `Full`. Presenting 0 instead could earn a
/// `Delta` from tick 0 of a young server, which an empty mirror cannot apply.
pub const RESUME_TICK_NONE: u64 = u64::MAX;

/// The mirrored world plus what the bot knows about itself in it: one connection's, or a player's across
/// resumed connections.
#[derive(Debug)]
pub struct View<G: BotGame = Arena> {
    store: Store<G>,
    /// `Welcome` arrived on the current connection.
    welcomed: bool,
    /// The room the bot asks for in its upgrade URL, which every `Welcome` must name; `None` for the
    /// server's default room (`/ws`), whatever its name.
    room: Option<String>,
    /// The room the last `Welcome` named.
    welcomed_room: Option<String>,
    entity: Option<u32>,
    /// From the last `Joined`: what resumes this player (each resume's `Joined` brings a new one).
    token: Option<ResumeToken>,
    /// The tick presented in this connection's `Hello.resume`, until `Joined` answers it.
    asked: Option<u64>,
    /// The tick an honoured resume starts from, until the first update after it.
    resumed_from: Option<u64>,
    /// The input seq the kept mirror showed for the player when the resume was honoured: the server must
    /// not go back on it.
    resumed_seq: Option<u32>,
}

impl<G: BotGame> Default for View<G> {
    fn default() -> Self {
        View {
            store: Store::default(),
            welcomed: false,
            room: None,
            welcomed_room: None,
            entity: None,
            token: None,
            asked: None,
            resumed_from: None,
            resumed_seq: None,
        }
    }
}

impl<G: BotGame> View<G> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A view of a bot that asks for room `room` (see [`View::room`]); `None` for the default room.
    pub fn in_room(room: Option<String>) -> Self {
        View {
            room,
            ..View::default()
        }
    }

    /// A view that skims instead of verifying (see the module's doc).
    pub fn skimming(mut self) -> Self {
        self.store = Store::Own(Own::default());
        self
    }

    /// Whether this view mirrors the world and checks its checksums.
    pub fn verifies(&self) -> bool {
        matches!(self.store, Store::Mirror(_))
    }

    /// The room the last `Welcome` named (the one asked for, once checked).
    pub fn room(&self) -> Option<&str> {
        self.welcomed_room.as_deref()
    }

    /// The tick the mirror holds.
    pub fn tick(&self) -> Option<u64> {
        self.store.tick()
    }

    pub fn entity(&self) -> Option<u32> {
        self.entity
    }

    /// The resume token of the last `Joined`, once there was one.
    pub fn token(&self) -> Option<ResumeToken> {
        self.token
    }

    /// A new connection begins: it must start with `Welcome` again. The mirror, the entity and the token
    /// stay, for [`View::resume_request`].
    pub fn reconnect(&mut self) {
        self.welcomed = false;
        self.asked = None;
        self.resumed_from = None;
        self.resumed_seq = None;
    }

    /// What to put in `Hello.resume`: the token and the tick the mirror holds ([`RESUME_TICK_NONE`] when
    /// it holds none). `None` when the view has no player to resume. Remembers the tick, to check the
    /// answer and the update after it.
    pub fn resume_request(&mut self) -> Option<Resume> {
        let token = self.token?;
        let tick = self.store.tick().unwrap_or(RESUME_TICK_NONE);
        self.asked = Some(tick);
        Some(Resume { token, tick })
    }

    /// The mirror of a verifying view.
    pub fn mirror(&self) -> Option<&Mirror<G::State>> {
        match &self.store {
            Store::Mirror(m) => Some(m),
            Store::Own(_) => None,
        }
    }

    /// Decodes and applies one binary message.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Seen, ViewError> {
        if !self.verifies() && self.welcomed {
            let (tag, used) = decode_prefix::<u32>(bytes)?;
            if matches!(
                tag,
                server_tag::FULL | server_tag::DELTA | server_tag::CHECKSUM
            ) {
                return self.skim(tag, &bytes[used..]);
            }
        }
        let msg: Msg<G> = proto::decode(bytes).map_err(ViewError::Decode)?;
        self.apply(msg)
    }

    /// A skimming view's `Full`, `Delta` or `Checksum` (`tag`), `body` the bytes after the tag.
    fn skim(&mut self, tag: u32, body: &[u8]) -> Result<Seen, ViewError> {
        let mut r = Fields(body);
        let own_id = self.entity;
        match tag {
            server_tag::FULL => {
                let tick = r.next::<u64>()?;
                let kind = self.full_kind(tick)?;
                let own = r.find::<G::State>(own_id)?;
                self.store = Store::Own(Own {
                    tick: Some(tick),
                    entity: own,
                });
                self.updated(tick, kind)
            }
            server_tag::DELTA => {
                let (base, tick) = (r.next::<u64>()?, r.next::<u64>()?);
                let kind = self.delta_kind(base, tick)?;
                let Store::Own(own) = &mut self.store else {
                    unreachable!("only a skimming view skims")
                };
                if own.tick != Some(base) {
                    return Err(ViewError::Mirror(MirrorError::WrongBase {
                        have: own.tick,
                        base,
                    }));
                }
                // Despawned, then set, then changed (docs/PROTOCOL.md): the first two are walked whole
                // (they are short; what follows them starts after them), the last only up to our entry.
                if r.despawned(own_id)? {
                    own.entity = None;
                }
                if let Some(state) = r.last_of::<G::State>(own_id)? {
                    own.entity = Some(state);
                }
                if let Some(id) = own_id {
                    if let Some(diff) = r.find::<Diff<G>>(Some(id))? {
                        let Some(entity) = &mut own.entity else {
                            return Err(ViewError::Mirror(MirrorError::UnknownEntity { tick, id }));
                        };
                        Replicate::apply(entity, &diff);
                    }
                }
                own.tick = Some(tick);
                self.updated(tick, kind)
            }
            _ => {
                let tick = r.next::<u64>()?;
                if self.store.tick() != Some(tick) {
                    return Err(ViewError::Mirror(MirrorError::WrongBase {
                        have: self.store.tick(),
                        base: tick,
                    }));
                }
                Ok(Seen::ChecksumUnchecked { tick })
            }
        }
    }

    /// Applies one decoded message.
    pub fn apply(&mut self, msg: Msg<G>) -> Result<Seen, ViewError> {
        if !self.welcomed && !matches!(msg, ServerMsg::Welcome { .. }) {
            return Err(ViewError::OutOfOrder(
                "a message before Welcome".to_string(),
            ));
        }
        match msg {
            ServerMsg::Welcome {
                protocol,
                tick,
                tick_hz,
                connection_id,
                room,
            } => {
                if self.welcomed {
                    return Err(ViewError::OutOfOrder("a second Welcome".to_string()));
                }
                if protocol != proto::PROTOCOL_VERSION {
                    return Err(ViewError::Version { server: protocol });
                }
                if let Some(asked) = self.room.as_ref().filter(|asked| **asked != room) {
                    return Err(ViewError::WrongRoom {
                        asked: asked.clone(),
                        got: room,
                    });
                }
                self.welcomed = true;
                self.welcomed_room = Some(room);
                Ok(Seen::Welcome {
                    tick,
                    tick_hz,
                    connection_id,
                })
            }
            ServerMsg::Joined {
                entity,
                resume_token,
                resumed,
            } => self.joined(entity, resume_token, resumed),
            ServerMsg::Full { tick, .. } => {
                let kind = self.full_kind(tick)?;
                self.apply_update(msg, tick, kind)
            }
            ServerMsg::Delta { base, tick, .. } => {
                let kind = self.delta_kind(base, tick)?;
                self.apply_update(msg, tick, kind)
            }
            ServerMsg::Checksum { tick, .. } => match self.store.mirror_mut().apply(msg) {
                Ok(_) => Ok(Seen::ChecksumOk { tick }),
                Err(MirrorError::ChecksumMismatch {
                    tick,
                    server,
                    mirror,
                }) => Err(ViewError::ChecksumMismatch {
                    tick,
                    server,
                    mirror,
                }),
                Err(e) => Err(ViewError::Mirror(e)),
            },
            ServerMsg::Pong { nonce, tick } => Ok(Seen::Pong { nonce, tick }),
            ServerMsg::Message { body } if body.len() > proto::MESSAGE_BODY_MAX => {
                Err(ViewError::MessageTooLong { len: body.len() })
            }
            ServerMsg::Message { body } => Ok(Seen::Message { len: body.len() }),
        }
    }

    /// `Joined`: an honoured resume must name the same entity and token and keeps the mirror; anything
    /// else is a new player, whose world starts from the `Full` that follows.
    fn joined(
        &mut self,
        entity: u32,
        token: ResumeToken,
        resumed: bool,
    ) -> Result<Seen, ViewError> {
        let asked = self.asked.take();
        if resumed {
            if asked.is_none() {
                return Err(ViewError::OutOfOrder(
                    "Joined says resumed, but no resume was asked for".to_string(),
                ));
            }
            if self.entity != Some(entity) {
                return Err(ViewError::OutOfOrder(format!(
                    "resumed as entity {entity}, the player's entity was {:?}",
                    self.entity
                )));
            }
            if self.token == Some(token) {
                return Err(ViewError::OutOfOrder(
                    "resumed with the token it presented: a resume must rotate it".to_string(),
                ));
            }
            // The token presented resumes nothing from now on; the next resume presents this one.
            self.token = Some(token);
            self.resumed_from = asked;
            self.resumed_seq = self.store.get(entity).and_then(G::ack);
        } else {
            self.store.clear();
            self.entity = Some(entity);
            self.token = Some(token);
        }
        Ok(Seen::Joined {
            entity,
            resumed,
            refused: asked.is_some() && !resumed,
        })
    }

    /// How a `Full` for `tick` relates to what the view holds.
    fn full_kind(&mut self, tick: u64) -> Result<UpdateKind, ViewError> {
        let resumed = self.resumed_from.take();
        Ok(match self.store.tick() {
            None if resumed.is_some() => UpdateKind::ResumeFull { skipped: 0 },
            None => UpdateKind::First,
            Some(had) if tick > had && resumed.is_some() => UpdateKind::ResumeFull {
                skipped: tick - had - 1,
            },
            Some(had) if tick > had => UpdateKind::Resync {
                skipped: tick - had - 1,
            },
            Some(had) => {
                return Err(ViewError::OutOfOrder(format!(
                    "Full for tick {tick} after tick {had}"
                )))
            }
        })
    }

    /// How a `Delta` from `base` to `tick` relates to the one before it (and to a resume asked for).
    fn delta_kind(&mut self, base: u64, tick: u64) -> Result<UpdateKind, ViewError> {
        if tick <= base {
            return Err(ViewError::OutOfOrder(format!(
                "Delta from tick {base} to tick {tick}"
            )));
        }
        Ok(if let Some(from) = self.resumed_from.take() {
            if base != from {
                return Err(ViewError::OutOfOrder(format!(
                    "resumed from tick {from}, then a Delta from tick {base}"
                )));
            }
            UpdateKind::ResumeDelta {
                skipped: tick - base - 1,
            }
        } else if tick == base + 1 {
            UpdateKind::Next
        } else {
            UpdateKind::Coalesced {
                skipped: tick - base - 1,
            }
        })
    }

    fn apply_update(
        &mut self,
        msg: Msg<G>,
        tick: u64,
        kind: UpdateKind,
    ) -> Result<Seen, ViewError> {
        self.store
            .mirror_mut()
            .apply(msg)
            .map_err(ViewError::Mirror)?;
        self.updated(tick, kind)
    }

    /// The update of `tick` is applied: the player's own seq, and the checks of a resume.
    fn updated(&mut self, tick: u64, kind: UpdateKind) -> Result<Seen, ViewError> {
        let own_seq = self
            .entity
            .and_then(|id| self.store.get(id))
            .and_then(G::ack);
        if matches!(
            kind,
            UpdateKind::ResumeDelta { .. } | UpdateKind::ResumeFull { .. }
        ) {
            // The resumed player is the same one: its entity is still there, its seq has not gone back.
            let before = self.resumed_seq.take();
            match own_seq {
                None => {
                    return Err(ViewError::OutOfOrder(format!(
                        "the resumed player's entity {:?} is not in the world at tick {tick}",
                        self.entity
                    )))
                }
                Some(now) if before.is_some_and(|before| now < before) => {
                    return Err(ViewError::OutOfOrder(format!(
                        "the resumed player's input seq went back from {} to {now}",
                        before.unwrap_or_default()
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(Seen::Update {
            tick,
            kind,
            own_seq,
        })
    }
}

/// What a view keeps of the world.
#[derive(Debug)]
enum Store<G: BotGame> {
    /// A verifying view's mirror of every entity.
    Mirror(Mirror<G::State>),
    /// A skimming view's own entity and the tick it holds.
    Own(Own<G>),
}

impl<G: BotGame> Default for Store<G> {
    fn default() -> Self {
        Store::Mirror(Mirror::default())
    }
}

#[derive(Debug)]
struct Own<G: BotGame> {
    tick: Option<u64>,
    /// The view's entity's state, once an update had it.
    entity: Option<G::State>,
}

impl<G: BotGame> Default for Own<G> {
    fn default() -> Self {
        Own {
            tick: None,
            entity: None,
        }
    }
}

impl<G: BotGame> Store<G> {
    fn tick(&self) -> Option<u64> {
        match self {
            Store::Mirror(m) => m.tick(),
            Store::Own(o) => o.tick,
        }
    }

    /// Entity `id`'s state; a skimming view knows only its own (the caller asks for no other).
    fn get(&self, id: u32) -> Option<&G::State> {
        match self {
            Store::Mirror(m) => m.get(id),
            Store::Own(o) => o.entity.as_ref(),
        }
    }

    /// A new player: nothing held.
    fn clear(&mut self) {
        *self = match self {
            Store::Mirror(_) => Store::Mirror(Mirror::default()),
            Store::Own(_) => Store::Own(Own::default()),
        }
    }

    /// The mirror of a verifying view; a skimming view never gets here (it skims what needs one).
    fn mirror_mut(&mut self) -> &mut Mirror<G::State> {
        match self {
            Store::Mirror(m) => m,
            Store::Own(_) => unreachable!("a skimming view skims updates and checksums"),
        }
    }
}

fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), ViewError> {
    proto::decode_prefix(bytes).map_err(ViewError::Decode)
}

/// The fields of a message, read one after another from the front.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn next<T: DeserializeOwned>(&mut self) -> Result<T, ViewError> {
        let (value, used) = decode_prefix(self.0)?;
        self.0 = &self.0[used..];
        Ok(value)
    }

    /// Reads a whole list of id gaps (`Delta.despawned`): whether id `own` is in it.
    fn despawned(&mut self, own: Option<u32>) -> Result<bool, ViewError> {
        let (mut id, mut seen) = (0u32, false);
        for _ in 0..self.next::<u64>()? {
            id = id.wrapping_add(self.next::<u32>()?);
            seen |= Some(id) == own;
        }
        Ok(seen)
    }

    /// Reads a whole list of `(id gap, T)` (`Delta.set`, which the rest of the message follows): the
    /// element of id `own`, if there is one.
    fn last_of<T: DeserializeOwned>(&mut self, own: Option<u32>) -> Result<Option<T>, ViewError> {
        let (mut id, mut mine) = (0u32, None);
        for _ in 0..self.next::<u64>()? {
            id = id.wrapping_add(self.next::<u32>()?);
            let value = self.next::<T>()?;
            if Some(id) == own {
                mine = Some(value);
            }
        }
        Ok(mine)
    }

    /// Reads a list of `(id gap, T)` only up to the element of id `own` and returns it; the rest of the
    /// message is left unread (ids ascend, so nothing after it can be ours).
    fn find<T: DeserializeOwned>(&mut self, own: Option<u32>) -> Result<Option<T>, ViewError> {
        let len = self.next::<u64>()?;
        let Some(own) = own else { return Ok(None) };
        let mut id = 0u32;
        for _ in 0..len {
            id = id.wrapping_add(self.next::<u32>()?);
            if id > own {
                return Ok(None);
            }
            let value = self.next::<T>()?;
            if id == own {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
