/*
 * The MQTT 3.1.1 echo client behind `mqtt connect <uri>` / `mqtt disconnect` (PROTOCOL.md), in the
 * shape of esp-mqtt as hil_app uses it: one client thread owns the connection (plain, or mbedTLS
 * for mqtts:// verified against the HIL test CA), subscribes to hil/<mac12>/in with QoS 1 and
 * republishes each message to hil/<mac12>/out with its payload and QoS, in place in its one buffer
 * (the ack and the echo leave in one write). After a drop it reconnects by itself, 1 s after the
 * drop and then backing off to 4 s between attempts, reporting "mqtt" events: disconnected, error
 * (a failed reconnect), connected (back again).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "hil_platform.h"
#include "hil_proto.h"
#include "hil_services.h"
#include "hooks.h"
#include "http_codec.h"
#include "mqtt_codec.h"
#include "net_util.h"
#include "tls.h"

#define TAG "hil_mqtt"
#define CONNECT_TIMEOUT_MS 10000u /* PROTOCOL.md: up to 10 s for the CONNACK */
#define KEEPALIVE_S 30u
#define PING_AFTER_MS 15000u      /* send PINGREQ after this long without sending */
#define SILENCE_LIMIT_MS 45000u   /* 1.5 keep-alive periods without a packet: the broker is gone */
#define READ_SLICE_MS 1000u       /* the thread looks at its stop flag at least this often */
#define SEND_TIMEOUT_MS 10000u
#define RECONNECT_FIRST_MS 1000u
#define RECONNECT_MAX_MS 4000u
#define STOP_TIMEOUT_MS 15000u
/* Room in front of a received packet: an echo's head is at most 4 bytes longer than the received one
 * ("out" vs "in", one more length byte), and a 4-byte ack goes in front of it. */
#define HEADROOM 16u
#define SUBSCRIBE_ID 1u

typedef enum { START_PENDING, START_OK, START_FAILED } start_state_t;

typedef struct {
    hil_mutex_t *lock;    /* fd, running */
    hil_sem_t *wake;      /* a stop request wakes the reconnect wait */
    hil_sem_t *started;   /* the first connection's outcome is known */
    hil_sem_t *done;      /* the client thread has ended */
    atomic_int stop;
    int running;          /* a client exists (its thread may have given up: fault no_mqtt_reconnect) */
    int fd;               /* the current socket, -1 between connections */
    hil_url_t url;
    int tls;
    char uri[200];
    char client_id[20];
    char topic_in[32];
    char topic_out[32];
    size_t topic_in_len;
    uint8_t *buf;         /* HEADROOM + HIL_MQTT_BUF_BYTES */
    size_t have;          /* received bytes at buf + HEADROOM */
    uint16_t next_id;
    uint32_t last_sent_ms;
    uint32_t last_heard_ms;
    start_state_t start_state;
    uint32_t connect_ms;
    char start_error[80];
    hil_mqtt_stats_t stats;
} client_t;

static client_t client = {.fd = -1};

void hil_mqtt_get_stats(hil_mqtt_stats_t *out)
{
    if (client.lock == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    hil_mutex_lock(client.lock);
    *out = client.stats;
    hil_mutex_unlock(client.lock);
}

static void count(uint32_t *counter)
{
    hil_mutex_lock(client.lock);
    (*counter)++;
    hil_mutex_unlock(client.lock);
}

static void emit_state(const char *state)
{
    char members[320];
    hil_members_t m;
    hil_members_init(&m, members, sizeof members);
    hil_members_str(&m, "event", "mqtt");
    hil_members_str(&m, "iface", "eth");
    hil_members_str(&m, "state", state);
    hil_members_str(&m, "uri", client.uri);
    if (hil_members_ok(&m)) {
        hil_hooks_event(members);
    }
}

static uint16_t next_packet_id(void)
{
    client.next_id = client.next_id == 65535 ? 1 : (uint16_t)(client.next_id + 1);
    return client.next_id;
}

static int send_packet(hil_conn_t *conn, const uint8_t *data, size_t len)
{
    client.last_sent_ms = hil_time_ms();
    return hil_conn_write_all(conn, data, len, SEND_TIMEOUT_MS);
}

/* ---- receiving ------------------------------------------------------------------------------ */

static uint8_t *rx(void)
{
    return client.buf + HEADROOM;
}

/* Read more bytes into the receive area: > 0, or 0 when the connection is over, HIL_CONN_TIMEOUT. */
static int fill(hil_conn_t *conn, size_t limit, uint32_t timeout_ms)
{
    if (client.have >= limit) {
        return -1; /* the caller asked for more than fits */
    }
    int n = hil_conn_read(conn, rx() + client.have, limit - client.have, timeout_ms);
    if (n > 0) {
        client.have += (size_t)n;
        client.last_heard_ms = hil_time_ms();
    }
    return n < 0 && n != HIL_CONN_TIMEOUT ? 0 : n;
}

static void consume(size_t len)
{
    memmove(rx(), rx() + len, client.have - len);
    client.have -= len;
}

/* A PUBLISH larger than the buffer: acknowledged, skipped, not echoed (esp-mqtt delivers it in pieces,
 * which hil_app does not echo). Returns 0, or -1 when the connection is over. */
static int skip_large_publish(hil_conn_t *conn, size_t header_len, int flags, uint32_t remaining)
{
    hil_mqtt_publish_t p;
    while (client.have < HIL_MQTT_BUF_BYTES &&
           hil_mqtt_parse_publish(rx() + header_len, client.have - header_len, flags, remaining, &p) != 0) {
        if (fill(conn, HIL_MQTT_BUF_BYTES, CONNECT_TIMEOUT_MS) <= 0) {
            return -1;
        }
    }
    if (hil_mqtt_parse_publish(rx() + header_len, client.have - header_len, flags, remaining, &p) != 0) {
        return -1;
    }
    uint64_t left = header_len + (uint64_t)remaining - client.have;
    client.have = 0;
    while (left > 0) {
        int n = fill(conn, left < HIL_MQTT_BUF_BYTES ? (size_t)left : HIL_MQTT_BUF_BYTES, CONNECT_TIMEOUT_MS);
        if (n <= 0) {
            return -1;
        }
        left -= (uint64_t)n;
        client.have = 0;
    }
    count(&client.stats.too_large);
    uint8_t ack[4];
    if (p.qos == 1) {
        return send_packet(conn, ack, hil_mqtt_encode_ack(ack, HIL_MQTT_PUBACK, p.packet_id));
    }
    if (p.qos == 2) {
        return send_packet(conn, ack, hil_mqtt_encode_ack(ack, HIL_MQTT_PUBREC, p.packet_id));
    }
    return 0;
}

/* Acknowledge a PUBLISH and echo it when it came on topic_in: [ack][echo head][payload], one write,
 * built in front of the payload where it lies. */
static int on_publish(hil_conn_t *conn, size_t header_len, int flags, uint32_t remaining)
{
    hil_mqtt_publish_t p;
    uint8_t *body = rx() + header_len;
    if (hil_mqtt_parse_publish(body, remaining, flags, remaining, &p) != 0) {
        return -1;
    }
    count(&client.stats.received);
    uint8_t *payload = body + p.head_len;
    size_t payload_len = remaining - p.head_len;
    uint8_t head[HIL_MQTT_MAX_FIXED_HEADER + 2 + sizeof client.topic_out + 2];
    size_t head_len = 0;
    int echo = p.topic_len == client.topic_in_len && memcmp(p.topic, client.topic_in, p.topic_len) == 0;
    if (echo) {
        head_len = hil_mqtt_encode_publish_head(head, sizeof head, client.topic_out, p.qos,
                                                p.qos > 0 ? next_packet_id() : 0, payload_len);
    }
    uint8_t *start = payload - head_len;
    memcpy(start, head, head_len);
    if (p.qos > 0) {
        start -= 4;
        hil_mqtt_encode_ack(start, p.qos == 1 ? HIL_MQTT_PUBACK : HIL_MQTT_PUBREC, p.packet_id);
    }
    size_t len = (size_t)(payload - start) + (echo ? payload_len : 0);
    if (len == 0) {
        return 0;
    }
    if (send_packet(conn, start, echo ? len : 4) != 0) {
        return -1;
    }
    if (echo) {
        count(&client.stats.echoed);
    }
    return 0;
}

/* Handle one packet from the broker (or time out quietly). Returns 0, or -1 when the session is over. */
static int serve_one(hil_conn_t *conn)
{
    int type;
    int flags;
    uint32_t remaining;
    size_t header_len;
    int rc;
    while ((rc = hil_mqtt_parse_fixed_header(rx(), client.have, &type, &flags, &remaining, &header_len)) == 0) {
        uint32_t now = hil_time_ms();
        if ((uint32_t)(now - client.last_heard_ms) >= SILENCE_LIMIT_MS) {
            hil_log(HIL_LOG_WARN, TAG, "broker silent for %u s", (unsigned)(SILENCE_LIMIT_MS / 1000u));
            return -1;
        }
        if ((uint32_t)(now - client.last_sent_ms) >= PING_AFTER_MS) {
            uint8_t ping[2];
            if (send_packet(conn, ping, hil_mqtt_encode_empty(ping, HIL_MQTT_PINGREQ)) != 0) {
                return -1;
            }
        }
        int n = fill(conn, HIL_MQTT_BUF_BYTES, READ_SLICE_MS);
        if (n == HIL_CONN_TIMEOUT) {
            return atomic_load(&client.stop) ? -1 : 0;
        }
        if (n <= 0) {
            return -1;
        }
    }
    if (rc < 0) {
        return -1;
    }
    if (header_len + (size_t)remaining > HIL_MQTT_BUF_BYTES) {
        return type == HIL_MQTT_PUBLISH ? skip_large_publish(conn, header_len, flags, remaining) : -1;
    }
    size_t total = header_len + remaining;
    while (client.have < total) {
        if (fill(conn, HIL_MQTT_BUF_BYTES, CONNECT_TIMEOUT_MS) <= 0) {
            return -1;
        }
    }
    uint8_t *body = rx() + header_len;
    uint8_t reply[4];
    int id = hil_mqtt_parse_packet_id(body, remaining);
    switch (type) {
    case HIL_MQTT_PUBLISH:
        rc = on_publish(conn, header_len, flags, remaining);
        break;
    case HIL_MQTT_PUBREL: /* the broker's QoS 2 delivery, second half */
        rc = id < 0 ? -1 : send_packet(conn, reply, hil_mqtt_encode_ack(reply, HIL_MQTT_PUBCOMP, (uint16_t)id));
        break;
    case HIL_MQTT_PUBREC: /* our QoS 2 echo, second step */
        rc = id < 0 ? -1 : send_packet(conn, reply, hil_mqtt_encode_ack(reply, HIL_MQTT_PUBREL, (uint16_t)id));
        break;
    case HIL_MQTT_SUBACK:
        if (remaining >= 3 && body[2] == 0x80) {
            hil_log(HIL_LOG_WARN, TAG, "the broker refused the subscription to %s", client.topic_in);
        }
        rc = 0;
        break;
    default: /* PUBACK, PUBCOMP, PINGRESP: nothing to do */
        rc = 0;
        break;
    }
    consume(total);
    return rc;
}

/* ---- connecting ------------------------------------------------------------------------------- */

static void set_fd(int fd)
{
    hil_mutex_lock(client.lock);
    client.fd = fd;
    hil_mutex_unlock(client.lock);
}

/* TCP (+ TLS), CONNECT, CONNACK, SUBSCRIBE within CONNECT_TIMEOUT_MS. 0, or -1 with why set. */
static int open_session(hil_conn_t *conn, char *why, size_t why_len)
{
    uint32_t deadline = hil_time_ms() + CONNECT_TIMEOUT_MS;
    uint16_t port = client.url.port ? client.url.port : (client.tls ? 8883 : 1883);
    conn->fd = hil_net_connect_tcp(client.url.host, port, CONNECT_TIMEOUT_MS, why, why_len);
    if (conn->fd < 0) {
        return -1;
    }
    set_fd(conn->fd);
    int one = 1;
    /* Acks and echoes must not wait for the broker's delayed ACK (Nagle). */
    setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int32_t left = (int32_t)(deadline - hil_time_ms());
    if (client.tls && hil_tls_connect(conn, client.url.host, left > 0 ? (uint32_t)left : 0, why, why_len) != 0) {
        return -1;
    }
    client.have = 0;
    client.last_heard_ms = hil_time_ms();
    uint8_t *out = rx();
    size_t len = hil_mqtt_encode_connect(out, HIL_MQTT_BUF_BYTES, client.client_id, KEEPALIVE_S, 1);
    if (send_packet(conn, out, len) != 0) {
        snprintf(why, why_len, "sending CONNECT failed");
        return -1;
    }
    int type = 0;
    int flags;
    uint32_t remaining;
    size_t header_len;
    int rc;
    while ((rc = hil_mqtt_parse_fixed_header(rx(), client.have, &type, &flags, &remaining, &header_len)) == 0 ||
           (rc == 1 && client.have < header_len + remaining)) {
        left = (int32_t)(deadline - hil_time_ms());
        int n = left > 0 ? fill(conn, HIL_MQTT_BUF_BYTES, (uint32_t)left) : HIL_CONN_TIMEOUT;
        if (n <= 0) {
            snprintf(why, why_len, "%s", n == HIL_CONN_TIMEOUT ? "no CONNACK" : "the broker closed the connection");
            return -1;
        }
    }
    int code = rc == 1 && type == HIL_MQTT_CONNACK ? hil_mqtt_parse_connack(rx() + header_len, remaining) : -1;
    if (code != 0) {
        snprintf(why, why_len, code < 0 ? "no CONNACK" : "the broker refused (return code %d)", code);
        return -1;
    }
    consume(header_len + remaining);
    len = hil_mqtt_encode_subscribe(out + client.have, HIL_MQTT_BUF_BYTES - client.have, SUBSCRIBE_ID,
                                    client.topic_in, 1);
    if (len == 0 || send_packet(conn, out + client.have, len) != 0) {
        snprintf(why, why_len, "sending SUBSCRIBE failed");
        return -1;
    }
    count(&client.stats.connects);
    return 0;
}

static void close_session(hil_conn_t *conn, int polite)
{
    if (conn->fd < 0) {
        return;
    }
    if (polite) {
        uint8_t bye[2];
        send_packet(conn, bye, hil_mqtt_encode_empty(bye, HIL_MQTT_DISCONNECT));
    }
    set_fd(-1);
    hil_conn_close(conn, 0);
}

static void finish_start(start_state_t state, const char *error, uint32_t connect_ms)
{
    client.start_state = state;
    client.connect_ms = connect_ms;
    snprintf(client.start_error, sizeof client.start_error, "%s", error);
    hil_sem_give(client.started);
}

static void client_thread(void *arg)
{
    (void)arg;
    uint32_t started = hil_time_ms();
    uint32_t backoff = RECONNECT_FIRST_MS;
    int ever_connected = 0;
    while (!atomic_load(&client.stop)) {
        hil_conn_t conn = {.fd = -1, .tls = NULL};
        char why[80];
        if (open_session(&conn, why, sizeof why) != 0) {
            close_session(&conn, 0);
            if (!ever_connected) {
                hil_log(HIL_LOG_WARN, TAG, "%s: %s", client.uri, why);
                finish_start(START_FAILED, why, 0);
                break; /* the command reports it; nothing to reconnect to */
            }
            emit_state("error");
            backoff = backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : backoff * 2;
        } else {
            if (ever_connected) {
                emit_state("connected");
            } else {
                finish_start(START_OK, "", hil_time_ms() - started);
            }
            ever_connected = 1;
            backoff = RECONNECT_FIRST_MS;
            while (serve_one(&conn) == 0) {
            }
            int stopping = atomic_load(&client.stop);
            close_session(&conn, stopping);
            if (stopping) {
                break;
            }
            hil_log(HIL_LOG_WARN, TAG, "connection to %s lost", client.uri);
            emit_state("disconnected");
            if (hil_hooks_faults()->mqtt_no_reconnect) {
                break; /* the fault: the client gives up */
            }
        }
        hil_sem_take(client.wake, backoff); /* a stop request ends the wait early */
    }
    hil_sem_give(client.done);
}

static int make_sync(void)
{
    if (client.lock != NULL) {
        return 0;
    }
    client.lock = hil_mutex_create();
    client.wake = hil_sem_create(1, 0);
    client.started = hil_sem_create(1, 0);
    client.done = hil_sem_create(1, 0);
    return client.lock && client.wake && client.started && client.done ? 0 : -1;
}

/* Forget the client once its thread has ended. */
static void release(void)
{
    free(client.buf);
    client.buf = NULL;
    hil_mutex_lock(client.lock);
    client.running = 0;
    hil_mutex_unlock(client.lock);
}

int hil_mqtt_connect(const char *uri, hil_mqtt_connect_result_t *result)
{
    memset(result, 0, sizeof *result);
    const uint8_t *mac = hil_hooks_mac();
    if (make_sync() != 0) {
        snprintf(result->error, sizeof result->error, "connect failed: out of memory");
        return -1;
    }
    if (client.running) {
        snprintf(result->error, sizeof result->error, "already connected");
        return -1;
    }
    hil_url_t url;
    int plain = 0;
    if (hil_url_parse(uri, &url) != 0 || strlen(uri) >= sizeof client.uri ||
        (!(plain = strcmp(url.scheme, "mqtt") == 0) && strcmp(url.scheme, "mqtts") != 0)) {
        snprintf(result->error, sizeof result->error, "connect failed: bad uri");
        return -1;
    }
    if (mac == NULL) {
        snprintf(result->error, sizeof result->error, "connect failed: no MAC address set");
        return -1;
    }
    if (!plain && !hil_tls_client_ready()) {
        snprintf(result->error, sizeof result->error, "connect failed: no CA to verify the broker");
        return -1;
    }
    char mac12[13];
    snprintf(mac12, sizeof mac12, "%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    snprintf(client.uri, sizeof client.uri, "%s", uri);
    snprintf(client.client_id, sizeof client.client_id, "hil-%s", mac12);
    snprintf(client.topic_in, sizeof client.topic_in, "hil/%s/in", mac12);
    snprintf(client.topic_out, sizeof client.topic_out, "hil/%s/out", mac12);
    client.topic_in_len = strlen(client.topic_in);
    client.url = url;
    client.tls = !plain;
    client.buf = malloc(HEADROOM + HIL_MQTT_BUF_BYTES);
    if (client.buf == NULL) {
        snprintf(result->error, sizeof result->error, "connect failed: out of memory");
        return -1;
    }
    atomic_store(&client.stop, 0);
    client.start_state = START_PENDING;
    /* Leftover counts from an earlier client must not answer for this one. */
    while (hil_sem_take(client.wake, 0) || hil_sem_take(client.started, 0) || hil_sem_take(client.done, 0)) {
    }
    client.running = 1;
    if (hil_thread_start("hil_mqtt", client_thread, NULL, 8192, 5) != 0) {
        release();
        snprintf(result->error, sizeof result->error, "connect failed: no thread");
        return -1;
    }
    /* The thread gives its verdict within CONNECT_TIMEOUT_MS; the margin covers a slow scheduler. */
    int answered = hil_sem_take(client.started, CONNECT_TIMEOUT_MS + 5000u);
    if (!answered || client.start_state != START_OK) {
        if (!answered || strcmp(client.start_error, "no CONNACK") == 0) {
            snprintf(result->error, sizeof result->error, "timeout");
        } else {
            snprintf(result->error, sizeof result->error, "connect failed: %s", client.start_error);
        }
        atomic_store(&client.stop, 1);
        hil_sem_give(client.wake);
        if (hil_sem_take(client.done, STOP_TIMEOUT_MS)) {
            release();
        }
        return -1;
    }
    snprintf(result->topic_in, sizeof result->topic_in, "%s", client.topic_in);
    snprintf(result->topic_out, sizeof result->topic_out, "%s", client.topic_out);
    result->connect_ms = client.connect_ms;
    return 0;
}

int hil_mqtt_disconnect(void)
{
    if (client.lock == NULL || !client.running) {
        return -1;
    }
    atomic_store(&client.stop, 1);
    hil_mutex_lock(client.lock);
    if (client.fd >= 0) {
        shutdown(client.fd, SHUT_RD); /* wakes its read; the thread still says DISCONNECT */
    }
    hil_mutex_unlock(client.lock);
    hil_sem_give(client.wake);
    if (!hil_sem_take(client.done, STOP_TIMEOUT_MS)) {
        hil_log(HIL_LOG_ERROR, TAG, "the client thread did not stop");
        return 0; /* it keeps its buffer; a later connect finds the client still running */
    }
    release();
    return 0;
}
