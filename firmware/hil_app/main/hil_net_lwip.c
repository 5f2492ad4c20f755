/*
 * hil_net on plain lwIP: ESP-IDF's own stack through esp_netif, the reference the smoltcp build is
 * compared with. The Ethernet glue is ESP-IDF's; the app only puts a counting step on each path
 * (received frames before esp_netif_receive, sent frames around esp_eth_transmit), so HIL_STATS
 * means the same on both stacks, and serves its L2 taps there.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "esp_eth.h"
#include "esp_event.h"
#include "esp_netif.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "hil_net.h"
#include "lwip/init.h"
#include "lwip/sockets.h"
#include "nvs_flash.h"
#include "sdkconfig.h"

#define ETH_HEADER 14
#define BIT_GOT_IP BIT0

static esp_netif_t *netif;
static esp_eth_handle_t eth_handle;
static EventGroupHandle_t ip_bits;
static hil_net_event_cb_t event_cb;
static void *event_user;
/* Written on the EMAC RX task and the lwIP task, read by the console: relaxed atomics suffice. */
static atomic_uint_fast64_t rx_frames, rx_bytes, rx_drops, tx_frames, tx_bytes, tx_fails, link_ups, link_downs;

static void emit(hil_net_event_t event)
{
    if (event_cb) {
        event_cb(event, event_user);
    }
}

static void on_eth_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    (void)data;
    if (id == ETHERNET_EVENT_CONNECTED) {
        atomic_fetch_add(&link_ups, 1);
        esp_netif_create_ip6_linklocal(netif);
        emit(HIL_NET_LINK_UP);
    } else if (id == ETHERNET_EVENT_DISCONNECTED) {
        atomic_fetch_add(&link_downs, 1);
        emit(HIL_NET_LINK_DOWN);
    }
}

static void on_ip_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    (void)data;
    if (id == IP_EVENT_ETH_GOT_IP) {
        xEventGroupSetBits(ip_bits, BIT_GOT_IP);
        emit(HIL_NET_GOT_IP);
    } else if (id == IP_EVENT_ETH_LOST_IP) {
        xEventGroupClearBits(ip_bits, BIT_GOT_IP);
        emit(HIL_NET_LOST_IP);
    }
}

/* Every received frame: counted, handed to a tap for its EtherType, else to lwIP. */
static esp_err_t counted_input(esp_eth_handle_t eth, uint8_t *buffer, uint32_t length, void *priv, void *info)
{
    (void)eth;
    (void)info;
    atomic_fetch_add(&rx_frames, 1);
    atomic_fetch_add(&rx_bytes, length);
    if (length >= ETH_HEADER) {
        uint16_t ethertype = (uint16_t)((buffer[12] << 8) | buffer[13]);
        const hil_net_tap_t *tap = hil_net_tap_find(ethertype);
        hil_net_l2_cb_t cb = tap ? tap->cb : NULL; /* read once: the console may clear the tap meanwhile */
        if (cb) {
            cb(buffer, length, 0, tap->user);
            free(buffer);
            return ESP_OK;
        }
    }
    esp_err_t err = esp_netif_receive((esp_netif_t *)priv, buffer, length, NULL);
    if (err != ESP_OK) {
        atomic_fetch_add(&rx_drops, 1);
    }
    return err;
}

static esp_err_t counted_transmit(void *handle, void *buffer, size_t len)
{
    esp_err_t err = esp_eth_transmit(handle, buffer, len);
    if (err == ESP_OK) {
        atomic_fetch_add(&tx_frames, 1);
        atomic_fetch_add(&tx_bytes, len);
    } else {
        atomic_fetch_add(&tx_fails, 1);
    }
    return err;
}

static void free_rx_buffer(void *handle, void *buffer)
{
    (void)handle;
    free(buffer);
}

esp_err_t hil_net_init(void)
{
    esp_err_t err = nvs_flash_init();
    if (err != ESP_OK) {
        return err;
    }
    ip_bits = xEventGroupCreate();
    if (!ip_bits) {
        return ESP_ERR_NO_MEM;
    }
    err = esp_netif_init();
    return err == ESP_OK ? esp_event_loop_create_default() : err;
}

esp_err_t hil_net_attach_eth(esp_eth_handle_t eth, hil_net_event_cb_t cb, void *user)
{
    event_cb = cb;
    event_user = user;
    eth_handle = eth;
    esp_netif_config_t config = ESP_NETIF_DEFAULT_ETH();
    netif = esp_netif_new(&config);
    if (!netif) {
        return ESP_ERR_NO_MEM;
    }
    esp_err_t err = esp_netif_attach(netif, esp_eth_new_netif_glue(eth));
    if (err != ESP_OK) {
        return err;
    }
    /* After the glue's post-attach: the same paths, counted. */
    esp_netif_driver_ifconfig_t driver = {
        .handle = eth,
        .transmit = counted_transmit,
        .driver_free_rx_buffer = free_rx_buffer,
    };
    err = esp_netif_set_driver_config(netif, &driver);
    if (err == ESP_OK) {
        err = esp_eth_update_input_path_info(eth, counted_input, netif);
    }
    if (err == ESP_OK) {
        err = esp_event_handler_register(ETH_EVENT, ESP_EVENT_ANY_ID, on_eth_event, NULL);
    }
    if (err == ESP_OK) {
        err = esp_event_handler_register(IP_EVENT, ESP_EVENT_ANY_ID, on_ip_event, NULL);
    }
    return err == ESP_OK ? esp_eth_start(eth) : err;
}

esp_err_t hil_net_wait_for_ip(uint32_t timeout_ms)
{
    EventBits_t bits = xEventGroupWaitBits(ip_bits, BIT_GOT_IP, pdFALSE, pdTRUE, pdMS_TO_TICKS(timeout_ms));
    return (bits & BIT_GOT_IP) ? ESP_OK : ESP_ERR_TIMEOUT;
}

static esp_netif_ip_info_t ip_info(void)
{
    esp_netif_ip_info_t info = {0};
    if (netif) {
        esp_netif_get_ip_info(netif, &info);
    }
    return info;
}

uint32_t hil_net_ipv4(void) { return ip_info().ip.addr; }
uint32_t hil_net_netmask(void) { return ip_info().netmask.addr; }
uint32_t hil_net_gateway(void) { return ip_info().gw.addr; }

esp_err_t hil_net_ipv6_link_local(uint8_t out[16])
{
    esp_ip6_addr_t ll;
    esp_err_t err = netif ? esp_netif_get_ip6_linklocal(netif, &ll) : ESP_ERR_INVALID_STATE;
    if (err == ESP_OK) {
        memcpy(out, ll.addr, 16); /* four words in network byte order, like struct in6_addr */
    }
    return err;
}

uint32_t hil_net_active_sockets(void)
{
    uint32_t used = 0;
    for (int fd = LWIP_SOCKET_OFFSET; fd < LWIP_SOCKET_OFFSET + CONFIG_LWIP_MAX_SOCKETS; fd++) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr;
        used += getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0;
    }
    return used;
}

void hil_net_counters(hil_stats_t *s)
{
    s->iface = "eth";
    s->rx_frames = atomic_load(&rx_frames);
    s->rx_bytes = atomic_load(&rx_bytes);
    s->rx_drops = atomic_load(&rx_drops);
    s->tx_frames = atomic_load(&tx_frames);
    s->tx_bytes = atomic_load(&tx_bytes);
    s->tx_fails = atomic_load(&tx_fails);
    s->link_ups = atomic_load(&link_ups);
    s->link_downs = atomic_load(&link_downs);
    s->active_sockets = hil_net_active_sockets();
    s->frame_pool_drops = 0; /* lwIP has no frame pool: pbuf allocation failures count as rx_drops */
}

const hil_net_limits_t *hil_net_limits(void)
{
    static const hil_net_limits_t limits = {
        .name = "lwip",
        .fd_base = LWIP_SOCKET_OFFSET,
        .fds_max = CONFIG_LWIP_MAX_SOCKETS,
        .sockets_max = CONFIG_LWIP_MAX_SOCKETS,
    };
    return &limits;
}

esp_err_t hil_net_l2_tap(uint16_t ethertype, hil_net_l2_cb_t cb, void *user)
{
    return (hil_net_tap_set(ethertype, cb, user) || !cb) ? ESP_OK : ESP_ERR_NO_MEM;
}

esp_err_t hil_net_l2_send(const uint8_t *frame, size_t len)
{
    return counted_transmit(eth_handle, (void *)frame, len);
}

const char *hil_net_components_json(void)
{
    return "{\"lwip\":\"" LWIP_VERSION_STRING "\"}";
}
