"""A multi-platform push after a denied ECR describe (issue 23): the build pushes the tags itself,
so the pre-flight's order (the tags the registry already has first: existing_first) must reach
the build's ``-t`` list, which BuildKit's image exporter pushes one name at a time in that order,
stopping at the first refused (moby/buildkit exporter/containerimage/export.go): an immutable
repository refuses an existing tag before any new tag appeared. Against faked aws and docker."""

import pytest

from ragbuild import push_preflight
from ragbuild.errors import PushFailed
from ragbuild.plan import build_command
from ragbuild.run.runner import Runner
from registry_fakes import (
    DIGEST,
    ECR,
    TS,
    build_plan,
    clean_env,  # noqa: F401 (autouse)
    register_describe,
    register_login,
    register_preflight,
    serve,
)

DENIED = (
    "An error occurred (AccessDeniedException) when calling the DescribeRepositories operation: "
    "User: arn:aws:iam::111122223333:user/ci is not authorized to perform: "
    "ecr:DescribeRepositories\n"
)
PLATFORMS = "linux/amd64,linux/arm64"


def denied(fp):
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, returncode=254, stderr=DENIED)


def tags_of(argv) -> list:
    return [argv[i + 1] for i, word in enumerate(argv) if word in ("-t", "--tag")]


def test_the_build_pushes_the_existing_tags_first(fp):
    denied(fp)
    base = f"{ECR}/rag-worker"
    serve(f"{base}:latest")
    serve(f"{base}:dev")
    plan = build_plan(platform=PLATFORMS)
    assert plan.multi_platform
    pushing = push_preflight.prepare(Runner(), plan)
    assert pushing.in_order and pushing.before[f"{base}:latest"] == DIGEST
    argv = build_command(plan, pushing).argv
    assert argv[:3] == ("docker", "buildx", "build") and "--push" in argv
    # the existing tags (as planned among themselves) before the new ones, nothing else
    assert tags_of(argv) == [
        f"{base}:dev",
        f"{base}:latest",
        f"{base}:dev-{TS}",
        f"{base}:git-abc1234",
    ]
    assert fp.call_count([fp.program("aws"), "ecr", "list-images", fp.any()]) == 0


def test_skip_existing_immutable_leaves_the_existing_tags_out_of_the_build(fp):
    denied(fp)
    base = f"{ECR}/rag-worker"
    serve(f"{base}:latest")
    plan = build_plan(platform=PLATFORMS, skip_existing_immutable=True)
    pushing = push_preflight.prepare(Runner(), plan)
    assert pushing.skipped == (f"{base}:latest",)
    assert tags_of(build_command(plan, pushing).argv) == [
        f"{base}:dev-{TS}",
        f"{base}:dev",
        f"{base}:git-abc1234",
    ]


def test_every_tag_existing_and_left_out_stops_before_the_build(fp):
    denied(fp)
    base = f"{ECR}/rag-worker"
    for tag in (f"dev-{TS}", "dev", "git-abc1234", "latest"):
        serve(f"{base}:{tag}")
    with pytest.raises(PushFailed) as err:
        push_preflight.prepare(
            Runner(), build_plan(platform=PLATFORMS, skip_existing_immutable=True)
        )
    assert "nothing to push" in str(err.value)
    assert fp.call_count([fp.program("docker"), "buildx", fp.any()]) == 0
