//! BSD-socket semantics of the stack, through the FFI, between two stacks on an in-memory cable.

mod common;

use common::{connected_pair, ip, recv, send, state, Cable, Limits, ERROR, READABLE, WRITABLE};
use hil_stack::errno::*;
use hil_stack::*;

#[test]
fn tcp_data_flows_both_ways() {
    let mut cable = Cable::new(&Limits::default());
    let (_, client, server) = connected_pair(&mut cable, 7000);
    assert_eq!(send(cable.a.stack, client, b"ping"), 4);
    cable.settle();
    let mut buf = [0u8; 64];
    assert_eq!(recv(cable.b.stack, server, &mut buf).0, 4);
    assert_eq!(&buf[..4], b"ping");
    assert_eq!(recv(cable.b.stack, server, &mut buf).0, -i64::from(EAGAIN), "nothing more: EAGAIN, not EOF");
    assert_eq!(send(cable.b.stack, server, b"pong!"), 5);
    cable.settle();
    assert_eq!(recv(cable.a.stack, client, &mut buf).0, 5);
}

#[test]
fn a_peer_fin_makes_the_socket_readable_and_recv_returns_zero() {
    let mut cable = Cable::new(&Limits::default());
    let (_, client, server) = connected_pair(&mut cable, 7001);
    assert_eq!(send(cable.a.stack, client, b"last words"), 10);
    assert_eq!(unsafe { hs_close(cable.a.stack, client) }, 0);
    cable.settle();
    assert_eq!(state(cable.b.stack, server), "CLOSE-WAIT");
    assert_eq!(unsafe { hs_poll_socket(cable.b.stack, server) } & READABLE, READABLE);
    let mut buf = [0u8; 64];
    assert_eq!(recv(cable.b.stack, server, &mut buf).0, 10, "data before the FIN first");
    assert_eq!(unsafe { hs_poll_socket(cable.b.stack, server) } & READABLE, READABLE, "EOF stays readable");
    assert_eq!(recv(cable.b.stack, server, &mut buf).0, 0);
    assert_eq!(recv(cable.b.stack, server, &mut buf).0, 0);
}

#[test]
fn close_sends_fin_and_the_lingering_socket_is_freed_after_the_exchange() {
    let mut cable = Cable::new(&Limits::default());
    let (_, client, server) = connected_pair(&mut cable, 7002);
    let before = cable.b.stats().active_sockets;
    assert_eq!(unsafe { hs_close(cable.b.stack, server) }, 0);
    cable.settle();
    let mut buf = [0u8; 8];
    assert_eq!(recv(cable.a.stack, client, &mut buf).0, 0, "the peer saw our FIN");
    assert_eq!(cable.b.stats().active_sockets, before, "still lingering until the peer closes");
    assert_eq!(unsafe { hs_close(cable.a.stack, client) }, 0);
    cable.settle();
    assert_eq!(cable.b.stats().active_sockets, before - 1, "freed once the FIN exchange is over");
}

#[test]
fn a_reset_is_reported_once_then_eof() {
    let mut cable = Cable::new(&Limits::default());
    let (listener, client, server) = connected_pair(&mut cable, 7003);
    // A second connection is established but never accepted; closing the listener resets it.
    unsafe {
        let other = hs_socket(cable.a.stack, true) as u32;
        assert_eq!(hs_connect(cable.a.stack, other, ip("10.0.0.2"), 7003), -EINPROGRESS);
        cable.settle();
        assert_eq!(hs_poll_socket(cable.a.stack, other) & WRITABLE, WRITABLE);
        assert_eq!(hs_close(cable.b.stack, listener), 0);
        cable.settle();
        let mut buf = [0u8; 8];
        assert_eq!(hs_poll_socket(cable.a.stack, other) & ERROR, ERROR);
        assert_eq!(recv(cable.a.stack, other, &mut buf).0, -i64::from(ECONNRESET));
        assert_eq!(recv(cable.a.stack, other, &mut buf).0, 0);
    }
    assert_eq!(send(cable.a.stack, client, b"x"), 1, "the accepted connection is untouched");
    cable.settle();
    let mut buf = [0u8; 8];
    assert_eq!(recv(cable.b.stack, server, &mut buf).0, 1);
}

#[test]
fn connecting_to_a_closed_port_fails_with_econnrefused() {
    let mut cable = Cable::new(&Limits::default());
    unsafe {
        let client = hs_socket(cable.a.stack, true) as u32;
        assert_eq!(hs_connect(cable.a.stack, client, ip("10.0.0.2"), 9), -EINPROGRESS);
        cable.settle();
        assert_eq!(hs_poll_socket(cable.a.stack, client) & (WRITABLE | ERROR), WRITABLE | ERROR);
        assert_eq!(hs_take_error(cable.a.stack, client), ECONNREFUSED);
        assert_eq!(hs_take_error(cable.a.stack, client), 0, "SO_ERROR clears when read");
    }
}

#[test]
fn udp_readability_never_consumes_a_datagram_and_truncation_reports_the_full_length() {
    let mut cable = Cable::new(&Limits::default());
    unsafe {
        let rx = hs_socket(cable.b.stack, false) as u32;
        assert_eq!(hs_bind(cable.b.stack, rx, 0, 7001), 0);
        let tx = hs_socket(cable.a.stack, false) as u32;
        assert_eq!(hs_poll_socket(cable.b.stack, rx) & READABLE, 0);
        let payload = [7u8; 100];
        assert_eq!(hs_send(cable.a.stack, tx, payload.as_ptr(), 100, true, ip("10.0.0.2"), 7001), 100);
        cable.settle();
        for _ in 0..3 {
            assert_eq!(hs_poll_socket(cable.b.stack, rx) & READABLE, READABLE, "asking again changes nothing");
        }
        let (mut r, mut s) = (0usize, 0usize);
        assert_eq!(hs_queues(cable.b.stack, rx, &mut r, &mut s), 0);
        assert_eq!(r, 100);
        let mut small = [0u8; 10];
        let mut info = HsRecvInfo::default();
        assert_eq!(hs_recv(cable.b.stack, rx, small.as_mut_ptr(), 10, true, &mut info), 10, "peek");
        assert_eq!(hs_recv(cable.b.stack, rx, small.as_mut_ptr(), 10, false, &mut info), 10);
        assert_eq!(info.full_len, 100);
        let mut local = (0u32, 0u16);
        assert_eq!(hs_local_endpoint(cable.a.stack, tx, &mut local.0, &mut local.1), 0);
        assert_eq!((info.addr, info.port), (ip("10.0.0.1"), local.1), "the sender's address");
        assert_eq!(hs_poll_socket(cable.b.stack, rx) & READABLE, 0, "consumed by recv only");
    }
}

#[test]
fn the_socket_budget_gives_enfile_and_comes_back_after_close() {
    let mut cable = Cable::new(&Limits { max_sockets: 4, ..Limits::default() });
    unsafe {
        let ids: Vec<i64> = (0..4).map(|i| hs_socket(cable.a.stack, i % 2 == 0)).collect();
        assert!(ids.iter().all(|&id| id > 0));
        assert_eq!(hs_socket(cable.a.stack, true), -i64::from(ENFILE));
        assert_eq!(hs_socket(cable.a.stack, false), -i64::from(ENFILE));
        assert_eq!(cable.a.stats().active_sockets, 4);
        assert_eq!(hs_close(cable.a.stack, ids[1] as u32), 0);
        assert!(hs_socket(cable.a.stack, false) > 0);
    }
    cable.settle();
}

#[test]
fn listen_preallocates_min_backlog_pool_and_fails_cleanly_when_it_cannot() {
    let mut cable = Cable::new(&Limits { max_sockets: 10, listen_pool_max: 3, ..Limits::default() });
    unsafe {
        let big = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_listen(cable.b.stack, big, 16), 0);
        assert_eq!(cable.b.stats().active_sockets, 3, "min(16, 3)");
        let small = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_listen(cable.b.stack, small, 1), 0);
        assert_eq!(cable.b.stats().active_sockets, 4);
        let third = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_bind(cable.b.stack, third, 0, 81), 0);
        for _ in 0..5 {
            assert!(hs_socket(cable.b.stack, false) > 0);
        }
        assert_eq!(cable.b.stats().active_sockets, 10);
        assert_eq!(hs_listen(cable.b.stack, third, 8), -ENFILE, "no room for the pool");
        assert_eq!(cable.b.stats().active_sockets, 10, "nothing leaked by the failed listen");
    }
    cable.settle();
}

#[test]
fn binding_a_port_twice_is_eaddrinuse_and_a_foreign_address_eaddrnotavail() {
    let mut cable = Cable::new(&Limits::default());
    unsafe {
        let first = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_bind(cable.b.stack, first, 0, 80), 0);
        let second = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_bind(cable.b.stack, second, 0, 80), -EADDRINUSE);
        assert_eq!(hs_bind(cable.b.stack, second, ip("10.9.9.9"), 80), -EADDRNOTAVAIL);
        assert_eq!(hs_bind(cable.b.stack, second, ip("10.0.0.2"), 0), 0, "own address, any port");
        let (mut addr, mut port) = (0u32, 0u16);
        assert_eq!(hs_local_endpoint(cable.b.stack, second, &mut addr, &mut port), 0);
        assert_eq!(addr, ip("10.0.0.2"));
        assert!(port >= 49152);
    }
    cable.settle();
}

#[test]
fn accepted_connections_are_replaced_in_the_pool_so_the_port_keeps_answering() {
    let mut cable = Cable::new(&Limits { listen_pool_max: 2, ..Limits::default() });
    let (listener, _, _) = connected_pair(&mut cable, 7004);
    unsafe {
        for round in 0..20 {
            let client = hs_socket(cable.a.stack, true) as u32;
            assert_eq!(hs_connect(cable.a.stack, client, ip("10.0.0.2"), 7004), -EINPROGRESS);
            cable.settle();
            let (mut a, mut p) = (0, 0);
            let server = hs_accept(cable.b.stack, listener, &mut a, &mut p);
            assert!(server > 0, "round {round}: {server}");
            assert_eq!(hs_close(cable.b.stack, server as u32), 0);
            assert_eq!(hs_close(cable.a.stack, client), 0);
            cable.settle();
        }
        assert_eq!(hs_accept(cable.b.stack, listener, &mut 0, &mut 0), -i64::from(EAGAIN));
    }
    // Listener pool (2) + the first pair's server; the clients' side keeps the first client only.
    assert_eq!(cable.b.stats().active_sockets, 3, "no handle leaked over 20 connections");
    assert_eq!(cable.a.stats().active_sockets, 1);
}

#[test]
fn the_link_local_address_comes_from_the_mac() {
    let cable = Cable::new(&Limits::default());
    let mut info = HsIpInfo::default();
    unsafe { hs_stack_ip_info(cable.a.stack, &mut info) };
    assert_eq!(info.has_ipv6_ll, 1);
    // 02:00:00:00:00:0a -> fe80::0000:00ff:fe00:000a (U/L bit flipped: 0x02 -> 0x00).
    let expected = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x0a];
    assert_eq!(info.ipv6_ll, expected);
    assert_eq!((info.ip, info.netmask), (ip("10.0.0.1"), ip("255.255.255.0")));
}

#[test]
fn a_frame_finding_no_free_slot_is_dropped_and_counted() {
    let cable = Cable::new(&Limits { pool_slots: 2, ..Limits::default() });
    assert!(cable.a.deliver(&[0u8; 60]));
    assert!(cable.a.deliver(&[0u8; 60]));
    assert!(!cable.a.deliver(&[0u8; 60]));
    let mut stats = hil_stack::pool::PoolStats::default();
    unsafe {
        hs_pool_stats(cable.a.pool, &mut stats);
        assert_eq!((stats.drops, stats.free, stats.queued), (1, 0, 2));
        hs_stack_poll(cable.a.stack, 0);
        hs_pool_stats(cable.a.pool, &mut stats);
    }
    assert_eq!((stats.free, stats.queued, stats.min_free), (2, 0, 0));
    assert_eq!(cable.a.stats().rx_frames, 2, "every frame the stack took is counted, even garbage");
}

#[test]
fn frames_queued_when_the_link_drops_are_rx_drops() {
    let cable = Cable::new(&Limits::default());
    assert!(cable.a.deliver(&[0u8; 60]));
    unsafe { hs_stack_set_link(cable.a.stack, false) };
    assert_eq!(cable.a.stats().rx_drops, 1);
    assert_eq!(cable.a.stats().rx_frames, 0);
}

#[test]
fn a_burst_of_connections_waits_in_the_backlog_and_a_full_backlog_drops_the_syn() {
    let mut cable = Cable::new(&Limits { listen_pool_max: 1, ..Limits::default() });
    unsafe {
        let listener = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_bind(cable.b.stack, listener, 0, 7005), 0);
        assert_eq!(hs_listen(cable.b.stack, listener, 4), 0);
        assert_eq!(cable.b.stats().active_sockets, 1, "one socket armed: min(backlog 4, pool 1)");
        // Four SYNs on the wire before the server accepts anything: all four connect.
        let clients: Vec<u32> = (0..4).map(|_| hs_socket(cable.a.stack, true) as u32).collect();
        for &client in &clients {
            assert_eq!(hs_connect(cable.a.stack, client, ip("10.0.0.2"), 7005), -EINPROGRESS);
        }
        cable.settle();
        let a = cable.a.stack;
        let state = |c: u32| hs_poll_socket(a, c);
        assert!(clients.iter().all(|&c| state(c) & (WRITABLE | ERROR) == WRITABLE), "the backlog (4) holds four");
        // A fifth while four established connections wait: dropped, not refused; the client retries.
        let fifth = hs_socket(cable.a.stack, true) as u32;
        assert_eq!(hs_connect(cable.a.stack, fifth, ip("10.0.0.2"), 7005), -EINPROGRESS);
        cable.settle();
        assert_eq!(state(fifth) & (WRITABLE | ERROR), 0, "still trying");
        assert_eq!(cable.b.stats().listen_drops, 1);
        for _ in 0..4 {
            assert!(hs_accept(cable.b.stack, listener, &mut 0, &mut 0) > 0);
        }
        cable.advance_ms(3000); // the fifth client's SYN retransmission
        assert_eq!(state(fifth) & (WRITABLE | ERROR), WRITABLE, "connected once the backlog had room");
        assert!(hs_accept(cable.b.stack, listener, &mut 0, &mut 0) > 0);
    }
}

/// A SYN to b:port from an address nobody answers ARP for: the connection stays half-open.
fn stray_syn(port: u16, source_port: u16) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::*;
    let (src, dst) = (Ipv4Address::new(10, 0, 0, 9), Ipv4Address::new(10, 0, 0, 2));
    let tcp = TcpRepr {
        src_port: source_port,
        dst_port: port,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut frame = vec![0u8; 14 + ip.buffer_len() + tcp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_src_addr(EthernetAddress([0x02, 0, 0, 0, 0, 0x99]));
    eth.set_dst_addr(EthernetAddress(common::B_MAC));
    eth.set_ethertype(EthernetProtocol::Ipv4);
    let checksums = ChecksumCapabilities::default();
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..34]), &checksums);
    tcp.emit(&mut TcpPacket::new_unchecked(&mut frame[34..]), &src.into(), &dst.into(), &checksums);
    frame
}

#[test]
fn a_syn_flood_cannot_lock_the_port_half_open_connections_make_room() {
    let mut cable = Cable::new(&Limits { listen_pool_max: 1, ..Limits::default() });
    unsafe {
        let listener = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_bind(cable.b.stack, listener, 0, 80), 0);
        assert_eq!(hs_listen(cable.b.stack, listener, 2), 0);
        for source_port in 1024..1224 {
            assert!(cable.b.deliver(&stray_syn(80, source_port)));
            hs_stack_poll(cable.b.stack, cable.now_us);
        }
        assert!(cable.b.stats().active_sockets <= 3, "the flood holds at most the backlog (2) and the armed socket");
        let client = hs_socket(cable.a.stack, true) as u32;
        assert_eq!(hs_connect(cable.a.stack, client, ip("10.0.0.2"), 80), -EINPROGRESS);
        // smoltcp resolves one neighbour per second for all addresses (SILENT_TIME): the unanswered ARP
        // requests for the flood's source hold back the SYN-ACK to the client for up to a second.
        cable.advance_ms(2500);
        assert_eq!(hs_poll_socket(cable.a.stack, client) & (WRITABLE | ERROR), WRITABLE, "the port still answers");
        assert!(hs_accept(cable.b.stack, listener, &mut 0, &mut 0) > 0);
    }
}

#[test]
fn a_syn_behind_a_handshake_in_progress_is_dropped_not_the_handshake_reset() {
    let mut cable = Cable::new(&Limits { listen_pool_max: 1, ..Limits::default() });
    unsafe {
        let listener = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_bind(cable.b.stack, listener, 0, 80), 0);
        assert_eq!(hs_listen(cable.b.stack, listener, 1), 0);
        // Both ends learn each other's MAC first (a refused connection), so the handshake below is 3 frames.
        let refused = hs_socket(cable.a.stack, true) as u32;
        assert_eq!(hs_connect(cable.a.stack, refused, ip("10.0.0.2"), 81), -EINPROGRESS);
        cable.settle();
        let client = hs_socket(cable.a.stack, true) as u32;
        assert_eq!(hs_connect(cable.a.stack, client, ip("10.0.0.2"), 80), -EINPROGRESS);
        hs_stack_poll(cable.a.stack, cable.now_us);
        for frame in cable.a.take_outbox() {
            assert!(cable.b.deliver(&frame));
        }
        hs_stack_poll(cable.b.stack, cable.now_us); // SYN-ACK out: the client's handshake is half-open
        assert!(cable.b.deliver(&stray_syn(80, 4000)));
        hs_stack_poll(cable.b.stack, cable.now_us);
        assert_eq!(cable.b.stats().listen_drops, 1, "the newcomer waits for its retransmission");
        cable.settle();
        assert_eq!(hs_poll_socket(cable.a.stack, client) & (WRITABLE | ERROR), WRITABLE, "not reset");
        assert!(hs_accept(cable.b.stack, listener, &mut 0, &mut 0) > 0);
    }
}

#[test]
fn a_full_tx_ring_holds_data_back_instead_of_losing_it() {
    let mut cable = Cable::new(&Limits::default());
    let (_, client, server) = connected_pair(&mut cable, 7006);
    cable.a.wire.ring_full.set(true);
    assert_eq!(send(cable.a.stack, client, &[7u8; 3000]), 3000);
    cable.settle();
    assert!(cable.a.take_outbox().is_empty(), "nothing leaves while the ring is full");
    cable.a.wire.ring_full.set(false);
    cable.settle();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let (n @ 1.., _) = recv(cable.b.stack, server, &mut buf) {
        got.extend_from_slice(&buf[..n as usize]);
    }
    assert_eq!(got, vec![7u8; 3000]);
    assert_eq!(cable.a.stats().tx_fails, 0, "held back, not failed");
}

#[test]
fn the_link_local_address_can_be_taken_away() {
    let cable = Cable::new(&Limits::default());
    let mut info = HsIpInfo::default();
    unsafe {
        hs_stack_set_ipv6_link_local(cable.a.stack, false);
        hs_stack_ip_info(cable.a.stack, &mut info);
        assert_eq!(info.has_ipv6_ll, 0);
        hs_stack_set_ipv6_link_local(cable.a.stack, true);
        hs_stack_ip_info(cable.a.stack, &mut info);
    }
    assert_eq!(info.has_ipv6_ll, 1);
}

thread_local! {
    static TAPPED: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

unsafe extern "C" fn collect(_ctx: *mut std::ffi::c_void, frame: *const u8, len: usize) {
    TAPPED.with(|t| t.borrow_mut().push(std::slice::from_raw_parts(frame, len).to_vec()));
}

#[test]
fn a_tapped_ethertype_goes_to_its_callback_before_smoltcp_and_l2_send_transmits() {
    let mut cable = Cable::new(&Limits::default());
    let null = std::ptr::null_mut();
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&common::A_MAC);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(b"HIL2 payload");
    unsafe {
        assert_eq!(hs_l2_tap(cable.b.stack, 0x88b5, Some(collect), null), 0);
        for ethertype in [0x9000, 0x9001, 0x9002] {
            assert_eq!(hs_l2_tap(cable.b.stack, ethertype, Some(collect), null), 0);
        }
        assert_eq!(hs_l2_tap(cable.b.stack, 0x9003, Some(collect), null), -ENOSPC, "four taps at most");
        cable.settle(); // what the stacks say by themselves after the link came up
        let before = cable.b.stats();
        assert!(cable.b.deliver(&frame));
        cable.settle();
        assert_eq!(TAPPED.with(|t| t.borrow().clone()), vec![frame.clone()]);
        let after = cable.b.stats();
        assert_eq!(after.rx_frames - before.rx_frames, 1, "a tapped frame counts as received");
        assert_eq!(hs_l2_send(cable.b.stack, frame.as_ptr(), frame.len()), 0);
        assert_eq!(cable.b.take_outbox(), vec![frame.clone()]);
        assert_eq!(cable.b.stats().tx_frames - after.tx_frames, 1);
        assert_eq!(hs_l2_send(cable.b.stack, frame.as_ptr(), 10), -EMSGSIZE, "shorter than a header");
        assert_eq!(hs_l2_tap(cable.b.stack, 0x88b5, None, null), 0);
        assert_eq!(hs_l2_tap(cable.b.stack, 0x88b5, None, null), -ENOENT);
    }
}
