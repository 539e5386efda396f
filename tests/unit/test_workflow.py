"""The team's pipeline, .github/workflows/build-image.yml: actionlint accepts it (with
shellcheck on its run: steps when shellcheck is installed), and it keeps the shape the issue
asks for. tests/e2e/test_workflow.py runs its steps for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fakes import REPO

WORKFLOW = REPO / ".github" / "workflows" / "build-image.yml"


def actionlint() -> str:
    beside = Path(sys.executable).parent / "actionlint"  # the venv's, from the test extras
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    assert found, "actionlint is missing: make venv installs it (setup.cfg [test])"
    return found


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def test_actionlint_accepts_the_workflow():
    done = subprocess.run(
        [actionlint(), "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_would_catch_a_mistake(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        WORKFLOW.read_text().replace("steps.build.outputs.digest", "steps.biuld.outputs.digest", 1)
    )
    done = subprocess.run(
        [actionlint(), "-no-color", str(broken)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "biuld" in done.stdout


def test_triggers_and_jobs(workflow):
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(on) == {"pull_request", "push"}
    assert on["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert set(workflow["jobs"]) == {"check", "dev", "prod"}


def step(job: dict, step_id: str) -> dict:
    return next(s for s in job["steps"] if s.get("id") == step_id)


def test_only_the_push_jobs_get_aws_credentials_and_push(workflow):
    jobs = workflow["jobs"]
    check = jobs["check"]
    assert "permissions" not in check and workflow["permissions"] == {"contents": "read"}
    assert not any("configure-aws-credentials" in step.get("uses", "") for step in check["steps"])
    assert not any(
        "--push" in step.get("run", "") or "push-" in step.get("run", "") for step in check["steps"]
    )
    for name, writer in (("dev", "build"), ("prod", "promote")):
        job = jobs[name]
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
        aws = [step for step in job["steps"] if "configure-aws-credentials" in step.get("uses", "")]
        assert len(aws) == 1 and set(aws[0]["with"]) == {"role-to-assume", "aws-region"}
        pin = step(job, "pin")
        assert pin["env"]["DIGEST"] == f"${{{{ steps.{writer}.outputs.digest }}}}"
        assert job["outputs"]["image"] == "${{ steps.pin.outputs.image }}"
    build = step(jobs["dev"], "build")["run"]
    assert "make push-dev" in build and "--ci-tags" in build and "--scan" in build


def test_a_version_tag_promotes_the_dev_image_of_its_commit_and_builds_nothing(workflow):
    """Issue 24: the prod job ships the digest the dev job tested and scanned, through the
    gate, by promote; no build, no push, no scanner of its own."""
    job = workflow["jobs"]["prod"]
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert not re.search(r"make (build|push|prod-ready|smoke)|--push|docker (buildx )?build", runs)
    assert not any("setup-trivy" in s.get("uses", "") for s in job["steps"])
    source = step(job, "source")["run"]
    assert "git rev-parse --short=7 'HEAD^{commit}'" in source
    assert "image=${ECR_REGISTRY_URI}:git-${sha}" in source
    promote = step(job, "promote")
    assert promote["env"] == {
        "FROM": "${{ steps.source.outputs.image }}",
        "VERSION": "${{ github.ref_name }}",
    }
    command = re.search(r"make promote-prod .*?\"\s*\\\n\s*\|\| status=\$\?", promote["run"], re.S)[
        0
    ]
    assert 'FROM="$FROM"' in command and 'VERSION="$VERSION"' in command
    assert 'ECR_URI="$ECR_REGISTRY_URI"' in command
    args = shlex.split(re.search(r'ARGS="([^"]*)"', command)[1])
    assert args == [
        "--semver-tags",
        "--latest-policy",
        "auto",
        "--ci-tags",
        "--metadata-file",
        "build-metadata.json",
    ]  # the gate runs: no --no-gate
    assert "--no-gate" not in promote["run"]
    assert step(job, "pin")["env"]["TAGS"] == "${{ steps.promote.outputs.tags }}"


def test_the_git_tag_is_the_one_ragbuild_gives_a_build():
    """The source step asks git what ragbuild's build asks it (plan.git_repository_command):
    `--short=7`, at least 7 hex digits, more when 7 are ambiguous."""
    from ragbuild.git import git_repository_command

    assert "--short=7" in git_repository_command().argv


def test_promote_accepts_what_the_prod_job_passes(workflow):
    """make promote-prod with the job's variables runs `promote` with flags its parser takes."""
    from ragbuild.commands.promote import promote_parser

    repo = WORKFLOW.parents[2]
    args = "--semver-tags --latest-policy auto --ci-tags --metadata-file build-metadata.json"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-n",
            "promote-prod",
            "FROM=r.example/w:git-abc1234",
            "ECR_URI=r.example/w",
            "VERSION=v1.2.3",
            f"ARGS={args}",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if "build-image.py promote " in line]
    argv = shlex.split(line)
    at = argv.index("promote")
    ns = promote_parser().parse_args(argv[at + 1 :])
    assert (ns.source, ns.registry, ns.env, ns.version) == (
        "r.example/w:git-abc1234",
        "r.example/w",
        "prod",
        "v1.2.3",
    )
    assert ns.semver_tags and ns.ci_tags and ns.latest_policy == "auto"
    assert ns.metadata_file == "build-metadata.json" and ns.no_gate is None


def run_promote_step(workflow, tmp_path, metadata: dict, status: int):
    """The prod job's promote step run by bash as a runner runs it, with a `make` that writes
    ``metadata`` as promote's --metadata-file and exits ``status``."""
    script = step(workflow["jobs"]["prod"], "promote")["run"]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "doc.json").write_text(json.dumps(metadata))
    fake = bindir / "make"
    fake.write_text(
        f"#!/bin/sh\ncp {tmp_path / 'doc.json'} build-metadata.json\n"
        f'echo "make $*" >&2\nexit {status}\n'
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "FROM": "r.example/w:git-abc1234",
        "VERSION": "v1.2.3",
        "ECR_REGISTRY_URI": "r.example/w",
        "GITHUB_SHA": "abc1234" + "0" * 33,
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


NOT_PUSHED = {
    "status": "failed",
    "failed_step": "pre-flight",
    "error": "r.example/w:git-abc1234 is not in the registry: GET "
    "https://r.example/v2/w/manifests/git-abc1234 (HTTPS) answered HTTP 404 "
    "MANIFEST_UNKNOWN: manifest unknown; nothing was written",
    "source": {
        "ref": "r.example/w:git-abc1234",
        "digest": None,
        "media_type": None,
        "found": False,
    },
}


@pytest.mark.parametrize(
    "error",
    [
        NOT_PUSHED["error"],
        # promote's field decides, not its words: another wording of the same 404
        "r.example/w:git-abc1234: the registry has no such manifest",
    ],
)
def test_a_tag_on_a_commit_main_never_pushed_fails_with_one_error_line(workflow, tmp_path, error):
    done = run_promote_step(workflow, tmp_path, {**NOT_PUSHED, "error": error}, 1)
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error::")]
    assert len(errors) == 1 and "push the commit to main first" in errors[0]
    assert "r.example/w:git-abc1234" in errors[0]


@pytest.mark.parametrize(
    "change, status",
    [
        ({}, 0),  # (a metadata file of an earlier failure is no reason when promote succeeded)
        ({"failed_step": "gate", "source": {"digest": "sha256:" + "1" * 64, "found": True}}, 1),
        (
            {
                "error": "GET https://r.example/v2/w/manifests/git-abc1234 (HTTPS) failed: HTTP 401",
                "source": {"ref": "r.example/w:git-abc1234", "digest": None, "found": None},
            },
            1,
        ),
        # the old text match's own case (a 404 for FROM's path in the pre-flight's error), but
        # promote did not find the source missing: not "main never pushed it"
        (
            {
                "error": "GET https://r.example/v2/w/manifests/git-abc1234 (HTTPS) failed: "
                "HTTP 404 NAME_UNKNOWN",
                "source": {"ref": "r.example/w:git-abc1234", "digest": None, "found": None},
            },
            1,
        ),
    ],
)
def test_other_outcomes_keep_promotes_status_and_say_nothing_of_main(
    workflow, tmp_path, change, status
):
    done = run_promote_step(workflow, tmp_path, {**NOT_PUSHED, **change}, status)
    assert done.returncode == status
    assert "::error::" not in done.stdout


def test_no_expression_is_pasted_into_a_script(workflow):
    """${{ }} in run: is script injection (a branch name is attacker-controlled): values come
    in through env:."""
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step.get("name")
