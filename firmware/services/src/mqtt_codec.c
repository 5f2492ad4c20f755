/* MQTT 3.1.1 packet encoding and decoding. */
#include "mqtt_codec.h"

#include <string.h>

size_t hil_mqtt_remaining_length_size(uint32_t n)
{
    if (n > HIL_MQTT_MAX_REMAINING) {
        return 0;
    }
    return n < 128u ? 1 : n < 16384u ? 2 : n < 2097152u ? 3 : 4;
}

size_t hil_mqtt_fixed_header(uint8_t out[HIL_MQTT_MAX_FIXED_HEADER], int type, int flags, uint32_t remaining)
{
    size_t size = hil_mqtt_remaining_length_size(remaining);
    if (size == 0) {
        return 0;
    }
    out[0] = (uint8_t)((type << 4) | (flags & 0x0F));
    for (size_t i = 1; i <= size; i++) {
        uint8_t byte = remaining % 128u;
        remaining /= 128u;
        out[i] = (uint8_t)(byte | (remaining > 0 ? 0x80 : 0));
    }
    return size + 1;
}

int hil_mqtt_parse_fixed_header(const uint8_t *buf, size_t len, int *type, int *flags, uint32_t *remaining,
                                size_t *header_len)
{
    if (len < 2) {
        return 0;
    }
    uint32_t value = 0;
    uint32_t scale = 1;
    for (size_t i = 1; i <= 4; i++) {
        if (i >= len) {
            return 0;
        }
        value += (uint32_t)(buf[i] & 0x7F) * scale;
        if (!(buf[i] & 0x80)) {
            *type = buf[0] >> 4;
            *flags = buf[0] & 0x0F;
            *remaining = value;
            *header_len = i + 1;
            return 1;
        }
        scale *= 128u;
    }
    return -1; /* a fifth length byte */
}

static size_t put_u16(uint8_t *out, uint16_t v)
{
    out[0] = (uint8_t)(v >> 8);
    out[1] = (uint8_t)v;
    return 2;
}

static size_t put_string(uint8_t *out, const char *s, size_t len)
{
    put_u16(out, (uint16_t)len);
    memcpy(out + 2, s, len);
    return len + 2;
}

size_t hil_mqtt_encode_connect(uint8_t *out, size_t cap, const char *client_id, uint16_t keepalive_s,
                               int clean_session)
{
    size_t id_len = strlen(client_id);
    if (id_len > 65535) {
        return 0;
    }
    uint32_t remaining = (uint32_t)(10 + 2 + id_len); /* protocol name, level, flags, keep alive; client id */
    uint8_t head[HIL_MQTT_MAX_FIXED_HEADER];
    size_t head_len = hil_mqtt_fixed_header(head, HIL_MQTT_CONNECT, 0, remaining);
    if (head_len == 0 || head_len + remaining > cap) {
        return 0;
    }
    size_t n = 0;
    memcpy(out, head, head_len);
    n += head_len;
    n += put_string(out + n, "MQTT", 4);
    out[n++] = 4; /* protocol level 3.1.1 */
    out[n++] = clean_session ? 0x02 : 0x00;
    n += put_u16(out + n, keepalive_s);
    n += put_string(out + n, client_id, id_len);
    return n;
}

size_t hil_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint16_t packet_id, const char *topic, int qos)
{
    size_t topic_len = strlen(topic);
    if (topic_len == 0 || topic_len > 65535 || qos < 0 || qos > 2 || packet_id == 0) {
        return 0;
    }
    uint32_t remaining = (uint32_t)(2 + 2 + topic_len + 1);
    uint8_t head[HIL_MQTT_MAX_FIXED_HEADER];
    size_t head_len = hil_mqtt_fixed_header(head, HIL_MQTT_SUBSCRIBE, 0x2, remaining);
    if (head_len == 0 || head_len + remaining > cap) {
        return 0;
    }
    size_t n = 0;
    memcpy(out, head, head_len);
    n += head_len;
    n += put_u16(out + n, packet_id);
    n += put_string(out + n, topic, topic_len);
    out[n++] = (uint8_t)qos;
    return n;
}

size_t hil_mqtt_encode_ack(uint8_t out[4], int type, uint16_t packet_id)
{
    out[0] = (uint8_t)((type << 4) | (type == HIL_MQTT_PUBREL ? 0x2 : 0));
    out[1] = 2;
    put_u16(out + 2, packet_id);
    return 4;
}

size_t hil_mqtt_encode_empty(uint8_t out[2], int type)
{
    out[0] = (uint8_t)(type << 4);
    out[1] = 0;
    return 2;
}

size_t hil_mqtt_encode_publish_head(uint8_t *out, size_t cap, const char *topic, int qos, uint16_t packet_id,
                                    size_t payload_len)
{
    size_t topic_len = strlen(topic);
    if (topic_len == 0 || topic_len > 65535 || qos < 0 || qos > 2 || (qos > 0 && packet_id == 0)) {
        return 0;
    }
    size_t variable = 2 + topic_len + (qos > 0 ? 2 : 0);
    if (payload_len > HIL_MQTT_MAX_REMAINING - variable) {
        return 0;
    }
    uint8_t head[HIL_MQTT_MAX_FIXED_HEADER];
    size_t head_len = hil_mqtt_fixed_header(head, HIL_MQTT_PUBLISH, qos << 1, (uint32_t)(variable + payload_len));
    if (head_len == 0 || head_len + variable > cap) {
        return 0;
    }
    size_t n = 0;
    memcpy(out, head, head_len);
    n += head_len;
    n += put_string(out + n, topic, topic_len);
    if (qos > 0) {
        n += put_u16(out + n, packet_id);
    }
    return n;
}

int hil_mqtt_parse_publish(const uint8_t *body, size_t len, int flags, uint32_t remaining, hil_mqtt_publish_t *p)
{
    p->qos = (flags >> 1) & 3;
    p->retain = flags & 1;
    p->dup = (flags >> 3) & 1;
    if (p->qos == 3 || len < 2) {
        return -1;
    }
    p->topic_len = (size_t)body[0] << 8 | body[1];
    p->topic = body + 2;
    p->head_len = 2 + p->topic_len + (p->qos > 0 ? 2 : 0);
    if (p->head_len > len || p->head_len > remaining) {
        return -1;
    }
    p->packet_id = 0;
    if (p->qos > 0) {
        p->packet_id = (uint16_t)(body[2 + p->topic_len] << 8 | body[3 + p->topic_len]);
        if (p->packet_id == 0) {
            return -1;
        }
    }
    return 0;
}

int hil_mqtt_parse_connack(const uint8_t *body, size_t len)
{
    return len == 2 ? body[1] : -1;
}

int hil_mqtt_parse_packet_id(const uint8_t *body, size_t len)
{
    return len >= 2 ? (int)((unsigned)body[0] << 8 | body[1]) : -1;
}
