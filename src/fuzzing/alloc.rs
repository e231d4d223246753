//! A global allocator wrapper that remembers, per thread, the largest single allocation: the
//! image harnesses check that nothing they mount allocates in proportion to an on-media field.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Largest single allocation a mount of a fuzzed image may make. The biggest legitimate one is
/// the home bitmap or a sparse-image page table, far below this for [`super::IMAGE_DEVICE_BYTES`].
pub const ALLOC_BYTES_MAX: usize = 4 << 20;

thread_local! {
    // const-initialised and without a destructor, so the allocator may touch it.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Install with `#[global_allocator] static A: CappedAlloc = CappedAlloc;` to make
/// [`largest_alloc_since`] meaningful; without it that function reports 0.
#[derive(Debug)]
pub struct CappedAlloc;

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to `System`; only a size is recorded.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with the largest single allocation this thread made in it.
pub fn largest_alloc_since<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LARGEST.with(|l| l.replace(0));
    let r = f();
    let largest = LARGEST.with(|l| l.replace(before.max(l.get())));
    (r, largest)
}
