"""steps/__init__.py: the pipeline table (STEPS), RunState and what one step hands the next."""

from __future__ import annotations
import pytest
from ragbuild.run.runner import Runner
from registry_fakes import pushing_plan, register_local_image


# --- a build that pushes (plan.build_pushes) ---------------------------------------------------


def test_the_pipelines_inspect_step_tells_the_summary_whether_the_build_pushed(fp, tmp_path):
    from ragbuild import steps
    from ragbuild.errors import CommandFailed
    from ragbuild.config import Config, Options

    plan, _ = pushing_plan()
    facts = steps.facts.Facts(
        git=None, moment=steps.facts.clock({}), docker_config=None, docker=None
    )
    state = steps.RunState(Options(), Config(), facts, plan, build_pushed=True)
    register_local_image(fp, plan, plan.created, refs=plan.refs[:1])
    with pytest.raises(CommandFailed, match="the build had already pushed its"):
        steps.STEPS[[step.name for step in steps.STEPS].index("inspect")].run(Runner(), state)
