"""One run of the suite: starts the lab and the board on demand, guards each test, records results, tears down."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.boards.board import Board
from harness.boards.kinds import BoardKind
from harness.config import LabConfig
from harness.console.decode import BacktraceDecoder
from harness.errors import HilError
from harness.guard import Guard, GuardPolicy, Verdict, policy_for
from harness.lab.base import Lab
from harness.results.record import RunRecord

if TYPE_CHECKING:
    from harness.lab.dhcp import DhcpServer

# A test's outcome from the moment its setup starts until a report says otherwise: a run stopped in the
# middle of a test (SIGTERM, Ctrl-C, a CI cancel) leaves it so, never as passed.
INTERRUPTED = "interrupted"
# Settled outcomes of one test repeated with --repeat: the record keeps the worst.
_SEVERITY = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
_REPEAT_ID = re.compile(r"(?<=\[)repeat\d+-|-repeat\d+(?=\])|\[repeat\d+\]")


def record_nodeid(nodeid: str) -> str:
    """The results record a test belongs to: repetitions of one test (`--repeat`) share their test's record."""
    return _REPEAT_ID.sub("", nodeid)


def scenario_name(nodeid: str) -> str:
    """`tests/scenarios/test_ping.py::test_ping[56]` -> `ping::ping[56]`; module-level tests lose the repeat."""
    path, _, name = nodeid.partition("::")
    module = re.sub(r"^test_|\.py$", "", path.rsplit("/", 1)[-1])
    test = name.removeprefix("test_")
    if test == module or test.startswith(f"{module}["):
        return test
    return f"{module}::{test}"


class HilSession:
    """Owns the lab, the DHCP server, the board, its guard and the results record of one pytest run.

    In a run sharded with pytest-xdist each worker has one, with its own lab and board and a shard record
    (`RunRecord.shard`) that writes no file; the controller has one too, which never starts a lab or a board:
    it folds the workers' reports (`merge_shard`) into the run's one results file, imports it and prints
    the summary.

    Args:
        options: pytest's parsed options.
        config: the lab configuration.
        record: the run's results record.
        kind: the kind of board under test (it makes the lab and the board).
        lab_id: names the lab's namespaces (default: the run id; each xdist worker has its own).
    """

    def __init__(
        self, options: Any, config: LabConfig, record: RunRecord, kind: BoardKind, lab_id: str | None = None
    ) -> None:
        self.options = options
        self.config = config
        self.record = record
        self.kind = kind
        self.lab_id = lab_id or record.run_id
        self.lab: Lab | None = None
        self.dhcp: DhcpServer | None = None
        self.board: Board | None = None
        self.guard: Guard | None = None
        self.hil_tests: set[str] = set()
        self._settled: dict[str, str] = {}
        self.imported_into: str | None = None
        self.decoder = BacktraceDecoder(options.app_elf)
        self._lock = threading.Lock()
        self._closed = False
        record.meta["config"] = {"fingerprint": config.fingerprint(), "source": str(config.source or "")}
        record.meta["interrupted"] = False

    # --- lab and board ----------------------------------------------------------------------------------

    def start_lab(self) -> Lab:
        """Create the lab (once per run) and start its DHCP server on the lab's host end of the cable."""
        with self._lock:
            if self.lab is not None:
                return self.lab
            from harness.lab.dhcp import DhcpServer

            lab = self.kind.make_lab(self.options, self.config, self.lab_id, self.record.artifacts_dir / "lab")
            self.lab = lab
            lab.start()
            for warning in lab.warnings:
                print(f"hil: warning: {warning}")
            self.dhcp = DhcpServer(lab.host, lab.host_if, lab.addressing, force=self.options.dhcp_force)
            self.dhcp.start()
            self.record.meta["link"] = lab.link.as_dict()
            self.record.save()
            return lab

    def start_board(self) -> Board:
        """Start and boot the board (once per run)."""
        lab = self.start_lab()
        with self._lock:
            if self.board is not None:
                return self.board
            board = self.kind.make_board(self.options, self.config, lab, self.record.artifacts_dir)
            self.board = board
            board.start()
            self.guard = Guard(board, self.decoder)
            self.record.meta["board"] = board.identity()
            self.record.meta["firmware"] = board.firmware_info()
            self.record.meta["console_log"] = self.record.relative(board.monitor.log_path)
            self.record.save()
            return board

    def owns(self, value: object) -> bool:
        """Whether ``value`` is one of this run's objects: the run, its config, lab, DHCP server or board."""
        return any(value is mine for mine in (self, self.config, self.lab, self.dhcp, self.board) if mine is not None)

    # --- the guard -----------------------------------------------------------------------------------------

    def policy(self, item: pytest.Item) -> GuardPolicy:
        """A test's budget (hil.toml for its scenario module, then its `budget` markers) and expected crashes."""
        module = getattr(item, "module", None)
        scenario = module.__name__.rsplit(".", 1)[-1].removeprefix("test_") if module else "default"
        return policy_for(
            self.config.budget(scenario),
            (marker.kwargs for marker in item.iter_markers("budget")),
            (kind for marker in item.iter_markers("expect_crash") for kind in marker.args),
        )

    def slice_path(self, nodeid: str) -> Path:
        """Where a test's console slice goes."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("/")[-1])[:150]
        return self.record.artifacts_dir / "slices" / f"{safe}.log"

    def keep_verdict(self, item: pytest.Item, verdict: Verdict) -> None:
        """Store what the guard found with the test's record (and the slice path in the JUnit properties)."""
        test = self.record.test(record_nodeid(item.nodeid))
        test.events += verdict.events
        test.counters = verdict.counters
        test.board = self.record.meta["board"].get("id")
        if verdict.console_slice is not None:
            test.console_slice = self.record.relative(verdict.console_slice)
            item.user_properties.append(("console_slice", str(verdict.console_slice)))

    # --- results -----------------------------------------------------------------------------------------

    def test_started(self, nodeid: str) -> None:
        """A HIL test's setup begins: it counts as interrupted until a report says how it ended."""
        self.hil_tests.add(nodeid)
        self.record.test(record_nodeid(nodeid)).outcome = INTERRUPTED

    def record_report(self, report: pytest.TestReport) -> None:
        """Fold one phase report (setup/call/teardown) of a HIL test into its record and save the file."""
        if report.nodeid not in self.hil_tests:
            return
        key = record_nodeid(report.nodeid)
        test = self.record.test(key)
        test.duration_s += report.duration
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.skipped:
                test.outcome = "skipped"
                test.message = _skip_reason(report)
            elif report.failed:
                test.outcome = "failed" if report.when == "call" else "error"
                test.message = _failure_message(report)
            else:
                test.outcome = "passed"
        elif report.when == "teardown" and report.failed and test.outcome == "passed":
            test.outcome = "error"
            test.message = _failure_message(report)
        if report.when == "teardown":
            settled = self._settled.get(key)
            if settled is not None and _SEVERITY.get(settled, 0) > _SEVERITY.get(test.outcome, 0):
                test.outcome = settled  # an earlier repetition did worse
            self._settled[key] = test.outcome
            self.record.save()

    # --- sharded runs (pytest-xdist) ---------------------------------------------------------------------

    def shard_results(self, nodeid: str) -> dict[str, Any]:
        """What a worker sends the controller about a test at its teardown: the test's board-side results and
        this worker's board (identity, firmware, link, console log)."""
        meta = self.record.meta
        return {
            "test": self.record.test(record_nodeid(nodeid)).as_dict(),
            "worker": {"worker": self.record.shard, "board": meta["board"], "firmware": meta["firmware"],
                       "link": meta["link"], "console_log": meta["console_log"]},
        }  # fmt: skip

    def merge_shard(self, nodeid: str, shard: dict[str, Any]) -> None:
        """On the controller: fold a worker's `shard_results` into the run's one record.

        Every board of the run is listed under ``boards``; the run-level ``board`` is that board when there is
        one, else ``{"kind", "id": "<id>+<id>..."}``, and ``firmware``/``link`` keep what all boards share.
        """
        self.record.test(record_nodeid(nodeid)).take_board_results(shard["test"])
        worker = shard["worker"]
        if not worker["board"].get("id"):
            return  # that worker's board never came up
        boards = [entry for entry in self.record.meta.get("boards", []) if entry["worker"] != worker["worker"]]
        boards = sorted([*boards, worker], key=lambda entry: entry["worker"])
        meta = self.record.meta
        meta["boards"] = boards
        if len(boards) == 1:
            meta.update({key: worker[key] for key in ("board", "firmware", "link", "console_log")})
            return
        kinds = {entry["board"].get("kind") for entry in boards}
        meta["board"] = {"kind": kinds.pop() if len(kinds) == 1 else "mixed",
                         "id": "+".join(sorted(entry["board"]["id"] for entry in boards))}  # fmt: skip
        meta["firmware"] = _shared([entry["firmware"] for entry in boards])
        meta["link"] = _shared([entry["link"] for entry in boards])
        meta["console_log"] = None

    def finish(self, interrupted: bool) -> None:
        """Final save of the results file (the run marked interrupted when it was), then tear down."""
        self.close()
        if interrupted or any(test.outcome == INTERRUPTED for test in self.record.tests.values()):
            self.record.meta["interrupted"] = True
        if self.record.tests or self.lab is not None:
            self.record.save(finished=True)
            self.import_into_store()

    def import_into_store(self) -> None:
        """Add the finished run to the results store (history for `hil gate` and the dashboard)."""
        if self.options.no_import or self.record.shard:
            return
        from harness.results.store import import_results_file

        db_url = self.options.results_db or str(self.record.results_dir / "hil.sqlite")
        try:
            import_results_file(self.record.path, db_url)
            self.imported_into = db_url
        except HilError as exc:
            print(f"hil: the run was not imported into {db_url}: {exc} (the results file is kept: {self.record.path})")

    def close(self) -> None:
        """Stop board, DHCP server and lab; idempotent."""
        if self._closed:
            return
        self._closed = True
        for stop in (
            (lambda: self.board.close()) if self.board else None,
            (lambda: self.dhcp.stop()) if self.dhcp else None,
            (lambda: self.lab.close()) if self.lab else None,
        ):
            if stop is None:
                continue
            try:
                stop()
            except Exception as exc:
                print(f"hil: teardown problem: {exc}")

    def print_summary(self, reporter: Any) -> None:
        """Print the summary table (scenario, result, metric, value, ceiling) and the results path."""
        if not self.record.tests:
            return
        boards = len(self.record.meta.get("boards", [])) or 1
        table = Table(title=f"esp-smoltcp-hil run {self.record.run_id} ({self.options.board} board"
                      + (f"s, {boards} shards)" if boards > 1 else ")"))  # fmt: skip
        for column in ("scenario", "result", "metric", "value", "ceiling"):
            table.add_column(column, justify="right" if column in ("value", "ceiling") else "left")
        for test in self.record.tests.values():
            name = scenario_name(test.nodeid)
            if not test.metrics:
                table.add_row(escape(name), test.outcome, "", "", escape(test.message[:60]))
            for index, metric in enumerate(test.metrics):
                ceiling = ""
                if metric.ceiling:
                    ceiling = f"{metric.ceiling:g} ({100 * metric.value / metric.ceiling:.1f} %)"
                table.add_row(
                    escape(name) if index == 0 else "", test.outcome if index == 0 else "", metric.name,
                    f"{metric.value:.4g} {metric.unit}", ceiling,
                )  # fmt: skip
        buffer = io.StringIO()
        Console(file=buffer, width=130, force_terminal=False, color_system=None).print(table)
        reporter.write_sep("=", "esp-smoltcp-hil summary")
        reporter.write(buffer.getvalue())
        reporter.write_line(f"results: {self.record.path}")
        if self.imported_into:
            reporter.write_line(f"imported into {self.imported_into}: `hil gate --db {self.imported_into}` judges it")


def _shared(values: list[dict[str, Any]]) -> dict[str, Any]:
    """The entries every dict agrees on."""
    first, *others = values
    return {key: value for key, value in first.items() if all(other.get(key) == value for other in others)}


def _failure_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)[:2000]
    return str(report.longreprtext)[-2000:]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return ""
