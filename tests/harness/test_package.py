"""The installable package: what the wheel carries, and a wheel that works outside the checkout."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.testing import REPO, needs_root

PIP_TIMEOUT_S = 600


def _setup_module():  # setup.py, without running setup()
    spec = importlib.util.spec_from_file_location("hil_setup", REPO / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_packaging_rule_takes_every_source_and_no_build_output(tmp_path: Path) -> None:
    sources = [
        "firmware/host/Cargo.toml", "firmware/host/Cargo.lock", "firmware/host/src/lib.rs",
        "firmware/host/runtime/poll.c", "firmware/host/runtime/include/hil_host.h", "firmware/services/src/echo.c",
        "firmware/certs/lab_server.key", "firmware/PROTOCOL.md", "tests/scenarios/test_ping.py",
        "tests/scenarios/conftest.py",
    ]  # fmt: skip
    outputs = [
        "firmware/host/target/debug/libhost.a", "firmware/hil_app/build/hil_app.bin", "firmware/hil_app/sdkconfig",
        "firmware/hil_app/managed_components/espressif__mqtt/x.c", "tests/scenarios/__pycache__/test_ping.pyc",
    ]  # fmt: skip
    for name in (*sources, *outputs, "pyproject.toml", "tests/harness/test_lab.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    packaged = {str(path) for path in _setup_module().project_files(tmp_path)}
    assert packaged == {*sources, "pyproject.toml"}


@needs_root
def test_a_wheel_installed_outside_the_checkout_runs_the_suite_from_an_empty_directory(tmp_path: Path) -> None:
    wheels, venv, empty = tmp_path / "wheels", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                   check=True, timeout=PIP_TIMEOUT_S, cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"harness/_project/tests/scenarios/test_ping.py", "harness/_project/firmware/services/src/echo.c",
            "harness/_project/firmware/certs/hil_test_ca.crt", "harness/_project/pyproject.toml"} <= names  # fmt: skip
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-c",
                    str(REPO / "ci" / "constraints.txt"), str(wheel)], check=True, timeout=PIP_TIMEOUT_S)  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(venv / "bin" / "hil"), "run", "-k", "ping"], cwd=empty, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    (results,) = (empty / "results").glob("*.json")
    record = json.loads(results.read_text())
    nodeids = {test["nodeid"] for test in record["tests"]}
    assert "tests/scenarios/test_ping.py::test_ping[56]" in nodeids, "node ids differ from a checkout's"
    outcomes = {test["nodeid"].split("::")[-1]: test["outcome"] for test in record["tests"]}
    assert outcomes.pop("test_ping[1472]") == "skipped", "a known smoltcp behaviour (docs/scenarios.md)"
    assert set(outcomes.values()) == {"passed"}, outcomes
    assert sorted(path.name for path in empty.iterdir()) == ["results"]


def test_hil_test_needs_a_checkout_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import run_command
    from harness.cli import main

    monkeypatch.setattr(run_command, "checkout_root", lambda: None)
    assert main(["test", "-k", "nothing"]) == 2
