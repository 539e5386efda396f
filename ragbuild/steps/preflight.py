"""The pre-flight step: everything knowable before the long build (the scanner, buildx and
the builder, the push's login and repository)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Optional
from collections.abc import Mapping

from ragbuild.buildx import (
    BUILDX_HINT,
    builder_driver,
    buildx_version_command,
    docker_driver_needs,
    docker_driver_problem,
)
from ragbuild.config import Config
from ragbuild.docker_config import find_cli_plugin
from ragbuild.errors import DockerUnavailable, ToolMissing
from ragbuild.plan import BuildPlan, PushPlan, build_pushes
from ragbuild.run.runner import Runner, resolve
from ragbuild.steps.facts import Facts

if TYPE_CHECKING:  # scan.py is imported when --scan asks for it, guard.py by the context step
    from ragbuild.scan import Scanner


@dataclass(frozen=True)
class Preflight:
    """What the checks before the build found: the scanner to run, the push to make."""

    scanner: Optional[Scanner] = None
    push: Optional[PushPlan] = None


def needs_preflight(plan: BuildPlan) -> bool:
    return bool(plan.options.scan or plan.buildx or plan.options.push)


def preflight(
    runner: Runner,
    plan: BuildPlan,
    config: Config,
    facts: Facts,
    environ: Mapping[str, str] = os.environ,
    classic_walk: bool = False,
) -> Preflight:
    """Everything knowable before the long build, in order: the scanner exists, the client has
    buildx when the build needs it, and the push can go (login, repository). A failed check
    stops the run; a dry run warns and shows the rest (``Runner.stop_or_warn``). ``classic_walk``:
    the context guard took the classic CLI's walk (``guard.ContextReport``)."""
    scanner = pushing = None
    if plan.options.scan:
        from ragbuild import scan

        try:
            scanner = scan.prepare(plan, config)
        except ToolMissing as missing:
            # the scan a real run would make, shown by a dry run after its warning
            scanner = scan.resolve(
                plan.options.scan_command, config.scan_command, which=lambda name, path=None: name
            )
            runner.stop_or_warn(missing, key=resolve(scanner.argv[0]))
    check_buildx(runner, plan)
    if plan.options.push:
        from ragbuild import push_preflight

        pushing = push_preflight.prepare(runner, plan, facts.docker_config, environ)
        plugin = find_cli_plugin("buildx", facts.docker_config, environ)
        by_build = build_pushes(plan, pushing, plugin is not None, classic_walk)
        pushing = replace(pushing, by_build=by_build)
    return Preflight(scanner, pushing)


def check_buildx(runner: Runner, plan: BuildPlan) -> None:
    """A build that needs ``docker buildx build`` stops before anything else runs when the
    client has no buildx (exit 1)."""
    if not plan.buildx:
        return
    result = runner.run(buildx_version_command(plan.buildx))
    if not result.ok:
        raise DockerUnavailable(
            f"this build needs docker buildx (for {'; '.join(plan.buildx)}), "
            f"and this docker client has no buildx: {BUILDX_HINT}"
        )
    check_builder_can(runner, plan)


def check_builder_can(runner: Runner, plan: BuildPlan) -> None:
    """An index of several platforms or a cache export stops before the login and the build
    when the builder cannot make it (docker_driver_problem)."""
    from ragbuild.buildx import builder_inspect_command, driver_status_command

    needs = docker_driver_needs(plan.platforms, plan.cache_to)
    if not needs:
        return
    inspected = runner.run(builder_inspect_command(plan.options.builder, needs))
    driver = builder_driver(inspected.stdout) if inspected.ok else None
    status = runner.run(driver_status_command()).stdout if driver == "docker" else ""
    problem = docker_driver_problem(needs, plan.options.builder, driver, status)
    if problem:
        raise DockerUnavailable(problem)
