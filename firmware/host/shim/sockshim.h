/*
 * The BSD-socket shim (esp_smoltcp_lwip_compat's job): unchanged socket code, linked with GNU ld
 * `--wrap=<call>` for every call in SHIM_WRAPPED_CALLS (shim/wrap.flags), runs on the smoltcp stack.
 *
 * AF_INET sockets get descriptors from a reserved range of the process's descriptor table
 * ([fd_base, fd_base + fd_count), held by /dev/null until used, so the kernel never hands them out);
 * every other descriptor passes through to the real call, and select()/poll() take mixed sets.
 * Each call is marshalled to the runtime's poll thread and blocks there until done, honouring
 * O_NONBLOCK, MSG_DONTWAIT, SO_RCVTIMEO and SO_SNDTIMEO.
 */
#ifndef HIL_SOCKSHIM_H
#define HIL_SOCKSHIM_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int fd_base;  /* first shim descriptor (the board: LWIP_SOCKET_OFFSET = 64 - 32) */
    int fd_count; /* CONFIG_LWIP_COMPAT_MAX_FDS */
} hil_shim_config_t;

void hil_shim_default_config(hil_shim_config_t *cfg);

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
