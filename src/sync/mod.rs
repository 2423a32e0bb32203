//! Replication: the replicated world with change ticks, the per-phase update frames (one shared delta, one
//! coalesced delta per distinct older baseline, one full snapshot), and the client-side mirror.
//!
//! The world is only ever encoded at a tick boundary (right after the simulation's step), so a `Full` at
//! tick T is exactly the state at T and every delta's diffs are against states a client really holds.

mod mirror;
mod updates;
mod world;

pub use mirror::{Mirror, MirrorError, ID_MAX as MIRROR_ID_MAX};
pub use updates::{UpdateKind, Updates};
pub use world::{EntityId, World, WorldLimits};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A replicated entity state. The game defines it; tickcast stores, compares, diffs and ships it.
///
/// `apply(&mut prev, &cur.diff(&prev))` must make `prev == cur` exactly: a mirror checks this with world
/// checksums, so lossy diffs show up as mismatches. Keep the state quantised (integers), not `f32`.
pub trait Replicate: Clone + PartialEq + Serialize + DeserializeOwned + std::fmt::Debug {
    /// What changes between two consecutive ticks; should encode much smaller than `Self`.
    type Diff: Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug;

    /// The change from `prev` to `self`.
    fn diff(&self, prev: &Self) -> Self::Diff;

    /// Applies a diff made by [`Replicate::diff`] against this state.
    fn apply(&mut self, diff: &Self::Diff);
}

#[cfg(test)]
mod tests;
