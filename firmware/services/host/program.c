/*
 * The hil-services program: options, the services it starts, the stdin/stdout protocol. Shared by the
 * Linux program (hil_services_main.c: the services on the host's own sockets) and the virtual board's
 * native firmware (the same services over smoltcp and the BSD-socket shim), whose main installs its own
 * hooks (stats provider, MAC) and then calls hil_program_run. Usage and protocol:
 * firmware/services/README.md ("The hil-services program").
 *
 * Only read() on stdin, stdout writes and the services' own sockets: no poll() or pipe, so a socket shim
 * that wraps poll/select sees nothing but sockets.
 *
 * Once every listener is bound, one JSON line goes to stdout:
 *   {"ready":true,"pid":N,"stack":..,"unknown_faults":[..],"services":{"iperf3":{"tcp":[5201],"udp":[]},...}}
 * Then stdin takes one command per line, each answered by one JSON line:
 *   stats                    -> {"select_echo":{...},"iperf3":{...},"http":{...},"mqtt":{...},"net":{...}}
 *                               ("net": the HIL_STATS fields, when there is a stats provider)
 *   a command of the caller  -> its HIL_RESULT object (hil_program_hooks_t.command: ip, heap, sockets, ...)
 *   mqtt|tls|mcast|l2tap|loopback -> the command's HIL_RESULT object, e.g. {"cmd":"loopback","ok":true,...}
 *   quit                     -> {"bye":true} and exit 0 (EOF on stdin exits the same way)
 * Events arrive on their own lines whenever they happen: {"event":"mqtt","iface":"eth","state":...}.
 * SIGUSR1 prints the stats line. Logs (ESP-IDF format) go to stderr.
 *
 * HIL_FAULTS (environment, comma-separated) switches on misbehaviours of the virtual board's fault
 * catalogue that live in this C code; other names are ignored (they belong to other parts of the board).
 */
#define _POSIX_C_SOURCE 200809L
#include "program.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hil_platform.h"
#include "hil_proto.h"
#include "hil_services.h"
#include "hooks.h"
#include "linux_stats.h"

typedef enum {
    SVC_IPERF3,
    SVC_SELECT_ECHO,
    SVC_TCP_ECHO,
    SVC_UDP_ECHO,
    SVC_HTTP,
    SVC_HTTPS,
    SVC_MCAST_ECHO
} svc_kind_t;

typedef struct {
    svc_kind_t kind;
    uint16_t port;
    uint16_t udp_base;
    int udp_count;
} svc_t;

/* Options that take one port and start one service. */
static const struct {
    const char *option;
    svc_kind_t kind;
} PORT_OPTIONS[] = {
    {"--iperf3", SVC_IPERF3}, {"--tcp-echo", SVC_TCP_ECHO}, {"--udp-echo", SVC_UDP_ECHO},
    {"--http", SVC_HTTP},     {"--https", SVC_HTTPS},       {"--mcast-echo", SVC_MCAST_ECHO},
};

#define MAX_SERVICES 12
#define CRASH_EXIT_STATUS 70 /* EX_SOFTWARE: the crash line said why */
#define LEAK_BYTES 32768u    /* heap_leak_per_connection */
#define CRASH_CONNECTION 20u /* panic_on_nth_connection */
/* The catalogue faults this program (the services) implements. */
static const char *const OWN_FAULTS[] = {
    "socket_slot_leak", "udp_never_readable", "heap_leak_per_connection", "panic_on_nth_connection",
    "httpd_malformed_crash", "tls_wrong_cert", "no_mqtt_reconnect", "mcast_deaf", "l2_tap_deaf",
};

typedef struct {
    const char *certs_dir;
    const char *stats_iface;
    const char *mac;
    long ready_timeout_s;
    long l2_echo; /* EtherType, or 0 */
} options_t;

static hil_sem_t *ready_sem; /* one count per service that bound (or failed to) */
static volatile int start_failed;
static volatile int all_ready;
/* stdout: command replies and events come from different threads, events even before hil_program_run */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static char ready_json[2048];
static size_t ready_len;
static volatile sig_atomic_t stats_requested;
static hil_program_hooks_t hooks;

void hil_program_set_hooks(const hil_program_hooks_t *new_hooks)
{
    hooks = *new_hooks;
}

static void print_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void print_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_lock);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    va_end(ap);
}

static void append_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void append_ready(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ready_json + ready_len, sizeof ready_json - ready_len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        ready_len = ready_len + (size_t)n < sizeof ready_json ? ready_len + (size_t)n : sizeof ready_json - 1;
    }
}

static void on_ready(const char *service, const uint16_t *tcp, int n_tcp, const uint16_t *udp, int n_udp, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&out_lock);
    append_ready("%s\"%s\":{\"tcp\":[", ready_len ? "," : "", service);
    for (int i = 0; i < n_tcp; i++) {
        append_ready("%s%u", i ? "," : "", (unsigned)tcp[i]);
    }
    append_ready("],\"udp\":[");
    for (int i = 0; i < n_udp; i++) {
        append_ready("%s%u", i ? "," : "", (unsigned)udp[i]);
    }
    append_ready("]}");
    pthread_mutex_unlock(&out_lock);
    hil_sem_give(ready_sem);
}

void hil_program_event(const char *members)
{
    print_line("{%s}", members);
}

void hil_program_crash(const char *kind, const char *task)
{
    print_line("{\"event\":\"crash\",\"kind\":\"%s\",\"task\":\"%s\"}", kind, task);
    _exit(CRASH_EXIT_STATUS);
}

static void on_event(const char *members, void *arg)
{
    (void)arg;
    hil_program_event(members);
}

static void on_crash(const char *kind, const char *task, void *arg)
{
    (void)arg;
    hil_program_crash(kind, task);
}

static void service_thread(void *arg)
{
    const svc_t *svc = arg;
    switch (svc->kind) {
    case SVC_IPERF3:
        hil_iperf3_server_run(svc->port);
        break;
    case SVC_SELECT_ECHO:
        hil_select_echo_run(svc->port, svc->udp_base, svc->udp_count);
        break;
    case SVC_TCP_ECHO:
        hil_tcp_echo_run(svc->port);
        break;
    case SVC_UDP_ECHO:
        hil_udp_echo_run(svc->port);
        break;
    case SVC_HTTP:
        hil_http_server_run(svc->port);
        break;
    case SVC_HTTPS:
        hil_https_server_run(svc->port);
        break;
    case SVC_MCAST_ECHO:
        hil_mcast_echo_run(svc->port);
        break;
    }
    /* The services only return when setting up failed (or, later, when one gives up for good). */
    if (all_ready) {
        fprintf(stderr, "hil-services: a service stopped\n");
        exit(1);
    }
    start_failed = 1;
    hil_sem_give(ready_sem);
}

static void usage(const char *why)
{
    fprintf(stderr,
            "hil-services: %s\n"
            "usage: hil-services [--iperf3 PORT] [--select-echo TCP_PORT UDP_BASE COUNT] [--tcp-echo PORT]\n"
            "                    [--udp-echo PORT] [--http PORT] [--https PORT] [--mcast-echo PORT]\n"
            "                    [--l2-echo ETHERTYPE] [--certs DIR] [--mac MAC] [--stats-iface IFACE]\n"
            "                    [--ready-timeout SECONDS]\n",
            why);
    exit(2);
}

static long parse_num_base(const char *text, long lo, long hi, const char *what, int base)
{
    char *end = NULL;
    errno = 0;
    long v = text ? strtol(text, &end, base) : 0;
    if (text == NULL || *text == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s must be a number in %ld..%ld, got '%s'", what, lo, hi, text ? text : "");
        usage(msg);
    }
    return v;
}

static long parse_num(const char *text, long lo, long hi, const char *what)
{
    return parse_num_base(text, lo, hi, what, 10);
}

static const char *need_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        char msg[80];
        snprintf(msg, sizeof msg, "%s needs a value", argv[*i]);
        usage(msg);
    }
    return argv[++*i];
}

static int parse_args(int argc, char **argv, svc_t *services, options_t *opt)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (n == MAX_SERVICES) {
            usage("too many services");
        }
        svc_t *svc = &services[n];
        int matched = 0;
        for (size_t k = 0; k < sizeof PORT_OPTIONS / sizeof PORT_OPTIONS[0] && !matched; k++) {
            if (strcmp(arg, PORT_OPTIONS[k].option) == 0) {
                svc->kind = PORT_OPTIONS[k].kind;
                svc->port = (uint16_t)parse_num(i + 1 < argc ? argv[++i] : NULL, 0, 65535, arg);
                n++;
                matched = 1;
            }
        }
        if (matched) {
            continue;
        }
        if (strcmp(arg, "--select-echo") == 0) {
            if (i + 3 >= argc) {
                usage("--select-echo needs TCP_PORT UDP_BASE COUNT");
            }
            svc->kind = SVC_SELECT_ECHO;
            svc->port = (uint16_t)parse_num(argv[++i], 0, 65535, "select-echo TCP_PORT");
            svc->udp_base = (uint16_t)parse_num(argv[++i], 0, 65535, "select-echo UDP_BASE");
            svc->udp_count = (int)parse_num(argv[++i], 0, HIL_SELECT_ECHO_MAX_UDP, "select-echo COUNT");
            n++;
        } else if (strcmp(arg, "--certs") == 0) {
            opt->certs_dir = need_value(argc, argv, &i);
        } else if (strcmp(arg, "--stats-iface") == 0) {
            opt->stats_iface = need_value(argc, argv, &i);
        } else if (strcmp(arg, "--mac") == 0) {
            opt->mac = need_value(argc, argv, &i);
        } else if (strcmp(arg, "--ready-timeout") == 0) {
            opt->ready_timeout_s = parse_num(i + 1 < argc ? argv[++i] : NULL, 1, 3600, arg);
        } else if (strcmp(arg, "--l2-echo") == 0) {
            opt->l2_echo = parse_num_base(i + 1 < argc ? argv[++i] : NULL, 0x0600, 0xffff, arg, 0); /* 0x88b5 */
        } else {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown option '%s'", arg);
            usage(msg);
        }
    }
    if (n == 0) {
        usage("no service chosen");
    }
    return n;
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

static void apply_faults(const char *list)
{
    hil_select_echo_faults_t echo = {
        .slot_leak_after = list_has(list, "socket_slot_leak") ? 24 : 0, /* where the historical map ran out */
        .udp_never_readable = list_has(list, "udp_never_readable"),
    };
    hil_select_echo_set_faults(&echo);
    hil_services_faults_t services = {
        .http_leak_bytes_per_connection = list_has(list, "heap_leak_per_connection") ? LEAK_BYTES : 0,
        .http_crash_on_connection = list_has(list, "panic_on_nth_connection") ? CRASH_CONNECTION : 0,
        .http_crash_on_malformed = list_has(list, "httpd_malformed_crash"),
        .mqtt_no_reconnect = list_has(list, "no_mqtt_reconnect"),
        .mcast_deaf = list_has(list, "mcast_deaf"),
        .l2_tap_deaf = list_has(list, "l2_tap_deaf"),
    };
    hil_services_set_faults(&services);
    if (*list != '\0') {
        fprintf(stderr, "hil-services: faults on: %s\n", list);
    }
}

/* The whole file as a NUL-terminated string (malloc'd), or NULL. */
static char *read_text(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "hil-services: cannot read %s\n", path);
        return NULL;
    }
    char *text = NULL;
    size_t len = 0;
    if (fseek(f, 0, SEEK_END) == 0 && (len = (size_t)ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc(len + 1)) != NULL && fread(text, 1, len, f) == len) {
        text[len] = '\0';
    } else {
        free(text);
        text = NULL;
    }
    fclose(f);
    return text;
}

/* The test certificates of firmware/certs; tls_wrong_cert serves the certificate for another host. */
static int load_certs(const char *dir, const char *faults)
{
    const char *server = list_has(faults, "tls_wrong_cert") ? "wrong_host" : "dut_server";
    char cert_name[64];
    char key_name[64];
    snprintf(cert_name, sizeof cert_name, "%s.crt", server);
    snprintf(key_name, sizeof key_name, "%s.key", server);
    char *ca = read_text(dir, "hil_test_ca.crt");
    char *cert = read_text(dir, cert_name);
    char *key = read_text(dir, key_name);
    hil_tls_credentials_t credentials = {.ca_pem = ca, .server_cert_pem = cert, .server_key_pem = key};
    int rc = ca && cert && key ? hil_services_set_tls_credentials(&credentials) : -1;
    free(ca);
    free(cert);
    free(key);
    return rc;
}

static int set_mac(const options_t *opt)
{
    uint8_t mac[6];
    unsigned b[6];
    if (opt->mac != NULL) {
        char tail;
        if (sscanf(opt->mac, "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6) {
            return -1;
        }
        for (int i = 0; i < 6; i++) {
            mac[i] = (uint8_t)b[i];
        }
    } else if (opt->stats_iface == NULL || hil_linux_iface_mac(opt->stats_iface, mac) != 0) {
        return 0; /* no MAC: `mqtt connect` says so */
    }
    hil_services_set_mac(mac);
    return 0;
}

static void print_stats(void)
{
    hil_select_echo_stats_t echo;
    hil_iperf3_stats_t iperf;
    hil_http_stats_t http;
    hil_mqtt_stats_t mqtt;
    hil_stats_t stats;
    char fields[768];
    char net[1024] = "";
    hil_select_echo_get_stats(&echo);
    hil_iperf3_get_stats(&iperf);
    hil_http_get_stats(&http);
    hil_mqtt_get_stats(&mqtt);
    if (hil_select_echo_format_stats(fields, sizeof fields, &echo) < 0) {
        fields[0] = '\0';
    }
    if (hil_hooks_stats(&stats) == 0) {
        /* The HIL_STATS object without its braces, then the caller's diagnostic counters. */
        int n = hil_proto_format_stats_object(net, sizeof net - 1, "cmd", &stats);
        if (n > 2) {
            net[0] = ',';
            net[n - 1] = '\0';
            char extra[512] = "";
            if (hooks.stats_extra != NULL && hooks.stats_extra(extra, sizeof extra) > 0 &&
                strlen(net) + strlen(extra) + 2 < sizeof net) {
                strcat(net, ",");
                strcat(net, extra);
            }
        } else {
            net[0] = '\0';
        }
    }
    print_line("{\"select_echo\":{%s},\"iperf3\":{\"tests_done\":%" PRIu32 ",\"tests_failed\":%" PRIu32
               ",\"access_denied\":%" PRIu32 "},\"http\":{\"open_connections\":%" PRIu32 ",\"accepted\":%" PRIu32
               ",\"purged\":%" PRIu32 ",\"tls_failures\":%" PRIu32 ",\"requests\":%" PRIu32
               ",\"bad_requests\":%" PRIu32 ",\"ws_messages\":%" PRIu32 "},\"mqtt\":{\"connects\":%" PRIu32
               ",\"received\":%" PRIu32 ",\"echoed\":%" PRIu32 ",\"too_large\":%" PRIu32 "}%s%s%s}",
               fields, iperf.tests_done, iperf.tests_failed, iperf.access_denied, http.open_connections, http.accepted,
               http.purged, http.tls_failures, http.requests, http.bad_requests, http.ws_messages, mqtt.connects,
               mqtt.received, mqtt.echoed, mqtt.too_large, net[0] ? ",\"net\":{" : "", net[0] ? net + 1 : "",
               net[0] ? "}" : "");
}

/* Returns 1 when the program should exit. */
static int handle_command(char *line)
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", line);
    char *argv[8];
    int argc = hil_proto_split_args(line, argv, 8);
    static char reply[16384]; /* the command thread's only */
    if (argc == 0) {
        return 0;
    }
    if (argc == 1 && strcmp(argv[0], "stats") == 0) {
        print_stats();
    } else if (argc == 1 && strcmp(argv[0], "quit") == 0) {
        print_line("{\"bye\":true}");
        return 1;
    } else if (argc > 0 && ((hooks.command != NULL && hooks.command(argc, argv, reply, sizeof reply)) ||
                            hil_services_command(argc, argv, reply, sizeof reply))) {
        print_line("{%s}", reply);
    } else if (argc == 1 && strcmp(argv[0], "sockets") == 0) {
        print_stats(); /* a program without a stack of its own has only the services' counters */
    } else {
        char quoted[300];
        if (hil_proto_json_string(quoted, sizeof quoted, copy) < 0) {
            strcpy(quoted, "\"?\"");
        }
        print_line("{\"error\":\"unknown command; use stats, quit, mqtt, tls, mcast, l2tap or loopback\","
                   "\"command\":%s}",
                   quoted);
    }
    return 0;
}

/* The names in HIL_FAULTS that neither the services nor the caller implement, as a JSON array. */
static void unknown_faults(const char *list, char *out, size_t len)
{
    size_t used = (size_t)snprintf(out, len, "[");
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        int known = name[0] == '\0' || (hooks.faults != NULL && list_has(hooks.faults, name));
        for (size_t k = 0; k < sizeof OWN_FAULTS / sizeof OWN_FAULTS[0] && !known; k++) {
            known = strcmp(name, OWN_FAULTS[k]) == 0;
        }
        if (!known && used + n + 4 < len) {
            used += (size_t)snprintf(out + used, len - used, "%s\"%s\"", used > 1 ? "," : "", name);
        }
        p = end ? end + 1 : p + n;
    }
    snprintf(out + used, len - used, "]");
}

static void on_sigusr1(int sig)
{
    (void)sig;
    stats_requested = 1;
}

static int wait_ready(int n_services, long timeout_s)
{
    uint64_t deadline = hil_time_us() + (uint64_t)timeout_s * 1000000u;
    for (int ready = 0; ready < n_services; ready++) {
        int64_t left_ms = (int64_t)(deadline - hil_time_us()) / 1000;
        if (left_ms <= 0 || !hil_sem_take(ready_sem, (uint32_t)left_ms)) {
            print_line("{\"ready\":false,\"error\":\"services not bound within %ld s\"}", timeout_s);
            return -1;
        }
        if (start_failed) {
            print_line("{\"ready\":false,\"error\":\"a service failed to start; see stderr\"}");
            return -1;
        }
    }
    all_ready = 1;
    return 0;
}

/* Read stdin with read(), not stdio: several commands arriving together must all be answered. A signal
 * (SIGUSR1) interrupts the read to print the stats. */
static int command_loop(void)
{
    char line[256];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, line + used, sizeof line - 1 - used);
        if (stats_requested) {
            stats_requested = 0;
            print_stats();
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
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

/* The options: the services and the rest; exits 2 on a bad one. */
static int read_options(int argc, char **argv, svc_t *services, options_t *opt)
{
    int n_services = parse_args(argc, argv, services, opt);
    for (int i = 0; i < n_services; i++) {
        if (services[i].kind == SVC_HTTPS && opt->certs_dir == NULL) {
            usage("--https needs --certs DIR (firmware/certs)");
        }
    }
    return n_services;
}

void hil_program_check(int argc, char **argv)
{
    static svc_t services[MAX_SERVICES];
    options_t opt = {0};
    read_options(argc, argv, services, &opt);
}

int hil_program_run(int argc, char **argv)
{
    static svc_t services[MAX_SERVICES];
    options_t opt = {.ready_timeout_s = 10};
    int n_services = read_options(argc, argv, services, &opt);
    /* A peer that vanishes mid-send must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1; /* no SA_RESTART: the signal interrupts the stdin read */
    sigaction(SIGUSR1, &sa, NULL);
    ready_sem = hil_sem_create((uint32_t)n_services, 0);
    if (ready_sem == NULL) {
        perror("hil-services: setup");
        return 1;
    }
    const char *faults = getenv("HIL_FAULTS") ? getenv("HIL_FAULTS") : "";
    apply_faults(faults);
    if (opt.certs_dir != NULL && load_certs(opt.certs_dir, faults) != 0) {
        print_line("{\"ready\":false,\"error\":\"cannot load the certificates in %s; see stderr\"}", opt.certs_dir);
        return 1;
    }
    if (opt.stats_iface != NULL && hil_linux_stats_start(opt.stats_iface) != 0) {
        usage("--stats-iface: no such network interface");
    }
    if (set_mac(&opt) != 0) {
        usage("--mac must look like aa:bb:cc:dd:ee:ff");
    }
    hil_services_set_ready_hook(on_ready, NULL);
    hil_services_set_event_hook(on_event, NULL);
    hil_services_set_crash_hook(on_crash, NULL);
    if (opt.l2_echo != 0 && hil_l2_echo_start((uint16_t)opt.l2_echo) != 0) {
        print_line("{\"ready\":false,\"error\":\"the L2 echo did not start (no tap on this stack?)\"}");
        return 1;
    }
    /* SIGUSR1 must reach this thread (to interrupt its stdin read): the service threads block it. */
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    for (int i = 0; i < n_services; i++) {
        if (hil_thread_start("hil_svc", service_thread, &services[i], 8192, 5) != 0) {
            perror("hil-services: thread");
            return 1;
        }
    }
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
    if (wait_ready(n_services, opt.ready_timeout_s) != 0) {
        return 1;
    }
    pthread_mutex_lock(&out_lock);
    char services_json[sizeof ready_json];
    snprintf(services_json, sizeof services_json, "%s", ready_json);
    pthread_mutex_unlock(&out_lock);
    char unknown[512];
    unknown_faults(faults, unknown, sizeof unknown);
    char stack[64] = "";
    if (hooks.stack != NULL) {
        snprintf(stack, sizeof stack, "\"stack\":\"%s\",", hooks.stack);
    }
    print_line("{\"ready\":true,\"pid\":%ld,%s\"unknown_faults\":%s,\"services\":{%s}}", (long)getpid(), stack,
               unknown, services_json);
    return command_loop();
}
