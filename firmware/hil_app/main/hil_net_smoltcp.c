/* hil_net on esp-smoltcp: smoltcp owns the interface, the lwIP-compat shim serves BSD sockets. */
#include <stdio.h>
#include <string.h>

#include "esp_smoltcp.h"
#include "hil_net.h"
#include "lwip/sockets.h"
#include "sdkconfig.h"

static hil_net_event_cb_t event_cb;
static void *event_user;

static void on_stack_event(esp_smoltcp_iface_t iface, esp_smoltcp_event_t event, void *user)
{
    (void)user;
    if (iface != ESP_SMOLTCP_IFACE_ETH || !event_cb) {
        return;
    }
    switch (event) {
    case ESP_SMOLTCP_EVT_IFACE_UP:
        event_cb(HIL_NET_LINK_UP, event_user);
        break;
    case ESP_SMOLTCP_EVT_IFACE_DOWN:
        event_cb(HIL_NET_LINK_DOWN, event_user);
        break;
    case ESP_SMOLTCP_EVT_GOT_IP:
        event_cb(HIL_NET_GOT_IP, event_user);
        break;
    case ESP_SMOLTCP_EVT_LOST_IP:
        event_cb(HIL_NET_LOST_IP, event_user);
        break;
    case ESP_SMOLTCP_EVT_NTP_SYNCED:
        event_cb(HIL_NET_NTP_SYNCED, event_user);
        break;
    }
}

esp_err_t hil_net_init(void)
{
    /* esp_smoltcp_init() initialises NVS and creates the default event loop itself: a second
     * esp_event_loop_create_default() would return ESP_ERR_INVALID_STATE. */
    return esp_smoltcp_init();
}

esp_err_t hil_net_attach_eth(esp_eth_handle_t eth, hil_net_event_cb_t cb, void *user)
{
    event_cb = cb;
    event_user = user;
    esp_err_t err = esp_smoltcp_register_event_cb(on_stack_event, NULL);
    return err == ESP_OK ? esp_smoltcp_attach_eth(eth) : err;
}

esp_err_t hil_net_wait_for_ip(uint32_t timeout_ms)
{
    return esp_smoltcp_wait_for_ip(ESP_SMOLTCP_IFACE_ETH, timeout_ms);
}

uint32_t hil_net_ipv4(void) { return esp_smoltcp_get_ipv4(ESP_SMOLTCP_IFACE_ETH); }
uint32_t hil_net_netmask(void) { return esp_smoltcp_get_netmask(ESP_SMOLTCP_IFACE_ETH); }
uint32_t hil_net_gateway(void) { return esp_smoltcp_get_gateway(ESP_SMOLTCP_IFACE_ETH); }

esp_err_t hil_net_ipv6_link_local(uint8_t out[16])
{
    return esp_smoltcp_get_ipv6_link_local(ESP_SMOLTCP_IFACE_ETH, out);
}

/* esp_smoltcp_stats_t gained active_sockets after 0.1.0 (main/CMakeLists.txt sets the macro from the
 * component's version). */
uint32_t hil_net_active_sockets(void)
{
#if HIL_SMOLTCP_HAS_ACTIVE_SOCKETS
    esp_smoltcp_stats_t st = {0};
    esp_smoltcp_get_stats(ESP_SMOLTCP_IFACE_ETH, &st);
    return st.active_sockets;
#else
    /* 0.1.x cannot count smoltcp sockets: report the shim's descriptors in use instead. */
    uint32_t used = 0;
    for (int fd = LWIP_SOCKET_OFFSET; fd < LWIP_SOCKET_OFFSET + CONFIG_LWIP_COMPAT_MAX_FDS; fd++) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr;
        used += getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0;
    }
    return used;
#endif
}

void hil_net_counters(hil_stats_t *s)
{
    esp_smoltcp_stats_t st = {0};
    esp_smoltcp_get_stats(ESP_SMOLTCP_IFACE_ETH, &st);
    s->iface = "eth";
    s->rx_frames = st.rx_frames;
    s->rx_bytes = st.rx_bytes;
    s->rx_drops = st.rx_drops;
    s->tx_frames = st.tx_frames;
    s->tx_bytes = st.tx_bytes;
    s->tx_fails = st.tx_fails;
    s->link_ups = st.link_ups;
    s->link_downs = st.link_downs;
    s->active_sockets = hil_net_active_sockets();
    s->frame_pool_drops = esp_smoltcp_frame_pool_drops();
}

const hil_net_limits_t *hil_net_limits(void)
{
    /* The shim's descriptors are [LWIP_SOCKET_OFFSET, +LWIP_COMPAT_MAX_FDS) (sdkconfig.defaults keeps
     * them inside FD_SETSIZE); smoltcp's socket set holds NETSTACK_MAX_SOCKETS sockets. */
    static const hil_net_limits_t limits = {
        .name = "smoltcp",
        .fd_base = LWIP_SOCKET_OFFSET,
        .fds_max = CONFIG_LWIP_COMPAT_MAX_FDS,
        .sockets_max = CONFIG_NETSTACK_MAX_SOCKETS,
    };
    return &limits;
}

static void on_l2_frame(esp_smoltcp_iface_t iface, const uint8_t *frame, size_t len, int64_t hw_ns, void *user)
{
    (void)iface;
    const hil_net_tap_t *tap = user;
    if (tap->cb) {
        tap->cb(frame, len, hw_ns, tap->user);
    }
}

esp_err_t hil_net_l2_tap(uint16_t ethertype, hil_net_l2_cb_t cb, void *user)
{
    hil_net_tap_t *tap = hil_net_tap_set(ethertype, cb, user);
    if (!tap) {
        return cb ? ESP_ERR_NO_MEM : ESP_OK;
    }
    return esp_smoltcp_l2_tap(ethertype, cb ? on_l2_frame : NULL, cb ? tap : NULL);
}

esp_err_t hil_net_l2_send(const uint8_t *frame, size_t len)
{
    return esp_smoltcp_l2_send(ESP_SMOLTCP_IFACE_ETH, frame, len);
}

const char *hil_net_components_json(void)
{
    return "{\"esp_smoltcp\":\"" HIL_VERSION_ESP_SMOLTCP "\",\"esp_smoltcp_lwip_compat\":\"" HIL_VERSION_ESP_SMOLTCP_LWIP_COMPAT
           "\",\"esp_smoltcp_glue\":\"" HIL_VERSION_ESP_SMOLTCP_GLUE "\"}";
}
