"""`hil doctor`: what this machine has and lacks for the virtual board and for a real ESP32-P4.

Each check yields one line: status, what was checked, what was found, and the fix. Missing pieces the
virtual board needs are failures; pieces only a real board needs (serial port, NIC, ESP-IDF) and crash
decoding that falls short of a full backtrace are warnings.
Nothing here changes the machine: the NIC is only read (ethtool), the serial ports only listed.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.config import BoardTable, LabConfig
from harness.console.decode import DecodingStatus, decoding_status
from harness.errors import ConfigError, HilError

OK, WARN, FAIL = "ok", "warn", "FAIL"
TOOL_TIMEOUT_S = 15.0

# Programs the virtual board's lab and suite run, with the Debian package that provides each.
LAB_TOOLS: dict[str, str] = {
    "ip": "iproute2",
    "tc": "iproute2",
    "iperf3": "iperf3",
    "ping": "iputils-ping",
    "mosquitto": "mosquitto",
    "openssl": "openssl",
    "cc": "gcc",
}


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    status: str
    what: str
    found: str
    fix: str = ""

    def line(self) -> str:
        """`ok    what  found` or `warn  what  found -> fix: ...`."""
        text = f"{self.status:<5} {self.what:<30} {self.found}"
        return f"{text} -> fix: {self.fix}" if self.fix and self.status != OK else text


@dataclass
class DoctorInputs:
    """What the doctor looks at; defaults read this machine."""

    config_path: Path | None = None
    board_name: str | None = None
    port: str | None = None
    eth_iface: str | None = None
    which: Callable[[str], str | None] = shutil.which
    environ: dict[str, str] | None = None

    def env(self) -> dict[str, str]:
        """The environment the checks read (``environ``, else this process's)."""
        return self.environ if self.environ is not None else dict(os.environ)

    serial_ports: Iterable[object] | None = None


def _version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if done.returncode == 0 and text else None


def check_tools(inputs: DoctorInputs) -> list[Check]:
    """The lab's programs (needed by the virtual board)."""
    checks = []
    for tool, package in LAB_TOOLS.items():
        path = inputs.which(tool)
        if path:
            checks.append(Check(OK, f"tool {tool}", path))
        else:
            checks.append(
                Check(FAIL, f"tool {tool}", "not found", f"`apt-get install {package}` (or `sudo ci/install.sh`)")
            )
    ethtool = inputs.which("ethtool")
    checks.append(
        Check(OK, "tool ethtool", ethtool)
        if ethtool
        else Check(WARN, "tool ethtool", "not found (needed for a real NIC)", "`apt-get install ethtool`")
    )
    return checks


def check_python_packages() -> list[Check]:
    """esptool (flashing runs it as a program), at the version installed."""
    checks = []
    for package in ("esptool",):
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(FAIL, f"python {package}", "not installed", "`ci/install.sh` in the checkout"))
            continue
        checks.append(Check(OK, f"python {package}", version))
    return checks


def check_privileges() -> list[Check]:
    """Capabilities, /run/netns and /dev/net/tun."""
    from harness.privileges import FIX, check_lab_privileges

    report = check_lab_privileges()
    who = "root" if report.is_root else f"uid {os.geteuid()}"
    checks = []
    if report.missing:
        checks.append(Check(FAIL, "privileges", f"{who}, missing {', '.join(report.missing)}", FIX))
    else:
        checks.append(Check(OK, "privileges", f"{who}, has {', '.join(sorted(report.effective))}"))
    checks.append(
        Check(OK, "/run/netns", "writable")
        if report.netns_dir_writable
        else Check(FAIL, "/run/netns", "not writable", FIX)
    )
    checks.append(
        Check(OK, "/dev/net/tun", "usable")
        if report.tun_available
        else Check(
            WARN,
            "/dev/net/tun",
            "not usable (only the optional TAP wire needs it)",
            "`modprobe tun`; in a container pass --device /dev/net/tun",
        )
    )
    return checks


def check_config(inputs: DoctorInputs) -> tuple[list[Check], LabConfig | None]:
    """The lab config file."""
    try:
        config = LabConfig.load(inputs.config_path)
    except ConfigError as exc:
        return [Check(FAIL, "config file", str(exc), "fix the file (docs/configuration.md has a full example)")], None
    if config.source is None:
        return [Check(OK, "config file", "none (./hil.toml absent): built-in defaults")], config
    boards = ", ".join(sorted(config.boards)) or "no [boards.*]"
    return [Check(OK, "config file", f"{config.source} ({boards})")], config


def check_serial(inputs: DoctorInputs, config: LabConfig | None) -> list[Check]:
    """The board's serial port: configured, auto-detected, or none."""
    from harness.boards.esp32p4 import board_ports, list_serial_ports

    table = _board_table(config, inputs.board_name)
    port = inputs.port or inputs.env().get("ESPPORT") or table.port
    if port:
        if port.startswith(("rfc2217://", "socket://")) or Path(port).exists():
            return [Check(OK, "serial port", f"{port} (configured)")]
        return [
            Check(
                WARN,
                "serial port",
                f"{port} (configured) does not exist",
                "plug the board in, or fix `port` in hil.toml / --port",
            )
        ]
    every = list_serial_ports(inputs.serial_ports)
    found = board_ports(every)
    if len(found) == 1:
        return [Check(OK, "serial port", f"{found[0].label()} (auto-detected)")]
    if found:
        return [
            Check(
                WARN,
                "serial port",
                "several boards: " + "; ".join(p.label() for p in found),
                "choose with --port/--port-mac or `port`/`port_mac` in hil.toml",
            )
        ]
    seen = "; ".join(p.device for p in every) or "no serial ports"
    return [
        Check(
            WARN,
            "serial port",
            f"no ESP32-P4 board (no CH343/CH340 USB bridge; seen: {seen})",
            "plug the P4-Nano's USB-C UART port in, or set `port` (rfc2217://host:port for a remote board)",
        )
    ]


def check_nic(inputs: DoctorInputs, config: LabConfig | None) -> list[Check]:
    """The NIC for a real board: configured or not; its speed and duplex (read-only)."""
    from harness.lab.nic import EthtoolInfo

    iface = inputs.eth_iface
    if not iface and config is not None:
        try:
            iface = config.nic_iface(inputs.board_name)
        except ConfigError:
            iface = None
    if not iface:
        return [
            Check(
                WARN,
                "board NIC",
                "none configured (needed only for a real board)",
                "cable a spare NIC to the board and set nic.iface in hil.toml or pass --eth-iface",
            )
        ]
    if not Path(f"/sys/class/net/{iface}").exists():
        return [
            Check(
                WARN, "board NIC", f"{iface} does not exist on this machine", "fix nic.iface / --eth-iface (`ip link`)"
            )
        ]
    if not inputs.which("ethtool"):
        return [Check(WARN, "board NIC", f"{iface} (speed unknown: no ethtool)", "`apt-get install ethtool`")]
    try:
        text = subprocess.run(
            ["ethtool", iface], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        ).stdout
    except subprocess.TimeoutExpired:
        text = ""
    info = EthtoolInfo.parse(text)
    found = (
        f"{iface}: {info.speed_mbit or '?'} Mbit/s {info.duplex or '?'}-duplex, link {'up' if info.link else 'down'}"
    )
    if (info.speed_mbit, info.duplex, info.link) == (100, "full", True):
        return [Check(OK, "board NIC", found)]
    return [Check(WARN, "board NIC", found, "check the cable and the board's power; the board's EMAC runs 100/full")]


def check_esp_idf(inputs: DoctorInputs, config: LabConfig | None) -> list[Check]:
    """ESP-IDF (to build the firmware) and its idf.py."""
    idf_path = inputs.env().get("IDF_PATH") or _board_table(config, inputs.board_name).idf_path
    install = "install ESP-IDF v5.5 or v6.0 and `. $IDF_PATH/export.sh` (see ci/RUNNER.md)"
    checks = []
    if not idf_path:
        checks.append(Check(WARN, "ESP-IDF", "IDF_PATH not set (needed to build firmware for a real board)", install))
    elif not (Path(idf_path) / "tools" / "idf.py").is_file():
        checks.append(Check(WARN, "ESP-IDF", f"IDF_PATH={idf_path} has no tools/idf.py", install))
    else:
        checks.append(Check(OK, "ESP-IDF", f"IDF_PATH={idf_path}"))
    idf = inputs.which("idf.py")
    version = _version([idf, "--version"]) if idf else None
    checks.append(
        Check(OK, "idf.py", version)
        if version
        else Check(WARN, "idf.py", "not on PATH", "`. $IDF_PATH/export.sh` before running the harness")
    )
    return checks


def check_crash_decoding(statuses: Iterable[DecodingStatus] | None = None) -> list[Check]:
    """What crash decoding really works here (panics, core dumps), as the decoder itself finds its tools."""
    found = decoding_status() if statuses is None else statuses
    return [Check(OK if status.available else WARN, status.what, status.found, status.fix or "") for status in found]


def _board_table(config: LabConfig | None, name: str | None) -> BoardTable:
    if config is None:
        return BoardTable()
    try:
        return config.board_table(name)
    except ConfigError:
        return BoardTable()


def run_checks(inputs: DoctorInputs | None = None) -> list[Check]:
    """Every check, in report order."""
    inputs = inputs or DoctorInputs()
    checks = check_tools(inputs) + check_python_packages() + check_privileges()
    config_checks, config = check_config(inputs)
    checks += config_checks
    for section in (check_serial, check_nic, check_esp_idf):
        try:
            checks += section(inputs, config)
        except HilError as exc:
            checks.append(Check(WARN, section.__name__.removeprefix("check_"), str(exc)))
    return checks + check_crash_decoding()


def exit_code(checks: Iterable[Check]) -> int:
    """0 when the virtual board has all it needs (warnings allowed), else 1."""
    return 1 if any(check.status == FAIL for check in checks) else 0
