//! The published glue's calls (the shim's fault switches) do what the published glue does to smoltcp 0.12.

mod common;

use common::{connected_pair, ip, recv, state, Cable, Limits, READABLE};
use hil_stack::errno::*;
use hil_stack::*;

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
        assert_eq!(recv(cable.b.stack, rx, &mut [0; 64]).0, -i64::from(EAGAIN));
    }
}

#[test]
fn connected_stays_true_in_close_wait() {
    let mut cable = Cable::new(&Limits::default());
    let (_, client, server) = connected_pair(&mut cable, 7101);
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
    let (_, client, server) = connected_pair(&mut cable, 7102);
    let before = cable.b.stats().active_sockets;
    unsafe {
        assert_eq!(hs_glue_close(cable.b.stack, server), 0);
        assert_eq!(cable.b.stats().active_sockets, before - 1, "gone at once, nothing lingers");
        cable.settle();
        assert_eq!(state(cable.a.stack, client), "ESTABLISHED", "no FIN reached the peer");
        assert_eq!(recv(cable.a.stack, client, &mut [0; 64]).0, -i64::from(EAGAIN), "the peer sees no EOF");
        assert_eq!(hs_send(cable.a.stack, client, b"anyone?".as_ptr(), 7, false, 0, 0), 7);
        cable.settle();
        assert_eq!(recv(cable.a.stack, client, &mut [0; 64]).0, -i64::from(ECONNRESET), "what it sends next is reset");
    }
}
