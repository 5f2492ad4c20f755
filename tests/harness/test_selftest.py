"""The fault catalogue and `hil selftest`: data checks, the matrix judgement, and the short selftest end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.boards.virtual.faults import CATALOGUE, FAULTS, catalogue_markdown, matches, validate_faults
from harness.errors import ConfigError
from harness.results.store import open_store
from harness.selftest import (
    DETECTED,
    FALSE_ALARM,
    SHORT_FAULTS,
    ScenarioResult,
    SelftestOptions,
    SuiteRun,
    judge,
    parse_fault_list,
    plan,
)
from harness.testing import REPO, hil_namespaces, needs_root

PLAN_FAULTS = {
    "rx_pool_starvation", "tx_cap_60pct", "rust_panic_under_load", "task_wdt_under_load", "no_dhcp_renewal",
    "dhcp_nak_ignored", "large_icmp_dropped", "link_flap_storm", "rtt_spikes", "heap_leak_per_connection",
    "panic_on_nth_connection", "socket_slot_leak", "udp_never_readable", "httpd_malformed_crash", "tls_wrong_cert",
    "no_mqtt_reconnect", "l2_tap_deaf", "mcast_deaf", "ipv6_ll_missing",
    "shim_udp_select_consumes", "shim_fin_not_readable", "shim_close_without_fin", "shim_loopback_recv_ignored",
    "shim_loopback_port0_refused",
}  # fmt: skip


def test_catalogue_holds_every_planned_fault_with_a_catching_scenario() -> None:
    assert {fault.name for fault in CATALOGUE} == PLAN_FAULTS
    assert len(CATALOGUE) >= 15 and len(FAULTS) == len(CATALOGUE), "duplicate fault names"
    for fault in CATALOGUE:
        assert fault.caught_by and fault.expected and fault.description and fault.mechanism, fault.name
        assert not set(fault.scenario_groups()) & set(fault.collateral), f"{fault.name}: caught and collateral"


def test_unknown_fault_is_refused_with_the_catalogue() -> None:
    with pytest.raises(ConfigError) as error:
        validate_faults(["tx_cap_60pct", "no_such_fault"])
    text = str(error.value)
    assert "no_such_fault" in text
    assert all(fault.name in text for fault in CATALOGUE)
    assert validate_faults(["rtt_spikes", "rtt_spikes", "tx_cap_60pct"]) == ["rtt_spikes", "tx_cap_60pct"]
    with pytest.raises(ConfigError):
        parse_fault_list("tx_cap_60pct,bogus", full=False)
    assert parse_fault_list(None, full=True) == [fault.name for fault in CATALOGUE]
    assert parse_fault_list(None, full=False) == list(SHORT_FAULTS)


def test_a_fault_of_another_stack_is_refused_naming_both_stacks() -> None:
    assert FAULTS["shim_fin_not_readable"].stack == "smoltcp"
    with pytest.raises(ConfigError, match=r"shim_fin_not_readable exists only in the smoltcp stack.*runs the linux"):
        validate_faults(["tx_cap_60pct", "shim_fin_not_readable"], stack="linux")
    assert validate_faults(["tx_cap_60pct", "shim_fin_not_readable"], stack="smoltcp") == [
        "tx_cap_60pct", "shim_fin_not_readable",
    ]  # fmt: skip
    assert validate_faults(["shim_fin_not_readable"]) == ["shim_fin_not_readable"], "no stack given: any stack"
    smoltcp_only = [fault.name for fault in CATALOGUE if fault.stack == "smoltcp"]
    assert parse_fault_list(None, full=True, stack="smoltcp") == [fault.name for fault in CATALOGUE]
    assert parse_fault_list(None, full=True, stack="linux") == [
        fault.name for fault in CATALOGUE if fault.name not in smoltcp_only
    ]
    with pytest.raises(ConfigError, match="exists only in the smoltcp stack"):
        parse_fault_list("shim_close_without_fin", full=False, stack="linux")


def test_docs_show_the_catalogue_as_it_is() -> None:
    docs = (REPO / "docs" / "faults.md").read_text()
    assert catalogue_markdown() in docs, "docs/faults.md is out of date: paste faults.catalogue_markdown() into it"


@pytest.mark.parametrize(
    ("pattern", "scenario", "expected"),
    [
        ("ping", "ping[1472]", True),
        ("ping[1472]", "ping[1472]", True),
        ("ping[1472]", "ping[56]", False),
        ("throughput::iperf3_tcp", "throughput::iperf3_tcp[rx]", True),
        ("throughput::iperf3_tcp[tx]", "throughput::iperf3_tcp[rx]", False),
        ("dhcp", "dhcp_edge::nak", False),
        ("boot", "boot", True),
    ],
)
def test_patterns_match_short_scenario_names(pattern: str, scenario: str, expected: bool) -> None:
    assert matches(pattern, scenario) is expected


def _run(fault: str | None, *tests: tuple[str, str, str], console: str = "") -> SuiteRun:
    run = SuiteRun("r", fault, [], Path("/nonexistent"), Path("/nonexistent.xml"))
    run.tests = [ScenarioResult(*test) for test in tests]
    run.not_implemented = "unknown fault" in console
    return run


def test_judge_sorts_detections_false_alarms_and_collateral() -> None:
    fault = FAULTS["large_icmp_dropped"]
    lost = ("ping[1472]", "failed", "AssertionError: no echo reply from x (3 sent, 1472 B)")
    verdict = judge(fault, _run(fault.name, ("ping[56]", "passed", ""), ("boot", "passed", ""), lost))
    assert verdict.verdict == "detected" and verdict.passed and verdict.detected_by == ["ping[1472]"]
    assert verdict.cells == {"ping": [DETECTED, "ok"], "boot": ["ok"]}

    alarm = judge(fault, _run(fault.name, ("ping[1472]", "failed", "no echo reply"), ("boot", "failed", "crash")))
    assert alarm.verdict == "detected" and not alarm.passed and alarm.false_alarms == ["boot"]
    assert alarm.cells["boot"] == [FALSE_ALARM]

    wrong = judge(fault, _run(fault.name, ("ping[1472]", "failed", "DUT has no IPv4 address")))
    assert wrong.verdict == "MISSED" and not wrong.passed

    missed = judge(fault, _run(fault.name, ("ping[1472]", "passed", "")))
    assert missed.verdict == "MISSED" and missed.cells == {"ping": ["MISSED"]}

    flap = FAULTS["link_flap_storm"]
    pull = ("link::cable_pull_idle", "failed", "one cable pull, but link_downs +2 and link_ups +2 (expected +1 each)")
    lost = ("ping[56]", "failed", "3 of 100 echoes lost (56 B)")
    collateral = judge(flap, _run(flap.name, pull, lost, ("throughput::http_download", "failed", "below the floor")))
    assert collateral.passed and collateral.detected_by == ["link::cable_pull_idle"]
    assert collateral.cells["throughput"] == ["collateral"] and collateral.cells["ping"] == ["collateral"]


def test_judge_healthy_board_and_unimplemented_faults() -> None:
    assert judge(None, _run(None, ("boot", "passed", ""), ("ping[56]", "skipped", ""))).verdict == "ok"
    healthy = judge(None, _run(None, ("boot", "passed", ""), ("dhcp::dhcp_lease", "error", "lab setup failed")))
    assert healthy.verdict == "false alarm" and not healthy.passed
    fault = FAULTS["tls_wrong_cert"]
    ghost = judge(fault, _run(fault.name, ("tls::x", "passed", ""), console="W (1) hil: unknown fault tls_wrong_cert"))
    assert ghost.verdict == "not implemented" and not ghost.passed
    assert judge(fault, None).verdict == "no scenario"
    assert judge(fault, _run(fault.name)).verdict == "run failed"


@needs_root
def test_short_selftest_detects_each_fault_and_passes_the_healthy_board(short_tmp: Path) -> None:
    """`hil selftest` (short set) end to end: matrix, JSON, per-run results imported into one store."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "selftest", "--results-dir", str(short_tmp)], cwd=REPO,
                          capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "fault x scenario detection matrix" in output
    (matrix_path,) = short_tmp.glob("selftest-*.json")
    matrix = json.loads(matrix_path.read_text())
    assert matrix["ok"] is True
    rows = {row["fault"]: row for row in matrix["rows"]}
    assert set(rows) == {None, *SHORT_FAULTS}
    judged = {group for row in matrix["rows"] if row["fault"] for group in row["run"]["groups"]}
    assert rows[None]["verdict"] == "ok" and set(rows[None]["run"]["groups"]) == judged
    for name in SHORT_FAULTS:
        assert rows[name]["verdict"] == "detected", rows[name]
        assert rows[name]["false_alarms"] == []
        assert (short_tmp / rows[name]["run"]["results_file"]).is_file()
    with open_store(short_tmp / "hil.sqlite") as store:
        run_ids = store.run_ids()
    assert len(run_ids) == len(rows)
    left = {f"hil-{run_id}-{side}" for run_id in run_ids for side in ("host", "dut")} & hil_namespaces()
    assert not left, f"selftest left namespaces behind: {left}"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: the virtual board's AF_UNIX control socket lives below it (108-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix="hilst-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def full_selftest_enabled(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("selftest_full", default=False):
        pytest.skip("opt-in: run with --selftest-full (the whole catalogue, several minutes)")


@needs_root
def test_full_selftest(full_selftest_enabled: None, short_tmp: Path) -> None:
    """`hil selftest --full`: every catalogued fault detected by its named scenarios, no false alarm."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "selftest", "--full", "--results-dir", str(short_tmp)],
                          cwd=REPO, capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]


def test_plan_runs_healthy_first_and_each_fault_on_its_groups(tmp_path: Path) -> None:
    for group in ("boot", "dhcp", "ping", "throughput", "httpd"):
        (tmp_path / f"test_{group}.py").write_text("")
    short = plan(SelftestOptions(list(SHORT_FAULTS), tmp_path, scenarios_dir=tmp_path))
    assert short[0] == (None, ["boot", "dhcp", "ping", "throughput"]), "healthy covers the judged groups"
    assert dict((fault.name, groups) for fault, groups in short[1:]) == {  # type: ignore[union-attr]
        "tx_cap_60pct": ["boot", "ping", "throughput"], "large_icmp_dropped": ["boot", "ping"],
        "no_dhcp_renewal": ["boot", "dhcp", "ping"], "rust_panic_under_load": ["boot", "ping", "throughput"],
    }  # fmt: skip
    full = plan(SelftestOptions(["tls_wrong_cert"], tmp_path, full_healthy=True, scenarios_dir=tmp_path))
    assert full == [(None, ["boot", "dhcp", "httpd", "ping", "throughput"]), (FAULTS["tls_wrong_cert"], [])]
