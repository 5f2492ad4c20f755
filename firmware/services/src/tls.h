/* TLS over the services' own sockets with mbedTLS (internal). The record layer talks to the socket
 * through send/recv functions compiled here (mbedtls_ssl_set_bio), never mbedtls_net_*: on the virtual
 * board the BSD-socket shim replaces socket calls at static link time, and a call made inside
 * libmbedtls would bypass it. */
#ifndef HIL_TLS_H
#define HIL_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

/* Whether hil_services_set_tls_credentials gave a server certificate / a CA. */
int hil_tls_server_ready(void);
int hil_tls_client_ready(void);

/* Server side of a handshake on c->fd (sets c->tls). 0, or -1 (c->tls stays NULL). */
int hil_tls_accept(hil_conn_t *c, uint32_t timeout_ms);
/* Client side: verifies the peer against the CA and host (a name, or an IPv4 literal matched against
 * the certificate's IP addresses). 0, or -1 with a reason in why. */
int hil_tls_connect(hil_conn_t *c, const char *host, uint32_t timeout_ms, char *why, size_t why_len);

int hil_tls_read(hil_tls_session_t *s, void *buf, size_t len, uint32_t timeout_ms);
int hil_tls_write_all(hil_tls_session_t *s, const void *buf, size_t len, uint32_t timeout_ms);
size_t hil_tls_buffered(const hil_tls_session_t *s);
/* The negotiated version, e.g. "TLSv1.2". */
const char *hil_tls_version(const hil_tls_session_t *s);
/* Send close_notify (when notify) and free the session; the socket stays open. */
void hil_tls_free(hil_tls_session_t *s, int notify);

#endif /* HIL_TLS_H */
