"""The whole `--board esp32p4` path (esptool flashing, DTR/RTS reset, NIC lab, scenarios) against a virtual board.

`hil virtual start --external-lab` plays a P4-Nano on a desk: an RFC2217 serial port whose DTR/RTS drive
the auto-reset circuit, and the far end of its cable (`hv<id>`) left in the root namespace like a USB NIC.
The suite then runs exactly as on hardware: it flashes a build with esptool, resets over DTR/RTS, moves
the NIC into its own namespace, serves DHCP and runs scenarios.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VIRTUAL_HELPERS = Path(__file__).resolve().parent.parent / "virtual"
sys.path.insert(0, str(VIRTUAL_HELPERS))

from appimage import (  # noqa: E402
    AppDescription,
    build_app_image,
    build_bootloader_image,
    build_partition_table,
    have_cross_compiler,
)

from harness.boards.virtual.standalone import state_dir  # noqa: E402
from harness.testing import REPO, hil_namespaces  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not have_cross_compiler(), reason="needs gcc-riscv64-linux-gnu for the test app image"),
]
DESC = AppDescription(project_name="hil_app_ci", version="v0.0.1-ci", idf_ver="v5.5.1")
SIZE_SAMPLE = REPO / "tests" / "harness" / "firmware" / "data" / "size_components_smoltcp.json"
EXAMPLE = REPO / "tests" / "examples" / "test_idf_example.py"


def _virtual(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "harness.cli", "virtual", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}


def _build_dir(work: Path) -> Path:
    build = work / "build"
    build.mkdir()
    files = {
        "0x2000": build_bootloader_image(work),
        "0x8000": build_partition_table(work / "partition-table.bin"),
        "0x10000": build_app_image(work, desc=DESC).image,
    }
    for path in files.values():
        (build / path.name).write_bytes(path.read_bytes())
    (build / "flasher_args.json").write_text(json.dumps({
        "write_flash_args": ["--flash-mode", "dio", "--flash-size", "16MB", "--flash-freq", "80m"],
        "flash_settings": {"flash_mode": "dio", "flash_size": "16MB", "flash_freq": "80m"},
        "flash_files": {offset: path.name for offset, path in files.items()},
        "extra_esptool_args": {"after": "hard_reset", "before": "default_reset", "stub": True, "chip": "esp32p4"},
    }))  # fmt: skip
    # what `hil build` saves beside the image (esp-idf-size's per-archive JSON): the boot scenario records it
    shutil.copy(SIZE_SAMPLE, build / "size-components.json")
    return build


def test_esp32p4_board_path_runs_the_suite_on_a_virtual_board(tmp_path: Path) -> None:
    name = f"ci{os.getpid()}"
    info = _virtual("start", "--name", name, "--external-lab")
    try:
        build = _build_dir(tmp_path)
        results = tmp_path / "results"
        # The ported ESP-IDF example runs beside the scenarios; the port comes from $ESPPORT, as ESP-IDF's CI sets it.
        command = [
            sys.executable, "-m", "pytest", str(REPO / "tests" / "scenarios"), str(EXAMPLE),
            "-k", "test_boot or test_ping or test_idf_example", "--board", "esp32p4", "--eth-iface", info["host_if"],
            "--build-dir", str(build), "--results-dir", str(results), "-p", "no:cacheprovider",
        ]  # fmt: skip
        env = {**os.environ, "ESPPORT": info["rfc2217"]}
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400, check=False, env=env)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    finally:
        _virtual("stop", "--name", name)
        shutil.rmtree(state_dir(name), ignore_errors=True)  # a named board keeps its state; a test's does not
    (record,) = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert record["board"]["kind"] == "esp32p4"
    assert record["firmware"]["app"] == DESC.project_name and record["firmware"]["app_version"] == DESC.version
    assert record["link"]["kind"] == "nic"
    outcomes = {t["nodeid"]: (t["outcome"], t["message"]) for t in record["tests"]}
    examples = {nodeid.split("::")[1]: outcome for nodeid, (outcome, _) in outcomes.items() if "examples" in nodeid}
    assert examples == {"test_idf_example_eth_basic[esp32]": "skipped", "test_idf_example_eth_basic[esp32p4]": "passed",
                        "test_idf_example_console": "passed"}  # fmt: skip
    # ping[1472] is an expected failure on the smoltcp the board reports (docs/scenarios.md, known behaviours).
    scenarios = {nodeid.rsplit("::", 1)[-1]: result for nodeid, result in outcomes.items() if "scenarios" in nodeid}
    assert len(outcomes) == 9 and scenarios.pop("test_ping[1472]")[1].startswith("xfail: smoltcp 0.12.0"), outcomes
    assert {outcome for outcome, _ in scenarios.values()} == {"passed"}, outcomes
    budget = next(t for t in record["tests"] if t["nodeid"].endswith("test_boot_memory_budget"))
    footprint = {m["name"]: m["value"] for m in budget["metrics"] if m["name"].startswith("footprint_")}
    assert footprint["footprint_stack_flash_code_bytes"] == 85248  # the sample's stack archives, flashed this run
    assert (results / record["run_id"] / "esptool-flash.log").read_text().count("Hash of data verified") == 3
    ours = {info["dut_ns"], f"hil-{record['run_id']}-host"}
    assert not ours & hil_namespaces(), f"namespaces left behind: {ours & hil_namespaces()}"
