//! One network interface and its sockets: smoltcp's `Interface`, the device, a fixed socket budget,
//! the DHCPv4 client, and BSD-socket semantics on top of smoltcp's sockets (what the shim needs).
//!
//! Not thread-safe by design: the runtime's poll thread is the only caller (as on the board).

use std::collections::VecDeque;
use std::sync::Arc;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    DhcpRepr, EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, Ipv4Address, Ipv4Cidr,
    Ipv6Address, Ipv6Cidr,
};

use crate::device::{HostDevice, TapFn, TxFn, TxReadyFn};
use crate::errno::*;
use crate::pool::FramePool;

mod published;

/// How long a closed TCP connection may take to finish its FIN exchange before it is reset.
const LINGER: Duration = Duration::from_secs(30);
/// A connection attempt gives up after this long without an answer (Linux: ~127 s of SYN retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(75);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(7200);
const EPHEMERAL_FIRST: u16 = 49152;
const DHCP_PACKET_BYTES: usize = 1500;
const ETHERNET_HEADER_BYTES: usize = 14;
/// Bound on back-to-back smoltcp egress polls in one pass (64 full segments ~ 92 KB, more than a window).
const MAX_POLLS_PER_PASS: usize = 64;
/// A half-open connection older than this may give its place to a new SYN: a client on the LAN answers a
/// SYN-ACK within milliseconds, and smoltcp's first SYN-ACK retransmission is due after a second (its
/// initial RTO); a younger one is a client still completing its handshake, which must not be reset.
const HALF_OPEN_GRACE: Duration = Duration::from_secs(1);

/// Readiness bits of `poll_socket`.
pub const READABLE: u32 = 1;
pub const WRITABLE: u32 = 2;
pub const ERROR: u32 = 4;
pub const HANGUP: u32 = 8;

/// Sizes and budgets of the stack (esp_smoltcp's Kconfig and the glue's constants).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub frame_mtu: usize,
    pub max_sockets: usize,
    pub tcp_rx_bytes: usize,
    pub tcp_tx_bytes: usize,
    pub udp_rx_bytes: usize,
    pub udp_tx_bytes: usize,
    pub udp_packets: usize,
    pub listen_pool_max: usize,
}

/// The runtime's transmit side: the send callback, the TX ring's back-pressure, their context.
#[derive(Clone, Copy)]
pub struct Wire {
    pub tx: TxFn,
    pub tx_ready: Option<TxReadyFn>,
    pub ctx: *mut core::ffi::c_void,
}

/// What the DHCP client reports to the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpEvent {
    /// A lease (new, or renewed): address, prefix, router, server, lease time in seconds (0: unknown).
    Bound { ip: Ipv4Address, prefix: u8, router: Option<Ipv4Address>, server: Ipv4Address, lease_s: u32 },
    /// The lease is gone (expired, NAK, restarted): the address that was lost.
    Lost { ip: Ipv4Address },
}

struct Tcp {
    /// The smoltcp socket; None for a listener, whose sockets are in `listener.pool`.
    handle: Option<SocketHandle>,
    bound: Option<IpListenEndpoint>,
    listener: Option<Listener>,
    connect_started: Option<Instant>,
    established: bool,
    fin_seen: bool,
    reset: bool,
    reset_reported: bool,
    wr_shut: bool,
    rd_shut: bool,
    error: i32,
    nodelay: bool,
    keepalive: bool,
}

/// A listening socket: `armed` smoltcp sockets wait in LISTEN (min(backlog, listen_pool_max), what
/// `listen()` pre-allocates), and connections that took one wait in the pool until `accept()`, at most
/// `backlog` of them. A socket that takes a connection is replaced between two frames, so a SYN right
/// behind another one finds a listening socket too (the board's accept task would re-arm it within
/// microseconds; a host thread may be late by milliseconds). When no socket listens, a new SYN takes the
/// place of the oldest half-open connection unanswered for `HALF_OPEN_GRACE` (a SYN flood cannot lock the
/// port); otherwise it is dropped, as lwIP and Linux drop a SYN their full queue has no room for: the
/// client retries.
struct Listener {
    endpoint: IpListenEndpoint,
    pool: Vec<SocketHandle>,
    armed: usize,
    backlog: usize,
    /// The pool's half-open connections and when each was first seen in SYN-RECEIVED.
    half_open: Vec<(SocketHandle, Instant)>,
}

struct Udp {
    handle: SocketHandle,
    remote: Option<IpEndpoint>,
}

enum Sock {
    Tcp(Tcp),
    Udp(Udp),
}

/// A received datagram's or segment's outcome for `recv`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes copied into the caller's buffer.
    pub copied: usize,
    /// The datagram's full length (UDP; equals `copied` for TCP).
    pub full: usize,
    /// Sender (UDP) or peer (TCP).
    pub from: Option<IpEndpoint>,
}

pub struct Stack {
    iface: Interface,
    device: HostDevice,
    sockets: SocketSet<'static>,
    table: Vec<Option<Sock>>,
    lingering: Vec<(SocketHandle, Instant)>,
    limits: Limits,
    in_use: usize,
    next_port: u16,
    now: Instant,
    dhcp: Option<SocketHandle>,
    gateway: Option<Ipv4Address>,
    events: VecDeque<DhcpEvent>,
    /// SYNs dropped because a listener's backlog was full (Linux: ListenDrops).
    listen_drops: u64,
}

fn try_buffer(bytes: usize) -> Result<Vec<u8>, i32> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(bytes).map_err(|_| ENOBUFS)?;
    buf.resize(bytes, 0);
    Ok(buf)
}

/// The IPv6 link-local address from the MAC (modified EUI-64, RFC 4291 appendix A).
pub fn link_local_from_mac(mac: [u8; 6]) -> Ipv6Address {
    Ipv6Address::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

fn is_established_like(state: tcp::State) -> bool {
    !matches!(state, tcp::State::Closed | tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived)
}

fn peer_closed(state: tcp::State) -> bool {
    matches!(state, tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing | tcp::State::TimeWait)
}

impl Stack {
    /// A stack on one Ethernet interface. `now` is the time since boot.
    pub fn new(mac: [u8; 6], limits: Limits, random_seed: u64, pool: Arc<FramePool>, wire: Wire, now: Instant) -> Self {
        let mut device = HostDevice::new(pool, wire.tx, wire.tx_ready, wire.ctx, limits.frame_mtu);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = random_seed;
        let mut iface = Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::Ipv6(Ipv6Cidr::new(link_local_from_mac(mac), 64)));
        });
        // Room for every socket of the budget plus the DHCP client: the set never grows at run time.
        let storage: Vec<SocketStorage> = (0..=limits.max_sockets).map(|_| SocketStorage::EMPTY).collect();
        let span = 65535 - EPHEMERAL_FIRST as u64;
        Self {
            iface,
            device,
            sockets: SocketSet::new(storage),
            table: Vec::new(),
            lingering: Vec::new(),
            limits,
            in_use: 0,
            next_port: EPHEMERAL_FIRST + (random_seed % span) as u16,
            now,
            dhcp: None,
            gateway: None,
            events: VecDeque::new(),
            listen_drops: 0,
        }
    }

    // --- interface -----------------------------------------------------------------------------

    /// One poll pass: frames in, timers, frames out; then DHCP and lingering sockets.
    /// Returns true when a socket's state may have changed.
    pub fn poll(&mut self, now: Instant) -> bool {
        self.now = now;
        let mut changed = false;
        // Frames one at a time, re-arming listeners between two frames.
        loop {
            if let Some(port) = self.device.next_syn_port() {
                if !self.admit_syn(port) {
                    self.device.drop_next();
                    self.listen_drops += 1;
                    continue;
                }
            }
            match self.iface.poll_ingress_single(now, &mut self.device, &mut self.sockets) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => changed = true,
            }
            self.arm_listeners();
        }
        // smoltcp sends at most one segment per socket per poll: keep polling while that moves frames
        // and smoltcp wants more now, so a window's worth goes out in one pass of the poll thread.
        for _ in 0..MAX_POLLS_PER_PASS {
            let sent = self.device.tx.frames + self.device.tx.fails;
            changed |=
                self.iface.poll_egress(now, &mut self.device, &mut self.sockets) == PollResult::SocketStateChanged;
            let moved = self.device.tx.frames + self.device.tx.fails != sent;
            if !moved || self.iface.poll_delay(now, &self.sockets) != Some(Duration::ZERO) {
                break;
            }
        }
        self.process_dhcp();
        self.sweep_lingering();
        self.arm_listeners();
        self.refresh_all();
        changed
    }

    /// Microseconds until smoltcp needs the next poll; None when only a frame can wake it.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        let smoltcp = self.iface.poll_delay(now, &self.sockets);
        let linger = self
            .lingering
            .iter()
            .map(|&(_, deadline)| if deadline > now { deadline - now } else { Duration::ZERO })
            .min();
        match (smoltcp, linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Carrier changed. A link that comes up restarts the DHCP client, as esp_smoltcp does.
    pub fn set_link(&mut self, up: bool) {
        self.device.link_up = up;
        if !up {
            self.device.discard_queued();
        } else if let Some(handle) = self.dhcp {
            self.sockets.get_mut::<dhcpv4::Socket>(handle).reset();
        }
    }

    pub fn link_up(&self) -> bool {
        self.device.link_up
    }

    /// Start the DHCPv4 client (restart it if it runs).
    pub fn start_dhcp(&mut self) {
        if let Some(handle) = self.dhcp {
            self.sockets.get_mut::<dhcpv4::Socket>(handle).reset();
            return;
        }
        let mut socket = dhcpv4::Socket::new();
        // Keep each reply so the lease time can be read from it (smoltcp's Config does not carry it).
        socket.set_receive_packet_buffer(Box::leak(vec![0u8; DHCP_PACKET_BYTES].into_boxed_slice()));
        self.dhcp = Some(self.sockets.add(socket));
    }

    /// A static address instead of DHCP.
    pub fn set_static(&mut self, ip: Ipv4Address, prefix: u8, gateway: Option<Ipv4Address>) {
        if let Some(handle) = self.dhcp.take() {
            self.sockets.remove(handle);
        }
        self.set_ipv4(Some(Ipv4Cidr::new(ip, prefix)), gateway);
    }

    fn set_ipv4(&mut self, cidr: Option<Ipv4Cidr>, gateway: Option<Ipv4Address>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
            if let Some(cidr) = cidr {
                let _ = addrs.push(IpCidr::Ipv4(cidr));
            }
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(gw) = gateway {
            let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
        }
        self.gateway = gateway;
    }

    fn process_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let socket = self.sockets.get_mut::<dhcpv4::Socket>(handle);
        let event = match socket.poll() {
            None => return,
            Some(dhcpv4::Event::Configured(config)) => {
                let lease_s = config
                    .packet
                    .as_ref()
                    .and_then(|packet| DhcpRepr::parse(packet).ok())
                    .and_then(|repr| repr.lease_duration)
                    .unwrap_or(0);
                (Some(config.address), config.router, config.server.address, lease_s)
            }
            Some(dhcpv4::Event::Deconfigured) => (None, None, Ipv4Address::UNSPECIFIED, 0),
        };
        let (cidr, router, server, lease_s) = event;
        let previous = self.iface.ipv4_addr();
        self.set_ipv4(cidr, router);
        match cidr {
            Some(cidr) => self.events.push_back(DhcpEvent::Bound {
                ip: cidr.address(),
                prefix: cidr.prefix_len(),
                router,
                server,
                lease_s,
            }),
            None => {
                if let Some(ip) = previous {
                    self.events.push_back(DhcpEvent::Lost { ip });
                }
            }
        }
    }

    /// The next DHCP event, oldest first.
    pub fn next_event(&mut self) -> Option<DhcpEvent> {
        self.events.pop_front()
    }

    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.iface.ip_addrs().iter().find_map(|cidr| match cidr {
            IpCidr::Ipv4(c) => Some(*c),
            _ => None,
        })
    }

    pub fn gateway(&self) -> Option<Ipv4Address> {
        self.gateway
    }

    pub fn ipv6_link_local(&self) -> Option<Ipv6Address> {
        self.iface.ip_addrs().iter().find_map(|cidr| match cidr {
            IpCidr::Ipv6(c) if is_link_local(c.address()) => Some(c.address()),
            _ => None,
        })
    }

    /// Give the interface its IPv6 link-local address (the default) or take it away.
    pub fn set_ipv6_link_local(&mut self, on: bool) {
        let mac = match self.iface.hardware_addr() {
            HardwareAddress::Ethernet(EthernetAddress(mac)) => mac,
        };
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|a| !matches!(a, IpCidr::Ipv6(c) if is_link_local(c.address())));
            if on {
                let _ = addrs.push(IpCidr::Ipv6(Ipv6Cidr::new(link_local_from_mac(mac), 64)));
            }
        });
    }

    /// Register (`callback` Some) or clear (None) the L2 tap of one EtherType (`esp_smoltcp_l2_tap`).
    pub fn set_l2_tap(&mut self, ethertype: u16, callback: Option<(TapFn, *mut core::ffi::c_void)>) -> Result<(), i32> {
        self.device.set_tap(ethertype, callback)
    }

    /// Send one raw Ethernet frame (`esp_smoltcp_l2_send`); counted like every frame the stack sends.
    pub fn send_l2(&mut self, frame: &[u8]) -> Result<(), i32> {
        if frame.len() < ETHERNET_HEADER_BYTES || frame.len() > self.limits.frame_mtu {
            return Err(EMSGSIZE);
        }
        if !self.device.link_up {
            return Err(ENETDOWN);
        }
        if self.device.send_raw(frame) {
            Ok(())
        } else {
            Err(ENOBUFS)
        }
    }

    pub fn join_multicast(&mut self, group: Ipv4Address) -> Result<(), i32> {
        if !group.is_multicast() {
            return Err(EINVAL);
        }
        self.iface.join_multicast_group(group).map_err(|_| ENOBUFS)
    }

    pub fn leave_multicast(&mut self, group: Ipv4Address) -> Result<(), i32> {
        self.iface.leave_multicast_group(group).map_err(|_| EADDRNOTAVAIL)
    }

    pub fn device(&self) -> &HostDevice {
        &self.device
    }

    /// SYNs dropped because a listener's backlog was full.
    pub fn listen_drops(&self) -> u64 {
        self.listen_drops
    }

    /// smoltcp TCP and UDP sockets in use (listener pools and closing connections included).
    pub fn active_sockets(&self) -> usize {
        self.in_use
    }

    // --- socket budget -------------------------------------------------------------------------

    fn new_tcp_handle(&mut self, nodelay: bool, keepalive: bool) -> Result<SocketHandle, i32> {
        if self.in_use >= self.limits.max_sockets {
            return Err(ENFILE);
        }
        let rx = try_buffer(self.limits.tcp_rx_bytes)?;
        let tx = try_buffer(self.limits.tcp_tx_bytes)?;
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        socket.set_nagle_enabled(!nodelay);
        socket.set_keep_alive(keepalive.then_some(KEEPALIVE_INTERVAL));
        self.in_use += 1;
        Ok(self.sockets.add(socket))
    }

    fn new_udp_handle(&mut self) -> Result<SocketHandle, i32> {
        if self.in_use >= self.limits.max_sockets {
            return Err(ENFILE);
        }
        let packets = self.limits.udp_packets;
        let mut rx_meta = Vec::new();
        rx_meta.try_reserve_exact(packets).map_err(|_| ENOBUFS)?;
        rx_meta.resize(packets, udp::PacketMetadata::EMPTY);
        let mut tx_meta = Vec::new();
        tx_meta.try_reserve_exact(packets).map_err(|_| ENOBUFS)?;
        tx_meta.resize(packets, udp::PacketMetadata::EMPTY);
        let rx = udp::PacketBuffer::new(rx_meta, try_buffer(self.limits.udp_rx_bytes)?);
        let tx = udp::PacketBuffer::new(tx_meta, try_buffer(self.limits.udp_tx_bytes)?);
        self.in_use += 1;
        Ok(self.sockets.add(udp::Socket::new(rx, tx)))
    }

    fn free_handle(&mut self, handle: SocketHandle) {
        self.sockets.remove(handle);
        self.in_use -= 1;
    }

    fn insert(&mut self, sock: Sock) -> u32 {
        match self.table.iter().position(Option::is_none) {
            Some(slot) => {
                self.table[slot] = Some(sock);
                slot as u32 + 1
            }
            None => {
                self.table.push(Some(sock));
                self.table.len() as u32
            }
        }
    }

    fn sock_ref(&self, id: u32) -> Result<&Sock, i32> {
        self.table.get((id as usize).wrapping_sub(1)).and_then(Option::as_ref).ok_or(EBADF)
    }

    fn sock(&mut self, id: u32) -> Result<&mut Sock, i32> {
        self.table.get_mut((id as usize).wrapping_sub(1)).and_then(Option::as_mut).ok_or(EBADF)
    }

    // --- ports ---------------------------------------------------------------------------------

    fn port_in_use(&self, port: u16, is_tcp: bool) -> bool {
        self.table.iter().flatten().any(|sock| match sock {
            Sock::Tcp(t) if is_tcp => {
                t.bound.is_some_and(|b| b.port == port)
                    || t.handle.is_some_and(|h| {
                        self.sockets.get::<tcp::Socket>(h).local_endpoint().is_some_and(|e| e.port == port)
                    })
            }
            Sock::Udp(u) if !is_tcp => self.sockets.get::<udp::Socket>(u.handle).endpoint().port == port,
            _ => false,
        })
    }

    fn ephemeral_port(&mut self, is_tcp: bool) -> Result<u16, i32> {
        for _ in 0..=(65535 - EPHEMERAL_FIRST) {
            let port = self.next_port;
            self.next_port = if port == 65535 { EPHEMERAL_FIRST } else { port + 1 };
            if !self.port_in_use(port, is_tcp) {
                return Ok(port);
            }
        }
        Err(EADDRINUSE)
    }

    fn check_local_addr(&self, addr: Ipv4Address) -> Result<Option<IpAddress>, i32> {
        if addr.is_unspecified() {
            return Ok(None);
        }
        if self.ipv4().is_some_and(|c| c.address() == addr) {
            return Ok(Some(IpAddress::Ipv4(addr)));
        }
        Err(EADDRNOTAVAIL)
    }

    // --- BSD socket operations (errors are errno values) -------------------------------------------

    /// socket(AF_INET, SOCK_STREAM or SOCK_DGRAM).
    pub fn socket(&mut self, is_tcp: bool) -> Result<u32, i32> {
        let sock = if is_tcp {
            Sock::Tcp(Tcp {
                handle: Some(self.new_tcp_handle(false, false)?),
                bound: None,
                listener: None,
                connect_started: None,
                established: false,
                fin_seen: false,
                reset: false,
                reset_reported: false,
                wr_shut: false,
                rd_shut: false,
                error: 0,
                nodelay: false,
                keepalive: false,
            })
        } else {
            Sock::Udp(Udp { handle: self.new_udp_handle()?, remote: None })
        };
        Ok(self.insert(sock))
    }

    pub fn bind(&mut self, id: u32, addr: Ipv4Address, port: u16) -> Result<(), i32> {
        let local = self.check_local_addr(addr)?;
        let is_tcp = matches!(self.sock(id)?, Sock::Tcp(_));
        let already = match self.sock_ref(id)? {
            Sock::Tcp(t) => t.bound.is_some() || t.listener.is_some() || t.connect_started.is_some(),
            Sock::Udp(u) => self.sockets.get::<udp::Socket>(u.handle).is_open(),
        };
        if already {
            return Err(EINVAL);
        }
        let port = if port == 0 {
            self.ephemeral_port(is_tcp)?
        } else if self.port_in_use(port, is_tcp) {
            return Err(EADDRINUSE);
        } else {
            port
        };
        let endpoint = IpListenEndpoint { addr: local, port };
        match self.sock(id)? {
            Sock::Tcp(t) => t.bound = Some(endpoint),
            Sock::Udp(u) => {
                let handle = u.handle;
                self.sockets.get_mut::<udp::Socket>(handle).bind(endpoint).map_err(|_| EINVAL)?;
            }
        }
        Ok(())
    }

    /// listen(): the socket becomes a pool of min(backlog, listen_pool_max) listening smoltcp sockets.
    pub fn listen(&mut self, id: u32, backlog: i32) -> Result<(), i32> {
        let backlog = backlog.max(1) as usize;
        let target = backlog.min(self.limits.listen_pool_max.max(1));
        let (handle, bound, nodelay, keepalive) = match self.sock(id)? {
            Sock::Udp(_) => return Err(EOPNOTSUPP),
            Sock::Tcp(t) if t.listener.is_some() => return Ok(()),
            Sock::Tcp(t) if t.connect_started.is_some() || t.handle.is_none() => return Err(EINVAL),
            Sock::Tcp(t) => (t.handle.unwrap(), t.bound, t.nodelay, t.keepalive),
        };
        let endpoint = match bound {
            Some(endpoint) => endpoint,
            None => IpListenEndpoint { addr: None, port: self.ephemeral_port(true)? },
        };
        let mut pool = vec![handle];
        while pool.len() < target {
            match self.new_tcp_handle(nodelay, keepalive) {
                Ok(extra) => pool.push(extra),
                Err(err) => {
                    for extra in pool.drain(1..) {
                        self.free_handle(extra);
                    }
                    return Err(err);
                }
            }
        }
        for &h in &pool {
            self.sockets.get_mut::<tcp::Socket>(h).listen(endpoint).map_err(|_| EINVAL)?;
        }
        if let Sock::Tcp(t) = self.sock(id)? {
            t.handle = None;
            t.bound = Some(endpoint);
            t.listener = Some(Listener { endpoint, pool, armed: target, backlog, half_open: Vec::new() });
        }
        Ok(())
    }

    /// accept(): a connection from the listener's pool (its place is re-armed after every frame).
    pub fn accept(&mut self, id: u32) -> Result<(u32, IpEndpoint), i32> {
        let Sock::Tcp(Tcp { listener: Some(l), nodelay, keepalive, .. }) = self.sock_ref(id)? else {
            return Err(EINVAL);
        };
        let (nodelay, keepalive) = (*nodelay, *keepalive);
        let ready = l.pool.iter().position(|&h| is_established_like(self.sockets.get::<tcp::Socket>(h).state()));
        let Some(position) = ready else { return Err(EAGAIN) };
        let handle = match self.sock(id)? {
            Sock::Tcp(Tcp { listener: Some(l), .. }) => l.pool.swap_remove(position),
            _ => return Err(EINVAL),
        };
        self.arm_listeners();
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        socket.set_timeout(None);
        let peer = socket.remote_endpoint().unwrap_or(IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::UNSPECIFIED), 0));
        let fin_seen = peer_closed(socket.state());
        let new_id = self.insert(Sock::Tcp(Tcp {
            handle: Some(handle),
            bound: None,
            listener: None,
            connect_started: None,
            established: true,
            fin_seen,
            reset: false,
            reset_reported: false,
            wr_shut: false,
            rd_shut: false,
            error: 0,
            nodelay,
            keepalive,
        }));
        Ok((new_id, peer))
    }

    /// Whether a SYN to `port` may reach smoltcp: yes with no listener there (smoltcp resets it: refused) or a
    /// socket listening; otherwise the oldest half-open connection past its grace makes room, and without
    /// one the SYN is dropped.
    fn admit_syn(&mut self, port: u16) -> bool {
        let listener = self.table.iter().flatten().find_map(|sock| match sock {
            Sock::Tcp(Tcp { listener: Some(l), .. }) if l.endpoint.port == port => Some(l),
            _ => None,
        });
        let Some(l) = listener else { return true };
        if l.pool.iter().any(|h| self.sockets.get::<tcp::Socket>(*h).state() == tcp::State::Listen) {
            return true;
        }
        let oldest = l.half_open.iter().min_by_key(|(_, since)| *since);
        let Some(&(oldest, _)) = oldest.filter(|(_, since)| self.now - *since >= HALF_OPEN_GRACE) else {
            return false;
        };
        let endpoint = l.endpoint;
        let socket = self.sockets.get_mut::<tcp::Socket>(oldest);
        socket.abort();
        socket.listen(endpoint).is_ok()
    }

    /// Keep every listener's armed sockets listening: a socket reset before it was accepted listens
    /// again, and one that took a connection is replaced while fewer than `backlog` connections wait.
    fn arm_listeners(&mut self) {
        for slot in 0..self.table.len() {
            let Some(Sock::Tcp(Tcp { listener: Some(l), nodelay, keepalive, .. })) = &mut self.table[slot] else {
                continue;
            };
            let (mut listening, mut waiting) = (0, 0);
            let now = self.now;
            let mut half_open = Vec::new();
            for &h in &l.pool {
                let socket = self.sockets.get_mut::<tcp::Socket>(h);
                match socket.state() {
                    tcp::State::Listen => listening += 1,
                    // Reset before it was accepted: listen again (Linux drops it from the queue too).
                    tcp::State::Closed => {
                        let _ = socket.listen(l.endpoint);
                        listening += 1;
                    }
                    state => {
                        if state == tcp::State::SynReceived {
                            let seen = l.half_open.iter().find(|(known, _)| *known == h);
                            half_open.push((h, seen.map_or(now, |&(_, since)| since)));
                        }
                        waiting += 1;
                    }
                }
            }
            l.half_open = half_open;
            if listening >= l.armed || waiting >= l.backlog {
                continue;
            }
            let (endpoint, nodelay, keepalive, missing) = (l.endpoint, *nodelay, *keepalive, l.armed - listening);
            for _ in 0..missing {
                let Ok(fresh) = self.new_tcp_handle(nodelay, keepalive) else { break };
                let _ = self.sockets.get_mut::<tcp::Socket>(fresh).listen(endpoint);
                if let Some(Sock::Tcp(Tcp { listener: Some(l), .. })) = &mut self.table[slot] {
                    l.pool.push(fresh);
                }
            }
        }
    }

    /// connect(): TCP starts the handshake (EINPROGRESS; completion shows in `poll_socket`);
    /// UDP sets the default destination.
    pub fn connect(&mut self, id: u32, addr: Ipv4Address, port: u16) -> Result<(), i32> {
        let remote = IpEndpoint::new(IpAddress::Ipv4(addr), port);
        if port == 0 || addr.is_unspecified() {
            return Err(if matches!(self.sock(id)?, Sock::Udp(_)) { EINVAL } else { ECONNREFUSED });
        }
        let now = self.now;
        match self.sock(id)? {
            Sock::Udp(u) => {
                u.remote = Some(remote);
                let handle = u.handle;
                if !self.sockets.get::<udp::Socket>(handle).is_open() {
                    let port = self.ephemeral_port(false)?;
                    self.sockets.get_mut::<udp::Socket>(handle).bind(port).map_err(|_| EINVAL)?;
                }
                Ok(())
            }
            Sock::Tcp(t) => {
                if t.listener.is_some() {
                    return Err(EINVAL);
                }
                if t.connect_started.is_some() {
                    return Err(if t.established { EISCONN } else { EALREADY });
                }
                let handle = t.handle.ok_or(EINVAL)?;
                let bound = t.bound;
                let local = match bound {
                    Some(endpoint) => endpoint,
                    None => IpListenEndpoint { addr: None, port: self.ephemeral_port(true)? },
                };
                let cx = self.iface.context();
                let socket = self.sockets.get_mut::<tcp::Socket>(handle);
                socket.connect(cx, remote, local).map_err(|_| ENETUNREACH)?;
                socket.set_timeout(Some(CONNECT_TIMEOUT));
                if let Sock::Tcp(t) = self.sock(id)? {
                    t.connect_started = Some(now);
                    t.bound = Some(local);
                }
                Err(EINPROGRESS)
            }
        }
    }

    /// Bring a TCP socket's flags up to date with smoltcp's state.
    fn refresh(sockets: &mut SocketSet<'static>, t: &mut Tcp, now: Instant) {
        let Some(handle) = t.handle else { return };
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        let state = socket.state();
        if let Some(started) = t.connect_started.filter(|_| !t.established) {
            if is_established_like(state) {
                t.established = true;
                // Connected: no more give-up timer (keep-alive handles dead peers, as on Linux).
                socket.set_timeout(None);
            } else if state == tcp::State::Closed && t.error == 0 && !t.reset {
                t.error = if now - started >= CONNECT_TIMEOUT { ETIMEDOUT } else { ECONNREFUSED };
                t.reset = true;
                t.reset_reported = true; // reported through the pending error instead
            }
        }
        if t.established {
            if peer_closed(state) {
                t.fin_seen = true;
            } else if state == tcp::State::Closed && !t.fin_seen && !t.wr_shut {
                t.reset = true;
            }
        }
    }

    fn refresh_all(&mut self) {
        let now = self.now;
        let Self { table, sockets, .. } = self;
        for sock in table.iter_mut().flatten() {
            if let Sock::Tcp(t) = sock {
                Self::refresh(sockets, t, now);
            }
        }
    }

    fn tcp(&mut self, id: u32) -> Result<(&mut Tcp, &mut SocketSet<'static>), i32> {
        let now = self.now;
        let Self { table, sockets, .. } = self;
        match table.get_mut((id as usize).wrapping_sub(1)).and_then(Option::as_mut) {
            Some(Sock::Tcp(t)) => {
                Self::refresh(sockets, t, now);
                Ok((t, sockets))
            }
            Some(Sock::Udp(_)) => Err(EOPNOTSUPP),
            None => Err(EBADF),
        }
    }

    /// send()/sendto(): bytes queued, or EAGAIN when the buffer is full.
    pub fn send(&mut self, id: u32, data: &[u8], to: Option<(Ipv4Address, u16)>) -> Result<usize, i32> {
        if let Sock::Udp(u) = self.sock(id)? {
            let remote = match to {
                Some((addr, port)) => IpEndpoint::new(IpAddress::Ipv4(addr), port),
                None => u.remote.ok_or(EDESTADDRREQ)?,
            };
            let handle = u.handle;
            if !self.sockets.get::<udp::Socket>(handle).is_open() {
                let port = self.ephemeral_port(false)?;
                self.sockets.get_mut::<udp::Socket>(handle).bind(port).map_err(|_| EINVAL)?;
            }
            let socket = self.sockets.get_mut::<udp::Socket>(handle);
            if data.len() > socket.payload_send_capacity() {
                return Err(EMSGSIZE);
            }
            return match socket.send_slice(data, remote) {
                Ok(()) => Ok(data.len()),
                Err(udp::SendError::BufferFull) => Err(EAGAIN),
                Err(udp::SendError::Unaddressable) => Err(EINVAL),
            };
        }
        let (t, sockets) = self.tcp(id)?;
        let handle = t.handle.ok_or(ENOTCONN)?;
        if t.reset {
            return Err(if std::mem::replace(&mut t.reset_reported, true) { EPIPE } else { ECONNRESET });
        }
        if t.wr_shut {
            return Err(EPIPE);
        }
        if !t.established {
            return Err(if t.connect_started.is_some() { EAGAIN } else { ENOTCONN });
        }
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if !socket.may_send() {
            return Err(EPIPE);
        }
        match socket.send_slice(data) {
            Ok(0) if !data.is_empty() => Err(EAGAIN),
            Ok(n) => Ok(n),
            Err(_) => Err(EPIPE),
        }
    }

    /// recv()/recvfrom(): TCP returns 0 at the peer's FIN; UDP truncates a datagram that does not fit
    /// (and reports its full length), like Linux. `peek` leaves the data queued.
    pub fn recv(&mut self, id: u32, buf: &mut [u8], peek: bool) -> Result<Received, i32> {
        if let Sock::Udp(u) = self.sock(id)? {
            let handle = u.handle;
            let socket = self.sockets.get_mut::<udp::Socket>(handle);
            let (payload, meta) =
                if peek { socket.peek().map(|(p, m)| (p, *m)) } else { socket.recv() }.map_err(|_| EAGAIN)?;
            let copied = payload.len().min(buf.len());
            buf[..copied].copy_from_slice(&payload[..copied]);
            return Ok(Received { copied, full: payload.len(), from: Some(meta.endpoint) });
        }
        let (t, sockets) = self.tcp(id)?;
        let Some(handle) = t.handle else { return Err(EINVAL) };
        if t.rd_shut {
            return Ok(Received::default());
        }
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        let from = socket.remote_endpoint();
        if socket.can_recv() {
            let copied = if peek { socket.peek_slice(buf) } else { socket.recv_slice(buf) }.unwrap_or(0);
            return Ok(Received { copied, full: copied, from });
        }
        if t.reset && !t.fin_seen {
            if t.error != 0 {
                return Err(std::mem::take(&mut t.error));
            }
            return if std::mem::replace(&mut t.reset_reported, true) {
                Ok(Received::default())
            } else {
                Err(ECONNRESET)
            };
        }
        if t.established && !socket.may_recv() {
            return Ok(Received::default());
        }
        if !t.established && t.connect_started.is_none() {
            return Err(ENOTCONN);
        }
        Err(EAGAIN)
    }

    /// shutdown(): SHUT_WR (1) sends FIN after the queued data; SHUT_RD (0) makes recv return 0.
    pub fn shutdown(&mut self, id: u32, how: i32) -> Result<(), i32> {
        let (t, sockets) = self.tcp(id)?;
        let handle = t.handle.ok_or(ENOTCONN)?;
        if !t.established {
            return Err(ENOTCONN);
        }
        if how == 0 || how == 2 {
            t.rd_shut = true;
        }
        if how == 1 || how == 2 {
            t.wr_shut = true;
            sockets.get_mut::<tcp::Socket>(handle).close();
        }
        Ok(())
    }

    /// close(): UDP at once; TCP sends FIN after the queued data and lingers here until the
    /// exchange ends (or resets it after `LINGER`); a listener resets its unaccepted connections.
    pub fn close(&mut self, id: u32) -> Result<(), i32> {
        self.sock(id)?;
        let sock = self.table[id as usize - 1].take().ok_or(EBADF)?;
        match sock {
            Sock::Udp(u) => self.free_handle(u.handle),
            Sock::Tcp(t) => {
                let is_listener = t.listener.is_some();
                let handles = match t.listener {
                    Some(l) => l.pool,
                    None => t.handle.into_iter().collect(),
                };
                for handle in handles {
                    let socket = self.sockets.get_mut::<tcp::Socket>(handle);
                    match socket.state() {
                        tcp::State::Closed | tcp::State::Listen | tcp::State::TimeWait => self.free_handle(handle),
                        tcp::State::SynSent | tcp::State::SynReceived => {
                            socket.abort();
                            self.lingering.push((handle, self.now + LINGER));
                        }
                        _ if is_listener => {
                            socket.abort();
                            self.lingering.push((handle, self.now + LINGER));
                        }
                        _ => {
                            socket.close();
                            self.lingering.push((handle, self.now + LINGER));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn sweep_lingering(&mut self) {
        let now = self.now;
        let mut index = 0;
        while index < self.lingering.len() {
            let (handle, deadline) = self.lingering[index];
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            let done = matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait);
            if done {
                self.lingering.swap_remove(index);
                self.free_handle(handle);
                continue;
            }
            if deadline <= now {
                socket.abort();
            }
            index += 1;
        }
    }

    /// Readiness of a socket (READABLE/WRITABLE/ERROR/HANGUP bits), never consuming anything.
    pub fn poll_socket(&mut self, id: u32) -> Result<u32, i32> {
        if let Sock::Udp(u) = self.sock(id)? {
            let handle = u.handle;
            let socket = self.sockets.get::<udp::Socket>(handle);
            return Ok(if socket.can_recv() { READABLE } else { 0 } | if socket.can_send() { WRITABLE } else { 0 });
        }
        let (t, sockets) = self.tcp(id)?;
        if let Some(listener) = &t.listener {
            let ready = listener.pool.iter().any(|&h| is_established_like(sockets.get::<tcp::Socket>(h).state()));
            return Ok(if ready { READABLE } else { 0 });
        }
        let handle = t.handle.ok_or(EBADF)?;
        let socket = sockets.get::<tcp::Socket>(handle);
        if t.connect_started.is_none() && !t.established {
            return Ok(WRITABLE | HANGUP); // never connected: Linux reports POLLOUT|POLLHUP
        }
        if t.reset && !t.fin_seen {
            return Ok(READABLE | WRITABLE | ERROR | HANGUP);
        }
        if !t.established {
            return Ok(0); // handshake in progress
        }
        let mut mask = 0;
        if socket.can_recv() || !socket.may_recv() || t.rd_shut {
            mask |= READABLE;
        }
        // Writable once a third of the buffer is free (Linux: free >= queued / 2), so a sender is
        // woken for a worthwhile chunk, not for every acknowledged segment.
        let free = socket.send_capacity() - socket.send_queue();
        if (socket.can_send() && free * 2 >= socket.send_queue()) || !socket.may_send() {
            mask |= WRITABLE;
        }
        if t.fin_seen && t.wr_shut {
            mask |= HANGUP;
        }
        Ok(mask)
    }

    /// getsockname().
    pub fn local_endpoint(&mut self, id: u32) -> Result<(Ipv4Address, u16), i32> {
        let any = Ipv4Address::UNSPECIFIED;
        let endpoint = match self.sock_ref(id)? {
            Sock::Udp(u) => {
                let handle = u.handle;
                let e = self.sockets.get::<udp::Socket>(handle).endpoint();
                (e.addr, e.port)
            }
            Sock::Tcp(t) => {
                let connected = t.handle.and_then(|h| self.sockets.get::<tcp::Socket>(h).local_endpoint());
                match (connected, t.bound) {
                    (Some(e), _) => (Some(e.addr), e.port),
                    (None, Some(b)) => (b.addr, b.port),
                    (None, None) => (None, 0),
                }
            }
        };
        Ok(match endpoint {
            (Some(IpAddress::Ipv4(addr)), port) => (addr, port),
            (_, port) => (any, port),
        })
    }

    /// getpeername().
    pub fn peer_endpoint(&mut self, id: u32) -> Result<(Ipv4Address, u16), i32> {
        let endpoint = match self.sock(id)? {
            Sock::Udp(u) => u.remote,
            Sock::Tcp(t) => {
                let handle = t.handle;
                let established = t.established;
                handle.filter(|_| established).and_then(|h| self.sockets.get::<tcp::Socket>(h).remote_endpoint())
            }
        };
        match endpoint {
            Some(IpEndpoint { addr: IpAddress::Ipv4(addr), port }) => Ok((addr, port)),
            _ => Err(ENOTCONN),
        }
    }

    /// SO_ERROR: the pending error, cleared by reading it.
    pub fn take_error(&mut self, id: u32) -> Result<i32, i32> {
        match self.sock(id)? {
            Sock::Tcp(_) => {
                let (t, _) = self.tcp(id)?;
                Ok(std::mem::take(&mut t.error))
            }
            Sock::Udp(_) => Ok(0),
        }
    }

    /// TCP_NODELAY and SO_KEEPALIVE (inherited by connections a listener accepts later).
    pub fn set_tcp_options(&mut self, id: u32, nodelay: Option<bool>, keepalive: Option<bool>) -> Result<(), i32> {
        let (t, sockets) = self.tcp(id)?;
        t.nodelay = nodelay.unwrap_or(t.nodelay);
        t.keepalive = keepalive.unwrap_or(t.keepalive);
        let handles: Vec<SocketHandle> = match &t.listener {
            Some(l) => l.pool.clone(),
            None => t.handle.into_iter().collect(),
        };
        for h in handles {
            let socket = sockets.get_mut::<tcp::Socket>(h);
            socket.set_nagle_enabled(!t.nodelay);
            socket.set_keep_alive(t.keepalive.then_some(KEEPALIVE_INTERVAL));
        }
        Ok(())
    }

    /// TCP_NODELAY and SO_KEEPALIVE as set.
    pub fn tcp_options(&mut self, id: u32) -> Result<(bool, bool), i32> {
        let (t, _) = self.tcp(id)?;
        Ok((t.nodelay, t.keepalive))
    }

    /// Bytes waiting to be read (FIONREAD) and not yet acknowledged by the peer.
    pub fn queues(&mut self, id: u32) -> Result<(usize, usize), i32> {
        match self.sock(id)? {
            Sock::Udp(u) => {
                let handle = u.handle;
                let socket = self.sockets.get_mut::<udp::Socket>(handle);
                let next = socket.peek().map(|(p, _)| p.len()).unwrap_or(0);
                Ok((next, socket.send_queue()))
            }
            Sock::Tcp(_) => {
                let (t, sockets) = self.tcp(id)?;
                Ok(t.handle.map_or((0, 0), |h| {
                    let s = sockets.get::<tcp::Socket>(h);
                    (s.recv_queue(), s.send_queue())
                }))
            }
        }
    }

    /// Every smoltcp TCP socket as JSON (state, queues, endpoints): the `sockets` command's detail.
    pub fn describe_tcp(&self) -> String {
        let mut out = String::from("[");
        for item in self.sockets.iter() {
            if let smoltcp::socket::Socket::Tcp(socket) = &item.1 {
                if out.len() > 1 {
                    out.push(',');
                }
                let local = socket.local_endpoint().map(|e| e.to_string()).unwrap_or_default();
                let remote = socket.remote_endpoint().map(|e| e.to_string()).unwrap_or_default();
                out.push_str(&format!(
                    "{{\"state\":\"{}\",\"local\":\"{}\",\"remote\":\"{}\",\"recv_queue\":{},\"send_queue\":{}}}",
                    socket.state(),
                    local,
                    remote,
                    socket.recv_queue(),
                    socket.send_queue()
                ));
            }
        }
        out.push(']');
        out
    }

    /// smoltcp's TCP state name of a connection (diagnostics and tests).
    pub fn tcp_state(&mut self, id: u32) -> Result<tcp::State, i32> {
        let (t, sockets) = self.tcp(id)?;
        Ok(t.handle.map_or(tcp::State::Listen, |h| sockets.get::<tcp::Socket>(h).state()))
    }
}

fn is_link_local(addr: Ipv6Address) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}
