"""A multi-platform push after a denied ECR describe (issue 23): the build pushes its tags itself,
and the tags the registry already has must come first in its ``-t`` list (BuildKit pushes the
names one at a time, in order, stopping at the first refused: an immutable repository refuses an
existing tag before any new one appears). The harness's ECR-named registry cannot refuse a tag,
so what is checked against the real engine is the order the build gets and that the index lands
under every tag; the refusal itself is unit-tested (tests/unit/test_push_preflight_multiplatform.py)."""

from __future__ import annotations

import shlex

import pytest

from .aws_recorder import Recorder
from .support import planned_refs, tags_of
from .test_push import (  # noqa: F401 (ecr_host, ecr_repository: fixtures)
    ecr_host,
    ecr_repository,
    tiny_args,
)

pytestmark = pytest.mark.e2e

TWO_PLATFORMS = "linux/amd64,linux/arm64"


def build_tags(result) -> list:
    """The ``-t`` refs of the ``docker buildx build`` line the run printed."""
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("+ ") and " buildx build " in line
    ]
    assert len(lines) == 1, result.describe()
    words = shlex.split(lines[0][2:])
    return [words[i + 1] for i, word in enumerate(words) if word in ("-t", "--tag")]


@pytest.mark.legs("multiplatform")
def test_a_multi_platform_push_without_describe_pushes_the_existing_tags_first(
    project, images, ecr_repository, ecr_host, tmp_path, docker_config, e2e_env, ecr_registry
):
    name = ecr_repository("mpdenied")
    uri = images.track_repository(f"{ecr_host}/{name}")
    context = tmp_path / "scratch"
    context.mkdir()
    (context / "hello.txt").write_text(f"{name}\n")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    flags = [
        *tiny_args(dockerfile),
        *("--env", "dev", "--registry", uri, "--push", "--platform", TWO_PLATFORMS),
    ]
    with Recorder(e2e_env["AWS_ENDPOINT_URL"], deny=("DescribeRepositories",)) as aws:
        env = {"DOCKER_CONFIG": docker_config, "AWS_ENDPOINT_URL": aws.url}
        first = project.script(*flags, env=env).assert_ok()
        (context / "hello.txt").write_text(f"{name} again\n")
        second = project.script(*flags, env=env).assert_ok()
    for result in (first, second):
        assert any("cannot check" in line for line in result.stderr.splitlines()), result.describe()
    existing = {f"{uri}:{tag}" for tag in ("dev", f"git-{project.sha}", "latest")}
    order = build_tags(second)
    # the three tags the first push made, then the new one
    assert set(order[:3]) == existing and order[3:] == [f"{uri}:dev-{second.timestamp()}"], order
    assert set(tags_of(planned_refs(second))) <= set(ecr_registry.tags(name))
    index = ecr_registry.manifest(name, f"dev-{second.timestamp()}")
    assert all(ecr_registry.manifest(name, tag).digest == index.digest for tag in ("dev", "latest"))
