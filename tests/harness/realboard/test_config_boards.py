"""hil.toml: [boards.<name>] and [nic] tables, validated with errors that name the key and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.config import LabConfig
from harness.errors import ConfigError

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_defaults_keep_their_keys() -> None:
    assert {"link", "thresholds", "budgets", "regress", "boards", "nic"} <= set(LabConfig.model_fields)
    assert LabConfig().board_table().port is None
    assert LabConfig().nic_iface() is None


def test_board_and_nic_tables() -> None:
    config = LabConfig.from_dict(
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
    assert config.board_table().port == "/dev/hil-p4-desk"
    assert config.board_table("desk").chip_rev == "v1.0"
    assert config.nic_iface() == "enx001"  # the board's own NIC wins over [nic]
    assert str(config.nic.subnet) == "10.77.0.0/24"


def test_several_boards_need_a_name() -> None:
    config = LabConfig.from_dict({"boards": {"a": {"port": "/dev/a"}, "b": {"port": "/dev/b"}}})
    with pytest.raises(ConfigError, match=r"several boards \(a, b\).*--board-name"):
        config.board_table()
    with pytest.raises(ConfigError, match=r"no \[boards.c\].*a, b"):
        config.board_table("c")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"boards": {"x": {"prot": "/dev/a"}}}, "boards.x.prot: unknown key; valid keys here: kind, port"),
        ({"boards": {"x": {"port": 3}}}, "boards.x.port: expected a valid string, got 3"),
        ({"boards": {"x": "oops"}}, "boards.x: expected a table"),
        (
            {"boards": {"x": {"port_mac": "60:55"}}},
            "boards.x.port_mac: expected a MAC like 60:55:f9:f0:00:01, got '60:55'",
        ),
        ({"boards": {"x": {"chip_rev": "rev3"}}}, "boards.x.chip_rev: expected a chip revision like v1.0"),
        ({"boards": {"x": {"kind": "esp32c6"}}}, "boards.x.kind: expected a board kind with a [boards.<name>] table"),
        ({"boards": {"x": {"eth_iface": "a-very-long-interface"}}}, "boards.x.eth_iface: expected an interface name"),
        ({"nic": {"iface": "eth 0"}}, "nic.iface: expected an interface name"),
        ({"nic": {"subnet": "10.77.0.0/33"}}, "nic.subnet: expected"),
        ({"nic": {"host_ip": "10.78.0.1"}}, "nic: expected host_ip must lie inside subnet 10.77.0.0/24"),
        ({"nic": {"pool_start": "10.77.0.200", "pool_end": "10.77.0.100"}}, "pool_start must not be above"),
        ({"nic": {"expect_speed_mbit": 99}}, "nic.expect_speed_mbit: expected 10, 100, 1000, 2500 or 10000"),
        ({"nic": {"duplex": "full"}}, "nic.duplex: unknown key; valid keys here: iface, subnet"),
    ],
)
def test_bad_values_are_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        LabConfig.from_dict(data)


# The malformed files of the core issue: each is refused at load, naming the file and the key.
@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[thresholds]\nthroughput_floor_pc = 50\n",
         ["thresholds.throughput_floor_pc: unknown key", "throughput_floor_pct"]),
        ("[treshold]\nping_loss_max_pct = 1\n", ["treshold: unknown key", "valid keys here: link, thresholds"]),
        ('[thresholds]\nping_rtt_p99_max_ms = "ten"\n',
         ["thresholds.ping_rtt_p99_max_ms: expected a valid number", "'ten'"]),
        ('[link]\nrate_mbit = "fast"\n', ["link.rate_mbit: expected a valid integer", "'fast'"]),
        ("[thresholds]\nthroughput_floor_pct = 150\n",
         ["thresholds.throughput_floor_pct: expected less than or equal to 100"]),
        ("[budgets.default]\nframe_pool_drop = 0\n",
         ["budgets.default.frame_pool_drop: not a HIL_STATS counter", "frame_pool_drops"]),
        ("[regress]\nwindow = 2\n", ["regress.window: expected greater than or equal to 3"]),
        ("[regress.thresholds.iperf3_tcp_rx_mbps]\nmin_efect_pct = 5.0\n",
         ["regress.thresholds.iperf3_tcp_rx_mbps.min_efect_pct: unknown key", "min_effect_pct"]),
    ],
)  # fmt: skip
def test_malformed_files_fail_at_load_naming_the_key(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "hil.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        LabConfig.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}:"), message
    for fragment in fragments:
        assert fragment in message, message


def test_budgets_of_a_file_change_only_the_keys_it_names() -> None:
    config = LabConfig.from_dict({"budgets": {"default": {"rx_drops": 5}, "ping": {"tx_fails": 1}}})
    assert config.budget("ping") == {"frame_pool_drops": 0, "tx_fails": 1, "rx_drops": 5}
    assert config.budget("link") == {"frame_pool_drops": 0, "tx_fails": 200, "rx_drops": 50}


def test_a_number_where_a_float_belongs_is_fine_and_the_fingerprint_is_stable() -> None:
    assert LabConfig.from_dict({"thresholds": {"throughput_floor_pct": 90}}).fingerprint() == LabConfig().fingerprint()
    assert LabConfig().fingerprint() != LabConfig.from_dict({"link": {"mtu": 1400}}).fingerprint()


def test_documented_example_is_valid() -> None:
    text = DOC.read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    from harness.config import tomllib

    config = LabConfig.from_dict(tomllib.loads(example))
    assert set(config.boards) == {"desk", "rack"}
    assert config.board_table("desk").port_mac
