"""diagnose.py: what a stopped container said, read as a user would want it told."""

from __future__ import annotations

import json

import pytest

from ragbuild import diagnose

from ragbuild import push, steps
from ragbuild import docker_config
from ragbuild.docker_config import DockerTarget
from ragbuild.errors import DockerUnavailable
from ragbuild.run.runner import Runner


@pytest.mark.parametrize(
    "said, hint",
    [
        ("exec /app/serve: permission denied", "/app/serve is not executable"),
        (
            "exec /app/serve: exec format error",
            "/app/serve has no #! line, or is a binary of another",
        ),
        ("Traceback ...\nModuleNotFoundError: fastapi", ""),
    ],
)
def test_exec_hints_name_the_usual_cause(said, hint):
    assert diagnose.exec_hint(said, None).startswith(hint)
    assert bool(diagnose.exec_hint(said, None)) == bool(hint)


def test_an_oom_kill_is_named_in_the_state():
    state = diagnose.parse_state(
        json.dumps({"Status": "exited", "Running": False, "ExitCode": 137, "OOMKilled": True})
    )
    assert state.describe() == "exited (exit 137, killed: out of memory)"
    assert diagnose.parse_state("not json") == diagnose.State()


# --- the daemon: one list of markers, one message ----------------------------------------------


def test_push_and_diagnose_share_the_daemon_markers_and_message():
    for marker in docker_config.DAEMON_DOWN_MARKERS:
        assert push.classify_failure(f"docker: {marker.upper()}") == push.Failure.DAEMON
    # a push's "connection refused" is the registry's, not the daemon's
    assert (
        push.classify_failure("dial tcp 10.0.0.1:5000: connect: connection refused")
        == push.Failure.UNREACHABLE
    )
    target = DockerTarget(host="tcp://10.0.0.5:2375")
    assert docker_config.daemon_unreachable(target).startswith(
        "cannot reach the Docker daemon at tcp://10.0.0.5:2375: start it"
    )


def test_diagnose_names_the_unreachable_daemon(fp):
    from types import SimpleNamespace

    fp.register(
        [fp.program("docker"), "version", "--format", "{{.Client.Version}}"],
        returncode=1,
        stderr='error during connect: Get "http://x/v1.24/version"\n',
    )
    target = DockerTarget(context="buildbox")
    with pytest.raises(DockerUnavailable) as err:
        steps.build.diagnose(Runner(), SimpleNamespace(docker=target))
    assert str(err.value) == docker_config.daemon_unreachable(target)
