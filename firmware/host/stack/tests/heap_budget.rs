//! Over-committing socket buffers fails with ENOBUFS, as on the board's fixed heap.
//! One test per binary: the budget is process-wide.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};

use common::{Cable, Limits};
use hil_stack::errno::ENOBUFS;
use hil_stack::heap::HEAP;
use hil_stack::*;

/// What runtime/heap.c does for the firmware: every allocation is charged to the budget.
struct Charged;

unsafe impl GlobalAlloc for Charged {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !HEAP.reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let ptr = System.alloc(layout);
        if ptr.is_null() {
            HEAP.release(layout.size());
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HEAP.release(layout.size());
    }
}

#[global_allocator]
static ALLOCATOR: Charged = Charged;

#[test]
fn socket_buffers_beyond_the_budget_fail_with_enobufs_and_free_again() {
    let cable = Cable::new(&Limits::default());
    // Room for two TCP sockets (2 x 64 KiB) and change, not three.
    let in_use = usize::MAX - HEAP.free();
    hs_heap_set_budget(in_use + 2 * 64 * 1024 + 8 * 1024);
    unsafe {
        let first = hs_socket(cable.a.stack, true);
        let second = hs_socket(cable.a.stack, true);
        assert!(first > 0 && second > 0);
        let free_before = hs_heap_free();
        assert_eq!(hs_socket(cable.a.stack, true), -i64::from(ENOBUFS));
        assert_eq!(hs_heap_free(), free_before, "a failed socket() leaks nothing");
        assert_eq!(hs_close(cable.a.stack, first as u32), 0);
        assert!(hs_heap_free() >= free_before + 64 * 1024);
        assert!(hs_socket(cable.a.stack, true) > 0);
        assert!(hs_heap_min_free() < 64 * 1024, "the watermark saw the full heap");
    }
    hs_heap_set_budget(usize::MAX);
}
