/* The BSD-socket shim: see sockshim.h. */
#define _GNU_SOURCE
#include "sockshim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hil_platform.h"
#include "hil_stack.h"
#include "loopback.h"
#include "netstack.h"

#define TAG "sock_shim"

/* The real calls (GNU ld --wrap). */
int __real_socket(int domain, int type, int protocol);
int __real_bind(int fd, const struct sockaddr *addr, socklen_t len);
int __real_listen(int fd, int backlog);
int __real_accept(int fd, struct sockaddr *addr, socklen_t *len);
int __real_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int __real_connect(int fd, const struct sockaddr *addr, socklen_t len);
ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __real_recv(int fd, void *buf, size_t len, int flags);
ssize_t __real_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen);
ssize_t __real_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen);
ssize_t __real_read(int fd, void *buf, size_t len);
ssize_t __real_write(int fd, const void *buf, size_t len);
int __real_close(int fd);
int __real_shutdown(int fd, int how);
int __real_select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *timeout);
int __real_poll(struct pollfd *fds, nfds_t n, int timeout_ms);
int __real_setsockopt(int fd, int level, int name, const void *value, socklen_t len);
int __real_getsockopt(int fd, int level, int name, void *value, socklen_t *len);
int __real_getsockname(int fd, struct sockaddr *addr, socklen_t *len);
int __real_getpeername(int fd, struct sockaddr *addr, socklen_t *len);
int __real_fcntl(int fd, int cmd, ...);
int __real_ioctl(int fd, unsigned long request, ...);
int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res);
void __real_freeaddrinfo(struct addrinfo *res);

/* The published shim's receive timeout when SO_RCVTIMEO is not set (fault shim_loopback_recv_ignored). */
#define PUBLISHED_RECV_TIMEOUT_US 30000000

/* A descriptor whose stack socket is gone (fault shim_close_without_fin's shutdown): stack ids are > 0. */
#define NO_STACK_SOCKET 0u

typedef struct {
    bool used;
    bool tcp;
    bool nonblock;
    bool reuseaddr;
    uint32_t id;
    int64_t rcvtimeo_us; /* 0: wait forever */
    int64_t sndtimeo_us;
} shim_fd_t;

static struct {
    hil_shim_config_t cfg;
    shim_fd_t *fds;
    pthread_mutex_t lock;
} shim = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The catalogue's names of the shim's faults (harness/boards/virtual/faults.py). */
static const struct {
    const char *name;
    unsigned bit;
} FAULT_NAMES[] = {
    {"shim_udp_select_consumes", HIL_SHIM_FAULT_UDP_SELECT_CONSUMES},
    {"shim_fin_not_readable", HIL_SHIM_FAULT_FIN_NOT_READABLE},
    {"shim_close_without_fin", HIL_SHIM_FAULT_CLOSE_WITHOUT_FIN},
    {"shim_loopback_recv_ignored", HIL_SHIM_FAULT_LOOPBACK_RECV_IGNORED},
    {"shim_loopback_port0_refused", HIL_SHIM_FAULT_LOOPBACK_PORT0_REFUSED},
};

unsigned hil_shim_parse_faults(const char *list)
{
    unsigned bits = 0;
    for (const char *p = list; p != NULL && *p != '\0';) {
        size_t len = strcspn(p, ",");
        for (size_t i = 0; i < sizeof FAULT_NAMES / sizeof FAULT_NAMES[0]; i++) {
            if (strlen(FAULT_NAMES[i].name) == len && strncmp(p, FAULT_NAMES[i].name, len) == 0) {
                bits |= FAULT_NAMES[i].bit;
            }
        }
        p += len + (p[len] == ',');
    }
    return bits;
}

void hil_shim_default_config(hil_shim_config_t *cfg)
{
    cfg->fd_base = 32;
    cfg->fd_count = 32;
    cfg->faults = hil_shim_parse_faults(getenv("HIL_FAULTS"));
}

static bool fault(unsigned bit)
{
    return (shim.cfg.faults & bit) != 0;
}

int hil_shim_init(const hil_shim_config_t *cfg)
{
    shim.cfg = *cfg;
    shim.fds = calloc((size_t)cfg->fd_count, sizeof *shim.fds);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (shim.fds == NULL || devnull < 0 || hil_loop_init(cfg->fd_base, cfg->fd_count) != 0) {
        return -1;
    }
    for (int fd = cfg->fd_base; fd < cfg->fd_base + cfg->fd_count; fd++) {
        if (__real_fcntl(fd, F_GETFD) != -1) {
            hil_log(HIL_LOG_ERROR, TAG, "descriptor %d of the socket range %d..%d is already open", fd, cfg->fd_base,
                    cfg->fd_base + cfg->fd_count - 1);
            __real_close(devnull);
            return -1;
        }
        /* Held by /dev/null: the kernel never allocates it, a stray read/write on it hits nothing. */
        if (dup3(devnull, fd, O_CLOEXEC) != fd) {
            __real_close(devnull);
            return -1;
        }
    }
    __real_close(devnull);
    for (size_t i = 0; i < sizeof FAULT_NAMES / sizeof FAULT_NAMES[0]; i++) {
        if (fault(FAULT_NAMES[i].bit)) {
            hil_log(HIL_LOG_WARN, TAG, "fault %s on: the published esp_smoltcp_lwip_compat's defect",
                    FAULT_NAMES[i].name);
        }
    }
    return 0;
}

void hil_shim_stats(hil_shim_stats_t *out)
{
    pthread_mutex_lock(&shim.lock);
    out->fd_base = shim.cfg.fd_base;
    out->fd_count = shim.cfg.fd_count;
    out->fds_used = 0;
    for (int i = 0; i < shim.cfg.fd_count; i++) {
        out->fds_used += shim.fds[i].used;
    }
    pthread_mutex_unlock(&shim.lock);
}

static bool in_range(int fd)
{
    return shim.fds != NULL && fd >= shim.cfg.fd_base && fd < shim.cfg.fd_base + shim.cfg.fd_count;
}

/* The descriptor's entry, or NULL (errno EBADF) when it is in the range but not open. */
static shim_fd_t *entry(int fd)
{
    pthread_mutex_lock(&shim.lock);
    shim_fd_t *e = &shim.fds[fd - shim.cfg.fd_base];
    bool used = e->used;
    pthread_mutex_unlock(&shim.lock);
    if (!used) {
        errno = EBADF;
        return NULL;
    }
    return e;
}

static int alloc_fd(bool tcp)
{
    pthread_mutex_lock(&shim.lock);
    for (int i = 0; i < shim.cfg.fd_count; i++) {
        if (!shim.fds[i].used) {
            shim.fds[i] = (shim_fd_t){.used = true, .tcp = tcp};
            pthread_mutex_unlock(&shim.lock);
            return shim.cfg.fd_base + i;
        }
    }
    pthread_mutex_unlock(&shim.lock);
    return -1;
}

static void free_fd(int fd)
{
    pthread_mutex_lock(&shim.lock);
    shim.fds[fd - shim.cfg.fd_base].used = false;
    pthread_mutex_unlock(&shim.lock);
}

static int fail(int err)
{
    errno = err;
    return -1;
}

/* Map a stack result (>= 0 or -errno) to the POSIX convention. */
static int64_t posix(int64_t rc)
{
    if (rc < 0) {
        errno = (int)-rc;
        return -1;
    }
    return rc;
}

static int64_t deadline_after(int64_t timeout_us)
{
    return timeout_us > 0 ? hil_net_now_us() + timeout_us : HIL_NET_FOREVER;
}

static int parse_sockaddr(const struct sockaddr *addr, socklen_t len, uint32_t *ip, uint16_t *port)
{
    if (addr == NULL || len < (socklen_t)sizeof(struct sockaddr_in)) {
        return EINVAL;
    }
    if (addr->sa_family != AF_INET) {
        return EAFNOSUPPORT;
    }
    const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
    *ip = in->sin_addr.s_addr;
    *port = ntohs(in->sin_port);
    return 0;
}

static void fill_sockaddr(struct sockaddr *addr, socklen_t *len, uint32_t ip, uint16_t port)
{
    if (addr == NULL || len == NULL) {
        return;
    }
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port)};
    in.sin_addr.s_addr = ip;
    memcpy(addr, &in, *len < sizeof in ? *len : sizeof in);
    *len = sizeof in;
}

/* --- operations on the poll thread ------------------------------------------------------------------ */

typedef struct {
    uint32_t id;
    int i;            /* backlog, how, a bool */
    uint32_t ip;
    uint16_t port;
    const uint8_t *out;
    uint8_t *in;
    size_t len;
    size_t done;      /* bytes sent so far */
    bool has_to;
    bool peek;
    bool all;         /* blocking send: everything, not just what fits */
    bool hide_fin;    /* fault shim_fin_not_readable */
    hs_recv_info_t info;
} op_args_t;

static int64_t op_socket(hs_stack_t *s, void *p)
{
    return hs_socket(s, ((op_args_t *)p)->i);
}

static int64_t op_bind(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    return hs_bind(s, a->id, a->ip, a->port);
}

static int64_t op_listen(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    return hs_listen(s, a->id, a->i);
}

static int64_t op_accept(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    int64_t rc = hs_accept(s, a->id, &a->ip, &a->port);
    return rc == -EAGAIN ? HIL_NET_AGAIN : rc;
}

static int64_t op_connect(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    return hs_connect(s, a->id, a->ip, a->port);
}

/* Blocking connect: done when the handshake ended one way or the other. */
static int64_t op_connected(hs_stack_t *s, void *p)
{
    int mask = hs_poll_socket(s, ((op_args_t *)p)->id);
    if (mask < 0) {
        return mask;
    }
    if (mask & HS_ERROR) {
        int err = hs_take_error(s, ((op_args_t *)p)->id);
        return -(err > 0 ? err : ECONNRESET);
    }
    return (mask & HS_WRITABLE) ? 0 : HIL_NET_AGAIN;
}

static int64_t op_send(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    int64_t rc = hs_send(s, a->id, a->out + a->done, a->len - a->done, a->has_to, a->ip, a->port);
    if (rc > 0) {
        a->done += (size_t)rc;
    }
    if (rc == -EAGAIN || (rc >= 0 && a->all && a->done < a->len)) {
        return HIL_NET_AGAIN;
    }
    return rc < 0 && a->done == 0 ? rc : (int64_t)a->done;
}

static int64_t op_recv(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    int64_t rc = hs_recv(s, a->id, a->in, a->len, a->peek, &a->info);
    if (rc == 0 && a->len > 0 && a->hide_fin && hs_glue_tcp_is_connected(s, a->id) == 1) {
        return HIL_NET_AGAIN; /* the published shim: still "connected" in CLOSE-WAIT, so no EOF, ever */
    }
    return rc == -EAGAIN ? HIL_NET_AGAIN : rc;
}

static int64_t op_shutdown(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    return hs_shutdown(s, a->id, a->i);
}

static int64_t op_close(hs_stack_t *s, void *p)
{
    return hs_close(s, ((op_args_t *)p)->id);
}

/* The published glue's close: the socket leaves smoltcp's set before its FIN can (shim_close_without_fin). */
static int64_t op_glue_close(hs_stack_t *s, void *p)
{
    return hs_glue_close(s, ((op_args_t *)p)->id);
}

static int64_t op_sockname(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    return a->i ? hs_peer_endpoint(s, a->id, &a->ip, &a->port) : hs_local_endpoint(s, a->id, &a->ip, &a->port);
}

static int64_t op_take_error(hs_stack_t *s, void *p)
{
    return hs_take_error(s, ((op_args_t *)p)->id);
}

static int64_t op_tcp_options(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    return a->port ? hs_set_tcp_options(s, a->id, a->port == 1 ? a->i : -1, a->port == 2 ? a->i : -1)
                   : hs_tcp_options(s, a->id);
}

static int64_t op_mcast(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    return a->i ? hs_mcast_join(s, a->ip) : hs_mcast_leave(s, a->ip);
}

static int64_t op_queues(hs_stack_t *s, void *p)
{
    op_args_t *a = p;
    size_t recv_queue = 0;
    size_t send_queue = 0;
    int rc = hs_queues(s, a->id, &recv_queue, &send_queue);
    return rc < 0 ? rc : (int64_t)recv_queue;
}

static int64_t call(hil_net_op_fn op, op_args_t *a, int64_t deadline)
{
    return hil_net_call(op, a, deadline, NULL, 0);
}

/* --- socket calls ----------------------------------------------------------------------------------- */

int __wrap_socket(int domain, int type, int protocol)
{
    if (domain != AF_INET) {
        return domain == AF_INET6 ? fail(EAFNOSUPPORT) : __real_socket(domain, type, protocol);
    }
    int kind = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if ((kind != SOCK_STREAM && kind != SOCK_DGRAM) || (protocol != 0 && protocol != IPPROTO_TCP &&
                                                         protocol != IPPROTO_UDP)) {
        return fail(EPROTONOSUPPORT);
    }
    int fd = alloc_fd(kind == SOCK_STREAM);
    if (fd < 0) {
        return fail(EMFILE); /* the shim's descriptor table is full */
    }
    op_args_t a = {.i = kind == SOCK_STREAM};
    int64_t id = call(op_socket, &a, HIL_NET_NO_WAIT);
    if (id < 0) {
        free_fd(fd);
        return fail(id == HIL_NET_AGAIN ? ENOBUFS : (int)-id);
    }
    shim_fd_t *e = &shim.fds[fd - shim.cfg.fd_base];
    e->id = (uint32_t)id;
    e->nonblock = (type & SOCK_NONBLOCK) != 0;
    return fd;
}

int __wrap_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!in_range(fd)) {
        return __real_bind(fd, addr, len);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    op_args_t a = {.id = e->id};
    int err = parse_sockaddr(addr, len, &a.ip, &a.port);
    if (!err && !e->tcp && hil_loop_addr(a.ip)) {
        if (a.port == 0 && fault(HIL_SHIM_FAULT_LOOPBACK_PORT0_REFUSED)) {
            return fail(EINVAL); /* the published lo_bind refuses port 0 */
        }
        return (int)posix(hil_loop_bind(fd, a.port)); /* the in-RAM loopback (loopback.h) */
    }
    return err ? fail(err) : (int)posix(call(op_bind, &a, HIL_NET_NO_WAIT));
}

int __wrap_listen(int fd, int backlog)
{
    if (!in_range(fd)) {
        return __real_listen(fd, backlog);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    op_args_t a = {.id = e->id, .i = backlog};
    return (int)posix(call(op_listen, &a, HIL_NET_NO_WAIT));
}

int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    if (!in_range(fd)) {
        return __real_accept4(fd, addr, len, flags);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    int new_fd = alloc_fd(true);
    if (new_fd < 0) {
        return fail(EMFILE); /* the connection stays queued, as with Linux */
    }
    op_args_t a = {.id = e->id};
    int64_t rc = call(op_accept, &a, e->nonblock ? HIL_NET_NO_WAIT : deadline_after(e->rcvtimeo_us));
    if (rc < 0) {
        free_fd(new_fd);
        return fail(rc == HIL_NET_AGAIN ? EAGAIN : (int)-rc);
    }
    shim_fd_t *n = &shim.fds[new_fd - shim.cfg.fd_base];
    n->id = (uint32_t)rc;
    n->nonblock = (flags & SOCK_NONBLOCK) != 0;
    fill_sockaddr(addr, len, a.ip, a.port);
    return new_fd;
}

int __wrap_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    return in_range(fd) ? __wrap_accept4(fd, addr, len, 0) : __real_accept(fd, addr, len);
}

int __wrap_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!in_range(fd)) {
        return __real_connect(fd, addr, len);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    op_args_t a = {.id = e->id};
    int err = parse_sockaddr(addr, len, &a.ip, &a.port);
    if (err) {
        return fail(err);
    }
    int64_t rc = call(op_connect, &a, HIL_NET_NO_WAIT);
    if (rc != -EINPROGRESS || e->nonblock) {
        return (int)posix(rc);
    }
    /* Blocking connect: wait for the handshake; SO_SNDTIMEO bounds it (EINPROGRESS, as Linux). */
    rc = call(op_connected, &a, deadline_after(e->sndtimeo_us));
    return rc == HIL_NET_AGAIN ? fail(EINPROGRESS) : (int)posix(rc);
}

static ssize_t shim_send(int fd, shim_fd_t *e, const void *buf, size_t len, int flags, const struct sockaddr *to,
                         socklen_t tolen)
{
    op_args_t a = {.id = e->id, .out = buf, .len = len};
    if (to != NULL && !e->tcp) {
        int err = parse_sockaddr(to, tolen, &a.ip, &a.port);
        if (err) {
            return fail(err);
        }
        a.has_to = true;
        if (hil_loop_addr(a.ip)) {
            int64_t rc = hil_loop_send(fd, a.port, buf, len);
            return rc == -ECONNREFUSED ? (ssize_t)len : (ssize_t)posix(rc); /* Linux: sent, nobody listens */
        }
    }
    bool wait = !e->nonblock && !(flags & MSG_DONTWAIT);
    a.all = wait && e->tcp;
    int64_t rc = call(op_send, &a, wait ? deadline_after(e->sndtimeo_us) : HIL_NET_NO_WAIT);
    if (rc == HIL_NET_AGAIN) {
        return a.done > 0 ? (ssize_t)a.done : fail(EAGAIN); /* timed out: what went, or EAGAIN */
    }
    return (ssize_t)posix(rc);
}

typedef struct {
    int fd;
    op_args_t *a;
} loop_recv_t;

/* A read from the loopback queue, on the poll thread like every wait (hil_net_kick wakes it). */
static int64_t op_loop_recv(hs_stack_t *s, void *p)
{
    (void)s;
    loop_recv_t *r = p;
    uint16_t from_port = 0;
    int64_t rc = hil_loop_recv(r->fd, r->a->in, r->a->len, r->a->peek, &r->a->info.full_len, &from_port);
    r->a->info.addr = htonl(INADDR_LOOPBACK);
    r->a->info.port = from_port;
    return rc == -EAGAIN ? HIL_NET_AGAIN : rc;
}

/* skip_loopback: read the smoltcp socket even when fd is bound to the loopback (shim_loopback_recv_ignored). */
static ssize_t shim_recv(int fd, shim_fd_t *e, void *buf, size_t len, int flags, struct sockaddr *from,
                         socklen_t *fromlen, bool skip_loopback)
{
    op_args_t a = {.id = e->id, .in = buf, .len = len, .peek = (flags & MSG_PEEK) != 0,
                   .hide_fin = e->tcp && fault(HIL_SHIM_FAULT_FIN_NOT_READABLE)};
    bool wait = !e->nonblock && !(flags & MSG_DONTWAIT);
    loop_recv_t loop_read = {.fd = fd, .a = &a};
    bool looped = !e->tcp && hil_loop_port(fd) != 0 && !skip_loopback;
    int64_t deadline = wait ? deadline_after(e->rcvtimeo_us) : HIL_NET_NO_WAIT;
    int64_t rc = looped ? hil_net_call(op_loop_recv, &loop_read, deadline, NULL, 0) : call(op_recv, &a, deadline);
    if (rc == HIL_NET_AGAIN) {
        return fail(EAGAIN); /* nothing yet, or SO_RCVTIMEO passed: -1/EAGAIN, never 0 */
    }
    if (rc < 0) {
        return (ssize_t)posix(rc);
    }
    if (from != NULL) {
        fill_sockaddr(from, fromlen, a.info.addr, a.info.port);
    }
    return (flags & MSG_TRUNC) && !e->tcp ? (ssize_t)a.info.full_len : (ssize_t)rc;
}

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    if (!in_range(fd)) {
        return __real_send(fd, buf, len, flags);
    }
    shim_fd_t *e = entry(fd);
    return e == NULL ? -1 : shim_send(fd, e, buf, len, flags, NULL, 0);
}

ssize_t __wrap_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
{
    if (!in_range(fd)) {
        return __real_sendto(fd, buf, len, flags, to, tolen);
    }
    shim_fd_t *e = entry(fd);
    return e == NULL ? -1 : shim_send(fd, e, buf, len, flags, to, tolen);
}

ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
    if (!in_range(fd)) {
        return __real_write(fd, buf, len);
    }
    shim_fd_t *e = entry(fd);
    return e == NULL ? -1 : shim_send(fd, e, buf, len, 0, NULL, 0);
}

/* recv() and read(): with the fault shim_loopback_recv_ignored, what the published shim does on a UDP
 * socket bound to 127.x: read its (unbound) smoltcp socket, never the loopback queue, and after the
 * receive timeout (SO_RCVTIMEO, else the published 30 s) return 0. */
static ssize_t shim_recv_no_from(int fd, shim_fd_t *e, void *buf, size_t len, int flags)
{
    if (e->tcp || hil_loop_port(fd) == 0 || !fault(HIL_SHIM_FAULT_LOOPBACK_RECV_IGNORED)) {
        return shim_recv(fd, e, buf, len, flags, NULL, NULL, false);
    }
    shim_fd_t smoltcp_side = *e;
    smoltcp_side.rcvtimeo_us = e->rcvtimeo_us ? e->rcvtimeo_us : PUBLISHED_RECV_TIMEOUT_US;
    bool wait = !e->nonblock && !(flags & MSG_DONTWAIT);
    ssize_t n = shim_recv(fd, &smoltcp_side, buf, len, flags, NULL, NULL, true);
    return n < 0 && errno == EAGAIN && wait ? 0 : n;
}

ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags)
{
    if (!in_range(fd)) {
        return __real_recv(fd, buf, len, flags);
    }
    shim_fd_t *e = entry(fd);
    return e == NULL ? -1 : shim_recv_no_from(fd, e, buf, len, flags);
}

ssize_t __wrap_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
{
    if (!in_range(fd)) {
        return __real_recvfrom(fd, buf, len, flags, from, fromlen);
    }
    shim_fd_t *e = entry(fd);
    return e == NULL ? -1 : shim_recv(fd, e, buf, len, flags, from, fromlen, false);
}

ssize_t __wrap_read(int fd, void *buf, size_t len)
{
    if (!in_range(fd)) {
        return __real_read(fd, buf, len);
    }
    shim_fd_t *e = entry(fd);
    return e == NULL ? -1 : shim_recv_no_from(fd, e, buf, len, 0);
}

int __wrap_shutdown(int fd, int how)
{
    if (!in_range(fd)) {
        return __real_shutdown(fd, how);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    op_args_t a = {.id = e->id, .i = how};
    if (e->tcp && fault(HIL_SHIM_FAULT_CLOSE_WITHOUT_FIN)) {
        /* The published shutdown() is its close: whatever `how`, the socket is gone, without a FIN. */
        int64_t rc = e->id == NO_STACK_SOCKET ? 0 : call(op_glue_close, &a, HIL_NET_NO_WAIT);
        e->id = NO_STACK_SOCKET;
        return (int)posix(rc);
    }
    return (int)posix(call(op_shutdown, &a, HIL_NET_NO_WAIT));
}

int __wrap_close(int fd)
{
    if (!in_range(fd)) {
        return __real_close(fd);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    /* TCP: FIN after the queued data; the poll thread lingers until the exchange is over. */
    op_args_t a = {.id = e->id};
    bool glue = e->tcp && fault(HIL_SHIM_FAULT_CLOSE_WITHOUT_FIN);
    int64_t rc = e->id == NO_STACK_SOCKET ? 0 : call(glue ? op_glue_close : op_close, &a, HIL_NET_NO_WAIT);
    if (!e->tcp) {
        hil_loop_close(fd);
    }
    free_fd(fd);
    return (int)posix(rc);
}

/* getsockname (peer 0) and getpeername (peer 1) of a shim descriptor. */
static int shim_name(int fd, struct sockaddr *addr, socklen_t *len, int peer)
{
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    op_args_t a = {.id = e->id, .i = peer};
    uint16_t loop_port = peer || e->tcp ? 0 : hil_loop_port(fd);
    if (loop_port != 0) {
        fill_sockaddr(addr, len, htonl(INADDR_LOOPBACK), loop_port);
        return 0;
    }
    int rc = (int)posix(call(op_sockname, &a, HIL_NET_NO_WAIT));
    if (rc == 0) {
        fill_sockaddr(addr, len, a.ip, a.port);
    }
    return rc;
}

int __wrap_getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
    return in_range(fd) ? shim_name(fd, addr, len, 0) : __real_getsockname(fd, addr, len);
}

int __wrap_getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
    return in_range(fd) ? shim_name(fd, addr, len, 1) : __real_getpeername(fd, addr, len);
}

/* --- options ---------------------------------------------------------------------------------------- */

static int64_t timeval_us(const void *value, socklen_t len)
{
    if (len < (socklen_t)sizeof(struct timeval)) {
        return -1;
    }
    struct timeval tv;
    memcpy(&tv, value, sizeof tv);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static int int_value(const void *value, socklen_t len)
{
    int v = 0;
    memcpy(&v, value, len < (socklen_t)sizeof v ? (size_t)len : sizeof v);
    return v;
}

int __wrap_setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    if (!in_range(fd)) {
        return __real_setsockopt(fd, level, name, value, len);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    if (value == NULL) {
        return fail(EFAULT);
    }
    op_args_t a = {.id = e->id};
    if (level == SOL_SOCKET) {
        switch (name) {
        case SO_RCVTIMEO:
        case SO_SNDTIMEO: {
            int64_t us = timeval_us(value, len);
            if (us < 0) {
                return fail(EINVAL);
            }
            *(name == SO_RCVTIMEO ? &e->rcvtimeo_us : &e->sndtimeo_us) = us;
            return 0;
        }
        case SO_REUSEADDR:
            e->reuseaddr = int_value(value, len) != 0;
            return 0;
        case SO_KEEPALIVE:
            if (!e->tcp) {
                return 0;
            }
            a.port = 2;
            a.i = int_value(value, len) != 0;
            return (int)posix(call(op_tcp_options, &a, HIL_NET_NO_WAIT));
        case SO_RCVBUF:
        case SO_SNDBUF:
        case SO_REUSEPORT:
        case SO_BROADCAST:
        case SO_LINGER:
            return 0; /* fixed buffers, as on the board: accepted and without effect */
        default:
            return fail(ENOPROTOOPT);
        }
    }
    if (level == IPPROTO_TCP && e->tcp) {
        if (name != TCP_NODELAY) {
            return fail(ENOPROTOOPT);
        }
        a.port = 1;
        a.i = int_value(value, len) != 0;
        return (int)posix(call(op_tcp_options, &a, HIL_NET_NO_WAIT));
    }
    if (level == IPPROTO_IP) {
        switch (name) {
        case IP_ADD_MEMBERSHIP:
        case IP_DROP_MEMBERSHIP: {
            if (len < (socklen_t)sizeof(struct ip_mreq)) {
                return fail(EINVAL);
            }
            struct ip_mreq mreq;
            memcpy(&mreq, value, sizeof mreq);
            a.ip = mreq.imr_multiaddr.s_addr;
            a.i = name == IP_ADD_MEMBERSHIP;
            return (int)posix(call(op_mcast, &a, HIL_NET_NO_WAIT));
        }
        case IP_MULTICAST_TTL:
        case IP_MULTICAST_LOOP:
        case IP_MULTICAST_IF:
        case IP_TOS:
        case IP_TTL:
            return 0;
        default:
            return fail(ENOPROTOOPT);
        }
    }
    return fail(ENOPROTOOPT);
}

static int put_int(void *value, socklen_t *len, int v)
{
    if (value == NULL || len == NULL || *len < (socklen_t)sizeof v) {
        return fail(EINVAL);
    }
    memcpy(value, &v, sizeof v);
    *len = sizeof v;
    return 0;
}

int __wrap_getsockopt(int fd, int level, int name, void *value, socklen_t *len)
{
    if (!in_range(fd)) {
        return __real_getsockopt(fd, level, name, value, len);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    op_args_t a = {.id = e->id};
    if (level == SOL_SOCKET) {
        switch (name) {
        case SO_ERROR: {
            int64_t err = call(op_take_error, &a, HIL_NET_NO_WAIT);
            return err < 0 ? fail((int)-err) : put_int(value, len, (int)err);
        }
        case SO_TYPE:
            return put_int(value, len, e->tcp ? SOCK_STREAM : SOCK_DGRAM);
        case SO_REUSEADDR:
            return put_int(value, len, e->reuseaddr);
        case SO_RCVTIMEO:
        case SO_SNDTIMEO: {
            int64_t us = name == SO_RCVTIMEO ? e->rcvtimeo_us : e->sndtimeo_us;
            struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
            if (value == NULL || len == NULL || *len < (socklen_t)sizeof tv) {
                return fail(EINVAL);
            }
            memcpy(value, &tv, sizeof tv);
            *len = sizeof tv;
            return 0;
        }
        case SO_KEEPALIVE: {
            int64_t bits = e->tcp ? call(op_tcp_options, &a, HIL_NET_NO_WAIT) : 0;
            return bits < 0 ? fail((int)-bits) : put_int(value, len, (bits & 2) != 0);
        }
        default:
            return fail(ENOPROTOOPT);
        }
    }
    if (level == IPPROTO_TCP && e->tcp && name == TCP_NODELAY) {
        int64_t bits = call(op_tcp_options, &a, HIL_NET_NO_WAIT);
        return bits < 0 ? fail((int)-bits) : put_int(value, len, (bits & 1) != 0);
    }
    return fail(ENOPROTOOPT);
}

int __wrap_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *); /* what glibc's fcntl itself reads, whatever cmd takes */
    va_end(ap);
    if (!in_range(fd)) {
        return __real_fcntl(fd, cmd, arg);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    switch (cmd) {
    case F_GETFL:
        return O_RDWR | (e->nonblock ? O_NONBLOCK : 0);
    case F_SETFL:
        e->nonblock = ((int)(intptr_t)arg & O_NONBLOCK) != 0;
        return 0;
    case F_GETFD:
        return FD_CLOEXEC;
    case F_SETFD:
        return 0;
    default:
        return fail(EINVAL);
    }
}

int __wrap_ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (!in_range(fd)) {
        return __real_ioctl(fd, request, arg);
    }
    shim_fd_t *e = entry(fd);
    if (e == NULL) {
        return -1;
    }
    if (request == FIONBIO && arg != NULL) {
        e->nonblock = *(int *)arg != 0;
        return 0;
    }
    if (request == FIONREAD && arg != NULL && !e->tcp && hil_loop_port(fd) != 0) {
        /* Linux: the size of the next datagram (0 when none waits). */
        char probe;
        size_t next_len = 0;
        uint16_t from_port = 0;
        int64_t rc = hil_loop_recv(fd, &probe, 0, true, &next_len, &from_port);
        if (rc < 0 && rc != -EAGAIN) {
            return fail((int)-rc);
        }
        *(int *)arg = rc < 0 ? 0 : (int)next_len;
        return 0;
    }
    if (request == FIONREAD && arg != NULL) {
        op_args_t a = {.id = e->id};
        int64_t n = call(op_queues, &a, HIL_NET_NO_WAIT);
        if (n < 0) {
            return fail((int)-n);
        }
        *(int *)arg = (int)n;
        return 0;
    }
    return fail(ENOTTY);
}

/* --- readiness -------------------------------------------------------------------------------------- */

typedef struct {
    int fd;
    uint32_t id;
    bool tcp;
    bool looped; /* bound to the in-RAM loopback: readable from its queue */
    short events;
    short revents;
} shim_poll_t;

typedef struct {
    shim_poll_t *items;
    int n;
} poll_args_t;

static short to_poll_events(int mask, short wanted)
{
    short revents = 0;
    if (mask & HS_READABLE) {
        revents |= (short)(wanted & (POLLIN | POLLRDNORM));
    }
    if (mask & HS_WRITABLE) {
        revents |= (short)(wanted & (POLLOUT | POLLWRNORM));
    }
    if (mask & HS_ERROR) {
        revents |= POLLERR;
    }
    if (mask & HS_HANGUP) {
        revents |= POLLHUP;
    }
    return revents;
}

/* What the published select() makes of a socket the stack reports as `mask` (faults shim_udp_select_consumes
 * and shim_fin_not_readable), with the published glue's own smoltcp calls. */
static int published_readiness(hs_stack_t *s, const shim_poll_t *item, int mask)
{
    if (!item->tcp && fault(HIL_SHIM_FAULT_UDP_SELECT_CONSUMES) && (item->events & (POLLIN | POLLRDNORM))) {
        /* A zero-length recvfrom probe: smoltcp dequeues the datagram and reports it truncated, so the
         * socket never reads as readable and what it had received is gone. */
        uint8_t probe;
        hs_glue_udp_recv_slice(s, item->id, &probe, 0);
        return mask & ~HS_READABLE;
    }
    if (item->tcp && fault(HIL_SHIM_FAULT_FIN_NOT_READABLE) && (mask & HS_READABLE)) {
        /* Readable only with bytes queued or once no longer "connected" (may_recv || may_send):
         * a peer's FIN alone (CLOSE-WAIT) never counts. */
        size_t recv_queue = 0;
        size_t send_queue = 0;
        bool fin_only = hs_glue_tcp_is_connected(s, item->id) == 1 &&
                        hs_queues(s, item->id, &recv_queue, &send_queue) == 0 && recv_queue == 0;
        return fin_only ? mask & ~HS_READABLE : mask;
    }
    return mask;
}

/* Scan the stack's side of a select/poll set: the count of ready descriptors, or AGAIN. */
static int64_t op_poll_scan(hs_stack_t *s, void *p)
{
    poll_args_t *a = p;
    int64_t ready = 0;
    for (int i = 0; i < a->n; i++) {
        shim_poll_t *item = &a->items[i];
        int mask = item->looped ? HS_WRITABLE | (hil_loop_readable(item->fd) ? HS_READABLE : 0)
                                : hs_poll_socket(s, item->id);
        mask = !item->looped && mask >= 0 && shim.cfg.faults != 0 ? published_readiness(s, item, mask) : mask;
        item->revents = mask < 0 ? POLLNVAL : to_poll_events(mask, item->events);
        ready += item->revents != 0;
    }
    return ready > 0 ? ready : HIL_NET_AGAIN;
}

/*
 * The core of select() and poll(): shim descriptors are scanned on the poll thread, kernel ones by
 * the kernel, both waited for together. Returns ready kernel + shim entries (revents filled in).
 */
static int wait_mixed(shim_poll_t *items, int n_items, struct pollfd *kernel, int n_kernel, int64_t timeout_us)
{
    poll_args_t a = {.items = items, .n = n_items};
    int kernel_ready = n_kernel ? __real_poll(kernel, (nfds_t)n_kernel, 0) : 0;
    if (kernel_ready < 0) {
        return -1;
    }
    int64_t shim_ready = n_items ? hil_net_call(op_poll_scan, &a, HIL_NET_NO_WAIT, NULL, 0) : HIL_NET_AGAIN;
    if (kernel_ready > 0 || shim_ready != HIL_NET_AGAIN || timeout_us == 0) {
        return kernel_ready + (shim_ready == HIL_NET_AGAIN ? 0 : (int)shim_ready);
    }
    int64_t deadline = timeout_us < 0 ? HIL_NET_FOREVER : hil_net_now_us() + timeout_us;
    if (n_items == 0) {
        return __real_poll(kernel, (nfds_t)n_kernel, timeout_us < 0 ? -1 : (int)((timeout_us + 999) / 1000));
    }
    shim_ready = hil_net_call(op_poll_scan, &a, deadline, kernel, n_kernel);
    kernel_ready = 0;
    for (int i = 0; i < n_kernel; i++) {
        kernel_ready += kernel[i].revents != 0;
    }
    if (shim_ready == HIL_NET_AGAIN) {
        for (int i = 0; i < n_items; i++) {
            items[i].revents = 0;
        }
        shim_ready = 0;
    }
    return kernel_ready + (int)shim_ready;
}

int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    int shim_count = 0;
    for (nfds_t i = 0; i < n; i++) {
        shim_count += in_range(fds[i].fd);
    }
    if (shim_count == 0) {
        return __real_poll(fds, n, timeout_ms);
    }
    shim_poll_t *items = calloc((size_t)shim_count, sizeof *items);
    struct pollfd *kernel = calloc(n - (nfds_t)shim_count + 1, sizeof *kernel);
    if (items == NULL || kernel == NULL) {
        free(items);
        free(kernel);
        return fail(ENOMEM);
    }
    int n_items = 0;
    int n_kernel = 0;
    int invalid = 0;
    for (nfds_t i = 0; i < n; i++) {
        fds[i].revents = 0;
        if (!in_range(fds[i].fd)) {
            kernel[n_kernel++] = fds[i];
            continue;
        }
        shim_fd_t *e = entry(fds[i].fd);
        if (e == NULL) {
            fds[i].revents = POLLNVAL;
            invalid++;
            continue;
        }
        items[n_items++] = (shim_poll_t){
            .fd = fds[i].fd, .id = e->id, .tcp = e->tcp, .looped = !e->tcp && hil_loop_port(fds[i].fd), .events = fds[i].events};
    }
    int64_t timeout_us = invalid ? 0 : timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000;
    int rc = wait_mixed(items, n_items, kernel, n_kernel, timeout_us);
    if (rc >= 0) {
        int k = 0;
        int s = 0;
        for (nfds_t i = 0; i < n; i++) {
            if (!in_range(fds[i].fd)) {
                fds[i].revents = kernel[k++].revents;
            } else if (fds[i].revents != POLLNVAL) {
                fds[i].revents = items[s++].revents;
            }
        }
        rc += invalid;
    }
    free(items);
    free(kernel);
    return rc;
}

int __wrap_select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *timeout)
{
    int shim_count = 0;
    int kernel_count = 0;
    for (int fd = 0; fd < nfds; fd++) {
        bool wanted = (r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x));
        if (wanted) {
            in_range(fd) ? shim_count++ : kernel_count++;
        }
    }
    if (shim_count == 0) {
        return __real_select(nfds, r, w, x, timeout);
    }
    shim_poll_t *items = calloc((size_t)shim_count, sizeof *items);
    struct pollfd *kernel = calloc((size_t)kernel_count + 1, sizeof *kernel);
    if (items == NULL || kernel == NULL) {
        free(items);
        free(kernel);
        return fail(ENOMEM);
    }
    int n_items = 0;
    int n_kernel = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short events = (short)((r && FD_ISSET(fd, r) ? POLLIN : 0) | (w && FD_ISSET(fd, w) ? POLLOUT : 0) |
                               (x && FD_ISSET(fd, x) ? POLLPRI : 0));
        if (events == 0) {
            continue;
        }
        if (!in_range(fd)) {
            kernel[n_kernel++] = (struct pollfd){.fd = fd, .events = events};
            continue;
        }
        shim_fd_t *e = entry(fd);
        if (e == NULL) {
            free(items);
            free(kernel);
            return -1; /* EBADF, as select() reports a closed descriptor */
        }
        items[n_items++] =
            (shim_poll_t){.fd = fd, .id = e->id, .tcp = e->tcp, .looped = !e->tcp && hil_loop_port(fd), .events = events};
    }
    int64_t timeout_us = timeout == NULL ? -1 : (int64_t)timeout->tv_sec * 1000000 + timeout->tv_usec;
    int rc = wait_mixed(items, n_items, kernel, n_kernel, timeout_us);
    if (rc < 0) {
        free(items);
        free(kernel);
        return -1;
    }
    /* select() counts each set membership, and an error or hang-up reads as readable and writable. */
    int count = 0;
    fd_set rr;
    fd_set ww;
    fd_set xx;
    FD_ZERO(&rr);
    FD_ZERO(&ww);
    FD_ZERO(&xx);
    for (int i = 0; i < n_kernel + n_items; i++) {
        bool is_kernel = i < n_kernel;
        int fd = is_kernel ? kernel[i].fd : items[i - n_kernel].fd;
        short events = is_kernel ? kernel[i].events : items[i - n_kernel].events;
        short rev = is_kernel ? kernel[i].revents : items[i - n_kernel].revents;
        bool trouble = (rev & (POLLERR | POLLHUP | POLLNVAL)) != 0;
        if ((events & POLLIN) && ((rev & POLLIN) || trouble)) {
            FD_SET(fd, &rr);
            count++;
        }
        if ((events & POLLOUT) && ((rev & POLLOUT) || (rev & POLLERR))) {
            FD_SET(fd, &ww);
            count++;
        }
        if ((events & POLLPRI) && (rev & POLLPRI)) {
            FD_SET(fd, &xx);
            count++;
        }
    }
    if (r) {
        *r = rr;
    }
    if (w) {
        *w = ww;
    }
    if (x) {
        *x = xx;
    }
    free(items);
    free(kernel);
    return count;
}

/* --- names: literals only, as the firmware resolves nothing it was not given --------------------- */

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    int family = hints ? hints->ai_family : AF_UNSPEC;
    if (family != AF_UNSPEC && family != AF_INET) {
        return EAI_FAMILY;
    }
    struct in_addr addr = {.s_addr = htonl((hints && (hints->ai_flags & AI_PASSIVE)) ? INADDR_ANY : INADDR_LOOPBACK)};
    if (node != NULL && inet_pton(AF_INET, node, &addr) != 1) {
        return EAI_NONAME;
    }
    long port = 0;
    if (service != NULL) {
        char *end = NULL;
        port = strtol(service, &end, 10);
        if (*service == '\0' || *end != '\0' || port < 0 || port > 65535) {
            return EAI_SERVICE;
        }
    }
    struct {
        struct addrinfo ai;
        struct sockaddr_in sin;
    } *block = calloc(1, sizeof *block);
    if (block == NULL) {
        return EAI_MEMORY;
    }
    block->sin.sin_family = AF_INET;
    block->sin.sin_port = htons((uint16_t)port);
    block->sin.sin_addr = addr;
    block->ai.ai_family = AF_INET;
    block->ai.ai_socktype = hints ? hints->ai_socktype : 0;
    block->ai.ai_protocol = hints ? hints->ai_protocol : 0;
    block->ai.ai_addrlen = sizeof block->sin;
    block->ai.ai_addr = (struct sockaddr *)&block->sin;
    *res = &block->ai;
    return 0;
}

void __wrap_freeaddrinfo(struct addrinfo *res)
{
    free(res); /* one block per answer (see above) */
}
