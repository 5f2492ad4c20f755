/* MQTT 3.1.1 control packets (OASIS standard, section 2 and 3) as the echo client needs them
 * (internal; pure functions, unit-tested). Encoders return the packet length, or 0 when it does not
 * fit the output buffer. */
#ifndef HIL_MQTT_CODEC_H
#define HIL_MQTT_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum {
    HIL_MQTT_CONNECT = 1,
    HIL_MQTT_CONNACK = 2,
    HIL_MQTT_PUBLISH = 3,
    HIL_MQTT_PUBACK = 4,
    HIL_MQTT_PUBREC = 5,
    HIL_MQTT_PUBREL = 6,
    HIL_MQTT_PUBCOMP = 7,
    HIL_MQTT_SUBSCRIBE = 8,
    HIL_MQTT_SUBACK = 9,
    HIL_MQTT_PINGREQ = 12,
    HIL_MQTT_PINGRESP = 13,
    HIL_MQTT_DISCONNECT = 14,
};

#define HIL_MQTT_MAX_REMAINING 268435455u /* four length bytes */
#define HIL_MQTT_MAX_FIXED_HEADER 5

/* Bytes of the variable-length "remaining length" encoding of n (1..4), 0 when n is too large. */
size_t hil_mqtt_remaining_length_size(uint32_t n);
/* Writes the fixed header (type, flags, remaining length); returns its length, 0 if n is too large. */
size_t hil_mqtt_fixed_header(uint8_t out[HIL_MQTT_MAX_FIXED_HEADER], int type, int flags, uint32_t remaining);

/* Reads a fixed header from buf[0..len). Returns 1 with *type, *flags, *remaining and *header_len set,
 * 0 when more bytes are needed, -1 when the length encoding is invalid. */
int hil_mqtt_parse_fixed_header(const uint8_t *buf, size_t len, int *type, int *flags, uint32_t *remaining,
                                size_t *header_len);

size_t hil_mqtt_encode_connect(uint8_t *out, size_t cap, const char *client_id, uint16_t keepalive_s,
                               int clean_session);
size_t hil_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint16_t packet_id, const char *topic, int qos);
/* PUBACK, PUBREC, PUBREL (flags 0x2, as 3.6.1 requires) or PUBCOMP. */
size_t hil_mqtt_encode_ack(uint8_t out[4], int type, uint16_t packet_id);
/* PINGREQ or DISCONNECT (two bytes). */
size_t hil_mqtt_encode_empty(uint8_t out[2], int type);
/* The head of a PUBLISH (fixed header, topic, packet id when qos > 0) for a payload of payload_len
 * bytes; the payload follows it on the wire. */
size_t hil_mqtt_encode_publish_head(uint8_t *out, size_t cap, const char *topic, int qos, uint16_t packet_id,
                                    size_t payload_len);

typedef struct {
    const uint8_t *topic; /* not NUL-terminated */
    size_t topic_len;
    int qos;
    int retain;
    int dup;
    uint16_t packet_id; /* 0 for QoS 0 */
    size_t head_len;    /* topic and packet id: the payload starts here in the body */
} hil_mqtt_publish_t;

/* Parse the variable header of a PUBLISH from the first bytes of its body (at least topic and packet
 * id must be there). Returns 0, or -1 when malformed (QoS 3, a packet id of 0, a body too short). */
int hil_mqtt_parse_publish(const uint8_t *body, size_t len, int flags, uint32_t remaining, hil_mqtt_publish_t *p);
/* CONNACK body: the return code (0 = accepted), or -1 when malformed. */
int hil_mqtt_parse_connack(const uint8_t *body, size_t len);
/* The packet id of a PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK body, or -1 when malformed. */
int hil_mqtt_parse_packet_id(const uint8_t *body, size_t len);

#endif /* HIL_MQTT_CODEC_H */
