"""The build as a workflow of small steps over one typed run state (like nox's sessions).

facts -> plan -> context guard -> pre-flight -> build -> summary -> smoke test -> scan -> push
-> verify -> record. ``gather`` makes the facts and the plan, which is final before the build:
what to push and how is decided there or by the pre-flight, whose ``PushPlan`` the build
consumes. ``run`` then runs each ``Step`` that applies, timed once by the loop; a failing step
stops the run, and the metadata recorder (metadata.py) writes what the state holds either way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Optional

from ragbuild import steps
from ragbuild.plan import BuildPlan, Config, Options, describe_plan
from ragbuild.runner import Runner

if TYPE_CHECKING:  # imported where a step needs them
    from ragbuild import guard, push


@dataclass
class RunState:
    """What one build run knows, filled in step by step. ``digests`` is filled as each ref is
    pushed (a failed push still records what went); the other fields are each one step's
    typed result."""

    options: Options
    config: Config
    facts: steps.Facts
    plan: BuildPlan
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    preflight: steps.Preflight = field(default_factory=steps.Preflight)
    context: Optional[guard.ContextReport] = None  # what the context guard found
    image: Optional[steps.Image] = None
    health: Optional[dict] = None  # what /health answered in the smoke test
    digests: dict = field(default_factory=dict)  # ref -> digest docker push reported
    pinned: Optional[str] = None  # <repository>@<digest>, verified
    times: dict = field(default_factory=dict)  # step -> seconds, in the order they ran


# --- the steps, each from the state's typed fields to one typed field -------------------------


def _context(runner: Runner, state: RunState) -> None:
    from ragbuild import guard

    state.context = guard.check(runner, state.plan)


def _preflight(runner: Runner, state: RunState) -> None:
    state.preflight = steps.preflight(runner, state.plan, state.config, state.facts, state.environ)


def _build(runner: Runner, state: RunState) -> None:
    steps.build(runner, state.plan, state.preflight.push)


def _inspect(runner: Runner, state: RunState) -> None:
    state.image = steps.summarize(runner, state.plan)


def _smoke(runner: Runner, state: RunState) -> None:
    from ragbuild import smoke

    state.health = smoke.check(runner, state.plan)


def _scan(runner: Runner, state: RunState) -> None:
    from ragbuild import scan

    assert state.preflight.scanner is not None
    scan.run(runner, state.preflight.scanner, state.plan)  # no push after a failed scan


def _push_context(state: RunState) -> push.Context:
    from ragbuild import push

    assert state.preflight.push is not None
    return push.Context(state.plan, state.preflight.push, state.facts.docker_config, state.environ)


def _push(runner: Runner, state: RunState) -> None:
    from ragbuild import push

    push.push(runner, _push_context(state), state.digests)


def _verify(runner: Runner, state: RunState) -> None:
    from ragbuild import push

    state.pinned = push.verify(runner, _push_context(state), state.digests)


@dataclass(frozen=True)
class Step:
    name: str  # as the metadata's ``steps`` and ``failed_step`` name it
    run: Callable[[Runner, RunState], None]
    applies: Callable[[RunState], bool] = lambda state: True


STEPS = (
    Step("context", _context),  # before login and the long build
    Step("pre-flight", _preflight, lambda s: steps.needs_preflight(s.plan)),
    Step("build", _build),
    Step("inspect", _inspect),
    Step("smoke", _smoke, lambda s: s.options.smoke_test),
    Step("scan", _scan, lambda s: s.preflight.scanner is not None),
    # a multi-platform build pushed itself
    Step("push", _push, lambda s: s.preflight.push is not None and not s.plan.multi_platform),
    Step("verify", _verify, lambda s: s.preflight.push is not None),
)


def gather(runner: Runner, options: Options, config: Config,
           environ: Mapping[str, str] = os.environ) -> RunState:
    """Facts, then the plan, printed before any step runs."""
    facts = steps.gather_facts(runner, options, environ)
    plan = steps.make_plan(options, config, facts)
    git = facts.git
    if not git.sha:
        runner.log(f"warning: {git.reason}: no git-<sha> tag, GIT_COMMIT=unknown")
    elif git.dirty:
        runner.log(f"warning: the git tree has uncommitted changes ({git.describe_changes()}): "
                   f"tagging git-{git.sha}-dirty")
    for line in describe_plan(plan):
        runner.log(line)
    return RunState(options, config, facts, plan, environ)


def run(runner: Runner, state: RunState, *, clock: Callable[[], float] = time.monotonic) -> RunState:
    """Run every step that applies, in order, each timed; the metadata is written at the end,
    and also when a step fails or is interrupted (then the error goes on to the CLI)."""
    from ragbuild.metadata import Recorder

    recorder = Recorder.for_state(state, runner)
    for step in STEPS:
        if not step.applies(state):
            continue
        started = clock()
        try:
            step.run(runner, state)
        except BaseException as err:  # also a bug's exception: the record of the failure matters
            state.times[step.name] = clock() - started
            recorder.failed(step.name, err)
            raise
        state.times[step.name] = clock() - started
    recorder.finish()
    return state
