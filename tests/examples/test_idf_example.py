"""An ESP-IDF example test, ported to the harness: pytest-embedded's `dut`, unchanged, on the harness's board.

Written the way ESP-IDF writes its example tests (`examples/ethernet/basic/pytest_eth_basic.py`, the console
examples): target markers or a `target` parameter, `dut.expect` on the boot log, the address taken from the
log, a console exchange with `dut.write`. Two lines differ from ESP-IDF's, because of what the test firmware
is and where its network lives: the address comes from the firmware's `HIL_EVENT got_ip` line
(firmware/PROTOCOL.md) instead of esp_netif's log line, and the ping runs in the lab's namespace (`lab.host`)
instead of on the machine's own network. Everything else (the fresh boot before each test, the crash verdict,
the console slice, the counters, the results record) comes with the `dut` fixture (docs/pytest-embedded.md).

Run it with `hil run tests/examples/test_idf_example.py` (`--board esp32p4 ...` for a real board).
"""

from __future__ import annotations

import json

import pytest
from pytest_embedded import Dut

from harness.lab.traffic import ping


@pytest.mark.eth_ip101
@pytest.mark.parametrize("target", ["esp32", "esp32p4"], indirect=["target"])
def test_idf_example_eth_basic(dut: Dut, lab) -> None:
    dut.expect_exact("ESP-ROM:esp32p4")
    dut.expect(r"app_init: Project name:\s+(\w+)")
    # wait for ip received
    dut_ip = dut.expect(r'"event":"got_ip","iface":"eth","ip":"(\d+\.\d+\.\d+\.\d+)"', timeout=30).group(1).decode()
    # ping it once
    assert ping(lab.host, dut_ip, count=1).loss_pct == 0, f"{dut_ip} does not answer"


@pytest.mark.esp32p4
@pytest.mark.generic
def test_idf_example_console(dut: Dut) -> None:
    project = dut.expect(r"Project name:\s+(\w+)").group(1).decode()
    dut.expect_exact("hil> ", timeout=10)
    dut.write("help")
    dut.expect(r'"cmd":"help","ok":true,"commands":\[[^\]]*"version"', timeout=5)
    dut.expect_exact("hil> ", timeout=5)
    dut.write("version")
    hello = json.loads(dut.expect(rb"HIL_HELLO (\{[^\x1b\r\n]*\})", timeout=5).group(1))
    assert hello["chip"] == dut.target == "esp32p4"
    assert hello["app"] == project
