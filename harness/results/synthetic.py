"""Synthetic results histories in the results-file format (calibration benchmark, scale benchmark, tests).

The noise figures below were measured on the virtual lab (``bench/lab_noise.py``: 10 x iperf3 3 s TCP and
10 x 50-probe ping over the 100BASE-TX-shaped veth); see docs/results.md.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

# Coefficient of variation (percent) measured on the virtual lab, 2026-11 (bench/lab_noise.py, n=10).
LAB_NOISE_CV_PCT = {"iperf3_tcp_mbps": 0.215, "ping_rtt_p50_ms": 3.345, "ping_rtt_avg_ms": 9.545}


@dataclass(frozen=True)
class MetricSpec:
    """A metric of a synthetic test: its true mean and Gaussian noise as a coefficient of variation."""

    nodeid: str
    name: str
    unit: str
    better: str
    mean: float
    cv_pct: float


THROUGHPUT = MetricSpec(
    "tests/scenarios/test_throughput.py::test_tcp_rx",
    "iperf3_tcp_mbps",
    "Mbit/s",
    "higher",
    93.8,
    LAB_NOISE_CV_PCT["iperf3_tcp_mbps"],
)
RTT = MetricSpec(
    "tests/scenarios/test_ping.py::test_ping[56]",
    "ping_rtt_p50_ms",
    "ms",
    "lower",
    0.053,
    LAB_NOISE_CV_PCT["ping_rtt_p50_ms"],
)


def make_document(
    run_id: str,
    started: datetime,
    tests: list[dict[str, Any]],
    *,
    board_id: str = "02:00:00:12:34:56",
    board_kind: str = "virtual",
    fingerprint: str = "cfg-a",
    branch: str = "main",
    base_branch: str | None = None,
) -> dict[str, Any]:
    """A results document (docs/ARCHITECTURE.md) with the given tests, on a made-up commit of ``branch``."""
    commit = hashlib.sha1(f"{branch}/{run_id}".encode()).hexdigest()
    return {
        "schema": 1,
        "run_id": run_id,
        "started": started.isoformat(timespec="milliseconds"),
        "finished": (started + timedelta(minutes=2)).isoformat(timespec="milliseconds"),
        "harness_version": "0.1.0",
        "host": "synthetic",
        "board": {"kind": board_kind, "id": board_id, "mac": board_id},
        "firmware": {
            "app": "hil_app",
            "app_version": "0.1.0",
            "idf": "v5.5",
            "elf_sha256": "0" * 64,
            "components": {"esp_smoltcp": "0.2.0"},
            "chip": "esp32p4",
            "chip_rev": "v1.0",
        },
        "link": {"kind": "veth-tbf", "rate_mbps": 100, "mtu": 1500, "duplex": "full", "goodput_ceiling_mbps": 94.15},
        "config": {"fingerprint": fingerprint},
        "source": {
            "commit": commit,
            "branch": branch,
            "base_branch": base_branch,
            "pr": "7" if base_branch else None,
            "ci": "github",
            "commit_url": f"https://github.com/example/esp-smoltcp-hil/commit/{commit}",
            "ci_job_url": f"https://github.com/example/esp-smoltcp-hil/actions/runs/{1000 + len(run_id)}",
        },
        "console_log": f"{run_id}/console.log",
        "tests": tests,
    }


def synthetic_history(
    specs: Sequence[MetricSpec],
    runs: int,
    *,
    seed: int = 0,
    last_run_change_pct: dict[str, float] | None = None,
    start: datetime | None = None,
    run_prefix: str = "run",
    **document_options: Any,
) -> list[dict[str, Any]]:
    """``runs`` results documents, oldest first; the newest run's metrics shifted by ``last_run_change_pct``."""
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 1, tzinfo=timezone.utc)
    changes = last_run_change_pct or {}
    documents = []
    for i in range(runs):
        tests: dict[str, dict[str, Any]] = {}
        for spec in specs:
            factor = 1 + changes.get(spec.name, 0.0) / 100 if i == runs - 1 else 1.0
            value = rng.gauss(spec.mean * factor, spec.mean * spec.cv_pct / 100)
            test = tests.setdefault(
                spec.nodeid,
                {
                    "nodeid": spec.nodeid,
                    "outcome": "passed",
                    "duration_s": 3.2,
                    "console_slice": "",
                    "message": "",
                    "events": [],
                    "counters": {"rx_frames": 1000 + i, "frame_pool_drops": 0},
                    "metrics": [],
                },
            )
            test["metrics"].append(
                {"name": spec.name, "value": round(value, 6), "unit": spec.unit, "better": spec.better}
            )
        stamp = start + timedelta(hours=i)
        documents.append(make_document(f"{run_prefix}-{i:04d}", stamp, list(tests.values()), **document_options))
    return documents
