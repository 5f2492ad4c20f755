//! The RX frame pool: a fixed slab of frame buffers (esp_smoltcp's `frame pool: N slots × B B`).
//!
//! The receive thread (the board's EMAC driver task) takes a free slot, fills it with one frame and
//! queues it; the poll thread hands queued frames to smoltcp and frees their slots. A frame that
//! finds no free slot, or does not fit one, is dropped and counted (`frame_pool_drops`). The pool is
//! the only part of the crate two threads touch, so it carries its own lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

struct State {
    free: Vec<u32>,
    ready: VecDeque<(u32, u32)>,
    min_free: u32,
}

/// A fixed set of equal slots.
pub struct FramePool {
    slots: u32,
    slot_bytes: u32,
    storage: *mut u8,
    state: Mutex<State>,
    drops: AtomicU64,
}

// The slab is written only by the holder of a slot (taken under the lock) and read after `submit`
// handed it over under the same lock.
unsafe impl Send for FramePool {}
unsafe impl Sync for FramePool {}

/// Counters of the pool.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub slots: u32,
    pub slot_bytes: u32,
    pub free: u32,
    pub min_free: u32,
    pub queued: u32,
    pub drops: u64,
}

impl FramePool {
    /// A pool of `slots` buffers of `slot_bytes`; None when the heap cannot hold it.
    pub fn new(slots: u32, slot_bytes: u32) -> Option<Self> {
        let total = (slots as usize).checked_mul(slot_bytes as usize)?;
        let mut bytes: Vec<u8> = Vec::new();
        bytes.try_reserve_exact(total).ok()?;
        bytes.resize(total, 0);
        let mut free = Vec::new();
        free.try_reserve_exact(slots as usize).ok()?;
        free.extend((0..slots).rev());
        let mut ready = VecDeque::new();
        ready.try_reserve_exact(slots as usize).ok()?;
        let storage = Box::into_raw(bytes.into_boxed_slice()) as *mut u8;
        Some(Self {
            slots,
            slot_bytes,
            storage,
            state: Mutex::new(State { free, ready, min_free: slots }),
            drops: AtomicU64::new(0),
        })
    }

    /// Bytes one slot holds.
    pub fn slot_bytes(&self) -> u32 {
        self.slot_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take a free slot: its index and buffer (`slot_bytes` long), or None when the pool is empty.
    pub fn acquire(&self) -> Option<(u32, *mut u8)> {
        let mut state = self.lock();
        let index = state.free.pop()?;
        state.min_free = state.min_free.min(state.free.len() as u32);
        Some((index, self.slot_ptr(index)))
    }

    fn slot_ptr(&self, index: u32) -> *mut u8 {
        // In bounds: index < slots, and the slab is slots * slot_bytes long.
        unsafe { self.storage.add(index as usize * self.slot_bytes as usize) }
    }

    /// Queue a filled slot for the stack; true when the queue was empty (the poll thread may sleep).
    pub fn submit(&self, index: u32, len: u32) -> bool {
        let mut state = self.lock();
        let was_empty = state.ready.is_empty();
        state.ready.push_back((index, len.min(self.slot_bytes)));
        was_empty
    }

    /// Give a slot back without queueing it.
    pub fn release(&self, index: u32) {
        if index < self.slots {
            self.lock().free.push(index);
        }
    }

    /// Count a frame that found no slot (or did not fit one).
    pub fn count_drop(&self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }

    /// The next queued frame: slot index and its bytes (valid until the slot is released).
    pub fn next_ready(&self) -> Option<(u32, &[u8])> {
        let (index, len) = self.lock().ready.pop_front()?;
        // The slot is owned by the caller until `release`; nobody writes it meanwhile.
        Some((index, unsafe { std::slice::from_raw_parts(self.slot_ptr(index), len as usize) }))
    }

    /// The next queued frame without taking it (only the poll thread takes frames, so it stays first).
    pub fn peek_ready(&self) -> Option<&[u8]> {
        let (index, len) = *self.lock().ready.front()?;
        // As in `next_ready`: the slot is not written while it is queued.
        Some(unsafe { std::slice::from_raw_parts(self.slot_ptr(index), len as usize) })
    }

    /// Whether a frame waits.
    pub fn has_ready(&self) -> bool {
        !self.lock().ready.is_empty()
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        let state = self.lock();
        PoolStats {
            slots: self.slots,
            slot_bytes: self.slot_bytes,
            free: state.free.len() as u32,
            min_free: state.min_free,
            queued: state.ready.len() as u32,
            drops: self.drops.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        let total = self.slots as usize * self.slot_bytes as usize;
        // Rebuilds the box leaked in `new`.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.storage, total)) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cycle_through_acquire_submit_and_release() {
        let pool = FramePool::new(2, 64).unwrap();
        let (a, buf) = pool.acquire().unwrap();
        unsafe { buf.copy_from(b"hello".as_ptr(), 5) };
        assert!(pool.submit(a, 5), "first frame of an empty queue wakes the poll thread");
        let (b, _) = pool.acquire().unwrap();
        assert!(pool.acquire().is_none(), "two slots only");
        assert!(!pool.submit(b, 3));
        let (index, bytes) = pool.next_ready().unwrap();
        assert_eq!((index, bytes), (a, &b"hello"[..]));
        pool.release(index);
        let stats = pool.stats();
        assert_eq!((stats.free, stats.min_free, stats.queued), (1, 0, 1));
    }

    #[test]
    fn drops_are_counted_and_a_submitted_length_is_clamped_to_the_slot() {
        let pool = FramePool::new(1, 16).unwrap();
        pool.count_drop();
        pool.count_drop();
        let (index, _) = pool.acquire().unwrap();
        pool.submit(index, 5000);
        assert_eq!(pool.next_ready().unwrap().1.len(), 16);
        assert_eq!(pool.stats().drops, 2);
    }

    #[test]
    fn an_impossible_pool_is_refused() {
        assert!(FramePool::new(u32::MAX, u32::MAX).is_none());
    }
}
