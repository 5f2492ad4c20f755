/* L2 echo (PROTOCOL.md "L2 echo") through the stack's L2 tap (hil_net_l2_tap / hil_net_l2_send), and
 * `l2tap on|off <ethertype>`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "hil_app.h"
#include "hil_net.h"

#define USAGE "usage: l2tap on|off <ethertype>"
#define MAX_TAPS HIL_NET_L2_TAPS /* esp_smoltcp's own limit, kept on lwIP too */
#define ETH_HEADER 14
#define FRAME_MAX 1514
#define REQUEST_HEADER 10 /* "HIL2" + seq(4) + len(2) */
#define TIMESTAMPS 16
#define QUEUE_DEPTH 8

typedef struct {
    uint16_t ethertype;
    bool on;
    uint32_t rx, echoed, dropped;
} tap_t;

typedef struct {
    uint16_t len;
    int8_t slot;
    int64_t rx_hw_ns;
    int64_t rx_us;
    uint8_t frame[FRAME_MAX];
} queued_frame_t;

static tap_t taps[MAX_TAPS];
static QueueHandle_t frames;
static SemaphoreHandle_t taps_lock;

/* On the stack's RX path: copy and queue, nothing else. */
static void on_frame(const uint8_t *frame, size_t len, int64_t hw_ns, void *user)
{
    tap_t *tap = user;
    tap->rx++;
    static queued_frame_t item; /* only the stack's RX task runs this callback */
    if (len > FRAME_MAX) {
        tap->dropped++;
        return;
    }
    item.len = (uint16_t)len;
    item.slot = (int8_t)(tap - taps);
    item.rx_hw_ns = hw_ns > 0 ? hw_ns : 0;
    item.rx_us = esp_timer_get_time();
    memcpy(item.frame, frame, len);
    if (xQueueSend(frames, &item, 0) != pdTRUE) {
        tap->dropped++;
    }
}

static void put_be64(uint8_t *p, int64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static void echo_task(void *arg)
{
    (void)arg;
    static queued_frame_t in;
    static uint8_t out[FRAME_MAX];
    for (;;) {
        xQueueReceive(frames, &in, portMAX_DELAY);
        tap_t *tap = &taps[in.slot];
        const uint8_t *payload = in.frame + ETH_HEADER;
        size_t payload_len = in.len > ETH_HEADER ? in.len - ETH_HEADER : 0;
        size_t data_len = payload_len >= REQUEST_HEADER ? (size_t)((payload[8] << 8) | payload[9]) : 0;
        if (payload_len < REQUEST_HEADER || memcmp(payload, "HIL2", 4) != 0 ||
            REQUEST_HEADER + data_len > payload_len || ETH_HEADER + REQUEST_HEADER + data_len + TIMESTAMPS > FRAME_MAX) {
            tap->dropped++;
            continue;
        }
        uint8_t mac[6];
        hil_eth_mac(mac);
        memcpy(out, in.frame + 6, 6); /* back to the sender */
        memcpy(out + 6, mac, 6);
        memcpy(out + 12, in.frame + 12, 2); /* same EtherType */
        memcpy(out + ETH_HEADER, payload, REQUEST_HEADER + data_len);
        uint8_t *ts = out + ETH_HEADER + REQUEST_HEADER + data_len;
        put_be64(ts, in.rx_hw_ns);
        put_be64(ts + 8, in.rx_us);
        size_t out_len = ETH_HEADER + REQUEST_HEADER + data_len + TIMESTAMPS;
        if (hil_net_l2_send(out, out_len) == ESP_OK) {
            tap->echoed++;
        } else {
            tap->dropped++;
        }
    }
}

static esp_err_t tap_on(uint16_t ethertype)
{
    for (int i = 0; i < MAX_TAPS; i++) {
        if (taps[i].on && taps[i].ethertype == ethertype) {
            return ESP_OK;
        }
    }
    for (int i = 0; i < MAX_TAPS; i++) {
        if (!taps[i].on) {
            taps[i] = (tap_t){.ethertype = ethertype, .on = true};
            esp_err_t err = hil_net_l2_tap(ethertype, on_frame, &taps[i]);
            if (err != ESP_OK) {
                taps[i].on = false;
            }
            return err;
        }
    }
    return ESP_ERR_NO_MEM;
}

esp_err_t hil_l2_start(void)
{
    frames = xQueueCreate(QUEUE_DEPTH, sizeof(queued_frame_t));
    taps_lock = xSemaphoreCreateMutex();
    if (!frames || !taps_lock || xTaskCreate(echo_task, "hil_l2echo", 4096, NULL, 6, NULL) != pdPASS) {
        return ESP_ERR_NO_MEM;
    }
    return tap_on(HIL_L2_ECHO_ETHERTYPE);
}

int hil_cmd_l2tap(int argc, char **argv)
{
    bool on = argc == 3 && strcmp(argv[1], "on") == 0;
    bool off = argc == 3 && strcmp(argv[1], "off") == 0;
    if (!on && !off) {
        hil_result_error("l2tap", USAGE, NULL);
        return 0;
    }
    char *end = NULL;
    unsigned long value = strtoul(argv[2], &end, 0); /* 0x88b5 or 34997 */
    if (end == argv[2] || *end || value < 0x0600 || value > 0xffff) {
        char error[64];
        snprintf(error, sizeof error, "bad ethertype: %s", argv[2]);
        hil_result_error("l2tap", error, NULL);
        return 0;
    }
    uint16_t ethertype = (uint16_t)value;
    char buf[200];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "action", on ? "on" : "off");
    app_json_u64(&j, "ethertype", ethertype);
    xSemaphoreTake(taps_lock, portMAX_DELAY);
    if (on) {
        esp_err_t err = tap_on(ethertype);
        xSemaphoreGive(taps_lock);
        if (err != ESP_OK) {
            hil_result_error("l2tap", "no free tap slot", NULL);
        } else {
            hil_result_ok("l2tap", app_json_members(&j));
        }
        return 0;
    }
    for (int i = 0; i < MAX_TAPS; i++) {
        if (taps[i].on && taps[i].ethertype == ethertype) {
            hil_net_l2_tap(ethertype, NULL, NULL);
            taps[i].on = false;
            app_json_u64(&j, "rx", taps[i].rx);
            app_json_u64(&j, "echoed", taps[i].echoed);
            app_json_u64(&j, "dropped", taps[i].dropped);
            xSemaphoreGive(taps_lock);
            hil_result_ok("l2tap", app_json_members(&j));
            return 0;
        }
    }
    xSemaphoreGive(taps_lock);
    hil_result_error("l2tap", "not on", NULL);
    return 0;
}
