/*
 * The shim's in-RAM 127.0.0.0/8 loopback for UDP (esp_smoltcp_lwip_compat's loopback.c): smoltcp has no
 * loopback interface, and esp_http_server talks to itself through a UDP control socket bound to 127.0.0.1.
 * A UDP socket bound to a 127.x address gets a binding here instead of a smoltcp port; sendto() a 127.x
 * address queues the datagram on the binding of its port. A binding is known by its port, so a call racing a
 * close() finds nothing (-EBADF) instead of freed memory. Everything runs on the runtime's poll thread (the
 * shim marshals each call there), so nothing here needs a lock and a finished call wakes the waiters.
 */
#ifndef HIL_SHIM_LOOPBACK_H
#define HIL_SHIM_LOOPBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hil_stack.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether an IPv4 address (network byte order) is in 127.0.0.0/8. */
bool hil_lo_is_loopback(uint32_t ip);

/* Bind `port` (0: a free one from 49152 up). Returns the bound port, -EADDRINUSE or -ENOMEM. */
int hil_lo_bind(uint16_t port);
/* Unbind and drop what is queued. */
void hil_lo_close(uint16_t port);

/* Queue a datagram from 127.0.0.1:src_port for the binding of dst_port. UDP semantics: a datagram for a
 * port nobody bound, or for a full queue, is dropped and the send still succeeds. Returns len or -ENOMEM. */
int64_t hil_lo_send(uint16_t dst_port, uint16_t src_port, const uint8_t *data, size_t len);

/* The next datagram of the binding of `port`: bytes copied (truncated to len, info->full_len its size),
 * -EAGAIN when none waits, -EBADF when nothing is bound there. */
int64_t hil_lo_recv(uint16_t port, uint8_t *buf, size_t len, bool peek, hs_recv_info_t *info);
/* 1 when a datagram waits, 0 when none, -EBADF when nothing is bound there. */
int hil_lo_readable(uint16_t port);
/* The next datagram's size (0 also when none waits), -EBADF when nothing is bound there. */
int64_t hil_lo_next_len(uint16_t port);

#ifdef __cplusplus
}
#endif

#endif /* HIL_SHIM_LOOPBACK_H */
