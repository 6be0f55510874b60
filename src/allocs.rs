//! Heap allocations counted per core, so that the request path's claim (no
//! allocation once warm) can be checked on the running binary, and a
//! regression seen in production: `/metrics`
//! `hookwire_core_allocations_total`. The binary installs [`Counting`] as
//! its global allocator; each core's executor thread counts into its own
//! slot, every other thread (libzmq's, the admin's, the main one) and the
//! building of the admin's snapshots are not counted. libzmq's C `malloc`
//! (one per message it queues) is not Rust's and is never seen here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Cores with a slot; more are not counted.
const SLOTS: usize = 64;

static COUNTS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

thread_local! {
    /// This thread's slot, if it is a core's and counting.
    static SLOT: Cell<Option<&'static AtomicU64>> = const { Cell::new(None) };
}

/// The system allocator, counting each allocation and reallocation made on
/// a core's thread.
pub struct Counting;

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[inline]
fn count() {
    // `try_with`: nothing is counted while the thread's locals are torn
    // down. One writer per slot, so a plain load and store suffice.
    let _ = SLOT.try_with(|slot| {
        if let Some(n) = slot.get() {
            n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    });
}

/// Counts this thread's allocations as core `core`'s from now on.
pub fn count_as_core(core: usize) {
    SLOT.with(|slot| slot.set(COUNTS.get(core)));
}

/// Allocations counted for core `core` so far.
pub fn of_core(core: usize) -> u64 {
    COUNTS.get(core).map_or(0, |n| n.load(Ordering::Relaxed))
}

/// Runs `f` without counting its allocations on this thread.
pub fn uncounted<T>(f: impl FnOnce() -> T) -> T {
    let saved = SLOT.with(|slot| slot.replace(None));
    let out = f();
    SLOT.with(|slot| slot.set(saved));
    out
}
