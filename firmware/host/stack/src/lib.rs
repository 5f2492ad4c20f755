//! The virtual ESP32-P4's network stack: smoltcp 0.12 (the features esp_smoltcp_glue enables) behind
//! a C FFI, for the native firmware in `firmware/host`. C header: `firmware/host/include/hil_stack.h`.
//!
//! Threading, as on the board: the RX frame pool (`hs_pool_*`) and the heap accountant (`hs_heap_*`)
//! may be called from any thread; everything taking an `HsStack` only from the runtime's poll thread.
//! IPv4 addresses cross the FFI as `uint32_t` in network byte order (`struct in_addr.s_addr`),
//! ports in host order. Socket calls return a value >= 0 or a negated errno.
#![allow(clippy::missing_safety_doc)] // one contract for every function, stated above and in the header

pub mod device;
pub mod errno;
pub mod heap;
pub mod pool;
pub mod stack;

use core::ffi::{c_int, c_void};
use std::sync::Arc;

use smoltcp::time::Instant;
use smoltcp::wire::Ipv4Address;

use crate::device::{TapFn, TxFn, TxReadyFn};
use crate::heap::HEAP;
use crate::pool::{FramePool, PoolStats};
use crate::stack::{DhcpEvent, Limits, Stack, Wire};

/// The stack's configuration (`hs_config_t`).
#[repr(C)]
pub struct HsConfig {
    pub mac: [u8; 6],
    /// Largest Ethernet frame without FCS smoltcp may send or take (its `max_transmission_unit`).
    pub frame_mtu: u32,
    pub max_sockets: u32,
    pub tcp_rx_bytes: u32,
    pub tcp_tx_bytes: u32,
    pub udp_rx_bytes: u32,
    pub udp_tx_bytes: u32,
    pub udp_packets: u32,
    pub listen_pool_max: u32,
    pub random_seed: u64,
    pub tx: TxFn,
    /// The TX ring's back-pressure (NULL: always room).
    pub tx_ready: Option<TxReadyFn>,
    pub tx_ctx: *mut c_void,
}

/// `esp_smoltcp_stats_t`'s counters (`hs_stats_t`).
#[repr(C)]
#[derive(Default)]
pub struct HsStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub rx_drops: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub tx_fails: u64,
    pub active_sockets: u32,
    /// SYNs dropped because a listener's backlog was full.
    pub listen_drops: u64,
}

pub const HS_EVENT_BOUND: u32 = 1;
pub const HS_EVENT_LOST: u32 = 2;

/// A DHCP client event (`hs_event_t`).
#[repr(C)]
#[derive(Default)]
pub struct HsEvent {
    pub kind: u32,
    pub ip: u32,
    pub netmask: u32,
    pub gw: u32,
    pub server: u32,
    pub lease_s: u32,
}

/// The interface's addresses (`hs_ip_info_t`).
#[repr(C)]
#[derive(Default)]
pub struct HsIpInfo {
    pub ip: u32,
    pub netmask: u32,
    pub gw: u32,
    pub has_ipv6_ll: u8,
    pub ipv6_ll: [u8; 16],
}

/// A datagram's or segment's source and length (`hs_recv_info_t`).
#[repr(C)]
#[derive(Default)]
pub struct HsRecvInfo {
    pub full_len: usize,
    pub addr: u32,
    pub port: u16,
}

pub type HsStack = Stack;

fn ipv4(be: u32) -> Ipv4Address {
    Ipv4Address::from(be.to_ne_bytes())
}

fn be(addr: Ipv4Address) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

fn netmask_be(prefix: u8) -> u32 {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
    mask.to_be()
}

fn ret<T: Into<i64>>(result: Result<T, i32>) -> i64 {
    match result {
        Ok(v) => v.into(),
        Err(errno) => -i64::from(errno),
    }
}

fn ret_unit(result: Result<(), i32>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(errno) => -errno,
    }
}

// --- heap -------------------------------------------------------------------------------------------

#[no_mangle]
pub extern "C" fn hs_heap_set_budget(bytes: usize) {
    HEAP.set_budget(bytes);
}

#[no_mangle]
pub extern "C" fn hs_heap_reserve(bytes: usize) -> bool {
    HEAP.reserve(bytes)
}

#[no_mangle]
pub extern "C" fn hs_heap_release(bytes: usize) {
    HEAP.release(bytes);
}

#[no_mangle]
pub extern "C" fn hs_heap_free() -> usize {
    HEAP.free()
}

#[no_mangle]
pub extern "C" fn hs_heap_min_free() -> usize {
    HEAP.min_free()
}

#[no_mangle]
pub extern "C" fn hs_heap_total() -> usize {
    HEAP.total()
}

// --- RX frame pool ----------------------------------------------------------------------------------

#[no_mangle]
pub extern "C" fn hs_pool_new(slots: u32, slot_bytes: u32) -> *const FramePool {
    match FramePool::new(slots, slot_bytes) {
        Some(pool) => Arc::into_raw(Arc::new(pool)),
        None => core::ptr::null(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn hs_pool_free(pool: *const FramePool) {
    if !pool.is_null() {
        drop(Arc::from_raw(pool));
    }
}

#[no_mangle]
pub unsafe extern "C" fn hs_pool_acquire(pool: *const FramePool, index: *mut u32) -> *mut u8 {
    match (*pool).acquire() {
        Some((i, buf)) => {
            *index = i;
            buf
        }
        None => core::ptr::null_mut(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn hs_pool_submit(pool: *const FramePool, index: u32, len: u32) -> bool {
    (*pool).submit(index, len)
}

#[no_mangle]
pub unsafe extern "C" fn hs_pool_release(pool: *const FramePool, index: u32) {
    (*pool).release(index);
}

#[no_mangle]
pub unsafe extern "C" fn hs_pool_count_drop(pool: *const FramePool) {
    (*pool).count_drop();
}

#[no_mangle]
pub unsafe extern "C" fn hs_pool_stats(pool: *const FramePool, out: *mut PoolStats) {
    *out = (*pool).stats();
}

// --- interface --------------------------------------------------------------------------------------

#[no_mangle]
pub unsafe extern "C" fn hs_stack_new(config: *const HsConfig, pool: *const FramePool, now_us: i64) -> *mut HsStack {
    let config = &*config;
    Arc::increment_strong_count(pool);
    let limits = Limits {
        frame_mtu: config.frame_mtu as usize,
        max_sockets: config.max_sockets as usize,
        tcp_rx_bytes: config.tcp_rx_bytes as usize,
        tcp_tx_bytes: config.tcp_tx_bytes as usize,
        udp_rx_bytes: config.udp_rx_bytes as usize,
        udp_tx_bytes: config.udp_tx_bytes as usize,
        udp_packets: config.udp_packets as usize,
        listen_pool_max: config.listen_pool_max as usize,
    };
    let wire = Wire { tx: config.tx, tx_ready: config.tx_ready, ctx: config.tx_ctx };
    let stack =
        Stack::new(config.mac, limits, config.random_seed, Arc::from_raw(pool), wire, Instant::from_micros(now_us));
    Box::into_raw(Box::new(stack))
}

#[no_mangle]
pub unsafe extern "C" fn hs_stack_free(stack: *mut HsStack) {
    if !stack.is_null() {
        drop(Box::from_raw(stack));
    }
}

#[no_mangle]
pub unsafe extern "C" fn hs_stack_poll(stack: *mut HsStack, now_us: i64) -> bool {
    (*stack).poll(Instant::from_micros(now_us))
}

/// Microseconds until the next poll is due; -1 when nothing is due until a frame arrives.
#[no_mangle]
pub unsafe extern "C" fn hs_stack_poll_delay_us(stack: *mut HsStack, now_us: i64) -> i64 {
    (*stack).poll_delay(Instant::from_micros(now_us)).map_or(-1, |d| d.total_micros() as i64)
}

#[no_mangle]
pub unsafe extern "C" fn hs_stack_set_link(stack: *mut HsStack, up: bool) {
    (*stack).set_link(up);
}

#[no_mangle]
pub unsafe extern "C" fn hs_stack_start_dhcp(stack: *mut HsStack) {
    (*stack).start_dhcp();
}

#[no_mangle]
pub unsafe extern "C" fn hs_stack_set_static(stack: *mut HsStack, ip: u32, prefix: u8, gw: u32) {
    let gateway = (gw != 0).then(|| ipv4(gw));
    (*stack).set_static(ipv4(ip), prefix, gateway);
}

#[no_mangle]
pub unsafe extern "C" fn hs_stack_next_event(stack: *mut HsStack, out: *mut HsEvent) -> bool {
    let Some(event) = (*stack).next_event() else { return false };
    *out = match event {
        DhcpEvent::Bound { ip, prefix, router, server, lease_s } => HsEvent {
            kind: HS_EVENT_BOUND,
            ip: be(ip),
            netmask: netmask_be(prefix),
            gw: router.map_or(0, be),
            server: be(server),
            lease_s,
        },
        DhcpEvent::Lost { ip } => HsEvent { kind: HS_EVENT_LOST, ip: be(ip), ..HsEvent::default() },
    };
    true
}

#[no_mangle]
pub unsafe extern "C" fn hs_stack_ip_info(stack: *mut HsStack, out: *mut HsIpInfo) {
    let stack = &*stack;
    let mut info = HsIpInfo::default();
    if let Some(cidr) = stack.ipv4() {
        info.ip = be(cidr.address());
        info.netmask = netmask_be(cidr.prefix_len());
    }
    info.gw = stack.gateway().map_or(0, be);
    if let Some(ll) = stack.ipv6_link_local() {
        info.has_ipv6_ll = 1;
        info.ipv6_ll = ll.octets();
    }
    *out = info;
}

#[no_mangle]
pub unsafe extern "C" fn hs_stack_stats(stack: *mut HsStack, out: *mut HsStats) {
    let stack = &*stack;
    let device = stack.device();
    *out = HsStats {
        rx_frames: device.rx.frames,
        rx_bytes: device.rx.bytes,
        rx_drops: device.rx.drops,
        tx_frames: device.tx.frames,
        tx_bytes: device.tx.bytes,
        tx_fails: device.tx.fails,
        active_sockets: stack.active_sockets() as u32,
        listen_drops: stack.listen_drops(),
    };
}

/// Give the interface its IPv6 link-local address (the default) or take it away.
#[no_mangle]
pub unsafe extern "C" fn hs_stack_set_ipv6_link_local(stack: *mut HsStack, on: bool) {
    (*stack).set_ipv6_link_local(on);
}

/// Register (`callback` non-NULL) or clear the L2 tap of `ethertype`: 0, -ENOSPC (every slot taken)
/// or -ENOENT (clearing a tap that is not there). The callback runs on the poll thread.
#[no_mangle]
pub unsafe extern "C" fn hs_l2_tap(
    stack: *mut HsStack,
    ethertype: u16,
    callback: Option<TapFn>,
    ctx: *mut c_void,
) -> c_int {
    ret_unit((*stack).set_l2_tap(ethertype, callback.map(|f| (f, ctx))))
}

/// Send one raw Ethernet frame: 0, -EMSGSIZE, -ENETDOWN or -ENOBUFS.
#[no_mangle]
pub unsafe extern "C" fn hs_l2_send(stack: *mut HsStack, frame: *const u8, len: usize) -> c_int {
    let frame = if len == 0 { &[][..] } else { core::slice::from_raw_parts(frame, len) };
    ret_unit((*stack).send_l2(frame))
}

#[no_mangle]
pub unsafe extern "C" fn hs_mcast_join(stack: *mut HsStack, group: u32) -> c_int {
    ret_unit((*stack).join_multicast(ipv4(group)))
}

#[no_mangle]
pub unsafe extern "C" fn hs_mcast_leave(stack: *mut HsStack, group: u32) -> c_int {
    ret_unit((*stack).leave_multicast(ipv4(group)))
}

// --- sockets ----------------------------------------------------------------------------------------

#[no_mangle]
pub unsafe extern "C" fn hs_socket(stack: *mut HsStack, tcp: bool) -> i64 {
    ret((*stack).socket(tcp))
}

#[no_mangle]
pub unsafe extern "C" fn hs_bind(stack: *mut HsStack, id: u32, addr: u32, port: u16) -> c_int {
    ret_unit((*stack).bind(id, ipv4(addr), port))
}

#[no_mangle]
pub unsafe extern "C" fn hs_listen(stack: *mut HsStack, id: u32, backlog: c_int) -> c_int {
    ret_unit((*stack).listen(id, backlog))
}

#[no_mangle]
pub unsafe extern "C" fn hs_accept(stack: *mut HsStack, id: u32, addr: *mut u32, port: *mut u16) -> i64 {
    ret((*stack).accept(id).map(|(new_id, peer)| {
        if let smoltcp::wire::IpAddress::Ipv4(a) = peer.addr {
            *addr = be(a);
        }
        *port = peer.port;
        new_id
    }))
}

/// 0 for UDP; -EINPROGRESS when a TCP handshake started.
#[no_mangle]
pub unsafe extern "C" fn hs_connect(stack: *mut HsStack, id: u32, addr: u32, port: u16) -> c_int {
    ret_unit((*stack).connect(id, ipv4(addr), port))
}

/// `has_to`: use `addr`/`port` as the destination (sendto).
#[no_mangle]
pub unsafe extern "C" fn hs_send(
    stack: *mut HsStack,
    id: u32,
    data: *const u8,
    len: usize,
    has_to: bool,
    addr: u32,
    port: u16,
) -> i64 {
    let data = if len == 0 { &[][..] } else { core::slice::from_raw_parts(data, len) };
    let to = has_to.then(|| (ipv4(addr), port));
    ret((*stack).send(id, data, to).map(|n| n as i64))
}

#[no_mangle]
pub unsafe extern "C" fn hs_recv(
    stack: *mut HsStack,
    id: u32,
    buf: *mut u8,
    len: usize,
    peek: bool,
    info: *mut HsRecvInfo,
) -> i64 {
    let buf = if len == 0 { &mut [][..] } else { core::slice::from_raw_parts_mut(buf, len) };
    ret((*stack).recv(id, buf, peek).map(|received| {
        if !info.is_null() {
            let mut out = HsRecvInfo { full_len: received.full, ..HsRecvInfo::default() };
            if let Some(smoltcp::wire::IpEndpoint { addr: smoltcp::wire::IpAddress::Ipv4(a), port }) = received.from {
                out.addr = be(a);
                out.port = port;
            }
            *info = out;
        }
        received.copied as i64
    }))
}

#[no_mangle]
pub unsafe extern "C" fn hs_shutdown(stack: *mut HsStack, id: u32, how: c_int) -> c_int {
    ret_unit((*stack).shutdown(id, how))
}

#[no_mangle]
pub unsafe extern "C" fn hs_close(stack: *mut HsStack, id: u32) -> c_int {
    ret_unit((*stack).close(id))
}

/// Readiness bits: 1 readable, 2 writable, 4 error, 8 hang-up; or a negated errno.
#[no_mangle]
pub unsafe extern "C" fn hs_poll_socket(stack: *mut HsStack, id: u32) -> c_int {
    match (*stack).poll_socket(id) {
        Ok(mask) => mask as c_int,
        Err(errno) => -errno,
    }
}

#[no_mangle]
pub unsafe extern "C" fn hs_local_endpoint(stack: *mut HsStack, id: u32, addr: *mut u32, port: *mut u16) -> c_int {
    ret_unit((*stack).local_endpoint(id).map(|(a, p)| {
        *addr = be(a);
        *port = p;
    }))
}

#[no_mangle]
pub unsafe extern "C" fn hs_peer_endpoint(stack: *mut HsStack, id: u32, addr: *mut u32, port: *mut u16) -> c_int {
    ret_unit((*stack).peer_endpoint(id).map(|(a, p)| {
        *addr = be(a);
        *port = p;
    }))
}

/// The pending socket error (SO_ERROR), cleared by the read.
#[no_mangle]
pub unsafe extern "C" fn hs_take_error(stack: *mut HsStack, id: u32) -> c_int {
    match (*stack).take_error(id) {
        Ok(errno) => errno,
        Err(errno) => -errno,
    }
}

/// `nodelay`/`keepalive`: 0 off, 1 on, -1 leave as is.
#[no_mangle]
pub unsafe extern "C" fn hs_set_tcp_options(stack: *mut HsStack, id: u32, nodelay: c_int, keepalive: c_int) -> c_int {
    let pick = |v: c_int| (v >= 0).then_some(v > 0);
    ret_unit((*stack).set_tcp_options(id, pick(nodelay), pick(keepalive)))
}

/// Bit 0: TCP_NODELAY, bit 1: SO_KEEPALIVE.
#[no_mangle]
pub unsafe extern "C" fn hs_tcp_options(stack: *mut HsStack, id: u32) -> c_int {
    match (*stack).tcp_options(id) {
        Ok((nodelay, keepalive)) => c_int::from(nodelay) | (c_int::from(keepalive) << 1),
        Err(errno) => -errno,
    }
}

/// Bytes readable now (the next datagram's length for UDP) and bytes not yet acknowledged.
#[no_mangle]
pub unsafe extern "C" fn hs_queues(
    stack: *mut HsStack,
    id: u32,
    recv_queue: *mut usize,
    send_queue: *mut usize,
) -> c_int {
    ret_unit((*stack).queues(id).map(|(r, s)| {
        *recv_queue = r;
        *send_queue = s;
    }))
}

/// The TCP state's name ("ESTABLISHED", "CLOSE-WAIT", ...), NUL-terminated, into `buf`.
#[no_mangle]
pub unsafe extern "C" fn hs_tcp_state(stack: *mut HsStack, id: u32, buf: *mut u8, len: usize) -> c_int {
    match (*stack).tcp_state(id) {
        Ok(state) => {
            let name = state.to_string();
            let n = name.len().min(len.saturating_sub(1));
            core::ptr::copy_nonoverlapping(name.as_ptr(), buf, n);
            *buf.add(n) = 0;
            0
        }
        Err(errno) => -errno,
    }
}

/// Every TCP socket as a JSON array into `buf` (NUL-terminated, cut to fit); returns the full length.
#[no_mangle]
pub unsafe extern "C" fn hs_stack_describe_tcp(stack: *mut HsStack, buf: *mut u8, len: usize) -> usize {
    let text = (*stack).describe_tcp();
    if len > 0 {
        let n = text.len().min(len - 1);
        core::ptr::copy_nonoverlapping(text.as_ptr(), buf, n);
        *buf.add(n) = 0;
    }
    text.len()
}

// --- the published glue's calls, for the shim's fault switches (stack/published.rs) -----------------

/// smoltcp's UDP `recv_slice`: bytes copied; -EAGAIN when empty, -EMSGSIZE when the datagram did not fit
/// (it has been dequeued all the same).
#[no_mangle]
pub unsafe extern "C" fn hs_glue_udp_recv_slice(stack: *mut HsStack, id: u32, buf: *mut u8, len: usize) -> i64 {
    let buf = if len == 0 { &mut [][..] } else { core::slice::from_raw_parts_mut(buf, len) };
    ret((*stack).glue_udp_recv_slice(id, buf).map(|copied| copied as i64))
}

/// 1 when `may_recv() || may_send()` (the published glue's "connected"), 0 when not; or a negated errno.
#[no_mangle]
pub unsafe extern "C" fn hs_glue_tcp_is_connected(stack: *mut HsStack, id: u32) -> c_int {
    match (*stack).glue_tcp_is_connected(id) {
        Ok(connected) => c_int::from(connected),
        Err(errno) => -errno,
    }
}

/// `close()` and remove the socket(s) at once: no FIN leaves.
#[no_mangle]
pub unsafe extern "C" fn hs_glue_close(stack: *mut HsStack, id: u32) -> c_int {
    ret_unit((*stack).glue_close(id))
}
