/* One TCP connection, plain or TLS, with timeouts done by select() (internal). The services read and
 * write through this so the HTTP server, the MQTT client and `tls get` are written once for both. */
#ifndef HIL_CONN_H
#define HIL_CONN_H

#include <stddef.h>
#include <stdint.h>

#define HIL_CONN_TIMEOUT (-2)

typedef struct hil_tls_session hil_tls_session_t;

typedef struct {
    int fd;
    hil_tls_session_t *tls; /* NULL on a plain connection */
} hil_conn_t;

/* Read up to len bytes: > 0 bytes read, 0 the peer closed, HIL_CONN_TIMEOUT nothing arrived within
 * timeout_ms, -1 error. */
int hil_conn_read(hil_conn_t *c, void *buf, size_t len, uint32_t timeout_ms);
/* Read exactly len bytes within timeout_ms in total: 0, or what hil_conn_read failed with. */
int hil_conn_read_exact(hil_conn_t *c, void *buf, size_t len, uint32_t timeout_ms);
/* Write everything; timeout_ms bounds each wait for room. 0, or -1 (error or timeout). */
int hil_conn_write_all(hil_conn_t *c, const void *buf, size_t len, uint32_t timeout_ms);
/* Bytes that can be read without waiting (TLS records already decrypted). */
size_t hil_conn_buffered(const hil_conn_t *c);
/* Close politely: TLS close_notify, FIN, then read and drop what the peer still sends until it closes
 * or linger_ms pass, so unread request bytes do not turn our close into a reset. Frees the TLS state. */
void hil_conn_close(hil_conn_t *c, uint32_t linger_ms);
/* Wake a thread blocked on the connection from another thread (its next read sees the peer closed). */
void hil_conn_interrupt(int fd);

#endif /* HIL_CONN_H */
