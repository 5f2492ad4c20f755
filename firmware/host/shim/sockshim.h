/*
 * The BSD-socket shim (esp_smoltcp_lwip_compat's job): unchanged socket code, linked with GNU ld
 * `--wrap=<call>` for every call in SHIM_WRAPPED_CALLS (shim/wrap.flags), runs on the smoltcp stack.
 *
 * AF_INET sockets get descriptors from a reserved range of the process's descriptor table
 * ([fd_base, fd_base + fd_count), held by /dev/null until used, so the kernel never hands them out);
 * every other descriptor passes through to the real call, and select()/poll() take mixed sets. A UDP
 * socket bound to 127.x uses the in-RAM loopback (loopback.h), which sendto() a 127.x address reaches.
 * Each call is marshalled to the runtime's poll thread and blocks there until done, honouring
 * O_NONBLOCK, MSG_DONTWAIT, SO_RCVTIMEO and SO_SNDTIMEO.
 */
#ifndef HIL_SOCKSHIM_H
#define HIL_SOCKSHIM_H

#ifdef __cplusplus
extern "C" {
#endif

/* Faults of the virtual board's catalogue that live here (docs/faults.md): each switches on one defect of
 * the published esp_smoltcp_lwip_compat, reproduced through the published glue's own smoltcp calls. */
#define HIL_SHIM_FAULT_UDP_SELECT_CONSUMES 0x1u /* shim_udp_select_consumes: zero-length recvfrom probe */
#define HIL_SHIM_FAULT_FIN_NOT_READABLE 0x2u    /* shim_fin_not_readable: "connected" in CLOSE-WAIT */
#define HIL_SHIM_FAULT_CLOSE_WITHOUT_FIN 0x4u   /* shim_close_without_fin: close/shutdown remove the socket */
#define HIL_SHIM_FAULT_LOOPBACK_RECV_IGNORED 0x8u  /* shim_loopback_recv_ignored: recv() reads smoltcp */
#define HIL_SHIM_FAULT_LOOPBACK_PORT0_REFUSED 0x10u /* shim_loopback_port0_refused: bind(127.0.0.1:0) */

typedef struct {
    int fd_base;     /* first shim descriptor (the board: LWIP_SOCKET_OFFSET = 64 - 32) */
    int fd_count;    /* CONFIG_LWIP_COMPAT_MAX_FDS */
    unsigned faults; /* HIL_SHIM_FAULT_* bits, all off on a healthy board */
} hil_shim_config_t;

/* The board's values; faults from the HIL_FAULTS environment variable (hil_shim_parse_faults). */
void hil_shim_default_config(hil_shim_config_t *cfg);

/* The HIL_SHIM_FAULT_* bits named in a comma-separated fault list (NULL: none); other names belong to
 * other parts of the firmware and are ignored. */
unsigned hil_shim_parse_faults(const char *list);

/* Reserve the descriptor range; call once after hil_net_start, before any socket call.
 * Returns 0, or -1 (logged) when a descriptor of the range is already open. */
int hil_shim_init(const hil_shim_config_t *cfg);

typedef struct {
    int fd_base, fd_count, fds_used;
} hil_shim_stats_t;

void hil_shim_stats(hil_shim_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HIL_SOCKSHIM_H */
