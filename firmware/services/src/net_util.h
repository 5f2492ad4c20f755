/* Socket helpers shared by the services (internal). Plain BSD sockets + select() only. */
#ifndef HIL_NET_UTIL_H
#define HIL_NET_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define HIL_SVC_TAG "hil_svc"

/* A TCP socket listening on INADDR_ANY:port; *bound_port gets the actual port. -1 on failure. */
int hil_net_listen_tcp(uint16_t port, int backlog, uint16_t *bound_port);
/* A UDP socket bound to INADDR_ANY:port; *bound_port gets the actual port. -1 on failure. */
int hil_net_bind_udp(uint16_t port, uint16_t *bound_port);
/* Best effort: a stack without O_NONBLOCK still works because the services only call
 * recv/send/accept after select() reported the socket ready. Returns 0 or -1. */
int hil_net_set_nonblocking(int fd);
/* Send everything, waiting (select) up to timeout_ms in total for room. 0 on success, -1 on error. */
int hil_net_send_all(int fd, const void *data, size_t len, uint32_t timeout_ms);
/* Receive exactly len bytes, waiting (select) up to timeout_ms in total.
 * Returns 0 on success, -1 on error or timeout, -2 when the peer closed first. */
int hil_net_recv_exact(int fd, void *data, size_t len, uint32_t timeout_ms);
/* Wait until fd is readable (writable): 1 ready, 0 timeout, -1 error. */
int hil_net_wait_readable(int fd, uint32_t timeout_ms);
int hil_net_wait_writable(int fd, uint32_t timeout_ms);
/* A TCP connection to host:port (an IPv4 literal, or a name getaddrinfo resolves) within timeout_ms,
 * left non-blocking when the stack allows. Returns the socket, or -1 with the reason in why. */
int hil_net_connect_tcp(const char *host, uint16_t port, uint32_t timeout_ms, char *why, size_t why_len);
/* True for errno values that mean "try again later" on a non-blocking socket. */
int hil_net_would_block(int err);
void hil_net_close(int fd);

/* Report bound ports through the hook set by hil_services_set_ready_hook (if any). */
void hil_services_notify_ready(const char *service, const uint16_t *tcp_ports, int n_tcp, const uint16_t *udp_ports,
                               int n_udp);

#endif /* HIL_NET_UTIL_H */
