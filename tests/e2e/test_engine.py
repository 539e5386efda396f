"""A machine without a usable Docker engine: ``make build-dev`` says in one line what is missing
and names ``make engine``; ``make engine`` (tests/e2e/harness.sh engine, the harness's own
steps) leaves an engine that answers and the base image, and is idempotent."""

from __future__ import annotations

import re

import pytest

from .support import HARNESS

pytestmark = pytest.mark.e2e


def test_make_engine_leaves_an_engine_and_the_base_image(project, docker):
    result = project.make("engine", timeout=1800)
    assert result.returncode == 0, result.describe()
    assert "engine ready: client " in result.stderr
    assert docker("info", "--format", "{{.ServerVersion}}").returncode == 0
    assert docker.image_id("python:3.11-slim")
    again = project.runner.run(["bash", HARNESS, "engine"], timeout=600)
    # nothing installed twice; the engine is the harness's ("is running") or one it did not start
    # (a contributor's own: "already running (not ours: ...)")
    assert again.returncode == 0, again.describe()
    assert re.search(
        r"docker engine \(started by this harness, pid \d+\) is running"
        r"|docker engine (at \S+ )?already running \(not ours",
        again.stderr,
    ), again.describe()
    assert "apt-get install" not in again.stderr


def test_build_without_docker_names_make_engine(project, tmp_path):
    result = project.make("build-dev", env={"DOCKER": tmp_path / "nowhere" / "docker"})
    assert result.returncode != 0
    assert result.error_lines() == [
        f"error: {tmp_path}/nowhere/docker not found: install docker "
        "(as root on Debian or Ubuntu: make engine) or set DOCKER "
        "to its path"
    ]


def test_build_without_a_daemon_names_make_engine(project, tmp_path):
    socket = tmp_path / "no-daemon.sock"
    result = project.make("build-dev", env={"DOCKER_HOST": f"unix://{socket}"})
    assert result.returncode != 0
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert errors[0].startswith(f"error: cannot reach the Docker daemon at unix://{socket}: ")
    assert "`make engine` as root on Debian or Ubuntu" in errors[0]
