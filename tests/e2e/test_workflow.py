""".github/workflows/build-image.yml run for real: each event's job is picked by its own ``if:``,
its ``run:`` steps are executed with bash as a GitHub runner does (``bash --noprofile --norc -eo
pipefail``), with the variables a runner sets (GITHUB_OUTPUT per step, GITHUB_STEP_SUMMARY,
GITHUB_REF, GITHUB_SHA, GITHUB_RUN_NUMBER...), against the harness's engine, moto's ECR API and
the ECR-shaped TLS registry. ``${{ }}`` expressions are evaluated from the contexts the test
controls (github, vars, steps.<id>.outputs); an expression the evaluator does not know fails the
test. ``uses:`` steps are not run: checkout is the project copy, setup-python the suite's venv,
configure-aws-credentials the harness's AWS variables (as that action exports them), setup-trivy
a ``trivy`` on PATH that records what it scanned. A tag's job runs after main's, as on GitHub,
on an engine without main's image (a fresh runner): it promotes the digest main pushed.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from .support import REPO, git
from .test_promote import ANY_BUILD_RE, AccessLog
from .test_push import ecr_host, ecr_repository  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

WORKFLOW = REPO / ".github" / "workflows" / "build-image.yml"
EXPRESSION_RE = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)+")
RUN_NUMBER = "4711"
TAG_RUN_NUMBER = "4712"  # the tag's run, after main's


def evaluate(expression: str, contexts: dict):
    """A GitHub expression of the forms this workflow uses: context.paths, 'strings', ==, !=,
    &&, ||, startsWith(a, b)."""
    parts = re.split(r"('(?:[^']|'')*')", expression)  # string literals stay as they are
    code = []
    for i, part in enumerate(parts):
        if i % 2:
            code.append(repr(part[1:-1].replace("''", "'")))
            continue
        part = NAME_RE.sub(lambda m: f"_get({m[0]!r})", part)
        part = part.replace("&&", " and ").replace("||", " or ").replace("startsWith(", "_starts(")
        assert re.fullmatch(
            r"[\s()=!,]*|(?:[\s()=!,]|_get\('[^']*'\)|_starts| and | or )*", part
        ), f"the test cannot evaluate {expression!r}"
        code.append(part)

    def get(path):
        value = contexts
        for key in path.split("."):
            assert isinstance(value, dict), f"{path}: not an object"
            value = value.get(key, "")
        return value

    def starts(text, prefix):
        return str(text).lower().startswith(str(prefix).lower())  # GitHub's is case-insensitive

    return eval("".join(code), {"__builtins__": {}}, {"_get": get, "_starts": starts})  # noqa: S307


def substitute(text: str, contexts: dict) -> str:
    return EXPRESSION_RE.sub(lambda m: str(evaluate(m[1], contexts)), text)


def read_output_file(path: Path) -> dict:
    """GitHub's GITHUB_OUTPUT syntax: ``name=value`` lines and ``name<<DELIM ... DELIM``."""
    outputs, lines = {}, path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            outputs[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        name, _, value = line.partition("=")
        outputs[name] = value
        i += 1
    return outputs


class Job:
    """One job of the workflow, run on the project copy."""

    def __init__(self, name, workflow, github, variables, env, cwd, tmp):
        self.name, self.definition = name, workflow["jobs"][name]
        self.contexts = {"github": github, "vars": variables, "steps": {}}
        self.env, self.cwd, self.tmp = env, cwd, tmp
        self.summary = tmp / "step-summary.md"
        self.ran, self.skipped = [], []
        self.failed = None  # (step name, CompletedProcess) of the step that failed
        self.workflow_env = workflow.get("env", {})

    def run(self, check: bool = True):
        """The job's steps in order; the job's outputs. A failing step fails the test, or
        with ``check=False`` ends the job as GitHub ends it (``self.failed``; returns None)."""
        env = dict(self.env)
        for scope in (self.workflow_env, self.definition.get("env", {})):
            env.update({k: substitute(str(v), self.contexts) for k, v in scope.items()})
        for index, step in enumerate(self.definition["steps"]):
            if "uses" in step:
                self.skipped.append(step["uses"])
                continue
            step_env = dict(env)
            step_env.update(
                {k: substitute(str(v), self.contexts) for k, v in step.get("env", {}).items()}
            )
            output = self.tmp / f"output-{index}"
            output.touch()
            step_env.update(GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(self.summary))
            script = self.tmp / f"step-{index}.sh"
            script.write_text(substitute(step["run"], self.contexts))
            print(f"--- step {step.get('name', index)} ---\n{script.read_text()}", flush=True)
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                cwd=self.cwd,
                env=step_env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            print(done.stdout, done.stderr, sep="\n", flush=True)
            if done.returncode != 0 and not check:
                self.failed = (step.get("name"), done)
                return None
            assert done.returncode == 0, (
                f"step {step.get('name')!r} exited {done.returncode}:\n{done.stderr[-3000:]}"
            )
            self.ran.append((step.get("name"), done))
            if "id" in step:
                self.contexts["steps"][step["id"]] = {"outputs": read_output_file(output)}
        return {
            k: substitute(v, self.contexts) for k, v in self.definition.get("outputs", {}).items()
        }

    def output(self, step_id: str) -> dict:
        return self.contexts["steps"][step_id]["outputs"]

    def log(self) -> str:
        """What every step printed (stdout and stderr)."""
        return "".join(done.stdout + done.stderr for _, done in self.ran)


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture
def trivy(tmp_path):
    """setup-trivy's stand-in: a ``trivy`` that records its arguments and passes."""
    directory = tmp_path / "trivy-bin"
    directory.mkdir()
    record = tmp_path / "trivy-calls"
    stub = directory / "trivy"
    stub.write_text(f"#!/bin/sh\necho \"$*\" >> {record}\necho 'trivy stand-in: 0 findings'\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return directory, record


def start_job(
    name,
    workflow,
    project,
    event,
    ref,
    *,
    variables,
    tmp_path,
    base_env,
    trivy_dir,
    docker_config,
    run_number=RUN_NUMBER,
):
    sha = git(project.path, "rev-parse", "HEAD")
    ref_name = ref.split("/", 2)[2]
    github = {
        "event_name": event,
        "ref": ref,
        "ref_name": ref_name,
        "sha": sha,
        "run_number": run_number,
        "repository": "team/rag-worker",
    }
    chosen = [
        job for job, body in workflow["jobs"].items() if evaluate(body["if"], {"github": github})
    ]
    assert chosen == [name], f"{event} {ref}: the workflow runs {chosen}"
    env = {k: v for k, v in base_env.items()}
    env.update(
        {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event,
            "GITHUB_REF": ref,
            "GITHUB_REF_NAME": ref_name,
            "GITHUB_REF_TYPE": "tag" if "/tags/" in ref else "branch",
            "GITHUB_SHA": sha,
            "GITHUB_RUN_NUMBER": run_number,
            "GITHUB_RUN_ID": f"9900{run_number}",
            "GITHUB_REPOSITORY": "team/rag-worker",
            "GITHUB_WORKSPACE": str(project.path),
            "RUNNER_OS": "Linux",
            "RUNNER_TEMP": str(tmp_path),
            # what setup-python + `make venv` leave: the suite's venv
            "VENV": str(project.venv),
            # what configure-aws-credentials exports (the harness's moto credentials)
            "AWS_REGION": variables["AWS_REGION"],
            "AWS_DEFAULT_REGION": variables["AWS_REGION"],
            "DOCKER_CONFIG": str(docker_config),
            "PATH": f"{trivy_dir}{os.pathsep}{base_env['PATH']}",
        }
    )
    job_tmp = tmp_path / f"job-{name}-{run_number}"
    job_tmp.mkdir()
    return Job(name, workflow, github, variables, env, project.path, job_tmp)


def test_pull_request_builds_and_smoke_tests_without_pushing(
    workflow,
    new_project,
    unique,
    images,
    tmp_path,
    base_env,
    trivy,
    pip_args,
    docker_config,
    docker,
):
    name = unique("wf-pr")
    project = new_project("workflow-pr", image_name=name)
    images.track_repository(name)
    variables = {
        "ECR_REGISTRY_URI": "",
        "AWS_REGION": "us-east-1",
        "RAGBUILD_ARGS": pip_args,
        "AWS_ROLE_ARN": "",
    }
    job = start_job(
        "check",
        workflow,
        project,
        "pull_request",
        "refs/pull/7/merge",
        variables=variables,
        tmp_path=tmp_path,
        base_env=base_env,
        trivy_dir=trivy[0],
        docker_config=docker_config,
    )
    job.run()
    outputs = job.output("build")
    tags = outputs["tags"].splitlines()
    assert f"{name}:build-{RUN_NUMBER}" in tags and f"{name}:dev" in tags
    assert outputs["digest"] == ""  # nothing pushed
    assert outputs["image-id"] == docker.image_id(f"{name}:dev")
    log = "".join(done.stderr for _, done in job.ran)
    assert "smoke test passed" in log and "+ docker push" not in log and "+ aws " not in log
    assert not trivy[1].exists()
    summary = job.summary.read_text()
    assert outputs["image-id"] in summary and f"{name}:build-{RUN_NUMBER}" in summary
    metadata = json.loads((project.path / "build-metadata.json").read_text())
    assert metadata["status"] == "succeeded" and metadata["pushed_refs"] == []


DEV_TAGS = ["dev-{ts}", "dev", "git-{sha}", "latest", f"build-{RUN_NUMBER}"]
PROD_TAGS = [
    "v1.4.2",
    "1.4.2",
    "prod-{ts}",
    "prod",
    "git-{sha}",
    "latest",
    "1",
    "1.4",
    f"build-{TAG_RUN_NUMBER}",
]


def ecr_variables(uri, pip_args) -> dict:
    return {
        "ECR_REGISTRY_URI": uri,
        "AWS_REGION": "us-east-1",
        "RAGBUILD_ARGS": pip_args,
        "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/rag-worker-ci",
    }


def run_main(workflow, project, uri, *, pip_args, tmp_path, base_env, trivy, docker_config):
    """The push to main: the dev job, which must build, smoke-test, scan, push and pin."""
    job = start_job(
        "dev",
        workflow,
        project,
        "push",
        "refs/heads/main",
        variables=ecr_variables(uri, pip_args),
        tmp_path=tmp_path,
        base_env=base_env,
        trivy_dir=trivy[0],
        docker_config=docker_config,
    )
    outputs = job.run()
    assert "aws-actions/configure-aws-credentials@v6" in job.skipped
    assert job.definition["permissions"]["id-token"] == "write"
    digest = job.output("build")["digest"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    # the later step used it: pulled by digest, and the job's output is the pinned reference
    assert outputs["image"] == f"{uri}@{digest}"
    assert job.output("pin")["image"] == f"{uri}@{digest}"
    assert f"{uri}@{digest}" in job.summary.read_text()
    return job, digest


def test_main_builds_scans_pushes_dev_and_pins_the_digest(
    workflow,
    new_project,
    unique,
    images,
    tmp_path,
    base_env,
    trivy,
    pip_args,
    docker_config,
    ecr_repository,
    ecr_host,
    ecr_registry,
):
    project = new_project("workflow-dev", image_name=unique("wf-dev"))
    repository = ecr_repository("wf-dev")
    uri = images.track_repository(f"{ecr_host}/{repository}")
    job, digest = run_main(
        workflow,
        project,
        uri,
        pip_args=pip_args,
        tmp_path=tmp_path,
        base_env=base_env,
        trivy=trivy,
        docker_config=docker_config,
    )
    log = job.log()
    ts = re.search(r"^timestamp: (\d{8}-\d{6})$", log, re.M)[1]
    want = sorted(tag.format(ts=ts, sha=project.sha) for tag in DEV_TAGS)
    assert ecr_registry.tags(repository) == want
    assert {ecr_registry.manifest(repository, tag).digest for tag in want} == {digest}
    assert sorted(job.output("build")["tags"].splitlines()) == sorted(f"{uri}:{t}" for t in want)
    # the image scanned is the image pushed: by its ID (issue 22's identity), not by a tag
    scanned = trivy[1].read_text().split()
    assert scanned[0] == "image" and scanned[-1] == job.output("build")["image-id"]
    assert "smoke test passed" in log


def test_a_version_tag_promotes_the_digest_main_tested_without_building(
    workflow,
    new_project,
    unique,
    images,
    tmp_path,
    base_env,
    trivy,
    pip_args,
    docker_config,
    ecr_repository,
    ecr_host,
    ecr_registry,
    docker,
    e2e_env,
):
    """Issue 24: main's job builds and tests; the tag's job promotes that digest (its gate
    first) and builds nothing: the registry logs only manifest writes from it."""
    project = new_project("workflow-prod", image_name=unique("wf-prod"))
    repository = ecr_repository("wf-prod")
    uri = images.track_repository(f"{ecr_host}/{repository}")
    dev, digest = run_main(
        workflow,
        project,
        uri,
        pip_args=pip_args,
        tmp_path=tmp_path,
        base_env=base_env,
        trivy=trivy,
        docker_config=docker_config,
    )
    ts = re.search(r"^timestamp: (\d{8}-\d{6})$", dev.log(), re.M)[1]
    scans = trivy[1].read_text()
    # the tag's job runs on a fresh runner: the engine has no image of main's job
    docker.remove_images(sorted(docker.ids(uri)))
    assert not docker.ids(uri)

    git(project.path, "tag", "v1.4.2")
    access = AccessLog(Path(e2e_env["RAGBUILD_E2E_STATE"]) / "registry-ecr.log", repository)
    job = start_job(
        "prod",
        workflow,
        project,
        "push",
        "refs/tags/v1.4.2",
        variables=ecr_variables(uri, pip_args),
        tmp_path=tmp_path,
        base_env=base_env,
        trivy_dir=trivy[0],
        docker_config=docker_config,
        run_number=TAG_RUN_NUMBER,
    )
    outputs = job.run()
    log = job.log()

    assert job.output("source")["image"] == f"{uri}:git-{project.sha}"
    assert not ANY_BUILD_RE.search(log) and "+ docker push" not in log, log[-3000:]
    assert trivy[1].read_text() == scans  # scanned once, by main's job: the same digest
    writes = access.writes()
    assert writes and all(
        method == "PUT" and "/manifests/" in path and status == "201"
        for method, path, status in writes
    ), writes
    prod = [tag.format(ts=ts, sha=project.sha) for tag in PROD_TAGS]
    assert sorted(path.rsplit("/", 1)[1] for _, path, _ in writes) == sorted(
        set(prod) - {f"git-{project.sha}", "latest"}
    )  # main's job gave it those two
    dev_tags = [tag.format(ts=ts, sha=project.sha) for tag in DEV_TAGS]
    assert ecr_registry.tags(repository) == sorted(set(dev_tags) | set(prod))
    assert {ecr_registry.manifest(repository, tag).digest for tag in prod} == {digest}

    # the gate ran on that digest (pulled by it: the engine had no copy), and pinned outputs
    assert "smoke test passed" in log and f" pull {uri}@{digest}" in log
    metadata = json.loads((project.path / "build-metadata.json").read_text())
    assert metadata["status"] == "succeeded" and metadata["gate"]["ran"] is True
    assert metadata["source"]["digest"] == digest
    assert job.output("promote")["digest"] == digest
    assert sorted(job.output("promote")["tags"].splitlines()) == sorted(f"{uri}:{t}" for t in prod)
    assert outputs["image"] == f"{uri}@{digest}" == job.output("pin")["image"]
    summary = job.summary.read_text()
    assert f"{uri}@{digest}" in summary and f"{uri}:git-{project.sha}" in summary


def test_a_tag_on_a_commit_main_never_pushed_fails_with_one_error_line(
    workflow,
    new_project,
    unique,
    images,
    tmp_path,
    base_env,
    trivy,
    pip_args,
    docker_config,
    ecr_repository,
    ecr_host,
    ecr_registry,
    e2e_env,
):
    project = new_project("workflow-unbuilt", image_name=unique("wf-unbuilt"))
    repository = ecr_repository("wf-unbuilt")
    uri = images.track_repository(f"{ecr_host}/{repository}")
    git(project.path, "tag", "v1.4.2")
    access = AccessLog(Path(e2e_env["RAGBUILD_E2E_STATE"]) / "registry-ecr.log", repository)
    job = start_job(
        "prod",
        workflow,
        project,
        "push",
        "refs/tags/v1.4.2",
        variables=ecr_variables(uri, pip_args),
        tmp_path=tmp_path,
        base_env=base_env,
        trivy_dir=trivy[0],
        docker_config=docker_config,
        run_number=TAG_RUN_NUMBER,
    )
    assert job.run(check=False) is None
    name, done = job.failed
    assert name == step_named(workflow, "prod", "promote")
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error::")]
    assert errors == [
        f"::error::{uri}:git-{project.sha} is not in the registry: main's build "
        f"never pushed commit {git(project.path, 'rev-parse', 'HEAD')}; push the "
        "commit to main first, and once its dev job has pushed it re-run this job "
        "(nothing was promoted)"
    ]
    assert done.returncode == 2  # make's, for promote's exit 1
    # the step decided from promote's field, not its words
    metadata = json.loads((project.path / "build-metadata.json").read_text())
    assert metadata["source"]["found"] is False and metadata["failed_step"] == "pre-flight"
    assert access.writes() == [] and ecr_registry.tags(repository) == []
    assert not ANY_BUILD_RE.search(done.stdout + done.stderr)


def step_named(workflow, job: str, step_id: str) -> str:
    return next(s["name"] for s in workflow["jobs"][job]["steps"] if s.get("id") == step_id)
