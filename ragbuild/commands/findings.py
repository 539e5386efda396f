"""What doctor's checks share: a ``Finding`` (one line: ok, warning or problem, with the fix)
and the ``Doctor`` state the checks fill as they run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional
from collections.abc import Mapping

from ragbuild.docker_config import DockerConfig, DockerTarget, docker_target
from ragbuild.run.console import ERROR, SUCCESS, WARNING
from ragbuild.plan import BuildPlan
from ragbuild.config import Config, Options
from ragbuild.git import GitInfo
from ragbuild.run.command import Command, Kind
from ragbuild.run.runner import Runner

OK, WARN, PROBLEM = "ok", "warning", "problem"
LEVELS = {OK: SUCCESS, WARN: WARNING, PROBLEM: ERROR}


@dataclass(frozen=True)
class Finding:
    status: str  # ok | warning | problem
    check: str  # what was checked: "docker daemon"
    detail: str  # what was found; for a problem, with the fix

    def line(self) -> str:
        return f"{self.status:<8} {self.check}: {self.detail}"


@dataclass
class Doctor:
    """The state the checks share, filled as they run (a later check skips what an earlier
    one found missing)."""

    runner: Runner
    options: Options
    config: Config
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    docker_config: Optional[DockerConfig] = None
    git: Optional[GitInfo] = None
    plan: Optional[BuildPlan] = None
    plan_error: Optional[str] = None  # why the plan could not be made
    git_error: Optional[str] = None  # why git could not say which commit (the build stops)
    client: Optional[str] = None  # docker client version
    daemon: bool = False  # the daemon answered
    buildx: bool = False  # docker buildx works
    buildkit: bool = False  # docker build can use BuildKit (built in, or the buildx plugin)
    builder_missing: bool = False  # --builder / BUILDX_BUILDER names no builder

    @property
    def target(self) -> DockerTarget:
        assert self.docker_config is not None
        return docker_target(self.environ, self.docker_config)


def _docker(*argv: str, assume: str = "") -> Command:
    return Command(("docker", *argv), check=False, kind=Kind.PROBE, assume=assume)


def _one_line(err: Exception) -> str:
    """An error's first line, and the last line of the output it quotes (docker's or aws's
    own reason), on one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"
