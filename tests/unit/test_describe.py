"""describe.py: the printed plan and docker's size units."""

from __future__ import annotations
import pytest
from ragbuild.describe import describe_plan, human_size
from fakes import plan_for


def test_describe_plan_lists_tags_and_build_args():
    lines = describe_plan(plan_for(env="dev"))
    assert "  - rag-worker:dev-20231203-143022" in lines
    assert "  BUILD_TIMESTAMP=20231203-143022" in lines
    assert lines[0] == "image: rag-worker"


@pytest.mark.parametrize(
    "size, text",
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1.0kB"),
        (151_234_567, "151.2MB"),
        (2_500_000_000, "2.5GB"),
        (5_000_000_000_000, "5000.0GB"),
    ],
)
def test_human_size_in_docker_units(size, text):
    assert human_size(size) == text


def test_describe_plan_without_secrets_keeps_the_plain_header():
    from datetime import datetime

    from ragbuild.config import Config, Options
    from ragbuild.git import GitInfo
    from ragbuild.plan import make_plan

    plan = make_plan(
        Options(env="dev", build_args=("NOTE=x",)),
        Config(),
        GitInfo(sha="abc1234"),
        datetime(2026, 1, 1),
    )
    assert "build args:" in describe_plan(plan) and "  NOTE=x" in describe_plan(plan)
