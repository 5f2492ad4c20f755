/*
 * The console: reads lines from UART0 itself and dispatches them through esp_console_run().
 * Not esp_console_new_repl_uart(): its linenoise line editor echoes input, and PROTOCOL.md says
 * the firmware echoes nothing (the harness reads every byte the board sends as output).
 */
#include <string.h>

#include "driver/uart.h"
#include "driver/uart_vfs.h"
#include "esp_console.h"
#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "hil_app.h"
#include "hil_proto.h"

#define CONSOLE_UART CONFIG_ESP_CONSOLE_UART_NUM
#define LINE_BYTES 256
#define MAX_ARGS 8

static const char *TAG = "hil_console";

static void run_line(char *line)
{
    char words_buf[LINE_BYTES];
    char *argv[MAX_ARGS];
    strcpy(words_buf, line);
    int argc = hil_proto_split_args(words_buf, argv, MAX_ARGS);
    if (argc == 0) {
        hil_prompt();
        return;
    }
    if (argc < 0) {
        hil_result_error("", "too many arguments", NULL);
        hil_prompt();
        return;
    }
    /* Rebuild the line with single spaces. PROTOCOL.md forbids quotes and backslashes, so
     * esp_console's own splitting then yields exactly the protocol's words. */
    char joined[LINE_BYTES];
    joined[0] = '\0';
    for (int i = 0; i < argc; i++) {
        if (strpbrk(argv[i], "\"'\\")) {
            hil_result_error(argv[0], "quotes and backslashes are not allowed", NULL);
            hil_prompt();
            return;
        }
        if (i) {
            strcat(joined, " ");
        }
        strcat(joined, argv[i]);
    }
    int ret = 0;
    esp_err_t err = esp_console_run(joined, &ret);
    if (err == ESP_ERR_NOT_FOUND) {
        hil_result_error(argv[0], "unknown command", NULL);
    } else if (err != ESP_OK) {
        hil_result_error(argv[0], esp_err_to_name(err), NULL);
    }
    hil_prompt();
}

static void console_task(void *arg)
{
    (void)arg;
    char line[LINE_BYTES];
    size_t len = 0;
    bool too_long = false;
    hil_prompt();
    for (;;) {
        uint8_t c;
        if (uart_read_bytes(CONSOLE_UART, &c, 1, portMAX_DELAY) != 1) {
            continue;
        }
        if (c == '\n') {
            if (too_long) {
                hil_result_error("", "line too long", NULL);
                hil_prompt();
            } else {
                line[len] = '\0';
                run_line(line);
            }
            len = 0;
            too_long = false;
        } else if (len + 1 < sizeof line) {
            line[len++] = (char)c; /* '\r' is kept: hil_proto_split_args treats it as a blank */
        } else {
            too_long = true;
        }
    }
}

void hil_console_start(void)
{
    /* RX through the driver (interrupt-driven, blocking read); stdout through the same driver so
     * the two never race on the FIFO. */
    ESP_ERROR_CHECK(uart_driver_install(CONSOLE_UART, 1024, 0, 0, NULL, 0));
    uart_vfs_dev_use_driver(CONSOLE_UART);

    esp_console_config_t config = ESP_CONSOLE_CONFIG_DEFAULT();
    config.max_cmdline_length = LINE_BYTES;
    config.max_cmdline_args = MAX_ARGS;
    ESP_ERROR_CHECK(esp_console_init(&config));
    ESP_ERROR_CHECK(hil_cmds_register());
    if (xTaskCreate(console_task, "hil_console", 8192, NULL, 3, NULL) != pdPASS) {
        ESP_LOGE(TAG, "no memory for the console task");
    }
}
