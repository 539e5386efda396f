"""Faults, through the script users run: the daemon unreachable, a failing Dockerfile, Ctrl-C,
SIGTERM or SIGHUP during a build, docker not installed. Each gets a clear one-line error and its exit status."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import time

import pytest

from .support import alive, descendants, killed_at_exit, process_table, send_signal, wait_for

pytestmark = pytest.mark.e2e

INTERRUPT_DEADLINE = 20  # seconds from Ctrl-C to the script's exit
BUILD_START_DEADLINE = 120


def build_args(dockerfile, image_name):
    return [
        "--env",
        "dev",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--image-name",
        image_name,
    ]


def assert_one_error_line(result, *words):
    assert "Traceback" not in result.text, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert result.stderr.rstrip().splitlines()[-1] == errors[0], "the error is not the last word"
    for word in words:
        assert word in errors[0], f"{word!r} not in {errors[0]!r}"
    return errors[0]


@pytest.mark.every_leg
def test_daemon_unreachable_exits_1_naming_the_daemon(project, tiny_context, unique, docker):
    name = unique("nodaemon")
    socket = "unix:///nonexistent.sock"
    result = project.script(*build_args(tiny_context(), name), env={"DOCKER_HOST": socket})
    assert result.returncode == 1, result.describe()
    error = assert_one_error_line(result, socket)
    assert "daemon" in error.lower()
    assert docker.refs(name) == []


@pytest.mark.every_leg
def test_failing_dockerfile_exits_1_build_failed(project, tiny_context, unique, docker, images):
    name = images.track_repository(unique("runfalse"))
    result = project.script(*build_args(tiny_context("RUN false"), name))
    assert result.returncode == 1, result.describe()
    assert_one_error_line(result, "docker build failed")
    assert "RUN false" in result.stderr  # docker's own output was shown, above the error
    assert docker.refs(name) == []


def test_docker_not_installed_exits_1_with_one_line(project, tiny_context, unique):
    result = project.script(
        *build_args(tiny_context(), unique("nodocker")), env={"DOCKER": "/nonexistent/docker"}
    )
    assert result.returncode == 1, result.describe()
    assert_one_error_line(result, "/nonexistent/docker", "not found")


def sleepers(marker: str) -> dict:
    return {
        pid: cmd
        for pid, (_, state, cmd) in process_table().items()
        if cmd == f"sleep {marker}" and state != "Z"
    }


#: How each signal arrives: Ctrl-C from a terminal goes to the whole foreground group; a CI
#: system's SIGTERM and a closed terminal's SIGHUP reach the script alone, which then has to stop
#: its docker child itself (issue 15 f). Each exits 128 + the signal with the same cleanup.
SIGNALS = [
    (signal.SIGINT, "group", "interrupted"),
    (signal.SIGTERM, "process", "interrupted by SIGTERM"),
    (signal.SIGHUP, "process", "interrupted by SIGHUP"),
]


@pytest.mark.parametrize(
    "signum, target, said", SIGNALS, ids=[signal.Signals(s).name for s, _, _ in SIGNALS]
)
def test_a_signal_during_a_build_exits_128_plus_it_and_leaves_nothing(
    project, tiny_context, unique, docker, images, tmp_path, signum, target, said
):
    # a unique sleep: never cached, and its process can be found on this machine while it runs
    marker = f"60.{int(secrets.token_hex(3), 16)}"
    name = images.track_repository(unique("ctrlc"))
    with open(tmp_path / "stderr", "w") as err:
        proc = project.popen_script(
            *build_args(tiny_context(f"RUN sleep {marker}"), name),
            "--metadata-file",
            tmp_path / "m.json",
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    with killed_at_exit(proc):
        wait_for(lambda: sleepers(marker), BUILD_START_DEADLINE, proc, "the build's RUN step")
        children = descendants(proc.pid)
        clients = {pid: cmd for pid, cmd in children.items() if " build " in f" {cmd} "}
        assert clients, f"no docker build child: {children}"
        returncode, elapsed = send_signal(
            proc, signum, group=target == "group", deadline=INTERRUPT_DEADLINE
        )
    stderr = (tmp_path / "stderr").read_text()
    print(stderr)
    assert returncode == 128 + signum, stderr
    assert elapsed < INTERRUPT_DEADLINE
    assert stderr.splitlines()[-1].startswith(f"error: {said}"), stderr
    doc = json.loads((tmp_path / "m.json").read_text())
    assert (doc["status"], doc["failed_step"]) == ("interrupted", "build")

    # the docker client was terminated and reaped, and no docker build of ours runs anywhere
    assert [pid for pid in clients if alive(pid)] == []
    assert [cmd for _, _, cmd in process_table().values() if f"{name}:" in cmd] == []
    # the daemon cancelled the build: the RUN step's process goes away
    deadline = time.monotonic() + 15
    while sleepers(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sleepers(marker) == {}, "the RUN step still runs after Ctrl-C"
    # no container was left running, and no half-built image is tagged
    # (only ours: other runs on this shared engine start containers of their own meanwhile)
    assert [line for line in docker.containers("status=running") if name in line] == []
    assert docker.refs(name) == []
