"""The lab configuration file (`hil.toml`): floors, counter budgets, link and regression settings.

Every key is optional; `DEFAULTS` documents what applies when it is absent.
"""

from __future__ import annotations

import copy
import hashlib
import json
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
    },
    # Per-test budgets for HIL_STATS counter deltas; a scenario module's table overrides `default`.
    "budgets": {"default": {"frame_pool_drops": 0, "tx_fails": 0, "rx_drops": 0}},
    "regress": {"window": 10, "thresholds": {}},
    "boards": {},
}


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
