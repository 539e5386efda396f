"""``doctor`` against the harness: healthy (engine, plain registry, moto's ECR and the TLS
registry), then one fault at a time: no daemon, no buildx for a build that needs it, a registry
that does not answer, a missing ECR repository. Each fault is one ``problem`` line with its fix
and exit 1; a healthy machine exits 0."""

from __future__ import annotations

import re

import pytest

from .support import free_port

from .test_builders import docker_without_buildx  # noqa: F401 (fixture)
from .test_push import aws_with_login_password, ecr_host, ecr_repository  # noqa: F401

pytestmark = pytest.mark.e2e


def lines_of(result):
    return [line for line in result.stdout.splitlines() if line.split(None, 1)[0] in
            ("ok", "warning", "problem")]


def problems(result):
    return [line for line in lines_of(result) if line.startswith("problem ")]




def test_make_doctor_on_the_healthy_harness(project):
    result = project.make("doctor")
    assert result.returncode == 0, result.describe()
    found = lines_of(result)
    assert [line.split(None, 1)[1].split(":")[0] for line in found] == [
        "python", "docker client", "docker daemon", "buildkit", "buildx builders", "git",
        "git tags", "plan", "dockerfile and context", "registry", "base image"]
    assert problems(result) == []
    assert "ok       base image: python:3.11-slim is available locally" in found
    assert result.stdout.splitlines()[-2] == "a build would work"


def test_doctor_with_the_plain_registry(project, e2e_env):
    registry = e2e_env["E2E_REGISTRY"]
    result = project.script("doctor", "--registry", f"{registry}/doctor-check")
    assert result.returncode == 0, result.describe()
    # localhost: an insecure registry of every daemon (127.0.0.0/8), reached over plain HTTP
    # without asking the daemon's registry configuration (docker info for its proxies only)
    assert (f"ok       registry: {registry} answers (plain HTTP: an insecure registry "
            "of the daemon) and accepts docker's credentials") in result.stdout
    assert "ok       registry credentials: none: no credHelpers, credsStore or auths" in result.stdout
    assert result.stdout.splitlines()[-1] == "a build and push would work"


def test_doctor_with_an_ecr_repository(project, ecr_repository, ecr_host, docker_config):
    name = ecr_repository("doctor", "--image-tag-mutability", "IMMUTABLE")
    result = project.script("doctor", "--registry", f"{ecr_host}/{name}",
                            env={"DOCKER_CONFIG": docker_config})
    assert result.returncode == 0, result.describe()
    out = result.stdout
    assert re.search(rf"^ok       registry: {re.escape(ecr_host)} answers \(.*\) and accepts "
                     "docker's credentials$", out, re.M)
    assert f"ok       ECR credentials: valid for region us-east-1 (from the host {ecr_host})" in out
    assert f"ok       ECR repository: {name} exists, " in out and "IMMUTABLE" in out


def test_doctor_with_a_missing_ecr_repository(project, unique, ecr_host, docker_config):
    name = unique("doctor-missing")
    result = project.script("doctor", "--registry", f"{ecr_host}/{name}",
                            env={"DOCKER_CONFIG": docker_config})
    assert result.returncode == 1
    assert problems(result) == [
        f"problem  ECR repository: ECR repository {name} does not exist in {ecr_host}; create it: "
        f"aws ecr create-repository --repository-name {name} --region us-east-1"]


def test_doctor_with_a_registry_that_does_not_answer(project):
    host = f"localhost:{free_port()}"
    result = project.script("doctor", "--registry", f"{host}/rag-worker")
    assert result.returncode == 1
    found = problems(result)
    assert len(found) == 1 and found[0].startswith(f"problem  registry: cannot reach the registry "
                                                   f"{host} over HTTPS")
    assert "check the host and port in --registry" in found[0]


def test_doctor_without_a_daemon(project, tmp_path):
    sock = tmp_path / "stopped.sock"
    result = project.script("doctor", env={"DOCKER_HOST": f"unix://{sock}"})
    assert result.returncode == 1
    found = problems(result)
    assert found[0].startswith(f"problem  docker daemon: cannot reach the Docker daemon at "
                               f"unix://{sock}: start it")
    assert "`make engine` as root on Debian or Ubuntu" in found[0]
    assert found[-1] == "problem  base image: not checked: no docker daemon"


def test_doctor_without_buildx(project, docker, docker_without_buildx):
    plain = project.script("doctor", env={"DOCKER": docker_without_buildx})
    if docker.major() < 23:
        assert plain.returncode == 0, plain.describe()  # docker 20.10 builds with its own BuildKit
        assert "ok       buildkit: built into docker 20.10" in plain.stdout
    else:  # 23+ (Debian 13's 26): `docker build` is buildx; without the plugin, the legacy builder
        assert plain.returncode == 1, plain.describe()
        assert problems(plain)[0].startswith(
            f"problem  buildkit: docker {docker.version()} builds with BuildKit only through the "
            "buildx plugin, which is missing; fix: install the buildx plugin")
    needs = project.script("doctor", "--builder", "remote", env={"DOCKER": docker_without_buildx})
    assert needs.returncode == 1
    assert problems(needs)[0].startswith(
        "problem  buildkit: this build needs docker buildx (for --builder remote), and this docker "
        "client has no buildx: install the buildx plugin")


def test_doctor_names_the_safe_directory_fix(project):
    """A checkout owned by another user (a CI volume, a container's bind mount): git refuses it
    and the build stops; doctor says which command trusts it."""
    import os
    import pwd
    import subprocess

    nobody = pwd.getpwnam("nobody").pw_uid
    subprocess.run(["chown", "-R", str(nobody), str(project.path)], check=True)
    try:
        result = project.script("doctor", env={"HOME": str(project.path.parent)})
    finally:
        subprocess.run(["chown", "-R", str(os.getuid()), str(project.path)], check=True)
    assert result.returncode == 1  # the build stops before docker rather than tag without git
    assert problems(result) == [
        f"problem  git: git cannot say which commit this build is made from: fatal: detected "
        f"dubious ownership in repository at '{project.path}' To add an exception for this "
        f"directory, call: git config --global --add safe.directory {project.path}; the run "
        "stops before docker rather than tag the image without it; fix: git config --global "
        f"--add safe.directory {project.path}",
        "problem  plan: not made: git failed (above)"]


def test_doctor_with_an_expired_ecr_token(project, ecr_repository, ecr_host, docker_config,
                                          tmp_path):
    """An ECR token the registry no longer accepts (they last 12 hours): the aws CLI hands one
    out, docker login is refused; one problem line, the token never printed."""
    stale = "expired-ecr-token-0123456789"
    fake = aws_with_login_password(tmp_path, stale)
    name = ecr_repository("doctor-expired")
    result = project.script("doctor", "--registry", f"{ecr_host}/{name}",
                            env={"DOCKER_CONFIG": docker_config, "AWS_CLI": fake})
    assert result.returncode == 1
    found = problems(result)
    assert len(found) == 1, result.describe()
    assert found[0].startswith(f"problem  ECR credentials: docker login to {ecr_host} with the "
                               "ECR password failed")
    assert stale not in result.stdout + result.stderr
