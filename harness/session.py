"""One run of the suite: starts the lab and the board on demand, records results, tears everything down."""

from __future__ import annotations

import io
import re
import threading
from typing import Any

import pytest
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.boards.board import Board
from harness.config import LabConfig
from harness.console.decode import BacktraceDecoder
from harness.errors import BoardError, HilError
from harness.lab.netns import Lab, LinkProfile
from harness.results.record import RunRecord


def scenario_name(nodeid: str) -> str:
    """`tests/scenarios/test_ping.py::test_ping[56]` -> `ping::ping[56]`; module-level tests lose the repeat."""
    path, _, name = nodeid.partition("::")
    module = re.sub(r"^test_|\.py$", "", path.rsplit("/", 1)[-1])
    test = name.removeprefix("test_")
    if test == module or test.startswith(f"{module}["):
        return test
    return f"{module}::{test}"


class HilSession:
    """Owns the lab, the DHCP server, the board and the results record of one pytest run.

    Args:
        options: pytest's parsed options.
        config: the lab configuration.
        record: the run's results record.
    """

    def __init__(self, options: Any, config: LabConfig, record: RunRecord) -> None:
        self.options = options
        self.config = config
        self.record = record
        self.lab: Lab | None = None
        self.dhcp: Any = None
        self.board: Board | None = None
        self.board_needs_reset = False
        self.hil_tests: set[str] = set()
        self.imported_into: str | None = None
        self.decoder = BacktraceDecoder(options.app_elf)
        self._lock = threading.Lock()
        self._closed = False
        record.meta["config"] = {"fingerprint": config.fingerprint(), "source": str(config.source or "")}

    # --- lab and board ----------------------------------------------------------------------------------

    def start_lab(self) -> Lab:
        """Create the lab (once per run) and start its DHCP server.

        The virtual board gets a veth cable between two new namespaces; a real board gets the NIC it is
        cabled to, moved into the run's host namespace for the duration of the run.
        """
        with self._lock:
            if self.lab is not None:
                return self.lab
            from harness.lab.dhcp import DhcpServer

            log_dir = self.record.artifacts_dir / "lab"
            if self.options.board == "virtual":
                link = self.config.data["link"]
                lab: Any = Lab(run_id=self.record.run_id, link=LinkProfile(rate_mbit=link["rate_mbit"],
                               mtu=link["mtu"]), log_dir=log_dir)  # fmt: skip
            else:
                from harness.lab.nic import nic_lab_from_options

                lab = nic_lab_from_options(self.options, self.config, self.record.run_id, log_dir)
            self.lab = lab
            lab.start()
            for warning in getattr(lab, "warnings", ()):
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
            board: Board
            if self.options.board == "virtual":
                from harness.boards.virtual.board import VirtualBoard

                board = VirtualBoard(lab, self.record.artifacts_dir, faults=tuple(self.options.fault))
            else:
                from harness.boards.esp32p4 import board_from_options

                board = board_from_options(self.options, self.config, self.record.artifacts_dir)
            self.board = board
            board.start()
            self.record.meta["board"] = board.identity()
            self.record.meta["firmware"] = board.firmware_info()
            self.record.meta["console_log"] = self.record.relative(board.monitor.log_path)
            self.record.save()
            return board

    def recover_board(self) -> None:
        """Bring a hung or crashed board back: pulse reset and wait until it is online again."""
        assert self.board is not None
        try:
            self.board.reset(wait_online=True)
        except HilError as exc:
            raise BoardError(f"the board did not come back after a reset: {exc}") from exc
        self.board_needs_reset = False

    def write_slice(self, item: pytest.Item, mark: int) -> str | None:
        """Write the test's console lines to its slice file; return the path stored in the results."""
        if self.board is None or self.board.console is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.split("/")[-1])[:150]
        path = self.record.artifacts_dir / "slices" / f"{safe}.log"
        self.board.console.write_slice(path, mark)
        item.user_properties.append(("console_slice", str(path)))
        return self.record.relative(path)

    # --- results -----------------------------------------------------------------------------------------

    def record_report(self, report: pytest.TestReport) -> None:
        """Fold one phase report (setup/call/teardown) of a HIL test into its record and save the file."""
        if report.nodeid not in self.hil_tests:
            return
        test = self.record.test(report.nodeid)
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
            self.record.save()

    def finish(self) -> None:
        """Final save of the results file, then tear down."""
        self.close()
        if self.record.tests or self.lab is not None:
            self.record.save(finished=True)
            self.import_into_store()

    def import_into_store(self) -> None:
        """Add the finished run to the results store (history for `hil gate` and the dashboard)."""
        if self.options.no_import:
            return
        from harness.results.store import import_results_file

        db_url = self.options.results_db or str(self.record.results_dir / "hil.sqlite")
        try:
            import_results_file(self.record.path, db_url)
            self.imported_into = db_url
        except HilError as exc:
            print(f"hil: the run was not imported into {db_url}: {exc} (the results file is kept: {self.record.path})")

    def close(self) -> None:
        """Stop board, DHCP server and lab; idempotent (also runs at interpreter exit)."""
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
        table = Table(title=f"esp-smoltcp-hil run {self.record.run_id} ({self.options.board} board)")
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
