"""steps/__init__.py: the pipeline table (STEPS), RunState and what one step hands the next."""

from __future__ import annotations
import dataclasses
import json
import pytest
from ragbuild.docker_config import DockerTarget
from ragbuild.run.runner import Runner


# --- a build that pushes (plan.build_pushes) ---------------------------------------------------


def _pushing_plan(tmp_path, **options):
    from registry_fakes import build_plan
    from ragbuild.plan import PushPlan

    plan = build_plan(registry="localhost:5000/rag-worker", **options)
    plan = dataclasses.replace(plan, docker=DockerTarget())
    return plan, PushPlan(plan.refs, by_build=True)


def _register_local_image(fp, plan, created, refs=None):
    """What ``docker image inspect`` says of the plan's primary ref after a build."""
    labels = {"org.opencontainers.image.created": created}
    fp.register(
        [fp.program("docker"), "image", "inspect", "--format", fp.any(), plan.primary],
        stdout=f"sha256:{'0e' * 32} 1000 {json.dumps(list(refs or plan.refs))} "
        f"{json.dumps(labels)}\n",
    )


def test_the_pipelines_inspect_step_tells_the_summary_whether_the_build_pushed(fp, tmp_path):
    from ragbuild import steps
    from ragbuild.errors import CommandFailed
    from ragbuild.config import Config, Options

    plan, _ = _pushing_plan(tmp_path)
    facts = steps.facts.Facts(
        git=None, moment=steps.facts.clock({}), docker_config=None, docker=None
    )
    state = steps.RunState(Options(), Config(), facts, plan, build_pushed=True)
    _register_local_image(fp, plan, plan.created, refs=plan.refs[:1])
    with pytest.raises(CommandFailed, match="the build had already pushed its"):
        steps.STEPS[[step.name for step in steps.STEPS].index("inspect")].run(Runner(), state)
