"""`hil run` and `hil test`: pytest on the HIL suite (or on the project's own tests) with the harness's settings.

Both replace this process by pytest. pytest runs with the project root as its rootdir and the project's
pytest settings (`pyproject.toml`), so test ids, and with them the results history, are the same from a
checkout and from an installed wheel, whatever the current directory. Those settings leave pytest-embedded's
plugin out (`-p no:pytest_embedded`): the harness owns its options and serves `dut` itself.
Paths on the command line replace the default tests: `hil run tests/x.py` runs exactly that file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.errors import ConfigError
from harness.paths import BUNDLED_ROOT, checkout_root, project_root, scenarios_dir

HELP_GROUP = "esp-smoltcp HIL harness:"


def pytest_argv(default_tests: Path, extra: Sequence[str] = ()) -> list[str]:
    """The pytest command line of `hil run`/`hil test`: ``default_tests`` unless ``extra`` names paths."""
    root = project_root()
    argv = [
        sys.executable, "-m", "pytest", "--rootdir", str(rootdir(root, extra)), "-c", str(root / "pyproject.toml"),
        f"--hil-default-tests={default_tests}",
    ]  # fmt: skip
    if root == BUNDLED_ROOT:
        argv += ["-p", "no:cacheprovider"]  # the installed package is no place for pytest's cache
    return [*argv, *extra]


def rootdir(root: Path, extra: Sequence[str]) -> Path:
    """pytest's rootdir: the project's, unless the arguments name test files outside it; then their directory.

    pytest gives a test file that lies outside its rootdir and is named on the command line a node id without the
    file's name (`::test_x`): its tests would be recorded, and collide, under that. A `.py` argument that is an
    existing file is taken for a test file (option values are directories, ELF and TOML files, not Python files).
    """
    outside = []
    for token in extra:
        path = Path(token.split("::", 1)[0])
        if token.startswith("-") or path.suffix != ".py" or not path.is_file():
            continue
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            outside.append(str(resolved.parent))
    return Path(os.path.commonpath(outside)) if outside else root


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil run` and `hil test` to the `hil` command."""
    parser = subparsers.add_parser(
        "run",
        add_help=False,
        help="run the HIL suite (tests/scenarios); other arguments go to pytest",
        description="Run the HIL scenarios against a board (default: the virtual ESP32-P4). Arguments go to "
        "pytest, e.g. `hil run -k ping --board esp32p4`; paths replace the suite (`hil run my_test.py`).",
    )
    parser.set_defaults(func=run, accepts_extra=True)
    tests = subparsers.add_parser(
        "test",
        add_help=False,
        help="run the project's tests (harness self-tests and the suite on the virtual board); needs a checkout",
        description="Run everything under tests/ of the checkout. Arguments go to pytest; paths replace tests/.",
    )
    tests.set_defaults(func=run_tests, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    """Replace this process by pytest on the scenario suite (or print the harness's options for --help)."""
    return _exec_pytest(args, scenarios_dir())


def run_tests(args: argparse.Namespace) -> int:
    """Replace this process by pytest on the checkout's tests/."""
    checkout = checkout_root()
    if checkout is None:
        raise ConfigError("`hil test` runs the project's own tests, which only a checkout has; use `hil run`")
    return _exec_pytest(args, checkout / "tests")


def _exec_pytest(args: argparse.Namespace, default_tests: Path) -> int:
    argv = pytest_argv(default_tests, args.extra)
    if "-h" in args.extra or "--help" in args.extra:
        print(harness_help(argv, args.command))
        return 0
    # exec (rather than a child process) lets Ctrl-C and SIGTERM reach pytest alone, so its teardown runs
    # to the end instead of being cut short by a parent that dies first.
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover - execv does not return


def harness_help(argv: Sequence[str], command: str) -> str:
    """`hil run --help`: the harness's options (and the suite's), as pytest documents them."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = done.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == HELP_GROUP), None)
    if start is None:
        return done.stdout + done.stderr
    end = start + 1
    while end < len(lines) and (lines[end].startswith(" ") or not lines[end].strip()):
        end += 1
    group = "\n".join(lines[start:end]).rstrip()
    return (
        f"usage: hil {command} [OPTIONS] [PATH ...]\n\n"
        "Runs pytest with the harness; PATHs replace the default tests (`-k NAME` selects among them).\n\n"
        f"{group}\n\nEvery other pytest option works too (`python -m pytest --help` lists them)."
    )
