"""``shell [IMAGE]`` and ``make shell`` on the real engine: commands piped in instead of a
terminal run in bash (or /bin/sh where the image has no bash), the shell's exit status is
ragbuild's, and no container is left behind."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

PROBE = (
    'if [ -n "$BASH_VERSION" ]; then echo shell=bash; else echo shell=sh; fi\n'
    "cat /etc/debian_version >/dev/null && echo debian\nexit 7\n"
)


@pytest.fixture
def no_bash_image(docker, tiny_context, images, unique):
    """python:3.11-slim without bash: the shell must fall back to /bin/sh."""
    name = unique("nobash")
    dockerfile = tiny_context(
        "RUN rm -f /bin/bash /usr/bin/bash", f'LABEL org.ragbuild.e2e="{name}"'
    )
    docker("build", "-q", "-t", name, dockerfile.parent, env={"DOCKER_BUILDKIT": "1"}).assert_ok()
    images.track(docker.image_id(name))
    return name


def containers_of(docker, image):
    return docker("ps", "-a", "--filter", f"ancestor={image}", "--format", "{{.ID}}").stdout.split()


def test_shell_runs_piped_commands_in_bash_and_removes_the_container(project, docker, venv):
    before = containers_of(docker, "python:3.11-slim")
    result = project.runner.run(
        [venv / "bin" / "python", "scripts/build-image.py", "shell", "python:3.11-slim"],
        cwd=project.path,
        input=PROBE,
    )
    assert result.returncode == 7, result.describe()
    assert result.stdout.splitlines() == ["shell=bash", "debian"]
    assert "+ docker run --rm -i --entrypoint /bin/sh python:3.11-slim -c" in result.stderr
    assert containers_of(docker, "python:3.11-slim") == before


def test_shell_falls_back_to_sh_without_bash(project, docker, venv, no_bash_image):
    result = project.runner.run(
        [venv / "bin" / "python", "scripts/build-image.py", "shell", no_bash_image],
        cwd=project.path,
        input=PROBE,
    )
    assert result.returncode == 7, result.describe()
    assert result.stdout.splitlines() == ["shell=sh", "debian"]
    assert containers_of(docker, no_bash_image) == []


def test_make_shell_passes_the_image(project, docker, no_bash_image):
    result = project.runner.run(
        ["make", "-C", project.path, f"VENV={project.venv}", "shell", f"ARGS={no_bash_image}"],
        input="echo made; exit 0\n",
    )
    assert result.returncode == 0, result.describe()
    assert "made" in result.stdout.splitlines()
    assert containers_of(docker, no_bash_image) == []


def test_shell_of_a_missing_image_fails_in_one_line(project, venv, unique):
    missing = unique("absent")
    result = project.runner.run(
        [venv / "bin" / "python", "scripts/build-image.py", "shell", f"{missing}:none"],
        cwd=project.path,
        input="exit 0\n",
    )
    assert result.returncode == 125, result.describe()  # docker run's own status: it did not start
