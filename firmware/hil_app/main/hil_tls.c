/* `tls get <url>`: esp_http_client over esp-tls, server verified against the HIL test CA. */
#include <string.h>

#include "esp_http_client.h"
#include "esp_timer.h"
#include "hil_app.h"

#define USAGE "usage: tls get <https-url>"

int hil_cmd_tls(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "get") != 0 || strncmp(argv[2], "https://", 8) != 0) {
        hil_result_error("tls", USAGE, NULL);
        return 0;
    }
    const char *url = argv[2];
    char url_member[300];
    app_json_t uj;
    app_json_init(&uj, url_member, sizeof url_member);
    app_json_str(&uj, "url", url);

    esp_http_client_config_t config = {
        .url = url,
        .cert_pem = hil_test_ca_pem_start, /* host name checked too (no skip_cert_common_name_check) */
        .timeout_ms = 10000,
        .buffer_size = 2048,
    };
    int64_t start_us = esp_timer_get_time();
    esp_http_client_handle_t client = esp_http_client_init(&config);
    if (!client) {
        hil_result_error("tls", "ESP_ERR_NO_MEM", app_json_members(&uj));
        return 0;
    }
    esp_err_t err = esp_http_client_open(client, 0);
    uint64_t bytes = 0;
    int status = 0;
    if (err == ESP_OK && esp_http_client_fetch_headers(client) < 0) {
        err = ESP_FAIL;
    }
    if (err == ESP_OK) {
        status = esp_http_client_get_status_code(client);
        static char body[1024];
        int n;
        while ((n = esp_http_client_read(client, body, sizeof body)) > 0) {
            bytes += (uint64_t)n;
        }
        if (n < 0) {
            err = ESP_FAIL;
        }
    }
    esp_http_client_close(client);
    esp_http_client_cleanup(client);
    if (err != ESP_OK) {
        hil_result_error("tls", esp_err_to_name(err), app_json_members(&uj));
        return 0;
    }
    char buf[400];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "url", url);
    app_json_i64(&j, "status", status);
    app_json_u64(&j, "bytes", bytes);
    app_json_i64(&j, "duration_ms", (esp_timer_get_time() - start_us) / 1000);
    hil_result_ok("tls", app_json_members(&j));
    return 0;
}
