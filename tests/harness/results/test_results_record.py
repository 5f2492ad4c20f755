"""The results record knows the code it tested: commit, branch, pull request and CI job, from CI variables or git."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.results.document import validate_document
from harness.results.record import RunRecord, source_info


def test_github_pull_request_run(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"sha": "b" * 40}}}))
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "org/repo",
        "GITHUB_REF": "refs/pull/42/merge",
        "GITHUB_REF_NAME": "42/merge",
        "GITHUB_HEAD_REF": "fix-tcp",
        "GITHUB_BASE_REF": "main",
        "GITHUB_SHA": "a" * 40,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_RUN_ID": "99",
        "GITHUB_RUN_ATTEMPT": "2",
    }
    assert source_info(env) == {
        "ci": "github",
        "commit": "b" * 40,  # the PR's head, not the merge commit GitHub made
        "branch": "fix-tcp",
        "base_branch": "main",
        "pr": "42",
        "repository": "https://github.com/org/repo",
        "commit_url": f"https://github.com/org/repo/commit/{'b' * 40}",
        "ci_job_url": "https://github.com/org/repo/actions/runs/99/attempts/2",
    }
    push = {**env, "GITHUB_REF": "refs/heads/main", "GITHUB_REF_NAME": "main", "GITHUB_HEAD_REF": ""}
    del push["GITHUB_EVENT_PATH"], push["GITHUB_BASE_REF"]
    info = source_info(push)
    assert (info["branch"], info["pr"], info["commit"], info["base_branch"]) == ("main", None, "a" * 40, None)


def test_gitlab_merge_request_run() -> None:
    env = {
        "GITLAB_CI": "true",
        "CI_PROJECT_URL": "https://gitlab.example/grp/proj",
        "CI_COMMIT_SHA": "c" * 40,
        "CI_COMMIT_REF_NAME": "feature",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_IID": "5",
        "CI_JOB_URL": "https://gitlab.example/grp/proj/-/jobs/7",
    }
    info = source_info(env)
    assert info["branch"] == "feature" and info["base_branch"] == "main" and info["pr"] == "5"
    assert info["commit_url"] == f"https://gitlab.example/grp/proj/-/commit/{'c' * 40}"
    assert info["ci_job_url"] == "https://gitlab.example/grp/proj/-/jobs/7"


def test_git_checkout_outside_ci(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
            cwd=tmp_path, check=True, capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip

    git("init", "-q", "-b", "trunk")
    git("commit", "-q", "--allow-empty", "-m", "x")
    info = source_info({}, cwd=tmp_path)
    assert info["commit"] == git("rev-parse", "HEAD") and info["branch"] == "trunk" and info["ci"] is None
    git("checkout", "-q", "--detach")
    assert source_info({}, cwd=tmp_path)["branch"] is None


def test_outside_a_checkout_nothing_is_known(tmp_path: Path) -> None:
    assert source_info({}, cwd=tmp_path)["commit"] is None


def test_a_new_record_is_a_valid_results_file(tmp_path: Path) -> None:
    record = RunRecord(tmp_path, "run-x")
    record.test("t::a").outcome = "passed"
    doc = json.loads(record.save(finished=True).read_text())
    assert validate_document(doc) is doc
    assert doc["interrupted"] is False and set(doc["source"]) >= {"commit", "branch", "pr", "ci_job_url"}
