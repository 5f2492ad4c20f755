/* Multicast echo on UDP 5007 and `mcast join|leave <group>` (IGMP through the shim's setsockopt). */
#include <stdio.h>
#include <string.h>

#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "hil_app.h"
#include "lwip/inet.h"
#include "lwip/sockets.h"

#define USAGE "usage: mcast join|leave <group>"

static const char *TAG = "hil_mcast";
static int mcast_fd = -1;

static void mcast_echo_task(void *arg)
{
    (void)arg;
    static uint8_t buf[1472];
    for (;;) {
        struct sockaddr_in from;
        socklen_t from_len = sizeof from;
        int n = recvfrom(mcast_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
        if (n <= 0) {
            continue; /* the shim returns 0 on its receive timeout */
        }
        sendto(mcast_fd, buf, (size_t)n, 0, (struct sockaddr *)&from, from_len);
    }
}

esp_err_t hil_mcast_start(void)
{
    mcast_fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (mcast_fd < 0) {
        return ESP_FAIL;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(HIL_PORT_MCAST_ECHO)};
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(mcast_fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        ESP_LOGE(TAG, "bind to port %d failed", HIL_PORT_MCAST_ECHO);
        return ESP_FAIL;
    }
    return xTaskCreate(mcast_echo_task, "hil_mcast", 4096, NULL, 5, NULL) == pdPASS ? ESP_OK : ESP_ERR_NO_MEM;
}

int hil_cmd_mcast(int argc, char **argv)
{
    bool join = argc == 3 && strcmp(argv[1], "join") == 0;
    bool leave = argc == 3 && strcmp(argv[1], "leave") == 0;
    if (!join && !leave) {
        hil_result_error("mcast", USAGE, NULL);
        return 0;
    }
    struct in_addr group;
    if (!inet_aton(argv[2], &group) || (ntohl(group.s_addr) & 0xF0000000u) != 0xE0000000u) {
        char error[80];
        snprintf(error, sizeof error, "not a multicast group: %s", argv[2]);
        hil_result_error("mcast", error, NULL);
        return 0;
    }
    struct ip_mreq request = {.imr_multiaddr = group};
    request.imr_interface.s_addr = htonl(INADDR_ANY);
    int rc = setsockopt(mcast_fd, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &request, sizeof request);
    if (mcast_fd < 0 || rc != 0) {
        hil_result_error("mcast", join ? "join failed" : "leave failed", NULL);
        return 0;
    }
    char buf[160];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "action", join ? "join" : "leave");
    app_json_str(&j, "group", argv[2]);
    app_json_u64(&j, "port", HIL_PORT_MCAST_ECHO);
    hil_result_ok("mcast", app_json_members(&j));
    return 0;
}
