"""Helpers for tests of the harness itself and of user scenarios: root checks, leftovers, `hil run`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.lab.netns import NETNS_DIR
from harness.paths import CHECKOUT_ROOT

REPO = CHECKOUT_ROOT

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces (run as root or in CI)")


def hil_namespaces() -> set[str]:
    """Names of all `hil-` namespaces on the machine now."""
    return {p.name for p in NETNS_DIR.iterdir() if p.name.startswith("hil-")} if NETNS_DIR.is_dir() else set()


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (to prove a run left nothing behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def hil_command(*args: str, results_dir: Path) -> list[str]:
    """`hil run` with a private results directory and no cache writes into the repo."""
    command = [sys.executable, "-m", "harness.cli", "run", "--results-dir", str(results_dir)]
    return [*command, "-p", "no:cacheprovider", *args]


def run_hil(*args: str, results_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `hil run ...` to completion and return its output."""
    return subprocess.run(hil_command(*args, results_dir=results_dir), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll ``condition`` (an external state with no event to wait on) until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
