/* `crash <kind>`: real crashes, so users can prove on hardware that the harness catches them. */
#include <stdlib.h>
#include <string.h>

#include "esp_task_wdt.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "hil_app.h"

#define USAGE "usage: crash panic|abort|wdt|stack_overflow|rust_panic"

static void wdt_spin_task(void *arg)
{
    (void)arg;
    /* Subscribed and never reset: the task watchdog fires after CONFIG_ESP_TASK_WDT_TIMEOUT_S and
     * panics (CONFIG_ESP_TASK_WDT_PANIC=y in sdkconfig.defaults). */
    esp_task_wdt_add(NULL);
    for (;;) {
        __asm__ volatile("nop");
    }
}

static uint32_t __attribute__((noinline)) recurse(uint32_t depth)
{
    volatile uint8_t pad[128];
    for (size_t i = 0; i < sizeof pad; i++) {
        pad[i] = (uint8_t)(depth + i);
    }
    if (depth == UINT32_MAX) { /* never reached; keeps -Winfinite-recursion quiet */
        return pad[0];
    }
    /* Using pad after the call forbids a tail call, so every level keeps its frame. */
    return recurse(depth + 1) + pad[depth % sizeof pad];
}

static void stack_overflow_task(void *arg)
{
    (void)arg;
    recurse(0);
    vTaskDelete(NULL);
}

static void park_forever(void)
{
    /* The crash happens in another task: keep the console from printing a prompt meanwhile. */
    for (;;) {
        vTaskDelay(pdMS_TO_TICKS(1000));
    }
}

int hil_cmd_crash(int argc, char **argv)
{
    if (argc != 2) {
        hil_result_error("crash", USAGE, NULL);
        return 0;
    }
    const char *kind = argv[1];
    if (strcmp(kind, "rust_panic") == 0) {
        /* esp_smoltcp_glue exports no call that panics on request, and calling its FFI outside the
         * stack's poll task would break its threading contract. Its panic handler only calls
         * abort(), which `crash abort` already shows. */
        hil_result_error("crash",
                         "unsupported: esp_smoltcp_glue has no panic trigger; a glue panic is an abort() "
                         "(use crash abort)",
                         NULL);
        return 0;
    }
    if (strcmp(kind, "panic") && strcmp(kind, "abort") && strcmp(kind, "wdt") && strcmp(kind, "stack_overflow")) {
        hil_result_error("crash", USAGE, NULL);
        return 0;
    }
    char members[48];
    app_json_t j;
    app_json_init(&j, members, sizeof members);
    app_json_str(&j, "kind", kind);
    hil_result_ok("crash", app_json_members(&j));
    hil_out_drain();

    if (strcmp(kind, "panic") == 0) {
        __asm__ volatile("unimp"); /* RISC-V: "Guru Meditation Error: ... (Illegal instruction)" */
    } else if (strcmp(kind, "abort") == 0) {
        abort();
    } else if (strcmp(kind, "wdt") == 0) {
        xTaskCreatePinnedToCore(wdt_spin_task, "hil_wdt", 3072, NULL, tskIDLE_PRIORITY + 1, NULL, 0);
        park_forever();
    } else {
        xTaskCreate(stack_overflow_task, "hil_ovf", 2048, NULL, 5, NULL);
        park_forever();
    }
    return 0;
}
