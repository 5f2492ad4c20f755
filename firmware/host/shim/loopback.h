/*
 * The shim's in-RAM 127.0.0.0/8 loopback for UDP (esp_smoltcp_lwip_compat's, the path esp_http_server's
 * control socket takes): a UDP descriptor bound to a 127.x.x.x address gets its datagrams from a queue in
 * RAM, filled by sendto() to 127.x.x.x from any UDP descriptor of the shim. smoltcp never sees these.
 * Descriptors are the shim's (hil_loop_init with its range); every call is thread-safe.
 */
#ifndef HIL_SHIM_LOOPBACK_H
#define HIL_SHIM_LOOPBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int hil_loop_init(int fd_base, int fd_count);
bool hil_loop_addr(uint32_t ip_be); /* 127.0.0.0/8 */
/* bind(127.x.x.x:port); port 0 picks a free one. 0, -EADDRINUSE, -EINVAL (already bound). */
int hil_loop_bind(int fd, uint16_t port);
/* The loopback port of fd, 0 when it is not bound to the loopback. */
uint16_t hil_loop_port(int fd);
/* sendto(127.x.x.x:to_port) from fd (bound to a loopback port now if it was not). The datagram's length,
 * or -ECONNREFUSED (nobody bound there: Linux drops it silently, so does the caller), -EMSGSIZE. */
int64_t hil_loop_send(int fd, uint16_t to_port, const void *buf, size_t len);
/* The next datagram for fd: its bytes copied (truncated to len), its full length and source port;
 * -EAGAIN when none waits. peek leaves it queued. */
int64_t hil_loop_recv(int fd, void *buf, size_t len, bool peek, size_t *full_len, uint16_t *from_port);
bool hil_loop_readable(int fd);
void hil_loop_close(int fd);

#endif /* HIL_SHIM_LOOPBACK_H */
