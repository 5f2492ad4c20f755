//! The firmware's heap budget: the chip has a fixed amount of RAM, so every allocation of the native
//! firmware (smoltcp's buffers, the services', libc's) is charged to one budget and fails once it is
//! spent, as `heap_caps_malloc` fails on the board.
//!
//! The C runtime's malloc family (runtime/heap.c) calls `hs_heap_reserve` / `hs_heap_release`;
//! Rust's own allocations reach it through `malloc` too, so there is one accountant for the process.
//! Only atomics here: the accountant is called from inside malloc and must never allocate.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Bytes in use against a fixed budget, with the lowest free figure ever seen (the board's
/// `heap_caps_get_minimum_free_size`).
pub struct Budget {
    budget: AtomicUsize,
    used: AtomicUsize,
    min_free: AtomicUsize,
}

impl Budget {
    /// A budget of `bytes` (`usize::MAX`: unlimited, the state before the firmware sets one).
    pub const fn new(bytes: usize) -> Self {
        Self { budget: AtomicUsize::new(bytes), used: AtomicUsize::new(0), min_free: AtomicUsize::new(bytes) }
    }

    /// Set the budget; the minimum-free watermark restarts from what is free now.
    pub fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes, Ordering::SeqCst);
        self.min_free.store(self.free(), Ordering::SeqCst);
    }

    /// Charge `bytes`; false (and nothing charged) when that would exceed the budget.
    pub fn reserve(&self, bytes: usize) -> bool {
        let budget = self.budget.load(Ordering::Relaxed);
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let Some(new_used) = used.checked_add(bytes).filter(|&n| n <= budget) else {
                return false;
            };
            match self.used.compare_exchange_weak(used, new_used, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.min_free.fetch_min(budget - new_used, Ordering::AcqRel);
                    return true;
                }
                Err(current) => used = current,
            }
        }
    }

    /// Give `bytes` back (never below zero: a stray free must not wrap the counter).
    pub fn release(&self, bytes: usize) {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let new_used = used.saturating_sub(bytes);
            match self.used.compare_exchange_weak(used, new_used, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(current) => used = current,
            }
        }
    }

    /// Bytes free now.
    pub fn free(&self) -> usize {
        self.budget.load(Ordering::Relaxed).saturating_sub(self.used.load(Ordering::Relaxed))
    }

    /// The lowest free figure since the budget was set.
    pub fn min_free(&self) -> usize {
        self.min_free.load(Ordering::Relaxed).min(self.free())
    }

    /// The budget.
    pub fn total(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }
}

/// The process's heap.
pub static HEAP: Budget = Budget::new(usize::MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_fails_past_the_budget_and_release_restores_it() {
        let heap = Budget::new(1000);
        assert!(heap.reserve(600));
        assert!(!heap.reserve(401), "over-commit must fail");
        assert_eq!(heap.free(), 400);
        assert!(heap.reserve(400));
        assert_eq!(heap.free(), 0);
        heap.release(1000);
        assert_eq!(heap.free(), 1000);
        assert_eq!(heap.min_free(), 0, "the watermark remembers the low point");
    }

    #[test]
    fn a_stray_release_never_wraps() {
        let heap = Budget::new(100);
        heap.release(50);
        assert_eq!(heap.free(), 100);
    }

    #[test]
    fn setting_the_budget_restarts_the_watermark_from_the_current_use() {
        let heap = Budget::new(usize::MAX);
        assert!(heap.reserve(300));
        heap.set_budget(1000);
        assert_eq!(heap.free(), 700);
        assert_eq!(heap.min_free(), 700);
        assert!(heap.reserve(100));
        heap.release(100);
        assert_eq!(heap.min_free(), 600);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_budget() {
        use std::sync::Arc;
        let heap = Arc::new(Budget::new(10_000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let heap = Arc::clone(&heap);
                std::thread::spawn(move || (0..10_000).filter(|_| heap.reserve(1)).count())
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(granted, 10_000);
        assert_eq!(heap.free(), 0);
    }
}
