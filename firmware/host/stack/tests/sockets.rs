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
