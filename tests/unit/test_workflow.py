"""The team's pipeline, .github/workflows/build-image.yml: actionlint accepts it (with
shellcheck on its run: steps when shellcheck is installed), and it keeps the shape the issue
asks for. tests/e2e/test_workflow.py runs its steps for real."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "build-image.yml"


def actionlint() -> str:
    beside = Path(sys.executable).parent / "actionlint"  # the venv's, from the test extras
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    assert found, "actionlint is missing: make venv installs it (setup.cfg [test])"
    return found


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def test_actionlint_accepts_the_workflow():
    done = subprocess.run([actionlint(), "-no-color", str(WORKFLOW)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_would_catch_a_mistake(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("steps.build.outputs.digest",
                                                   "steps.biuld.outputs.digest", 1))
    done = subprocess.run([actionlint(), "-no-color", str(broken)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "biuld" in done.stdout


def test_triggers_and_jobs(workflow):
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(on) == {"pull_request", "push"}
    assert on["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert set(workflow["jobs"]) == {"check", "dev", "prod"}


def test_only_the_push_jobs_get_aws_credentials_and_push(workflow):
    jobs = workflow["jobs"]
    check = jobs["check"]
    assert "permissions" not in check and workflow["permissions"] == {"contents": "read"}
    assert not any("configure-aws-credentials" in step.get("uses", "") for step in check["steps"])
    assert not any("--push" in step.get("run", "") or "push-" in step.get("run", "")
                   for step in check["steps"])
    for name, target in (("dev", "make push-dev"), ("prod", "make push-prod")):
        job = jobs[name]
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
        aws = [step for step in job["steps"] if "configure-aws-credentials" in step.get("uses", "")]
        assert len(aws) == 1 and set(aws[0]["with"]) == {"role-to-assume", "aws-region"}
        build = next(step for step in job["steps"] if step.get("id") == "build")
        assert target in build["run"] and "--ci-tags" in build["run"] and "--scan" in build["run"]
        pin = next(step for step in job["steps"] if step.get("id") == "pin")
        assert pin["env"]["DIGEST"] == "${{ steps.build.outputs.digest }}"
        assert job["outputs"]["image"] == "${{ steps.pin.outputs.image }}"
    assert jobs["prod"]["steps"][-3]["env"]["VERSION"] == "${{ github.ref_name }}"


def test_no_expression_is_pasted_into_a_script(workflow):
    """${{ }} in run: is script injection (a branch name is attacker-controlled): values come
    in through env:."""
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step.get("name")
