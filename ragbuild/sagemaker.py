"""The SageMaker gate: start an image as SageMaker hosting starts it and hold it to the serving
contract of "Use your own inference code with hosting services"
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html), which is
stricter than "answers /ping on 8080":

- the container starts as ``docker run IMAGE serve`` (``serve`` replaces CMD) with the model
  under ``/opt/ml/model``, which the platform mounts read-only: here a read-only tmpfs
  (``--tmpfs /opt/ml/model:ro``), so the gate runs on a remote engine too (no host path);
- ``GET /ping`` answers within 2 s (rule ``ping-2s``); each answer is timed from the request,
  once the port accepts connections (before that nothing is timed: a connection refused, or
  the userland proxy's closed connection, is "not up yet"), and the first 200 is "ready";
- ``POST /invocations`` gives an answer below 500 within 60 s (rule ``invocations-60s``);
- on SIGTERM the container exits within 30 s (rule ``sigterm-30s``), as SageMaker sends SIGKILL
  after that; measured from ``docker kill --signal TERM``;
- with ``SAGEMAKER_BIND_TO_PORT`` set the server listens on that port instead of 8080 (rule
  ``bind-to-port``): a second start with it set to ``MOVED_PORT`` must answer ``/ping`` there.

``run`` returns a ``GateResult`` with the figures; a failure is ``GateFailed`` (a
``SmokeTestFailed``, exit 1) naming the rule, the figure measured and the container's last log
lines. Every container is removed, pass, fail or signal. A dry run prints the commands and takes
every rule to hold. The ``/health`` check (what the image reports) is smoke.py's, done in the
first start when an ``Expectation`` asks for values; a promoted image is expected to report
the commit of its revision label (``revision_expectation``), not the target's version.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional, TypedDict

from ragbuild import diagnose, smoke
from ragbuild.smoke import (
    BIND_VARIABLE,
    MODEL_DIR,
    port_command,
    run_command,
    state_command,
    term_command,
)
from ragbuild.run import signals
from ragbuild.errors import CommandFailed, SmokeTestFailed
from ragbuild.run.console import SUCCESS
from ragbuild.run.command import Result
from ragbuild.run.runner import Runner

if TYPE_CHECKING:
    from ragbuild.plan import BuildPlan

CONTRACT_URL = "https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html"
#: The contract's figures (seconds).
PING_LIMIT = 2.0
INVOCATIONS_LIMIT = 60.0
STOP_LIMIT = 30.0
#: The port the second start asks the server to listen on (any but 8080 would do).
MOVED_PORT = 8090
#: What the gate sends to /invocations: the worker's request shape (src/rag_worker/inference.py);
#: any answer below 500 passes, a 4xx included (the image's own validation answered).
INVOCATION = (b'{"query": "ragbuild gate"}', "application/json")
#: How long one /ping request may take before it counts as unanswered (seconds): longer than
#: the limit, so a slow answer is measured, not only known to be too slow.
PING_PATIENCE = PING_LIMIT + 3.0
#: Seconds between two polls.
POLL = 0.25

RULES = {
    "serve": "the container starts as `docker run IMAGE serve`",
    "ping-2s": f"GET /ping answers within {PING_LIMIT:g} s",
    "ready": "GET /ping answers 200",
    "invocations-60s": f"POST /invocations answers below 500 within {INVOCATIONS_LIMIT:g} s",
    "sigterm-30s": f"the container exits within {STOP_LIMIT:g} s of SIGTERM",
    "bind-to-port": f"the server listens on {BIND_VARIABLE} when it is set",
}


class GateFailed(SmokeTestFailed):
    """An image broke a rule of the contract: ``rule`` (a key of ``RULES``) and ``figure`` (what
    was measured, in words: "3.0 s")."""

    def __init__(self, message: str, *, rule: str, figure: str = ""):
        super().__init__(message)
        self.rule, self.figure = rule, figure
        #: what the metadata's ``gate`` records of this failure (``recorded`` sets it)
        self.record: Optional[dict[str, Any]] = None


def failure(image: str, rule: str, figure: str, detail: str = "") -> GateFailed:
    """``SageMaker contract: <rule in words> [rule]: <figure> (<image>)<detail>; <link>``."""
    return GateFailed(
        f"SageMaker contract: {RULES[rule]} [{rule}]: {figure} ({image}){detail}; "
        f"see {CONTRACT_URL}",
        rule=rule,
        figure=figure,
    )


@dataclass(frozen=True)
class GateResult:
    """What the gate measured (seconds, rounded to ms) and when: for the log and the metadata
    (``figures``)."""

    image: str
    ping_seconds: float  # the slowest /ping answer on 8080, once the port accepted connections
    ready_seconds: float  # from the start to the first /ping 200
    invocations_status: int
    invocations_seconds: float
    stop_seconds: float  # from SIGTERM to the container's exit
    moved_port: int
    moved_ping_seconds: float  # the slowest /ping answer on MOVED_PORT
    health: dict[str, Any] = field(default_factory=dict)  # /health's JSON
    tested_at: str = ""  # UTC, ISO 8601

    def figures(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """Two lines: what /health answered (its JSON last on the line), then the figures."""
        return (
            f"smoke test passed: {self.image} started as `docker run IMAGE serve` answered "
            f"/ping and /health with {json.dumps(self.health, sort_keys=True)}\nSageMaker's "
            f"contract held ({CONTRACT_URL}): {MODEL_DIR} read-only, /ping in "
            f"{self.ping_seconds:.2f}s (limit {PING_LIMIT:g}s), /invocations "
            f"{self.invocations_status} in {self.invocations_seconds:.2f}s (limit "
            f"{INVOCATIONS_LIMIT:g}s), exit {self.stop_seconds:.2f}s after SIGTERM (limit "
            f"{STOP_LIMIT:g}s), {BIND_VARIABLE}={self.moved_port} answered /ping in "
            f"{self.moved_ping_seconds:.2f}s"
        )


# --- HTTP, timed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One timed request: ``status`` None when nothing answered; ``accepted``: the connection
    was accepted and held (a timeout), not refused or closed at once."""

    status: Optional[int]
    seconds: float
    accepted: bool = False
    body: bytes = b""


#: ``(port, method, path, body_and_type or None, timeout) -> Outcome``
Http = Callable[[int, str, str, Optional[tuple[bytes, str]], float], Outcome]


def http_request(
    port: int,
    method: str,
    path: str,
    body: Optional[tuple[bytes, str]],
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """``METHOD http://127.0.0.1:PORT/PATH``, straight to the published port (never through a
    proxy), timed. A connection refused, reset or closed without an answer (docker's userland
    proxy accepts, then closes when nothing listens in the container) is ``accepted=False``; a
    timeout after the connection was made is ``accepted=True``."""
    start = clock()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": body[1]} if body else {}
        conn.request(method, path, body=body[0] if body else None, headers=headers)
        response = conn.getresponse()
        data = response.read(1 << 16)
        return Outcome(response.status, clock() - start, True, data)
    except (socket.timeout, TimeoutError):
        return Outcome(None, clock() - start, True)
    except (OSError, http.client.HTTPException):
        return Outcome(None, clock() - start, False)
    finally:
        conn.close()


# --- the gate -----------------------------------------------------------------------------------


def check(runner: Runner, plan: BuildPlan, image_id: Optional[str] = None) -> GateResult:
    """The smoke test of the image a build just made, as ``plan`` says (start command,
    timeout): the image of ``image_id`` (the build's ``--iidfile``), so a tag another build
    moved meanwhile starts nothing else; ``/health`` must report the build's facts."""
    expect = smoke.Expectation(
        image=image_id or plan.primary,
        version=plan.version,
        environment=plan.env,
        git_commit=plan.git.commit,
        command=plan.smoke_command,
    )
    return run(runner, expect, timeout=plan.limits.smoke_timeout)


@dataclass
class _Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def run(
    runner: Runner,
    expect: smoke.Expectation,
    *,
    timeout: float = smoke.DEFAULT_TIMEOUT,
    http: Optional[Http] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    names: Optional[Callable[[], str]] = None,
) -> GateResult:
    """The gate on ``expect.image`` (its command: ``expect.command``, SageMaker's ``serve``):
    the first start checks readiness (within ``timeout`` seconds), ``/ping``'s time,
    ``/health`` (``expect``), ``/invocations`` and the exit after SIGTERM; the second start
    ``SAGEMAKER_BIND_TO_PORT``. ``GateFailed`` names the first rule broken."""
    http = http or (
        lambda port, method, path, body, limit: http_request(port, method, path, body, limit, clock)
    )
    time_ = _Clock(clock, sleep)
    names = names or smoke.container_name
    image = expect.image
    first = _first_start(runner, expect, timeout, http, time_, names())
    moved = _moved_start(runner, expect, timeout, http, time_, names())
    result = GateResult(image=image, moved_ping_seconds=moved, tested_at=utc_now(), **first)
    runner.report(result.summary(), SUCCESS)
    return result


def utc_now() -> str:
    """Now in UTC, ISO 8601 to the second with ``Z`` (``2026-12-07T14:39:24Z``)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class _Container:
    """One started container: removed on leaving, whatever happened; a failure inside gets the
    container's last log lines."""

    def __init__(
        self, runner: Runner, expect: smoke.Expectation, name: str, port: int, moved: bool = False
    ):
        self.runner, self.expect, self.name = runner, expect, name
        self.port, self.moved = port, moved
        self.started: Optional[Result] = None

    def __enter__(self) -> _Container:
        try:
            self.started = self.runner.run(
                run_command(
                    self.expect.image, self.name, self.expect.command, self.port, self.moved
                )
            )
        except BaseException:
            self._remove()
            raise
        if not self.started.ok:
            self._remove()
            raise GateFailed(
                f"SageMaker contract: {RULES['serve']} [serve]: "
                f"{smoke.start_failure(self.expect, self.started)}; see "
                f"{CONTRACT_URL}",
                rule="serve",
                figure=f"exit {self.started.returncode}",
            )
        return self

    def host_port(self, port: int) -> int:
        """The host port docker published ``port`` on; a container that already exited has
        none, which fails as that exit (with its logs), not as a failed ``docker port``."""
        answer = self.runner.run(port_command(self.name, port))
        if not answer.ok:
            state = self.state()
            if state[:1] != ["true"]:
                code = f" (exit {state[1]})" if len(state) > 1 else ""
                raise failure(
                    self.expect.image,
                    "ready",
                    f"the container exited{code} before /ping answered 200",
                )
            raise SmokeTestFailed(
                f"SageMaker gate of {self.expect.image} could not run: "
                f"`docker port {self.name} {port}/tcp` failed: "
                f"{(answer.stdout + answer.stderr).strip()}"
            )
        return smoke.parse_port(answer.stdout)

    def state(self) -> list[str]:
        return self.runner.run(state_command(self.name)).stdout.split()

    def __exit__(self, kind: Optional[type], error: Optional[BaseException], trace: object) -> None:
        try:
            if isinstance(error, SmokeTestFailed):
                # what the container said, read before it is removed (diagnose.py): its state,
                # a hint for a start that failed (CRLF #! line, not executable, no interpreter)
                state, hint, text = diagnose.why_stopped(self.runner, self.name, smoke.LOG_LINES)
                said = str(error)
                status = (
                    ""
                    if state.running or not state.status or "exit" in said
                    else f" (container {state.describe()})"
                )  # said once, not twice
                hint = f"; {hint}" if hint else ""
                error.args = (
                    f"{said}{status}{hint}\n--- last {smoke.LOG_LINES} log lines of "
                    f"the container ---\n{text or '(no output)'}",
                )
        finally:
            self._remove()

    def _remove(self) -> None:
        with signals.deferred():
            self.runner.run(smoke.remove_command(self.name))


class _FirstStart(TypedDict):
    """The first start's figures, ``GateResult``'s fields."""

    ping_seconds: float
    ready_seconds: float
    invocations_status: int
    invocations_seconds: float
    stop_seconds: float
    moved_port: int
    health: dict[str, Any]


def _first_start(
    runner: Runner, expect: smoke.Expectation, timeout: float, http: Http, time_: _Clock, name: str
) -> _FirstStart:
    image = expect.image
    try:
        with _Container(runner, expect, name, smoke.CONTAINER_PORT) as container:
            port = container.host_port(smoke.CONTAINER_PORT)
            started = time_.now()

            def ready() -> tuple[float, float]:
                slowest = _wait_ping(
                    runner, container, port, smoke.CONTAINER_PORT, timeout, http, time_, image
                )
                return slowest, time_.now() - started

            ping, ready_after = runner.check(
                f"wait up to {timeout:g}s for GET {smoke.READY_PATH} on port "
                f"{smoke.CONTAINER_PORT} to answer 200, each answer within {PING_LIMIT:g}s",
                ready,
                (0.0, 0.0),
            )
            health = runner.check(
                f"check what {smoke.HEALTH_PATH} reports",
                lambda: smoke._health(
                    expect, _answer(http(port, "GET", smoke.HEALTH_PATH, None, PING_PATIENCE))
                ),
                expect.answer(),
            )
            problems = expect.mismatches(health)
            if problems:
                raise SmokeTestFailed(f"{image}: /health answered but {'; '.join(problems)}")
            status, seconds = runner.check(
                f"POST /invocations and expect an answer below 500 within {INVOCATIONS_LIMIT:g}s",
                lambda: _invoke(runner, port, http, image),
                (200, 0.0),
            )
            stop = _stop(runner, container, time_, image)
    except CommandFailed as failed:
        raise SmokeTestFailed(f"SageMaker gate of {image} could not run: {failed}") from None
    return {
        "ping_seconds": round(ping, 3),
        "ready_seconds": round(ready_after, 3),
        "invocations_status": status,
        "invocations_seconds": round(seconds, 3),
        "stop_seconds": round(stop, 3),
        "moved_port": MOVED_PORT,
        "health": health,
    }


def _answer(outcome: Outcome) -> smoke.Answer:
    return outcome.status, outcome.body


def _wait_ping(
    runner: Runner,
    container: _Container,
    port: int,
    container_port: int,
    timeout: float,
    http: Http,
    time_: _Clock,
    image: str,
) -> float:
    """Poll ``/ping`` until it answers 200; every answer (and every held connection) is timed
    against ``PING_LIMIT``. Returns the slowest answer's seconds. A container that exits, or
    no 200 within ``timeout``, fails."""
    deadline = time_.now() + timeout
    slowest = 0.0
    attempt = 0
    with runner.waiting(f"GET /ping on port {container_port} of {image} to answer 200", timeout):
        while True:
            outcome = http(port, "GET", smoke.READY_PATH, None, PING_PATIENCE)
            if outcome.accepted:
                slowest = max(slowest, outcome.seconds)
                if outcome.status is None:
                    raise failure(
                        image,
                        "ping-2s",
                        f"no answer within {PING_PATIENCE:g} s",
                        " once the port accepted the connection",
                    )
                if outcome.seconds > PING_LIMIT:
                    raise failure(
                        image,
                        "ping-2s",
                        f"/ping took {outcome.seconds:.1f} s",
                        " once the port accepted connections",
                    )
                if outcome.status == 200:
                    return slowest
            attempt += 1
            if attempt % 4 == 0:
                state = container.state()
                if state[:1] != ["true"]:
                    code = f" (exit {state[1]})" if len(state) > 1 else ""
                    raise failure(
                        image, "ready", f"the container exited{code} before /ping answered 200"
                    )
            if time_.now() >= deadline:
                said = (
                    f"the last answer was {outcome.status}"
                    if outcome.status is not None
                    else "nothing answered"
                )
                raise failure(
                    image,
                    "ready",
                    f"no 200 within {timeout:g} s ({said})",
                    " (--smoke-timeout, or smoke-timeout in setup.cfg [ragbuild])",
                )
            time_.sleep(POLL)


def _invoke(runner: Runner, port: int, http: Http, image: str) -> tuple[int, float]:
    with runner.waiting(f"POST /invocations of {image} to answer", INVOCATIONS_LIMIT):
        outcome = http(port, "POST", "/invocations", INVOCATION, INVOCATIONS_LIMIT)
    if outcome.status is None:
        how = "no answer" if outcome.accepted else "the connection was closed without an answer"
        raise failure(image, "invocations-60s", f"{how} after {outcome.seconds:.1f} s")
    if outcome.status >= 500:
        raise failure(
            image, "invocations-60s", f"answered {outcome.status} in {outcome.seconds:.1f} s"
        )
    return outcome.status, outcome.seconds


def _stop(runner: Runner, container: _Container, time_: _Clock, image: str) -> float:
    """SIGTERM, then the seconds until the container no longer runs; ``STOP_LIMIT`` passed:
    fails (the container is then removed, ``docker rm -f``: SIGKILL, as SageMaker would)."""
    runner.run(term_command(container.name))
    start = time_.now()

    def wait() -> float:
        with runner.waiting(f"{container.name} to exit after SIGTERM", STOP_LIMIT):
            while True:
                state = container.state()
                elapsed = time_.now() - start
                if state[:1] != ["true"]:
                    return elapsed
                if elapsed >= STOP_LIMIT:
                    raise failure(
                        image,
                        "sigterm-30s",
                        f"still running {elapsed:.0f} s after SIGTERM",
                        "; SageMaker then kills it (SIGKILL): handle "
                        "SIGTERM (PID 1 gets no default action for it: exec the "
                        "server, or run it under an init such as --init/tini)",
                    )
                time_.sleep(POLL)

    return runner.check(
        f"wait up to {STOP_LIMIT:g}s for the container to exit after SIGTERM", wait, 0.0
    )


def _moved_start(
    runner: Runner, expect: smoke.Expectation, timeout: float, http: Http, time_: _Clock, name: str
) -> float:
    """The second start, ``SAGEMAKER_BIND_TO_PORT=MOVED_PORT``: ``/ping`` must answer there.
    When it does not, whether 8080 answers instead says why."""
    image = expect.image
    try:
        with _Container(runner, expect, name, MOVED_PORT, moved=True) as container:
            port = container.host_port(MOVED_PORT)
            default = container.host_port(smoke.CONTAINER_PORT)

            def ready() -> float:
                try:
                    return _wait_ping(
                        runner, container, port, MOVED_PORT, timeout, http, time_, image
                    )
                except GateFailed as failed:
                    if failed.rule != "ready":
                        raise
                    other = http(default, "GET", smoke.READY_PATH, None, PING_PATIENCE)
                    instead = (
                        f"; it answers on {smoke.CONTAINER_PORT} instead ({other.status})"
                        if other.status is not None
                        else ""
                    )
                    raise failure(
                        image,
                        "bind-to-port",
                        f"with {BIND_VARIABLE}={MOVED_PORT}, {failed.figure} on port "
                        f"{MOVED_PORT}{instead}",
                    ) from None

            return runner.check(
                f"start it again with {BIND_VARIABLE}={MOVED_PORT} and wait up "
                f"to {timeout:g}s for GET /ping on port {MOVED_PORT}",
                ready,
                0.0,
            )
    except CommandFailed as failed:
        raise SmokeTestFailed(f"SageMaker gate of {image} could not run: {failed}") from None
