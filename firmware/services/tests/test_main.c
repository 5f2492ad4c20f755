/* C unit tests of the portable firmware code: HIL_* line formatting and command splitting checked
 * against the golden vectors (protocol_vectors.h, generated from firmware/protocol_vectors.json),
 * plus edge cases. Prints one line per failure and a summary; exit status 1 if anything failed. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "hil_proto.h"
#include "hil_services.h"
#include "mini_json.h"
#include "protocol_vectors.h"

int checks;
int failures;

static void test_line_vectors(void)
{
    int golden = 0;
    char buf[1024];
    for (const line_vector_t *v = LINE_VECTORS; v->keyword != NULL; v++) {
        int n = hil_proto_format_level(buf, sizeof buf, v->level, v->keyword, v->ms, v->members);
        CHECK(n == (int)strlen(v->canonical) && strcmp(buf, v->canonical) == 0, "%s line:\n  got  %s\n  want %s",
              v->keyword, buf, v->canonical);
        if (v->level == 'I') {
            n = hil_proto_format(buf, sizeof buf, v->keyword, v->ms, v->members);
            CHECK(n > 0 && strcmp(buf, v->canonical) == 0, "hil_proto_format %s: got %s", v->keyword, buf);
        }
        if (v->is_stats && v->level == 'I') {
            n = hil_proto_format_stats(buf, sizeof buf, v->ms, v->trigger, &v->stats);
            CHECK(n > 0 && strcmp(buf, v->canonical) == 0, "HIL_STATS:\n  got  %s\n  want %s", buf, v->canonical);
        }
        golden += v->same_as_golden;
    }
    printf("line vectors: %d checked, %d identical to the golden line text\n", (int)(sizeof LINE_VECTORS /
           sizeof LINE_VECTORS[0]) - 1, golden);
}

static void test_command_vectors(void)
{
    for (const command_vector_t *v = COMMAND_VECTORS; v->input != NULL; v++) {
        char line[512];
        char *argv[VECTOR_MAX_ARGS];
        snprintf(line, sizeof line, "%s", v->input);
        int argc = hil_proto_split_args(line, argv, VECTOR_MAX_ARGS);
        CHECK(argc == v->argc, "split '%s': %d words, want %d", v->input, argc, v->argc);
        for (int i = 0; i < argc && i < v->argc; i++) {
            CHECK(strcmp(argv[i], v->argv[i]) == 0, "split '%s' word %d: '%s', want '%s'", v->input, i, argv[i],
                  v->argv[i]);
        }
    }
}

static void test_format_edges(void)
{
    char buf[64];
    CHECK(hil_proto_format(buf, sizeof buf, "HIL_RESULT", 5, NULL) == (int)strlen("I (5) hil: HIL_RESULT {\"proto\":1}"),
          "no fields: %s", buf);
    CHECK(strcmp(buf, "I (5) hil: HIL_RESULT {\"proto\":1}") == 0, "no fields: %s", buf);
    CHECK(hil_proto_format(buf, sizeof buf, "HIL_RESULT", 5, "") > 0 && strcmp(buf, "I (5) hil: HIL_RESULT {\"proto\":1}") == 0,
          "empty fields: %s", buf);
    char small[20];
    CHECK(hil_proto_format(small, sizeof small, "HIL_RESULT", 5, "\"cmd\":\"ip\"") == -1, "truncation not reported");
    CHECK(strlen(small) < sizeof small, "truncated output not terminated");
    CHECK(hil_proto_format(buf, 0, "HIL_RESULT", 5, NULL) == -1, "zero-length buffer accepted");
    CHECK(hil_proto_format(buf, sizeof buf, "HIL_RESULT", UINT32_MAX, NULL) > 0 &&
              strncmp(buf, "I (4294967295) ", 15) == 0,
          "max ms: %s", buf);
    CHECK(hil_proto_json_string(buf, sizeof buf, "a\"b\\c\n\x01") > 0 && strcmp(buf, "\"a\\\"b\\\\c\\n\\u0001\"") == 0,
          "json string escaping: %s", buf);
    CHECK(hil_proto_json_string(small, 4, "abcdef") == -1, "json string truncation not reported");
}

static void test_split_edges(void)
{
    char *argv[4];
    char empty[] = "";
    CHECK(hil_proto_split_args(empty, argv, 4) == 0, "empty line");
    char blanks[] = " \t\r\n";
    CHECK(hil_proto_split_args(blanks, argv, 4) == 0, "blank line");
    char many[] = "a b c d e";
    CHECK(hil_proto_split_args(many, argv, 4) == -1, "too many words not reported");
    char exact[] = "\ta  b\tc d\r\n";
    int argc = hil_proto_split_args(exact, argv, 4);
    CHECK(argc == 4 && strcmp(argv[0], "a") == 0 && strcmp(argv[3], "d") == 0, "tabs/CRLF: %d", argc);
}

static void test_mini_json(void)
{
    const char *params = "{\"tcp\":true,\"omit\":0,\"time\":3,\"num\":0,\"blockcount\":0,\"parallel\":2,"
                         "\"reverse\":true,\"len\":131072,\"pacing_timer\":1000,\"title\":\"a \\\"time\\\": 99\","
                         "\"extra\":{\"time\":77,\"list\":[1,{\"parallel\":9}]},\"client_version\":\"3.12\"}";
    CHECK(hil_json_int(params, "time", -1) == 3, "time");
    CHECK(hil_json_int(params, "parallel", -1) == 2, "parallel (a nested key must not match)");
    CHECK(hil_json_bool(params, "reverse") && hil_json_bool(params, "tcp"), "booleans");
    CHECK(!hil_json_bool(params, "udp"), "absent boolean");
    CHECK(hil_json_int(params, "len", -1) == 131072, "len");
    CHECK(hil_json_int(params, "missing", 42) == 42, "fallback");
    CHECK(hil_json_int("{\"bandwidth\":1e6}", "bandwidth", 0) == 1000000, "exponent number");
    CHECK(hil_json_member("[1,2]", "a") == NULL && hil_json_member("{\"a\"", "a") == NULL, "malformed input");
}

static void test_select_echo_stats_format(void)
{
    hil_select_echo_stats_t s = {.open_tcp_clients = 3, .udp_sockets = 4, .accepted = 10, .closed = 7,
                                 .tcp_echoed_bytes = 5000000000ULL, .max_fd = 12};
    char buf[512];
    CHECK(hil_select_echo_format_stats(buf, sizeof buf, &s) > 0 && strstr(buf, "\"open_tcp_clients\":3,") != NULL &&
              strstr(buf, "\"tcp_echoed_bytes\":5000000000,") != NULL,
          "stats: %s", buf);
    CHECK(hil_select_echo_format_stats(buf, 16, &s) == -1, "stats truncation not reported");
}

static void test_stats_object_and_members(void)
{
    hil_stats_t s = {.iface = "eth", .rx_frames = 10, .rx_bytes = 5000000000ULL, .uptime_ms = 7};
    char buf[600];
    const char *start = "{\"proto\":1,\"trigger\":\"http\",\"iface\":\"eth\",\"rx_frames\":10,";
    int n = hil_proto_format_stats_object(buf, sizeof buf, "http", &s);
    CHECK(n > 0 && strncmp(buf, start, strlen(start)) == 0 &&
              strstr(buf, "\"rx_bytes\":5000000000,") != NULL && strcmp(buf + n - strlen("\"uptime_ms\":7}"), "\"uptime_ms\":7}") == 0,
          "stats object: %s", buf);
    CHECK(hil_proto_format_stats_object(buf, 40, "http", &s) == -1, "stats object truncation not reported");
    hil_members_t m;
    hil_members_init(&m, buf, sizeof buf);
    hil_members_str(&m, "cmd", "tls");
    hil_members_bool(&m, "ok", 0);
    hil_members_str(&m, "error", "a \"quoted\" word");
    hil_members_u64(&m, "bytes", 18446744073709551615ULL);
    hil_members_i64(&m, "delta", -5);
    hil_members_raw(&m, "list", "[1,2]");
    CHECK(hil_members_ok(&m) && strcmp(buf, "\"cmd\":\"tls\",\"ok\":false,\"error\":\"a \\\"quoted\\\" word\","
                                           "\"bytes\":18446744073709551615,\"delta\":-5,\"list\":[1,2]") == 0,
          "members: %s", buf);
    char small[16];
    hil_members_init(&m, small, sizeof small);
    hil_members_str(&m, "cmd", "loopback");
    hil_members_u64(&m, "sent", 16);
    CHECK(!hil_members_ok(&m), "members overflow not reported: %s", small);
    hil_members_u64(&m, "x", 1);
    CHECK(!hil_members_ok(&m) && strlen(small) < sizeof small, "members overflow not sticky");
}

int main(void)
{
    test_line_vectors();
    test_command_vectors();
    test_format_edges();
    test_split_edges();
    test_mini_json();
    test_select_echo_stats_format();
    test_stats_object_and_members();
    run_codec_tests();
    printf("%d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
