/* `mqtt connect <uri>` / `mqtt disconnect`: esp-mqtt with a broker URI given at run time; echoes
 * hil/<mac12>/in to hil/<mac12>/out. */
#include <stdio.h>
#include <string.h>

#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "hil_app.h"
#include "mqtt_client.h"

#define USAGE "usage: mqtt connect <uri> | mqtt disconnect"
#define CONNECT_TIMEOUT_MS 10000
#define BIT_CONNECTED BIT0
#define BIT_FAILED BIT1

static esp_mqtt_client_handle_t client;
static EventGroupHandle_t bits;
static char uri_copy[200];
static char topic_in[32];
static char topic_out[32];
static char client_id[24];
static volatile bool connected;

static void emit_state(const char *state)
{
    char buf[300];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "event", "mqtt");
    app_json_str(&j, "iface", "eth");
    app_json_str(&j, "state", state);
    app_json_str(&j, "uri", uri_copy);
    hil_emit("HIL_EVENT", app_json_members(&j));
}

static void on_mqtt_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    esp_mqtt_event_handle_t event = data;
    switch ((esp_mqtt_event_id_t)id) {
    case MQTT_EVENT_CONNECTED:
        esp_mqtt_client_subscribe(event->client, topic_in, 1);
        if (connected) {
            emit_state("connected"); /* a reconnect after the command already replied */
        }
        connected = true;
        xEventGroupSetBits(bits, BIT_CONNECTED);
        break;
    case MQTT_EVENT_DISCONNECTED:
        if (connected) {
            emit_state("disconnected");
        }
        break;
    case MQTT_EVENT_ERROR:
        if (connected) {
            emit_state("error");
        } else {
            xEventGroupSetBits(bits, BIT_FAILED);
        }
        break;
    case MQTT_EVENT_DATA:
        /* Echo whole messages only (esp-mqtt splits messages larger than its buffer). */
        if (event->current_data_offset == 0 && event->data_len == event->total_data_len &&
            event->topic_len == (int)strlen(topic_in) && memcmp(event->topic, topic_in, event->topic_len) == 0) {
            esp_mqtt_client_enqueue(event->client, topic_out, event->data, event->data_len, event->qos, 0, true);
        }
        break;
    default:
        break;
    }
}

static void destroy_client(void)
{
    if (client) {
        esp_mqtt_client_destroy(client); /* stops the client task first */
        client = NULL;
    }
    connected = false;
}

static int mqtt_connect_cmd(const char *uri)
{
    if (client) {
        hil_result_error("mqtt", "already connected", NULL);
        return 0;
    }
    if (!bits) {
        bits = xEventGroupCreate();
    }
    xEventGroupClearBits(bits, BIT_CONNECTED | BIT_FAILED);
    snprintf(uri_copy, sizeof uri_copy, "%s", uri);
    uint8_t mac[6];
    hil_eth_mac(mac);
    snprintf(topic_in, sizeof topic_in, "hil/%02x%02x%02x%02x%02x%02x/in", mac[0], mac[1], mac[2], mac[3], mac[4],
             mac[5]);
    snprintf(topic_out, sizeof topic_out, "hil/%02x%02x%02x%02x%02x%02x/out", mac[0], mac[1], mac[2], mac[3],
             mac[4], mac[5]);
    snprintf(client_id, sizeof client_id, "hil-%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
             mac[5]);

    esp_mqtt_client_config_t config = {
        .broker.address.uri = uri_copy,
        /* mqtts://: verify the broker against the HIL test CA (ignored for mqtt://). */
        .broker.verification.certificate = hil_test_ca_pem_start,
        .credentials.client_id = client_id,
        /* Whole messages up to 64 KiB (PROTOCOL.md): esp-mqtt splits anything larger than its buffer. */
        .buffer.size = 64 * 1024 + 512,
    };
    int64_t start_us = esp_timer_get_time();
    client = esp_mqtt_client_init(&config);
    if (!client) {
        hil_result_error("mqtt", "connect failed: bad uri or no memory", NULL);
        return 0;
    }
    esp_mqtt_client_register_event(client, ESP_EVENT_ANY_ID, on_mqtt_event, NULL);
    if (esp_mqtt_client_start(client) != ESP_OK) {
        destroy_client();
        hil_result_error("mqtt", "connect failed: client did not start", NULL);
        return 0;
    }
    EventBits_t got = xEventGroupWaitBits(bits, BIT_CONNECTED | BIT_FAILED, pdFALSE, pdFALSE,
                                          pdMS_TO_TICKS(CONNECT_TIMEOUT_MS));
    char uri_member[260];
    app_json_t uj;
    app_json_init(&uj, uri_member, sizeof uri_member);
    app_json_str(&uj, "uri", uri_copy);
    if (!(got & BIT_CONNECTED)) {
        destroy_client();
        hil_result_error("mqtt", (got & BIT_FAILED) ? "connect failed: transport or broker error" : "timeout",
                         app_json_members(&uj));
        return 0;
    }
    char buf[400];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "action", "connect");
    app_json_str(&j, "uri", uri_copy);
    app_json_str(&j, "topic_in", topic_in);
    app_json_str(&j, "topic_out", topic_out);
    app_json_i64(&j, "connect_ms", (esp_timer_get_time() - start_us) / 1000);
    hil_result_ok("mqtt", app_json_members(&j));
    return 0;
}

int hil_cmd_mqtt(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "connect") == 0) {
        return mqtt_connect_cmd(argv[2]);
    }
    if (argc == 2 && strcmp(argv[1], "disconnect") == 0) {
        if (!client) {
            hil_result_error("mqtt", "not connected", NULL);
            return 0;
        }
        destroy_client();
        hil_result_ok("mqtt", "\"action\":\"disconnect\"");
        return 0;
    }
    hil_result_error("mqtt", USAGE, NULL);
    return 0;
}
