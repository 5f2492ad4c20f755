//! Two stacks joined by an in-memory cable, driven through the C FFI exactly as the runtime drives it.
#![allow(dead_code)] // each test binary uses a different part

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::rc::Rc;

use hil_stack::errno::EINPROGRESS;
use hil_stack::pool::FramePool;
use hil_stack::*;

pub const A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

pub fn ip(text: &str) -> u32 {
    let octets: Vec<u8> = text.split('.').map(|p| p.parse().unwrap()).collect();
    u32::from_ne_bytes([octets[0], octets[1], octets[2], octets[3]])
}

/// One end's transmit side: frames waiting for the other end, and whether its TX ring is full.
#[derive(Default)]
pub struct Wire {
    outbox: RefCell<Vec<Vec<u8>>>,
    pub ring_full: Cell<bool>,
}

unsafe extern "C" fn tx(ctx: *mut c_void, frame: *const u8, len: usize) -> i32 {
    let wire = &*(ctx as *const Wire);
    wire.outbox.borrow_mut().push(std::slice::from_raw_parts(frame, len).to_vec());
    0
}

unsafe extern "C" fn tx_ready(ctx: *mut c_void) -> bool {
    !(*(ctx as *const Wire)).ring_full.get()
}

pub struct End {
    pub stack: *mut HsStack,
    pub pool: *const FramePool,
    pub wire: Rc<Wire>,
}

pub struct Limits {
    pub max_sockets: u32,
    pub listen_pool_max: u32,
    pub pool_slots: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_sockets: 32, listen_pool_max: 8, pool_slots: 32 }
    }
}

impl End {
    pub fn new(mac: [u8; 6], addr: &str, limits: &Limits) -> Self {
        let wire = Rc::new(Wire::default());
        let config = HsConfig {
            mac,
            frame_mtu: 1514,
            max_sockets: limits.max_sockets,
            tcp_rx_bytes: 16 * 1024,
            tcp_tx_bytes: 48 * 1024,
            udp_rx_bytes: 4096,
            udp_tx_bytes: 4096,
            udp_packets: 16,
            listen_pool_max: limits.listen_pool_max,
            random_seed: u64::from(mac[5]),
            tx,
            tx_ready: Some(tx_ready),
            tx_ctx: Rc::as_ptr(&wire) as *mut c_void,
        };
        unsafe {
            let pool = hs_pool_new(limits.pool_slots, 1600);
            let stack = hs_stack_new(&config, pool, 0);
            hs_stack_set_static(stack, ip(addr), 24, 0);
            hs_stack_set_link(stack, true);
            Self { stack, pool, wire }
        }
    }

    /// Hand a frame to this end as the receive thread does.
    pub fn deliver(&self, frame: &[u8]) -> bool {
        unsafe {
            let mut index = 0;
            let slot = hs_pool_acquire(self.pool, &mut index);
            if slot.is_null() {
                hs_pool_count_drop(self.pool);
                return false;
            }
            slot.copy_from(frame.as_ptr(), frame.len());
            hs_pool_submit(self.pool, index, frame.len() as u32);
            true
        }
    }

    pub fn take_outbox(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.wire.outbox.borrow_mut())
    }

    pub fn stats(&self) -> HsStats {
        let mut stats = HsStats::default();
        unsafe { hs_stack_stats(self.stack, &mut stats) };
        stats
    }
}

impl Drop for End {
    fn drop(&mut self) {
        unsafe {
            hs_stack_free(self.stack);
            hs_pool_free(self.pool);
        }
    }
}

/// Two ends on one cable and a clock.
pub struct Cable {
    pub a: End,
    pub b: End,
    pub now_us: i64,
}

impl Cable {
    pub fn new(limits: &Limits) -> Self {
        Self { a: End::new(A_MAC, "10.0.0.1", limits), b: End::new(B_MAC, "10.0.0.2", limits), now_us: 0 }
    }

    /// Poll both ends and carry frames across until the cable is quiet, advancing 1 ms per round.
    pub fn settle(&mut self) {
        for _ in 0..200 {
            unsafe {
                hs_stack_poll(self.a.stack, self.now_us);
                hs_stack_poll(self.b.stack, self.now_us);
            }
            let to_b = self.a.take_outbox();
            let to_a = self.b.take_outbox();
            let quiet = to_a.is_empty() && to_b.is_empty();
            for frame in to_b {
                self.b.deliver(&frame);
            }
            for frame in to_a {
                self.a.deliver(&frame);
            }
            self.now_us += 1000;
            if quiet {
                return;
            }
        }
    }

    /// Let time pass (timers: delayed ACKs, retransmissions, TIME-WAIT).
    pub fn advance_ms(&mut self, ms: i64) {
        for _ in 0..ms / 10 {
            self.now_us += 10_000;
            self.settle();
        }
    }
}

// --- socket helpers through the FFI ---------------------------------------------------------------

pub const READABLE: i32 = 1;
pub const WRITABLE: i32 = 2;
pub const ERROR: i32 = 4;

pub fn recv(stack: *mut HsStack, id: u32, buf: &mut [u8]) -> (i64, HsRecvInfo) {
    let mut info = HsRecvInfo::default();
    let n = unsafe { hs_recv(stack, id, buf.as_mut_ptr(), buf.len(), false, &mut info) };
    (n, info)
}

pub fn send(stack: *mut HsStack, id: u32, data: &[u8]) -> i64 {
    unsafe { hs_send(stack, id, data.as_ptr(), data.len(), false, 0, 0) }
}

pub fn state(stack: *mut HsStack, id: u32) -> String {
    let mut buf = [0u8; 32];
    assert_eq!(unsafe { hs_tcp_state(stack, id, buf.as_mut_ptr(), buf.len()) }, 0);
    String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap()]).into_owned()
}

/// A listener on b:port and a connection from a, accepted: (listener, client, server).
pub fn connected_pair(cable: &mut Cable, port: u16) -> (u32, u32, u32) {
    unsafe {
        let listener = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_bind(cable.b.stack, listener, 0, port), 0);
        assert_eq!(hs_listen(cable.b.stack, listener, 4), 0);
        let client = hs_socket(cable.a.stack, true) as u32;
        assert_eq!(hs_connect(cable.a.stack, client, ip("10.0.0.2"), port), -EINPROGRESS);
        assert_eq!(hs_poll_socket(cable.a.stack, client), 0, "not writable during the handshake");
        cable.settle();
        assert_eq!(hs_poll_socket(cable.a.stack, client) & WRITABLE, WRITABLE);
        assert_eq!(hs_poll_socket(cable.b.stack, listener), READABLE, "a connection waits to be accepted");
        let (mut addr, mut peer_port) = (0u32, 0u16);
        let server = hs_accept(cable.b.stack, listener, &mut addr, &mut peer_port);
        assert!(server > 0, "accept: {server}");
        let (mut local_addr, mut local_port) = (0u32, 0u16);
        assert_eq!(hs_local_endpoint(cable.a.stack, client, &mut local_addr, &mut local_port), 0);
        assert_eq!((addr, peer_port), (ip("10.0.0.1"), local_port), "accept reports the real peer");
        (listener, client, server as u32)
    }
}
