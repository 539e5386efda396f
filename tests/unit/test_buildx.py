"""Where and how the image is built: --builder, --platform, --cache-from/--cache-to, --pull and
the docker daemon the plan names; the buildx check before the build; a multi-platform build that
pushes its own index and is verified per platform. Processes are faked (pytest-subprocess)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
import shlex

import pytest

from ragbuild.proxy import INFO_FORMAT

from fakes import GIT_QUERIES, STAMP, docker_calls, register_git, run_main, MOMENT, GIT, REPO
from registry_fakes import FakeRegistry, serve
from ragbuild import push, registry, verify
from ragbuild.commands import build as build_cli
from ragbuild.config import Config
from ragbuild.describe import describe_plan
from ragbuild.docker_config import DockerConfig, DockerTarget
from ragbuild.buildx import parse_cache, parse_platforms
from ragbuild.errors import PushFailed, UsageError
from ragbuild.plan import PushPlan, build_command, format_created, make_plan
from ragbuild.run.runner import Runner

REG = "registry.example.com:5000/rag-worker"
REFS = [f"rag-worker:dev-{STAMP}", "rag-worker:dev", "rag-worker:git-a1b2c3d"]
BUILD_ARGS = [
    "--build-arg",
    "ENVIRONMENT=dev",
    "--build-arg",
    "GIT_COMMIT=a1b2c3d",
    "--build-arg",
    f"BUILD_TIMESTAMP={STAMP}",
]
AMD64_ARM64 = "linux/amd64,linux/arm64"
CREATED = "2023-12-03T14:30:22+00:00"  # STAMP in RFC 3339 (the CLI tests' clock, in UTC)


def labels(base="rag-worker", created=None):
    """The labels every build gets: OCI's created time (RFC 3339) and the repository of its tags."""
    return [
        "--label",
        f"org.opencontainers.image.created={created or format_created(MOMENT)}",
        "--label",
        f"org.ragbuild.repository={base}",
    ]


def plan_for(argv, docker=None):
    return make_plan(build_cli.parse_build(argv), Config(), GIT, MOMENT, docker=docker)


def tagged(refs):
    return sum((["-t", ref] for ref in refs), [])


# --- values, checked before any docker call ------------------------------------------------------


@pytest.mark.parametrize(
    "raw, platforms",
    [
        ("linux/amd64", ("linux/amd64",)),
        ("linux/amd64,linux/arm64", ("linux/amd64", "linux/arm64")),
        ("linux/amd64, linux/arm/v7", ("linux/amd64", "linux/arm/v7")),
        ("linux/amd64,linux/amd64", ("linux/amd64",)),
    ],
)
def test_platform_lists(raw, platforms):
    assert parse_platforms(raw) == platforms


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("", "has an empty entry"),
        ("linux/amd64,", "has an empty entry"),
        ("amd64", "'amd64' is not os/arch[/variant]"),
        ("Linux/AMD64", "is not os/arch"),
        ("linux/arm/v7/x", "is not os/arch"),
    ],
)
def test_bad_platforms(raw, fragment):
    with pytest.raises(UsageError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_platforms(raw)


@pytest.mark.parametrize(
    "raw, flag, kind, ref",
    [
        (
            "type=registry,ref=r.example.com/rag:cache",
            "--cache-from",
            "registry",
            "r.example.com/rag:cache",
        ),
        ("r.example.com/rag:cache", "--cache-from", "registry", "r.example.com/rag:cache"),
        ("rag-worker:dev", "--cache-from", "registry", "rag-worker:dev"),
        ("ref=r.example.com/rag:cache", "--cache-from", "registry", "r.example.com/rag:cache"),
        ("type=local,src=/tmp/cache", "--cache-from", "local", None),
        ("type=gha", "--cache-from", "gha", None),
        ("type=inline", "--cache-to", "inline", None),
        (
            "type=registry,ref=r.example.com/rag:cache,mode=max",
            "--cache-to",
            "registry",
            "r.example.com/rag:cache",
        ),
        ("type=local,dest=/tmp/cache", "--cache-to", "local", None),
    ],
)
def test_cache_specs(raw, flag, kind, ref):
    cache = parse_cache(raw, flag)
    assert (cache.type, cache.ref, cache.raw) == (kind, ref, raw)


@pytest.mark.parametrize(
    "raw, flag, fragment",
    [
        ("", "--cache-from", "--cache-from is empty"),
        ("type=inline", "--cache-from", "type=inline is written with --cache-to"),
        ("type=registry", "--cache-to", "type=registry needs ref="),
        ("type=local", "--cache-from", "type=local needs src="),
        ("type=local,src=/x", "--cache-to", "type=local needs dest="),
        ("type=redis,ref=x", "--cache-to", "type must be one of inline, registry, local"),
        ("type=registry,ref=Bad Ref", "--cache-from", "'Bad Ref' is not an image reference"),
        ("type=registry,mode", "--cache-to", "'mode' is not key=value"),
        ("https://r.example.com/x", "--cache-from", "is not an image reference"),
    ],
)
def test_bad_cache_specs(raw, flag, fragment):
    with pytest.raises(UsageError) as err:
        parse_cache(raw, flag)
    assert fragment in str(err.value)


# --- the build command, as data ------------------------------------------------------------------


BUILD_COMMANDS = [
    pytest.param(
        ["--platform", "linux/amd64", "--pull"],
        [
            "docker",
            "build",
            "-f",
            "Dockerfile",
            *tagged(REFS),
            *BUILD_ARGS,
            *labels(),
            "--pull",
            "--platform",
            "linux/amd64",
            ".",
        ],
        id="one-platform-plain-docker-build",
    ),
    pytest.param(
        [
            "--cache-from",
            "type=registry,ref=r.example.com/rag:cache",
            "--cache-from",
            "rag-worker:dev",
            "--cache-to",
            "type=inline",
        ],
        [
            "docker",
            "build",
            "-f",
            "Dockerfile",
            *tagged(REFS),
            *BUILD_ARGS,
            "--build-arg",
            "BUILDKIT_INLINE_CACHE=1",
            *labels(),
            "--cache-from",
            "r.example.com/rag:cache",
            "--cache-from",
            "rag-worker:dev",
            ".",
        ],
        id="plain-build-gets-refs-and-inline-cache-arg",
    ),
    pytest.param(
        ["--cache-to", "type=inline", "--build-arg", "BUILDKIT_INLINE_CACHE=0"],
        [
            "docker",
            "build",
            "-f",
            "Dockerfile",
            *tagged(REFS),
            *BUILD_ARGS,
            "--build-arg",
            "BUILDKIT_INLINE_CACHE=0",
            *labels(),
            ".",
        ],
        id="own-inline-cache-arg-wins",
    ),
    pytest.param(
        ["--builder", "remote", "--no-cache"],
        [
            "docker",
            "buildx",
            "build",
            "--builder",
            "remote",
            "-f",
            "Dockerfile",
            *tagged(REFS),
            *BUILD_ARGS,
            *labels(),
            "--no-cache",
            "--load",
            ".",
        ],
        id="builder-loads-the-image",
    ),
    pytest.param(
        [
            "--builder",
            "remote",
            "--cache-from",
            "type=registry,ref=r.example.com/rag:c",
            "--cache-to",
            "type=registry,ref=r.example.com/rag:c,mode=max",
            "--cache-to",
            "type=inline",
        ],
        [
            "docker",
            "buildx",
            "build",
            "--builder",
            "remote",
            "-f",
            "Dockerfile",
            *tagged(REFS),
            *BUILD_ARGS,
            *labels(),
            "--cache-from",
            "type=registry,ref=r.example.com/rag:c",
            "--cache-to",
            "type=registry,ref=r.example.com/rag:c,mode=max",
            "--cache-to",
            "type=inline",
            "--load",
            ".",
        ],
        id="buildx-gets-the-specs-as-given",
    ),
    pytest.param(
        ["--cache-to", "type=registry,ref=r.example.com/rag:c"],
        [
            "docker",
            "buildx",
            "build",
            "-f",
            "Dockerfile",
            *tagged(REFS),
            *BUILD_ARGS,
            *labels(),
            "--cache-to",
            "type=registry,ref=r.example.com/rag:c",
            "--load",
            ".",
        ],
        id="registry-cache-export-needs-buildx",
    ),
    pytest.param(
        ["--cache-from", "type=local,src=/tmp/c"],
        [
            "docker",
            "buildx",
            "build",
            "-f",
            "Dockerfile",
            *tagged(REFS),
            *BUILD_ARGS,
            *labels(),
            "--cache-from",
            "type=local,src=/tmp/c",
            "--load",
            ".",
        ],
        id="local-cache-needs-buildx",
    ),
    pytest.param(
        ["--platform", AMD64_ARM64, "--registry", REG, "--push"],
        [
            "docker",
            "buildx",
            "build",
            "-f",
            "Dockerfile",
            *tagged([f"{REG}:dev-{STAMP}", f"{REG}:dev", f"{REG}:git-a1b2c3d"]),
            *BUILD_ARGS,
            *labels(REG),
            "--platform",
            AMD64_ARM64,
            "--push",
            ".",
        ],
        id="multi-platform-pushes",
    ),
]


@pytest.mark.parametrize("argv, expected", BUILD_COMMANDS)
def test_build_command(argv, expected):
    cmd = build_command(plan_for(["--env", "dev", "--no-latest", *argv]))
    assert list(cmd.argv) == expected
    assert cmd.env == (() if expected[1] == "buildx" else (("DOCKER_BUILDKIT", "1"),))


def push_context(plan):
    """The push and verify steps' context, as the pre-flight would leave it for a plain registry."""
    session = registry.Session(plan.registry, DockerConfig().credentials(plan.registry.host), None)
    return push.Context(plan, PushPlan(plan.refs, session=session), DockerConfig(), {})


def test_multi_platform_build_pushes_only_the_refs_the_push_keeps():
    plan = plan_for(["--env", "dev", "--platform", AMD64_ARM64, "--registry", REG, "--push"])
    cmd = build_command(plan, PushPlan((f"{REG}:dev-{STAMP}", f"{REG}:git-a1b2c3d")))
    assert [cmd.argv[i + 1] for i, w in enumerate(cmd.argv) if w == "-t"] == [
        f"{REG}:dev-{STAMP}",
        f"{REG}:git-a1b2c3d",
    ]
    # a single-platform build tags every ref locally, whatever the push leaves out
    single = build_command(
        plan_for(["--env", "dev", "--registry", REG, "--push"]), PushPlan((f"{REG}:dev-{STAMP}",))
    )
    assert single.argv.count("-t") == 4


def test_multi_platform_drops_attestations_when_pushing_asks():
    plan = plan_for(["--env", "dev", "--platform", AMD64_ARM64, "--registry", REG, "--push"])
    assert build_command(plan, PushPlan(())).argv[-4:] == (
        "--push",
        "--provenance=false",
        "--sbom=false",
        ".",
    )


# --- the printed plan ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, line",
    [
        (DockerTarget(), "docker daemon: the local socket (default context)"),
        (
            DockerTarget(host="tcp://10.0.0.5:2376"),
            "docker daemon: DOCKER_HOST=tcp://10.0.0.5:2376",
        ),
        (
            DockerTarget(host="tcp://10.0.0.5:2376", context="ci"),
            "docker daemon: DOCKER_HOST=tcp://10.0.0.5:2376 (DOCKER_CONTEXT=ci is ignored while "
            "DOCKER_HOST is set)",
        ),
        (DockerTarget(context="ci"), "docker daemon: docker context 'ci' (DOCKER_CONTEXT)"),
        (
            DockerTarget(current_context="big-box"),
            "docker daemon: docker context 'big-box' (docker context use)",
        ),
        (
            DockerTarget(current_context="default"),
            "docker daemon: the local socket (default context)",
        ),
    ],
)
def test_plan_names_the_daemon(target, line):
    assert line in describe_plan(plan_for(["--env", "dev"], docker=target))


def test_plan_names_builder_platforms_cache_and_pull():
    lines = describe_plan(
        plan_for(
            [
                "--env",
                "dev",
                "--platform",
                AMD64_ARM64,
                "--registry",
                REG,
                "--push",
                "--cache-to",
                "type=registry,ref=r.example.com/c",
                "--pull",
            ]
        )
    )
    assert (
        "builder: the selected buildx builder (docker buildx use, or BUILDX_BUILDER), via "
        f"docker buildx build (for --platform {AMD64_ARM64}; --cache-to "
        "type=registry,ref=r.example.com/c)"
    ) in lines
    assert (
        "platforms: linux/amd64, linux/arm64 (one image index, pushed by the build itself; "
        "SageMaker runs a single-platform image, not an index: for SageMaker build one "
        "platform (--platform linux/amd64))"
    ) in lines
    assert "cache to: type=registry,ref=r.example.com/c" in lines
    # whether the builder can export it is asked before the build (docker_driver_problem)
    assert not any("cannot export this cache" in line for line in lines)
    assert "pull: always pull the FROM images (--pull)" in lines


def test_plain_build_plan_says_how_it_caches():
    lines = describe_plan(
        plan_for(
            [
                "--env",
                "dev",
                "--platform",
                "linux/amd64",
                "--cache-from",
                "type=registry,ref=r.example.com/c",
                "--cache-to",
                "type=inline",
            ]
        )
    )
    assert "platform: linux/amd64" in lines
    assert "cache from: r.example.com/c" in lines
    assert "cache to: type=inline (plain docker build: BUILDKIT_INLINE_CACHE=1)" in lines
    assert not any(line.startswith("builder:") for line in lines)


# --- through the CLI ----------------------------------------------------------------------------


BAD_BUILDER_INPUTS = [
    (
        ["--platform", AMD64_ARM64],
        "builds an image index, which the local image store cannot hold: add --push",
    ),
    (
        ["--platform", AMD64_ARM64, "--registry", REG, "--push", "--smoke-test"],
        "--smoke-test runs the local image",
    ),
    (["--platform", "linux"], "--platform 'linux' is not os/arch"),
    (["--builder", "my builder"], "--builder 'my builder' is not a buildx builder name"),
    (["--cache-to", "type=s4"], "type must be one of"),
    (["--cache-from", "type=registry"], "type=registry needs ref="),
    (
        ["--no-latest", "--latest-policy", "always"],
        "--no-latest contradicts --latest-policy always",
    ),
    (["--ci-tags"], "none of BUILD_NUMBER, GITHUB_RUN_NUMBER, CI_PIPELINE_IID is set"),
    (["--build-number", "x"], "--build-number 'x' is not a positive integer"),
]


@pytest.mark.parametrize("argv, fragment", BAD_BUILDER_INPUTS)
@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry"])
def test_bad_values_exit_2_before_any_docker_call(
    argv, fragment, dry_run, project, strict_fp, capsys
):
    code, out, err = run_main(["--env", "dev", *argv] + (["--dry-run"] if dry_run else []), capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert fragment in err
    assert out == "" and docker_calls(strict_fp) == 0


def test_multi_platform_without_push_says_it_is_not_for_sagemaker(project, strict_fp, capsys):
    _, _, err = run_main(["--env", "dev", "--platform", AMD64_ARM64], capsys)
    assert "SageMaker runs a single-platform image" in err


def test_help_lists_the_new_flags(strict_fp, capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for flag in (
        "--semver-tags",
        "--latest-policy {always,auto,never}",
        "--build-number N",
        "--ci-tags",
        "--builder NAME",
        "--platform LIST",
        "--cache-from SPEC",
        "--cache-to SPEC",
        "--pull",
    ):
        assert flag in out, flag


def test_only_auto_asks_git_for_tags(project, strict_fp, capsys):
    register_git(strict_fp)  # two runs
    tags = strict_fp.register(
        [strict_fp.program("git"), "tag", "--list", "v*"], stdout="v1.0.0\nv2.0.0\n"
    )
    code, out, _ = run_main(["--version", "1.5.0", "--dry-run"], capsys)
    assert code == 0 and tags.call_count() == 0
    code, out, err = run_main(
        ["--version", "1.5.0", "--latest-policy", "auto", "--dry-run"], capsys
    )
    assert code == 0 and tags.call_count() == 1
    assert ":latest" not in out and "latest: left out: 1.5.0 < v2.0.0" in err


def register_buildx(fp, present=True):
    return fp.register(
        [fp.program("docker"), "buildx", "version"],
        stdout="github.com/docker/buildx v0.12.1 30feaa1\n" if present else "",
        stderr="" if present else "docker: 'buildx' is not a docker command.\n",
        returncode=0 if present else 1,
    )


def test_missing_buildx_stops_before_the_build_with_the_install_hint(project, strict_fp, capsys):
    register_buildx(strict_fp, present=False)
    code, _, err = run_main(["--env", "dev", "--builder", "remote"], capsys)
    assert code == 1
    last = err.splitlines()[-1]
    assert last.startswith(
        "error: this build needs docker buildx (for --builder remote), and "
        "this docker client has no buildx: install the buildx plugin"
    )
    assert "set DOCKER to a docker client that has it" in last
    assert docker_calls(strict_fp) == 1  # buildx version, and no build


def test_dry_run_prints_the_buildx_check_and_starts_no_docker(project, strict_fp, capsys):
    """A dry run cannot know whether buildx is there: it prints the check a real run makes and
    says that a real run stops at it when it fails."""
    code, out, err = run_main(["--env", "dev", "--builder", "remote", "--dry-run"], capsys)
    assert code == 0
    assert out.splitlines()[0] == "docker buildx version"
    assert out.splitlines()[1].startswith("docker buildx build --builder remote -f Dockerfile ")
    assert (
        "dry run: a real run stops here when `docker buildx version` fails: this build needs "
        "docker buildx (for --builder remote)"
    ) in err
    assert docker_calls(strict_fp) == 0


def test_builder_build_runs_buildx_and_loads_the_image(project, strict_fp, capsys):
    register_buildx(strict_fp)
    build = strict_fp.register([strict_fp.program("docker"), "buildx", "build", strict_fp.any()])
    listed = json.dumps(REFS + ["rag-worker:latest"])
    strict_fp.register(
        [strict_fp.program("docker"), "image", "inspect", strict_fp.any()],
        stdout=f"sha256:0123 151234567 {listed}\n",
    )
    code, _, err = run_main(["--env", "dev", "--builder", "remote", "--pull"], capsys)
    assert code == 0, err
    argv = list(strict_fp.calls[GIT_QUERIES + 1])
    assert argv[1:5] == ["buildx", "build", "--builder", "remote"]
    assert argv[-3:] == ["--pull", "--load", "."]
    assert build.calls[0].kwargs["stdout"] is None  # streamed, as docker build
    assert "builder: remote (--builder), via docker buildx build (for --builder remote)" in err


def test_plain_build_never_asks_for_buildx(project, strict_fp, capsys):
    code, out, _ = run_main(
        ["--env", "dev", "--platform", "linux/amd64", "--cache-to", "type=inline", "--dry-run"],
        capsys,
    )
    assert code == 0
    assert out.startswith("DOCKER_BUILDKIT=1 docker build -f Dockerfile ")
    assert len(strict_fp.calls) == GIT_QUERIES  # git only


def test_dry_run_shows_the_new_flags_effect(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_RUN_NUMBER", "314")
    code, out, err = run_main(
        [
            "--version",
            "1.2.3",
            "--env",
            "dev",
            "--semver-tags",
            "--ci-tags",
            "--platform",
            "linux/amd64",
            "--pull",
            "--cache-from",
            "type=registry,ref=r.example.com/rag:cache",
            "--dry-run",
        ],
        capsys,
    )
    assert code == 0
    words = shlex.split(out.splitlines()[0])
    at = words.index("--iidfile")  # right after the labels (the build's image ID)
    assert words.pop(at + 1).endswith(".iid") and words.pop(at) == "--iidfile"
    assert words == [
        "DOCKER_BUILDKIT=1",
        "docker",
        "build",
        "-f",
        "Dockerfile",
        *tagged(
            [
                f"rag-worker:{t}"
                for t in (
                    "v1.2.3",
                    "1.2.3",
                    "1.2",
                    "1",
                    f"dev-{STAMP}",
                    "dev",
                    "git-a1b2c3d",
                    "build-314",
                    "latest",
                )
            ]
        ),
        "--build-arg",
        "VERSION=1.2.3",
        *BUILD_ARGS,
        *labels(created=CREATED),
        "--pull",
        "--platform",
        "linux/amd64",
        "--cache-from",
        "r.example.com/rag:cache",
        ".",
    ]
    assert "  build-314: build number from GITHUB_RUN_NUMBER\n" in err


@pytest.mark.parametrize(
    "variables, where",
    [
        ({"DOCKER_CONTEXT": "buildbox"}, "of docker context 'buildbox' (DOCKER_CONTEXT)"),
        (
            {"DOCKER_HOST": "tcp://10.0.0.5:2375", "DOCKER_CONTEXT": "buildbox"},
            "at tcp://10.0.0.5:2375",
        ),
    ],
)
def test_unreachable_daemon_names_the_context(
    variables, where, project, strict_fp, capsys, monkeypatch
):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    strict_fp.register([strict_fp.program("docker"), "build", strict_fp.any()], returncode=1)
    strict_fp.register(
        [strict_fp.program("docker"), "version", "--format", "{{.Client.Version}}"],
        stdout="20.10.24\n",
        returncode=1,
        stderr='error during connect: Get "http://buildbox/v1.24/version"\n',
    )
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    last = err.splitlines()[-1]
    assert last.startswith(f"error: cannot reach the Docker daemon {where}: start it")
    assert last.endswith("or point DOCKER_HOST or DOCKER_CONTEXT at a running one")


def test_current_context_of_the_docker_config_is_named(
    project, strict_fp, capsys, monkeypatch, tmp_path
):
    config = tmp_path / "other-docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"currentContext": "big-box"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    _, _, err = run_main(["--env", "dev", "--dry-run"], capsys)
    assert "docker daemon: docker context 'big-box' (docker context use)\n" in err


def test_failed_pull_build_says_what_pull_needs(project, strict_fp, capsys):
    strict_fp.register([strict_fp.program("docker"), "build", strict_fp.any()], returncode=1)
    strict_fp.register(
        [strict_fp.program("docker"), "version", "--format", "{{.Client.Version}}"],
        stdout="20.10.24\n",
    )
    code, _, err = run_main(["--env", "dev", "--pull"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == (
        "error: docker build failed (exit 1); its output is above; with --pull, docker must "
        "reach the registry of every FROM image: check the network and registry login, or drop "
        "--pull to build from the local copy"
    )


# --- a multi-platform push: the build pushes, ragbuild verifies the index -----------------------


DOCKER_IMAGE = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def raw_index(platforms=("linux/amd64", "linux/arm64"), attestations=True):
    manifests = []
    for n, platform in enumerate(platforms):
        os_, arch, *variant = platform.split("/")
        spec = {"architecture": arch, "os": os_}
        if variant:
            spec["variant"] = variant[0]
        manifests.append(
            {
                "mediaType": DOCKER_IMAGE,
                "digest": "sha256:" + f"{n}" * 64,
                "size": 528,
                "platform": spec,
            }
        )
    if attestations:
        manifests.append(
            {
                "mediaType": DOCKER_IMAGE,
                "digest": "sha256:" + "9" * 64,
                "size": 566,
                "platform": {"architecture": "unknown", "os": "unknown"},
            }
        )
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, indent=2
    )


def digest_of(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def multi_plan(**extra):
    return plan_for(
        [
            "--env",
            "dev",
            "--platform",
            AMD64_ARM64,
            "--registry",
            REG,
            "--push",
            "--no-latest",
            *extra.get("argv", []),
        ]
    )


def register_index(ref, raw):
    """The registry serves ``raw`` at ``ref`` (the read-back's GET of the manifest)."""
    try:
        media_type = json.loads(raw).get("mediaType") or OCI_INDEX
    except ValueError:
        media_type = OCI_INDEX
    serve(ref, body=raw.encode(), media_type=media_type)


def test_index_of_every_platform_verifies_and_prints_its_digest(fp, capsys):
    plan = multi_plan()
    raw = raw_index(("linux/amd64", "linux/arm64/v8"))  # arm64/v8 is arm64
    for ref in plan.refs:
        register_index(ref, raw)
    verified = verify.verify(Runner(), push_context(plan), {})
    pinned = verified.pinned
    assert pinned == f"{REG}@{digest_of(raw)}"
    assert verified.digests == {ref: digest_of(raw) for ref in plan.refs}  # the metadata's
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == pinned
    assert f"pushed and verified 3 tags, all the image index {digest_of(raw)}" in err
    assert "SageMaker runs a single-platform image" in err
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0


@pytest.mark.parametrize(
    "stdouts, fragment",
    [
        ([raw_index(("linux/amd64",))] * 3, "the index lacks linux/arm64 (it has linux/amd64)"),
        (
            [json.dumps({"schemaVersion": 2, "mediaType": DOCKER_IMAGE, "layers": []})] * 3,
            "is a single image manifest (application/vnd.docker.distribution.manifest.v2+json), not an "
            "image index",
        ),
        (
            [raw_index(), raw_index(attestations=False), raw_index()],
            "the tags of this build name different indexes",
        ),
        (["not json"] * 3, "/v2/rag-worker/manifests/dev served no manifest: not JSON"),
    ],
)
def test_index_verification_failures(fp, stdouts, fragment):
    plan = multi_plan()
    for ref, stdout in zip(plan.refs, stdouts):
        register_index(ref, stdout)
    with pytest.raises(PushFailed) as err:
        verify.verify(Runner(), push_context(plan), {})
    assert fragment in str(err.value)


def test_unreadable_index_names_the_ref(fp):
    plan = multi_plan()
    for ref in plan.refs[1:]:
        register_index(ref, raw_index())
    FakeRegistry.current.fail[plan.refs[0]] = [401, 401]
    with pytest.raises(PushFailed) as err:
        verify.verify(Runner(), push_context(plan), {})
    assert f"{plan.refs[0]}: cannot read its manifest back from the registry" in str(err.value)
    assert "HTTP 401 Unauthorized" in str(err.value)


def test_single_platform_push_still_refuses_an_index(fp):
    plan = plan_for(
        ["--env", "dev", "--platform", "linux/amd64", "--registry", REG, "--push", "--no-latest"]
    )
    for ref in plan.refs:
        fp.register(
            [fp.program("docker"), "push", ref],
            stdout=f"{ref.rsplit(':', 1)[1]}: digest: sha256:{'ab' * 32} size: 528\n",
        )
    for ref in plan.refs:
        register_index(ref, raw_index(("linux/amd64",)))
    context = push_context(plan)
    digests = push.push(Runner(), context)
    with pytest.raises(PushFailed, match="SageMaker refuses image indexes"):
        verify.verify(Runner(), context, digests)


def register_builder_driver(
    fp, driver="docker", status='[["driver-type","io.containerd.snapshotter.v1"]]', builder=()
):
    fp.register(
        [fp.program("docker"), "buildx", "inspect", *builder],
        stdout=f"Name:          default\nDriver:        {driver}\n\nNodes:\n",
    )
    if driver == "docker":
        fp.register(
            [fp.program("docker"), "info", "--format", "{{json .DriverStatus}}"],
            stdout=status + "\n",
        )


def test_a_cache_export_needs_a_builder_that_can(project, strict_fp, capsys):
    register_buildx(strict_fp)
    register_builder_driver(strict_fp, "docker", '[["Backing Filesystem","extfs"]]')
    code, _, err = run_main(
        ["--env", "dev", "--cache-to", "type=registry,ref=r.example.com/c:b"], capsys
    )
    assert code == 1
    assert err.splitlines()[-1].startswith(
        "error: --cache-to type=registry,ref=r.example.com/c:b exports a build cache, and the "
        "selected buildx builder uses the docker driver on an engine with the classic image store"
    )
    assert (
        strict_fp.call_count([strict_fp.program("docker"), "buildx", "build", strict_fp.any()]) == 0
    )


@pytest.mark.parametrize(
    "driver, status, builder, capable",
    [
        ("docker", '[["driver-type","io.containerd.snapshotter.v1"]]', (), True),
        ("docker", '[["Backing Filesystem","extfs"],["Supports d_type","true"]]', (), False),
        ("docker", '[["Backing Filesystem","extfs"]]', ("multi",), False),
        ("docker-container", "", ("multi",), True),
        ("remote", "", ("multi",), True),
    ],
)
def test_multi_platform_needs_a_builder_that_can_build_an_index(
    project, strict_fp, capsys, driver, status, builder, capable
):
    """The classic image store's docker driver cannot: one line, before the login and build."""
    register_buildx(strict_fp)
    register_builder_driver(strict_fp, driver, status, builder)
    strict_fp.register([strict_fp.program("docker"), strict_fp.any()], occurrences=20)  # the rest
    strict_fp.keep_last_process(True)
    flags = ["--env", "dev", "--platform", AMD64_ARM64, "--registry", REG, "--push"]
    code, _, err = run_main(flags + (["--builder", *builder] if builder else []), capsys)
    builds = strict_fp.call_count([strict_fp.program("docker"), "buildx", "build", strict_fp.any()])
    if capable:
        assert builds == 1
        return
    assert code == 1 and builds == 0
    name = f"builder '{builder[0]}'" if builder else "the selected buildx builder"
    assert err.splitlines()[-1] == (
        f"error: --platform {AMD64_ARM64} builds an image index, and {name} uses the docker driver "
        "on an engine with the classic image store, which cannot: turn on the containerd image "
        'store (daemon.json {"features": {"containerd-snapshotter": true}}), or build on an engine '
        "that has it (--builder <its docker context>)"
    )


def test_multi_platform_push_through_the_cli(project, strict_fp, capsys):
    fp = strict_fp
    register_buildx(fp)
    register_builder_driver(fp)
    refs = [f"{REG}:dev-{STAMP}", f"{REG}:dev", f"{REG}:git-a1b2c3d"]
    fp.register(
        [
            fp.program("docker"),
            "buildx",
            "build",
            "-f",
            "Dockerfile",
            *tagged(refs),
            *BUILD_ARGS,
            *labels(REG, CREATED),
            "--platform",
            AMD64_ARM64,
            "--push",
            "--provenance=false",
            "--sbom=false",
            ".",
        ]
    )
    raw = raw_index()
    for ref in refs:
        register_index(ref, raw)
    fp.allow_unregistered(False)
    code, out, err = run_main(
        ["--env", "dev", "--no-latest", "--platform", AMD64_ARM64, "--registry", REG, "--push"],
        capsys,
    )
    assert code == 0, err
    assert out.splitlines() == [f"{REG}@{digest_of(raw)}"]
    names = [" ".join(c[1:3]) for c in fp.calls]
    # buildx is asked for before the build; with buildx there is no attestation probe
    # the builder's driver and image store, then the daemon's proxy settings for the push's
    # registry requests, before the build
    assert names == [
        "rev-parse --is-inside-work-tree",
        "ls-tree -r",
        "hash-object --stdin-paths",
        "buildx version",
        "buildx inspect",
        "info --format",
        "info --format",
        "buildx build",
    ]  # the read-back starts no process
    # the pre-flight's read of what each tag names before, then the read-back
    assert len(FakeRegistry.current.manifest_requests()) == 6
    assert "an image index, read back from the registry instead of inspected locally" in err


def test_multi_platform_dry_run_prints_build_and_verification(project, strict_fp, capsys):
    code, out, err = run_main(
        [
            "--env",
            "dev",
            "--no-latest",
            "--platform",
            AMD64_ARM64,
            "--registry",
            REG,
            "--push",
            "--dry-run",
        ],
        capsys,
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "docker buildx version"
    assert lines[1] == "docker buildx inspect"  # the builder's driver
    assert lines[2] == f"docker info --format '{INFO_FORMAT}'"  # the daemon's proxy settings
    assert lines[3].startswith("docker buildx build -f Dockerfile -t ")
    assert lines[3].endswith(f"--platform {AMD64_ARM64} --push --provenance=false --sbom=false .")
    assert len(lines) == 4  # the pre-flight's and the read-back's requests are said on stderr
    assert docker_calls(strict_fp) == 0 and FakeRegistry.current.requests == []
    host, path = REG.split("/")
    reads = [line for line in err.splitlines() if "/manifests/" in line and " expect " in line]
    assert reads == [
        f"dry run: a real run would GET https://{host}/v2/{path}/manifests/{t} "
        "(HTTPS; a pull token, the Docker and OCI manifest and index types accepted) "
        f"and expect an image index of {AMD64_ARM64.replace(',', ', ')}"
        for t in (f"dev-{STAMP}", "dev", "git-a1b2c3d")
    ]


def test_missing_docker_context_is_named(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_CONTEXT", "nosuch")
    strict_fp.register([strict_fp.program("docker"), "build", strict_fp.any()], returncode=1)
    # what docker 20.10 says (exit 1, nothing on stdout)
    strict_fp.register(
        [strict_fp.program("docker"), "version", "--format", "{{.Client.Version}}"],
        returncode=1,
        stderr='unable to resolve docker endpoint: context "nosuch" does not exist',
    )
    code, _, err = run_main(["--env", "dev"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == (
        "error: docker context 'nosuch' does not exist (the plan said: docker context 'nosuch' "
        "(DOCKER_CONTEXT)): `docker context ls` lists the contexts; fix DOCKER_CONTEXT, or "
        "`docker context use` an existing one"
    )


# --- module structure --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, absent",
    [
        ("ragbuild.buildx", "ragbuild.plan"),
        ("ragbuild.docker_config", "ragbuild.plan"),
        ("ragbuild.reference", "ragbuild.plan"),
    ],
)
def test_buildx_and_docker_config_need_no_plan_for_the_reference_grammar(module, absent):
    """plan.py imports buildx.py and docker_config.py at the top; neither imports plan.py back."""
    import subprocess
    import sys

    code = f"import sys, {module}; sys.exit({absent!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO)
    assert done.returncode == 0


# --- --builder NAME where NAME is a docker context: every docker command talks to it ------------

REMOTE = DockerTarget(contexts=(("remote", "tcp://127.0.0.1:2375"), ("ci", None)))


@pytest.mark.parametrize(
    "target, builder, flags, endpoint",
    [
        (REMOTE, "remote", ("--context", "remote"), "tcp://127.0.0.1:2375"),
        (REMOTE, "ci", ("--context", "ci"), None),  # a context whose host was not readable
        (REMOTE, "default", ("--context", "default"), None),  # the default context is never stored
        (DockerTarget(context="remote"), "default", ("--context", "default"), None),
        (REMOTE, "mybuilder", (), None),  # a `docker buildx create` builder: no context switch
        (REMOTE, None, (), None),
        (DockerTarget(), "remote", (), None),  # no such context: buildx decides (and says so)
        (
            replace(REMOTE, env_builder="remote"),
            None,
            ("--context", "remote"),
            "tcp://127.0.0.1:2375",
        ),
        (
            replace(REMOTE, env_builder="mybuilder"),
            "remote",
            ("--context", "remote"),
            "tcp://127.0.0.1:2375",
        ),  # --builder beats BUILDX_BUILDER
    ],
)
def test_a_context_builder_switches_every_docker_command_to_that_context(
    target, builder, flags, endpoint
):
    chosen = target.for_builder(builder)
    assert chosen.docker_flags() == flags
    assert chosen.endpoint() == endpoint


@pytest.mark.parametrize(
    "target, line",
    [
        (
            REMOTE.for_builder("remote"),
            "docker daemon: docker context 'remote' (--builder remote: that "
            "context's builder; every docker command runs with --context remote)",
        ),
        # --context beats DOCKER_HOST and DOCKER_CONTEXT
        (
            DockerTarget(host="tcp://h:1", context="x", contexts=REMOTE.contexts).for_builder(
                "remote"
            ),
            "docker daemon: docker context 'remote' (--builder remote",
        ),
        (
            DockerTarget(context="remote").for_builder("default"),
            "docker daemon: the local socket (default context)",
        ),
        (
            replace(REMOTE, env_builder="remote").for_builder(None),
            "docker daemon: docker context 'remote' (BUILDX_BUILDER=remote: that context's builder",
        ),
        (
            DockerTarget(host="tcp://h:1", context="remote").for_builder("default"),
            "docker daemon: DOCKER_HOST=tcp://h:1\n",
        ),
    ],
)
def test_plan_names_the_context_of_the_builder(target, line):
    text = "\n".join(describe_plan(plan_for(["--env", "dev"], docker=target))) + "\n"
    assert line in text


def test_builder_of_another_context_runs_every_docker_command_there(
    project, strict_fp, capsys, monkeypatch, tmp_path
):
    """The docker config's contexts are read (docker context create's meta.json); the build, the
    summary's inspect and the hint all talk to the builder's context."""
    config = tmp_path / "docker-config"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"remote").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps(
            {
                "Name": "remote",
                "Metadata": {},
                "Endpoints": {"docker": {"Host": "tcp://127.0.0.1:2375", "SkipTLSVerify": False}},
            }
        )
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")  # --context beats it
    docker = strict_fp.program("docker")
    strict_fp.register([docker, "--context", "remote", "buildx", "version"], stdout="v0.13.1\n")
    strict_fp.register(
        [docker, "--context", "remote", "buildx", "build", "--builder", "remote", strict_fp.any()]
    )
    strict_fp.register(
        [docker, "--context", "remote", "image", "inspect", strict_fp.any()],
        stdout=f"sha256:{'a' * 64} 1000 {json.dumps(REFS)} null\n",
    )
    code, _, err = run_main(["--env", "dev", "--builder", "remote", "--no-latest"], capsys)
    assert code == 0, err
    assert f"run it: docker --context remote run -p 8080:8080 {REFS[0]}" in err
    calls = [list(map(str, call)) for call in strict_fp.calls]
    docker_argvs = [call for call in calls if call[0].endswith("docker")]
    assert len(docker_argvs) == 3 and all(c[1:3] == ["--context", "remote"] for c in docker_argvs)


def test_docker_contexts_are_read_from_the_docker_config(tmp_path):
    from ragbuild.docker_config import read_docker_contexts

    meta = tmp_path / "contexts" / "meta"
    for name, body in (
        ("a", {"Name": "remote", "Endpoints": {"docker": {"Host": "tcp://h:1"}}}),
        ("b", {"Name": "nohost", "Endpoints": []}),
        ("c", ["not", "an", "object"]),
        ("d", None),
    ):
        (meta / name).mkdir(parents=True)
        if body is not None:
            (meta / name / "meta.json").write_text(json.dumps(body))
    (meta / "e").mkdir()
    (meta / "e" / "meta.json").write_text("{broken")
    assert read_docker_contexts({"DOCKER_CONFIG": str(tmp_path)}) == (
        ("remote", "tcp://h:1"),
        ("nohost", None),
    )
    assert read_docker_contexts({"DOCKER_CONFIG": str(tmp_path / "missing")}) == ()


@pytest.mark.parametrize(
    "argv, env",
    [
        (("trivy", "image", "{image}"), (("DOCKER_HOST", "tcp://127.0.0.1:2375"),)),
        (("docker", "scout", "cves", "{image}"), ()),  # docker gets the runner's --context instead
    ],
)
def test_a_scanner_reads_the_daemon_of_the_builders_context(argv, env):
    from ragbuild.scan import Scanner, scan_command

    command = scan_command(
        Scanner(argv, "--scan-command"), "rag-worker:dev", REMOTE.for_builder("remote").endpoint()
    )
    assert command.env == env and "rag-worker:dev" in command.argv


# --- where docker finds the buildx plugin, and when the build pushes -----------------------------


def _plugin(directory, name="docker-buildx", mode=0o755):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return str(path)


def test_docker_finds_a_plugin_in_its_config_dir_before_the_extra_and_system_dirs(
    tmp_path, monkeypatch
):
    from ragbuild import docker_config

    system, extra, config = tmp_path / "system", tmp_path / "extra", tmp_path / "config"
    monkeypatch.setattr(docker_config, "SYSTEM_PLUGIN_DIRS", (str(system),))
    environ = {"DOCKER_CONFIG": str(config)}
    configured = DockerConfig(plugin_dirs=(str(extra),))
    assert docker_config.find_cli_plugin("buildx", configured, environ) is None
    in_system = _plugin(system)
    assert docker_config.find_cli_plugin("buildx", configured, environ) == in_system
    in_extra = _plugin(extra)
    assert docker_config.find_cli_plugin("buildx", configured, environ) == in_extra
    in_config = _plugin(config / "cli-plugins")
    assert docker_config.find_cli_plugin("buildx", configured, environ) == in_config
    assert docker_config.find_cli_plugin("compose", configured, environ) is None


def test_a_plugin_file_that_cannot_run_is_no_plugin(tmp_path, monkeypatch):
    from ragbuild import docker_config

    monkeypatch.setattr(docker_config, "SYSTEM_PLUGIN_DIRS", (str(tmp_path / "system"),))
    _plugin(tmp_path / "config" / "cli-plugins", mode=0o644)
    (tmp_path / "system" / "docker-buildx").mkdir(parents=True)  # a directory: no plugin
    assert (
        docker_config.find_cli_plugin(
            "buildx", DockerConfig(), {"DOCKER_CONFIG": str(tmp_path / "config")}
        )
        is None
    )


def test_cli_plugins_extra_dirs_come_from_config_json(tmp_path):
    from ragbuild import docker_config

    (tmp_path / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": ["/opt/p", 3, ""]}))
    assert docker_config.read_docker_config({"DOCKER_CONFIG": str(tmp_path)}).plugin_dirs == (
        "/opt/p",
    )
    (tmp_path / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": "/opt/p"}))
    assert docker_config.read_docker_config({"DOCKER_CONFIG": str(tmp_path)}).plugin_dirs == ()


@pytest.mark.parametrize(
    "target, builder",
    [
        (DockerTarget(), "default"),
        (DockerTarget(context="remote", contexts=(("remote", "tcp://h:1"),)), "remote"),
        (DockerTarget(current_context="box"), "box"),
        (DockerTarget(host="tcp://h:1", context="remote"), "default"),  # DOCKER_HOST beats it
        (DockerTarget(env_builder="kube"), None),  # BUILDX_BUILDER: some other builder
        (
            DockerTarget(env_builder="remote", contexts=(("remote", "tcp://h:1"),)).for_builder(
                None
            ),
            "remote",
        ),
    ],
)
def test_the_daemons_own_builder_is_named_after_the_context(target, builder):
    assert target.own_builder() == builder


def _push_plan(plan, **kw):
    return PushPlan(plan.refs, **kw)


@pytest.mark.parametrize(
    "argv, target, plugin, pushes",
    [
        ([], DockerTarget(), True, True),
        ([], DockerTarget(), False, False),  # no buildx: docker push
        (["--smoke-test"], DockerTarget(), True, False),  # the smoke test comes before any push
        (["--no-cache"], DockerTarget(), True, False),  # a failure might need a second long build
        (["--builder", "other"], DockerTarget(), True, False),  # another builder: --load, then push
        (["--platform", "linux/amd64,linux/arm64"], DockerTarget(), False, True),  # always
        ([], DockerTarget(env_builder="kube"), True, False),
    ],
)
def test_when_the_build_pushes(argv, target, plugin, pushes):
    from ragbuild.plan import build_pushes

    plan = plan_for(
        ["--env", "dev", "--registry", "localhost:5000/r", "--push", *argv], docker=target
    )
    assert build_pushes(plan, _push_plan(plan), plugin) is pushes


def test_a_scan_or_an_immutable_tag_left_out_keeps_docker_push():
    from ragbuild.plan import build_pushes

    plan = plan_for(
        ["--env", "dev", "--registry", "localhost:5000/r", "--push"], docker=DockerTarget()
    )
    assert build_pushes(plan, _push_plan(plan), True)
    assert not build_pushes(plan, PushPlan(plan.refs[1:], skipped=plan.refs[:1]), True)
    scanned = plan_for(
        ["--env", "dev", "--registry", "localhost:5000/r", "--push", "--scan"],
        docker=DockerTarget(),
    )
    assert not build_pushes(scanned, _push_plan(scanned), True)


def test_the_build_that_pushes_on_another_context_names_that_contexts_builder():
    target = DockerTarget(context="remote", contexts=(("remote", "tcp://h:1"),))
    plan = plan_for(["--env", "dev", "--registry", "localhost:5000/r", "--push"], docker=target)
    cmd = build_command(plan, _push_plan(plan, by_build=True), metadata_file="/tmp/m.json")
    argv = list(cmd.argv)
    assert argv[:5] == ["docker", "buildx", "build", "--builder", "remote"]
    assert argv[-8:] == [
        "--push",
        "--provenance=false",
        "--sbom=false",
        "--output",
        "type=image,oci-mediatypes=false",
        "--metadata-file",
        "/tmp/m.json",
        ".",
    ]
    assert "--load" not in argv and dict(cmd.env) == {}  # no DOCKER_BUILDKIT: it is buildx
    assert cmd.answer_file == "/tmp/m.json"
    assert tagged(plan.refs) == argv[7 : 7 + 2 * len(plan.refs)]


@pytest.mark.parametrize(
    "word", ["--disable-content-trust", "--disable-content-trust=false", "--stream"]
)
def test_a_plain_docker_build_option_buildx_refuses_keeps_the_plain_build(word):
    """``docker buildx build`` (0.13.1) refuses ``--disable-content-trust`` and ``--stream``
    ("unknown flag"), which plain ``docker build`` takes after ``--``: a build that pushed would
    fail at once and run again without the push, so it is not chosen."""
    from ragbuild.plan import build_pushes

    plan = plan_for(
        ["--env", "dev", "--registry", "localhost:5000/r", "--push", "--", word],
        docker=DockerTarget(),
    )
    assert not build_pushes(plan, _push_plan(plan), True)


@pytest.mark.parametrize(
    "needs",
    [
        ["--builder", "other"],
        ["--platform", "linux/amd64,linux/arm64", "--push", "--registry", "localhost:5000/r"],
        ["--cache-to", "type=local,dest=/tmp/c"],
    ],
)
def test_a_buildx_build_refuses_a_plain_docker_build_option_before_anything_runs(needs):
    """A build that needs buildx with an option after -- that buildx refuses failed at the
    build, after the login and the pre-flight; it is a usage error (exit 2) up front."""
    with pytest.raises(
        UsageError,
        match=r"--disable-content-trust after -- is an option of "
        r"plain docker build that docker buildx build refuses",
    ):
        plan_for(["--env", "dev", *needs, "--", "--disable-content-trust"], docker=DockerTarget())
