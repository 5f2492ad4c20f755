"""Static consistency check of firmware/hil_app against firmware/PROTOCOL.md and the options
esp-smoltcp requires. Needs no ESP-IDF, so it runs everywhere (and in CI)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.paths import project_root

REPO = project_root()

# Options the shim needs, and the tuning behind the 91.15 Mbit/s reference figure (CONTEXT.md),
# plus what the protocol's services and `crash` kinds depend on.
REQUIRED_OPTIONS = {
    "CONFIG_IDF_TARGET": '"esp32p4"',
    "CONFIG_LWIP_COMPAT_ENABLE": "y",
    "CONFIG_LWIP_NETIF_LOOPBACK": "y",
    "CONFIG_FREERTOS_HZ": "1000",
    "CONFIG_ETH_IRAM_OPTIMIZATION": "y",
    "CONFIG_ETH_DMA_RX_BUFFER_NUM": "30",
    "CONFIG_ETH_DMA_TX_BUFFER_NUM": "30",
    "CONFIG_ETH_SOFT_FLOW_CONTROL": "y",
    "CONFIG_HTTPD_WS_SUPPORT": "y",
    "CONFIG_ESP_HTTPS_SERVER_ENABLE": "y",
    "CONFIG_ESP_TASK_WDT_PANIC": "y",
    "CONFIG_NETSTACK_IGMP": "y",
    "CONFIG_HTTPD_QUEUE_WORK_BLOCKING": "y",
}
# Known performance cliffs and settings that belong only in a variant file.
FORBIDDEN_OPTIONS = {
    "CONFIG_COMPILER_OPTIMIZATION_PERF": "y",
    "CONFIG_VFS_SUPPORT_SELECT": "n",
    "CONFIG_ESP32P4_SELECTS_REV_LESS_V3": "y",
    # Depends on ESP32P4_SELECTS_REV_LESS_V3: in the default (rev >= 3) build it would be ignored.
    "CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_360": "y",
    "CONFIG_HIL_NET_STACK_LWIP": "y",
}
VARIANT_OPTIONS = {
    "sdkconfig.defaults.rev_lt_v3": {
        "CONFIG_ESP32P4_SELECTS_REV_LESS_V3": "y",
        "CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_360": "y",
    },
    "sdkconfig.defaults.smoltcp_v0_1": {"CONFIG_VFS_SUPPORT_SELECT": "n"},
    "sdkconfig.defaults.lwip": {"CONFIG_HIL_NET_STACK_LWIP": "y", "CONFIG_LWIP_IPV6": "y"},
}
KNOWN_SYMBOLS = "kconfig_symbols.txt"
# The supported matrix (firmware/hil_app/README.md): the esp-smoltcp line each ESP-IDF range resolves to.
SMOLTCP_MATRIX = {
    "datanoisetv/esp_smoltcp": {"idf_version >=6.0": "0.2.0-rc.1", "idf_version <6.0": "~0.1.0"},
    "datanoisetv/esp_smoltcp_lwip_compat": {"idf_version >=6.0": "0.2.0-rc.1", "idf_version <6.0": "~0.1.1"},
}
SMOLTCP_ONLY_RULE = "$CONFIG{HIL_NET_STACK_SMOLTCP} == True"
# Service entry points of firmware/services the app must call.
REQUIRED_CALLS = (
    "hil_iperf3_server_run",
    "hil_select_echo_run",
    "hil_tcp_echo_run",
    "hil_udp_echo_run",
    "hil_proto_format",
    "esp_smoltcp_init",
    "esp_smoltcp_attach_eth",
    "esp_smoltcp_wait_for_ip",
    "esp_smoltcp_register_event_cb",
    "ETH_CMD_S_FLOW_CTRL",
)
FD_SETSIZE = 64  # newlib's; every shim socket FD must fit in an fd_set
_SDKCONFIG_LINE = re.compile(r"^(CONFIG_[A-Z0-9_]+)=(\S.*)$")
_NOT_SET = re.compile(r"^# (CONFIG_[A-Z0-9_]+) is not set$")


@dataclass(frozen=True)
class Finding:
    """One inconsistency: the file it is in (relative to the repo) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class ProtocolSpec:
    """What PROTOCOL.md promises that the app source must implement."""

    commands: dict[str, set[str]]  # command word -> literal sub-words (subcommands, kinds, keywords)
    usages: list[str]  # the exact `usage: ...` error strings
    routes: list[str]  # HTTP paths up to their first placeholder, e.g. "/dl/"
    ports: set[int]  # numbers of the network-services table


def _cells(row: str) -> list[str]:
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _section(text: str, title: str) -> str:
    match = re.search(rf"^##+ {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def _words_of_usage(usage: str) -> list[str]:
    words = []
    for part in usage.removeprefix("usage: ").split():
        for alternative in part.strip("[]").split("|"):
            if alternative and not alternative.startswith("<") and alternative not in ("|",):
                words.append(alternative)
    return words


def parse_protocol(text: str) -> ProtocolSpec:
    """Extract commands, usage strings, HTTP routes and ports from PROTOCOL.md."""
    commands: dict[str, set[str]] = {}
    usages: list[str] = []
    for row in _section(text, "Console commands").splitlines():
        if not row.startswith("| `"):
            continue
        cells = _cells(row)
        for pattern in re.findall(r"`([^`]+)`", cells[0]):
            words = pattern.split()
            literal = {w.strip("[]") for word in words[1:] if not word.startswith(("<", "[<")) for w in word.split("|")}
            commands.setdefault(words[0], set()).update(literal)
        if len(cells) > 2:
            for usage in re.findall(r"`(usage: [^`]+)`", cells[2]):
                usages.append(usage)
                words = _words_of_usage(usage)
                if words:
                    commands.setdefault(words[0], set()).update(words[1:])
    routes = []
    for method, path in re.findall(
        r"`(GET|POST|PUT|DELETE) (/[^`\s?]*)", _section(text, "HTTP endpoints (ports 80 and 443)")
    ):
        del method
        route = path.split("<", 1)[0]
        if route not in routes:
            routes.append(route)
    ports: set[int] = set()
    for row in _section(text, "Network services (on the DUT's Ethernet address)").splitlines():
        if not row.startswith("| ") or row.startswith("| port") or row.startswith("|---"):
            continue
        first = _cells(row)[0]
        for start, end in re.findall(r"(\d+)(?:-(\d+))?/(?:tcp|udp)", first):
            ports.add(int(start))
            if end:
                ports.add(int(end) - int(start) + 1)  # the count of a port range
        ports.update(int(value, 16) for value in re.findall(r"0x([0-9A-Fa-f]+)", first))
    return ProtocolSpec(commands, usages, routes, ports)


def parse_sdkconfig(text: str) -> tuple[dict[str, str], list[str]]:
    """Options of an sdkconfig defaults file, and the lines that are not valid sdkconfig syntax."""
    options: dict[str, str] = {}
    bad = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if match := _NOT_SET.match(line):
            options[match[1]] = "n"
        elif line.startswith("#"):
            continue
        elif (match := _SDKCONFIG_LINE.match(line)) and "#" not in re.sub(r'"[^"]*"', "", match[2]):
            options[match[1]] = match[2]
        else:
            bad.append(raw)
    return options, bad


def _version_floor(spec: str) -> tuple[int, ...] | None:
    floors = [tuple(int(x) for x in v.split(".")[:3]) for v in re.findall(r">=\s*(\d+(?:\.\d+){0,2})", spec)]
    if not floors:
        match = re.match(r"^[\^~]?\s*(\d+(?:\.\d+){0,2})", spec.strip())
        floors = [tuple(int(x) for x in match[1].split("."))] if match else []
    return max(floors) if floors else None


def _clause(text: object) -> str:
    """An `if` clause with its blanks normalised, for comparing manifest rules."""
    return " ".join(str(text or "").split())


class _Checker:
    def __init__(self, repo: Path):
        self.repo = repo
        self.app = repo / "firmware" / "hil_app"
        self.findings: list[Finding] = []

    def add(self, path: Path, message: str) -> None:
        try:
            shown = str(path.relative_to(self.repo))
        except ValueError:
            shown = str(path)
        self.findings.append(Finding(shown, message))

    def read(self, path: Path) -> str | None:
        if not path.is_file():
            self.add(path, "missing")
            return None
        return path.read_text(encoding="utf-8", errors="replace")

    def run(self) -> list[Finding]:
        protocol = self.read(self.repo / "firmware" / "PROTOCOL.md")
        sources = self.app_sources()
        self.check_cmake()
        self.check_manifest()
        self.check_sdkconfig()
        if protocol is not None and sources is not None:
            self.check_protocol(parse_protocol(protocol), sources)
        return self.findings

    def app_sources(self) -> str | None:
        files = sorted((self.app / "main").glob("*.[ch]"))
        if not files:
            self.add(self.app / "main", "no C sources")
            return None
        return "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in files)

    def check_cmake(self) -> None:
        project = self.read(self.app / "CMakeLists.txt")
        if project is not None:
            if "project(hil_app)" not in project:
                self.add(self.app / "CMakeLists.txt", "must declare project(hil_app) (HIL_HELLO.app)")
            if "$ENV{IDF_PATH}/tools/cmake/project.cmake" not in project:
                self.add(self.app / "CMakeLists.txt", "must include $ENV{IDF_PATH}/tools/cmake/project.cmake")
        main_cmake = self.app / "main" / "CMakeLists.txt"
        text = self.read(main_cmake)
        if text is None:
            return
        for name in re.findall(r'"([a-z0-9_]+\.c)"', text):
            if not (self.app / "main" / name).is_file():
                self.add(main_cmake, f"SRCS lists {name}, which does not exist in main/")
        for name in sorted(p.name for p in (self.app / "main").glob("*.c")):
            if f'"{name}"' not in text:
                self.add(main_cmake, f"main/{name} is not in SRCS")
        services = self.repo / "firmware" / "services"
        for needle, what in (
            ('"${services_dir}/include"', "the services include directory"),
            ('"${services_dir}/platform/freertos.c"', "the services' FreeRTOS platform layer"),
            ('"${services_dir}/src/*.c"', "the services' sources"),
        ):
            if needle not in text:
                self.add(main_cmake, f"does not compile in {what} ({needle})")
        for required in ("include/hil_services.h", "include/hil_proto.h", "platform/freertos.c"):
            if not (services / required).is_file():
                self.add(services / required, "missing (hil_app compiles firmware/services in)")
        for cert in re.findall(r'"\$\{certs_dir\}/([^"]+)"', text):
            if not (self.repo / "firmware" / "certs" / cert).is_file():
                self.add(self.repo / "firmware" / "certs" / cert, "embedded by main/CMakeLists.txt but missing")

    def check_manifest(self) -> None:
        path = self.app / "main" / "idf_component.yml"
        text = self.read(path)
        if text is None:
            return
        try:
            manifest = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            self.add(path, f"not valid YAML: {exc}")
            return
        deps = manifest.get("dependencies") or {}
        idf = deps.get("idf")
        idf_spec = idf.get("version") if isinstance(idf, dict) else idf
        if not idf_spec or (_version_floor(str(idf_spec)) or (0,)) < (5, 5):
            self.add(path, "dependencies.idf must require ESP-IDF >= 5.5")
        for name, wanted in SMOLTCP_MATRIX.items():
            dep = deps.get(name)
            if not isinstance(dep, dict):
                self.add(path, f"{name} must be a table with `matches` per ESP-IDF version (README.md's matrix)")
                continue
            matches = {_clause(m.get("if")): str(m.get("version", "")) for m in dep.get("matches") or []}
            if matches != {_clause(k): v for k, v in wanted.items()}:
                self.add(path, f"{name}: matches must map {wanted} (README.md's matrix), has {matches}")
            if SMOLTCP_ONLY_RULE not in [_clause(r.get("if")) for r in dep.get("rules") or []]:
                rule = f'- if: "{SMOLTCP_ONLY_RULE}"'
                self.add(path, f"{name}: rules must include {rule} (no esp-smoltcp in the lwIP build)")
            if not dep.get("pre_release"):
                self.add(path, f"{name}: pre_release: true is needed for 0.2.0-rc.1")
        for name in ("espressif/ip101", "espressif/mqtt"):
            dep = deps.get(name)
            rules = dep.get("rules", []) if isinstance(dep, dict) else []
            if not any(re.fullmatch(r"idf_version\s*>=\s*6\.0", str(r.get("if", "")).strip()) for r in rules):
                self.add(path, f'{name} must be a dependency only on ESP-IDF >= 6.0 (rules: - if: "idf_version >=6.0")')
        for name, dep in deps.items():
            if isinstance(dep, dict) and dep.get("override_path"):
                self.add(path, f"{name} has an active override_path; keep it commented out in the committed manifest")

    def known_symbols(self) -> set[str] | None:
        text = self.read(self.app / KNOWN_SYMBOLS)
        if text is None:
            return None
        return {line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")}

    def check_symbols(self) -> None:
        known = self.known_symbols()
        if known is None:
            return
        for path in sorted(self.app.glob("sdkconfig.defaults*")):
            options, _ = parse_sdkconfig(path.read_text(encoding="utf-8", errors="replace"))
            for name in sorted(options):
                if name.removeprefix("CONFIG_") not in known:
                    self.add(
                        path,
                        f"{name} is not a Kconfig symbol of ESP-IDF v5.5/v6.0, esp-smoltcp or hil_app "
                        f"({KNOWN_SYMBOLS}); kconfgen would ignore it",
                    )

    def check_sdkconfig(self) -> None:
        self.check_symbols()
        path = self.app / "sdkconfig.defaults"
        text = self.read(path)
        if text is not None:
            options, bad = parse_sdkconfig(text)
            for line in bad:
                self.add(path, f"not sdkconfig syntax (no trailing comments): {line!r}")
            for name, value in REQUIRED_OPTIONS.items():
                if options.get(name) != value:
                    self.add(path, f"{name}={value} is required (has {options.get(name, 'nothing')})")
            for name, value in FORBIDDEN_OPTIONS.items():
                if options.get(name) == value:
                    self.add(path, f"{name}={value} must not be in the default configuration")
            max_sockets = int(options.get("CONFIG_LWIP_MAX_SOCKETS", "10"))
            max_fds = int(options.get("CONFIG_LWIP_COMPAT_MAX_FDS", "32"))
            if FD_SETSIZE - max_sockets + max_fds > FD_SETSIZE:
                self.add(
                    path,
                    f"shim FDs [{FD_SETSIZE - max_sockets}, {FD_SETSIZE - max_sockets + max_fds}) exceed FD_SETSIZE "
                    f"{FD_SETSIZE}: keep CONFIG_LWIP_COMPAT_MAX_FDS <= CONFIG_LWIP_MAX_SOCKETS",
                )
        for name, wanted in VARIANT_OPTIONS.items():
            variant = self.app / name
            text = self.read(variant)
            if text is None:
                continue
            options, bad = parse_sdkconfig(text)
            for line in bad:
                self.add(variant, f"not sdkconfig syntax: {line!r}")
            for option, value in wanted.items():
                if options.get(option) != value:
                    self.add(variant, f"{option}={value} is required")

    def check_protocol(self, spec: ProtocolSpec, sources: str) -> None:
        main = self.app / "main"
        literals = set(re.findall(r'"((?:[^"\\]|\\.)*)"', sources))
        for command, words in sorted(spec.commands.items()):
            if not re.search(rf'\.command\s*=\s*"{re.escape(command)}"', sources):
                self.add(main, f"console command {command!r} of PROTOCOL.md has no esp_console registration")
            for word in sorted(words):
                if word not in literals:
                    self.add(main, f'{command} {word!r} of PROTOCOL.md is not handled (no "{word}" in the source)')
        joined = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', sources))
        for usage in spec.usages:
            if usage not in literals and usage not in joined:
                self.add(main, f"PROTOCOL.md error {usage!r} is not a string in the source")
        for route in spec.routes:
            if not any(literal == route or literal.startswith(route) for literal in literals):
                self.add(main, f"HTTP route {route!r} of PROTOCOL.md has no handler")
        defined = {int(v, 0) for v in re.findall(r"#define\s+\w+\s+(0x[0-9A-Fa-f]+|\d+)\b", sources)}
        header = self.repo / "firmware" / "services" / "include" / "hil_services.h"
        if header.is_file():
            defined |= {int(v, 0) for v in re.findall(r"#define\s+\w+\s+(0x[0-9A-Fa-f]+|\d+)\b", header.read_text())}
        for port in sorted(spec.ports - defined):
            self.add(
                main, f"port/number {port} of PROTOCOL.md's network services is not #defined in the app or services"
            )
        for call in REQUIRED_CALLS:
            if not re.search(rf"\b{call}\b", sources):
                self.add(main, f"{call} is never used")


def check_app(repo: Path = REPO) -> list[Finding]:
    """Run every check on the repository at ``repo`` and return the findings (empty: consistent)."""
    return _Checker(repo).run()
