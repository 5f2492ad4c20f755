/* Platform layer for ESP-IDF: FreeRTOS tasks and mutexes, esp_timer, ESP_LOG*. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "esp_log.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "freertos/task.h"

#include "hil_platform.h"

struct hil_mutex {
    SemaphoreHandle_t handle;
};

typedef struct {
    hil_thread_fn fn;
    void *arg;
} task_start_t;

/* A FreeRTOS task function must never return: delete the task when the service returns. */
static void task_trampoline(void *p)
{
    task_start_t start = *(task_start_t *)p;
    free(p);
    start.fn(start.arg);
    vTaskDelete(NULL);
}

int hil_thread_start(const char *name, hil_thread_fn fn, void *arg, size_t stack_bytes, int priority)
{
    task_start_t *start = malloc(sizeof *start);
    if (start == NULL) {
        return -1;
    }
    start->fn = fn;
    start->arg = arg;
    /* In ESP-IDF's FreeRTOS the stack depth argument is in bytes. */
    BaseType_t rc = xTaskCreate(task_trampoline, name, (uint32_t)stack_bytes, start, (UBaseType_t)priority, NULL);
    if (rc != pdPASS) {
        free(start);
        return -1;
    }
    return 0;
}

uint64_t hil_time_us(void)
{
    return (uint64_t)esp_timer_get_time();
}

uint32_t hil_time_ms(void)
{
    return (uint32_t)(esp_timer_get_time() / 1000);
}

void hil_sleep_ms(uint32_t ms)
{
    TickType_t ticks = pdMS_TO_TICKS(ms);
    vTaskDelay(ticks > 0 ? ticks : 1);
}

int hil_cpu_time_us(uint64_t *user_us, uint64_t *system_us)
{
    /* Per-task run time needs CONFIG_FREERTOS_GENERATE_RUN_TIME_STATS; report "unknown" instead. */
    (void)user_us;
    (void)system_us;
    return -1;
}

void hil_log(hil_log_level_t level, const char *tag, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    switch (level) {
    case HIL_LOG_ERROR:
        ESP_LOGE(tag, "%s", msg);
        break;
    case HIL_LOG_WARN:
        ESP_LOGW(tag, "%s", msg);
        break;
    case HIL_LOG_INFO:
        ESP_LOGI(tag, "%s", msg);
        break;
    default:
        ESP_LOGD(tag, "%s", msg);
        break;
    }
}

hil_mutex_t *hil_mutex_create(void)
{
    hil_mutex_t *m = malloc(sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    m->handle = xSemaphoreCreateMutex();
    if (m->handle == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void hil_mutex_lock(hil_mutex_t *m)
{
    xSemaphoreTake(m->handle, portMAX_DELAY);
}

void hil_mutex_unlock(hil_mutex_t *m)
{
    xSemaphoreGive(m->handle);
}

void hil_mutex_destroy(hil_mutex_t *m)
{
    if (m != NULL) {
        vSemaphoreDelete(m->handle);
        free(m);
    }
}

struct hil_sem {
    SemaphoreHandle_t handle;
};

hil_sem_t *hil_sem_create(uint32_t max_count, uint32_t initial_count)
{
    hil_sem_t *s = malloc(sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->handle = xSemaphoreCreateCounting(max_count, initial_count < max_count ? initial_count : max_count);
    if (s->handle == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

int hil_sem_take(hil_sem_t *s, uint32_t timeout_ms)
{
    TickType_t ticks = timeout_ms == HIL_WAIT_FOREVER ? portMAX_DELAY : pdMS_TO_TICKS(timeout_ms);
    return xSemaphoreTake(s->handle, ticks) == pdTRUE;
}

void hil_sem_give(hil_sem_t *s)
{
    xSemaphoreGive(s->handle);
}

void hil_sem_destroy(hil_sem_t *s)
{
    if (s != NULL) {
        vSemaphoreDelete(s->handle);
        free(s);
    }
}
