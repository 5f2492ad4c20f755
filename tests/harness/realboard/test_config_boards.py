"""hil.toml: [boards.<name>] and [nic] tables, validated with errors that name the key and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.config import DEFAULTS, LabConfig
from harness.errors import ConfigError

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_defaults_keep_their_keys() -> None:
    assert {"link", "thresholds", "budgets", "regress", "boards", "nic"} <= set(DEFAULTS)
    assert LabConfig().board_table() == {}
    assert LabConfig().nic_iface() is None


def test_board_and_nic_tables() -> None:
    config = LabConfig(
        {
            "boards": {
                "desk": {
                    "port": "/dev/hil-p4-desk",
                    "port_mac": "60:55:f9:f0:00:01",
                    "chip_rev": "v1.0",
                    "eth_iface": "enx001",
                    "build_dir": "/builds/p4",
                    "idf_path": "/opt/esp-idf",
                }
            },
            "nic": {"iface": "enp3s0"},
        }
    )
    assert config.board_table()["port"] == "/dev/hil-p4-desk"
    assert config.board_table("desk")["chip_rev"] == "v1.0"
    assert config.nic_iface() == "enx001"  # the board's own NIC wins over [nic]
    assert config.data["nic"]["subnet"] == "10.77.0.0/24"


def test_several_boards_need_a_name() -> None:
    config = LabConfig({"boards": {"a": {"port": "/dev/a"}, "b": {"port": "/dev/b"}}})
    with pytest.raises(ConfigError, match=r"several boards \(a, b\).*--board-name"):
        config.board_table()
    with pytest.raises(ConfigError, match=r"no \[boards.c\].*a, b"):
        config.board_table("c")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"boards": {"x": {"prot": "/dev/a"}}}, "unknown key(s) prot; known keys: kind, port"),
        ({"boards": {"x": {"port": 3}}}, "boards.x.port must be a non-empty string"),
        ({"boards": {"x": "oops"}}, "boards.x must be a table"),
        ({"boards": {"x": {"port_mac": "60:55"}}}, "port_mac '60:55' is not a MAC"),
        ({"boards": {"x": {"chip_rev": "rev3"}}}, "chip_rev 'rev3' is not a revision like v1.0"),
        ({"boards": {"x": {"kind": "esp32c6"}}}, "kind must be esp32p4"),
        ({"boards": {"x": {"eth_iface": "a-very-long-interface"}}}, "not an interface name"),
        ({"nic": {"iface": "eth 0"}}, "nic.iface 'eth 0' is not an interface name"),
        ({"nic": {"subnet": "10.77.0.0/33"}}, "hil.toml: nic:"),
        ({"nic": {"host_ip": "10.78.0.1"}}, "nic.host_ip must lie inside nic.subnet 10.77.0.0/24"),
        ({"nic": {"pool_start": "10.77.0.200", "pool_end": "10.77.0.100"}}, "pool_start must not be above"),
        ({"nic": {"expect_speed_mbit": 99}}, "expect_speed_mbit must be"),
        ({"nic": {"duplex": "full"}}, "nic: unknown key(s) duplex"),
    ],
)
def test_bad_values_are_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        LabConfig(data)


def test_documented_example_is_valid() -> None:
    text = DOC.read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    from harness.config import tomllib

    config = LabConfig(tomllib.loads(example))
    assert set(config.data["boards"]) == {"desk", "rack"}
    assert config.board_table("desk")["port_mac"]
