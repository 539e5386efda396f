"""The smoke test: start the built image, wait for /health, check it reports what was built.

The container always goes away again (``docker rm -f``), pass or fail; a failure carries the
container's last log lines. Docker picks the host port (``-p 127.0.0.1::8080``), so two runs
never race for one.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from ragbuild.errors import CommandFailed, SmokeTestFailed
from ragbuild.output import SUCCESS
from ragbuild.plan import Command, Kind

CONTAINER_PORT = 8080
DEFAULT_TIMEOUT = 60.0
LOG_LINES = 30


@dataclass(frozen=True)
class Expectation:
    image: str
    version: str = None  # None: not checked
    environment: str = None
    git_commit: str = None

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


def run_command(image: str) -> Command:
    return Command(("docker", "run", "-d", "-p", f"127.0.0.1::{CONTAINER_PORT}",
                    "--label", "org.ragbuild.smoke=1", image), assume="CONTAINER")


def port_command(container: str) -> Command:
    return Command(("docker", "port", container, f"{CONTAINER_PORT}/tcp"), kind=Kind.PROBE,
                   assume=f"127.0.0.1:{CONTAINER_PORT}")


def state_command(container: str) -> Command:
    return Command(("docker", "inspect", "--format", "{{.State.Running}}", container),
                   check=False)


def logs_command(container: str) -> Command:
    return Command(("docker", "logs", "--tail", str(LOG_LINES), container), check=False)


def remove_command(container: str) -> Command:
    return Command(("docker", "rm", "-f", container), check=False)


def parse_port(output: str) -> int:
    """``docker port`` prints ``127.0.0.1:49153`` (one line per binding)."""
    for line in output.splitlines():
        host, _, port = line.strip().rpartition(":")
        if port.isdigit():
            return int(port)
    raise SmokeTestFailed(f"docker port printed no host port: {output.strip()!r}")


def fetch_health(port: int, timeout: float = 2.0):
    """The /health JSON, or None while the server does not answer yet (no connection, an error
    status). A 200 whose body is not JSON is an answer, and a wrong one: SmokeTestFailed."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as response:
            if response.status != 200:
                return None
            body = response.read()
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        return None
    try:
        return json.loads(body.decode())
    except ValueError:  # also UnicodeDecodeError
        raise SmokeTestFailed(f"/health answered 200 with a body that is not JSON: "
                              f"{body[:200]!r}") from None


def check(runner, plan, *, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Smoke-test the image a build just made."""
    return run(runner, Expectation(image=plan.primary, version=plan.version, environment=plan.env,
                                   git_commit=plan.git.commit), timeout=timeout)


def run(runner, expect: Expectation, *, timeout: float = DEFAULT_TIMEOUT,
        fetch=None, clock=time.monotonic, sleep=time.sleep) -> dict:
    """Start, wait for /health, check, remove. A dry run prints the commands with the
    placeholder CONTAINER for the id ``docker run`` would print."""
    fetch = fetch or fetch_health
    container = None
    try:
        container = runner.run(run_command(expect.image)).stdout.strip()
        port = parse_port(runner.run(port_command(container)).stdout)
        health = runner.check(f"wait up to {timeout:g}s for /health and check what it reports",
                              lambda: _wait(runner, container, port, timeout, fetch, clock, sleep),
                              assume=expect.answer())
        if not isinstance(health, dict):
            raise SmokeTestFailed(f"{expect.image}: /health answered {json.dumps(health)[:200]}, "
                                  "not a JSON object")
        problems = expect.mismatches(health)
        if problems:
            raise SmokeTestFailed(f"{expect.image}: /health answered but {'; '.join(problems)}")
        runner.report(f"smoke test passed: {expect.image} answered /health with "
                      f"{json.dumps(health, sort_keys=True)}", SUCCESS)
        return health
    except SmokeTestFailed as failure:
        logs = runner.run(logs_command(container))
        text = (logs.stdout + logs.stderr).strip()
        raise SmokeTestFailed(f"{failure}\n--- last {LOG_LINES} log lines of the container ---\n"
                              f"{text or '(no output)'}") from None
    except CommandFailed as failure:
        raise SmokeTestFailed(f"smoke test of {expect.image} could not run: {failure}") from None
    finally:
        if container:
            runner.run(remove_command(container))


def _wait(runner, container, port, timeout, fetch, clock, sleep) -> dict:
    deadline = clock() + timeout
    attempt = 0
    while True:
        health = fetch(port)
        if health is not None:
            return health
        attempt += 1
        if attempt % 5 == 0:
            state = runner.run(state_command(container))
            if state.stdout.strip() != "true":
                raise SmokeTestFailed(f"{container[:12]} exited before /health answered")
        if clock() >= deadline:
            raise SmokeTestFailed(f"/health did not answer within {timeout:.0f}s")
        sleep(0.5)
