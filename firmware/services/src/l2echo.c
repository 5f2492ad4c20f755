/* L2 echo (PROTOCOL.md "L2 echo") over the stack's L2 tap, and the taps behind `l2tap on|off`.
 * The tap callback runs on the stack's receive path: it only copies the frame into a queue of
 * HIL_L2_QUEUE; one task answers from there. The driver (the stack's tap and raw send) comes from the
 * program; hil_app has its own FreeRTOS version of this in main/hil_l2.c. */
#include <string.h>

#include "hil_platform.h"
#include "hil_services.h"
#include "hooks.h"

#define TAG "hil_l2"
#define ETH_HEADER 14
#define FRAME_MAX 1514
#define REQUEST_HEADER 10 /* "HIL2" + seq(4) + len(2) */
#define TIMESTAMPS 16

typedef struct {
    uint16_t ethertype;
    int on;
    hil_l2_counters_t counters;
} tap_t;

typedef struct {
    tap_t *tap;
    uint16_t len;
    int64_t rx_us;
    uint8_t frame[FRAME_MAX];
} queued_t;

static hil_l2_driver_t driver;
static int have_driver;
static tap_t taps[HIL_L2_TAPS];
static hil_mutex_t *lock; /* taps and the queue */
static hil_sem_t *waiting;
static queued_t queue[HIL_L2_QUEUE];
static unsigned head;
static unsigned count;

void hil_services_set_l2_driver(const hil_l2_driver_t *new_driver)
{
    driver = *new_driver;
    have_driver = 1;
}

static void on_frame(void *arg, const uint8_t *frame, size_t len)
{
    tap_t *tap = arg;
    int64_t rx_us = (int64_t)hil_time_us();
    hil_mutex_lock(lock);
    tap->counters.rx++;
    if (len > FRAME_MAX || count == HIL_L2_QUEUE) {
        tap->counters.dropped++;
        hil_mutex_unlock(lock);
        return;
    }
    queued_t *item = &queue[(head + count) % HIL_L2_QUEUE];
    item->tap = tap;
    item->len = (uint16_t)len;
    item->rx_us = rx_us;
    memcpy(item->frame, frame, len);
    count++;
    hil_mutex_unlock(lock);
    hil_sem_give(waiting);
}

static void put_be64(uint8_t *p, int64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

/* The echo of one request into out: its length, or 0 when the request is malformed. */
static size_t build_echo(const queued_t *in, uint8_t *out)
{
    const uint8_t *payload = in->frame + ETH_HEADER;
    size_t payload_len = in->len > ETH_HEADER ? in->len - ETH_HEADER : 0;
    size_t data_len = payload_len >= REQUEST_HEADER ? (size_t)((payload[8] << 8) | payload[9]) : 0;
    if (payload_len < REQUEST_HEADER || memcmp(payload, "HIL2", 4) != 0 || REQUEST_HEADER + data_len > payload_len ||
        ETH_HEADER + REQUEST_HEADER + data_len + TIMESTAMPS > FRAME_MAX) {
        return 0;
    }
    const uint8_t *mac = hil_hooks_mac();
    memcpy(out, in->frame + 6, 6); /* back to the sender */
    if (mac != NULL) {
        memcpy(out + 6, mac, 6);
    } else {
        memcpy(out + 6, in->frame, 6);
    }
    memcpy(out + 12, in->frame + 12, 2); /* the same EtherType */
    memcpy(out + ETH_HEADER, payload, REQUEST_HEADER + data_len);
    uint8_t *ts = out + ETH_HEADER + REQUEST_HEADER + data_len;
    put_be64(ts, 0); /* rx_hw_ns: no hardware receive timestamp on this path */
    put_be64(ts + 8, in->rx_us);
    return ETH_HEADER + REQUEST_HEADER + data_len + TIMESTAMPS;
}

static void echo_task(void *arg)
{
    (void)arg;
    static queued_t in;
    static uint8_t out[FRAME_MAX];
    for (;;) {
        hil_sem_take(waiting, HIL_WAIT_FOREVER);
        hil_mutex_lock(lock);
        in = queue[head];
        head = (head + 1) % HIL_L2_QUEUE;
        count--;
        hil_mutex_unlock(lock);
        size_t len = build_echo(&in, out);
        int sent = len > 0 && !hil_hooks_faults()->l2_tap_deaf && driver.send(out, len, driver.ctx) == 0;
        hil_mutex_lock(lock);
        if (sent) {
            in.tap->counters.echoed++;
        } else if (len == 0) {
            in.tap->counters.dropped++;
        } else if (!hil_hooks_faults()->l2_tap_deaf) {
            in.tap->counters.dropped++; /* the send failed; the deaf fault just never answers */
        }
        hil_mutex_unlock(lock);
    }
}

int hil_l2_tap_on(uint16_t ethertype)
{
    if (lock == NULL) {
        return -1; /* no L2 echo on this stack */
    }
    hil_mutex_lock(lock);
    tap_t *tap = NULL;
    for (int i = 0; i < HIL_L2_TAPS && tap == NULL; i++) {
        if (taps[i].on && taps[i].ethertype == ethertype) {
            hil_mutex_unlock(lock);
            return 0;
        }
    }
    for (int i = 0; i < HIL_L2_TAPS && tap == NULL; i++) {
        tap = taps[i].on ? NULL : &taps[i];
    }
    if (tap == NULL || driver.tap(ethertype, on_frame, tap, driver.ctx) != 0) {
        hil_mutex_unlock(lock);
        return -1;
    }
    *tap = (tap_t){.ethertype = ethertype, .on = 1};
    hil_mutex_unlock(lock);
    return 0;
}

int hil_l2_tap_off(uint16_t ethertype, hil_l2_counters_t *out)
{
    if (lock == NULL) {
        return -1;
    }
    hil_mutex_lock(lock);
    for (int i = 0; i < HIL_L2_TAPS; i++) {
        if (taps[i].on && taps[i].ethertype == ethertype) {
            driver.tap(ethertype, NULL, NULL, driver.ctx);
            taps[i].on = 0;
            *out = taps[i].counters;
            hil_mutex_unlock(lock);
            return 0;
        }
    }
    hil_mutex_unlock(lock);
    return -1;
}

int hil_l2_echo_start(uint16_t ethertype)
{
    if (!have_driver || lock != NULL) {
        return -1;
    }
    lock = hil_mutex_create();
    waiting = hil_sem_create(HIL_L2_QUEUE, 0);
    if (lock == NULL || waiting == NULL || hil_thread_start("hil_l2echo", echo_task, NULL, 4096, 6) != 0) {
        return -1;
    }
    if (hil_l2_tap_on(ethertype) != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "cannot tap EtherType 0x%04x", ethertype);
        return -1;
    }
    hil_log(HIL_LOG_INFO, TAG, "L2 echo on EtherType 0x%04x", ethertype);
    return 0;
}
