"""Faults the project did not write, applied from outside while the suite runs, are caught by the expected scenario.

Nothing here uses the virtual board's internals: the test finds the run's DUT namespace from the results
file the run writes once its lab is up (`hil-<run_id>-dut`) and breaks things there with `tc` and `kill`, as a
user poking at the lab would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.lab.netns import NETNS_DIR
from harness.session import scenario_name
from harness.testing import REPO, hil_namespaces, needs_root

pytestmark = needs_root

RUN_TIMEOUT_S = 240
WAIT_S = 60


def _wait(what: str, probe: Callable[[], object], timeout: float = WAIT_S) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)  # polling files and /proc written by another process; nothing to wait on
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _dut_namespace(results_dir: Path) -> str:
    """The run's DUT namespace, once its results file names the run and the namespace exists."""

    def probe() -> str | None:
        for path in results_dir.glob("*.json"):
            try:
                run_id = json.loads(path.read_text())["run_id"]
            except (OSError, ValueError, KeyError):
                continue
            name = f"hil-{run_id}-dut"
            if (NETNS_DIR / name).exists():
                return name
        return None

    return str(_wait("the run's DUT namespace", probe))


def _dut_interface(ns: str) -> str:
    links = json.loads(subprocess.run(["ip", "-n", ns, "-j", "link", "show"], capture_output=True, text=True,
                                      timeout=15, check=True).stdout)  # fmt: skip
    return next(link["ifname"] for link in links if link["ifname"] != "lo")


def shape_egress_50mbit(ns: str, results_dir: Path) -> None:
    """The DUT's transmit side shaped to half the line rate."""
    ifname = _dut_interface(ns)
    subprocess.run(["tc", "-n", ns, "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", "50mbit", "burst",
                    "3076", "limit", "150000"], check=True, timeout=15)  # fmt: skip


def _bytes_on_the_cable(ns: str) -> int:
    ifname = _dut_interface(ns)
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{ifname}/statistics/rx_bytes",
                           f"/sys/class/net/{ifname}/statistics/tx_bytes"], capture_output=True, text=True,
                          timeout=15, check=True).stdout  # fmt: skip
    return sum(int(value) for value in text.split())


def kill_firmware(ns: str, results_dir: Path) -> None:
    """SIGKILL the board's network firmware (all its services and its stack) in the DUT namespace once a bulk
    transfer runs (megabytes a second on the cable: the iperf3 test, not a ping)."""
    last = [_bytes_on_the_cable(ns)]

    def firmware_pid() -> int | None:
        now = _bytes_on_the_cable(ns)
        moving, last[0] = now - last[0] > 1_000_000, now
        if not moving:
            return None
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=15).stdout.split()
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "hil-firmware":
                    return int(pid)
            except OSError:
                continue
        return None

    os.kill(int(_wait("the DUT's hil-firmware process during a bulk transfer", firmware_pid)), signal.SIGKILL)


# cBPF for `tc ... bpf bytecode`: IPv4 ICMP echo replies (type 0) are shot, everything else passes.
_DROP_ECHO_REPLIES = ",".join([
    "8",
    f"32 0 0 {0xFFFFF000}",  # A = skb->protocol
    f"21 0 5 {0x0800}",  # IPv4, else pass
    f"48 0 0 {0xFFF00000 + 9}",  # A = IP protocol
    "21 0 3 1",  # ICMP, else pass
    f"48 0 0 {0xFFF00000 + 20}",  # A = ICMP type (no IP options)
    "21 0 1 0",  # echo reply, else pass
    "6 0 0 2",  # TC_ACT_SHOT
    "6 0 0 0",  # TC_ACT_OK
])  # fmt: skip


def drop_echo_replies(ns: str, results_dir: Path) -> None:
    """The DUT's echo replies are shot on their way out (a filter on the interface's egress)."""
    ifname = _dut_interface(ns)
    subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", ifname, "clsact"], check=True, timeout=15)
    subprocess.run(["tc", "-n", ns, "filter", "add", "dev", ifname, "egress", "bpf", "bytecode", _DROP_ECHO_REPLIES,
                    "da"], check=True, timeout=15)  # fmt: skip


@dataclass(frozen=True)
class ExternalFault:
    """A break-in from outside and what the suite must say about it."""

    name: str
    apply: Callable[[str, Path], None]
    selection: tuple[str, ...]
    expected: dict[str, tuple[str, ...]]  # scenario -> fragments its failure message contains


CASES = (
    ExternalFault(
        "egress_shaped_50mbit", shape_egress_50mbit,
        ("tests/scenarios/test_ping.py", "tests/scenarios/test_throughput.py"),
        {"throughput::http_download": ("HTTP download", "below the floor"),
         "throughput::iperf3_tcp[tx]": ("iperf3 TCP tx", "below the floor")},
    ),
    ExternalFault(
        "firmware_killed", kill_firmware,
        ("tests/scenarios/test_ping.py", "tests/scenarios/test_throughput.py", "-k", "ping[56] or iperf3_tcp[rx]"),
        {"throughput::iperf3_tcp[rx]": ("DUT crashed",)},
    ),
    ExternalFault(
        "echo_replies_dropped", drop_echo_replies,
        ("tests/scenarios/test_ping.py", "tests/scenarios/test_throughput.py", "-k", "ping[56] or ping[512] or http"),
        {f"ping[{size}]": ("no echo reply", f"{size} B") for size in (56, 512)},
    ),
)  # fmt: skip


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: the virtual board's AF_UNIX control socket lives below it (108-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix="hilst-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_fault_applied_from_outside_is_caught(case: ExternalFault, short_tmp: Path) -> None:
    command = [sys.executable, "-m", "pytest", *case.selection, "-p", "no:cacheprovider", "-q", "--no-import",
               "--results-dir", str(short_tmp), "--dl-bytes", "5000000", "--iperf-seconds", "2"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        ns = _dut_namespace(short_tmp)
        case.apply(ns, short_tmp)
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the run's own teardown removes its lab
            process.communicate(timeout=60)
    (results_file,) = short_tmp.glob("*.json")
    tests = {scenario_name(t["nodeid"]): t for t in json.loads(results_file.read_text())["tests"]}
    assert set(case.expected) <= set(tests), f"expected scenarios did not run: {sorted(tests)}\n{output[-2000:]}"
    for scenario, test in tests.items():
        if scenario in case.expected:
            assert test["outcome"] == "failed", f"{scenario} did not catch {case.name}: {test['outcome']}"
            for fragment in case.expected[scenario]:
                assert fragment in test["message"], f"{scenario}: {fragment!r} not in {test['message']!r}"
        else:
            expected_failure = test["outcome"] == "skipped" and test["message"].startswith("xfail:")
            assert test["outcome"] == "passed" or expected_failure, (
                f"false alarm in {scenario} for {case.name}: {test['message']}"
            )
    assert process.returncode == 1
    assert ns not in hil_namespaces(), "the run left its namespace behind"
