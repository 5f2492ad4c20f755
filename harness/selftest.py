"""`hil selftest`: prove the scenario suite against the fault catalogue on the virtual board.

One pytest run of `tests/scenarios` on the healthy virtual board (everything must pass), then one run per
fault with `--fault NAME` (a test matched by the fault's `caught_by` must fail with the fault's `expected`
text in its message; everything else must pass, except the fault's declared `collateral`). The outcome is
a fault x scenario detection matrix, printed and stored as JSON next to the runs' results files.

Trade-off (docs/faults.md): a fault's run executes only the scenario modules its `caught_by` names plus
the quick `CONTROL_GROUPS`, so "everything else passes" is checked on that subset; `--all-scenarios` runs
the whole suite for every fault. With `--full` the healthy run covers every scenario.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.boards.virtual.faults import CATALOGUE, FAULTS, Fault, matches, scenario_group, validate_faults
from harness.errors import ConfigError
from harness.paths import scenarios_dir as suite_dir
from harness.processes import spawn
from harness.run_command import pytest_argv
from harness.session import scenario_name

# One fault per scenario group, mechanisms owned here: the default project test command runs these.
SHORT_FAULTS = ("tx_cap_60pct", "large_icmp_dropped", "no_dhcp_renewal", "rust_panic_under_load")
# Quick scenarios every fault run includes, so a fault that breaks more than it should shows up.
CONTROL_GROUPS = ("boot", "ping")
SMALL_DL_BYTES = 5_000_000
SMALL_IPERF_SECONDS = 2
RUN_TIMEOUT_S = 600.0
UNKNOWN_FAULT_LINE = "hil: unknown fault "

# Cell labels of the matrix, worst first (a cell shows every label its tests earned, in this order).
FALSE_ALARM, MISSED, WRONG_MESSAGE, DETECTED, COLLATERAL, OK = (
    "false alarm", "MISSED", "wrong message", "detected", "collateral", "ok",
)  # fmt: skip
LABEL_ORDER = (FALSE_ALARM, MISSED, WRONG_MESSAGE, DETECTED, COLLATERAL, OK)


def available_groups(scenarios_dir: Path) -> list[str]:
    """Scenario groups present in the suite (`test_ping.py` -> `ping`), sorted."""
    return sorted(path.stem.removeprefix("test_") for path in scenarios_dir.glob("test_*.py"))


@dataclass
class ScenarioResult:
    """One scenario test of one run."""

    scenario: str
    outcome: str
    message: str


@dataclass
class SuiteRun:
    """One pytest run of (part of) the suite, with or without a fault."""

    name: str
    fault: str | None
    groups: list[str]
    results_dir: Path
    junit: Path
    returncode: int | None = None
    duration_s: float = 0.0
    timed_out: bool = False
    results_file: Path | None = None
    tests: list[ScenarioResult] = field(default_factory=list)
    not_implemented: bool = False
    output_tail: str = ""


def pytest_command(run: SuiteRun, *, dl_bytes: int, iperf_seconds: int, db: Path,
                   scenarios_dir: Path) -> list[str]:  # fmt: skip
    """The pytest command line of one run (its own results dir and JUnit file, the shared store)."""
    files = [str(scenarios_dir / f"test_{group}.py") for group in run.groups]
    command = [
        *pytest_argv(scenarios_dir, files), "-p", "no:cacheprovider", "-q",
        "--results-dir", str(run.results_dir), "--results-db", str(db), f"--junitxml={run.junit}",
        "--dl-bytes", str(dl_bytes), "--iperf-seconds", str(iperf_seconds),
    ]  # fmt: skip
    if run.fault:
        command += ["--fault", run.fault]
    return command


def execute(run: SuiteRun, command: Sequence[str], timeout: float = RUN_TIMEOUT_S) -> SuiteRun:
    """Run pytest to completion (or the timeout: SIGTERM, so the run tears its lab down) and read its results."""
    run.results_dir.mkdir(parents=True, exist_ok=True)
    log_path = run.results_dir / "pytest-output.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        # SIGTERM if this process dies: the run unwinds, tears its lab down and records what it was doing.
        process = spawn(command, death_signal=signal.SIGTERM, stdout=log, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL)  # fmt: skip
        try:
            run.returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            run.timed_out = True
            run.returncode = _stop(process)
        except BaseException:  # Ctrl-C: the child's teardown must still run before we go
            _stop(process)
            raise
    run.duration_s = time.monotonic() - started
    run.output_tail = log_path.read_text(errors="replace")[-3000:]
    read_results(run)
    return run


def _stop(process: subprocess.Popen) -> int | None:
    for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            return process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return process.poll()


def read_results(run: SuiteRun) -> None:
    """Fill ``run.tests`` and ``run.not_implemented`` from the run's results file and console log."""
    files = sorted(run.results_dir.glob("*.json"))
    if not files:
        return
    run.results_file = files[-1]
    record = json.loads(run.results_file.read_text())
    run.tests = [
        ScenarioResult(scenario_name(test["nodeid"]), test["outcome"], test.get("message") or "")
        for test in record["tests"]
    ]
    console_log = record.get("console_log")
    if run.fault and console_log:
        text = (run.results_dir / console_log).read_text(errors="replace")
        run.not_implemented = f"{UNKNOWN_FAULT_LINE}{run.fault}" in text


@dataclass
class Verdict:
    """What a run says about one fault (or, with no fault, about the healthy board)."""

    fault: str | None
    verdict: str  # detected, MISSED, not implemented, no scenario, run failed, ok, false alarm
    cells: dict[str, list[str]]
    detected_by: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether this row meets the bar: detected (or healthy and clean), and no false alarm."""
        return self.verdict in ("detected", "ok") and not self.false_alarms


def judge(fault: Fault | None, run: SuiteRun | None) -> Verdict:
    """Classify every test of a run against the fault's catalogue entry (``None``: the healthy board)."""
    name = fault.name if fault else None
    if run is None:
        missing = ", ".join(fault.scenario_groups()) if fault else ""
        return Verdict(name, "no scenario", {}, notes=[f"no scenario module for {missing} in tests/scenarios"])
    cells: dict[str, set[str]] = {}
    verdict = Verdict(name, "ok", {})
    for test in run.tests:
        if test.outcome == "skipped":
            continue
        failed = test.outcome in ("failed", "error")
        caught = fault is not None and any(matches(p, test.scenario) for p in fault.caught_by)
        collateral = fault is not None and any(matches(p, test.scenario) for p in fault.collateral)
        if failed and caught and fault is not None and fault.expected in test.message:
            label = DETECTED
            verdict.detected_by.append(test.scenario)
        elif failed and caught:
            label = WRONG_MESSAGE
            verdict.notes.append(f"{test.scenario}: {test.message[:200]}")
        elif failed and collateral:
            label = COLLATERAL
        elif failed:
            label = FALSE_ALARM
            verdict.false_alarms.append(test.scenario)
            verdict.notes.append(f"{test.scenario}: {test.message[:200]}")
        else:
            label = MISSED if caught else OK
        cells.setdefault(scenario_group(test.scenario), set()).add(label)
    if fault is not None and verdict.detected_by:
        # Another catching test that passed is fine once one of them named the problem.
        for labels in cells.values():
            labels.discard(MISSED)
            if not labels:
                labels.add(OK)
    verdict.cells = {group: [label for label in LABEL_ORDER if label in labels] for group, labels in cells.items()}
    if fault is None:
        verdict.verdict = "false alarm" if verdict.false_alarms else "ok"
    elif run.not_implemented:
        verdict.verdict = "not implemented"
        verdict.notes.insert(0, f"the virtual board has no mechanism for {fault.name}")
    elif verdict.detected_by:
        verdict.verdict = "detected"
    else:
        verdict.verdict = "MISSED"
    if not run.tests:
        verdict.verdict = "run failed"
        verdict.notes.append(f"pytest exit {run.returncode}{' (timed out)' if run.timed_out else ''}: "
                             f"{run.output_tail[-600:]}")  # fmt: skip
    return verdict


@dataclass
class SelftestOptions:
    """What `hil selftest` runs."""

    faults: list[str]
    results_dir: Path
    dl_bytes: int = SMALL_DL_BYTES
    iperf_seconds: int = SMALL_IPERF_SECONDS
    all_scenarios: bool = False
    full_healthy: bool = False
    run_timeout_s: float = RUN_TIMEOUT_S
    scenarios_dir: Path = field(default_factory=suite_dir)


def plan(options: SelftestOptions) -> list[tuple[Fault | None, list[str]]]:
    """The runs: the healthy board first, then each fault on its groups plus the controls.

    The healthy run covers every scenario with `full_healthy` (``--full``, ``--all-scenarios``); otherwise
    (the short set, ``--faults``) it covers the groups the fault runs judge, because the default project
    test command runs the whole suite on the healthy board anyway. A fault whose scenario modules do not
    exist gets an empty group list (reported, not run).
    """
    groups = available_groups(options.scenarios_dir)
    if not groups:
        raise ConfigError(f"no scenarios (test_*.py) in {options.scenarios_dir}")
    runs: list[tuple[Fault | None, list[str]]] = []
    for name in validate_faults(options.faults):
        fault = FAULTS[name]
        caught = [group for group in fault.scenario_groups() if group in groups]
        if not caught:
            runs.append((fault, []))
            continue
        wanted = groups if options.all_scenarios else [*caught, *CONTROL_GROUPS]
        runs.append((fault, [group for group in groups if group in wanted]))
    judged = {group for _, run_groups in runs for group in run_groups} | set(CONTROL_GROUPS)
    healthy = groups if options.full_healthy or options.all_scenarios else [g for g in groups if g in judged]
    return [(None, healthy), *runs]


def run_selftest(options: SelftestOptions, console: Console | None = None) -> tuple[bool, Path]:
    """Run the plan, print the matrix, store it as JSON; return (everything met the bar, matrix path)."""
    # Wide enough for the matrix when stdout is a pipe (CI logs), as wide as the terminal otherwise.
    console = console or Console(width=None if sys.stdout.isatty() else 240)
    options.results_dir.mkdir(parents=True, exist_ok=True)
    db = options.results_dir / "hil.sqlite"
    started = datetime.now(timezone.utc)
    rows: list[tuple[Verdict, SuiteRun | None]] = []
    for fault, groups in plan(options):
        label = fault.name if fault else "healthy"
        if not groups:
            rows.append((judge(fault, None), None))
            console.print(f"[yellow]{escape(label)}[/]: no scenario in this tree catches it; not run")
            continue
        # Short directory names: the virtual board's control socket lives below and AF_UNIX paths are short.
        run_dir = options.results_dir / f"run{len(rows):02d}"
        run = SuiteRun(label, fault.name if fault else None, groups, run_dir, run_dir.with_suffix(".junit.xml"))
        console.print(f"selftest: {escape(label)} on {', '.join(groups)} ...")
        command = pytest_command(run, dl_bytes=options.dl_bytes, iperf_seconds=options.iperf_seconds, db=db,
                                 scenarios_dir=options.scenarios_dir)  # fmt: skip
        execute(run, command, options.run_timeout_s)
        verdict = judge(fault, run)
        rows.append((verdict, run))
        console.print(f"  {escape(label)}: {verdict.verdict} in {run.duration_s:.0f} s")
    groups = sorted({group for verdict, _ in rows for group in verdict.cells})
    console.print(render_matrix(rows, groups))
    for verdict, _ in rows:
        for note in verdict.notes:
            console.print(f"  {escape(verdict.fault or 'healthy')}: {escape(note)}")
    ok = all(verdict.passed for verdict, _ in rows)
    path = options.results_dir / f"selftest-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "kind": "hil-selftest",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ok": ok,
        "dl_bytes": options.dl_bytes,
        "iperf_seconds": options.iperf_seconds,
        "all_scenarios": options.all_scenarios,
        "store": str(db),
        "groups": groups,
        "rows": [_row_json(verdict, run, options.results_dir) for verdict, run in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"matrix: {path}  ({'all faults detected, no false alarm' if ok else 'FAILED'})")
    return ok, path


def _row_json(verdict: Verdict, run: SuiteRun | None, base: Path) -> dict[str, Any]:
    row = asdict(verdict)
    row["passed"] = verdict.passed
    if run is not None:
        row["run"] = {
            "name": run.name,
            "results_dir": str(run.results_dir.relative_to(base)),
            "groups": run.groups,
            "returncode": run.returncode,
            "timed_out": run.timed_out,
            "duration_s": round(run.duration_s, 2),
            "results_file": str(run.results_file.relative_to(base)) if run.results_file else None,
            "junit": str(run.junit.relative_to(base)),
            "tests": [asdict(test) for test in run.tests],
        }
    return row


_STYLES = {FALSE_ALARM: "bold red", MISSED: "bold red", WRONG_MESSAGE: "red", DETECTED: "green",
           COLLATERAL: "yellow", OK: "dim"}  # fmt: skip


def render_matrix(rows: Iterable[tuple[Verdict, SuiteRun | None]], groups: Sequence[str]) -> Table:
    """The fault x scenario table."""
    table = Table(title="hil selftest: fault x scenario detection matrix")
    table.add_column("fault")
    table.add_column("verdict")
    for group in groups:
        table.add_column(group)
    for verdict, _ in rows:
        style = "green" if verdict.passed else "bold red"
        cells = []
        for group in groups:
            labels = verdict.cells.get(group)
            cells.append(", ".join(f"[{_STYLES[x]}]{x}[/]" for x in labels) if labels else "-")
        table.add_row(escape(verdict.fault or "healthy board"), f"[{style}]{verdict.verdict}[/]", *cells)
    return table


def parse_fault_list(text: str | None, full: bool, stack: str | None = None) -> list[str]:
    """`--faults a,b` (validated), `--full` (the catalogue) or the short set, for the board's ``stack``.

    ``--full`` leaves out the faults that exist only in another stack (`other_stack_faults` names them); a
    fault of another stack named in ``--faults`` is refused (ConfigError).
    """
    if text:
        return validate_faults((name.strip() for name in text.split(",") if name.strip()), stack)
    if not full:
        return list(SHORT_FAULTS)
    return [fault.name for fault in CATALOGUE if fault.name not in other_stack_faults(stack)]


def other_stack_faults(stack: str | None) -> list[str]:
    """Catalogued faults that exist only in another stack than ``stack`` (none when ``stack`` is None)."""
    return [fault.name for fault in CATALOGUE if stack is not None and fault.stack not in (None, stack)]
