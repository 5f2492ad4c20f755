"""The farm's policy without a coordinator: a place's resources, the refining kind, one record from shards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.boards.kinds import board_kind, board_values, chosen_kind
from harness.boards.place.resources import PlaceInfo, parse_tags
from harness.config import LabConfig
from harness.errors import BoardError, ConfigError
from harness.results.record import RunRecord
from harness.session import HilSession

REPORT = {
    "place": "p4-a",
    "owner": "ci-1/hil-123456789",
    "coordinator": "lab:20408",
    "tags": {"chip_rev": "v1.0", "stack": "smoltcp"},
    "resources": [
        {"exporter": "ci-1", "group": "nano1", "cls": "NetworkSerialPort", "name": "NetworkSerialPort",
         "params": {"host": "ci-1", "port": 53001, "protocol": "rfc2217", "speed": 115200}},
        {"exporter": "ci-1", "group": "nano1", "cls": "RemoteNetworkInterface", "name": "USBNetworkInterface",
         "params": {"host": "ci-1", "ifname": "enx00e04c680001"}},
    ],
}  # fmt: skip


def test_a_place_gives_the_console_url_and_the_nic_on_its_exporter_host() -> None:
    place = PlaceInfo.from_report(REPORT)
    assert place.console_url() == "rfc2217://ci-1:53001"
    assert place.local_nic(this_host="ci-1") == "enx00e04c680001"
    assert place.as_record() == {
        "name": "p4-a", "coordinator": "lab:20408", "owner": "ci-1/hil-123456789", "exporters": ["ci-1"],
        "hosts": ["ci-1"], "tags": {"chip_rev": "v1.0", "stack": "smoltcp"},
        "resources": ["ci-1/nano1/NetworkSerialPort/NetworkSerialPort",
                      "ci-1/nano1/RemoteNetworkInterface/USBNetworkInterface"],
    }  # fmt: skip


def test_a_nic_on_another_host_sends_the_job_to_that_host() -> None:
    with pytest.raises(BoardError, match=r"NIC enx00e04c680001 is on exporter host ci-1.*Run this job on ci-1"):
        PlaceInfo.from_report(REPORT).local_nic(this_host="desk")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda r: r["resources"].pop(0), "has no serial port"),
        (lambda r: r["resources"].pop(1), "has no network interface"),
        (lambda r: r["resources"][0]["params"].update(protocol="raw"), "speaks 'raw'"),
        (lambda r: r["resources"].append(dict(r["resources"][1], name="second")), "several network interfaces"),
    ],
)
def test_a_place_without_what_a_run_needs_is_explained(change, error: str) -> None:
    report = json.loads(json.dumps(REPORT))
    change(report)
    place = PlaceInfo.from_report(report)
    with pytest.raises(BoardError, match=error):
        place.console_url()
        place.local_nic(this_host="ci-1")


def test_tags_are_key_value_pairs() -> None:
    assert parse_tags(["chip_rev=v1.0", "stack=smoltcp"]) == {"chip_rev": "v1.0", "stack": "smoltcp"}
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_tags(["chip_rev"])


def test_a_place_refines_esp32p4_and_has_no_board_value_of_its_own() -> None:
    assert "esp32p4-labgrid" not in board_values()
    base = SimpleNamespace(board="esp32p4", lg_place=[], lg_tags=[], lg_env=None)
    assert chosen_kind(base) is board_kind("esp32p4")
    assert chosen_kind(SimpleNamespace(**{**vars(base), "lg_place": ["p4-a"]})).name == "esp32p4-labgrid"
    assert chosen_kind(SimpleNamespace(**{**vars(base), "lg_tags": ["stack=smoltcp"]})).name == "esp32p4-labgrid"


def _check(**given: object) -> None:
    options = dict(board="esp32p4", lg_place=[], lg_tags=[], lg_env=None, lg_wait=5.0, port=None, eth_iface=None,
                   dist="no", numprocesses=None)  # fmt: skip
    board_kind("esp32p4-labgrid").check_options(SimpleNamespace(**{**options, **given}), LabConfig())


def test_a_place_run_is_checked_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    _check(lg_place=["a"])
    _check(lg_place=["a", "b"], dist="loadfile", numprocesses=2)
    _check(lg_tags=["stack=smoltcp"], dist="loadfile", numprocesses=4)
    with pytest.raises(ConfigError, match="2 worker\\(s\\) need 2 place\\(s\\), one each; got 1"):
        _check(lg_place=["a"], dist="loadfile", numprocesses=2)
    with pytest.raises(ConfigError, match="--port comes from the labgrid place"):
        _check(lg_place=["a"], port="/dev/ttyACM0")
    with pytest.raises(ConfigError, match="not both"):
        _check(lg_place=["a"], lg_tags=["stack=smoltcp"])


def test_place_options_belong_to_esp32p4_runs(tmp_path: Path) -> None:
    (tmp_path / "test_none.py").write_text("def test_nothing():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lg-place", "p4-a",
                           "test_none.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 4
    assert "--lg-place belongs to --board esp32p4, not --board virtual" in done.stderr


def _shard(worker: str, board_id: str, nodeid: str, value: float) -> dict:
    return {
        "test": {"nodeid": nodeid, "console_slice": f"r/{worker}/slices/x.log", "counters": {"rx_frames": 3},
                 "events": [], "metrics": [{"name": "m", "value": value, "unit": "ms", "better": "lower"}],
                 "board": board_id},
        "worker": {"worker": worker, "board": {"kind": "esp32p4", "id": board_id, "place": {"name": worker}},
                   "firmware": {"app": "hil_app", "chip_rev": "v1.0" if worker == "gw0" else "v3.1"},
                   "link": {"kind": "nic", "rate_mbps": 100}, "console_log": f"r/{worker}/console.log"},
    }  # fmt: skip


def test_the_controller_folds_every_worker_into_one_record(tmp_path: Path) -> None:
    options = SimpleNamespace(app_elf=None, no_import=True, board="esp32p4", dhcp_force=False, results_db=None)
    session = HilSession(options, LabConfig(), RunRecord(tmp_path, "run1"), board_kind("esp32p4"))
    for nodeid, worker, board_id in (("t::a", "gw1", "bb"), ("t::b", "gw0", "aa"), ("t::c", "gw1", "bb")):
        session.test_started(nodeid)
        session.merge_shard(nodeid, _shard(worker, board_id, nodeid, 1.5))
        for when in ("setup", "call", "teardown"):
            session.record_report(pytest.TestReport(nodeid, ("f.py", 1, "t"), {}, "passed", None, when))
    session.finish(interrupted=False)
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["board"] == {"kind": "esp32p4", "id": "aa+bb"}
    assert [(b["worker"], b["board"]["place"]["name"]) for b in record["boards"]] == [("gw0", "gw0"), ("gw1", "gw1")]
    assert record["firmware"] == {"app": "hil_app"}  # what both boards share; the revisions differ
    assert record["link"] == {"kind": "nic", "rate_mbps": 100} and record["console_log"] is None
    assert {t["nodeid"]: t["board"] for t in record["tests"]} == {"t::a": "bb", "t::b": "aa", "t::c": "bb"}
    assert all(t["outcome"] == "passed" and t["metrics"][0]["value"] == 1.5 for t in record["tests"])


def test_a_shard_record_writes_no_file_and_keeps_its_artifacts_apart(tmp_path: Path) -> None:
    record = RunRecord(tmp_path, "run1", shard="gw3")
    record.test("t::a")
    record.save(finished=True)
    assert record.artifacts_dir == tmp_path / "run1" / "gw3"
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(name) for name in ("pytest_embedded", "labgrid")),
    reason="needs both pytest-embedded and labgrid",
)
def test_pytest_embedded_keeps_its_target_fixture_when_labgrid_is_installed(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_runs():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "test_plain.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-2000:]
