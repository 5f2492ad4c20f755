"""A board farm for real: a labgrid coordinator and exporter on loopback serving two virtual boards as places.

Each place is what a P4-Nano on an exporter is: a `NetworkSerialPort` (the standalone virtual board's
RFC2217 port, DTR/RTS wired to EN/IO0) and a `NetworkInterface` (the host end of its cable, `hv<id>`, left in
this machine's namespace by `hil virtual start --external-lab`, as a USB NIC would be). The runs execute on
the exporter host, as CI runs them (docs/farm.md). The whole suite on one place against two is a benchmark
(`--benchmarks`): it prints both wall times.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.boards.virtual.standalone import state_dir
from harness.processes import spawn, stop_group
from harness.testing import REPO, hil_command, needs_root, wait_for

pytestmark = [
    needs_root,
    pytest.mark.skipif(__import__("importlib").util.find_spec("labgrid") is None, reason="labgrid not installed"),
]
BIN = Path(sys.executable).parent
PLACES = ("p4-a", "p4-b")
FREE_WITHIN_S = 10.0
SHORT = ("-k", "test_boot or test_ping", "--skip-autoflash")


@dataclass
class Farm:
    """The coordinator's address, the places and the boards behind them."""

    coordinator: str
    boards: dict[str, dict]
    work: Path

    def client(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """`labgrid-client` as another user of the lab would run it."""
        env = {**os.environ, "LG_COORDINATOR": self.coordinator, "LG_USERNAME": "someone-else"}
        return subprocess.run([str(BIN / "labgrid-client"), *args], capture_output=True, text=True, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip

    def holder(self, place: str) -> str | None:
        """Who holds the place on the coordinator (None: free)."""
        shown = self.client("-p", place, "show")
        match = re.search(r"^\s*acquired: (\S+)", shown.stdout, re.MULTILINE)
        assert match, shown.stdout + shown.stderr
        return None if match.group(1) == "None" else match.group(1)

    def hil(self, *args: str, results_dir: Path, wait_s: int = 20) -> list[str]:
        """`hil run` against this farm."""
        return [*hil_command("--board", "esp32p4", *args, results_dir=results_dir), "--lg-wait", str(wait_s)]

    def env(self) -> dict[str, str]:
        return {**os.environ, "LG_COORDINATOR": self.coordinator}


def _virtual(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "harness.cli", "virtual", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exporter_config(boards: dict[str, dict]) -> str:
    """One resource group per board: its RFC2217 port as a NetworkSerialPort, its cable's host end as a NIC."""
    groups = []
    for place, info in boards.items():
        host, port = info["rfc2217"].removeprefix("rfc2217://").rsplit(":", 1)
        groups.append(f"{place}:\n  NetworkSerialPort:\n    host: {host}\n    port: {port}\n    protocol: rfc2217\n"
                      f"  NetworkInterface:\n    ifname: {info['host_if']}\n")  # fmt: skip
    return "".join(groups)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """Two standalone virtual boards, a coordinator and an exporter on loopback, a place per board."""
    work = tmp_path_factory.mktemp("farm")
    names = {place: f"lg{os.getpid()}{place[-1]}" for place in PLACES}
    boards: dict[str, dict] = {}
    processes = []
    try:
        for place, name in names.items():
            boards[place] = _virtual("start", "--name", name, "--external-lab")
        coordinator = f"127.0.0.1:{_free_port()}"
        (work / "exporter.yaml").write_text(_exporter_config(boards))
        with open(work / "coordinator.log", "ab") as log:
            processes.append(spawn([str(BIN / "labgrid-coordinator"), "-l", coordinator], cwd=work, stdout=log,
                                   stderr=subprocess.STDOUT, death_signal=signal.SIGTERM))  # fmt: skip
        farm = Farm(coordinator, boards, work)
        assert wait_for(lambda: farm.client("places").returncode == 0, 30), (work / "coordinator.log").read_text()
        with open(work / "exporter.log", "ab") as log:
            processes.append(spawn([str(BIN / "labgrid-exporter"), "-c", coordinator, "-n", "hil-exporter",
                                    str(work / "exporter.yaml")], cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                   death_signal=signal.SIGTERM))  # fmt: skip
        for place in PLACES:
            for args in (["create"], ["add-match", f"hil-exporter/{place}/*"],
                         ["set-tags", "chip_rev=v1.0", "stack=virtual"]):  # fmt: skip
                done = farm.client("-p", place, *args)
                assert done.returncode == 0, done.stdout + done.stderr
        exported = lambda: all("NetworkSerialPort" in farm.client("-p", p, "show").stdout for p in PLACES)  # noqa: E731
        assert wait_for(exported, 30), (work / "exporter.log").read_text()
        yield farm
    finally:
        for process in reversed(processes):
            stop_group(process)
        for name in names.values():
            _virtual("stop", "--name", name)
            subprocess.run(["rm", "-rf", str(state_dir(name))], check=False)


def _record(results_dir: Path) -> dict:
    (path,) = results_dir.glob("*.json")
    return json.loads(path.read_text())


def _start(command: list[str], farm: Farm, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=REPO, env=farm.env(), stdout=out, stderr=subprocess.STDOUT)


def _held_by_a_run(farm: Farm, place: str) -> bool:
    return "/hil-" in (farm.holder(place) or "")


def test_two_places_shard_one_run_and_every_test_keeps_its_board(farm: Farm, tmp_path: Path) -> None:
    results = tmp_path / "results"
    command = farm.hil("-n", "2", "--lg-place", "p4-a", "--lg-place", "p4-b", *SHORT, results_dir=results)
    done = subprocess.run(command, cwd=REPO, env=farm.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    record = _record(results)  # one results file for the run
    places = {entry["board"]["place"]["name"]: entry["board"] for entry in record["boards"]}
    assert set(places) == set(PLACES)
    for board in places.values():
        assert board["kind"] == "esp32p4" and board["place"]["exporters"] == ["hil-exporter"]
        assert board["place"]["owner"].split("/")[1].startswith("hil-") and board["place"]["tags"]["stack"] == "virtual"
        assert {r.split("/")[2] for r in board["place"]["resources"]} == {"NetworkSerialPort", "RemoteNetworkInterface"}
    ids = {board["id"] for board in places.values()}
    assert len(ids) == 2 and record["board"]["id"] == "+".join(sorted(ids))
    # ping[1472] is an expected failure on the smoltcp the places' boards report (docs/scenarios.md).
    outcomes = {test["nodeid"].rsplit("::", 1)[-1]: (test["outcome"], test["message"]) for test in record["tests"]}
    assert len(outcomes) == 6 and outcomes.pop("test_ping[1472]")[1].startswith("xfail: smoltcp 0.12.0"), outcomes
    assert {outcome for outcome, _ in outcomes.values()} == {"passed"}, outcomes
    assert {test["board"] for test in record["tests"]} == ids, "each worker ran a file on its own board"
    assert all(wait_for(lambda p=p: farm.holder(p) is None, FREE_WITHIN_S) for p in PLACES)


def test_a_held_place_is_refused_to_others_and_freed_by_ctrl_c(farm: Farm, tmp_path: Path) -> None:
    long_transfer = ("-k", "http_download", "--dl-bytes", "2000000000", "--skip-autoflash")
    first = _start(farm.hil("--lg-place", "p4-a", *long_transfer, results_dir=tmp_path / "first"), farm,
                   tmp_path / "first.log")  # fmt: skip
    try:
        assert wait_for(lambda: _held_by_a_run(farm, "p4-a"), 60), (tmp_path / "first.log").read_text()[-3000:]
        taken = farm.client("-p", "p4-a", "acquire")
        assert taken.returncode != 0 and "already acquired" in taken.stdout + taken.stderr
        second = subprocess.run(farm.hil("--lg-place", "p4-a", *SHORT, results_dir=tmp_path / "second", wait_s=2),
                                cwd=REPO, env=farm.env(), capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode != 0
        said = second.stdout + second.stderr
        assert "waiting up to 2 s for a labgrid place: p4-a acquired by" in said, said[-3000:]
        assert "no place free within 2 s (--lg-wait)" in said, said[-3000:]
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
        assert wait_for(lambda: farm.holder("p4-a") is None, FREE_WITHIN_S), "the place outlived the run"
    finally:
        if first.poll() is None:
            first.kill()
    (test,) = _record(tmp_path / "first")["tests"]
    assert test["outcome"] == "interrupted"


def _worker_holding(owner: str) -> int:
    """The PID of the xdist worker whose place holder acquired as ``owner`` (`host/hil-<lab id>`)."""
    user = owner.split("/", 1)[1]
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"harness.boards.place.holder" in argv and user.encode() in argv:
                status = (entry / "status").read_text()
                return int(re.search(r"^PPid:\s*(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
        except (OSError, ValueError):
            continue
    raise AssertionError(f"no holder process acquired as {owner}")


def test_a_sigkilled_worker_frees_its_place(farm: Farm, tmp_path: Path) -> None:
    command = farm.hil("-n", "2", "--lg-tags", "stack=virtual", "-k", "http_download or ipv6", "--dl-bytes",
                       "2000000000", "--skip-autoflash", "--max-worker-restart", "0",
                       results_dir=tmp_path / "results")  # fmt: skip
    run = _start(command, farm, tmp_path / "run.log")
    try:
        held = lambda: all(_held_by_a_run(farm, p) for p in PLACES)  # noqa: E731
        assert wait_for(held, 90), (tmp_path / "run.log").read_text()[-3000:]
        place = PLACES[0]
        worker = _worker_holding(str(farm.holder(place)))
        assert worker != run.pid, "the holder belongs to an xdist worker, not to the controller"
        os.kill(worker, signal.SIGKILL)
        assert wait_for(lambda: farm.holder(place) is None, FREE_WITHIN_S), f"{place} still held after kill -9"
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
    assert all(wait_for(lambda p=p: farm.holder(p) is None, FREE_WITHIN_S) for p in PLACES)


def test_virtual_boards_shard_on_one_machine(tmp_path: Path) -> None:
    command = hil_command("-n", "2", "-k", "test_boot or test_ping", results_dir=tmp_path)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    record = _record(tmp_path)
    assert [entry["worker"] for entry in record["boards"]] == ["gw0", "gw1"]
    boards = {entry["board"]["id"] for entry in record["boards"]}
    assert {test["board"] for test in record["tests"]} == boards and len(boards) == 2
    assert all(test["console_slice"].startswith(f"{record['run_id']}/gw") for test in record["tests"])


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_the_suite_on_two_places_against_one(farm: Farm, tmp_path: Path) -> None:
    # A veth reports 10 Gbit/s whatever its tbf shaping says: the floor is given in Mbit/s instead.
    (tmp_path / "hil.toml").write_text("[thresholds]\nthroughput_floor_mbps = 80\n")
    # The oversized-frame case needs a wire that carries a 2000-byte frame; the veth stand-in refuses it on send.
    common = ("--skip-autoflash", "--hil-config", str(tmp_path / "hil.toml"), "-k", "not oversized_frame")
    times = {}
    for shards, places in ((1, ("p4-a",)), (2, PLACES)):
        results = tmp_path / f"n{shards}"
        args = [arg for place in places for arg in ("--lg-place", place)]
        started = time.monotonic()
        done = subprocess.run(farm.hil("-n", str(shards), *args, *common, results_dir=results), cwd=REPO,
                              env=farm.env(), capture_output=True, text=True, timeout=900)  # fmt: skip
        times[shards] = time.monotonic() - started
        assert done.returncode == 0, done.stdout[-4000:]
        assert len(_record(results)["boards"]) == shards
    print(f"\nthe suite on one place: {times[1]:.1f} s wall; on two places (-n 2): {times[2]:.1f} s wall")
