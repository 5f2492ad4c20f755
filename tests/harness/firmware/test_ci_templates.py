"""The CI templates are valid workflow files (offline schema check) and keep the lab safe."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.harness.firmware.conftest import REPO

GITHUB = sorted((REPO / "ci" / "workflows").glob("*.yml"))
GITLAB = REPO / "ci" / "gitlab" / "hil.gitlab-ci.yml"


@pytest.mark.parametrize(
    ("schema", "path"),
    [("vendor.github-workflows", path) for path in GITHUB] + [("vendor.gitlab-ci", GITLAB)],
    ids=lambda value: value.name if hasattr(value, "name") else value,
)
def test_template_matches_its_ci_schema(schema: str, path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _github(name: str) -> dict:
    data = yaml.safe_load((REPO / "ci" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_lab_workflow_never_runs_pull_request_code_and_grants_per_job() -> None:
    workflow = _github("hil-self-hosted.yml")
    assert not {"pull_request", "pull_request_target"} & set(workflow["on"]), "PR code would run as root on the lab"
    assert workflow["permissions"] == {}, "permissions belong to each job, not the workflow"
    assert workflow["jobs"]["hil"]["permissions"] == {"contents": "read"}
    assert set(workflow["jobs"]["pages"]["permissions"]) == {"pages", "id-token"}


def test_lab_templates_build_for_the_boards_chip_revision() -> None:
    text = (REPO / "ci" / "workflows" / "hil-self-hosted.yml").read_text() + GITLAB.read_text()
    assert text.count('--chip-rev "$CHIP_REV"') >= 4, "build and run must both follow the board's revision"
    assert 'CHIP_REV: "v1.0"' in GITLAB.read_text()


def test_gitlab_lab_jobs_skip_merge_requests_and_virtual_job_asks_for_privilege() -> None:
    pipeline = yaml.safe_load(GITLAB.read_text())
    never = pipeline[".lab-only"]["rules"][0]
    assert never == {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"', "when": "never"}
    for job in ("build-firmware", "hil-esp32p4", "gate"):
        assert pipeline[job]["extends"] == ".lab-only"
    assert pipeline["hil-virtual"]["tags"] == ["privileged"]
    assert "privileged" in GITLAB.read_text().split("hil-virtual:")[0].rsplit("\n\n", 1)[-1]


def test_virtual_jobs_run_where_their_packages_come_from() -> None:
    workflow = _github("hil-virtual.yml")
    job = workflow["jobs"]["virtual"]
    assert job["container"]["image"] == "debian:12", "ci/install.sh installs Debian 12 packages (Chromium included)"
    assert "--privileged" in job["container"]["options"]


def test_farm_workflow_fans_out_over_boards_and_gates_every_shard() -> None:
    workflow = _github("hil-farm.yml")
    assert not {"pull_request", "pull_request_target"} & set(workflow["on"]), "PR code would run as root on the lab"
    shard, gate = workflow["jobs"]["shard"], workflow["jobs"]["gate"]
    boards = shard["strategy"]["matrix"]["board"]
    assert len({board["name"] for board in boards}) == len(boards) >= 2 and not shard["strategy"]["fail-fast"]
    run = next(step["run"] for step in shard["steps"] if "hil run" in step.get("run", ""))
    assert "--lg-tags chip_rev=${{ matrix.board.chip_rev }}" in run and "host=$(hostname)" in run
    assert any("hil results import" in step.get("run", "") for step in shard["steps"])
    assert gate["needs"] == "shard" and gate["if"] == "always()"
    script = gate["steps"][-1]["run"]
    assert "hil gate" in script and "for run in shards/*/*.json" in script
