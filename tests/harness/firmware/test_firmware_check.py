"""`hil firmware check` passes on the repository and catches each kind of breakage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.firmware.check import check_app, parse_protocol, parse_sdkconfig
from tests.harness.firmware.conftest import REPO, SERVICES_HEADER


def _edit(root: Path, relative: str, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}: the breakage table is out of date"
    path.write_text(text.replace(old, new))


def test_repository_is_consistent() -> None:
    if not SERVICES_HEADER.exists():
        pytest.skip("firmware/services is not on this branch yet; the check needs it")
    assert [str(f) for f in check_app(REPO)] == []


def test_cli_exit_code_follows_findings(firmware_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(firmware_copy, "firmware/hil_app/sdkconfig.defaults", "CONFIG_FREERTOS_HZ=1000", "CONFIG_FREERTOS_HZ=100")
    assert main(["firmware", "check", "--repo", str(firmware_copy)]) == 1
    assert "CONFIG_FREERTOS_HZ=1000 is required" in capsys.readouterr().out


def test_protocol_parse_finds_every_command() -> None:
    spec = parse_protocol((REPO / "firmware" / "PROTOCOL.md").read_text())
    expected = {
        "help",
        "version",
        "ip",
        "stats",
        "reboot",
        "crash",
        "mqtt",
        "tls",
        "mcast",
        "l2tap",
        "loopback",
        "sockets",
        "heap",
    }
    assert set(spec.commands) == expected
    assert {"panic", "abort", "wdt", "stack_overflow", "rust_panic"} <= spec.commands["crash"]
    assert {"join", "leave"} <= spec.commands["mcast"]
    assert spec.routes == ["/dl/", "/ul", "/stats", "/ws"]
    assert {80, 443, 7, 7000, 7001, 5201, 5007, 0x88B5} <= spec.ports


def test_sdkconfig_parser_rejects_trailing_comments() -> None:
    options, bad = parse_sdkconfig('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y  # why\nCONFIG_D="x#y"\n')
    assert options == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_D": '"x#y"'}
    assert bad == ["CONFIG_C=y  # why"]


# (file to edit, text to replace, replacement, words the finding must contain)
BREAKAGES = {
    "shim disabled": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_LWIP_COMPAT_ENABLE=y\n",
        "",
        "CONFIG_LWIP_COMPAT_ENABLE",
    ),
    "no loopback": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_LWIP_NETIF_LOOPBACK=y",
        "CONFIG_LWIP_NETIF_LOOPBACK=n",
        "CONFIG_LWIP_NETIF_LOOPBACK",
    ),
    "fewer DMA buffers": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_ETH_DMA_RX_BUFFER_NUM=30",
        "CONFIG_ETH_DMA_RX_BUFFER_NUM=10",
        "CONFIG_ETH_DMA_RX_BUFFER_NUM",
    ),
    "no websocket": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_HTTPD_WS_SUPPORT=y",
        "# CONFIG_HTTPD_WS_SUPPORT is not set",
        "CONFIG_HTTPD_WS_SUPPORT",
    ),
    "perf cliff": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_FREERTOS_HZ=1000",
        "CONFIG_FREERTOS_HZ=1000\nCONFIG_COMPILER_OPTIMIZATION_PERF=y",
        "CONFIG_COMPILER_OPTIMIZATION_PERF",
    ),
    "v0.1 option in default": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_FREERTOS_HZ=1000",
        "CONFIG_FREERTOS_HZ=1000\nCONFIG_VFS_SUPPORT_SELECT=n",
        "CONFIG_VFS_SUPPORT_SELECT",
    ),
    "trailing comment": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_LWIP_NETIF_LOOPBACK=y",
        "CONFIG_LWIP_NETIF_LOOPBACK=y  # loopback",
        "not sdkconfig syntax",
    ),
    "FDs beyond fd_set": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_LWIP_COMPAT_MAX_FDS=32",
        "CONFIG_LWIP_COMPAT_MAX_FDS=48",
        "FD_SETSIZE",
    ),
    "rev variant empty": (
        "firmware/hil_app/sdkconfig.defaults.rev_lt_v3",
        "CONFIG_ESP32P4_SELECTS_REV_LESS_V3=y",
        "",
        "CONFIG_ESP32P4_SELECTS_REV_LESS_V3",
    ),
    "v0.1 variant wrong": (
        "firmware/hil_app/sdkconfig.defaults.smoltcp_v0_1",
        "CONFIG_VFS_SUPPORT_SELECT=n",
        "CONFIG_VFS_SUPPORT_SELECT=y",
        "CONFIG_VFS_SUPPORT_SELECT",
    ),
    "0.2 line allowed on ESP-IDF 5.5": (
        "firmware/hil_app/main/idf_component.yml",
        '      - if: "idf_version <6.0"\n        version: "~0.1.1"',
        '      - if: "idf_version <6.0"\n        version: "0.2.0-rc.1"',
        "README.md's matrix",
    ),
    "esp-smoltcp in the lwIP build": (
        "firmware/hil_app/main/idf_component.yml",
        '        version: "~0.1.0"\n    rules:\n      - if: "$CONFIG{HIL_NET_STACK_SMOLTCP} == True"\n',
        '        version: "~0.1.0"\n',
        "HIL_NET_STACK_SMOLTCP",
    ),
    "unknown Kconfig symbol": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_ESP_HTTPS_SERVER_ENABLE=y",
        "CONFIG_ESP_HTTPS_SERVER_ENABLE=y\nCONFIG_ESP_TLS_SERVER=y",
        "CONFIG_ESP_TLS_SERVER is not a Kconfig symbol",
    ),
    "360 MHz in the rev >= 3 build": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_FREERTOS_HZ=1000",
        "CONFIG_FREERTOS_HZ=1000\nCONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_360=y",
        "CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_360",
    ),
    "lru purge through the control socket": (
        "firmware/hil_app/sdkconfig.defaults",
        "CONFIG_HTTPD_QUEUE_WORK_BLOCKING=y",
        "# CONFIG_HTTPD_QUEUE_WORK_BLOCKING is not set",
        "CONFIG_HTTPD_QUEUE_WORK_BLOCKING",
    ),
    "lwip variant without IPv6": (
        "firmware/hil_app/sdkconfig.defaults.lwip",
        "CONFIG_LWIP_IPV6=y",
        "CONFIG_LWIP_IPV6=n",
        "CONFIG_LWIP_IPV6",
    ),
    "ip101 on v5.5": (
        "firmware/hil_app/main/idf_component.yml",
        '  espressif/ip101:\n    version: "^1.0.0"\n    rules:\n      - if: "idf_version >=6.0"\n',
        '  espressif/ip101: "^1.0.0"\n',
        "espressif/ip101",
    ),
    "mqtt not conditional": (
        "firmware/hil_app/main/idf_component.yml",
        '  espressif/mqtt:\n    version: "^1.0.0"\n    rules:\n      - if: "idf_version >=6.0"\n',
        '  espressif/mqtt: "^1.0.0"\n',
        "espressif/mqtt",
    ),
    "override left on": (
        "firmware/hil_app/main/idf_component.yml",
        '    # override_path: "../../../../esp-smoltcp/components/esp_smoltcp"',
        '    override_path: "../../../../esp-smoltcp/components/esp_smoltcp"',
        "override_path",
    ),
    "bad yaml": ("firmware/hil_app/main/idf_component.yml", "dependencies:", "dependencies: [", "not valid YAML"),
    "command not registered": (
        "firmware/hil_app/main/hil_cmds.c",
        '.command = "heap"',
        '.command = "heap_info"',
        "'heap'",
    ),
    "subcommand missing": ("firmware/hil_app/main/hil_mcast.c", '"leave"', '"part"', "'leave'"),
    "crash kind missing": ("firmware/hil_app/main/hil_crash.c", '"wdt"', '"watchdog"', "'wdt'"),
    "usage drifted": (
        "firmware/hil_app/main/hil_tls.c",
        '"usage: tls get <https-url>"',
        '"usage: tls get <url>"',
        "usage: tls get <https-url>",
    ),
    "new command in protocol": ("firmware/PROTOCOL.md", "| `heap` |", "| `frob <x>` | frob | |\n| `heap` |", "'frob'"),
    "route missing": ("firmware/hil_app/main/hil_http.c", '.uri = "/ws"', '.uri = "/websocket"', "/ws"),
    "port changed": (
        "firmware/hil_app/main/hil_app.h",
        "#define HIL_PORT_MCAST_ECHO 5007",
        "#define HIL_PORT_MCAST_ECHO 5008",
        "5007",
    ),
    "source not built": ("firmware/hil_app/main/CMakeLists.txt", '"hil_l2.c" ', "", "hil_l2.c"),
    "services not compiled": (
        "firmware/hil_app/main/CMakeLists.txt",
        '"${services_dir}/platform/freertos.c"',
        "",
        "FreeRTOS platform layer",
    ),
    "flow control dropped": (
        "firmware/hil_app/main/hil_eth.c",
        "ETH_CMD_S_FLOW_CTRL",
        "ETH_CMD_G_MAC_ADDR",
        "ETH_CMD_S_FLOW_CTRL",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_breakage_is_reported(firmware_copy: Path, breakage: str) -> None:
    relative, old, new, expected = BREAKAGES[breakage]
    before = [str(f) for f in check_app(firmware_copy) if expected in str(f)]
    assert before == [], f"the intact copy already reports {before}"
    _edit(firmware_copy, relative, old, new)
    after = [str(f) for f in check_app(firmware_copy)]
    assert any(expected in finding for finding in after), after


def test_missing_certificate_is_reported(firmware_copy: Path) -> None:
    (firmware_copy / "firmware" / "certs" / "dut_server.key").unlink()
    assert any(re.search(r"certs/dut_server\.key: embedded .* missing", str(f)) for f in check_app(firmware_copy))
