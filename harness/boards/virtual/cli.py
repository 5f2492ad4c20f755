"""`hil virtual start|stop|reset|status`: a standalone virtual ESP32-P4 any serial tool or esptool can use."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.boards.virtual.kind import STACKS
from harness.boards.virtual.standalone import (
    STATE_FILE,
    check_name,
    control_request,
    delete_root_veth,
    read_state,
    state_dir,
)
from harness.errors import BoardError, LabError
from harness.lab.netns import NETNS_DIR, delete_namespace
from harness.paths import import_root

DEFAULT_NAME = "vboard"
START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 20.0
MODULE = "harness.boards.virtual.standalone"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil virtual ...` to the `hil` command."""
    parser = subparsers.add_parser(
        "virtual",
        help="run a standalone virtual ESP32-P4 (pty, RFC2217 port, lab namespaces)",
        description="Start, stop, reset or inspect a standalone virtual ESP32-P4. Its console is a pty and an "
        "RFC2217 port on 127.0.0.1 whose DTR/RTS drive a model of the devkit's auto-reset circuit, so the real "
        "esptool can flash it. See docs/virtual-board.md.",
    )
    commands = parser.add_subparsers(dest="virtual_command", metavar="COMMAND")

    start = commands.add_parser("start", help="start a board in the background and print its ports as JSON")
    _name(start)
    start.add_argument("--flash-dir", help="directory of the board's flash file (default: the state directory)")
    start.add_argument("--chip-rev", choices=("v1.0", "v3.1"), default="v1.0", help="chip revision (default v1.0)")
    start.add_argument(
        "--stack",
        choices=STACKS,
        default="smoltcp",
        help="the native firmware's network stack: smoltcp (default) or linux (the kernel's)",
    )
    start.add_argument("--external-lab", action="store_true",
                       help="no host namespace or DHCP server: leave the cable's host end hv<id> in the root "
                            "namespace for a NIC lab")  # fmt: skip
    start.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for the board")
    start.set_defaults(func=run_start)

    stop = commands.add_parser("stop", help="stop a board and clean up its namespaces, processes and pty")
    _name(stop)
    stop.set_defaults(func=run_stop)

    reset = commands.add_parser("reset", help="pulse EN (normal boot, or download mode with --download)")
    _name(reset)
    reset.add_argument("--download", action="store_true", help="hold IO0 low: boot into the ROM download mode")
    reset.set_defaults(func=run_reset)

    status = commands.add_parser("status", help="print the board's state file and live status as JSON")
    _name(status)
    status.set_defaults(func=run_status)
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)


def _name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"board name (default {DEFAULT_NAME})")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running standalone board process (guards against a recycled PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return MODULE.encode() in cmdline


def _running_state(name: str) -> dict[str, Any]:
    state = read_state(name)
    if state is None or not _alive(int(state.get("pid", 0))):
        raise BoardError(
            f"no virtual board named {name!r} is running; start one with `hil virtual start --name {name}`"
        )
    return state


def run_start(args: argparse.Namespace) -> int:
    """Start the board process detached and print its ports once it is ready."""
    name = check_name(args.name)
    if os.geteuid() != 0:
        raise LabError("the virtual board needs root (network namespaces, veth, tc): run `hil virtual start` as root")
    old = read_state(name)
    if old is not None and _alive(int(old.get("pid", 0))):
        raise BoardError(f"virtual board {name!r} is already running (pid {old['pid']}); `hil virtual stop --name "
                         f"{name}` first or pick another --name")  # fmt: skip
    directory = state_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_FILE).unlink(missing_ok=True)
    command = [sys.executable, "-m", MODULE, "--name", name, "--chip-rev", args.chip_rev, "--stack", args.stack]
    if args.flash_dir:
        command += ["--flash-dir", str(Path(args.flash_dir).resolve())]
    if args.external_lab:
        command.append("--external-lab")
    python_path = os.pathsep.join(filter(None, (str(import_root()), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": python_path}
    log_path = directory / "standalone.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                env=env)  # fmt: skip
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = read_state(name)
        if state is not None and state.get("pid") == proc.pid and state.get("ready"):
            print(json.dumps(_public(state)))
            return 0
        if proc.poll() is not None:
            raise BoardError(f"the virtual board exited during start (status {proc.returncode}): {_tail(log_path)}")
        time.sleep(0.1)  # polling the state file the child writes; the deadline bounds it
    _terminate(proc.pid, proc)
    raise BoardError(f"the virtual board was not ready within {args.timeout:g} s; see {log_path}")


def _public(state: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "port", "rfc2217", "control", "dut_ns", "host_ns", "host_if", "dut_ip", "flash_dir", "pid")
    return {key: state.get(key) for key in keys}


def _tail(path: Path, lines: int = 8) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return f"(no log at {path})"


def _terminate(pid: int, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM, wait, then SIGKILL; only ever the given PID."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and not _alive(pid):
            return
        time.sleep(0.1)  # waiting for another process to exit; bounded by the deadline
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=STOP_TIMEOUT_S)


def run_stop(args: argparse.Namespace) -> int:
    """Stop the board process and remove whatever a killed process may have left."""
    name = check_name(args.name)
    state = read_state(name)
    if state is None:
        print(f"no virtual board named {name!r} is running")
        return 0
    pid = int(state.get("pid", 0))
    if _alive(pid):
        _terminate(pid)
    # After a SIGKILL nothing ran its teardown: remove what the state file names.
    for ns in (state.get("host_ns"), state.get("dut_ns")):
        if ns and ns.startswith("hil-") and (NETNS_DIR / ns).exists():
            delete_namespace(ns)
    if state.get("external_lab") and state.get("host_if"):
        delete_root_veth(state["host_if"])
    for leftover in (STATE_FILE, "control.sock"):
        (state_dir(name) / leftover).unlink(missing_ok=True)
    print(json.dumps({"name": name, "stopped": True, "pid": pid}))
    return 0


def run_reset(args: argparse.Namespace) -> int:
    """Pulse EN through the control channel."""
    state = _running_state(check_name(args.name))
    reply = control_request(state["control"], "download" if args.download else "reset")
    print(json.dumps({key: reply.get(key) for key in ("state", "boot_mode", "boots", "app_pid")}))
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Print the state file plus the board's live status."""
    name = check_name(args.name)
    state = _running_state(name)
    live = control_request(state["control"], "status")
    live.pop("ok", None)
    print(json.dumps({**_public(state), "board": live}, indent=1))
    return 0
