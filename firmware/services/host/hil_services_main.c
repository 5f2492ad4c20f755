/*
 * hil-services: the firmware's portable services as one Linux program, for the virtual board.
 *
 *   hil-services [--iperf3 PORT] [--select-echo TCP_PORT UDP_BASE COUNT] [--tcp-echo PORT]
 *                [--udp-echo PORT] [--ready-timeout S]
 *
 * Port 0 lets the system choose. Once every listener is bound, one JSON line goes to stdout:
 *   {"ready":true,"pid":N,"services":{"iperf3":{"tcp":[5201],"udp":[]},...}}
 * Then stdin takes commands, one per line, each answered by one JSON line on stdout:
 *   stats    -> {"select_echo":{...counters...},"iperf3":{...}}
 *   quit     -> {"bye":true} and exit 0 (EOF on stdin exits the same way)
 * SIGUSR1 prints the stats line too. Logs (ESP-IDF format) go to stderr.
 *
 * HIL_FAULTS (environment, comma-separated) switches on misbehaviours of the virtual board's fault
 * catalogue that live in this C code: socket_slot_leak, udp_never_readable. Other names are ignored
 * (they belong to other parts of the virtual board).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hil_platform.h"
#include "hil_proto.h"
#include "hil_services.h"

typedef enum { SVC_IPERF3, SVC_SELECT_ECHO, SVC_TCP_ECHO, SVC_UDP_ECHO } svc_kind_t;

typedef struct {
    svc_kind_t kind;
    uint16_t port;
    uint16_t udp_base;
    int udp_count;
} svc_t;

#define MAX_SERVICES 8

static int ready_pipe[2];
static hil_mutex_t *ready_lock;
static char ready_json[2048];
static size_t ready_len;
static volatile sig_atomic_t stats_requested;

static void on_ready(const char *service, const uint16_t *tcp, int n_tcp, const uint16_t *udp, int n_udp, void *arg)
{
    (void)arg;
    hil_mutex_lock(ready_lock);
    int n = snprintf(ready_json + ready_len, sizeof ready_json - ready_len, "%s\"%s\":{\"tcp\":[",
                     ready_len ? "," : "", service);
    ready_len += (size_t)n;
    for (int i = 0; i < n_tcp; i++) {
        ready_len += (size_t)snprintf(ready_json + ready_len, sizeof ready_json - ready_len, "%s%u", i ? "," : "",
                                      (unsigned)tcp[i]);
    }
    ready_len += (size_t)snprintf(ready_json + ready_len, sizeof ready_json - ready_len, "],\"udp\":[");
    for (int i = 0; i < n_udp; i++) {
        ready_len += (size_t)snprintf(ready_json + ready_len, sizeof ready_json - ready_len, "%s%u", i ? "," : "",
                                      (unsigned)udp[i]);
    }
    ready_len += (size_t)snprintf(ready_json + ready_len, sizeof ready_json - ready_len, "]}");
    hil_mutex_unlock(ready_lock);
    char ok = 'R';
    if (write(ready_pipe[1], &ok, 1) != 1) {
        abort();
    }
}

static void service_thread(void *arg)
{
    const svc_t *svc = arg;
    int rc = -1;
    switch (svc->kind) {
    case SVC_IPERF3:
        rc = hil_iperf3_server_run(svc->port);
        break;
    case SVC_SELECT_ECHO:
        rc = hil_select_echo_run(svc->port, svc->udp_base, svc->udp_count);
        break;
    case SVC_TCP_ECHO:
        rc = hil_tcp_echo_run(svc->port);
        break;
    case SVC_UDP_ECHO:
        rc = hil_udp_echo_run(svc->port);
        break;
    }
    (void)rc; /* the services only return when setting up failed */
    char failed = 'F';
    if (write(ready_pipe[1], &failed, 1) != 1) {
        abort();
    }
}

static void usage(const char *why)
{
    fprintf(stderr,
            "hil-services: %s\n"
            "usage: hil-services [--iperf3 PORT] [--select-echo TCP_PORT UDP_BASE COUNT] [--tcp-echo PORT]\n"
            "                    [--udp-echo PORT] [--ready-timeout SECONDS]\n",
            why);
    exit(2);
}

static long parse_num(const char *text, long lo, long hi, const char *what)
{
    char *end = NULL;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (text == NULL || *text == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s must be a number in %ld..%ld, got '%s'", what, lo, hi, text ? text : "");
        usage(msg);
    }
    return v;
}

static void print_stats(void)
{
    hil_select_echo_stats_t echo;
    hil_iperf3_stats_t iperf;
    char fields[768];
    hil_select_echo_get_stats(&echo);
    hil_iperf3_get_stats(&iperf);
    if (hil_select_echo_format_stats(fields, sizeof fields, &echo) < 0) {
        fields[0] = '\0';
    }
    printf("{\"select_echo\":{%s},\"iperf3\":{\"tests_done\":%" PRIu32 ",\"tests_failed\":%" PRIu32
           ",\"access_denied\":%" PRIu32 "}}\n",
           fields, iperf.tests_done, iperf.tests_failed, iperf.access_denied);
    fflush(stdout);
}

/* Returns 1 when the program should exit. */
static int handle_command(char *line)
{
    line[strcspn(line, "\r")] = '\0';
    if (strcmp(line, "stats") == 0 || strcmp(line, "sockets") == 0) {
        print_stats();
    } else if (strcmp(line, "quit") == 0) {
        printf("{\"bye\":true}\n");
        fflush(stdout);
        return 1;
    } else if (line[0] != '\0') {
        char quoted[300];
        if (hil_proto_json_string(quoted, sizeof quoted, line) < 0) {
            strcpy(quoted, "\"?\"");
        }
        printf("{\"error\":\"unknown command; use stats or quit\",\"command\":%s}\n", quoted);
        fflush(stdout);
    }
    return 0;
}

/* Whether the comma-separated list contains name as a whole item. */
static int list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) {
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

static void apply_faults(void)
{
    const char *list = getenv("HIL_FAULTS");
    if (list == NULL || *list == '\0') {
        return;
    }
    hil_select_echo_faults_t f = {0};
    if (list_has(list, "socket_slot_leak")) {
        f.slot_leak_after = 24; /* where the historical handle map ran out */
    }
    f.udp_never_readable = list_has(list, "udp_never_readable");
    hil_select_echo_set_faults(&f);
    if (f.slot_leak_after || f.udp_never_readable) {
        fprintf(stderr, "hil-services: faults on: %s\n", list);
    }
}

static void on_sigusr1(int sig)
{
    (void)sig;
    stats_requested = 1;
}

int main(int argc, char **argv)
{
    static svc_t services[MAX_SERVICES];
    int n_services = 0;
    long ready_timeout_s = 10;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (n_services == MAX_SERVICES) {
            usage("too many services");
        }
        svc_t *svc = &services[n_services];
        if (strcmp(opt, "--iperf3") == 0 || strcmp(opt, "--tcp-echo") == 0 || strcmp(opt, "--udp-echo") == 0) {
            svc->kind = strcmp(opt, "--iperf3") == 0 ? SVC_IPERF3 : strcmp(opt, "--tcp-echo") == 0 ? SVC_TCP_ECHO
                                                                                                   : SVC_UDP_ECHO;
            svc->port = (uint16_t)parse_num(i + 1 < argc ? argv[++i] : NULL, 0, 65535, opt);
            n_services++;
        } else if (strcmp(opt, "--select-echo") == 0) {
            if (i + 3 >= argc) {
                usage("--select-echo needs TCP_PORT UDP_BASE COUNT");
            }
            svc->kind = SVC_SELECT_ECHO;
            svc->port = (uint16_t)parse_num(argv[++i], 0, 65535, "select-echo TCP_PORT");
            svc->udp_base = (uint16_t)parse_num(argv[++i], 0, 65535, "select-echo UDP_BASE");
            svc->udp_count = (int)parse_num(argv[++i], 0, HIL_SELECT_ECHO_MAX_UDP, "select-echo COUNT");
            n_services++;
        } else if (strcmp(opt, "--ready-timeout") == 0) {
            ready_timeout_s = parse_num(i + 1 < argc ? argv[++i] : NULL, 1, 3600, opt);
        } else {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown option '%s'", opt);
            usage(msg);
        }
    }
    if (n_services == 0) {
        usage("no service chosen");
    }
    /* A peer that vanishes mid-send must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigaction(SIGUSR1, &sa, NULL);
    ready_lock = hil_mutex_create();
    if (ready_lock == NULL || pipe(ready_pipe) != 0) {
        perror("hil-services: setup");
        return 1;
    }
    hil_services_set_ready_hook(on_ready, NULL);
    apply_faults();
    for (int i = 0; i < n_services; i++) {
        if (hil_thread_start("hil_svc", service_thread, &services[i], 8192, 5) != 0) {
            perror("hil-services: thread");
            return 1;
        }
    }
    uint64_t deadline = hil_time_us() + (uint64_t)ready_timeout_s * 1000000u;
    for (int ready = 0; ready < n_services;) {
        struct pollfd pfd = {.fd = ready_pipe[0], .events = POLLIN};
        int64_t left_ms = (int64_t)(deadline - hil_time_us()) / 1000;
        if (left_ms <= 0 || poll(&pfd, 1, (int)left_ms) == 0) {
            printf("{\"ready\":false,\"error\":\"services not bound within %ld s\"}\n", ready_timeout_s);
            return 1;
        }
        char c;
        if (read(ready_pipe[0], &c, 1) != 1) {
            continue;
        }
        if (c != 'R') {
            printf("{\"ready\":false,\"error\":\"a service failed to start; see stderr\"}\n");
            return 1;
        }
        ready++;
    }
    hil_mutex_lock(ready_lock);
    printf("{\"ready\":true,\"pid\":%ld,\"services\":{%s}}\n", (long)getpid(), ready_json);
    hil_mutex_unlock(ready_lock);
    fflush(stdout);

    /* Read stdin with read(), not stdio: several commands arriving together must all be answered. */
    char line[256];
    size_t used = 0;
    for (;;) {
        struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = ready_pipe[0], .events = POLLIN}};
        int rc = poll(fds, 2, 1000);
        if (stats_requested) {
            stats_requested = 0;
            print_stats();
        }
        if (rc < 0 && errno != EINTR) {
            return 1;
        }
        if (rc > 0 && (fds[1].revents & POLLIN)) {
            fprintf(stderr, "hil-services: a service stopped\n");
            return 1;
        }
        if (rc <= 0 || !(fds[0].revents & (POLLIN | POLLHUP))) {
            continue;
        }
        ssize_t n = read(STDIN_FILENO, line + used, sizeof line - 1 - used);
        if (n <= 0) {
            return 0; /* stdin closed: the owner is gone */
        }
        used += (size_t)n;
        line[used] = '\0';
        char *start = line;
        char *nl;
        while ((nl = strchr(start, '\n')) != NULL) {
            *nl = '\0';
            if (handle_command(start) != 0) {
                return 0;
            }
            start = nl + 1;
        }
        used = strlen(start);
        memmove(line, start, used + 1);
        if (used == sizeof line - 1) {
            used = 0; /* an endless line is not a command */
        }
    }
}
