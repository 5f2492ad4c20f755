"""pytest plugin: options and fixtures that wire boards, lab, console and results together.

Kept thin on purpose: behaviour lives in `harness.boards` (kinds), `harness.lab`, `harness.guard`,
`harness.console` and `harness.results`; the hooks here are methods of one `HilPlugin` object that
`pytest_configure` registers and `pytest_unconfigure` unregisters, so no state lives in this module.

Inert unless used: the plugin loads into every pytest session of the environment (`pytest11`), but it
writes nothing and installs no signal handler until a test uses one of its fixtures or a harness option
is given. `hil run` names its default tests with `--hil-default-tests`, which pytest uses only when the
command line gives no path, so `hil run PATH...` runs exactly those paths.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from harness import dut as dut_plugin
from harness.boards.board import Board
from harness.boards.kinds import KindOptions, board_kinds, board_values, chosen_kind, default_kind, option_owner
from harness.config import LabConfig
from harness.console.monitor import ConsoleMonitor
from harness.errors import BoardError, ConfigError, HilError
from harness.lab.base import Lab
from harness.lab.netns import new_run_id
from harness.results.record import Metric, RunRecord
from harness.session import HilSession, record_nodeid

if TYPE_CHECKING:
    from harness.lab.dhcp import DhcpServer

GROUP = "esp-smoltcp-hil"
MARKERS = (
    "budget(**counters): per-test budget for HIL_STATS counter deltas",
    "expect_crash(*kinds): these crash kinds do not fail the test",
    "benchmark: slow measurement, runs only with --benchmarks",
    "soak: long run, runs only with --soak",
    "fuzz: fuzz campaign, runs only with --fuzz-minutes",
    "fuzz_replay: replays a fuzz case, runs only with --fuzz-replay",
    "needs_lab: needs root and network namespaces",
)
OPT_IN = (("benchmark", "benchmarks", "--benchmarks"), ("soak", "soak", "--soak"),
          ("fuzz", "fuzz_minutes", "--fuzz-minutes"), ("fuzz_replay", "fuzz_replay", "--fuzz-replay"))  # fmt: skip


def _general_options(group: Any, embedded_plugin: bool) -> None:
    """The options of every run, whatever the board (`--target` is pytest-embedded's when its plugin is loaded)."""
    kinds = board_values()
    summaries = "; ".join(f"{name}: {kind.summary}" for name, kind in kinds.items())
    group.addoption("--board", choices=tuple(kinds), default=default_kind(), help=f"board under test ({summaries})")
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
    group.addoption("--app-elf", type=Path, default=None,
                    help="firmware ELF for decoding crash backtraces (checked against the printed SHA256)")  # fmt: skip
    group.addoption("--benchmarks", action="store_true", help="also run tests marked `benchmark`")
    group.addoption("--soak", action="store_true", help="also run tests marked `soak`")
    group.addoption("--fuzz-minutes", type=float, default=None, metavar="N",
                    help="run the fuzz campaign for N minutes (docs/fuzz.md)")  # fmt: skip
    group.addoption("--fuzz-seed", type=int, default=None, help="seed of the fuzz campaign (default: a new one)")
    group.addoption("--fuzz-replay", type=Path, default=None, metavar="PCAP",
                    help="send a fuzz case's pcap to the board and check it survives (`hil fuzz replay`)")  # fmt: skip
    group.addoption("--selftest-full", action="store_true",
                    help="also run the full fault x scenario selftest matrix (several minutes)")  # fmt: skip
    group.addoption("--repeat", type=_positive, default=1, metavar="N",
                    help="run every selected test N times (ids get repeat1..N; the results keep one record per test: "
                    "its worst outcome, every metric)")  # fmt: skip
    group.addoption("--hil-default-tests", default=None, help=argparse.SUPPRESS)
    if not embedded_plugin:
        group.addoption("--target", default=None,
                        help="the ESP-IDF target the tests are for, as pytest-embedded spells it; must be the board's "
                        "(esp32p4); `dut` tests for other targets are skipped")  # fmt: skip


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


@dataclass(frozen=True)
class HarnessOption:
    """One option of the harness: its spelling, its default and the board kind that owns it (None: all)."""

    flag: str
    default: Any
    owner: str | None


class _Recorder:
    """An option group that only notes the options added to it (which options are the harness's)."""

    def __init__(self, owner: str | None = None, embedded_plugin: bool = False) -> None:
        self.owner = owner
        self.options: dict[str, HarnessOption] = {}
        self.embedded_plugin = embedded_plugin

    def addoption(self, *flags: str, **kwargs: Any) -> None:
        dest = kwargs.get("dest") or flags[-1].lstrip("-").replace("-", "_")
        implicit = False if kwargs.get("action") == "store_true" else None
        self.options[dest] = HarnessOption(flags[-1], kwargs.get("default", implicit), self.owner)


def harness_options(embedded_plugin: bool) -> dict[str, HarnessOption]:
    """Every option the harness and its board kinds add, by destination (as `pytest_addoption` added them)."""
    general = _Recorder()
    _general_options(general, embedded_plugin)
    options = dict(general.options)
    for kind in board_kinds().values():
        owned = _Recorder(option_owner(kind), embedded_plugin)
        kind.add_options(owned)  # type: ignore[arg-type]
        options.update(owned.options)
    return options


def _embedded_plugin_coming(pluginmanager: pytest.PytestPluginManager) -> bool:
    """Whether pytest-embedded's plugin is, or is about to be, loaded (it owns `--port`, `--build-dir`...)."""
    if pluginmanager.has_plugin("pytest_embedded"):
        return True
    if pluginmanager.is_blocked("pytest_embedded") or os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(entry.name == "pytest_embedded" for entry in importlib.metadata.entry_points(group="pytest11"))


def _leave_out_labgrid(pluginmanager: pytest.PytestPluginManager) -> None:
    """labgrid's pytest plugin and pytest-embedded's both define a `target` fixture: in one session,
    pytest-embedded's autouse fixtures would get labgrid's, which skips every test without `--lg-env`. Where
    pytest-embedded's plugin loads (an ESP-IDF project's plain `pytest`), labgrid's plugin is left out; the
    place options (`--lg-place`, `--lg-tags`, `$LG_COORDINATOR`) do not need it (docs/farm.md)."""
    plugin = pluginmanager.get_plugin("labgrid")
    if plugin is not None:
        # Registered before this plugin: pytest's fixture manager still reads every plugin registered so far
        # when the session starts, unregistered or not, so its fixtures go too (this process only).
        pluginmanager.unregister(plugin)
        for fixture in ("env", "target", "strategy"):
            if hasattr(plugin, fixture):
                delattr(plugin, fixture)
    pluginmanager.set_blocked("labgrid")


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """The harness's options, and each board kind's own (all in the `esp-smoltcp-hil` group)."""
    group = parser.getgroup(GROUP, "esp-smoltcp HIL harness")
    embedded = _embedded_plugin_coming(pluginmanager)
    _general_options(group, embedded)
    if embedded:
        _leave_out_labgrid(pluginmanager)
    for kind in board_kinds().values():
        kind.add_options(KindOptions(group, option_owner(kind), embedded))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, args: list[str]) -> None:
    """`--hil-default-tests PATH` (what `hil run`/`hil test` pass): the tests to run when no path is given."""
    known = early_config.known_args_namespace
    default = getattr(known, "hil_default_tests", None)
    if default and not known.file_or_dir:
        known.file_or_dir = [default]
        args.append(default)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and the plugin object; check the options and the lab config of the chosen board."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    # pytest-embedded's autouse fixtures call record_xml_attribute for every test; in a project that keeps
    # pytest's default junit_family (xunit2) that is two warnings per test about an attribute nobody asked for.
    config.addinivalue_line("filterwarnings", "ignore::pytest.PytestExperimentalApiWarning")
    config.addinivalue_line("filterwarnings", "ignore:record_xml_attribute is incompatible:pytest.PytestWarning")
    plugin = HilPlugin(config)
    config.pluginmanager.register(plugin, HilPlugin.NAME)
    dut_plugin.register(config, plugin.options_given)  # beside pytest-embedded's `dut`: harness/dut.py says how
    if plugin.options_given:
        if not hasattr(config, "workerinput"):
            plugin.set_default_junit()
            _spread_whole_files(config)
        plugin.activate()


def _spread_whole_files(config: pytest.Config) -> None:
    """A harness run sharded with `-n N` hands out whole scenario files (`--dist loadfile`) unless `--dist`
    was given: each file's module-scoped setup (broker, TLS servers, a DHCP mode) then happens once, on one
    board."""
    given = any(arg in ("--dist", "-d") or arg.startswith("--dist=") for arg in map(str, config.invocation_params.args))
    if getattr(config.option, "dist", "no") == "load" and not given:
        config.option.dist = "loadfile"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Tear down what is left and put the signal handlers back; unregister the plugin object."""
    plugin = config.pluginmanager.get_plugin(HilPlugin.NAME)
    if isinstance(plugin, HilPlugin):
        plugin.shut_down()
        config.pluginmanager.unregister(plugin)
    dut_plugin.unregister(config)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class HilPlugin:
    """The harness in one pytest session: its run (created on first use), the per-test guard, the results."""

    NAME = "esp-smoltcp-hil-session"

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: HilSession | None = None
        self.lab_config: LabConfig | None = None
        # Sharded (pytest-xdist): the controller's run id names the one results file; each worker has its
        # own lab id (its namespaces) and writes its artifacts under <run id>/<worker>/.
        workerinput = getattr(config, "workerinput", None)
        self.worker: str | None = workerinput["workerid"] if workerinput else None
        self.run_id = (workerinput or {}).get("hil_run_id") or new_run_id()
        self.lab_id = new_run_id() if workerinput else self.run_id
        self._previous_sigterm: Any = None
        self._interrupted = False
        self._running: pytest.Item | None = None  # the test whose setup, call or teardown runs
        options = harness_options(config.pluginmanager.has_plugin("pytest_embedded"))
        self.options_given = self._given(options)
        self._refuse_foreign_options(options)
        if self.options_given:
            self._load_config()  # a bad file stops `hil run` before anything starts

    # --- options and activation ----------------------------------------------------------------------------

    def _given(self, options: dict[str, HarnessOption]) -> bool:
        """Whether the command line (or addopts) sets a harness option: then the run is on from the start."""
        argv = [str(arg) for arg in self.config.invocation_params.args]
        for dest, option in options.items():
            if any(arg == option.flag or arg.startswith(option.flag + "=") for arg in argv):
                return True
            if getattr(self.config.option, dest, option.default) != option.default:
                return True
        return False

    def _refuse_foreign_options(self, harness: dict[str, HarnessOption]) -> None:
        """An option of another board kind than the chosen one is a usage error."""
        options = self.config.option
        chosen = options.board
        for dest, option in harness.items():
            if option.owner not in (None, chosen) and getattr(options, dest, option.default) != option.default:
                raise pytest.UsageError(f"{option.flag} belongs to --board {option.owner}, not --board {chosen}")

    def _load_config(self) -> LabConfig:
        """The lab config, loaded once and checked with the chosen kind's own option checks."""
        if self.lab_config is None:
            options = self.config.option
            try:
                config = LabConfig.load(options.hil_config)
                kind = chosen_kind(options)
                kind.check_options(options, config)
                dut_plugin.check_target(options, kind.target)
            except ConfigError as exc:
                raise pytest.UsageError(str(exc)) from exc
            self.lab_config = config
        return self.lab_config

    def set_default_junit(self) -> None:
        """Every run leaves a JUnit file beside its results file unless the user chose another one."""
        if getattr(self.config.option, "xmlpath", None) is None:
            self.config.option.xmlpath = str(self.config.option.results_dir / f"{self.run_id}.junit.xml")

    def activate(self) -> HilSession:
        """The run: created when a test first uses the harness (SIGTERM then unwinds like Ctrl-C)."""
        if self.session is not None:
            return self.session
        lab_config = self._load_config()
        options = self.config.option
        record = RunRecord(options.results_dir, self.run_id, shard=self.worker)
        if getattr(options, "xmlpath", None):
            record.meta["junit"] = record.relative(Path(options.xmlpath))
        self.session = HilSession(options, lab_config, record, chosen_kind(options), lab_id=self.lab_id)
        # SIGTERM (CI cancel, `timeout`, `hil selftest`) unwinds like Ctrl-C, so the lab is torn down and the
        # test that was running is recorded as interrupted.
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        return self.session

    def shut_down(self) -> None:
        """Close the run if the session did not finish it, and restore the signal handler."""
        if self.session is not None:
            self.session.close()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    # --- hooks ---------------------------------------------------------------------------------------------

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Skip opt-in tests unless their flag was given."""
        for marker, dest, flag in OPT_IN:
            if getattr(config.option, dest):
                continue
            skip = pytest.mark.skip(reason=f"opt-in: run with {flag}")
            for item in items:
                if item.get_closest_marker(marker) is not None:
                    item.add_marker(skip)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """`--repeat N`: every test N times."""
        count = metafunc.config.option.repeat
        if count > 1:
            metafunc.fixturenames.append("hil_repeat")
            metafunc.parametrize("hil_repeat", range(1, count + 1), ids=lambda n: f"repeat{n}")

    # A HIL test is one that uses the run: a fixture of its setup takes one of the run's objects (the run, its
    # config, lab, DHCP server or board), or its fixture values include one. Recognised by identity, never by
    # fixture name, so a test with a `board` fixture of its own is not a HIL test. From that moment the test
    # counts as interrupted until a report says how it ended.

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        """Note the test being set up; once set up (or stopped), it is a HIL test if it uses the run."""
        self._running = item
        try:
            return (yield)
        finally:
            if self.session is not None and any(self.session.owns(value) for value in _fixture_values(item)):
                self._started(item)

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
        """A fixture that takes one of the run's objects makes the test being set up a HIL test, before it runs.

        So a test whose setup fails or is stopped in its own fixture is recorded (error, interrupted), even when
        the harness fixtures under it were set up by an earlier test.
        """
        session, item = self.session, self._running
        if session is None or item is None or item.nodeid in session.hil_tests:
            return
        if any(session.owns(request.getfixturevalue(name)) for name in fixturedef.argnames if name != "request"):
            self._started(item)

    def _started(self, item: pytest.Item) -> None:
        assert self.session is not None
        if item.nodeid not in self.session.hil_tests:
            self.session.test_started(item.nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        """Around each test that uses the board: the guard's before and after (harness/guard.py)."""
        session = self.session
        guard = session.guard if session is not None else None
        if session is None or guard is None or not any(value is session.board for value in _fixture_values(item)):
            return (yield)
        guard.recover()  # a board that did not come back after the last test's reset is tried once more
        guard.before(session.policy(item), session.slice_path(item.nodeid))
        error: BaseException | None = None
        try:
            result = yield
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # judged with the console below, then raised again (or explained)
            error = exc
        verdict = guard.after(error)
        session.keep_verdict(item, verdict)
        if guard.needs_reset:
            # Reset now, so that this test's teardown, module fixtures and the next test's setup find the board
            # answering; if it does not come back, the next test that uses the board says so (recover above).
            with contextlib.suppress(BoardError):
                guard.recover()
        problem = verdict.exception(error)
        if problem is not None:
            raise problem
        return result

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist controller: every worker records into this run (its id names the one results file)."""
        node.workerinput["hil_run_id"] = self.run_id

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
        """xdist worker: mark a HIL test's reports, and send its board-side results with its teardown report."""
        report = yield
        if self.worker is not None and self.session is not None and item.nodeid in self.session.hil_tests:
            report.hil_test = True  # type: ignore[attr-defined]
            if report.when == "teardown" and self.session is not None:
                report.hil_shard = self.session.shard_results(item.nodeid)  # type: ignore[attr-defined]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record outcome and duration of every phase of a HIL test (on an xdist controller: of every worker)."""
        if getattr(report, "hil_test", False) and self.worker is None:
            self.activate()  # a worker ran a HIL test: the controller's run records it
        if self.session is None:
            return
        if getattr(report, "hil_test", False) and report.nodeid not in self.session.hil_tests:
            self.session.test_started(report.nodeid)  # the run began in this test's setup (on a worker)
        shard = getattr(report, "hil_shard", None)
        if shard is not None and self.worker is None:
            self.session.merge_shard(report.nodeid, shard)
        self.session.record_report(report)
        if report.when == "teardown":
            self._running = None

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C or SIGTERM: the run is marked interrupted."""
        self._interrupted = True

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the final results file and tear the run down."""
        if self.session is not None:
            self.session.finish(self._interrupted or exitstatus == pytest.ExitCode.INTERRUPTED)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        """The summary table of scenarios and metrics."""
        if self.session is not None:
            self.session.print_summary(terminalreporter)


def _fixture_values(item: pytest.Item) -> Iterator[object]:
    """The values of the fixtures a test was set up with (so far)."""
    return iter(getattr(item, "funcargs", {}).values())


def _plugin(request: pytest.FixtureRequest) -> HilPlugin:
    plugin = request.config.pluginmanager.get_plugin(HilPlugin.NAME)
    assert isinstance(plugin, HilPlugin)
    return plugin


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hil_session(request: pytest.FixtureRequest) -> HilSession:
    """The run: config, results record, and (lazily) lab and board."""
    return _plugin(request).activate()


@pytest.fixture(scope="session")
def hil_config(hil_session: HilSession) -> LabConfig:
    """The effective lab configuration."""
    return hil_session.config


@pytest.fixture(scope="session")
def lab(hil_session: HilSession) -> Iterator[Lab]:
    """The started lab: the host side of the cable (namespace, DHCP server, peers, traffic clients)."""
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
def console(board: Board) -> ConsoleMonitor:
    """The board's console monitor."""
    return board.monitor


@pytest.fixture
def dut_ip(board: Board) -> str:
    """The DUT's IPv4 address (waits for the DHCP lease)."""
    return board.wait_for_ip()


@pytest.fixture
def dhcp_server(hil_session: HilSession, lab: Lab) -> DhcpServer:
    """The lab's DHCP server (exchanges, behaviour switches)."""
    assert hil_session.dhcp is not None  # the lab fixture started it
    return hil_session.dhcp


class MetricsRecorder:
    """Records a test's metrics into the results file and the JUnit XML properties."""

    def __init__(self, item: pytest.Item, record: RunRecord) -> None:
        self.item = item
        self.test = record.test(record_nodeid(item.nodeid))

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
