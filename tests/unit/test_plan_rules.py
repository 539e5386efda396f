"""plan.py's rules, each answer and message whole: the refs a plan names, what the flags may be
combined with, the build args, and the build command docker gets. Written against the survivors
of ``make mutation`` (docs/test-harness.md#mutation-testing)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ragbuild import plan as planning
from ragbuild.config import Config, LatestPolicy, Options
from ragbuild.docker_config import Credentials, DockerTarget
from ragbuild.git import GitInfo, parse_version_tags
from ragbuild.pip_config import HostNetwork
from ragbuild.plan import BuildPlan, PushPlan
from ragbuild.run.command import Mode
from fakes import refused

MOMENT = datetime(2023, 12, 3, 14, 30, 22, tzinfo=timezone(timedelta(hours=2)))
GIT = GitInfo(sha="a1b2c3d")


def plan_for(**options) -> BuildPlan:
    return planning.make_plan(Options(**options), Config(), GIT, MOMENT)


def test_push_plan_names_the_credential_helper():
    assert PushPlan(()).helper is None
    assert PushPlan((), credentials=Credentials("h", helper="ecr-login")).helper == "ecr-login"
    assert PushPlan((), credentials=Credentials("h")).helper is None


def test_version_refs_are_the_release_tags_the_plan_has():
    plan = plan_for(version="1.2.3+b.4", env="dev", registry="r.io/x")
    assert plan.version_refs == ("r.io/x:v1.2.3_b.4", "r.io/x:1.2.3_b.4")
    assert plan.primary == "r.io/x:v1.2.3_b.4"
    assert plan_for(env="dev").version_refs == ()
    assert plan_for(env="dev").primary == f"rag-worker:dev-{planning.format_timestamp(MOMENT)}"


# --- the build command, whole -------------------------------------------------------------------

CREATED = "org.opencontainers.image.created=2023-12-03T14:30:22+02:00"
TS = "20231203-143022"


def target_plan(**options) -> BuildPlan:
    return planning.make_plan(Options(**options), Config(), GIT, MOMENT, docker=DockerTarget())


def test_plain_build_with_every_local_option():
    plan = target_plan(
        env="dev",
        build_args=("A=1",),
        no_cache=True,
        pull=True,
        cache_from=("r.io/x:c",),
        cache_to=("type=inline",),
    )
    command = planning.build_command(plan, iid_file="/t/iid", metadata_file="/t/m")
    assert command.argv == (
        *("docker", "build", "-f", "Dockerfile"),
        *("-t", f"rag-worker:dev-{TS}", "-t", "rag-worker:dev"),
        *("-t", "rag-worker:git-a1b2c3d", "-t", "rag-worker:latest"),
        *("--build-arg", "ENVIRONMENT=dev", "--build-arg", "GIT_COMMIT=a1b2c3d"),
        *("--build-arg", f"BUILD_TIMESTAMP={TS}", "--build-arg", "A=1"),
        *("--build-arg", "BUILDKIT_INLINE_CACHE=1"),
        *("--label", CREATED, "--label", "org.ragbuild.repository=rag-worker"),
        *("--iidfile", "/t/iid", "--no-cache", "--pull", "--cache-from", "r.io/x:c", "."),
    )
    assert command.env == (("DOCKER_BUILDKIT", "1"),)
    assert command.mode == Mode.WATCH
    assert (command.answer_file, command.iid_file, command.assume) == (None, "/t/iid", "")


def test_plain_build_that_a_push_follows_drops_default_attestations():
    plan = planning.make_plan(
        Options(version="1.0.0", registry="r.io/x", push=True), Config(), GIT, MOMENT
    )
    command = planning.build_command(plan, PushPlan(plan.refs), metadata_file="/t/m")
    assert command.argv[:4] == ("docker", "build", "-f", "Dockerfile")
    assert "--metadata-file" not in command.argv and "--iidfile" not in command.argv
    assert "--provenance=false" not in command.argv
    assert command.env == (("DOCKER_BUILDKIT", "1"), ("BUILDX_NO_DEFAULT_ATTESTATIONS", "1"))
    assert (command.answer_file, command.assume) == (None, "")


def test_buildx_build_for_its_builder_and_caches_loads_the_image():
    plan = target_plan(
        version="1.0.0",
        registry="r.io/x",
        push=True,
        builder="bx",
        cache_from=("type=local,src=/c",),
        cache_to=("type=registry,ref=r.io/x:c",),
    )
    command = planning.build_command(
        plan, PushPlan(plan.refs), iid_file="/t/iid", metadata_file="/t/m"
    )
    assert command.argv == (
        *("docker", "buildx", "build", "--builder", "bx", "-f", "Dockerfile"),
        *("-t", "r.io/x:v1.0.0", "-t", "r.io/x:1.0.0"),
        *("-t", "r.io/x:git-a1b2c3d", "-t", "r.io/x:latest"),
        *("--build-arg", "VERSION=1.0.0", "--build-arg", "GIT_COMMIT=a1b2c3d"),
        *("--build-arg", f"BUILD_TIMESTAMP={TS}"),
        *("--label", CREATED, "--label", "org.ragbuild.repository=r.io/x"),
        *("--iidfile", "/t/iid", "--cache-from", "type=local,src=/c"),
        *("--cache-to", "type=registry,ref=r.io/x:c", "--load"),
        *("--provenance=false", "--sbom=false", "."),
    )
    assert command.env == ()
    assert (command.answer_file, command.assume) == (None, "")


def test_a_build_that_pushes_on_one_platform_uses_the_daemons_builder():
    plan = target_plan(version="1.0.0", registry="r.io/x", push=True)
    push = PushPlan(plan.refs, by_build=True)
    command = planning.build_command(plan, push, iid_file="/t/iid", metadata_file="/t/m")
    assert command.argv == (
        *("docker", "buildx", "build", "--builder", "default", "-f", "Dockerfile"),
        *("-t", "r.io/x:v1.0.0", "-t", "r.io/x:1.0.0"),
        *("-t", "r.io/x:git-a1b2c3d", "-t", "r.io/x:latest"),
        *("--build-arg", "VERSION=1.0.0", "--build-arg", "GIT_COMMIT=a1b2c3d"),
        *("--build-arg", f"BUILD_TIMESTAMP={TS}"),
        *("--label", CREATED, "--label", "org.ragbuild.repository=r.io/x"),
        *("--iidfile", "/t/iid", "--push", "--provenance=false", "--sbom=false"),
        *("--output", "type=image,oci-mediatypes=false", "--metadata-file", "/t/m", "."),
    )
    assert command.env == ()
    assert command.answer_file == "/t/m"
    assert json.loads(command.assume) == {"containerimage.digest": "sha256:" + "0" * 64}
    # not for SageMaker: the builder's own manifest type
    plan = target_plan(version="1.0.0", registry="r.io/x", push=True, not_for_sagemaker=True)
    argv = planning.build_command(plan, PushPlan(plan.refs, by_build=True)).argv
    assert "--output" not in argv and "--metadata-file" not in argv
    # no docker target known: no --builder
    plan = plan_for(version="1.0.0", registry="r.io/x", push=True)
    argv = planning.build_command(plan, PushPlan(plan.refs, by_build=True)).argv
    assert argv[:5] == ("docker", "buildx", "build", "-f", "Dockerfile")


def test_a_multi_platform_build_pushes_the_refs_the_push_keeps():
    plan = target_plan(
        version="1.0.0", registry="r.io/x", push=True, platform="linux/amd64,linux/arm64"
    )
    push = PushPlan(plan.refs[1:], skipped=plan.refs[:1])
    command = planning.build_command(plan, push, iid_file="/t/iid", metadata_file="/t/m")
    assert command.argv == (
        *("docker", "buildx", "build", "-f", "Dockerfile"),
        *("-t", "r.io/x:1.0.0", "-t", "r.io/x:git-a1b2c3d", "-t", "r.io/x:latest"),
        *("--build-arg", "VERSION=1.0.0", "--build-arg", "GIT_COMMIT=a1b2c3d"),
        *("--build-arg", f"BUILD_TIMESTAMP={TS}"),
        *("--label", CREATED, "--label", "org.ragbuild.repository=r.io/x"),
        *("--platform", "linux/amd64,linux/arm64", "--push"),
        *("--provenance=false", "--sbom=false", "."),
    )
    assert (command.answer_file, command.iid_file, command.assume) == (None, None, "")
    assert planning.build_pushes(plan, push, False) is True


# --- the flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, arg", [("A=1", ("A", "1")), ("_a1=x=y", ("_a1", "x=y")), ("EMPTY=", ("EMPTY", ""))]
)
def test_parse_build_arg(raw, arg):
    assert planning.parse_build_arg(raw) == arg


LINE_BREAK = (
    "the value has a line break, which would split the printed command; pass multi-line data "
    "as a file in the build context or with docker build --secret"
)


@pytest.mark.parametrize(
    "raw, message",
    [
        ("A", "--build-arg 'A' is not KEY=VALUE"),
        ("1A=x", "--build-arg '1A=x' is not KEY=VALUE"),
        (
            "GIT_COMMIT=x",
            "--build-arg GIT_COMMIT is set by ragbuild itself (from --version, --env, git and "
            "the clock)",
        ),
        ("TOKEN=a\nb", f"--build-arg TOKEN: {LINE_BREAK}"),
        ("TOKEN=a\rb", f"--build-arg TOKEN: {LINE_BREAK}"),
    ],
)
def test_parse_build_arg_refuses_with_its_reason(raw, message):
    assert refused(planning.parse_build_arg, raw) == message


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"cache_to": ("type=bogus",)},
            "--cache-to 'type=bogus': type must be one of inline, registry, local, gha, s3, azblob",
        ),
        (
            {"cache_to": ("type=registry",)},
            "--cache-to 'type=registry': type=registry needs ref=..., e.g. "
            "type=registry,ref=<registry>/<repository>:buildcache,mode=max",
        ),
        (
            {"cache_from": ("type=inline",)},
            "--cache-from 'type=inline': type must be one of registry, local, gha, s3, azblob "
            "(type=inline is written with --cache-to; read it back with --cache-from <image>)",
        ),
    ],
)
def test_each_cache_flag_is_checked_as_itself(options, message):
    assert refused(plan_for, env="dev", **options) == message


def test_several_platforms_need_the_push_and_no_smoke_test():
    assert refused(plan_for, env="dev", platform="linux/amd64,linux/arm64") == (
        "--platform linux/amd64,linux/arm64 builds an image index, which the local image "
        "store cannot hold: add --push (and --registry) so the build pushes it itself. "
        "SageMaker runs a single-platform image, not an index: for SageMaker build one "
        "platform (--platform linux/amd64)"
    )
    several = {"platform": "linux/amd64,linux/arm64", "push": True, "registry": "r.io/x"}
    assert refused(plan_for, env="dev", smoke_test=True, **several) == (
        "--smoke-test runs the local image, and a multi-platform build leaves none (it pushes "
        "straight to the registry); smoke-test a --platform linux/amd64 build instead"
    )
    # one platform: a local image the smoke test runs
    assert plan_for(env="dev", platform="linux/amd64", smoke_test=True).platforms == (
        "linux/amd64",
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "give --version and/or --env (e.g. --env dev, or --version 1.2.3 --env prod)"),
        (
            {"env": "prod"},
            "--env prod needs --version: production builds are always tagged with a version "
            "(with make: VERSION=1.2.3)",
        ),
        (
            {"env": "dev", "push": True},
            "--push needs a registry: pass --registry host/repository or set ECR_REGISTRY_URI "
            "(bash skipped the push and exited 0)",
        ),
        *(
            (
                given,
                "--replace-version-tags only lets --push move the version tags of --version: "
                "add --push and --version, or drop it",
            )
            for given in (
                {"env": "dev", "replace_version_tags": True},
                {"version": "1.0.0", "replace_version_tags": True},
                {"env": "dev", "registry": "r.io/x", "push": True, "replace_version_tags": True},
            )
        ),
        (
            {"env": "dev", "skip_existing_immutable": True},
            "--skip-existing-immutable only changes what --push pushes to an IMMUTABLE ECR "
            "repository: add --push, or drop it",
        ),
        (
            {"env": "dev", "push": True, "registry": "r.io/x", "skip_existing_immutable": True},
            "--skip-existing-immutable reads the tag immutability of an ECR repository, and "
            "r.io is not ECR: drop it",
        ),
        (
            {"env": "dev", "tags": ("latest",), "latest_policy": LatestPolicy.NEVER},
            "--tag latest contradicts --no-latest (--latest-policy never): it would tag latest "
            "whatever the policy decides; drop --tag latest, or use --latest-policy always",
        ),
        (
            {"env": "dev", "tags": ("latest",), "latest_policy": LatestPolicy.AUTO},
            "--tag latest contradicts --latest-policy auto: it would tag latest whatever the "
            "policy decides; drop --tag latest, or use --latest-policy always",
        ),
        *(
            (
                {
                    "version": "1.2.3",
                    "semver_tags": True,
                    "latest_policy": LatestPolicy.AUTO,
                    "tags": ("x", tag),
                },
                f"--tag {tag} contradicts --semver-tags with --latest-policy auto, which "
                f"decides whether {tag} moves; drop --tag {tag}",
            )
            for tag in ("1.2", "1")
        ),
        *(
            (
                {"env": "dev", field: value},
                f"{flag} only changes what {step} does: add {step}, or drop {flag}",
            )
            for field, value, flag, step in (
                ("smoke_timeout", 5.0, "--smoke-timeout", "--smoke-test"),
                ("smoke_command", "x", "--smoke-command", "--smoke-test"),
                ("push_attempts", 2, "--push-attempts", "--push"),
                ("push_backoff", 1.0, "--push-backoff", "--push"),
            )
        ),
        (
            {"env": "dev", "builder": "bx", "docker_options": ("--compress", "--stream")},
            "--stream after -- is an option of plain docker build that docker buildx build "
            "refuses, and this build needs buildx (for --builder bx): drop it",
        ),
        (
            {
                "env": "dev",
                "builder": "bx",
                "push": True,
                "registry": "r.io/x",
                "platform": "linux/amd64,linux/arm64",
                "docker_options": ("--stream", "--disable-content-trust"),
            },
            "--stream, --disable-content-trust after -- is an option of plain docker build "
            "that docker buildx build refuses, and this build needs buildx (for --builder bx, "
            "--platform linux/amd64,linux/arm64): drop it",
        ),
        (
            {"env": "dev", "registry": "ECR!", "registry_source": "ECR_REGISTRY_URI"},
            "ECR_REGISTRY_URI 'ECR!' is not host[:port]/repository with a lowercase repository "
            "path (no tag)",
        ),
    ],
)
def test_make_plan_refuses_with_its_reason(options, message):
    assert refused(plan_for, **options) == message


@pytest.mark.parametrize(
    "options",
    [
        {"env": "dev", "tags": ("latest",)},  # always: latest is tagged anyway
        {"version": "1.2.3", "semver_tags": True, "tags": ("1",)},  # always: not decided
        {"version": "1.2.3", "latest_policy": LatestPolicy.AUTO, "tags": ("1",)},
        {"env": "dev", "smoke_test": True, "smoke_timeout": 5.0, "smoke_command": "x"},
        {"env": "dev", "push": True, "registry": "r.io/x", "push_attempts": 2},
        {"version": "1.0.0", "push": True, "registry": "r.io/x", "replace_version_tags": True},
        {"env": "dev", "docker_options": ("--stream",)},  # plain docker build takes it
    ],
)
def test_make_plan_takes_what_fits_together(options):
    assert plan_for(**options).tags


def test_a_prod_build_from_a_dirty_tree_is_refused_unless_allowed():
    dirty = GitInfo(sha="abc", dirty=True, changes=(("a.py", ""), ("b", "not in the commit")))
    options = Options(env="prod", version="1.0.0")
    assert refused(planning.make_plan, options, Config(), dirty, MOMENT) == (
        "the git tree has uncommitted changes (a.py, b (not in the commit)): what docker would "
        "send differs from commit abc; commit them (a file the image does not need: add it to "
        ".dockerignore), or pass --allow-dirty to build prod from a dirty tree anyway"
    )
    allowed = Options(env="prod", version="1.0.0", allow_dirty=True)
    assert planning.make_plan(allowed, Config(), dirty, MOMENT).git == dirty
    assert planning.make_plan(Options(env="dev"), Config(), dirty, MOMENT).env == "dev"


def test_make_plan_fields():
    plan = plan_for(
        version="1.0.0",
        env="dev",
        registry="r.io/x",
        push=True,
        build_number="7",
        build_args=("A=1",),
        smoke_test=True,
        smoke_command="python -V",
        smoke_timeout=9.0,
    )
    assert plan.base == "r.io/x"
    assert (plan.version, plan.env, plan.timestamp) == ("1.0.0", "dev", TS)
    assert plan.created == "2023-12-03T14:30:22+02:00"
    assert plan.notes == ("build-7: build number from --build-number",)
    assert plan.moving_tags == frozenset({"latest", "dev"})
    assert plan.smoke_command == ("python", "-V")
    assert plan.limits.smoke_timeout == 9.0
    assert plan.host.ca_note == "not looked up"
    assert plan.docker is None
    assert plan.build_args[-1] == ("A", "1")
    assert "build-7" in plan.tags
    with_ci = planning.make_plan(
        Options(env="dev", ci_tags=True), Config(), GIT, MOMENT, environ={"BUILD_NUMBER": "3"}
    )
    assert "build-3" in with_ci.tags
    assert plan_for(env="dev", image_name="acme/w").base == "acme/w"
    assert plan_for(env="dev").base == "rag-worker"
    assert plan_for(env="dev").smoke_command == ("serve",)
    config = Config(image_name="team/w", smoke_command="serve --check")
    plan = planning.make_plan(Options(env="dev"), config, GIT, MOMENT)
    assert (plan.base, plan.smoke_command) == ("team/w", ("serve", "--check"))


def test_make_plan_uses_each_fact_handed_in():
    index = ("PIP_INDEX_URL=https://u:t@pypi.corp/simple", "PIP_EXTRA_INDEX_URL=https://h/x", "B=2")
    host = HostNetwork(ca_note="--no-host-ca")
    docker = DockerTarget(contexts=(("desk", "unix:///d.sock"),))
    plan = planning.make_plan(
        Options(
            version="1.0.0",
            semver_tags=True,
            latest_policy=LatestPolicy.AUTO,
            build_number="4",
            build_args=index,
            builder="desk",
        ),
        Config(),
        GIT,
        MOMENT,
        version_tags=parse_version_tags("v2.0.0\nv1.0.0"),
        docker=docker,
        host=host,
    )
    # the index URL with credentials goes in the index secret, not among the build args
    assert plan.build_args[-2:] == (("PIP_EXTRA_INDEX_URL", "https://h/x"), ("B", "2"))
    assert plan.host is host
    assert plan.docker == DockerTarget(
        contexts=(("desk", "unix:///d.sock"),), builder_context="desk"
    )
    assert plan.tags == ("v1.0.0", "1.0.0", "1.0", "1", "git-a1b2c3d", "build-4")
    assert plan.notes == (
        "1.0: kept: 1.0.0 >= v1.0.0, the highest v1.0.* tag",
        "1: kept: 1.0.0 >= v1.0.0, the highest v1.* tag",
        "latest: left out: 1.0.0 < v2.0.0, the highest version tag",
        "build-4: build number from --build-number",
    )
    assert plan.moving_tags == frozenset({"latest", "1.0", "1"})
    assert plan.buildx == ("--builder desk",)


# Survivors of `make mutation` that are equivalent (no input tells them from the code):
# - resolve_limits' ``getattr(options, s.field, None)`` without its default (mutant 26): every
#   limit in ``limits.SETTINGS`` is a field of ``Options``, so the default is never used.
