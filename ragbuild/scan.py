"""``--scan``: a vulnerability gate between the build and the push.

The scanner is chosen before the build (so a missing one stops the run before the long build):
``--scan-command``, else ``scan-command`` in setup.cfg ``[ragbuild]``, else trivy when it is on
PATH; none is an error, never a silent pass. After the build, the summary and the smoke test it
runs on the built image by its ID, its output streamed; a non-zero exit stops the run before
any push.
Like the other steps, this module starts no process: it hands a ``Command`` to the runner.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional
from collections.abc import Mapping

from ragbuild.errors import ScanFailed, ToolMissing, UsageError
from ragbuild.run.console import SUCCESS
from ragbuild.plan import BuildPlan
from ragbuild.config import PLACEHOLDER, Config, parse_scan_command
from ragbuild.run.command import Command, Mode

if TYPE_CHECKING:
    from ragbuild.run.runner import Runner

#: ``shutil.which``'s shape: (name, path=None) -> the program's path or None.
Which = Callable[..., Optional[str]]

#: The default scanner: trivy fails (exit 1) on HIGH or CRITICAL findings.
TRIVY = "trivy image --exit-code 1 --severity HIGH,CRITICAL {image}"


@dataclass(frozen=True)
class Scanner:
    argv: tuple[str, ...]  # words, one or more holding {image}
    source: str  # where it came from, for messages


def prepare(
    plan: BuildPlan,
    config: Config,
    *,
    which: Which = shutil.which,
    environ: Mapping[str, str] = os.environ,
) -> Scanner:
    """Before the build: the scanner must exist, and there must be a local image to scan."""
    if plan.multi_platform:
        raise UsageError(
            "--scan scans the local image, and a multi-platform build leaves none (it "
            "pushes straight to the registry); scan a --platform linux/amd64 build"
        )
    return resolve(plan.options.scan_command, config.scan_command, which=which, environ=environ)


def resolve(
    command: Optional[str],
    configured: Optional[str],
    *,
    which: Which = shutil.which,
    environ: Mapping[str, str] = os.environ,
) -> Scanner:
    """The scanner to run: the flag's command, setup.cfg's, or trivy found on PATH."""
    if command is not None:
        scanner = Scanner(parse_scan_command(command, "--scan-command"), "--scan-command")
    elif configured:
        source = "setup.cfg [ragbuild] scan-command"
        scanner = Scanner(parse_scan_command(configured, source), source)
    elif which("trivy", path=environ.get("PATH")):
        scanner = Scanner(tuple(shlex.split(TRIVY)), "trivy on PATH")
    else:
        raise ToolMissing(
            "--scan found no scanner: install trivy (https://trivy.dev), or name one "
            "with --scan-command 'grype {image} --fail-on high' or scan-command in "
            "setup.cfg [ragbuild]"
        )
    program = _program(scanner.argv[0], environ)
    if not which(program, path=environ.get("PATH")):
        raise ToolMissing(
            f"the scanner {program} ({scanner.source}) is not installed or not executable"
        )
    return scanner


def _program(name: str, environ: Mapping[str, str]) -> str:
    """The binary the runner would start (``DOCKER`` may name another docker)."""
    from ragbuild.run.runner import PROGRAM_ENV

    variable = PROGRAM_ENV.get(name)
    return (environ.get(variable) if variable else None) or name


def scan_command(scanner: Scanner, image: str, docker_host: Optional[str] = None) -> Command:
    """The scanner's own output streams to the terminal: its findings are the message.
    ``docker_host``: the daemon holding the image, for a scanner other than docker (which gets
    the runner's ``--context``) when the build ran on another context's builder
    (``DockerTarget.endpoint``)."""
    argv = tuple(word.replace(PLACEHOLDER, image) for word in scanner.argv)
    env = (("DOCKER_HOST", docker_host),) if docker_host and argv[0] != "docker" else ()
    return Command(argv, env=env, mode=Mode.STREAM, check=False)


def run(runner: Runner, scanner: Scanner, plan: BuildPlan, image_id: Optional[str] = None) -> None:
    """Scan the built image: ``{image}`` is its ID (the build's ``--iidfile``; trivy and grype
    take an ID as they take a name), so the scan reads this run's image even when another build
    took its tags meanwhile."""
    image = image_id or plan.primary
    result = runner.run(
        scan_command(scanner, image, plan.docker.endpoint() if plan.docker is not None else None)
    )
    if not result.ok:
        pushed = "; nothing was pushed" if plan.options.push else ""
        raise ScanFailed(
            f"the vulnerability scan of {image} failed (exit {result.returncode}; "
            f"its findings are above){pushed}"
        )
    runner.report(f"vulnerability scan passed: {image}", SUCCESS)
