"""The lab configuration file (`hil.toml`) as a strict schema: floors, budgets, link, regression, boards, NIC.

Every key is optional and the defaults below are what applies when it is absent; docs/configuration.md
has a complete example. The schema is strict: an unknown key or table, a value of the wrong type or one
out of range is refused when the file is loaded, with the file, the key path, what was expected and the
valid keys, so a typo never silently leaves a default in force. Every consumer (`hil run`, `doctor`,
`gate`, `report`, `dashboard`) loads the file through `LabConfig.load`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from harness.console.protocol import COUNTER_FIELDS
from harness.errors import ConfigError

DEFAULT_PATH = Path("hil.toml")


def _matching(pattern: str, what: str) -> AfterValidator:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(what)
        return value

    return AfterValidator(check)


IfName = Annotated[str, _matching(r"[^\s/:]{1,15}", "an interface name (1-15 characters, no space, '/' or ':')")]
Mac = Annotated[str, _matching(r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}", "a MAC like 60:55:f9:f0:00:01")]
ChipRev = Annotated[str, _matching(r"v?\d+\.\d{1,2}", "a chip revision like v1.0 or v3.1")]

Percent = Annotated[float, Field(ge=0, le=100)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
# TOML writes addresses as strings: these fields parse them (everything else takes TOML's own types only).
IPv4Address = Annotated[ipaddress.IPv4Address, Strict(False)]
IPv4Network = Annotated[ipaddress.IPv4Network, Strict(False)]


class _Table(BaseModel):
    """A TOML table: no unknown keys, no type coercion (a string is never a number)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Link(_Table):
    """`[link]`: the cable the suite measures against (the virtual lab shapes its veth to it)."""

    rate_mbit: Annotated[int, Field(ge=1, le=100_000)] = 100
    mtu: Annotated[int, Field(ge=576, le=9000)] = 1500


class Thresholds(_Table):
    """`[thresholds]`: pass/fail bounds of the scenarios."""

    # Throughput tests fail below this share of the link's TCP goodput ceiling ...
    throughput_floor_pct: Percent = 90.0
    # ... or below this absolute figure when set (hardware users: e.g. 85).
    throughput_floor_mbps: Positive | None = None
    ping_loss_max_pct: Percent = 0.0
    # Ping fails when the 99th-percentile round trip exceeds this (wire RTT on hardware is 0.4-0.7 ms;
    # the bound is generous so only spikes of many ms, not jitter, trip it).
    ping_rtt_p99_max_ms: Positive = 10.0
    # MQTT: echoes lost (any QoS) and the time from a broker restart to the DUT's reconnect
    # (esp-mqtt retries every reconnect_timeout_ms, 10 s by default).
    mqtt_loss_max_pct: Percent = 0.0
    mqtt_reconnect_max_s: Positive = 15.0
    # Soak: the heap's minimum-free watermark must stay above this; UDP echoes lost over the run.
    soak_heap_min_free_bytes: Count = 65536
    soak_loss_max_pct: Percent = 0.0
    # select(): most concurrent TCP clients tried (hardware: 32 FDs in the shim, fewer left for clients).
    select_fd_limit: Annotated[int, Field(ge=1)] = 32
    # select(): a UDP datagram alone must be echoed within this (the loop's own timeout is 1 s).
    select_udp_wake_max_ms: Positive = 200.0
    # Heap watermark drop allowed over a run of connections (select churn, 200 HTTP connections).
    select_heap_drop_max_bytes: Count = 65536
    httpd_heap_drop_max_bytes: Count = 262144
    httpd_concurrent_clients: Annotated[int, Field(ge=1)] = 8
    # link: after a cable pull, the DUT must answer again within this many seconds.
    link_recover_max_s: Positive = 10.0


# One budget table maps HIL_STATS counters to the most a test may add to them.
Budget = dict[Literal[COUNTER_FIELDS], Count]  # type: ignore[valid-type]
DEFAULT_BUDGETS: dict[str, dict[str, int]] = {
    "default": {"frame_pool_drops": 0, "tx_fails": 0, "rx_drops": 0},
    # Frames sent while the cable is pulled fail; what a pull loses is bounded, not zero.
    "link": {"tx_fails": 200, "rx_drops": 50},
    # Hostile traffic is dropped on purpose: bad checksums, fragments and floods count as drops.
    "robustness": {"rx_drops": 100000, "frame_pool_drops": 100000, "tx_fails": 1000},
}


class RegressSettings(_Table):
    """One set of regression thresholds (harness/results/regress.py explains each)."""

    min_effect_pct: Annotated[float, Field(ge=0)] | None = None
    noise_sigmas: Annotated[float, Field(ge=0)] | None = None
    min_abs_effect: Annotated[float, Field(ge=0)] | None = None
    window: Annotated[int, Field(ge=3)] | None = None
    min_history: Annotated[int, Field(ge=3)] | None = None

    def given(self) -> dict[str, Any]:
        """The settings the file sets (the rest keeps the defaults of `harness.results.regress`)."""
        return self.model_dump(exclude_none=True)


class Regress(RegressSettings):
    """`[regress]`: defaults for every metric, and `[regress.thresholds.<metric>]` overrides."""

    thresholds: dict[str, RegressSettings] = Field(default_factory=dict)

    def given(self) -> dict[str, Any]:
        """The default settings the file sets, without the per-metric tables."""
        return self.model_dump(exclude_none=True, exclude={"thresholds"})


class Memory(_Table):
    """`[memory]`: what bring-up must leave free, checked right after boot (tests/scenarios/test_boot.py)."""

    free_socket_handles_min: Count = 8  # the stack's socket limit minus the sockets open at idle
    free_fds_min: Count = 12  # the BSD-socket descriptor table minus the descriptors open at idle
    internal_heap_free_min_bytes: Count = 65536  # internal RAM left for task stacks, TLS and DMA


class BoardTable(_Table):
    """`[boards.<name>]`: one real board (command-line options win over it)."""

    kind: str = "esp32p4"
    port: Annotated[str, Field(min_length=1)] | None = None
    port_mac: Mac | None = None
    chip_rev: ChipRev | None = None
    idf_path: Annotated[str, Field(min_length=1)] | None = None
    app_path: Annotated[str, Field(min_length=1)] | None = None
    build_dir: Annotated[str, Field(min_length=1)] | None = None
    eth_iface: IfName | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from harness.boards.kinds import board_kinds

        real = sorted(name for name, board_kind in board_kinds().items() if board_kind.uses_board_tables)
        if kind not in real:
            raise ValueError(f"a board kind with a [boards.<name>] table: {', '.join(real)}")
        return kind


class Nic(_Table):
    """`[nic]`: the host NIC cabled to a real board, and the lab subnet served on it."""

    iface: IfName | None = None
    subnet: IPv4Network = ipaddress.IPv4Network("10.77.0.0/24")
    host_ip: IPv4Address = ipaddress.IPv4Address("10.77.0.1")
    pool_start: IPv4Address = ipaddress.IPv4Address("10.77.0.100")
    pool_end: IPv4Address = ipaddress.IPv4Address("10.77.0.199")
    expect_speed_mbit: Literal[10, 100, 1000, 2500, 10000] = 100
    expect_duplex: Literal["full", "half"] = "full"

    @model_validator(mode="after")
    def _addresses_in_subnet(self) -> Nic:
        outside = [key for key in ("host_ip", "pool_start", "pool_end") if getattr(self, key) not in self.subnet]
        if outside:
            raise ValueError(f"{', '.join(outside)} must lie inside subnet {self.subnet}")
        if self.pool_end < self.pool_start:
            raise ValueError("pool_start must not be above pool_end")
        return self


class LabConfig(_Table):
    """The effective configuration: the defaults overlaid with the user's `hil.toml`."""

    link: Link = Field(default_factory=Link)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    # Per-test budgets for HIL_STATS counter deltas; a scenario module's table overrides `default`.
    budgets: dict[str, Budget] = Field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_BUDGETS.items()})
    regress: Regress = Field(default_factory=Regress)
    memory: Memory = Field(default_factory=Memory)
    boards: dict[str, BoardTable] = Field(default_factory=dict)
    nic: Nic = Field(default_factory=Nic)
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("budgets", mode="before")
    @classmethod
    def _over_default_budgets(cls, budgets: Any) -> Any:
        # A file's [budgets.<scope>] changes the keys it names; the other default budgets stay.
        if not isinstance(budgets, Mapping):
            return budgets
        merged: dict[str, Any] = {scope: dict(table) for scope, table in DEFAULT_BUDGETS.items()}
        for scope, table in budgets.items():
            merged[scope] = {**merged.get(scope, {}), **table} if isinstance(table, Mapping) else table
        return merged

    # --- loading -----------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | None = None) -> LabConfig:
        """Read ``path`` (or ./hil.toml when it exists; the defaults when it does not).

        Raises:
            ConfigError: the file is missing (when named), not TOML, or breaks the schema; the message names
                the file, the key path, what was expected and the valid keys.
        """
        explicit = path is not None
        path = path or DEFAULT_PATH
        if not path.exists():
            if explicit:
                raise ConfigError(f"config file {path} does not exist (docs/configuration.md has an example)")
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: Path | None = None) -> LabConfig:
        """Validate a parsed file (``source`` names it in errors and in `hil doctor`)."""
        try:
            config = cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, source or DEFAULT_PATH)) from None
        config._source = source
        return config

    @property
    def source(self) -> Path | None:
        """The file the configuration came from (None: built-in defaults)."""
        return self._source

    # --- what consumers ask ----------------------------------------------------------------------------

    def board_table(self, name: str | None = None) -> BoardTable:
        """The `[boards.<name>]` table; with no name, the only one (an empty table when there is none)."""
        where = self.source or DEFAULT_PATH
        if name is not None:
            if name not in self.boards:
                known = ", ".join(sorted(self.boards)) or "none"
                raise ConfigError(f"no [boards.{name}] table in {where} (boards defined: {known})")
            return self.boards[name]
        if len(self.boards) > 1:
            raise ConfigError(
                f"{where} defines several boards ({', '.join(sorted(self.boards))}): choose one with --board-name"
            )
        return next(iter(self.boards.values()), BoardTable())

    def nic_iface(self, board_name: str | None = None) -> str | None:
        """The NIC cabled to the board: the board's `eth_iface`, else `[nic].iface`."""
        return self.board_table(board_name).eth_iface or self.nic.iface

    def throughput_floor_mbps(self, ceiling_mbps: float) -> float:
        """The lowest acceptable throughput for a link with this goodput ceiling."""
        if self.thresholds.throughput_floor_mbps is not None:
            return float(self.thresholds.throughput_floor_mbps)
        return ceiling_mbps * self.thresholds.throughput_floor_pct / 100

    def budget(self, scenario: str) -> dict[str, int]:
        """Counter budgets for a scenario (module name without `test_`), falling back to `default`."""
        return {**self.budgets["default"], **self.budgets.get(scenario, {})}

    def fingerprint(self) -> str:
        """Stable hash of the settings that change what a measurement means."""
        relevant = self.model_dump(mode="json", include={"link", "thresholds", "budgets"})
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


# --- error messages ------------------------------------------------------------------------------------------


def describe_errors(error: ValidationError, source: Path) -> str:
    """One line per problem: the file, the key path, what was expected, and the valid keys where that helps."""
    lines = [f"{source}: {len(error.errors())} problem(s); docs/configuration.md lists every key"]
    for problem in error.errors():
        loc = tuple(problem["loc"])
        key = _key_path(loc)
        kind = problem["type"]
        if kind == "extra_forbidden":
            lines.append(f"  {key}: unknown key; valid keys here: {', '.join(_valid_keys(loc[:-1]))}")
        elif kind == "literal_error" and key.startswith("budgets."):
            lines.append(f"  {key}: not a HIL_STATS counter; valid counters: {', '.join(COUNTER_FIELDS)}")
        elif kind == "model_type" or kind == "dict_type":
            lines.append(f"  {key}: expected a table ([{key}]), got {_shown(problem['input'])}")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: expected {_expected(message)}, got {_shown(problem['input'])}")
    return "\n".join(lines)


def _key_path(loc: tuple[Any, ...]) -> str:
    # pydantic adds the constraint it tried to the path of a failed `X | None` or a dict key (`[key]`).
    parts = [
        str(part) for part in loc if part not in ("[key]",) and not str(part).startswith(("function-", "constrained-"))
    ]
    parts = [part for part in parts if part not in ("float", "int", "str", "none", "is-instance[IPv4Address]")]
    return ".".join(parts) or "(top level)"


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the table at ``loc`` accepts (``loc`` as pydantic reports it, dict keys included)."""
    model: type[BaseModel] = LabConfig
    index = 0
    while index < len(loc):
        field = model.model_fields.get(str(loc[index]))
        if field is None:
            break
        annotation = field.annotation
        inner = getattr(annotation, "__args__", ())
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model, index = annotation, index + 1
        elif inner and isinstance(inner[-1], type) and issubclass(inner[-1], BaseModel):
            model, index = inner[-1], index + 2  # dict[str, Model]: skip the user's table name
        else:
            break
    return list(model.model_fields)


def _expected(message: str) -> str:
    text = message[0].lower() + message[1:] if message else "another value"
    return text.removeprefix("input should be ").removeprefix("value should be ")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
