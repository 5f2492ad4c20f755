"""The per-run results file `<results-dir>/<run-id>.json` (format: docs/ARCHITECTURE.md).

It is rewritten atomically after every test, so a run that is interrupted or crashes keeps
everything recorded up to that point.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import __version__

SCHEMA_VERSION = 1
BETTER = ("higher", "lower")


@dataclass
class Metric:
    """One measured figure with its unit and the direction that counts as better."""

    name: str
    value: float
    unit: str
    better: str
    ceiling: float | None = None

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ValueError(f"metric {self.name}: better must be 'higher' or 'lower', not {self.better!r}")
        if not isinstance(self.value, (int, float)):
            raise ValueError(f"metric {self.name}: value must be a number, not {type(self.value).__name__}")

    def as_dict(self) -> dict[str, Any]:
        """JSON form; `ceiling` only when known."""
        data = asdict(self)
        if self.ceiling is None:
            del data["ceiling"]
        return data


@dataclass
class TestRecord:
    """What one test produced."""

    nodeid: str
    outcome: str = "passed"
    duration_s: float = 0.0
    message: str = ""
    console_slice: str | None = None
    metrics: list[Metric] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "duration_s": round(self.duration_s, 3),
            "message": self.message,
            "console_slice": self.console_slice,
            "counters": self.counters,
            "events": self.events,
            "metrics": [metric.as_dict() for metric in self.metrics],
        }


def utc_now() -> str:
    """ISO 8601 time with milliseconds and UTC offset."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RunRecord:
    """The results of one run, kept on disk as they accumulate."""

    def __init__(self, results_dir: Path, run_id: str) -> None:
        self.results_dir = results_dir
        self.run_id = run_id
        self.path = results_dir / f"{run_id}.json"
        self.artifacts_dir = results_dir / run_id
        self.meta: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "started": utc_now(),
            "finished": None,
            "harness_version": __version__,
            "host": socket.gethostname(),
            "board": {},
            "firmware": {},
            "link": {},
            "config": {},
            "console_log": None,
        }
        self.tests: dict[str, TestRecord] = {}

    def test(self, nodeid: str) -> TestRecord:
        """The record of a test, created on first use."""
        if nodeid not in self.tests:
            self.tests[nodeid] = TestRecord(nodeid)
        return self.tests[nodeid]

    def relative(self, path: Path) -> str:
        """An artifact path as stored in the file: relative to the results directory."""
        try:
            return str(path.resolve().relative_to(self.results_dir.resolve()))
        except ValueError:
            return str(path)

    def as_dict(self) -> dict[str, Any]:
        """The whole file's content."""
        return {**self.meta, "tests": [test.as_dict() for test in self.tests.values()]}

    def save(self, finished: bool = False) -> Path:
        """Write the file atomically (a reader never sees half a file)."""
        if finished:
            self.meta["finished"] = utc_now()
        self.results_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.run_id}.", suffix=".json", dir=self.results_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.as_dict(), out, indent=2)
            out.write("\n")
        os.replace(tmp, self.path)
        return self.path
