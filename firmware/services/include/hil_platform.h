/*
 * The tiny platform layer the portable services are written against: threads, time, logging, a mutex,
 * a counting semaphore.
 * Two implementations: platform/posix.c (Linux, the virtual board) and platform/freertos.c (ESP-IDF).
 * Sockets are not abstracted: the services use plain BSD sockets + select(), which both lwIP's
 * socket API (and the esp_smoltcp_lwip_compat shim behind it) and Linux provide.
 */
#ifndef HIL_PLATFORM_H
#define HIL_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HIL_LOG_ERROR = 0,
    HIL_LOG_WARN,
    HIL_LOG_INFO,
    HIL_LOG_DEBUG,
} hil_log_level_t;

typedef void (*hil_thread_fn)(void *arg);

/* Start a detached thread (FreeRTOS task). stack_bytes is a hint the POSIX build may round up;
 * priority is a FreeRTOS priority (ignored on POSIX). Returns 0 on success, -1 on failure. */
int hil_thread_start(const char *name, hil_thread_fn fn, void *arg, size_t stack_bytes, int priority);

/* Monotonic time since boot (FreeRTOS) or since process start (POSIX; minus $HIL_UPTIME_AT_START_MS). */
uint64_t hil_time_us(void);
uint32_t hil_time_ms(void);
void hil_sleep_ms(uint32_t ms);

/* Process CPU time used so far, in microseconds. Returns -1 when the platform cannot tell. */
int hil_cpu_time_us(uint64_t *user_us, uint64_t *system_us);

/* ESP-IDF style log line ("I (ms) tag: message") on the platform's log output. */
void hil_log(hil_log_level_t level, const char *tag, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A non-recursive mutex. hil_mutex_create returns NULL when out of memory. */
typedef struct hil_mutex hil_mutex_t;
hil_mutex_t *hil_mutex_create(void);
void hil_mutex_lock(hil_mutex_t *m);
void hil_mutex_unlock(hil_mutex_t *m);
void hil_mutex_destroy(hil_mutex_t *m);

/* A counting semaphore (FreeRTOS counting semaphore; POSIX mutex + condition variable).
 * hil_sem_create returns NULL when out of memory. hil_sem_take waits up to timeout_ms
 * (HIL_WAIT_FOREVER: no limit) and returns 1 when it took a count, 0 on timeout. */
#define HIL_WAIT_FOREVER UINT32_MAX
typedef struct hil_sem hil_sem_t;
hil_sem_t *hil_sem_create(uint32_t max_count, uint32_t initial_count);
int hil_sem_take(hil_sem_t *s, uint32_t timeout_ms);
void hil_sem_give(hil_sem_t *s);
void hil_sem_destroy(hil_sem_t *s);

#ifdef __cplusplus
}
#endif

#endif /* HIL_PLATFORM_H */
