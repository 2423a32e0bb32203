//! The replicated world: dense entity slots, each stamped with the tick it last changed and was spawned,
//! plus a bounded log of despawns. This is what lets any baseline within the history be brought up to date
//! without keeping old copies of the world.

use std::collections::{BinaryHeap, VecDeque};

use std::cmp::Reverse;

use super::Replicate;

/// Entity ids are dense and reused (lowest free first) so they stay small on the wire.
pub type EntityId = u32;

/// Bounds of a [`World`].
#[derive(Debug, Clone, Copy)]
pub struct WorldLimits {
    /// Most entities alive at once; `spawn` refuses beyond it.
    pub entities_max: usize,
    /// How many ticks back a baseline can be and still get a delta instead of a `Full`.
    pub history_ticks: u64,
    /// Most despawns remembered; when the log is full the oldest entry goes and baselines before it get a
    /// `Full` instead (never a wrong delta).
    pub despawn_log_max: usize,
}

impl Default for WorldLimits {
    fn default() -> Self {
        WorldLimits {
            entities_max: 65_536,
            history_ticks: 128,
            despawn_log_max: 65_536,
        }
    }
}

#[derive(Debug)]
struct Slot<S> {
    state: S,
    /// The state at the end of the tick before `changed`: what a client one tick behind holds.
    prev: S,
    changed: u64,
    spawned: u64,
}

/// The replicated world. The game mutates it through `spawn`, `set` and `despawn`; the update phase reads
/// it after the step, when it holds exactly the state of [`World::tick`].
#[derive(Debug)]
pub struct World<S: Replicate> {
    slots: Vec<Option<Slot<S>>>,
    free: BinaryHeap<Reverse<EntityId>>,
    alive: usize,
    /// The last completed tick: what an update phase encodes.
    tick: u64,
    /// `(tick, id)` of recent despawns, oldest first.
    despawns: VecDeque<(u64, EntityId)>,
    /// The oldest baseline whose despawns are all still in the log.
    floor: u64,
    /// The last tick in which an entity was spawned, changed or despawned (0: none yet).
    changed_at: u64,
    limits: WorldLimits,
}

impl<S: Replicate> World<S> {
    pub fn new(limits: WorldLimits) -> Self {
        assert!(
            limits.history_ticks >= 1 && limits.despawn_log_max >= 1 && limits.entities_max >= 1
        );
        World {
            slots: Vec::new(),
            free: BinaryHeap::new(),
            alive: 0,
            tick: 0,
            despawns: VecDeque::new(),
            floor: 0,
            changed_at: 0,
            limits,
        }
    }

    /// The last completed tick.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The tick that mutations are stamped with: the one being built.
    fn stamp(&self) -> u64 {
        self.tick + 1
    }

    /// Marks the tick being built as complete. Called by the loop right after the game's step.
    pub fn complete_tick(&mut self) {
        self.tick += 1;
        let oldest_useful = self.tick.saturating_sub(self.limits.history_ticks);
        while self
            .despawns
            .front()
            .is_some_and(|&(t, _)| t <= oldest_useful)
        {
            self.despawns.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.alive
    }

    pub fn is_empty(&self) -> bool {
        self.alive == 0
    }

    /// Adds an entity; `None` when `entities_max` are alive.
    pub fn spawn(&mut self, state: S) -> Option<EntityId> {
        if self.alive >= self.limits.entities_max {
            return None;
        }
        let id = match self.free.pop() {
            Some(Reverse(id)) => id,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as EntityId
            }
        };
        let stamp = self.stamp();
        self.changed_at = stamp;
        self.slots[id as usize] = Some(Slot {
            prev: state.clone(),
            state,
            changed: stamp,
            spawned: stamp,
        });
        self.alive += 1;
        Some(id)
    }

    /// Replaces an entity's state; a no-op when equal, so unchanged entities cost nothing on the wire.
    pub fn set(&mut self, id: EntityId, state: S) {
        let stamp = self.stamp();
        let slot = self.slot_mut(id);
        if slot.state == state {
            return;
        }
        self.changed_at = stamp;
        let slot = self.slot_mut(id);
        if slot.changed < stamp {
            slot.prev = std::mem::replace(&mut slot.state, state);
            slot.changed = stamp;
        } else {
            slot.state = state;
        }
    }

    pub fn get(&self, id: EntityId) -> Option<&S> {
        self.slots.get(id as usize)?.as_ref().map(|s| &s.state)
    }

    /// Removes an entity; its id may be reused by a later spawn.
    pub fn despawn(&mut self, id: EntityId) {
        let slot = self.slots[id as usize].take();
        assert!(slot.is_some(), "despawn of dead entity {id}");
        self.alive -= 1;
        self.free.push(Reverse(id));
        if self.despawns.len() == self.limits.despawn_log_max {
            let (t, _) = self.despawns.pop_front().expect("log is full");
            self.floor = self.floor.max(t);
        }
        self.despawns.push_back((self.stamp(), id));
        self.changed_at = self.stamp();
    }

    /// The last tick in which anything was spawned, changed or despawned (0: nothing yet): a client
    /// holding this tick or a later one holds the current world.
    pub fn changed_at(&self) -> u64 {
        self.changed_at
    }

    fn slot_mut(&mut self, id: EntityId) -> &mut Slot<S> {
        match self.slots.get_mut(id as usize) {
            Some(Some(slot)) => slot,
            _ => panic!("set of dead entity {id}"),
        }
    }

    /// Live entities in ascending id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (EntityId, &S)> + '_ {
        Entities {
            slots: self.slots.iter().enumerate(),
            left: self.alive,
        }
    }

    /// Whether a client holding `base` can be sent a delta (else it needs a `Full`).
    pub fn can_delta_from(&self, base: u64) -> bool {
        base <= self.tick && base >= self.floor && self.tick - base <= self.limits.history_ticks
    }

    /// Ids despawned after `base`, ascending and without repeats.
    pub fn despawned_since(&self, base: u64, out: &mut Vec<EntityId>) {
        out.clear();
        out.extend(
            self.despawns
                .iter()
                .filter(|&&(t, _)| t > base)
                .map(|&(_, id)| id),
        );
        out.sort_unstable();
        out.dedup();
    }

    /// Entities that changed after `base`, ascending, each with whether a diff may be sent for it: only when
    /// the client's copy is exactly the entity's previous state (one tick behind, and the entity not new).
    pub fn changed_since(&self, base: u64) -> impl Iterator<Item = (EntityId, bool)> + '_ {
        let one_behind = base + 1 == self.tick;
        self.slots.iter().enumerate().filter_map(move |(id, slot)| {
            let slot = slot.as_ref()?;
            (slot.changed > base).then_some((id as EntityId, one_behind && slot.spawned <= base))
        })
    }

    /// The diff of a live entity from its previous state to its current one.
    pub fn diff_of(&self, id: EntityId) -> S::Diff {
        let slot = self.slots[id as usize]
            .as_ref()
            .expect("diff of dead entity");
        slot.state.diff(&slot.prev)
    }
}

struct Entities<'a, S> {
    slots: std::iter::Enumerate<std::slice::Iter<'a, Option<Slot<S>>>>,
    left: usize,
}

impl<'a, S> Iterator for Entities<'a, S> {
    type Item = (EntityId, &'a S);

    fn next(&mut self) -> Option<Self::Item> {
        for (id, slot) in self.slots.by_ref() {
            if let Some(slot) = slot {
                self.left -= 1;
                return Some((id as EntityId, &slot.state));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<S> ExactSizeIterator for Entities<'_, S> {}
