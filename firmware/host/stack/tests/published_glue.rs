//! The published glue's calls (the shim's fault switches) do what the published glue does to smoltcp 0.12.

mod common;

use common::{ip, Cable, Limits};
use hil_stack::errno::*;
use hil_stack::*;

const READABLE: i32 = 1;

fn state(stack: *mut HsStack, id: u32) -> String {
    let mut buf = [0u8; 32];
    assert_eq!(unsafe { hs_tcp_state(stack, id, buf.as_mut_ptr(), buf.len()) }, 0);
    String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap()]).into_owned()
}

fn recv(stack: *mut HsStack, id: u32) -> i64 {
    let mut buf = [0u8; 64];
    let mut info = HsRecvInfo::default();
    unsafe { hs_recv(stack, id, buf.as_mut_ptr(), buf.len(), false, &mut info) }
}

/// A listener on b:port and an accepted connection from a: (client, server).
fn connected_pair(cable: &mut Cable, port: u16) -> (u32, u32) {
    unsafe {
        let listener = hs_socket(cable.b.stack, true) as u32;
        assert_eq!(hs_bind(cable.b.stack, listener, 0, port), 0);
        assert_eq!(hs_listen(cable.b.stack, listener, 2), 0);
        let client = hs_socket(cable.a.stack, true) as u32;
        assert_eq!(hs_connect(cable.a.stack, client, ip("10.0.0.2"), port), -EINPROGRESS);
        cable.settle();
        let (mut addr, mut peer_port) = (0u32, 0u16);
        let server = hs_accept(cable.b.stack, listener, &mut addr, &mut peer_port);
        assert!(server > 0, "accept: {server}");
        (client, server as u32)
    }
}

#[test]
fn a_zero_length_recv_slice_dequeues_the_datagram_it_reports_truncated() {
    let mut cable = Cable::new(&Limits::default());
    unsafe {
        let rx = hs_socket(cable.b.stack, false) as u32;
        assert_eq!(hs_bind(cable.b.stack, rx, 0, 7100), 0);
        let mut probe = [0u8; 1];
        assert_eq!(hs_glue_udp_recv_slice(cable.b.stack, rx, probe.as_mut_ptr(), 0), -i64::from(EAGAIN));
        let tx = hs_socket(cable.a.stack, false) as u32;
        assert_eq!(hs_send(cable.a.stack, tx, b"datagram".as_ptr(), 8, true, ip("10.0.0.2"), 7100), 8);
        cable.settle();
        assert_eq!(hs_poll_socket(cable.b.stack, rx) & READABLE, READABLE);
        assert_eq!(hs_glue_udp_recv_slice(cable.b.stack, rx, probe.as_mut_ptr(), 0), -i64::from(EMSGSIZE));
        assert_eq!(hs_poll_socket(cable.b.stack, rx) & READABLE, 0, "the probe consumed the datagram");
        assert_eq!(recv(cable.b.stack, rx), -i64::from(EAGAIN));
    }
}

#[test]
fn connected_stays_true_in_close_wait() {
    let mut cable = Cable::new(&Limits::default());
    let (client, server) = connected_pair(&mut cable, 7101);
    unsafe {
        assert_eq!(hs_glue_tcp_is_connected(cable.b.stack, server), 1);
        assert_eq!(hs_close(cable.a.stack, client), 0);
        cable.settle();
        assert_eq!(state(cable.b.stack, server), "CLOSE-WAIT");
        assert_eq!(hs_poll_socket(cable.b.stack, server) & READABLE, READABLE, "the FIN is readable");
        assert_eq!(hs_glue_tcp_is_connected(cable.b.stack, server), 1, "may_send() in CLOSE-WAIT");
        assert_eq!(hs_close(cable.b.stack, server), 0);
        assert_eq!(hs_glue_tcp_is_connected(cable.b.stack, server), -EBADF);
    }
}

#[test]
fn glue_close_removes_the_socket_before_its_fin_leaves() {
    let mut cable = Cable::new(&Limits::default());
    let (client, server) = connected_pair(&mut cable, 7102);
    let before = cable.b.stats().active_sockets;
    unsafe {
        assert_eq!(hs_glue_close(cable.b.stack, server), 0);
        assert_eq!(cable.b.stats().active_sockets, before - 1, "gone at once, nothing lingers");
        cable.settle();
        assert_eq!(state(cable.a.stack, client), "ESTABLISHED", "no FIN reached the peer");
        assert_eq!(recv(cable.a.stack, client), -i64::from(EAGAIN), "the peer sees no EOF");
        assert_eq!(hs_send(cable.a.stack, client, b"anyone?".as_ptr(), 7, false, 0, 0), 7);
        cable.settle();
        assert_eq!(recv(cable.a.stack, client), -i64::from(ECONNRESET), "what it sends next is reset");
    }
}
