/* Platform layer for Linux/POSIX hosts: pthreads, CLOCK_MONOTONIC, stderr logging. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "hil_platform.h"

struct hil_mutex {
    pthread_mutex_t mutex;
};

typedef struct {
    hil_thread_fn fn;
    void *arg;
} thread_start_t;

static void *thread_trampoline(void *p)
{
    thread_start_t start = *(thread_start_t *)p;
    free(p);
    start.fn(start.arg);
    return NULL;
}

int hil_thread_start(const char *name, hil_thread_fn fn, void *arg, size_t stack_bytes, int priority)
{
    (void)name;
    (void)priority;
    thread_start_t *start = malloc(sizeof *start);
    if (start == NULL) {
        return -1;
    }
    start->fn = fn;
    start->arg = arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Host stacks get headroom: the board's sizes are tuned for its own libc. */
    size_t stack = stack_bytes < 256 * 1024 ? 256 * 1024 : stack_bytes;
    pthread_attr_setstacksize(&attr, stack);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, thread_trampoline, start);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(start);
        return -1;
    }
    return 0;
}

static uint64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t start_us;
static pthread_once_t start_once = PTHREAD_ONCE_INIT;

/* Time counts from boot: a program started after the chip's ROM and bootloader ran is told how long they
 * took (HIL_UPTIME_AT_START_MS, set by the virtual board), so its log lines and uptime match the console. */
static void record_start(void)
{
    const char *before = getenv("HIL_UPTIME_AT_START_MS");
    uint64_t before_us = before != NULL ? strtoull(before, NULL, 10) * 1000u : 0;
    start_us = monotonic_us() - before_us;
}

uint64_t hil_time_us(void)
{
    pthread_once(&start_once, record_start);
    return monotonic_us() - start_us;
}

uint32_t hil_time_ms(void)
{
    return (uint32_t)(hil_time_us() / 1000u);
}

void hil_sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int hil_cpu_time_us(uint64_t *user_us, uint64_t *system_us)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return -1;
    }
    *user_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec;
    *system_us = (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    return 0;
}

void hil_log(hil_log_level_t level, const char *tag, const char *fmt, ...)
{
    static const char letters[] = {'E', 'W', 'I', 'D'};
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One fprintf per line: stdio locks the stream, so lines of concurrent threads do not mix. */
    fprintf(stderr, "%c (%lu) %s: %s\n", letters[level <= HIL_LOG_DEBUG ? level : HIL_LOG_DEBUG],
            (unsigned long)hil_time_ms(), tag, msg);
}

hil_mutex_t *hil_mutex_create(void)
{
    hil_mutex_t *m = malloc(sizeof *m);
    if (m != NULL && pthread_mutex_init(&m->mutex, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void hil_mutex_lock(hil_mutex_t *m)
{
    pthread_mutex_lock(&m->mutex);
}

void hil_mutex_unlock(hil_mutex_t *m)
{
    pthread_mutex_unlock(&m->mutex);
}

void hil_mutex_destroy(hil_mutex_t *m)
{
    if (m != NULL) {
        pthread_mutex_destroy(&m->mutex);
        free(m);
    }
}

struct hil_sem {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    uint32_t count;
    uint32_t max_count;
};

hil_sem_t *hil_sem_create(uint32_t max_count, uint32_t initial_count)
{
    hil_sem_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    /* Deadlines on the monotonic clock: a wall-clock step must not stretch or cut a wait. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_mutex_init(&s->mutex, NULL) | pthread_cond_init(&s->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        free(s);
        return NULL;
    }
    s->count = initial_count < max_count ? initial_count : max_count;
    s->max_count = max_count;
    return s;
}

int hil_sem_take(hil_sem_t *s, uint32_t timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(timeout_ms / 1000u);
    deadline.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mutex);
    int timed_out = 0;
    while (s->count == 0 && !timed_out) {
        if (timeout_ms == HIL_WAIT_FOREVER) {
            pthread_cond_wait(&s->cond, &s->mutex);
        } else {
            timed_out = pthread_cond_timedwait(&s->cond, &s->mutex, &deadline) != 0 && s->count == 0;
        }
    }
    int taken = s->count > 0;
    if (taken) {
        s->count--;
    }
    pthread_mutex_unlock(&s->mutex);
    return taken;
}

void hil_sem_give(hil_sem_t *s)
{
    pthread_mutex_lock(&s->mutex);
    if (s->count < s->max_count) {
        s->count++;
    }
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mutex);
}

void hil_sem_destroy(hil_sem_t *s)
{
    if (s != NULL) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->mutex);
        free(s);
    }
}
