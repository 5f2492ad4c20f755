/*
 * Portable network services of the HIL test firmware. The same code runs on the board (ESP-IDF,
 * BSD sockets through esp_smoltcp_lwip_compat) and in the virtual lab (Linux).
 * Every *_run function binds its sockets, reports them through the ready hook and then serves
 * forever; it returns -1 only when setup fails (the cause is logged with tag "hil_svc").
 */
#ifndef HIL_SERVICES_H
#define HIL_SERVICES_H

#include <stddef.h>
#include <stdint.h>

#include "hil_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default ports (firmware/PROTOCOL.md). */
#define HIL_PORT_TCP_ECHO 7
#define HIL_PORT_UDP_ECHO 7
#define HIL_PORT_SELECT_ECHO_TCP 7000
#define HIL_PORT_SELECT_ECHO_UDP_BASE 7001
#define HIL_SELECT_ECHO_UDP_COUNT 4
#define HIL_PORT_IPERF3 5201

/* Limits: small on the board, roomier on the host. Override one with -D at build time, or all at once
 * with -DHIL_BOARD_SIZES for a host build that must fit the board's memory (the native virtual firmware). */
#if defined(ESP_PLATFORM) || defined(HIL_BOARD_SIZES)
#define HIL_SIZES_OF_THE_BOARD 1
#endif
#ifndef HIL_SELECT_ECHO_MAX_CLIENTS
#ifdef HIL_SIZES_OF_THE_BOARD
#define HIL_SELECT_ECHO_MAX_CLIENTS 24
#else
#define HIL_SELECT_ECHO_MAX_CLIENTS 128
#endif
#endif
#ifndef HIL_SELECT_ECHO_MAX_UDP
#define HIL_SELECT_ECHO_MAX_UDP 8
#endif
#ifndef HIL_ECHO_BUF_BYTES
#ifdef HIL_SIZES_OF_THE_BOARD
#define HIL_ECHO_BUF_BYTES 1460
#else
#define HIL_ECHO_BUF_BYTES 4096
#endif
#endif
#ifndef HIL_TCP_ECHO_MAX_CONN
#define HIL_TCP_ECHO_MAX_CONN 4
#endif
#ifndef HIL_IPERF3_BUF_BYTES
#ifdef HIL_SIZES_OF_THE_BOARD
#define HIL_IPERF3_BUF_BYTES 8192
#else
#define HIL_IPERF3_BUF_BYTES 131072
#endif
#endif
#ifndef HIL_IPERF3_MAX_STREAMS
#define HIL_IPERF3_MAX_STREAMS 8
#endif
/* Connections one HTTP(S) server serves at once (esp_http_server's max_open_sockets); when all are
 * busy the least recently active idle keep-alive connection is closed for a new one. */
#ifndef HIL_HTTP_MAX_CONN
#ifdef HIL_SIZES_OF_THE_BOARD
#define HIL_HTTP_MAX_CONN 4
#else
#define HIL_HTTP_MAX_CONN 16
#endif
#endif
/* listen() backlog of each HTTP(S) server (esp_http_server's backlog_conn; the esp-smoltcp shim
 * pre-allocates min(backlog, 8) sockets of ~64 KiB per listener). */
#ifndef HIL_HTTP_BACKLOG
#ifdef HIL_SIZES_OF_THE_BOARD
#define HIL_HTTP_BACKLOG 2
#else
#define HIL_HTTP_BACKLOG 8
#endif
#endif
/* Per-connection buffer of the HTTP server: request heads, upload bodies, WebSocket messages (at
 * least 16 KiB + 14, PROTOCOL.md's largest WebSocket message plus its header). */
#ifndef HIL_HTTP_IO_BYTES
#ifdef HIL_SIZES_OF_THE_BOARD
#define HIL_HTTP_IO_BYTES (16384 + 16)
#else
#define HIL_HTTP_IO_BYTES 65536
#endif
#endif
/* Largest request head (request line and headers); a larger one is answered 431. */
#ifndef HIL_HTTP_MAX_HEAD
#define HIL_HTTP_MAX_HEAD 2048
#endif
/* Largest MQTT message echoed whole (PROTOCOL.md: 64 KiB payloads), plus room for its headers. */
#ifndef HIL_MQTT_BUF_BYTES
#define HIL_MQTT_BUF_BYTES (64 * 1024 + 512)
#endif

/* Called by a service once all its sockets are bound and listening, with the actual ports
 * (useful when port 0 asked the system for a free one). */
typedef void (*hil_ready_fn)(const char *service, const uint16_t *tcp_ports, int n_tcp, const uint16_t *udp_ports,
                             int n_udp, void *arg);
void hil_services_set_ready_hook(hil_ready_fn fn, void *arg);

/* iperf3 server (TCP both directions, -P, -R, --bidir; UDP both directions); one test at a time,
 * further clients get ACCESS_DENIED like the real server. */
int hil_iperf3_server_run(uint16_t port);

typedef struct {
    uint32_t tests_done;     /* tests that reached IPERF_DONE */
    uint32_t tests_failed;   /* tests aborted (client vanished, protocol error, timeout) */
    uint32_t access_denied;  /* control connections refused while busy */
} hil_iperf3_stats_t;
void hil_iperf3_get_stats(hil_iperf3_stats_t *out);

/* select() echo service: one thread, one select() loop over the TCP listener, its clients and
 * udp_count UDP sockets on udp_port_base, udp_port_base+1, ... (all 0: system-chosen ports). */
int hil_select_echo_run(uint16_t tcp_port, uint16_t udp_port_base, int udp_count);

/* Misbehaviours the virtual board can be started with (its fault catalogue), to prove the scenarios catch
 * them. All off by default; the board's firmware never sets them. */
typedef struct {
    int slot_leak_after;    /* > 0: only this many client slots, and a closed client's slot is never reused
                               (the historical handle-map exhaustion; fault socket_slot_leak) */
    int udp_never_readable; /* select() results never show the UDP sockets readable (fault udp_never_readable) */
} hil_select_echo_faults_t;
/* Call before hil_select_echo_run. */
void hil_select_echo_set_faults(const hil_select_echo_faults_t *faults);

typedef struct {
    uint32_t open_tcp_clients; /* TCP clients connected now */
    uint32_t udp_sockets;      /* UDP sockets in the loop */
    uint32_t accepted;         /* TCP connections accepted since start */
    uint32_t closed;           /* TCP connections closed since start */
    uint32_t rejected;         /* accepted then closed at once: client table full */
    uint64_t tcp_echoed_bytes; /* bytes echoed back on TCP */
    uint64_t udp_echoed_bytes; /* bytes echoed back on UDP */
    uint32_t udp_datagrams;    /* datagrams echoed */
    int32_t max_fd;            /* highest file descriptor the loop has used */
    uint32_t select_calls;     /* iterations of the loop */
    uint32_t errors;           /* failed socket calls other than a peer closing */
} hil_select_echo_stats_t;
void hil_select_echo_get_stats(hil_select_echo_stats_t *out);
/* The stats as JSON object members (no braces), e.g. for the `sockets` console command.
 * Returns the length written, or -1 when buf is too small. */
int hil_select_echo_format_stats(char *buf, size_t len, const hil_select_echo_stats_t *s);

/* ---- what the program around the services supplies ------------------------------------------- */

/* The board's MAC address: it names the MQTT client (hil-<mac12>) and its topics (hil/<mac12>/in). */
void hil_services_set_mac(const uint8_t mac[6]);

/* Fills the HIL_STATS counters for GET /stats (the board: esp_smoltcp_get_stats; the virtual board:
 * the smoltcp runtime or the kernel). Returns 0, or -1 when it cannot (then /stats answers 503). */
typedef int (*hil_stats_fn)(hil_stats_t *out, void *arg);
void hil_services_set_stats_provider(hil_stats_fn fn, void *arg);

/* Asynchronous events of the services, as HIL_EVENT members without braces and without "proto"
 * (e.g. "event":"mqtt","iface":"eth","state":"disconnected","uri":"mqtt://..."). Called from the
 * service's own thread: the program prints them as it prints its own events. */
typedef void (*hil_event_fn)(const char *members, void *arg);
void hil_services_set_event_hook(hil_event_fn fn, void *arg);

/* TLS material as NUL-terminated PEM, parsed at once (the strings may be freed afterwards): the CA
 * that `tls get` and mqtts:// trust, and the HTTPS server's certificate and key (any may be NULL when
 * unused). Call once, before the HTTPS server or a TLS client starts. Returns 0, or -1 when a PEM does
 * not parse (logged). */
typedef struct {
    const char *ca_pem;
    const char *server_cert_pem;
    const char *server_key_pem;
} hil_tls_credentials_t;
int hil_services_set_tls_credentials(const hil_tls_credentials_t *credentials);

/* Misbehaviours of the virtual board's fault catalogue that live in these services (all off by
 * default; the board's firmware never sets them). A crash goes through the crash hook, which prints
 * what the chip prints and resets; without a hook the process aborts. */
typedef struct {
    uint32_t http_leak_bytes_per_connection; /* heap_leak_per_connection: allocated, written, never freed */
    uint32_t http_crash_on_connection;       /* panic_on_nth_connection: the nth accepted connection panics */
    int http_crash_on_malformed;             /* httpd_malformed_crash: a malformed request panics */
    int mqtt_no_reconnect;                   /* no_mqtt_reconnect: the MQTT client gives up after a drop */
    int mcast_deaf;                          /* mcast_deaf: `mcast join` answers ok and joins nothing */
    int l2_tap_deaf;                         /* l2_tap_deaf: the L2 taps count frames and never echo */
} hil_services_faults_t;
void hil_services_set_faults(const hil_services_faults_t *faults);
typedef void (*hil_crash_fn)(const char *kind, const char *task, void *arg);
void hil_services_set_crash_hook(hil_crash_fn fn, void *arg);

/* ---- HTTP and HTTPS (PROTOCOL.md "HTTP endpoints") --------------------------------------------- */

/* GET /dl/<n> (?chunked=1), POST /ul, GET /stats, GET /ws (WebSocket echo), 404 otherwise; keep-alive,
 * up to HIL_HTTP_MAX_CONN connections at once, one thread each. */
int hil_http_server_run(uint16_t port);
/* The same over TLS 1.2/1.3 (hil_services_set_tls_credentials with a server certificate first). */
int hil_https_server_run(uint16_t port);

typedef struct {
    uint32_t open_connections; /* connections being served now (both servers) */
    uint32_t accepted;         /* connections accepted since start */
    uint32_t purged;           /* idle keep-alive connections closed to make room for a new one */
    uint32_t tls_failures;     /* TLS handshakes that failed */
    uint32_t requests;         /* requests answered (any status) */
    uint32_t bad_requests;     /* requests answered with 4xx/5xx other than 404 */
    uint32_t ws_messages;      /* WebSocket frames echoed */
} hil_http_stats_t;
void hil_http_get_stats(hil_http_stats_t *out);

/* ---- clients and checks behind console commands ---------------------------------------------- */

/* `tls get <url>`: GET an https:// URL, verifying the server against the CA and the URL's host, and
 * count the body. Returns 0 with status/bytes/duration, or -1 with error set to the esp_http_client
 * name of the failure (ESP_ERR_INVALID_ARG, ESP_ERR_HTTP_CONNECT, ESP_ERR_HTTP_FETCH_HEADER, ...). */
typedef struct {
    int status;
    uint64_t bytes;
    uint32_t duration_ms;
    const char *error;
} hil_tls_get_result_t;
int hil_tls_get(const char *url, hil_tls_get_result_t *result);

/* `loopback [recvfrom|recv|ephemeral]`: 16 UDP datagrams from an unbound socket (sendto) to a socket
 * bound to 127.0.0.1, each read back within 1 s (PROTOCOL.md): bound to HIL_LOOPBACK_PORT and read with
 * recvfrom(), or with recv() (as esp_http_server reads its control socket), or bound to port 0 and
 * read with recvfrom(). Returns 0 when every datagram came back unchanged; -1 otherwise, with error set. */
#define HIL_LOOPBACK_PORT 32790
typedef enum { HIL_LOOPBACK_RECVFROM, HIL_LOOPBACK_RECV, HIL_LOOPBACK_EPHEMERAL } hil_loopback_mode_t;
typedef struct {
    int sent;
    int received;
    int altered;
    uint16_t port; /* the receiving socket's port (0 when it could not be bound) */
    uint64_t bytes;
    uint64_t duration_us;
    char error[64];
} hil_loopback_result_t;
int hil_loopback_check(hil_loopback_mode_t mode, hil_loopback_result_t *result);

/* Multicast echo on port: datagrams to the port (a joined group or the unicast address) go back by
 * unicast to their sender. hil_mcast_membership joins/leaves an IPv4 group on its socket (IGMP):
 * 0, or -1 (not running, or the stack refused). */
int hil_mcast_echo_run(uint16_t port);
int hil_mcast_membership(const char *group, int join);
/* The port the multicast echo is bound to, 0 while it is not running. */
uint16_t hil_mcast_echo_port(void);

/* The MQTT echo client: connects to mqtt:// or mqtts:// (verified against the CA), waits up to 10 s
 * for the CONNACK, subscribes to hil/<mac12>/in (QoS 1) and republishes every message to
 * hil/<mac12>/out with its payload and QoS; reconnects by itself after a drop, reporting state
 * changes as "mqtt" events. */
typedef struct {
    char topic_in[32];
    char topic_out[32];
    uint32_t connect_ms;
    char error[96]; /* "already connected", "timeout", "connect failed: <reason>" */
} hil_mqtt_connect_result_t;
int hil_mqtt_connect(const char *uri, hil_mqtt_connect_result_t *result);
/* Returns 0, or -1 when not connected. */
int hil_mqtt_disconnect(void);

typedef struct {
    uint32_t connects;      /* sessions established (CONNACK accepted) */
    uint32_t received;      /* PUBLISH packets from the broker */
    uint32_t echoed;        /* messages republished */
    uint32_t too_large;     /* messages over HIL_MQTT_BUF_BYTES, not echoed */
} hil_mqtt_stats_t;
void hil_mqtt_get_stats(hil_mqtt_stats_t *out);

/* ---- L2 echo (PROTOCOL.md "L2 echo") ----------------------------------------------------------- */

/* The stack's L2 tap, supplied by the program: `tap` registers (callback non-NULL) or clears the tap of
 * one EtherType and returns 0, or -1 when no slot is free / the tap is not there; the callback gets
 * every received frame of that EtherType on the stack's receive path (copy it, do not block). `send`
 * transmits one raw frame: 0, or -1. */
typedef void (*hil_l2_rx_fn)(void *arg, const uint8_t *frame, size_t len);
typedef struct {
    int (*tap)(uint16_t ethertype, hil_l2_rx_fn callback, void *arg, void *ctx);
    int (*send)(const uint8_t *frame, size_t len, void *ctx);
    void *ctx;
} hil_l2_driver_t;
void hil_services_set_l2_driver(const hil_l2_driver_t *driver);

/* The echo task and the tap of `ethertype` (on from boot). Returns 0, or -1 (no driver, no memory). */
int hil_l2_echo_start(uint16_t ethertype);
/* `l2tap on|off`: at most HIL_L2_TAPS EtherTypes. on: 0, -1 no free slot. off: 0 with the tap's
 * counters, -1 when it is not on. Frames are echoed from the task, at most HIL_L2_QUEUE waiting. */
#define HIL_L2_TAPS 4
#define HIL_L2_QUEUE 8
typedef struct {
    uint32_t rx;      /* frames the tap received */
    uint32_t echoed;  /* echoes sent */
    uint32_t dropped; /* malformed requests, a full queue, failed sends */
} hil_l2_counters_t;
int hil_l2_tap_on(uint16_t ethertype);
int hil_l2_tap_off(uint16_t ethertype, hil_l2_counters_t *out);

/* The console commands of these services (`mqtt`, `tls`, `mcast`, `loopback`; PROTOCOL.md): argv as
 * hil_proto_split_args gives it. Writes the HIL_RESULT members (without braces and "proto", starting
 * with "cmd" and "ok") to out and returns 1; returns 0 for another command word (out untouched). */
int hil_services_command(int argc, char **argv, char *out, size_t out_len);

/* TCP echo: up to HIL_TCP_ECHO_MAX_CONN clients at once, one thread each. */
int hil_tcp_echo_run(uint16_t port);
/* UDP echo: every datagram goes back to its sender. */
int hil_udp_echo_run(uint16_t port);

#ifdef __cplusplus
}
#endif

#endif /* HIL_SERVICES_H */
