"""An ESP32-P4 in a labgrid place: `--board esp32p4 --lg-place NAME` (or `--lg-tags K=V`, or labgrid's `--lg-env`).

The place is reserved and acquired through the labgrid coordinator by a holder process (holder.py) that
releases it when the run ends, however it ends. The board is then the ordinary esp32p4 board on the place's
console (its `NetworkSerialPort`, RFC2217: esptool flashes and DTR/RTS resets through it) and the lab the
ordinary NIC lab on the place's network interface. The run executes on the exporter host that has the
board's NIC (CI routes the job there by runner tag; docs/farm.md): labgrid only reserves.

Sharded with pytest-xdist (`hil run -n N`), each worker holds its own place: the N-th `--lg-place`, or
whichever place with the `--lg-tags` the coordinator allocates to it.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.boards.esp32p4 import Esp32P4Board, board_from_options, nic_lab
from harness.boards.kinds import BoardKind, KindOptions
from harness.boards.place.resources import PlaceInfo, parse_tags
from harness.errors import BoardError, ConfigError, LabError
from harness.lab.base import ManagedProcess
from harness.lab.nic import NicLab
from harness.processes import spawn

DEFAULT_COORDINATOR = "127.0.0.1:20408"
DEFAULT_WAIT_S = 600.0
HOLDER_START_S = 30.0  # connecting and reserving, beyond the wait itself
INSTALL_HINT = "install the farm extra: pip install 'esp-smoltcp-hil[farm]' (ci/install.sh does)"


def labgrid_missing() -> str | None:
    """Why labgrid cannot be used here (None when it can)."""
    try:
        import labgrid  # noqa: F401
    except ImportError as exc:
        return f"labgrid is not installed ({exc}): {INSTALL_HINT}"
    return None


def env_places(path: str) -> tuple[list[str], str | None]:
    """The `RemotePlace` names of a labgrid environment file, and its `coordinator_address` option."""
    from labgrid import Environment
    from labgrid.factory import target_factory

    try:
        env = Environment(config_file=path)
    except Exception as exc:  # labgrid raises its own config errors and YAML's
        raise ConfigError(f"cannot read the labgrid environment {path}: {exc}") from exc
    places: list[str] = []
    for role in env.config.get_targets().values():
        resources, _ = target_factory.normalize_config(role)
        places += list(resources.get("RemotePlace", {}))
    return places, env.config.get_option("coordinator_address", None)


def lg_env(options: Any) -> str | None:
    """The labgrid environment file of this run (`--lg-env`, else `$LG_ENV`), if any."""
    return getattr(options, "lg_env", None) or os.environ.get("LG_ENV") or None


def xdist_workers(options: Any) -> int:
    """How many pytest-xdist workers share the run (1 when it is not sharded)."""
    if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # in a worker (xdist sets it)
        return int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    if getattr(options, "dist", "no") == "no":
        return 1
    return int(getattr(options, "numprocesses", 0) or 1)


def worker_index() -> int:
    """This process's xdist worker number (`gw3` -> 3; 0 outside xdist)."""
    match = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    return int(match.group(1)) if match else 0


class PlaceRequest:
    """Which place(s) a run asks the coordinator for, and where the coordinator is."""

    def __init__(self, options: Any) -> None:
        self.places: list[str] = list(getattr(options, "lg_place", None) or [])
        self.tags = parse_tags(getattr(options, "lg_tags", None) or [])
        coordinator = getattr(options, "lg_coordinator", None) or os.environ.get("LG_COORDINATOR")
        env = lg_env(options)
        if env and not self.places and not self.tags:
            self.places, env_coordinator = env_places(env)
            coordinator = coordinator or env_coordinator
        self.coordinator = coordinator or DEFAULT_COORDINATOR
        self.wait_s = float(getattr(options, "lg_wait", DEFAULT_WAIT_S))

    def holder_target(self, index: int) -> list[str]:
        """The holder's arguments naming what this worker asks for."""
        if self.tags:
            return [arg for key, value in self.tags.items() for arg in ("--tag", f"{key}={value}")]
        return ["--place", self.places[index]]


class PlaceHolder:
    """The holder process of one place (holder.py): started by `acquire`, the place released by `release`."""

    def __init__(self, request: PlaceRequest, index: int, owner: str, log_path: Path) -> None:
        self.request = request
        self.index = index
        self.owner = owner
        self.log_path = log_path
        self.process: ManagedProcess | None = None

    def acquire(self) -> PlaceInfo:
        """Start the holder and wait until it holds the place; progress is printed while the place is taken.

        Raises:
            BoardError: the place could not be had (the holder's reason, e.g. still taken after --lg-wait).
        """
        command = [
            sys.executable, "-m", "harness.boards.place.holder", "--coordinator", self.request.coordinator,
            "--owner", self.owner, "--wait", str(self.request.wait_s), *self.request.holder_target(self.index),
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # SIGTERM on the harness's death: the holder releases the place even when the run is SIGKILLed.
            popen = spawn(
                command, death_signal=signal.SIGTERM, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        self.process = ManagedProcess("labgrid-holder", popen, self.log_path)
        try:
            return self._read_until_acquired()
        except BaseException:
            self.release()
            raise

    def _read_until_acquired(self) -> PlaceInfo:
        assert self.process is not None and self.process.popen.stdout is not None
        stdout = self.process.popen.stdout
        deadline = time.monotonic() + self.request.wait_s + HOLDER_START_S
        while (remaining := deadline - time.monotonic()) > 0:
            line = stdout.readline() if select.select([stdout], [], [], remaining)[0] else b""
            if not line:
                break
            report = json.loads(line)
            if report["event"] == "waiting":
                print(f"hil: waiting up to {report['wait_s']:g} s for a labgrid place: {report['held_by']}",
                      file=sys.stderr, flush=True)  # fmt: skip
            elif report["event"] == "acquired":
                return PlaceInfo.from_report(report)
            else:
                raise BoardError(f"labgrid place not acquired: {report['error']}")
        raise BoardError(
            f"the labgrid place holder ended without a place (exit status {self.process.popen.poll()}); its log: "
            f"{self.log_path}"
        )

    def release(self) -> None:
        """Let the holder release the place and cancel its reservation (it exits then)."""
        if self.process is None:
            return
        stdin = self.process.popen.stdin
        if stdin is not None and not stdin.closed:
            stdin.close()  # end of input: release
        try:
            self.process.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.stop()
        if self.process.popen.stdout is not None:
            self.process.popen.stdout.close()
        self.process = None


class PlaceLab(NicLab):
    """The NIC lab on a place's network interface; closing it releases the place (started or not)."""

    def __init__(self, nic: str, *, holder: PlaceHolder, place: PlaceInfo, **kwargs: Any) -> None:
        super().__init__(nic, **kwargs)
        self.holder = holder
        self.place = place

    def close(self) -> None:
        """Give the NIC back, then release the place."""
        try:
            super().close()
        finally:
            self.holder.release()


class PlaceBoard(Esp32P4Board):
    """An ESP32-P4 in a labgrid place; its identity in the results names the place."""

    def __init__(self, log_dir: Path, *, place: PlaceInfo, **kwargs: Any) -> None:
        super().__init__(log_dir, **kwargs)
        self.place = place

    def identity(self) -> dict[str, Any]:
        """The esp32p4 identity plus the place: name, coordinator, owner, exporter host(s), tags, resources."""
        return {**super().identity(), "place": self.place.as_record()}


class PlaceKind(BoardKind):
    """An ESP32-P4 reserved through a labgrid coordinator (refines `--board esp32p4`)."""

    name = "esp32p4-labgrid"
    summary = "an ESP32-P4 in a labgrid place (--board esp32p4 with --lg-place, --lg-tags or --lg-env)"
    refines = "esp32p4"

    def selected(self, options: Any) -> bool:
        """A place was asked for: `--lg-place`, `--lg-tags`, or a labgrid environment with a RemotePlace."""
        if getattr(options, "lg_place", None) or getattr(options, "lg_tags", None):
            return True
        env = lg_env(options)
        return bool(env) and labgrid_missing() is None and bool(env_places(env)[0])

    def add_options(self, group: KindOptions) -> None:
        """`--lg-place` (one per xdist worker), `--lg-tags`, `--lg-wait`."""
        group.addoption("--lg-place", action="append", default=[],
                        help="labgrid place holding the board, acquired for the run (repeat once per "
                        "xdist worker with -n N)")  # fmt: skip
        group.addoption("--lg-tags", nargs="+", default=[], metavar="KEY=VALUE",
                        help="any labgrid place with these tags (e.g. chip_rev=v1.0 stack=smoltcp); each xdist "
                        "worker gets its own")  # fmt: skip
        group.addoption(
            "--lg-wait",
            type=float,
            default=DEFAULT_WAIT_S,
            help=f"seconds to wait for a taken place before giving up (default {DEFAULT_WAIT_S:g})",
        )

    def check_options(self, options: Any, config: Any) -> None:
        """labgrid is installed; one way of naming places; one place per worker; the place gives port and NIC."""
        missing = labgrid_missing()
        if missing:
            raise ConfigError(missing)
        if getattr(options, "lg_place", None) and getattr(options, "lg_tags", None):
            raise ConfigError("give --lg-place or --lg-tags, not both")
        for option in ("port", "eth_iface"):
            if getattr(options, option, None):
                flag = "--" + option.replace("_", "-")
                raise ConfigError(f"{flag} comes from the labgrid place (its serial port and NIC): drop {flag}")
        request = PlaceRequest(options)
        workers = xdist_workers(options)
        if not request.tags and len(request.places) != workers:
            raise ConfigError(
                f"{workers} worker(s) need {workers} place(s), one each; got {len(request.places)} "
                f"({', '.join(request.places) or 'none'}): give one --lg-place per worker, or --lg-tags to let "
                "the coordinator pick"
            )
        if request.wait_s < 0:
            raise ConfigError(f"--lg-wait {request.wait_s:g} must not be negative")

    def make_lab(self, options: Any, config: Any, run_id: str, log_dir: Path) -> PlaceLab:
        """Acquire the place (waiting at most --lg-wait), then the NIC lab on its network interface."""
        holder = PlaceHolder(PlaceRequest(options), worker_index(), f"hil-{run_id}", log_dir / "labgrid-holder.log")
        place = holder.acquire()
        try:
            return nic_lab(place.local_nic(), options, config, run_id, log_dir, PlaceLab, holder=holder, place=place)
        except (BoardError, LabError):
            holder.release()
            raise

    def make_board(self, options: Any, config: Any, lab: Any, log_dir: Path) -> PlaceBoard:
        """The esp32p4 board on the place's console; build, chip revision and flashing as for esp32p4."""
        place: PlaceInfo = lab.place
        board = board_from_options(options, config, log_dir, port=place.console_url(), board_class=PlaceBoard,
                                   place=place)  # fmt: skip
        assert isinstance(board, PlaceBoard)
        return board


BOARD_KIND = PlaceKind()
