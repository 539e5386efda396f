"""The smoke test: start the built image the way production does, wait for it to be ready, and
check it reports what was built.

By default that is SageMaker's contract
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html): the
container is started as ``docker run IMAGE serve``, listens on port 8080, and is ready when
``GET /ping`` answers 200. Then ``GET /health`` must report the build's version, environment
and commit. Another start command can be configured (``--smoke-command``, ``smoke-command`` in
setup.cfg ``[ragbuild]``); the timeout too (``--smoke-timeout``, limits.py).

The container has a name of its own (``ragbuild-smoke-<random>``), so it always goes away again
(``docker rm -f NAME``), pass, fail or signal, even when ``docker run`` created it and then
failed to start it. A failure after the start carries the container's state (exit code), a
hint for the usual causes of a start that failed (diagnose.py: CRLF ``#!`` line, not
executable, missing interpreter) and its last log lines, all read before it is removed. Docker
picks the host port (``-p 127.0.0.1::8080``), so two runs never race for one.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from typing import Callable, Optional, Sequence
from dataclasses import dataclass

from ragbuild import diagnose, signals
from ragbuild.errors import CommandFailed, SmokeTestFailed
from ragbuild.limits import Limits
from ragbuild.output import SUCCESS
from ragbuild.plan import DEFAULT_SMOKE_COMMAND, BuildPlan, Command, Kind
from ragbuild.runner import Result, Runner

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
    command: tuple = (DEFAULT_SMOKE_COMMAND,)  # docker run IMAGE <command>

    def answer(self) -> dict:
        """The /health answer this expects (what a dry run assumes)."""
        wanted = {"status": "ok", "version": self.version, "environment": self.environment,
                  "git_commit": self.git_commit}
        return {key: value for key, value in wanted.items() if value is not None}

    def mismatches(self, health: dict) -> list:
        wanted = {"status": "ok", "version": self.version, "environment": self.environment,
                  "git_commit": self.git_commit}
        return [f"{key} is {health.get(key)!r}, expected {value!r}"
                for key, value in wanted.items() if value is not None and health.get(key) != value]


def container_name() -> str:
    """A name no other run uses, so the cleanup never depends on ``docker run``'s output."""
    return f"ragbuild-smoke-{secrets.token_hex(6)}"


def run_command(image: str, name: str,
                command: Sequence[str] = (DEFAULT_SMOKE_COMMAND,)) -> Command:
    return Command(("docker", "run", "-d", "--name", name, "-p", f"127.0.0.1::{CONTAINER_PORT}",
                    "--label", SMOKE_LABEL, image, *command), check=False, assume=name)


def port_command(container: str) -> Command:
    """Checked by ``run``: a container that died at once has no public port, and the failure
    is then diagnosed from the container (``diagnose.why_stopped``), not from docker port."""
    return Command(("docker", "port", container, f"{CONTAINER_PORT}/tcp"), kind=Kind.PROBE,
                   check=False, assume=f"127.0.0.1:{CONTAINER_PORT}")


def state_command(container: str) -> Command:
    return Command(("docker", "inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}",
                    container), check=False, kind=Kind.PROBE, assume="true 0")


def logs_command(container: str) -> Command:
    return Command(("docker", "logs", "--tail", str(LOG_LINES), container), check=False,
                   kind=Kind.PROBE)


def remove_command(container: str) -> Command:
    return Command(("docker", "rm", "-f", container), check=False)


def parse_port(output: str) -> int:
    """``docker port`` prints ``127.0.0.1:49153`` (one line per binding)."""
    for line in output.splitlines():
        host, _, port = line.strip().rpartition(":")
        if port.isdigit():
            return int(port)
    raise SmokeTestFailed(f"docker port printed no host port: {output.strip()!r}")


#: The smoke test's requests go straight to the container's published port: never through a
#: proxy (``urlopen`` would send them through the shell's ``http_proxy``, as Python's
#: ``no_proxy`` bypass does not cover 127.0.0.1 unless it is listed).
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(port: int, path: str, timeout: float = 2.0) -> Answer:
    """``(status, body)`` of ``GET http://127.0.0.1:PORT/PATH``, never through a proxy
    (``DIRECT``); ``(None, b"")`` while nothing answers (no connection, a reset, a timeout)."""
    try:
        with DIRECT.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:  # an answer, with an error status
        return err.code, b""
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        return None, b""


def start_failure(expect: Expectation, result: Result) -> str:
    """One line: how ``docker run IMAGE <command>`` failed, with the fix SageMaker needs when
    the command is not an executable on the image's PATH."""
    from ragbuild.manage import docker_reason

    reason = docker_reason(result)
    started = " ".join(("docker run IMAGE", *expect.command))
    hint = ""
    lowered = reason.lower()
    if "executable file not found" in lowered or "permission denied" in lowered \
            or "no such file or directory" in lowered:
        hint = (f"; `{expect.command[0]}` must be an executable file on the image's PATH "
                "(set its mode in the image: COPY --chmod=755 or RUN chmod 755), as the "
                "platform starts the image that way")
    return (f"smoke test of {expect.image}: `{started}` failed to start (exit "
            f"{result.returncode}): {reason}{hint}")


def check(runner: Runner, plan: BuildPlan, image_id: Optional[str] = None) -> dict:
    """Smoke-test the image a build just made, as ``plan`` says (start command, timeout): the
    image of ``image_id`` (the build's ``--iidfile``), so a tag another build moved meanwhile
    starts nothing else."""
    expect = Expectation(image=image_id or plan.primary, version=plan.version, environment=plan.env,
                         git_commit=plan.git.commit, command=plan.smoke_command)
    return run(runner, expect, timeout=plan.limits.smoke_timeout)


def run(runner: Runner, expect: Expectation, *, timeout: float = DEFAULT_TIMEOUT,
        name: Optional[str] = None, fetch: Optional[Callable[[int, str], Answer]] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> dict:
    """Start, wait for ``/ping``, check ``/health``, remove. A dry run prints the commands and
    takes /health to answer what is expected. ``fetch(port, path)`` returns ``(status, body)``
    (``http_get``)."""
    fetch = fetch or http_get
    name = name or container_name()
    started = None
    try:
        started = runner.run(run_command(expect.image, name, expect.command))
        if not started.ok:
            raise SmokeTestFailed(start_failure(expect, started))
        published = runner.run(port_command(name))
        if not published.ok:  # died at once: the port went with it
            raise SmokeTestFailed(f"smoke test of {expect.image}: `docker run IMAGE "
                                  f"{' '.join(expect.command)}` stopped at once, before "
                                  f"{READY_PATH} could be asked")
        port = parse_port(published.stdout)

        def probe() -> dict:
            _wait_ready(runner, name, port, timeout, fetch, clock, sleep)
            return _health(expect, fetch(port, HEALTH_PATH))

        health = runner.check(f"wait up to {timeout:g}s for GET {READY_PATH} to answer 200, then "
                              f"check what {HEALTH_PATH} reports", probe, assume=expect.answer())
        problems = expect.mismatches(health)
        if problems:
            raise SmokeTestFailed(f"{expect.image}: /health answered but {'; '.join(problems)}")
        runner.report(f"smoke test passed: {expect.image} started as `docker run IMAGE "
                      f"{' '.join(expect.command)}` answered {READY_PATH} and {HEALTH_PATH} with "
                      f"{json.dumps(health, sort_keys=True)}", SUCCESS)
        return health
    except SmokeTestFailed as failure:
        if started is None or not started.ok:  # never ran: docker's own reason is the message
            raise
        # what the container said, read before it is removed (``finally``) or asked again
        state, hint, text = diagnose.why_stopped(runner, name, LOG_LINES)
        status = ("" if state.running or not state.status or "exited (exit" in str(failure)
                  else f" (container {state.describe()})")  # said once, not twice
        hint = f"; {hint}" if hint else ""
        raise SmokeTestFailed(f"{failure}{status}{hint}\n--- last {LOG_LINES} log lines of the "
                              f"container ---\n{text or '(no output)'}") from None
    except CommandFailed as failure:
        raise SmokeTestFailed(f"smoke test of {expect.image} could not run: {failure}") from None
    finally:
        # also after a failed start (docker run leaves a Created container) and on a signal; a
        # second signal meanwhile (CI's repeated SIGTERM, a second Ctrl-C) waits until it is done
        with signals.deferred():
            runner.run(remove_command(name))


def _health(expect: Expectation, answer: Answer) -> dict:
    status, body = answer
    if status != 200:
        raise SmokeTestFailed(f"{expect.image}: {READY_PATH} answered 200 but {HEALTH_PATH} "
                              f"answered {status or 'nothing'}")
    try:
        health = json.loads(body.decode())
    except ValueError:  # also UnicodeDecodeError
        raise SmokeTestFailed(f"{HEALTH_PATH} answered 200 with a body that is not JSON: "
                              f"{body[:200]!r}") from None
    if not isinstance(health, dict):
        raise SmokeTestFailed(f"{expect.image}: {HEALTH_PATH} answered "
                              f"{json.dumps(health)[:200]}, not a JSON object")
    return health


def _wait_ready(runner: Runner, container: str, port: int, timeout: float,
                fetch: Callable[[int, str], Answer], clock: Callable[[], float],
                sleep: Callable[[float], None]) -> None:
    """Poll ``/ping`` until it answers 200; every fifth miss, check the container still runs."""
    deadline = clock() + timeout
    attempt = 0
    while True:
        status, _ = fetch(port, READY_PATH)
        if status == 200:
            return
        attempt += 1
        if attempt % 5 == 0:
            state = runner.run(state_command(container)).stdout.split()
            if state[:1] != ["true"]:
                code = f" (exit {state[1]})" if len(state) > 1 else ""
                raise SmokeTestFailed(f"{container} exited{code} before {READY_PATH} answered")
        if clock() >= deadline:
            said = f" (last answer: {status})" if status is not None else ""
            raise SmokeTestFailed(f"{READY_PATH} did not answer 200 within {timeout:g}s{said} "
                                  "(--smoke-timeout, or smoke-timeout in setup.cfg [ragbuild])")
        sleep(0.5)
