"""The lab configuration file (`hil.toml`): floors, counter budgets, link, regression, boards and the NIC.

Every key is optional; `DEFAULTS` documents what applies when it is absent. docs/configuration.md has a
complete example.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from harness.errors import ConfigError

DEFAULT_PATH = Path("hil.toml")

DEFAULTS: dict[str, Any] = {
    "link": {"rate_mbit": 100, "mtu": 1500},
    "thresholds": {
        # Throughput tests fail below this share of the link's TCP goodput ceiling ...
        "throughput_floor_pct": 90.0,
        # ... or below this absolute figure when set (hardware users: e.g. 85).
        "throughput_floor_mbps": None,
        "ping_loss_max_pct": 0.0,
        # Ping fails when the 99th-percentile round trip exceeds this (wire RTT on hardware is 0.4-0.7 ms;
        # the bound is generous so only spikes of many ms, not jitter, trip it).
        "ping_rtt_p99_max_ms": 10.0,
        # MQTT: echoes lost (any QoS) and the time from a broker restart to the DUT's reconnect
        # (esp-mqtt retries every reconnect_timeout_ms, 10 s by default).
        "mqtt_loss_max_pct": 0.0,
        "mqtt_reconnect_max_s": 15.0,
        # Soak: the heap's minimum-free watermark must stay above this; UDP echoes lost over the run.
        "soak_heap_min_free_bytes": 65536,
        "soak_loss_max_pct": 0.0,
        # select(): most concurrent TCP clients tried (hardware: 32 FDs in the shim, fewer left for clients).
        "select_fd_limit": 32,
        # select(): a UDP datagram alone must be echoed within this (the loop's own timeout is 1 s).
        "select_udp_wake_max_ms": 200.0,
        # Heap watermark drop allowed over a run of connections (select churn, 200 HTTP connections).
        "select_heap_drop_max_bytes": 65536,
        "httpd_heap_drop_max_bytes": 262144,
        "httpd_concurrent_clients": 8,
        # link: after a cable pull, the DUT must answer again within this many seconds.
        "link_recover_max_s": 10.0,
    },
    # Per-test budgets for HIL_STATS counter deltas; a scenario module's table overrides `default`.
    "budgets": {
        "default": {"frame_pool_drops": 0, "tx_fails": 0, "rx_drops": 0},
        # Frames sent while the cable is pulled fail; what a pull loses is bounded, not zero.
        "link": {"tx_fails": 200, "rx_drops": 50},
        # Hostile traffic is dropped on purpose: bad checksums, fragments and floods count as drops.
        "robustness": {"rx_drops": 100000, "frame_pool_drops": 100000, "tx_fails": 1000},
    },
    "regress": {"window": 10, "thresholds": {}},
    # Memory budget right after boot (tests/scenarios/test_boot.py): what bring-up must leave free.
    "memory": {
        "free_socket_handles_min": 8,  # the stack's socket limit minus the sockets open at idle
        "free_fds_min": 12,  # the BSD-socket descriptor table minus the descriptors open at idle
        "internal_heap_free_min_bytes": 65536,  # internal RAM left for task stacks, TLS and DMA
    },
    # [boards.<name>]: one table per real board (see BOARD_KEYS).
    "boards": {},
    # [nic]: the host NIC cabled to a real board, and the lab subnet served on it.
    "nic": {
        "iface": None,
        "subnet": "10.77.0.0/24",
        "host_ip": "10.77.0.1",
        "pool_start": "10.77.0.100",
        "pool_end": "10.77.0.199",
        "expect_speed_mbit": 100,
        "expect_duplex": "full",
    },
}

# What a [boards.<name>] table may hold, and what each value means.
BOARD_KEYS: dict[str, str] = {
    "kind": "board kind: esp32p4 (the default)",
    "port": "serial port path, or rfc2217://host:port",
    "port_mac": "the board's base MAC, to find its port among several",
    "chip_rev": "chip revision, e.g. v1.0 or v3.1",
    "idf_path": "ESP-IDF checkout used to build this board's firmware",
    "app_path": "ESP-IDF project directory (default firmware/hil_app)",
    "build_dir": "build directory, absolute or under app_path",
    "eth_iface": "host NIC cabled to this board (overrides [nic].iface)",
}
_MAC = re.compile(r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}")
_CHIP_REV = re.compile(r"v?\d+\.\d{1,2}")
_IFNAME = re.compile(r"[^\s/:]{1,15}")


def _merge(base: dict[str, Any], override: dict[str, Any], path: str = "") -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if isinstance(merged.get(key), dict):
            if not isinstance(value, dict):
                raise ConfigError(f"hil.toml: `{where}` must be a table, got {type(value).__name__}")
            merged[key] = _merge(merged[key], value, where + ".")
        else:
            merged[key] = value
    return merged


class LabConfig:
    """The effective configuration: defaults overlaid with the user's file."""

    def __init__(self, data: dict[str, Any] | None = None, source: Path | None = None) -> None:
        self.source = source
        self.data = _merge(DEFAULTS, data or {})
        self._validate()

    @classmethod
    def load(cls, path: Path | None = None) -> LabConfig:
        """Read ``path`` (or ./hil.toml when it exists); a malformed file is a ConfigError naming the line."""
        explicit = path is not None
        path = path or DEFAULT_PATH
        if not path.exists():
            if explicit:
                raise ConfigError(f"config file {path} does not exist (see docs/configuration.md for an example)")
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        return cls(data, path)

    def _validate(self) -> None:
        thresholds = self.data["thresholds"]
        pct = thresholds["throughput_floor_pct"]
        if not isinstance(pct, (int, float)) or not 0 <= pct <= 100:
            raise ConfigError(f"hil.toml: thresholds.throughput_floor_pct must be 0..100, got {pct!r}")
        mbps = thresholds["throughput_floor_mbps"]
        if mbps is not None and (not isinstance(mbps, (int, float)) or mbps < 0):
            raise ConfigError(f"hil.toml: thresholds.throughput_floor_mbps must be a positive number, got {mbps!r}")
        for scope, budget in self.data["budgets"].items():
            if not isinstance(budget, dict) or not all(isinstance(v, int) and v >= 0 for v in budget.values()):
                raise ConfigError(f"hil.toml: budgets.{scope} must map counter names to whole numbers >= 0")
        for key, value in self.data["memory"].items():
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"hil.toml: memory.{key} must be a whole number >= 0, got {value!r}")
        for name, board in self.data["boards"].items():
            _validate_board(name, board)
        _validate_nic(self.data["nic"])

    def board_table(self, name: str | None = None) -> dict[str, Any]:
        """The `[boards.<name>]` table; with no name, the only one (or an empty table when there is none)."""
        boards = self.data["boards"]
        if name is not None:
            if name not in boards:
                known = ", ".join(sorted(boards)) or "none"
                raise ConfigError(f"no [boards.{name}] table in {self.source or 'hil.toml'} (boards defined: {known})")
            return dict(boards[name])
        if len(boards) > 1:
            raise ConfigError(
                f"{self.source or 'hil.toml'} defines several boards ({', '.join(sorted(boards))}): choose one with "
                "--board-name"
            )
        return dict(next(iter(boards.values()), {}))

    def nic_iface(self, board_name: str | None = None) -> str | None:
        """The NIC cabled to the board: the board's `eth_iface`, else `[nic].iface`."""
        return self.board_table(board_name).get("eth_iface") or self.data["nic"]["iface"]

    def throughput_floor_mbps(self, ceiling_mbps: float) -> float:
        """The lowest acceptable throughput for a link with this goodput ceiling."""
        thresholds = self.data["thresholds"]
        if thresholds["throughput_floor_mbps"] is not None:
            return float(thresholds["throughput_floor_mbps"])
        return ceiling_mbps * thresholds["throughput_floor_pct"] / 100

    def budget(self, scenario: str) -> dict[str, int]:
        """Counter budgets for a scenario (module name without `test_`), falling back to `default`."""
        budgets = self.data["budgets"]
        return {**budgets["default"], **budgets.get(scenario, {})}

    def fingerprint(self) -> str:
        """Stable hash of the settings that change what a measurement means."""
        relevant = {key: self.data[key] for key in ("link", "thresholds", "budgets")}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _validate_board(name: str, board: Any) -> None:
    where = f"hil.toml: boards.{name}"
    if not isinstance(board, dict):
        raise ConfigError(f"{where} must be a table ([boards.{name}])")
    unknown = sorted(set(board) - set(BOARD_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(BOARD_KEYS)}")
    for key, value in board.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{key} must be a non-empty string ({BOARD_KEYS[key]}), got {value!r}")
    if board.get("kind", "esp32p4") != "esp32p4":
        raise ConfigError(f"{where}.kind must be esp32p4 (the only real board supported), got {board['kind']!r}")
    if "port_mac" in board and not _MAC.fullmatch(board["port_mac"]):
        raise ConfigError(f"{where}.port_mac {board['port_mac']!r} is not a MAC like 60:55:f9:f0:00:01")
    if "chip_rev" in board and not _CHIP_REV.fullmatch(board["chip_rev"]):
        raise ConfigError(f"{where}.chip_rev {board['chip_rev']!r} is not a revision like v1.0 or v3.1")
    if "eth_iface" in board and not _IFNAME.fullmatch(board["eth_iface"]):
        raise ConfigError(f"{where}.eth_iface {board['eth_iface']!r} is not an interface name (at most 15 characters)")


def _validate_nic(nic: dict[str, Any]) -> None:
    unknown = sorted(set(nic) - set(DEFAULTS["nic"]))
    if unknown:
        known = ", ".join(DEFAULTS["nic"])
        raise ConfigError(f"hil.toml: nic: unknown key(s) {', '.join(unknown)}; known keys: {known}")
    iface = nic["iface"]
    if iface is not None and (not isinstance(iface, str) or not _IFNAME.fullmatch(iface)):
        raise ConfigError(f"hil.toml: nic.iface {iface!r} is not an interface name (at most 15 characters)")
    try:
        subnet = ipaddress.IPv4Network(nic["subnet"])
        addresses = {key: ipaddress.IPv4Address(nic[key]) for key in ("host_ip", "pool_start", "pool_end")}
    except (ValueError, TypeError) as exc:
        example = 'subnet = "10.77.0.0/24", host_ip = "10.77.0.1"'
        raise ConfigError(f"hil.toml: nic: {exc} (write e.g. {example})") from exc
    outside = [key for key, address in addresses.items() if address not in subnet]
    if outside:
        raise ConfigError(f"hil.toml: nic.{', nic.'.join(outside)} must lie inside nic.subnet {subnet}")
    if addresses["pool_end"] < addresses["pool_start"]:
        raise ConfigError("hil.toml: nic.pool_start must not be above nic.pool_end")
    if nic["expect_speed_mbit"] not in (10, 100, 1000, 2500, 10000):
        speed = nic["expect_speed_mbit"]
        raise ConfigError(f"hil.toml: nic.expect_speed_mbit must be 10, 100, 1000, 2500 or 10000, got {speed!r}")
    if nic["expect_duplex"] not in ("full", "half"):
        raise ConfigError(f"hil.toml: nic.expect_duplex must be full or half, got {nic['expect_duplex']!r}")
