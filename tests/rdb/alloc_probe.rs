//! A global allocator wrapper that remembers the largest single allocation of each thread, so
//! tests can assert that hostile input never turns a claimed length into a huge allocation.
//!
//! Per thread, because the test binary runs its tests in parallel: another test that builds a
//! big value on purpose (tests/rdb/big.rs) must not be blamed on the one that asserts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // `const` initialisation: reading it never allocates, so the allocator may use it.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // During a thread's teardown the slot may be gone; such an allocation is not a test's.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

pub struct Probe;

unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The largest allocation (bytes) the calling thread has made so far.
pub fn largest() -> usize {
    LARGEST.with(Cell::get)
}
