/*
 * hil_app: the HIL test firmware for esp-smoltcp on the ESP32-P4 (Waveshare P4-Nano).
 * Everything it prints and serves is specified in firmware/PROTOCOL.md.
 */
#include <stdlib.h>
#include <string.h>

#include "esp_heap_caps.h"
#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/task.h"
#include "hil_app.h"
#include "hil_net.h"
#include "hil_services.h"

static const char *TAG = "hil_app";

#define WAIT_FOR_IP_MS 15000

static QueueHandle_t event_queue;
static TaskHandle_t stats_task_handle;
static volatile uint32_t stats_period_s;

/* Runs on the stack's own task: only queue, never print (a 150-byte line takes 13 ms at 115200 baud
 * and would stall the stack). */
static void on_stack_event(hil_net_event_t event, void *user)
{
    (void)user;
    xQueueSend(event_queue, &event, 0);
}

static void event_task(void *arg)
{
    (void)arg;
    uint32_t last_ip = 0;
    hil_net_event_t event;
    for (;;) {
        xQueueReceive(event_queue, &event, portMAX_DELAY);
        char buf[256], ip[16], mask[16], gw[16];
        app_json_t j;
        app_json_init(&j, buf, sizeof buf);
        switch (event) {
        case HIL_NET_LINK_UP:
            app_json_str(&j, "event", "link_up");
            app_json_str(&j, "iface", "eth");
            break;
        case HIL_NET_LINK_DOWN:
            app_json_str(&j, "event", "link_down");
            app_json_str(&j, "iface", "eth");
            break;
        case HIL_NET_GOT_IP:
            last_ip = hil_net_ipv4();
            hil_format_ipv4(last_ip, ip);
            hil_format_ipv4(hil_net_netmask(), mask);
            hil_format_ipv4(hil_net_gateway(), gw);
            app_json_str(&j, "event", "got_ip");
            app_json_str(&j, "iface", "eth");
            app_json_str(&j, "ip", ip);
            app_json_str(&j, "netmask", mask);
            app_json_str(&j, "gw", gw);
            /* Neither stack's API exposes the lease here: PROTOCOL.md defines 0 as "unknown". */
            app_json_u64(&j, "lease_s", 0);
            break;
        case HIL_NET_LOST_IP:
            hil_format_ipv4(last_ip, ip);
            app_json_str(&j, "event", "lost_ip");
            app_json_str(&j, "iface", "eth");
            app_json_str(&j, "ip", ip);
            last_ip = 0;
            break;
        case HIL_NET_NTP_SYNCED:
            app_json_str(&j, "event", "ntp_synced");
            app_json_str(&j, "iface", "eth");
            break;
        default:
            continue;
        }
        hil_emit("HIL_EVENT", app_json_members(&j));
    }
}

static void stats_task(void *arg)
{
    (void)arg;
    for (;;) {
        uint32_t period = stats_period_s;
        /* A notification (new period) ends the wait early, so a change applies at once. */
        /* period * configTICK_RATE_HZ: pdMS_TO_TICKS(period * 1000) overflows 32 bits above 4294 s. */
        TickType_t wait = period ? (TickType_t)period * configTICK_RATE_HZ : portMAX_DELAY;
        if (ulTaskNotifyTake(pdTRUE, wait) == 0 && period) {
            hil_emit_stats("period");
        }
    }
}

void hil_stats_set_period(uint32_t seconds)
{
    stats_period_s = seconds;
    xTaskNotifyGive(stats_task_handle);
}

typedef struct {
    const char *name;
    int (*run)(void);
    uint32_t stack;
} service_t;

static int run_iperf3(void) { return hil_iperf3_server_run(HIL_PORT_IPERF3); }
static int run_select_echo(void)
{
    return hil_select_echo_run(HIL_PORT_SELECT_ECHO_TCP, HIL_PORT_SELECT_ECHO_UDP_BASE, HIL_SELECT_ECHO_UDP_COUNT);
}
static int run_tcp_echo(void) { return hil_tcp_echo_run(HIL_PORT_TCP_ECHO); }
static int run_udp_echo(void) { return hil_udp_echo_run(HIL_PORT_UDP_ECHO); }

static const service_t services[] = {
    {"hil_iperf3", run_iperf3, 8192},
    {"hil_select", run_select_echo, 6144},
    {"hil_tcpecho", run_tcp_echo, 4096},
    {"hil_udpecho", run_udp_echo, 4096},
};

static void service_task(void *arg)
{
    const service_t *svc = arg;
    /* The *_run functions serve forever; returning means setup failed (already logged). */
    if (svc->run() != 0) {
        ESP_LOGE(TAG, "%s failed to start", svc->name);
    }
    vTaskDelete(NULL);
}

static void start_services(void)
{
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++) {
        if (xTaskCreate(service_task, services[i].name, services[i].stack, (void *)&services[i], 5, NULL) != pdPASS) {
            ESP_LOGE(TAG, "no memory for task %s", services[i].name);
        }
    }
    if (hil_http_start() != ESP_OK) {
        ESP_LOGE(TAG, "HTTP/HTTPS servers failed to start");
    }
    if (hil_mcast_start() != ESP_OK) {
        ESP_LOGE(TAG, "multicast echo failed to start");
    }
    if (hil_l2_start() != ESP_OK) {
        ESP_LOGE(TAG, "L2 echo failed to start");
    }
}

/* What bring-up left of the heap, so a build that over-commits internal RAM says so before any test. */
static void log_heap(const char *when)
{
    ESP_LOGI(TAG, "heap %s: free %u (internal %u), minimum free %u (internal %u)", when,
             (unsigned)heap_caps_get_free_size(MALLOC_CAP_DEFAULT),
             (unsigned)heap_caps_get_free_size(MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT),
             (unsigned)heap_caps_get_minimum_free_size(MALLOC_CAP_DEFAULT),
             (unsigned)heap_caps_get_minimum_free_size(MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT));
}

void app_main(void)
{
    /* The stack first: on esp-smoltcp it initialises NVS and creates the default event loop itself,
     * which esp_eth needs before its driver starts. */
    ESP_ERROR_CHECK(hil_net_init());
    hil_out_init();

    esp_eth_handle_t eth = hil_eth_install();
    if (!eth) {
        abort(); /* nothing to test without Ethernet; the crash detector reports it */
    }

    event_queue = xQueueCreate(16, sizeof(hil_net_event_t));
    ESP_ERROR_CHECK(hil_net_attach_eth(eth, on_stack_event, NULL));

    /* HIL_HELLO first; events queued meanwhile (link_up) follow it, as PROTOCOL.md orders them. */
    hil_emit_hello();
    xTaskCreate(event_task, "hil_events", 4096, NULL, 6, NULL);
    xTaskCreate(stats_task, "hil_stats", 4096, NULL, 4, &stats_task_handle);

    if (hil_net_wait_for_ip(WAIT_FOR_IP_MS) != ESP_OK) {
        ESP_LOGW(TAG, "no IPv4 address after %d ms; services start anyway", WAIT_FOR_IP_MS);
    }
    start_services();
    hil_console_start();
    log_heap("after bring-up");
}
