//! A client's copy of the replicated world, rebuilt from `Full` and `Delta` messages and checked against
//! `Checksum`s. Used by the bots, the tests and the benches; a game client in another language does the same
//! (see `docs/PROTOCOL.md`).

use super::Replicate;
use crate::proto::{self, ServerMsg};

/// Why a mirror could not follow the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorError {
    /// A `Delta` from a baseline the mirror does not hold, or a `Checksum` for a tick it does not hold.
    WrongBase { have: Option<u64>, base: u64 },
    /// A diff for an entity the mirror does not have.
    UnknownEntity { tick: u64, id: u32 },
    /// The mirror's hash differs from the server's.
    ChecksumMismatch { tick: u64, server: u64, mirror: u64 },
    /// An id of [`ID_MAX`] or more: the server's ids are dense, so this is a broken or hostile server.
    IdOutOfRange { tick: u64, id: u32 },
}

impl std::fmt::Display for MirrorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MirrorError::WrongBase { have, base } => {
                write!(f, "delta from tick {base}, mirror holds {have:?}")
            }
            MirrorError::UnknownEntity { tick, id } => {
                write!(f, "tick {tick}: diff for unknown entity {id}")
            }
            MirrorError::ChecksumMismatch {
                tick,
                server,
                mirror,
            } => {
                write!(
                    f,
                    "tick {tick}: checksum {mirror:#018x}, server says {server:#018x}"
                )
            }
            MirrorError::IdOutOfRange { tick, id } => {
                write!(f, "tick {tick}: entity id {id} is not below {ID_MAX}")
            }
        }
    }
}

impl std::error::Error for MirrorError {}

/// Ids a mirror accepts are below this: it bounds the mirror's memory whatever a server sends.
pub const ID_MAX: u32 = 1 << 22;

/// The mirrored world, indexed by id: the server's ids are small and dense (reused lowest first), so a slot
/// per id makes every update O(1), and walking the slots gives the ascending order the checksum hashes in.
#[derive(Debug, Clone)]
pub struct Mirror<S: Replicate> {
    entities: Vec<Option<S>>,
    alive: usize,
    tick: Option<u64>,
    /// Updates that arrived as a coalesced delta (more than one tick after the last).
    pub coalesced: u64,
    /// `Full` snapshots applied.
    pub fulls: u64,
    pub checksums_verified: u64,
    scratch: Vec<u8>,
}

impl<S: Replicate> Default for Mirror<S> {
    fn default() -> Self {
        Mirror {
            entities: Vec::new(),
            alive: 0,
            tick: None,
            coalesced: 0,
            fulls: 0,
            checksums_verified: 0,
            scratch: Vec::new(),
        }
    }
}

impl<S: Replicate> Mirror<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tick the mirror holds, once it has a `Full`.
    pub fn tick(&self) -> Option<u64> {
        self.tick
    }

    pub fn get(&self, id: u32) -> Option<&S> {
        self.entities.get(id as usize)?.as_ref()
    }

    pub fn len(&self) -> usize {
        self.alive
    }

    pub fn is_empty(&self) -> bool {
        self.alive == 0
    }

    /// Entities in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &S)> {
        self.entities
            .iter()
            .enumerate()
            .filter_map(|(id, s)| Some((id as u32, s.as_ref()?)))
    }

    fn insert(&mut self, tick: u64, id: u32, state: S) -> Result<(), MirrorError> {
        if id >= ID_MAX {
            return Err(MirrorError::IdOutOfRange { tick, id });
        }
        let i = id as usize;
        if i >= self.entities.len() {
            self.entities.resize_with(i + 1, || None);
        }
        if self.entities[i].replace(state).is_none() {
            self.alive += 1;
        }
        Ok(())
    }

    fn remove(&mut self, id: u32) {
        if let Some(slot) = self.entities.get_mut(id as usize) {
            if slot.take().is_some() {
                self.alive -= 1;
            }
        }
    }

    /// Applies a replication message; other messages are ignored. Returns the tick now held when it moved.
    pub fn apply(&mut self, msg: ServerMsg<S, S::Diff>) -> Result<Option<u64>, MirrorError> {
        match msg {
            ServerMsg::Full { tick, mut entities } => {
                proto::ungap(&mut entities);
                self.entities.clear();
                self.alive = 0;
                for (id, state) in entities {
                    self.insert(tick, id, state)?;
                }
                self.tick = Some(tick);
                self.fulls += 1;
                Ok(Some(tick))
            }
            ServerMsg::Delta {
                base,
                tick,
                mut despawned,
                mut set,
                mut changed,
            } => {
                if self.tick != Some(base) {
                    return Err(MirrorError::WrongBase {
                        have: self.tick,
                        base,
                    });
                }
                proto::ungap_ids(&mut despawned);
                proto::ungap(&mut set);
                proto::ungap(&mut changed);
                for id in despawned {
                    self.remove(id);
                }
                for (id, state) in set {
                    self.insert(tick, id, state)?;
                }
                for (id, diff) in changed {
                    let state = self
                        .entities
                        .get_mut(id as usize)
                        .and_then(Option::as_mut)
                        .ok_or(MirrorError::UnknownEntity { tick, id })?;
                    state.apply(&diff);
                }
                if tick > base + 1 {
                    self.coalesced += 1;
                }
                self.tick = Some(tick);
                Ok(Some(tick))
            }
            ServerMsg::Checksum { tick, hash } => {
                // The server sends a checksum right after the update of the same tick, never on its own.
                if self.tick != Some(tick) {
                    return Err(MirrorError::WrongBase {
                        have: self.tick,
                        base: tick,
                    });
                }
                let mine = self.hash();
                if mine != hash {
                    return Err(MirrorError::ChecksumMismatch {
                        tick,
                        server: hash,
                        mirror: mine,
                    });
                }
                self.checksums_verified += 1;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// The world hash as `Checksum` defines it.
    pub fn hash(&mut self) -> u64 {
        let entities = self.entities.iter().enumerate();
        let live = entities.filter_map(|(id, s)| Some((id as u32, s.as_ref()?)));
        proto::world_hash(&mut self.scratch, live)
    }
}
