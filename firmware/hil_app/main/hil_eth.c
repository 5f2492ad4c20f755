/* Ethernet on the Waveshare P4-Nano: internal EMAC + IP101 PHY (addr 1, reset GPIO51, MDC 31,
 * MDIO 52), with 802.3x flow control. The app installs the driver; esp_smoltcp only attaches. */
#include <stdio.h>
#include <string.h>

#include "esp_eth.h"
#include "esp_eth_mac_esp.h"
#include "esp_idf_version.h"
#include "esp_log.h"
#include "hil_app.h"
#include "hil_net.h"
#if ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(6, 0, 0)
#include "esp_eth_phy_ip101.h" /* espressif/ip101 from the registry (idf_component.yml) */
#endif

#define P4_NANO_MDC_GPIO 31
#define P4_NANO_MDIO_GPIO 52
#define P4_NANO_PHY_ADDR 1
#define P4_NANO_PHY_RESET_GPIO 51

static const char *TAG = "hil_eth";
static esp_eth_handle_t eth_handle;

esp_eth_handle_t hil_eth_install(void)
{
    /* ETH_ESP32_EMAC_DEFAULT_CONFIG() already carries the P4-Nano's RMII pins (REF_CLK in on
     * GPIO50); MDC/MDIO are set explicitly so a board change shows up here. */
    eth_esp32_emac_config_t emac_config = ETH_ESP32_EMAC_DEFAULT_CONFIG();
    emac_config.smi_gpio.mdc_num = P4_NANO_MDC_GPIO;
    emac_config.smi_gpio.mdio_num = P4_NANO_MDIO_GPIO;
    eth_mac_config_t mac_config = ETH_MAC_DEFAULT_CONFIG();
    esp_eth_mac_t *mac = esp_eth_mac_new_esp32(&emac_config, &mac_config);

    eth_phy_config_t phy_config = ETH_PHY_DEFAULT_CONFIG();
    phy_config.phy_addr = P4_NANO_PHY_ADDR;
    phy_config.reset_gpio_num = P4_NANO_PHY_RESET_GPIO;
    esp_eth_phy_t *phy = esp_eth_phy_new_ip101(&phy_config);
    if (!mac || !phy) {
        ESP_LOGE(TAG, "EMAC or IP101 driver allocation failed");
        return NULL;
    }

    esp_eth_config_t config = ETH_DEFAULT_CONFIG(mac, phy);
    ESP_ERROR_CHECK(esp_eth_driver_install(&config, &eth_handle));

    /* Send and honour PAUSE frames: part of the tuning behind the 91.15 Mbit/s figure (with
     * CONFIG_ETH_SOFT_FLOW_CONTROL and 30 RX DMA buffers in sdkconfig.defaults). */
    bool flow_control = true;
    ESP_ERROR_CHECK(esp_eth_ioctl(eth_handle, ETH_CMD_S_FLOW_CTRL, &flow_control));
    return eth_handle;
}

esp_eth_handle_t hil_eth_handle(void)
{
    return eth_handle;
}

void hil_eth_mac(uint8_t mac[6])
{
    memset(mac, 0, 6);
    if (eth_handle) {
        esp_eth_ioctl(eth_handle, ETH_CMD_G_MAC_ADDR, mac);
    }
}

void hil_format_mac(const uint8_t mac[6], char out[18])
{
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

void hil_format_ipv4(uint32_t addr, char out[16])
{
    uint8_t b[4];
    memcpy(b, &addr, 4); /* network byte order in memory, like struct in_addr */
    snprintf(out, 16, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
}

void hil_format_ipv6(const uint8_t addr[16], char out[40])
{
    uint16_t group[8];
    for (int i = 0; i < 8; i++) {
        group[i] = (uint16_t)((addr[2 * i] << 8) | addr[2 * i + 1]);
    }
    /* RFC 5952: compress the longest run (>= 2) of zero groups, the first one on a tie. */
    int best_start = -1, best_len = 0;
    for (int i = 0; i < 8;) {
        if (group[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j < 8 && group[j] == 0) {
            j++;
        }
        if (j - i > best_len && j - i >= 2) {
            best_start = i;
            best_len = j - i;
        }
        i = j;
    }
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < 8; i++) {
        if (i == best_start) {
            n += (size_t)snprintf(out + n, 40 - n, "::");
            i += best_len - 1;
            continue;
        }
        bool after_gap = best_start >= 0 && i == best_start + best_len;
        n += (size_t)snprintf(out + n, 40 - n, "%s%x", (i == 0 || after_gap) ? "" : ":", group[i]);
    }
}

static hil_net_tap_t taps[HIL_NET_L2_TAPS];

static hil_net_tap_t *tap_entry(uint16_t ethertype)
{
    for (int i = 0; i < HIL_NET_L2_TAPS; i++) {
        if (taps[i].ethertype == ethertype) {
            return &taps[i];
        }
    }
    return NULL;
}

hil_net_tap_t *hil_net_tap_set(uint16_t ethertype, hil_net_l2_cb_t cb, void *user)
{
    hil_net_tap_t *tap = tap_entry(ethertype);
    if (!cb) {
        if (tap) {
            *tap = (hil_net_tap_t){0};
        }
        return tap;
    }
    if (!tap) {
        tap = tap_entry(0);
    }
    if (tap) {
        *tap = (hil_net_tap_t){.ethertype = ethertype, .cb = cb, .user = user};
    }
    return tap;
}

const hil_net_tap_t *hil_net_tap_find(uint16_t ethertype)
{
    return ethertype ? tap_entry(ethertype) : NULL;
}
