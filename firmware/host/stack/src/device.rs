//! smoltcp's `Device`: frames in from the RX frame pool, frames out through the C runtime's
//! transmit callback (an AF_PACKET socket on the DUT end of the lab cable).

use core::ffi::{c_int, c_void};
use std::sync::Arc;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::pool::FramePool;

/// Sends one Ethernet frame; returns a negative value when the frame could not be sent.
pub type TxFn = unsafe extern "C" fn(ctx: *mut c_void, frame: *const u8, len: usize) -> c_int;

/// Receive counters of the interface (fields of `esp_smoltcp_stats_t`).
#[derive(Debug, Default, Clone, Copy)]
pub struct RxCounters {
    pub frames: u64,
    pub bytes: u64,
    pub drops: u64,
}

/// Transmit counters of the interface (fields of `esp_smoltcp_stats_t`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TxCounters {
    pub frames: u64,
    pub bytes: u64,
    pub fails: u64,
}

pub struct Transmitter {
    tx: TxFn,
    ctx: *mut c_void,
    buf: Vec<u8>,
}

pub struct HostDevice {
    pool: Arc<FramePool>,
    transmitter: Transmitter,
    pub rx: RxCounters,
    pub tx: TxCounters,
    pub link_up: bool,
    frame_mtu: usize,
}

impl HostDevice {
    pub fn new(pool: Arc<FramePool>, tx: TxFn, ctx: *mut c_void, frame_mtu: usize) -> Self {
        Self {
            pool,
            transmitter: Transmitter { tx, ctx, buf: Vec::new() },
            rx: RxCounters::default(),
            tx: TxCounters::default(),
            link_up: false,
            frame_mtu,
        }
    }

    /// Drop every queued frame (the link went down under them); they count as rx_drops.
    pub fn discard_queued(&mut self) {
        while let Some((index, _)) = self.pool.next_ready() {
            self.pool.release(index);
            self.rx.drops += 1;
        }
    }
}

pub struct RxToken<'a> {
    pool: &'a FramePool,
    index: u32,
    frame: &'a [u8],
    counters: &'a mut RxCounters,
}

pub struct TxToken<'a> {
    transmitter: &'a mut Transmitter,
    counters: &'a mut TxCounters,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        self.counters.frames += 1;
        self.counters.bytes += self.frame.len() as u64;
        f(self.frame)
    }
}

impl Drop for RxToken<'_> {
    /// The slot goes back whether smoltcp consumed the frame or dropped the token unused.
    fn drop(&mut self) {
        self.pool.release(self.index);
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let buf = &mut self.transmitter.buf;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let result = f(&mut buf[..len]);
        // The callback copies the frame out before it returns.
        let rc = unsafe { (self.transmitter.tx)(self.transmitter.ctx, buf.as_ptr(), len) };
        if rc < 0 {
            self.counters.fails += 1;
        } else {
            self.counters.frames += 1;
            self.counters.bytes += len as u64;
        }
        result
    }
}

impl phy::Device for HostDevice {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let Self { pool, transmitter, rx, tx, .. } = self;
        let pool: &FramePool = pool;
        let (index, frame) = pool.next_ready()?;
        Some((RxToken { pool, index, frame, counters: rx }, TxToken { transmitter, counters: tx }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        if !self.link_up {
            return None;
        }
        Some(TxToken { transmitter: &mut self.transmitter, counters: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.frame_mtu;
        // Drain all queued TX per poll, as the glue does (one frame per poll caps throughput).
        caps.max_burst_size = None;
        caps
    }
}
