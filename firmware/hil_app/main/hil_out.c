/* Console output: HIL_* machine lines, plain lines and the prompt, serialised by one mutex. */
#include <stdio.h>
#include <string.h>

#include "driver/uart.h"
#include "esp_app_desc.h"
#include "esp_chip_info.h"
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "hil_app.h"
#include "hil_net.h"
#include "hil_proto.h"

/* Longest line we print: HIL_HELLO and `heap` stay well below this. */
#define LINE_MAX_BYTES 1024

static SemaphoreHandle_t out_lock;
static char line_buf[LINE_MAX_BYTES];

void hil_out_init(void)
{
    out_lock = xSemaphoreCreateMutex();
}

static void write_locked(const char *text, bool newline)
{
    xSemaphoreTake(out_lock, portMAX_DELAY);
    fputs(text, stdout);
    if (newline) {
        fputs("\n", stdout); /* newlib turns it into \r\n (CONFIG_NEWLIB_STDOUT_LINE_ENDING_CRLF) */
    }
    fflush(stdout);
    xSemaphoreGive(out_lock);
}

void hil_emit(const char *keyword, const char *members)
{
    xSemaphoreTake(out_lock, portMAX_DELAY);
    /* esp_log_timestamp(): the same clock as the "(ms)" of every ESP_LOG line. */
    if (hil_proto_format(line_buf, sizeof line_buf, keyword, esp_log_timestamp(), members) < 0) {
        /* Never print a truncated JSON object: say what was lost instead. */
        hil_proto_format(line_buf, sizeof line_buf, "HIL_RESULT", esp_log_timestamp(),
                         "\"cmd\":\"\",\"ok\":false,\"error\":\"line too long for the output buffer\"");
    }
    fputs(line_buf, stdout);
    fputs("\n", stdout);
    fflush(stdout);
    xSemaphoreGive(out_lock);
}

void hil_result_ok(const char *cmd, const char *members)
{
    char buf[LINE_MAX_BYTES - 64];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "cmd", cmd);
    app_json_bool(&j, "ok", true);
    if (members && members[0]) {
        if (j.len + 1 + strlen(members) + 1 <= j.cap) {
            strcat(buf, ",");
            strcat(buf, members);
        } else {
            j.overflow = true;
        }
    }
    if (!app_json_ok(&j)) {
        hil_result_error(cmd, "reply too long", NULL);
        return;
    }
    hil_emit("HIL_RESULT", buf);
}

void hil_result_error(const char *cmd, const char *error, const char *members)
{
    char buf[512];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "cmd", cmd);
    app_json_bool(&j, "ok", false);
    app_json_str(&j, "error", error);
    if (members && members[0] && j.len + 1 + strlen(members) + 1 <= j.cap) {
        strcat(buf, ",");
        strcat(buf, members);
    }
    hil_emit("HIL_RESULT", app_json_members(&j));
}

void hil_print_plain(const char *line)
{
    write_locked(line, true);
}

void hil_prompt(void)
{
    write_locked("hil> ", false);
}

void hil_out_drain(void)
{
    fflush(stdout);
    uart_wait_tx_done(CONFIG_ESP_CONSOLE_UART_NUM, pdMS_TO_TICKS(200));
}

void hil_emit_hello(void)
{
    const esp_app_desc_t *app = esp_app_get_description();
    char elf_sha[65];
    esp_app_get_elf_sha256(elf_sha, sizeof elf_sha);

    esp_chip_info_t chip;
    esp_chip_info(&chip);
    char chip_rev[16];
    snprintf(chip_rev, sizeof chip_rev, "v%d.%d", chip.revision / 100, chip.revision % 100);

    uint8_t mac[6];
    char mac_text[18];
    hil_eth_mac(mac);
    hil_format_mac(mac, mac_text);

    char services[320];
    snprintf(services, sizeof services,
             "{\"http\":%d,\"https\":%d,\"tcp_echo\":%d,\"udp_echo\":%d,\"select_echo_tcp\":%d,"
             "\"select_echo_udp\":%d,\"select_echo_udp_count\":%d,\"iperf3\":%d,\"mcast_echo\":%d,"
             "\"l2_echo_ethertype\":%d}",
             HIL_PORT_HTTP, HIL_PORT_HTTPS, HIL_PORT_TCP_ECHO, HIL_PORT_UDP_ECHO, HIL_PORT_SELECT_ECHO_TCP,
             HIL_PORT_SELECT_ECHO_UDP_BASE, HIL_SELECT_ECHO_UDP_COUNT, HIL_PORT_IPERF3, HIL_PORT_MCAST_ECHO,
             HIL_L2_ECHO_ETHERTYPE);

    char buf[900];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "app", app->project_name);
    app_json_str(&j, "app_version", app->version);
    app_json_str(&j, "idf", app->idf_ver);
    app_json_raw(&j, "components", hil_net_components_json());
    app_json_str(&j, "stack", hil_net_limits()->name);
    app_json_str(&j, "chip", "esp32p4");
    app_json_str(&j, "chip_rev", chip_rev);
    app_json_str(&j, "mac", mac_text);
    app_json_str(&j, "board", HIL_BOARD_NAME);
    app_json_str(&j, "elf_sha256", elf_sha);
    app_json_raw(&j, "services", services);
    hil_emit("HIL_HELLO", app_json_members(&j));
}

static void collect_stats(hil_stats_t *s)
{
    hil_net_counters(s);
    s->heap_free = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
    s->heap_min_free = heap_caps_get_minimum_free_size(MALLOC_CAP_DEFAULT);
    s->uptime_ms = (uint64_t)(esp_timer_get_time() / 1000);
}

void hil_emit_stats(const char *trigger)
{
    hil_stats_t s;
    collect_stats(&s);
    xSemaphoreTake(out_lock, portMAX_DELAY);
    if (hil_proto_format_stats(line_buf, sizeof line_buf, esp_log_timestamp(), trigger, &s) >= 0) {
        fputs(line_buf, stdout);
        fputs("\n", stdout);
        fflush(stdout);
    }
    xSemaphoreGive(out_lock);
}

int hil_stats_object(char *buf, size_t len, const char *trigger)
{
    hil_stats_t s;
    char line[LINE_MAX_BYTES];
    collect_stats(&s);
    if (hil_proto_format_stats(line, sizeof line, esp_log_timestamp(), trigger, &s) < 0) {
        return -1;
    }
    const char *object = strchr(line, '{'); /* drop the "I (ms) hil: HIL_STATS " prefix */
    if (!object || strlen(object) + 1 > len) {
        return -1;
    }
    strcpy(buf, object);
    return (int)strlen(buf);
}
