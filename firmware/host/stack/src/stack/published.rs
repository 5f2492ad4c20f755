//! The published esp_smoltcp_glue's own socket calls, with the same smoltcp calls, for the shim's fault
//! switches (`HIL_FAULTS` `shim_*`, docs/faults.md): the virtual board reproduces the published shim's
//! defects through the very smoltcp behaviour that causes them. The healthy firmware never calls these.

use smoltcp::socket::{tcp, udp};

use super::{Sock, Stack};
use crate::errno::*;

impl Stack {
    /// `smoltcp_udp_recvfrom`: smoltcp's `recv_slice`. It dequeues the datagram before it checks the
    /// buffer's length, so a datagram longer than `buf` is gone when it reports `Truncated` (EMSGSIZE):
    /// the published select() probes readability this way with a zero-length buffer.
    pub fn glue_udp_recv_slice(&mut self, id: u32, buf: &mut [u8]) -> Result<usize, i32> {
        let Sock::Udp(u) = self.sock(id)? else { return Err(EOPNOTSUPP) };
        let handle = u.handle;
        match self.sockets.get_mut::<udp::Socket>(handle).recv_slice(buf) {
            Ok((copied, _)) => Ok(copied),
            Err(udp::RecvError::Exhausted) => Err(EAGAIN),
            Err(udp::RecvError::Truncated) => Err(EMSGSIZE),
        }
    }

    /// `smoltcp_tcp_is_connected`: `may_recv() || may_send()`, which stays true in CLOSE-WAIT (the peer
    /// has sent its FIN but we may still send), so the published shim never sees a peer's FIN.
    pub fn glue_tcp_is_connected(&mut self, id: u32) -> Result<bool, i32> {
        let (t, sockets) = self.tcp(id)?;
        let handle = t.handle.ok_or(EINVAL)?;
        let socket = sockets.get::<tcp::Socket>(handle);
        Ok(socket.may_recv() || socket.may_send())
    }

    /// `smoltcp_tcp_close` / `smoltcp_udp_close`: `close()`, then the socket is removed from the set at
    /// once, before a poll could send the FIN; the peer hears nothing (a reset if it sends more).
    pub fn glue_close(&mut self, id: u32) -> Result<(), i32> {
        self.sock(id)?;
        match self.table[id as usize - 1].take().ok_or(EBADF)? {
            Sock::Udp(u) => {
                self.sockets.get_mut::<udp::Socket>(u.handle).close();
                self.free_handle(u.handle);
            }
            Sock::Tcp(t) => {
                let handles = match t.listener {
                    Some(listener) => listener.pool,
                    None => t.handle.into_iter().collect(),
                };
                for handle in handles {
                    self.sockets.get_mut::<tcp::Socket>(handle).close();
                    self.free_handle(handle);
                }
            }
        }
        Ok(())
    }
}
