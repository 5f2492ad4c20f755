"""pytest plugin: options and fixtures that wire boards, lab, console and results together.

Kept thin on purpose: behaviour lives in `harness.boards`, `harness.lab`, `harness.console` and
`harness.results`; this module only decides when things start and stop and what gets recorded.
"""

from __future__ import annotations

import atexit
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.boards.board import Board
from harness.boards.esp32p4 import add_real_board_options
from harness.config import LabConfig
from harness.console.protocol import counter_deltas, heap_deltas
from harness.console.verdict import decode_crashes, judge
from harness.errors import BoardError, ConfigError, DutTimeoutError, HilError
from harness.lab.netns import Lab, new_run_id
from harness.results.record import Metric, RunRecord
from harness.session import HilSession

BOARDS = ("virtual", "esp32p4")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the harness (all in the `esp-smoltcp-hil` group)."""
    group = parser.getgroup("esp-smoltcp-hil", "esp-smoltcp HIL harness")
    group.addoption("--board", choices=BOARDS, default="virtual",
                    help="board under test: the virtual ESP32-P4 (default) or a real ESP32-P4 (esp32p4)")  # fmt: skip
    group.addoption("--results-dir", type=Path, default=Path("results"),
                    help="where <run-id>.json, console logs and slices go (default: results/)")  # fmt: skip
    group.addoption("--results-db", default=None,
                    help="results store to import the run into (SQLite path or postgresql:// URL; "
                    "default: <results-dir>/hil.sqlite)")  # fmt: skip
    group.addoption("--no-import", action="store_true", help="do not import the run into the results store")
    group.addoption("--hil-config", type=Path, default=None,
                    help="lab config file (default: ./hil.toml when present)")  # fmt: skip
    group.addoption("--dl-bytes", type=int, default=50_000_000,
                    help="bytes per HTTP transfer (200000000 reproduces the blog's run)")  # fmt: skip
    group.addoption("--iperf-seconds", type=int, default=10, help="duration of each iperf3 test (default 10)")
    group.addoption("--dhcp-force", action="store_true",
                    help="let the DHCP server serve on an interface that fails the safety check")  # fmt: skip
    group.addoption("--fault", action="append", default=[],
                    help="start the virtual board with this fault from the catalogue (repeatable)")  # fmt: skip
    group.addoption("--app-elf", type=Path, default=None,
                    help="firmware ELF for decoding crash backtraces (checked against the printed SHA256)")  # fmt: skip
    group.addoption("--benchmarks", action="store_true", help="also run tests marked `benchmark`")
    group.addoption("--selftest-full", action="store_true",
                    help="also run the full fault x scenario selftest matrix (several minutes)")  # fmt: skip
    add_real_board_options(group)
    group.addoption("--soak", action="store_true", help="also run tests marked `soak`")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Create the run's session object; the lab and board start lazily when a test needs them."""
    config.addinivalue_line("markers", "budget(**counters): per-test budget for HIL_STATS counter deltas")
    config.addinivalue_line("markers", "expect_crash(*kinds): these crash kinds do not fail the test")
    config.addinivalue_line("markers", "benchmark: slow measurement, runs only with --benchmarks")
    config.addinivalue_line("markers", "soak: long run, runs only with --soak")
    config.addinivalue_line("markers", "needs_lab: needs root and network namespaces")
    # pytest-embedded's autouse fixtures call record_xml_attribute for every test; in a project that keeps
    # pytest's default junit_family (xunit2) that is two warnings per test about an attribute nobody asked for.
    config.addinivalue_line("filterwarnings", "ignore::pytest.PytestExperimentalApiWarning")
    config.addinivalue_line("filterwarnings", "ignore:record_xml_attribute is incompatible:pytest.PytestWarning")
    if config.option.board not in BOARDS:  # pragma: no cover - argparse enforces the choice
        raise pytest.UsageError(f"unknown --board {config.option.board}")
    try:
        lab_config = LabConfig.load(config.option.hil_config)
        config.option.fault = _checked_faults(config.option.board, config.option.fault)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from exc
    run_id = new_run_id()
    record = RunRecord(config.option.results_dir, run_id)
    # Runs before the junitxml plugin reads its option: every run leaves a JUnit file beside its results.
    if getattr(config.option, "xmlpath", None) is None and not hasattr(config, "workerinput"):
        config.option.xmlpath = str(config.option.results_dir / f"{run_id}.junit.xml")
    if getattr(config.option, "xmlpath", None):
        record.meta["junit"] = record.relative(Path(config.option.xmlpath))
    session = HilSession(config.option, lab_config, record)
    config.stash[SESSION_KEY] = session
    atexit.register(session.close)
    # SIGTERM (CI cancel, `timeout`) unwinds like Ctrl-C, so fixtures tear the lab down.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def _checked_faults(board: str, faults: list[str]) -> list[str]:
    """Faults exist only on the virtual board, and only those of the catalogue."""
    if not faults:
        return []
    if board != "virtual":
        raise ConfigError(f"--fault works only with --board virtual (its fault catalogue), not --board {board}")
    from harness.boards.virtual.faults import validate_faults

    return validate_faults(faults)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


SESSION_KEY = pytest.StashKey[HilSession]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip opt-in tests unless their flag was given."""
    for marker, flag in (("benchmark", "--benchmarks"), ("soak", "--soak")):
        if getattr(config.option, flag.lstrip("-")):
            continue
        skip = pytest.mark.skip(reason=f"opt-in: run with {flag}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def _session(request: pytest.FixtureRequest) -> HilSession:
    return request.config.stash[SESSION_KEY]


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hil_session(request: pytest.FixtureRequest) -> HilSession:
    """The run: config, results record, and (lazily) lab and board."""
    return _session(request)


@pytest.fixture(scope="session")
def hil_config(hil_session: HilSession) -> LabConfig:
    """The effective lab configuration."""
    return hil_session.config


@pytest.fixture(scope="session")
def lab(hil_session: HilSession) -> Iterator[Lab]:
    """The started network lab (namespaces, shaped cable, DHCP server)."""
    try:
        yield hil_session.start_lab()
    except HilError as exc:
        pytest.fail(f"lab setup failed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def board(hil_session: HilSession, lab: Lab) -> Iterator[Board]:
    """The board under test, booted and online."""
    try:
        yield hil_session.start_board()
    except HilError as exc:
        pytest.fail(f"board setup failed: {exc}", pytrace=False)


@pytest.fixture
def console(board: Board) -> Any:
    """The board's console monitor."""
    return board.monitor


@pytest.fixture
def dut_ip(board: Board) -> str:
    """The DUT's IPv4 address (waits for the DHCP lease)."""
    return board.wait_for_ip()


@pytest.fixture
def dhcp_server(hil_session: HilSession, lab: Lab) -> Any:
    """The lab's DHCP server (exchanges, behaviour switches)."""
    return hil_session.dhcp


class MetricsRecorder:
    """Records a test's metrics into the results file and the JUnit XML properties."""

    def __init__(self, item: pytest.Item, record: RunRecord) -> None:
        self.item = item
        self.test = record.test(item.nodeid)

    def record(self, name: str, value: float, unit: str, better: str, ceiling: float | None = None) -> Metric:
        """Record one metric (``better`` is `higher` or `lower`)."""
        metric = Metric(name, float(value), unit, better, ceiling)
        self.test.metrics.append(metric)
        self.item.user_properties.append((name, f"{metric.value:g} {unit}"))
        return metric


@pytest.fixture
def metrics(request: pytest.FixtureRequest, hil_session: HilSession) -> MetricsRecorder:
    """Record metrics: ``metrics.record("ping_rtt_p50_ms", 0.21, "ms", "lower")``."""
    return MetricsRecorder(request.node, hil_session.record)


# --- per-test guard: console slice, counters, budgets, crash and hang handling ---------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Around each test that uses the board: counters and budgets, crash/reset detection, console slice."""
    session = item.config.stash[SESSION_KEY]
    board = session.board if "board" in getattr(item, "fixturenames", ()) else None
    if board is None:
        return (yield)
    test = session.record.test(item.nodeid)
    mark = board.monitor.mark()
    planned_before = board.planned_restarts
    before = _stats_or_none(board)
    failure: BaseException | None = None
    try:
        result = yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # re-raised below, after the console has been judged
        failure = exc
    after = _stats_or_none(board)  # also flushes the parser: a dump ends when the next line arrives
    verdict = judge(
        board.monitor.events_between(mark),
        board.planned_restarts - planned_before,
        (kind for marker in item.iter_markers("expect_crash") for kind in marker.args),
    )
    notes = decode_crashes(verdict.crashes, session.decoder)
    test.events = [event.to_dict() for event in verdict.recorded]
    test.console_slice = session.write_slice(item, mark)
    if after is None or verdict.failed:
        session.board_needs_reset = True
    if before is not None and after is not None:
        # recorded for failed tests too: they explain failures. The heap's change sits beside the counters so
        # that runs on different stacks compare per scenario.
        test.counters = {**counter_deltas(before, after), **heap_deltas(before, after)}
    if verdict.failed:
        raise AssertionError("\n".join([verdict.message(), *notes])) from failure
    if failure is not None:
        raise failure
    if after is None:
        raise DutTimeoutError("DUT stopped answering on its console (no HIL_STATS reply within 10 s)")
    if before is not None:
        over = _budget_violations(item, session, test.counters)
        if over:
            raise AssertionError(f"counter budget exceeded: {over}")
    return result


def _stats_or_none(board: Board) -> dict[str, Any] | None:
    try:
        return board.stats()
    except (DutTimeoutError, BoardError):
        return None


def _budget_violations(item: pytest.Item, session: HilSession, deltas: dict[str, int]) -> str:
    scenario = item.module.__name__.rsplit(".", 1)[-1].removeprefix("test_") if item.module else "default"
    budget = session.config.budget(scenario)
    for marker in item.iter_markers("budget"):
        budget = {**budget, **marker.kwargs}
    over = {name: (deltas[name], limit) for name, limit in budget.items() if deltas.get(name, 0) > limit}
    return ", ".join(f"{name} +{got} (budget {limit})" for name, (got, limit) in over.items())


HIL_FIXTURES = frozenset({"board", "lab", "metrics", "dut_ip", "console", "dhcp_server"})


def _uses_hil_fixtures(item: pytest.Item) -> bool:
    """Whether the test uses this plugin's board/lab fixtures (not a local fixture of the same name)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    for name in HIL_FIXTURES & set(info.names_closure):
        definitions = info.name2fixturedefs.get(name, ())
        if definitions and definitions[-1].func.__module__ == __name__:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Note which tests are HIL tests (recorded in the results); reset a board that hung in the previous test."""
    session = item.config.stash[SESSION_KEY]
    if _uses_hil_fixtures(item):
        session.hil_tests.add(item.nodeid)
    if session.board is not None and session.board_needs_reset and "board" in getattr(item, "fixturenames", ()):
        session.recover_board()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record outcome and duration of every test phase."""
    config = getattr(report, "config", None) or _CONFIG.get("config")
    if config is None:
        return
    session = config.stash[SESSION_KEY]
    session.record_report(report)


_CONFIG: dict[str, pytest.Config] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember the config for report hooks that do not receive it."""
    _CONFIG["config"] = session.config


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the final results file."""
    hil = session.config.stash.get(SESSION_KEY, None)
    if hil is not None:
        hil.finish()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The Rich summary table of scenarios and metrics."""
    hil = config.stash.get(SESSION_KEY, None)
    if hil is not None:
        hil.print_summary(terminalreporter)
