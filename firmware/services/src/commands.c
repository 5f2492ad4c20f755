/* The console commands of the services (PROTOCOL.md "Console commands"): mqtt, tls, mcast, l2tap, loopback.
 * Each writes the members of its one HIL_RESULT; the program prints them its own way (a HIL_RESULT
 * line on the console, a JSON line on hil-services' stdout). */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h> /* AF_INET (on ESP-IDF, lwIP declares inet_pton there too) */

#include "hil_proto.h"
#include "hil_services.h"

static void result_head(hil_members_t *m, const char *cmd, int ok, const char *error)
{
    hil_members_str(m, "cmd", cmd);
    hil_members_bool(m, "ok", ok);
    if (!ok) {
        hil_members_str(m, "error", error);
    }
}

static void cmd_mqtt(hil_members_t *m, int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "connect") == 0) {
        hil_mqtt_connect_result_t r;
        int ok = hil_mqtt_connect(argv[2], &r) == 0;
        result_head(m, "mqtt", ok, r.error);
        if (ok) {
            hil_members_str(m, "action", "connect");
        }
        hil_members_str(m, "uri", argv[2]);
        if (ok) {
            hil_members_str(m, "topic_in", r.topic_in);
            hil_members_str(m, "topic_out", r.topic_out);
            hil_members_u64(m, "connect_ms", r.connect_ms);
        }
    } else if (argc == 2 && strcmp(argv[1], "disconnect") == 0) {
        int ok = hil_mqtt_disconnect() == 0;
        result_head(m, "mqtt", ok, "not connected");
        if (ok) {
            hil_members_str(m, "action", "disconnect");
        }
    } else {
        result_head(m, "mqtt", 0, "usage: mqtt connect <uri> | mqtt disconnect");
    }
}

static void cmd_tls(hil_members_t *m, int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "get") != 0 || strncmp(argv[2], "https://", 8) != 0) {
        result_head(m, "tls", 0, "usage: tls get <https-url>");
        return;
    }
    hil_tls_get_result_t r;
    int ok = hil_tls_get(argv[2], &r) == 0;
    result_head(m, "tls", ok, r.error);
    hil_members_str(m, "url", argv[2]);
    if (ok) {
        hil_members_i64(m, "status", r.status);
        hil_members_u64(m, "bytes", r.bytes);
        hil_members_u64(m, "duration_ms", r.duration_ms);
    }
}

static void cmd_mcast(hil_members_t *m, int argc, char **argv)
{
    int join = argc == 3 && strcmp(argv[1], "join") == 0;
    int leave = argc == 3 && strcmp(argv[1], "leave") == 0;
    if (!join && !leave) {
        result_head(m, "mcast", 0, "usage: mcast join|leave <group>");
        return;
    }
    struct in_addr group;
    if (inet_pton(AF_INET, argv[2], &group) != 1 || !IN_MULTICAST(ntohl(group.s_addr))) {
        char error[64];
        snprintf(error, sizeof error, "not a multicast group: %s", argv[2]);
        result_head(m, "mcast", 0, error);
        return;
    }
    int ok = hil_mcast_membership(argv[2], join) == 0;
    result_head(m, "mcast", ok, join ? "join failed" : "leave failed");
    if (ok) {
        hil_members_str(m, "action", join ? "join" : "leave");
        hil_members_str(m, "group", argv[2]);
        hil_members_u64(m, "port", hil_mcast_echo_port());
    }
}

static void cmd_l2tap(hil_members_t *m, int argc, char **argv)
{
    int on = argc == 3 && strcmp(argv[1], "on") == 0;
    int off = argc == 3 && strcmp(argv[1], "off") == 0;
    if (!on && !off) {
        result_head(m, "l2tap", 0, "usage: l2tap on|off <ethertype>");
        return;
    }
    char *end = NULL;
    unsigned long value = strtoul(argv[2], &end, 0); /* 0x88b5 or 34997 */
    if (end == argv[2] || *end != '\0' || value < 0x0600 || value > 0xffff) {
        char error[64];
        snprintf(error, sizeof error, "bad ethertype: %s", argv[2]);
        result_head(m, "l2tap", 0, error);
        return;
    }
    hil_l2_counters_t counters;
    int ok = on ? hil_l2_tap_on((uint16_t)value) == 0 : hil_l2_tap_off((uint16_t)value, &counters) == 0;
    result_head(m, "l2tap", ok, on ? "no free tap slot" : "not on");
    if (ok) {
        hil_members_str(m, "action", on ? "on" : "off");
        hil_members_u64(m, "ethertype", value);
    }
    if (ok && off) {
        hil_members_u64(m, "rx", counters.rx);
        hil_members_u64(m, "echoed", counters.echoed);
        hil_members_u64(m, "dropped", counters.dropped);
    }
}

static void cmd_loopback(hil_members_t *m, int argc, char **argv)
{
    hil_loopback_mode_t mode = HIL_LOOPBACK_RECVFROM;
    if (argc == 2 && strcmp(argv[1], "recv") == 0) {
        mode = HIL_LOOPBACK_RECV;
    } else if (argc == 2 && strcmp(argv[1], "ephemeral") == 0) {
        mode = HIL_LOOPBACK_EPHEMERAL;
    } else if (argc > 2 || (argc == 2 && strcmp(argv[1], "recvfrom") != 0)) {
        result_head(m, "loopback", 0, "usage: loopback [recvfrom|recv|ephemeral]");
        return;
    }
    hil_loopback_result_t r;
    int ok = hil_loopback_check(mode, &r) == 0;
    result_head(m, "loopback", ok, r.error);
    hil_members_str(m, "mode", argc == 2 ? argv[1] : "recvfrom");
    if (r.port != 0) {
        hil_members_u64(m, "port", r.port);
    }
    if (ok || r.sent > 0) {
        hil_members_u64(m, "sent", (uint64_t)r.sent);
        hil_members_u64(m, "received", (uint64_t)r.received);
        hil_members_u64(m, "bytes", r.bytes);
        hil_members_u64(m, "duration_us", r.duration_us);
    }
}

int hil_services_command(int argc, char **argv, char *out, size_t out_len)
{
    if (argc < 1) {
        return 0;
    }
    hil_members_t m;
    hil_members_init(&m, out, out_len);
    if (strcmp(argv[0], "mqtt") == 0) {
        cmd_mqtt(&m, argc, argv);
    } else if (strcmp(argv[0], "tls") == 0) {
        cmd_tls(&m, argc, argv);
    } else if (strcmp(argv[0], "mcast") == 0) {
        cmd_mcast(&m, argc, argv);
    } else if (strcmp(argv[0], "l2tap") == 0) {
        cmd_l2tap(&m, argc, argv);
    } else if (strcmp(argv[0], "loopback") == 0) {
        cmd_loopback(&m, argc, argv);
    } else {
        return 0;
    }
    if (!hil_members_ok(&m)) {
        /* An argument too long for the reply: answer without echoing it. */
        hil_members_init(&m, out, out_len);
        result_head(&m, argv[0], 0, "reply too long");
    }
    return 1;
}
