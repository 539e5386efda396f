"""`make build-dev`, `run-local`, `logs`, `build-prod` and `prod-ready` against the real engine.

One `make build-dev` of the worker is shared by the session (``dev_build``); the prod cases build
in a copy of their own, so their git-<sha> tag is theirs.
"""

from __future__ import annotations

import json
import shlex
import re
import stat
import time
import urllib.parse
import urllib.request
from datetime import datetime

import pytest

from .support import free_port, LOCAL_CONTAINER, PROJECT_LABEL, WORKER

pytestmark = pytest.mark.e2e

HEALTH_WAIT = 60  # seconds for a started container to answer /health


def created_stamp(created: str) -> str:
    """OCI's created label is RFC 3339 with an offset: as BUILD_TIMESTAMP's %Y%m%d-%H%M%S."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)", created), created
    return datetime.fromisoformat(created.replace("Z", "+00:00")).strftime("%Y%m%d-%H%M%S")


def get_health(port: int, timeout: float = HEALTH_WAIT) -> dict:
    """GET 127.0.0.1:<port>/health until it answers 200, at most ``timeout`` seconds."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with opener.open(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return json.loads(response.read())
                last = f"HTTP {response.status}"
        except OSError as err:  # refused / reset while uvicorn starts
            last = repr(err)
        time.sleep(0.5)
    pytest.fail(f"/health on 127.0.0.1:{port} did not answer 200 within {timeout}s (last: {last})")


# --- make build-dev ----------------------------------------------------------------------------


@pytest.mark.every_leg
def test_build_dev_puts_every_tag_on_one_image(dev_build):
    sha, ts = dev_build.project.sha, dev_build.timestamp
    assert re.fullmatch(r"[0-9a-f]{7}", sha)
    expected = {f"{WORKER}:dev-{ts}", f"{WORKER}:dev", f"{WORKER}:git-{sha}", f"{WORKER}:latest"}
    assert dev_build.ref_ids == {ref: dev_build.image_id for ref in expected}
    assert set(dev_build.repo_tags) == expected


def test_build_dev_labels_carry_the_build_args(dev_build, docker, e2e_env):
    config = docker.inspect(dev_build.image_id)["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "rag-worker"
    assert labels["org.opencontainers.image.version"] == "unknown"  # a dev build has no version
    assert labels["org.opencontainers.image.revision"] == dev_build.project.sha
    assert created_stamp(labels["org.opencontainers.image.created"]) == dev_build.timestamp
    assert labels[PROJECT_LABEL] == "rag-worker"
    assert labels["org.ragbuild.repository"] == WORKER  # ragbuild's --label
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["ENVIRONMENT"] == "dev"
    assert env["GIT_COMMIT"] == dev_build.project.sha
    assert env["BUILD_TIMESTAMP"] == dev_build.timestamp
    # no package-index setting of the builder stage reaches the image: not its env, not its
    # history (a build arg a RUN step used shows there), not the uv flags made from them
    assert not [key for key in env if key.startswith(("PIP_", "UV_"))]
    done = docker.quiet("history", "--no-trunc", "--format", "{{.CreatedBy}}", dev_build.image_id)
    history = done.stdout
    assert done.returncode == 0 and "/tmp/uv/uv-index" in history, done  # the install steps
    mirror = urllib.parse.urlsplit(e2e_env["E2E_WHEEL_MIRROR"]).netloc  # host:port
    for setting in (
        "PIP_FIND_LINKS",
        "PIP_NO_INDEX",
        "PIP_TRUSTED_HOST",
        "--find-links",
        "--no-index",
        "--allow-insecure-host",
        mirror,
    ):
        assert setting not in history, setting


def test_build_dev_image_runs_as_a_non_root_user(dev_build, docker):
    user = docker.inspect(dev_build.image_id)["Config"]["User"]
    assert user, "no USER: the container would run as root"
    name, _, group = user.partition(":")
    assert name not in ("root", "0"), user
    assert group not in ("root", "0"), user


@pytest.fixture
def local_container(docker):
    docker.remove_container(LOCAL_CONTAINER)
    yield LOCAL_CONTAINER
    docker.remove_container(LOCAL_CONTAINER)


def test_run_local_answers_health_and_logs_show_uvicorn(dev_build, docker, local_container):
    project = dev_build.project
    assert docker.image_id(f"{WORKER}:dev") == dev_build.image_id, "rag-worker:dev was re-tagged"
    port = free_port()
    started = project.make("run-local", f"ARGS=--port {port}").assert_ok()
    assert f"localhost:{port}/health" in started.stderr  # it says how to reach the container

    health = get_health(port)
    assert health["status"] == "ok"
    assert health["environment"] == "dev"
    assert health["git_commit"] == project.sha
    assert health["build_timestamp"] == dev_build.timestamp
    state = docker.quiet(
        "container", "inspect", "--format", "{{.Image}} {{.State.Running}}", local_container
    )
    assert state.stdout.split() == [dev_build.image_id, "true"], state.stderr

    logs = project.make("logs").assert_ok()
    assert "Uvicorn running on http://0.0.0.0:8080" in logs.text
    assert '"GET /health HTTP/1.1" 200' in logs.text


# --- make build-prod / prod-ready --------------------------------------------------------------


@pytest.fixture(scope="module")
def prod_project(new_project):
    return new_project("prod")


@pytest.mark.every_leg
def test_build_prod_with_version_tags_and_labels(prod_project, docker, images, pip_args):
    result = prod_project.make("build-prod", "VERSION=1.0.0", f"ARGS={pip_args}").assert_ok()
    image_id = images.track_result(result)
    ts, sha = result.timestamp(), prod_project.sha
    expected = ["v1.0.0", "1.0.0", f"prod-{ts}", "prod", f"git-{sha}", "latest"]
    assert {tag: docker.image_id(f"{WORKER}:{tag}") for tag in expected} == {
        tag: image_id for tag in expected
    }
    assert sorted(docker.inspect(image_id)["RepoTags"]) == sorted(f"{WORKER}:{t}" for t in expected)
    # the plan listed them in bash's order
    listed = re.findall(r"^  - (\S+)$", result.stderr, re.M)
    assert listed == [f"{WORKER}:{tag}" for tag in expected]
    labels = docker.inspect(image_id)["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.revision"] == sha
    assert created_stamp(labels["org.opencontainers.image.created"]) == ts


@pytest.fixture
def recording_docker(tmp_path, e2e_env):
    """A DOCKER that logs each call to a file, then runs the real client."""
    log = tmp_path / "docker-calls.log"
    wrapper = tmp_path / "docker"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {e2e_env["DOCKER"]} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, log


def test_build_prod_without_version_fails_with_a_hint_and_builds_nothing(
    prod_project, recording_docker
):
    wrapper, log = recording_docker
    result = prod_project.make("build-prod", env={"DOCKER": wrapper})
    assert result.returncode != 0
    # make names the recipe's exit status: the script's 2 (usage), not 1 (a command failed)
    assert re.search(r"\[Makefile:\d+: build-prod\] Error 2$", result.stderr, re.M), (
        result.describe()
    )
    errors = result.error_lines()
    assert len(errors) == 1 and "VERSION=" in errors[0], result.describe()
    assert "\n" not in errors[0]
    assert "docker build" not in result.text
    assert not log.exists(), f"docker ran: {log.read_text()}"


@pytest.mark.every_leg
def test_prod_ready_builds_smoke_tests_and_prints_the_push_command(
    prod_project, docker, images, pip_args
):
    result = prod_project.make("prod-ready", "VERSION=1.0.0", f"ARGS={pip_args}").assert_ok()
    image_id = images.track_result(result)
    passed = [line for line in result.stderr.splitlines() if line.startswith("smoke test passed")]
    assert len(passed) == 1, result.describe()
    health = json.loads(passed[0].split(" with ", 1)[1])
    assert health["version"] == "1.0.0"
    assert health["environment"] == "prod"
    assert health["git_commit"] == prod_project.sha
    assert health["status"] == "ok"
    assert image_id in passed[0]  # the image just built, by its ID (issue 22: not a tag)
    assert docker.image_id(f"{WORKER}:v1.0.0") == image_id
    # issue 24: the command that pushes the image the smoke test ran, by its ID (no build);
    # without ECR_URI or ECR_REGISTRY_URI it says to set one and reads it from there
    head = "push the tested image: set ECR_REGISTRY_URI (make: ECR_URI) to "
    push = [line for line in result.stderr.splitlines() if line.startswith(head)]
    assert len(push) == 1, result.describe()
    assert "push it: " not in result.stderr
    words = shlex.split(push[0].split(", then: ", 1)[1])
    assert words[:2] == [".venv/bin/python", "scripts/build-image.py"] or words[1].endswith(
        "scripts/build-image.py"
    ), push[0]
    assert words[2:] == [
        "push",
        image_id,
        "--registry",
        "$ECR_REGISTRY_URI",
        "--env",
        "prod",
        "--version",
        "1.0.0",
    ], push[0]
    # the smoke test's container is gone again
    assert docker.containers(f"ancestor={image_id}") == []
