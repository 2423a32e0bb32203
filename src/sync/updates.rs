//! The frames of one update phase: every distinct thing the connections need this tick is encoded and
//! framed once, then the same bytes are handed to every connection that needs it.
//!
//! - connections one tick behind share the tick's delta (diffs against the previous tick);
//! - connections further behind (skipped while slow) share one coalesced delta per distinct baseline;
//! - connections with no baseline, or one older than the history, share one `Full`.
//!
//! On checksum ticks each frame is followed by the same `Checksum` frame, so one `send()` carries both.

use std::ops::Range;

use super::{Replicate, World};
use crate::net::frame;
use crate::proto;

/// What a connection was sent, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// The tick's delta, shared by everyone one tick behind.
    Delta,
    /// A delta from an older baseline: the connection had been skipped.
    Coalesced,
    /// The whole world.
    Full,
}

/// Frames encoded during one update phase, reused across phases so the steady state does not allocate.
#[derive(Debug, Default)]
pub struct Updates {
    tick: u64,
    /// All frames of this phase, back to back.
    bytes: Vec<u8>,
    /// Scratch for one message before it is framed.
    payload: Vec<u8>,
    /// The `Checksum` frame to append after each update; empty when this is not a checksum tick.
    checksum: Vec<u8>,
    full: Option<Range<usize>>,
    /// Delta frames by baseline; at most `history_ticks` entries.
    deltas: Vec<(u64, Range<usize>)>,
    ids: Vec<u32>,
    sets: Vec<u32>,
    diffs: Vec<u32>,
}

impl Updates {
    /// Starts a phase at the world's current tick; `checksum` adds a `Checksum` frame after every update.
    pub fn begin<S: Replicate>(&mut self, world: &World<S>, checksum: bool) {
        self.tick = world.tick();
        self.bytes.clear();
        self.full = None;
        self.deltas.clear();
        self.checksum.clear();
        if checksum {
            let hash = proto::world_hash(&mut self.payload, world.iter());
            self.payload.clear();
            proto::encode_into(
                &mut self.payload,
                &proto::ServerMsg::<(), ()>::Checksum {
                    tick: self.tick,
                    hash,
                },
            );
            frame::write_binary(&mut self.checksum, &self.payload);
        }
    }

    /// Encodes the tick's shared update ahead of the fan-out: the delta from the tick before, what every
    /// member that keeps up gets (nothing when that tick has left the history).
    pub fn encode_shared<S: Replicate>(&mut self, world: &World<S>) {
        if let Some(base) = self
            .tick
            .checked_sub(1)
            .filter(|b| world.can_delta_from(*b))
        {
            let range = self.encode_delta(world, base);
            self.deltas.push((base, range));
        }
    }

    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.bytes[range]
    }

    /// The frame(s) for a connection holding `baseline` (`None`: it has nothing yet). The caller must not
    /// ask for a connection that already holds this tick.
    pub fn for_baseline<S: Replicate>(
        &mut self,
        world: &World<S>,
        baseline: Option<u64>,
    ) -> (Range<usize>, UpdateKind) {
        debug_assert_eq!(world.tick(), self.tick);
        match baseline {
            Some(base) if world.can_delta_from(base) => {
                debug_assert!(base < self.tick, "connection already holds tick {base}");
                let kind = if base + 1 == self.tick {
                    UpdateKind::Delta
                } else {
                    UpdateKind::Coalesced
                };
                if let Some((_, range)) = self.deltas.iter().find(|(b, _)| *b == base) {
                    return (range.clone(), kind);
                }
                let range = self.encode_delta(world, base);
                self.deltas.push((base, range.clone()));
                (range, kind)
            }
            _ => {
                if self.full.is_none() {
                    self.payload.clear();
                    proto::write_full(&mut self.payload, self.tick, world.iter());
                    self.full = Some(self.frame_payload());
                }
                (self.full.clone().expect("just encoded"), UpdateKind::Full)
            }
        }
    }

    fn encode_delta<S: Replicate>(&mut self, world: &World<S>, base: u64) -> Range<usize> {
        world.despawned_since(base, &mut self.ids);
        self.sets.clear();
        self.diffs.clear();
        for (id, diffable) in world.changed_since(base) {
            if diffable {
                self.diffs.push(id);
            } else {
                self.sets.push(id);
            }
        }
        let state = |id: &u32| world.get(*id).expect("changed entity is alive");
        self.payload.clear();
        proto::write_delta::<S, S::Diff>(
            &mut self.payload,
            base,
            self.tick,
            self.ids.iter().copied(),
            self.sets.iter().map(|id| (*id, state(id))),
            self.diffs.iter().map(|id| (*id, world.diff_of(*id))),
        );
        self.frame_payload()
    }

    /// Frames `payload` into `bytes` (plus the checksum frame, if any) and returns the range.
    fn frame_payload(&mut self) -> Range<usize> {
        let start = self.bytes.len();
        frame::write_binary(&mut self.bytes, &self.payload);
        self.bytes.extend_from_slice(&self.checksum);
        start..self.bytes.len()
    }
}
