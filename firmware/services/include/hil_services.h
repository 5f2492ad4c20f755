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

/* Limits: small on the board, roomier on the host. Override with -D at build time. */
#ifndef HIL_SELECT_ECHO_MAX_CLIENTS
#ifdef ESP_PLATFORM
#define HIL_SELECT_ECHO_MAX_CLIENTS 24
#else
#define HIL_SELECT_ECHO_MAX_CLIENTS 128
#endif
#endif
#ifndef HIL_SELECT_ECHO_MAX_UDP
#define HIL_SELECT_ECHO_MAX_UDP 8
#endif
#ifndef HIL_ECHO_BUF_BYTES
#ifdef ESP_PLATFORM
#define HIL_ECHO_BUF_BYTES 1460
#else
#define HIL_ECHO_BUF_BYTES 4096
#endif
#endif
#ifndef HIL_TCP_ECHO_MAX_CONN
#define HIL_TCP_ECHO_MAX_CONN 4
#endif
#ifndef HIL_IPERF3_BUF_BYTES
#ifdef ESP_PLATFORM
#define HIL_IPERF3_BUF_BYTES 8192
#else
#define HIL_IPERF3_BUF_BYTES 131072
#endif
#endif
#ifndef HIL_IPERF3_MAX_STREAMS
#define HIL_IPERF3_MAX_STREAMS 8
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

/* TCP echo: up to HIL_TCP_ECHO_MAX_CONN clients at once, one thread each. */
int hil_tcp_echo_run(uint16_t port);
/* UDP echo: every datagram goes back to its sender. */
int hil_udp_echo_run(uint16_t port);

#ifdef __cplusplus
}
#endif

#endif /* HIL_SERVICES_H */
