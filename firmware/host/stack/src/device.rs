//! smoltcp's `Device`: frames in from the RX frame pool, frames out through the C runtime's
//! transmit callback (an AF_PACKET socket on the DUT end of the lab cable).
//!
//! Before a frame reaches smoltcp its EtherType is looked up in the L2 tap table (esp_smoltcp's
//! `esp_smoltcp_l2_tap`: at most `L2_TAPS` EtherTypes, callbacks run on the poll thread); a tapped frame
//! goes to its callback instead and is counted as received. The transmit side reports back-pressure:
//! while the runtime's TX ring is full (`tx_ready` says no), smoltcp gets no transmit token and keeps its
//! data queued, as the EMAC's descriptor ring holds the glue back on the board.

use core::ffi::{c_int, c_void};
use std::sync::Arc;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket};

use crate::errno::{ENOENT, ENOSPC};
use crate::pool::FramePool;

/// Sends one Ethernet frame; returns a negative value when the frame could not be sent.
pub type TxFn = unsafe extern "C" fn(ctx: *mut c_void, frame: *const u8, len: usize) -> c_int;
/// Whether the TX ring has room for another frame.
pub type TxReadyFn = unsafe extern "C" fn(ctx: *mut c_void) -> bool;
/// An L2 tap's callback: one received frame, on the poll thread (copy it; do not block).
pub type TapFn = unsafe extern "C" fn(ctx: *mut c_void, frame: *const u8, len: usize);

/// EtherTypes the tap table holds (esp_smoltcp's limit).
pub const L2_TAPS: usize = 4;
const ETHERTYPE_OFFSET: usize = 12;

#[derive(Clone, Copy)]
struct Tap {
    ethertype: u16,
    callback: TapFn,
    ctx: *mut c_void,
}

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
    ready: Option<TxReadyFn>,
    ctx: *mut c_void,
    buf: Vec<u8>,
}

impl Transmitter {
    fn ready(&self) -> bool {
        self.ready.map_or(true, |ready| unsafe { ready(self.ctx) })
    }

    /// Hand one frame to the runtime and count it.
    fn send(&self, frame: &[u8], counters: &mut TxCounters) -> bool {
        let sent = unsafe { (self.tx)(self.ctx, frame.as_ptr(), frame.len()) } >= 0;
        if sent {
            counters.frames += 1;
            counters.bytes += frame.len() as u64;
        } else {
            counters.fails += 1;
        }
        sent
    }
}

pub struct HostDevice {
    pool: Arc<FramePool>,
    transmitter: Transmitter,
    taps: [Option<Tap>; L2_TAPS],
    pub rx: RxCounters,
    pub tx: TxCounters,
    pub link_up: bool,
    frame_mtu: usize,
}

impl HostDevice {
    pub fn new(
        pool: Arc<FramePool>,
        tx: TxFn,
        tx_ready: Option<TxReadyFn>,
        ctx: *mut c_void,
        frame_mtu: usize,
    ) -> Self {
        Self {
            pool,
            transmitter: Transmitter { tx, ready: tx_ready, ctx, buf: Vec::new() },
            taps: [None; L2_TAPS],
            rx: RxCounters::default(),
            tx: TxCounters::default(),
            link_up: false,
            frame_mtu,
        }
    }

    /// Register (`callback` Some) or clear (None) the tap of one EtherType.
    /// Errors: ENOSPC when every slot is taken, ENOENT when clearing a tap that is not there.
    pub fn set_tap(&mut self, ethertype: u16, callback: Option<(TapFn, *mut c_void)>) -> Result<(), i32> {
        let existing = self.taps.iter().position(|t| t.is_some_and(|t| t.ethertype == ethertype));
        match (callback, existing) {
            (Some((callback, ctx)), Some(slot)) => self.taps[slot] = Some(Tap { ethertype, callback, ctx }),
            (Some((callback, ctx)), None) => {
                let slot = self.taps.iter().position(Option::is_none).ok_or(ENOSPC)?;
                self.taps[slot] = Some(Tap { ethertype, callback, ctx });
            }
            (None, Some(slot)) => self.taps[slot] = None,
            (None, None) => return Err(ENOENT),
        }
        Ok(())
    }

    /// The destination port when the next queued frame is a TCP SYN (for the listeners' admission).
    pub fn next_syn_port(&self) -> Option<u16> {
        tcp_syn_port(self.pool.peek_ready()?)
    }

    /// Take the next queued frame and drop it (taken by the stack, counted where the caller says why).
    pub fn drop_next(&mut self) {
        if let Some((index, frame)) = self.pool.next_ready() {
            self.rx.frames += 1;
            self.rx.bytes += frame.len() as u64;
            self.pool.release(index);
        }
    }

    /// Send a raw Ethernet frame (`esp_smoltcp_l2_send`); false when the send failed (a tx_fail).
    pub fn send_raw(&mut self, frame: &[u8]) -> bool {
        self.transmitter.send(frame, &mut self.tx)
    }

    /// Drop every queued frame (the link went down under them); they count as rx_drops.
    pub fn discard_queued(&mut self) {
        while let Some((index, _)) = self.pool.next_ready() {
            self.pool.release(index);
            self.rx.drops += 1;
        }
    }
}

/// The destination port of a frame that is a valid IPv4 TCP SYN (no ACK, checksums right, not a fragment).
fn tcp_syn_port(frame: &[u8]) -> Option<u16> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if !ip.verify_checksum() || ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    (tcp.syn() && !tcp.ack() && tcp.verify_checksum(&src, &dst)).then(|| tcp.dst_port())
}

/// The tap registered for a frame's EtherType.
fn tap_for(taps: &[Option<Tap>], frame: &[u8]) -> Option<Tap> {
    let ethertype = u16::from_be_bytes([*frame.get(ETHERTYPE_OFFSET)?, *frame.get(ETHERTYPE_OFFSET + 1)?]);
    taps.iter().flatten().find(|t| t.ethertype == ethertype).copied()
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
        let mut buf = std::mem::take(&mut self.transmitter.buf);
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let result = f(&mut buf[..len]);
        // The callback copies the frame out before it returns.
        self.transmitter.send(&buf[..len], self.counters);
        self.transmitter.buf = buf;
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
        let Self { pool, transmitter, taps, rx, tx, .. } = self;
        let pool: &FramePool = pool;
        loop {
            let (index, frame) = pool.next_ready()?;
            let Some(tap) = tap_for(taps, frame) else {
                return Some((RxToken { pool, index, frame, counters: rx }, TxToken { transmitter, counters: tx }));
            };
            rx.frames += 1;
            rx.bytes += frame.len() as u64;
            unsafe { (tap.callback)(tap.ctx, frame.as_ptr(), frame.len()) };
            pool.release(index);
        }
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        if !self.link_up || !self.transmitter.ready() {
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
