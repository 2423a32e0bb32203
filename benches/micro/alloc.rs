//! A counting global allocator for the bench binary, so a bench can say how many heap allocations its
//! routine makes. Every `alloc`, `alloc_zeroed` and `realloc` counts as one allocation (a `Vec` growing is
//! an allocation too); frees are not counted. The counter is process-wide: count only while no other
//! thread of this binary is running (the loopback reader threads are joined before any count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// `System`, counting.
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

fn note(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Relaxed);
    ALLOCATED_BYTES.fetch_add(bytes as u64, Relaxed);
}

// SAFETY: every method forwards to `System` with the same arguments; counting touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

/// Allocations made while running something.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Allocs {
    pub count: u64,
    pub bytes: u64,
}

impl Allocs {
    /// Per one of `n` runs.
    pub fn per(self, n: u64) -> (f64, f64) {
        (self.count as f64 / n as f64, self.bytes as f64 / n as f64)
    }
}

fn now() -> Allocs {
    Allocs {
        count: ALLOCATIONS.load(Relaxed),
        bytes: ALLOCATED_BYTES.load(Relaxed),
    }
}

/// Runs `f` and returns what it returned with the allocations it made.
pub fn count<R>(f: impl FnOnce() -> R) -> (R, Allocs) {
    let before = now();
    let out = f();
    let after = now();
    let allocs = Allocs {
        count: after.count - before.count,
        bytes: after.bytes - before.bytes,
    };
    (out, allocs)
}
