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
//! A view belongs to one room (docs/PROTOCOL.md, Rooms): the bot asks for it in its upgrade URL, every
//! `Welcome` must name it, and the mirror follows that room's world, ticks and checksums alone.

use tickcast::proto::{self, DecodeError, Resume, ResumeToken, ServerMsg};
use tickcast::sim::arena::{ArenaDiff, ArenaEntity};
use tickcast::sync::{Mirror, MirrorError};

/// A server message of the arena game.
pub type Msg = ServerMsg<ArenaEntity, ArenaDiff>;

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
#[derive(Debug, Default)]
pub struct View {
    mirror: Mirror<ArenaEntity>,
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

impl View {
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

    /// The room the last `Welcome` named (the one asked for, once checked).
    pub fn room(&self) -> Option<&str> {
        self.welcomed_room.as_deref()
    }

    /// The tick the mirror holds.
    pub fn tick(&self) -> Option<u64> {
        self.mirror.tick()
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
        let tick = self.mirror.tick().unwrap_or(RESUME_TICK_NONE);
        self.asked = Some(tick);
        Some(Resume { token, tick })
    }

    pub fn mirror(&self) -> &Mirror<ArenaEntity> {
        &self.mirror
    }

    /// Decodes and applies one binary message.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Seen, ViewError> {
        let msg: Msg = proto::decode(bytes).map_err(ViewError::Decode)?;
        self.apply(msg)
    }

    /// Applies one decoded message.
    pub fn apply(&mut self, msg: Msg) -> Result<Seen, ViewError> {
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
                let resumed = self.resumed_from.take();
                let kind = match self.mirror.tick() {
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
                };
                self.apply_update(msg, tick, kind)
            }
            ServerMsg::Delta { base, tick, .. } => {
                if tick <= base {
                    return Err(ViewError::OutOfOrder(format!(
                        "Delta from tick {base} to tick {tick}"
                    )));
                }
                let kind = if let Some(from) = self.resumed_from.take() {
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
                };
                self.apply_update(msg, tick, kind)
            }
            ServerMsg::Checksum { tick, .. } => match self.mirror.apply(msg) {
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
            self.resumed_seq = self.mirror.get(entity).map(|e| e.seq);
        } else {
            self.mirror = Mirror::default();
            self.entity = Some(entity);
            self.token = Some(token);
        }
        Ok(Seen::Joined {
            entity,
            resumed,
            refused: asked.is_some() && !resumed,
        })
    }

    fn apply_update(&mut self, msg: Msg, tick: u64, kind: UpdateKind) -> Result<Seen, ViewError> {
        self.mirror.apply(msg).map_err(ViewError::Mirror)?;
        let own_seq = self
            .entity
            .and_then(|id| self.mirror.get(id))
            .map(|e| e.seq);
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

#[cfg(test)]
mod tests;
