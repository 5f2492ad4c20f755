"""The per-run results file `<results-dir>/<run-id>.json` (format: docs/ARCHITECTURE.md).

It is rewritten atomically after every test, so a run that is interrupted or crashes keeps
everything recorded up to that point. It says which code was tested (``source``: commit, branch,
pull request, CI job; from GitHub Actions or GitLab CI variables, else from git), so history can be
kept per branch and a regression named by its commit.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
from collections.abc import Mapping
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
    board: str | None = None  # the id of the board the test ran on (a sharded run has several)

    def as_dict(self) -> dict[str, Any]:
        """JSON form; `board` only when the test ran on a board."""
        data = {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "duration_s": round(self.duration_s, 3),
            "message": self.message,
            "console_slice": self.console_slice,
            "counters": self.counters,
            "events": self.events,
            "metrics": [metric.as_dict() for metric in self.metrics],
        }
        if self.board is not None:
            data["board"] = self.board
        return data

    def take_board_results(self, data: dict[str, Any]) -> None:
        """Adopt what the board side found (a worker's `as_dict()`): slice, counters, events, metrics, board."""
        self.console_slice = data.get("console_slice")
        self.counters = dict(data.get("counters") or {})
        self.events = list(data.get("events") or [])
        self.metrics = [Metric(**metric) for metric in data.get("metrics") or []]
        self.board = data.get("board")


GIT_TIMEOUT_S = 10.0
_PULL_REF = re.compile(r"^refs/pull/(\d+)/")


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None


def _github_head_sha(env: Mapping[str, str]) -> str | None:
    """A pull request's head commit (GITHUB_SHA is the merge commit GitHub made for the run)."""
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
        sha = event["pull_request"]["head"]["sha"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sha if isinstance(sha, str) else None


def source_info(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict[str, str | None]:
    """Which code a run tested: commit, branch, pull request, CI job and links (GitHub, GitLab, else git)."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repository = env.get("GITHUB_REPOSITORY", "")
        pull = _PULL_REF.match(env.get("GITHUB_REF", ""))
        commit = _github_head_sha(env) or env.get("GITHUB_SHA")
        run = env.get("GITHUB_RUN_ID")
        attempt = env.get("GITHUB_RUN_ATTEMPT")
        return {
            "ci": "github",
            "commit": commit,
            "branch": env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME"),
            "base_branch": env.get("GITHUB_BASE_REF") or None,
            "pr": pull[1] if pull else None,
            "repository": f"{server}/{repository}" if repository else None,
            "commit_url": f"{server}/{repository}/commit/{commit}" if repository and commit else None,
            "ci_job_url": (
                f"{server}/{repository}/actions/runs/{run}" + (f"/attempts/{attempt}" if attempt else "")
                if repository and run
                else None
            ),
        }
    if env.get("GITLAB_CI") == "true":
        project = env.get("CI_PROJECT_URL")
        commit = env.get("CI_COMMIT_SHA")
        return {
            "ci": "gitlab",
            "commit": commit,
            "branch": env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_REF_NAME"),
            "base_branch": env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME"),
            "pr": env.get("CI_MERGE_REQUEST_IID"),
            "repository": project,
            "commit_url": f"{project}/-/commit/{commit}" if project and commit else None,
            "ci_job_url": env.get("CI_JOB_URL"),
        }
    branch = _git("rev-parse", "--abbrev-ref", "HEAD", cwd=cwd)
    return {
        "ci": None,
        "commit": _git("rev-parse", "HEAD", cwd=cwd),
        "branch": None if branch == "HEAD" else branch,  # detached: no branch to keep history for
        "base_branch": None,
        "pr": None,
        "repository": None,
        "commit_url": None,
        "ci_job_url": None,
    }


def utc_now() -> str:
    """ISO 8601 time with milliseconds and UTC offset."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RunRecord:
    """The results of one run, kept on disk as they accumulate.

    Args:
        results_dir: where `<run_id>.json` and the artifacts go.
        run_id: the run.
        shard: the pytest-xdist worker this record belongs to, in a sharded run: its artifacts go to
            `<run_id>/<shard>/` and it writes no file; its tests reach the run's one file through the
            controller (`HilSession.merge_shard`).
    """

    def __init__(self, results_dir: Path, run_id: str, shard: str | None = None) -> None:
        self.results_dir = results_dir
        self.run_id = run_id
        self.shard = shard
        self.path = results_dir / f"{run_id}.json"
        self.artifacts_dir = results_dir / run_id / shard if shard else results_dir / run_id
        self.meta: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "started": utc_now(),
            "finished": None,
            "harness_version": __version__,
            "host": socket.gethostname(),
            "interrupted": False,
            "source": source_info(),
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
        """Write the file atomically (a reader never sees half a file); a shard writes nothing."""
        if finished:
            self.meta["finished"] = utc_now()
        if self.shard:
            return self.path
        self.results_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.run_id}.", suffix=".json", dir=self.results_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.as_dict(), out, indent=2)
            out.write("\n")
        os.replace(tmp, self.path)
        return self.path
