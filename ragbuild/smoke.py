"""The smoke test's parts: what ``/health`` must report (``Expectation``), the container's name,
its cleanup and logs, and how a failed start reads. The smoke test itself (``--smoke-test``,
``smoke``) is the SageMaker gate, sagemaker.py, which starts the image as SageMaker does
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html) and uses
these. Another start command can be configured (``--smoke-command``, ``smoke-command`` in
setup.cfg ``[ragbuild]``); the timeout too (``--smoke-timeout``, limits.py).

Each container has a name of its own (``ragbuild-smoke-<random>``), so it always goes away again
(``docker rm -f NAME``), pass, fail or signal, even when ``docker run`` created it and then
failed to start it. Docker picks the host port (``-p 127.0.0.1::8080``), so two runs never race
for one.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Optional
from dataclasses import dataclass

from collections.abc import Mapping, Sequence

from ragbuild.errors import SmokeTestFailed
from ragbuild.limits import Limits
from ragbuild.config import DEFAULT_SMOKE_COMMAND
from ragbuild.run.command import Command, Kind
from ragbuild.plan import REVISION_LABEL
from ragbuild.run.command import Result
from ragbuild.run.runner import Runner

#: ``(HTTP status or None while nothing answers, body)``
Answer = tuple[Optional[int], bytes]

#: SageMaker sends requests to port 8080 of the container.
CONTAINER_PORT = 8080
#: SageMaker's readiness check; the build facts come from HEALTH_PATH.
READY_PATH = "/ping"
HEALTH_PATH = "/health"
DEFAULT_TIMEOUT = Limits().smoke_timeout
LOG_LINES = 30
SMOKE_LABEL = "org.ragbuild.smoke=1"


@dataclass(frozen=True)
class Expectation:
    image: str
    version: Optional[str] = None  # None: not checked
    environment: Optional[str] = None
    git_commit: Optional[str] = None
    command: tuple[str, ...] = (DEFAULT_SMOKE_COMMAND,)  # docker run IMAGE <command>

    def answer(self) -> dict[str, str]:
        """The /health answer this expects (what a dry run assumes)."""
        wanted = {
            "status": "ok",
            "version": self.version,
            "environment": self.environment,
            "git_commit": self.git_commit,
        }
        return {key: value for key, value in wanted.items() if value is not None}

    def mismatches(self, health: Mapping[str, Any]) -> list[str]:
        wanted = {
            "status": "ok",
            "version": self.version,
            "environment": self.environment,
            "git_commit": self.git_commit,
        }
        return [
            f"{key} is {health.get(key)!r}, expected {value!r}"
            for key, value in wanted.items()
            if value is not None and health.get(key) != value
        ]


#: Lines docker adds after the reason: ``docker run``'s "See 'docker run --help'.", ``docker
#: start``'s "Error: failed to start containers: NAME".
DOCKER_TRAILERS = ("See 'docker ", "Error: failed to start containers")


def docker_reason(result: Result) -> str:
    """The one line of a failed docker command's output that says why (the daemon's, on
    stderr), or its exit status when it said nothing."""
    text = result.stderr if result.stderr.strip() else result.stdout  # run -d: stdout is the id
    said = [line.strip() for line in text.splitlines() if line.strip()]
    why = [line for line in said if not line.startswith(DOCKER_TRAILERS)]
    return (why or said or [f"exit {result.returncode}"])[-1]


def container_name() -> str:
    """A name no other run uses, so the cleanup never depends on ``docker run``'s output."""
    return f"ragbuild-smoke-{secrets.token_hex(6)}"


def logs_command(container: str) -> Command:
    return Command(
        ("docker", "logs", "--tail", str(LOG_LINES), container), check=False, kind=Kind.PROBE
    )


def remove_command(container: str) -> Command:
    return Command(("docker", "rm", "-f", container), check=False)


def parse_port(output: str) -> int:
    """``docker port`` prints ``127.0.0.1:49153`` (one line per binding)."""
    for line in output.splitlines():
        host, _, port = line.strip().rpartition(":")
        if port.isdigit():
            return int(port)
    raise SmokeTestFailed(f"docker port printed no host port: {output.strip()!r}")


def start_failure(expect: Expectation, result: Result) -> str:
    """One line: how ``docker run IMAGE <command>`` failed, with the fix SageMaker needs when
    the command is not an executable on the image's PATH."""

    reason = docker_reason(result)
    started = " ".join(("docker run IMAGE", *expect.command))
    hint = ""
    lowered = reason.lower()
    if (
        "executable file not found" in lowered
        or "permission denied" in lowered
        or "no such file or directory" in lowered
    ):
        hint = (
            f"; `{expect.command[0]}` must be an executable file on the image's PATH "
            "(set its mode in the image: COPY --chmod=755 or RUN chmod 755), as the "
            "platform starts the image that way"
        )
    return (
        f"smoke test of {expect.image}: `{started}` failed to start (exit "
        f"{result.returncode}): {reason}{hint}"
    )


def _health(expect: Expectation, answer: Answer) -> dict[str, Any]:  # /health's JSON
    status, body = answer
    if status != 200:
        raise SmokeTestFailed(
            f"{expect.image}: {READY_PATH} answered 200 but {HEALTH_PATH} "
            f"answered {status or 'nothing'}"
        )
    try:
        health = json.loads(body.decode())
    except ValueError:  # also UnicodeDecodeError
        raise SmokeTestFailed(
            f"{HEALTH_PATH} answered 200 with a body that is not JSON: {body[:200]!r}"
        ) from None
    if not isinstance(health, dict):
        raise SmokeTestFailed(
            f"{expect.image}: {HEALTH_PATH} answered {json.dumps(health)[:200]}, not a JSON object"
        )
    return health


#: SageMaker's start: the model directory, and the variable that may move the serving port
#: (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html).
MODEL_DIR = "/opt/ml/model"
BIND_VARIABLE = "SAGEMAKER_BIND_TO_PORT"


# --- commands -----------------------------------------------------------------------------------


def run_command(
    image: str, name: str, command: Sequence[str], port: int, moved: bool = False
) -> Command:
    """``docker run -d`` as SageMaker starts the image: ``IMAGE serve``, the model directory a
    read-only tmpfs, the serving port published on a free loopback port; ``moved``: with
    ``SAGEMAKER_BIND_TO_PORT=<port>``, 8080 published too (to tell "listens on 8080 instead")."""
    argv = [
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--tmpfs",
        f"{MODEL_DIR}:ro",
        "-p",
        f"127.0.0.1::{port}",
    ]
    if moved:
        argv += ["-p", f"127.0.0.1::{CONTAINER_PORT}", "-e", f"{BIND_VARIABLE}={port}"]
    argv += ["--label", SMOKE_LABEL, image, *command]
    return Command(tuple(argv), check=False, assume=name)


def port_command(container: str, port: int) -> Command:
    return Command(
        ("docker", "port", container, f"{port}/tcp"),
        kind=Kind.PROBE,
        assume=f"127.0.0.1:{port}",
        check=False,
    )


def state_command(container: str) -> Command:
    """Whether the container runs, and its exit code: a poll (no ``+`` line each time)."""
    return Command(
        ("docker", "inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", container),
        check=False,
        kind=Kind.PROBE,
        assume="false 0",
        poll=True,
    )


def term_command(container: str) -> Command:
    """SIGTERM, as SageMaker stops a container (``docker stop`` would send the image's
    STOPSIGNAL)."""
    return Command(("docker", "kill", "--signal", "TERM", container), check=False)


def labels_command(image: str) -> Command:
    return Command(
        ("docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image),
        kind=Kind.PROBE,
        assume=json.dumps({REVISION_LABEL: "GIT_COMMIT"}),
    )


# --- what a promoted image must report ----------------------------------------------------------


def revision_of(labels: Optional[Mapping[str, str]]) -> Optional[str]:
    """The commit an image was built from: its ``org.opencontainers.image.revision`` label
    (the Dockerfile sets it from GIT_COMMIT); None when missing, empty or ``unknown``."""
    value = (labels or {}).get(REVISION_LABEL) or ""
    return value if value and value != "unknown" else None


def revision_expectation(runner: Runner, image: str) -> Expectation:
    """What the gate of a promote expects ``/health`` to report: ``git_commit`` equal to the
    image's own revision label (a promoted dev build keeps its build's VERSION and ENVIRONMENT
    unless the deployment sets them, so neither is checked). ``SmokeTestFailed`` when the image
    has no revision label: nothing to check the image against."""
    out = runner.run(labels_command(image)).stdout.strip()
    try:
        labels = json.loads(out) if out else {}
    except ValueError:
        labels = {}
    revision = revision_of(labels if isinstance(labels, dict) else {})
    if revision is None:
        raise SmokeTestFailed(
            f"{image} has no {REVISION_LABEL} label, so what /health reports "
            "cannot be checked against the commit it was built from"
        )
    return Expectation(image=image, git_commit=revision)
