/* Console commands of PROTOCOL.md that need no service of their own; the registry of all. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_console.h"
#include "esp_heap_caps.h"
#include "esp_system.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "hil_app.h"
#include "hil_net.h"
#include "hil_services.h"
#include "lwip/sockets.h"

static int cmd_help(int argc, char **argv);

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    hil_emit_hello();
    hil_result_ok("version", NULL);
    return 0;
}

static int cmd_ip(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char buf[400], ip[16], mask[16], gw[16], mac_text[18], ipv6[40] = "";
    uint8_t mac[6], ll[16];
    hil_format_ipv4(hil_net_ipv4(), ip);
    hil_format_ipv4(hil_net_netmask(), mask);
    hil_format_ipv4(hil_net_gateway(), gw);
    hil_eth_mac(mac);
    hil_format_mac(mac, mac_text);
    if (hil_net_ipv6_link_local(ll) == ESP_OK) {
        hil_format_ipv6(ll, ipv6);
    }
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "iface", "eth");
    app_json_str(&j, "ip", ip);
    app_json_str(&j, "netmask", mask);
    app_json_str(&j, "gw", gw);
    app_json_str(&j, "mac", mac_text);
    app_json_str(&j, "ipv6_ll", ipv6);
    hil_result_ok("ip", app_json_members(&j));
    return 0;
}

static int cmd_stats(int argc, char **argv)
{
    if (argc == 1) {
        hil_emit_stats("cmd");
        hil_result_ok("stats", NULL);
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long period = argc == 3 ? strtoul(argv[2], &end, 10) : 0;
    if (argc != 3 || strcmp(argv[1], "period") != 0 || errno || end == argv[2] || *end || period > 86400) {
        hil_result_error("stats", "usage: stats [period <s>]", NULL);
        return 0;
    }
    hil_stats_set_period((uint32_t)period);
    char members[32];
    snprintf(members, sizeof members, "\"period_s\":%lu", period);
    hil_result_ok("stats", members);
    return 0;
}

static int cmd_reboot(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    hil_result_ok("reboot", NULL);
    hil_print_plain("Rebooting...");
    hil_out_drain();
    esp_restart(); /* the ROM then prints rst:0xc (SW_CPU_RESET) */
    return 0;
}

/* Descriptors in use: neither stack has a public query, so probe every descriptor of the table with
 * getsockname(), which both answer for allocated entries only. */
static int count_socket_fds(const hil_net_limits_t *limits)
{
    int used = 0;
    for (int fd = limits->fd_base; fd < limits->fd_base + limits->fds_max; fd++) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr;
        if (getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0) {
            used++;
        }
    }
    return used;
}

static int cmd_sockets(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const hil_net_limits_t *limits = hil_net_limits();
    hil_select_echo_stats_t echo;
    hil_select_echo_get_stats(&echo);
    char echo_members[400], echo_object[404];
    if (hil_select_echo_format_stats(echo_members, sizeof echo_members, &echo) < 0) {
        echo_members[0] = '\0';
    }
    snprintf(echo_object, sizeof echo_object, "{%s}", echo_members);

    char buf[600];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_u64(&j, "active_sockets", hil_net_active_sockets());
    app_json_u64(&j, "sockets_max", (uint64_t)limits->sockets_max);
    app_json_u64(&j, "fds_used", (uint64_t)count_socket_fds(limits));
    app_json_u64(&j, "fds_max", (uint64_t)limits->fds_max);
    app_json_u64(&j, "fd_base", (uint64_t)limits->fd_base);
    app_json_raw(&j, "select_echo", echo_object);
    hil_result_ok("sockets", app_json_members(&j));
    return 0;
}

static void heap_object(uint32_t caps, char *out, size_t len)
{
    multi_heap_info_t info;
    heap_caps_get_info(&info, caps);
    snprintf(out, len, "{\"total\":%u,\"free\":%u,\"min_free\":%u,\"largest_block\":%u}",
             (unsigned)heap_caps_get_total_size(caps), (unsigned)info.total_free_bytes,
             (unsigned)info.minimum_free_bytes, (unsigned)info.largest_free_block);
}

static int cmd_heap(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    static const struct {
        const char *name;
        uint32_t caps;
    } kinds[] = {
        {"default", MALLOC_CAP_DEFAULT},
        {"internal", MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT},
        {"dma", MALLOC_CAP_DMA},
        {"spiram", MALLOC_CAP_SPIRAM},
    };
    char caps[600] = "{";
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (heap_caps_get_total_size(kinds[i].caps) == 0) {
            continue; /* no PSRAM: omit "spiram" */
        }
        char one[128];
        heap_object(kinds[i].caps, one, sizeof one);
        size_t n = strlen(caps);
        snprintf(caps + n, sizeof caps - n, "%s\"%s\":%s", n > 1 ? "," : "", kinds[i].name, one);
    }
    strncat(caps, "}", sizeof caps - strlen(caps) - 1);

    char buf[800];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_u64(&j, "free", heap_caps_get_free_size(MALLOC_CAP_DEFAULT));
    app_json_u64(&j, "min_free", heap_caps_get_minimum_free_size(MALLOC_CAP_DEFAULT));
    app_json_u64(&j, "largest_block", heap_caps_get_largest_free_block(MALLOC_CAP_DEFAULT));
    app_json_raw(&j, "caps", caps);
    hil_result_ok("heap", app_json_members(&j));
    return 0;
}

/* Every command of PROTOCOL.md "Console commands"; `hil firmware check` verifies the list. */
static const esp_console_cmd_t commands[] = {
    {.command = "help", .help = "list the commands", .func = cmd_help},
    {.command = "version", .help = "print HIL_HELLO again", .func = cmd_version},
    {.command = "ip", .help = "IPv4/IPv6 address, netmask, gateway, MAC", .func = cmd_ip},
    {.command = "stats", .help = "print HIL_STATS; 'stats period <s>' prints it every s seconds", .func = cmd_stats},
    {.command = "reboot", .help = "restart the chip", .func = cmd_reboot},
    {.command = "crash", .help = "crash on purpose: panic|abort|wdt|stack_overflow|rust_panic", .func = hil_cmd_crash},
    {.command = "mqtt", .help = "mqtt connect <uri> | mqtt disconnect", .func = hil_cmd_mqtt},
    {.command = "tls", .help = "tls get <https-url>: GET verified against the HIL test CA", .func = hil_cmd_tls},
    {.command = "mcast", .help = "mcast join|leave <group> on the multicast echo socket", .func = hil_cmd_mcast},
    {.command = "l2tap", .help = "l2tap on|off <ethertype>: L2 echo for an EtherType", .func = hil_cmd_l2tap},
    {.command = "loopback", .help = "self-check of the in-RAM 127.0.0.0/8 loopback", .func = hil_cmd_loopback},
    {.command = "sockets", .help = "sockets and FD-table use", .func = cmd_sockets},
    {.command = "heap", .help = "heap free, minimum free, largest block per capability", .func = cmd_heap},
};

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char names[256] = "[";
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char line[160];
        snprintf(line, sizeof line, "  %s - %s", commands[i].command, commands[i].help);
        hil_print_plain(line);
        size_t n = strlen(names);
        snprintf(names + n, sizeof names - n, "%s\"%s\"", i ? "," : "", commands[i].command);
    }
    strncat(names, "]", sizeof names - strlen(names) - 1);
    char members[280];
    snprintf(members, sizeof members, "\"commands\":%s", names);
    hil_result_ok("help", members);
    return 0;
}

esp_err_t hil_cmds_register(void)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        esp_err_t err = esp_console_cmd_register(&commands[i]);
        if (err != ESP_OK) {
            return err;
        }
    }
    return ESP_OK;
}
