/*
 * hil_app: shared declarations of the HIL test firmware (firmware/PROTOCOL.md, protocol v1).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_eth_driver.h"
#include "hil_services.h"

/* Ports and identifiers of PROTOCOL.md "Network services" (the services' own ports come from
 * hil_services.h: HIL_PORT_TCP_ECHO, HIL_PORT_UDP_ECHO, HIL_PORT_SELECT_ECHO_*, HIL_PORT_IPERF3). */
#define HIL_PORT_HTTP 80
#define HIL_PORT_HTTPS 443
#define HIL_PORT_MCAST_ECHO 5007
#define HIL_L2_ECHO_ETHERTYPE 0x88B5
#define HIL_BOARD_NAME "p4-nano"

/* ---- JSON object members (no braces), as hil_proto_format() takes them ---------------------- */
typedef struct {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
} app_json_t;

void app_json_init(app_json_t *j, char *buf, size_t cap);
void app_json_str(app_json_t *j, const char *key, const char *value);
void app_json_u64(app_json_t *j, const char *key, uint64_t value);
void app_json_i64(app_json_t *j, const char *key, int64_t value);
void app_json_bool(app_json_t *j, const char *key, bool value);
/* `raw` is already valid JSON (an object or array). */
void app_json_raw(app_json_t *j, const char *key, const char *raw);
/* Members written so far; "" after an overflow is reported by app_json_ok(). */
const char *app_json_members(const app_json_t *j);
bool app_json_ok(const app_json_t *j);

/* ---- console output (one mutex, so lines from different tasks never interleave) -------------- */
void hil_out_init(void);
/* "I (<ms>) hil: <keyword> {"proto":1,<members>}" + newline. */
void hil_emit(const char *keyword, const char *members);
void hil_result_ok(const char *cmd, const char *members);
void hil_result_error(const char *cmd, const char *error, const char *members);
void hil_print_plain(const char *line);
void hil_prompt(void);
void hil_emit_hello(void);
void hil_emit_stats(const char *trigger);
/* The HIL_STATS object with braces (the body of GET /stats). Returns length or -1. */
int hil_stats_object(char *buf, size_t len, const char *trigger);
/* Wait until everything printed so far left the UART (before a deliberate crash). */
void hil_out_drain(void);

/* ---- Ethernet and identity ------------------------------------------------------------------ */
esp_eth_handle_t hil_eth_install(void);
esp_eth_handle_t hil_eth_handle(void);
void hil_eth_mac(uint8_t mac[6]);
void hil_format_mac(const uint8_t mac[6], char out[18]);
void hil_format_ipv4(uint32_t addr_network_order, char out[16]);
void hil_format_ipv6(const uint8_t addr[16], char out[40]);

/* ---- periodic stats ------------------------------------------------------------------------- */
void hil_stats_set_period(uint32_t seconds);

/* ---- console -------------------------------------------------------------------------------- */
void hil_console_start(void);
esp_err_t hil_cmds_register(void);

/* ---- services owned by the app (the portable ones live in firmware/services) ----------------- */
esp_err_t hil_http_start(void);
esp_err_t hil_mcast_start(void);
esp_err_t hil_l2_start(void);

/* Command handlers implemented next to their service. Each prints exactly one HIL_RESULT. */
int hil_cmd_mqtt(int argc, char **argv);
int hil_cmd_tls(int argc, char **argv);
int hil_cmd_mcast(int argc, char **argv);
int hil_cmd_l2tap(int argc, char **argv);
int hil_cmd_loopback(int argc, char **argv);
int hil_cmd_crash(int argc, char **argv);

/* Embedded TEST ONLY certificates (main/CMakeLists.txt EMBED_TXTFILES). */
extern const char hil_test_ca_pem_start[] asm("_binary_hil_test_ca_crt_start");
extern const char hil_test_ca_pem_end[] asm("_binary_hil_test_ca_crt_end");
extern const char dut_server_crt_start[] asm("_binary_dut_server_crt_start");
extern const char dut_server_crt_end[] asm("_binary_dut_server_crt_end");
extern const char dut_server_key_start[] asm("_binary_dut_server_key_start");
extern const char dut_server_key_end[] asm("_binary_dut_server_key_end");
