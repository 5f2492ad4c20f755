/*
 * hil_app: the HIL test firmware for esp-smoltcp on the ESP32-P4 (Waveshare P4-Nano).
 * Everything it prints and serves is specified in firmware/PROTOCOL.md.
 */
#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_smoltcp.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/task.h"
#include "hil_app.h"
#include "hil_services.h"
#include "nvs_flash.h"

static const char *TAG = "hil_app";

#define WAIT_FOR_IP_MS 15000

typedef struct {
    esp_smoltcp_iface_t iface;
    esp_smoltcp_event_t event;
} stack_event_t;

static QueueHandle_t event_queue;
static TaskHandle_t stats_task_handle;
static volatile uint32_t stats_period_s;

/* Runs on the esp_smoltcp poll task: only queue, never print (a 150-byte line takes 13 ms at
 * 115200 baud and would stall the stack). */
static void on_stack_event(esp_smoltcp_iface_t iface, esp_smoltcp_event_t event, void *user)
{
    (void)user;
    stack_event_t item = {.iface = iface, .event = event};
    xQueueSend(event_queue, &item, 0);
}

static void event_task(void *arg)
{
    (void)arg;
    uint32_t last_ip[ESP_SMOLTCP_IFACE_MAX] = {0};
    stack_event_t item;
    for (;;) {
        xQueueReceive(event_queue, &item, portMAX_DELAY);
        const char *iface = item.iface == ESP_SMOLTCP_IFACE_WIFI ? "wifi" : "eth";
        char buf[256], ip[16], mask[16], gw[16];
        app_json_t j;
        app_json_init(&j, buf, sizeof buf);
        switch (item.event) {
        case ESP_SMOLTCP_EVT_IFACE_UP:
            app_json_str(&j, "event", "link_up");
            app_json_str(&j, "iface", iface);
            break;
        case ESP_SMOLTCP_EVT_IFACE_DOWN:
            app_json_str(&j, "event", "link_down");
            app_json_str(&j, "iface", iface);
            break;
        case ESP_SMOLTCP_EVT_GOT_IP:
            last_ip[item.iface] = esp_smoltcp_get_ipv4(item.iface);
            hil_format_ipv4(last_ip[item.iface], ip);
            hil_format_ipv4(esp_smoltcp_get_netmask(item.iface), mask);
            hil_format_ipv4(esp_smoltcp_get_gateway(item.iface), gw);
            app_json_str(&j, "event", "got_ip");
            app_json_str(&j, "iface", iface);
            app_json_str(&j, "ip", ip);
            app_json_str(&j, "netmask", mask);
            app_json_str(&j, "gw", gw);
            /* esp_smoltcp exposes no lease details: PROTOCOL.md defines 0 as "unknown". */
            app_json_u64(&j, "lease_s", 0);
            break;
        case ESP_SMOLTCP_EVT_LOST_IP:
            hil_format_ipv4(last_ip[item.iface], ip);
            app_json_str(&j, "event", "lost_ip");
            app_json_str(&j, "iface", iface);
            app_json_str(&j, "ip", ip);
            last_ip[item.iface] = 0;
            break;
        case ESP_SMOLTCP_EVT_NTP_SYNCED:
            app_json_str(&j, "event", "ntp_synced");
            app_json_str(&j, "iface", iface);
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
        if (ulTaskNotifyTake(pdTRUE, period ? pdMS_TO_TICKS(period * 1000) : portMAX_DELAY) == 0 && period) {
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

void app_main(void)
{
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);
    ESP_ERROR_CHECK(esp_event_loop_create_default()); /* esp_eth posts its events there */
    hil_out_init();

    esp_eth_handle_t eth = hil_eth_install();
    if (!eth) {
        abort(); /* nothing to test without Ethernet; the crash detector reports it */
    }

    event_queue = xQueueCreate(16, sizeof(stack_event_t));
    ESP_ERROR_CHECK(esp_smoltcp_init());
    ESP_ERROR_CHECK(esp_smoltcp_register_event_cb(on_stack_event, NULL));
    ESP_ERROR_CHECK(esp_smoltcp_attach_eth(eth));

    /* HIL_HELLO first; events queued meanwhile (link_up) follow it, as PROTOCOL.md orders them. */
    hil_emit_hello();
    xTaskCreate(event_task, "hil_events", 4096, NULL, 6, NULL);
    xTaskCreate(stats_task, "hil_stats", 4096, NULL, 4, &stats_task_handle);

    if (esp_smoltcp_wait_for_ip(ESP_SMOLTCP_IFACE_ETH, WAIT_FOR_IP_MS) != ESP_OK) {
        ESP_LOGW(TAG, "no IPv4 address after %d ms; services start anyway", WAIT_FOR_IP_MS);
    }
    start_services();
    hil_console_start();
}
