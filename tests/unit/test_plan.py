"""The pure plan: validation, the tag plan (against bash's output written out by hand), the
build command as data, and how git's answer is read."""

from __future__ import annotations

from registry_fakes import PLAIN, build_plan

import re
import shlex
from datetime import datetime
import pytest
from ragbuild.config import LatestPolicy
from fakes import (
    EPOCH,
    STAMP,
    docker_calls,
    register_git,
    set_tz,
    REPO,
    run_main,
    MOMENT,
    GIT,
    plan_for,
)

from ragbuild import cli, metadata, steps
from ragbuild.config import Config, Options, check_env
from ragbuild.errors import UsageError
from ragbuild.run.command import Kind, Mode
from ragbuild.git import GitInfo
from ragbuild.plan import (
    PushPlan,
    build_command,
    format_created,
    format_timestamp,
    make_plan,
    parse_build_arg,
    plan_build_args,
)
from ragbuild.tags import plan_tags
from ragbuild.reference import parse_registry
from datetime import timedelta, timezone
import json
from ragbuild.run.redaction import redact_value
import os

from ragbuild.commands import build as build_cli


TS = "20231203-143022"
ECR_DEV = "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev"


# --- the tag plan: every example of docs/DOCKER_BUILD_GUIDE.md and of the bash --help ----------
# Each expected list is what build-image.sh tags for that input (its TAGS array, in order), with
# `git rev-parse --short HEAD` = a1b2c3d and `date +%Y%m%d-%H%M%S` = 20231203-143022.


def test_no_git_means_no_git_tag_and_unknown_commit():
    plan = plan_for(env="dev", git=GitInfo(reason="not a git repository"))
    assert list(plan.refs) == [
        "rag-worker:dev-20231203-143022",
        "rag-worker:dev",
        "rag-worker:latest",
    ]
    assert ("GIT_COMMIT", "unknown") in plan.build_args


def test_dirty_tree_is_tagged_and_reported_as_dirty():
    plan = plan_for(env="dev", git=GitInfo(sha="a1b2c3d", dirty=True))
    assert "rag-worker:git-a1b2c3d-dirty" in plan.refs
    assert ("GIT_COMMIT", "a1b2c3d-dirty") in plan.build_args


def test_repeated_custom_tags_keep_their_order_after_git():
    plan = plan_for(env="dev", latest_policy=LatestPolicy.NEVER, tags=("one", "two"))
    assert list(plan.tags) == [f"dev-{TS}", "dev", "git-a1b2c3d", "one", "two"]


def test_custom_tag_equal_to_a_generated_one_is_given_once():
    plan = plan_for(env="dev", tags=("latest",))
    assert list(plan.tags) == [f"dev-{TS}", "dev", "git-a1b2c3d", "latest"]


def test_image_name_from_flag_and_from_config():
    assert plan_for(env="dev", image_name="acme/worker").base == "acme/worker"
    assert plan_for(env="dev", config=Config(image_name="other")).base == "other"
    # a registry wins over the image name, as BASE_IMAGE did in bash
    assert plan_for(env="dev", image_name="x", registry=ECR_DEV).base == ECR_DEV


def test_build_metadata_plus_becomes_underscore_in_tags_only():
    plan = plan_for(version="1.2.3+build.5", env="dev")
    assert plan.tags[:2] == ("v1.2.3_build.5", "1.2.3_build.5")
    assert ("VERSION", "1.2.3+build.5") in plan.build_args


def test_build_args_in_bash_order_then_extra():
    plan = plan_for(version="v1.0.0", env="prod", build_args=("PIP_INDEX=https://x/y", "EMPTY="))
    assert list(plan.build_args) == [
        ("VERSION", "1.0.0"),
        ("ENVIRONMENT", "prod"),
        ("GIT_COMMIT", "a1b2c3d"),
        ("BUILD_TIMESTAMP", TS),
        ("PIP_INDEX", "https://x/y"),
        ("EMPTY", ""),
    ]


def test_timestamp_is_the_same_instant_for_tag_and_build_arg():
    plan = plan_for(env="dev", moment=datetime(1999, 1, 2, 3, 4, 5))
    assert plan.timestamp == "19990102-030405"
    assert "dev-19990102-030405" in plan.tags
    assert ("BUILD_TIMESTAMP", "19990102-030405") in plan.build_args


def test_format_timestamp_pads_every_field():
    assert format_timestamp(datetime(2024, 2, 3, 4, 5, 6)) == "20240203-040506"


# --- the build command, as data ----------------------------------------------------------------


def test_build_command_is_one_docker_build_with_every_tag():
    cmd = build_command(
        plan_for(
            version="1.0.0", env="prod", no_cache=True, file="docker/Dockerfile", context="src"
        )
    )
    assert cmd.argv == (
        "docker",
        "build",
        "-f",
        "docker/Dockerfile",
        "-t",
        "rag-worker:v1.0.0",
        "-t",
        "rag-worker:1.0.0",
        "-t",
        "rag-worker:prod-20231203-143022",
        "-t",
        "rag-worker:prod",
        "-t",
        "rag-worker:git-a1b2c3d",
        "-t",
        "rag-worker:latest",
        "--build-arg",
        "VERSION=1.0.0",
        "--build-arg",
        "ENVIRONMENT=prod",
        "--build-arg",
        "GIT_COMMIT=a1b2c3d",
        "--build-arg",
        "BUILD_TIMESTAMP=20231203-143022",
        "--label",
        f"org.opencontainers.image.created={format_created(MOMENT)}",
        "--label",
        "org.ragbuild.repository=rag-worker",
        "--no-cache",
        "src",
    )
    assert cmd.env == (("DOCKER_BUILDKIT", "1"),)
    assert cmd.mode is Mode.WATCH  # streamed, the end of its stderr kept for build_failure
    assert cmd.check and cmd.kind is not Kind.QUERY


def test_build_command_without_no_cache_has_none():
    assert "--no-cache" not in build_command(plan_for(env="dev")).argv


def test_build_command_for_a_push_drops_attestations():
    cmd = build_command(
        plan_for(env="dev", builder="remote", registry=ECR_DEV, push=True), PushPlan(())
    )
    assert cmd.argv[-3:] == ("--provenance=false", "--sbom=false", ".")


def test_env_in_the_configured_list():
    assert check_env("staging", ("dev", "staging", "prod")) == "staging"


@pytest.mark.parametrize(
    "raw, near",
    [
        ("prd", "prod"),
        ("stagign", "staging"),
        ("Dev", "dev"),
        ("development", "dev"),
        ("production", "prod"),
        ("PROD", "prod"),
        ("stage", "staging"),
    ],
)
def test_env_near_miss_suggests_the_right_one(raw, near):
    with pytest.raises(UsageError) as err:
        check_env(raw, ("dev", "staging", "prod"))
    assert str(err.value) == (
        f"--env {raw!r} is not one of dev, staging, prod; did you mean {near!r}?"
    )


def test_env_far_miss_lists_the_choices_without_a_guess():
    with pytest.raises(UsageError) as err:
        check_env("qa", ("dev", "staging", "prod"))
    assert str(err.value) == "--env 'qa' is not one of dev, staging, prod"


def test_env_empty():
    with pytest.raises(UsageError, match="--env is empty; choose one of: dev, staging, prod"):
        check_env("", ("dev", "staging", "prod"))


def test_version_too_long_for_a_tag_is_refused_as_version():
    version = "1.0.0-" + "a" * 125  # v + 131 characters > 128
    with pytest.raises(UsageError, match=r"^--version 'v1\.0\.0-a+' is not a valid Docker tag"):
        plan_for(version=version, env="dev")


@pytest.mark.parametrize(
    "raw, pair", [("A=1", ("A", "1")), ("_x=a=b", ("_x", "a=b")), ("E=", ("E", ""))]
)
def test_build_args(raw, pair):
    assert parse_build_arg(raw) == pair


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("A", "is not KEY=VALUE"),
        ("=1", "is not KEY=VALUE"),
        ("1A=x", "is not KEY=VALUE"),
        ("VERSION=9", "is set by ragbuild itself"),
        ("GIT_COMMIT=x", "is set by ragbuild itself"),
    ],
)
def test_bad_build_args(raw, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_build_arg(raw)


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({}, "give --version and/or --env"),
        ({"env": "prod"}, "--env prod needs --version"),
        ({"env": "dev", "push": True}, "--push needs a registry"),
        ({"env": "dev", "image_name": "Rag"}, "--image-name 'Rag' is not a lowercase image name"),
    ],
)
def test_plan_level_refusals(options, fragment):
    with pytest.raises(UsageError, match=fragment):
        plan_for(**options)


def test_prod_from_dirty_tree_needs_allow_dirty():
    dirty = GitInfo(sha="a1b2c3d", dirty=True)
    with pytest.raises(UsageError, match="--allow-dirty"):
        plan_for(env="prod", version="1.0.0", git=dirty)
    plan = plan_for(env="prod", version="1.0.0", allow_dirty=True, git=dirty)
    assert "git-a1b2c3d-dirty" in plan.tags
    # other environments build from a dirty tree without asking
    assert "git-a1b2c3d-dirty" in plan_for(env="dev", git=dirty).tags


def test_env_list_comes_from_config():
    config = Config(environments=("qa", "live"))
    assert plan_for(env="qa", config=config).env == "qa"
    with pytest.raises(UsageError, match="not one of qa, live"):
        plan_for(env="dev", config=config)


def test_options_defaults_are_bash_defaults():
    options = Options()
    assert (
        options.latest_policy == "always"
        and options.file == "Dockerfile"
        and options.context == "."
    )


# --- make_plan's parts -------------------------------------------------------------------------


def test_plan_tags_in_bash_order_with_the_opt_in_ones_slotted_in():
    from ragbuild.tags import BuildNumber, Channels

    channel = Channels(tags=("1.2", "1"), latest=True)
    assert plan_tags(
        "1.2.3+b.1", "dev", TS, GIT, BuildNumber("7", "--build-number"), ("qa", "dev"), channel
    ) == (
        "v1.2.3_b.1",
        "1.2.3_b.1",
        "1.2",
        "1",
        f"dev-{TS}",
        "dev",
        "git-a1b2c3d",
        "build-7",
        "qa",
        "latest",
    )
    assert plan_tags(None, "dev", TS, GitInfo(), None, (), Channels(latest=False)) == (
        f"dev-{TS}",
        "dev",
    )


def test_plan_build_args_spell_inline_cache_for_plain_docker_build_only():
    from ragbuild.buildx import parse_cache

    inline = (parse_cache("type=inline", "--cache-to"),)
    base = [("GIT_COMMIT", "a1b2c3d"), ("BUILD_TIMESTAMP", TS), ("A", "1")]
    assert list(plan_build_args(None, None, GIT, TS, (("A", "1"),), cache_to=inline)) == base + [
        ("BUILDKIT_INLINE_CACHE", "1")
    ]
    assert (
        list(
            plan_build_args(
                None, None, GIT, TS, (("A", "1"),), buildx=("--builder x",), cache_to=inline
            )
        )
        == base
    )


# --- The labels ragbuild's build command adds: OCI's created time in RFC 3339 (the OCI spec's -------


RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")


def labels_of(argv) -> dict:
    return dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "--label")


def build_args_of(argv) -> dict:
    return dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "--build-arg")


def dry_run_build(capsys, *flags) -> list:
    assert cli.main(["--env", "dev", "--dry-run", *flags]) == 0
    return shlex.split(capsys.readouterr().out.splitlines()[0])


@pytest.mark.parametrize(
    "tz, created",
    [  # SOURCE_DATE_EPOCH: UTC whatever TZ says
        ("UTC", "2023-12-03T14:30:22+00:00"),
        ("Asia/Kolkata", "2023-12-03T14:30:22+00:00"),
        ("America/New_York", "2023-12-03T14:30:22+00:00"),
    ],
)
def test_created_label_is_rfc3339_of_the_build_timestamps_instant(
    project, strict_fp, capsys, monkeypatch, tz, created
):
    set_tz(monkeypatch, tz)
    argv = dry_run_build(capsys)
    label = labels_of(argv)["org.opencontainers.image.created"]
    assert label == created and RFC3339.fullmatch(label)
    stamp = build_args_of(argv)["BUILD_TIMESTAMP"]
    assert re.fullmatch(r"\d{8}-\d{6}", stamp)  # bash's format, unchanged (drop-in)
    moment = datetime.fromisoformat(label)
    assert moment.strftime("%Y%m%d-%H%M%S") == stamp  # the same wall-clock time ...
    assert moment.timestamp() == int(EPOCH)  # ... and the same instant
    assert [t for t in argv if t.startswith("rag-worker:dev-")] == [f"rag-worker:dev-{stamp}"]


def test_utc_build_timestamp_is_the_guides_stamp(project, strict_fp, capsys):
    argv = dry_run_build(capsys)
    assert build_args_of(argv)["BUILD_TIMESTAMP"] == STAMP


def test_format_created_keeps_an_aware_moments_offset():
    moment = datetime(2024, 2, 3, 4, 5, 6, 789, tzinfo=timezone(timedelta(hours=-3)))
    assert format_created(moment) == "2024-02-03T04:05:06-03:00"


@pytest.mark.parametrize(
    "flags, repository",
    [
        ([], "rag-worker"),
        (["--image-name", "team/my-worker"], "team/my-worker"),
        (
            ["--registry", "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev"],
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev",
        ),
        (["--registry", "localhost:5000/a/b"], "localhost:5000/a/b"),
    ],
)
def test_repository_label_names_the_repository_of_the_tags(
    project, strict_fp, capsys, flags, repository
):
    argv = dry_run_build(capsys, *flags)
    assert labels_of(argv)["org.ragbuild.repository"] == repository
    assert {t.rsplit(":", 1)[0] for t in argv[argv.index("-t") + 1 :: 2][:1]} == {repository}


def test_custom_image_name_from_setup_cfg_is_the_label(project, strict_fp, capsys):
    (project / "setup.cfg").write_text("[ragbuild]\nimage-name = my-worker\n")
    argv = dry_run_build(capsys)
    assert labels_of(argv)["org.ragbuild.repository"] == "my-worker"


def test_labels_follow_the_build_args_on_a_buildx_build_too():
    plan = make_plan(
        Options(env="dev", builder="remote"),
        Config(),
        GitInfo(sha="a1b2c3d"),
        datetime(2023, 12, 3, 14, 30, 22),
    )
    argv = list(build_command(plan).argv)
    assert argv[:3] == ["docker", "buildx", "build"]
    assert labels_of(argv) == {
        "org.opencontainers.image.created": plan.created,
        "org.ragbuild.repository": "rag-worker",
    }


def test_the_dockerfile_leaves_created_to_ragbuild():
    """A LABEL created="${BUILD_TIMESTAMP}" would put bash's non-RFC 3339 stamp on plain builds."""
    dockerfile = (REPO / "Dockerfile").read_text()
    label = re.search(r"(?ms)^LABEL .*?[^\\]$", dockerfile).group(0)
    assert "org.opencontainers.image.created" not in label
    assert 'org.opencontainers.image.source="${SOURCE_URL}"' in label


# --- Secrets never printed: a secret-looking build arg's value and URL credentials are shown as -----


# (an index build arg with credentials goes in the index secret instead: test_pip_config.py)
URL = "SOURCE_URL=https://user:tok3n@git.example/team/rag"
SECRET_FLAGS = [
    "--build-arg",
    URL,
    "--build-arg",
    "API_TOKEN=s3cr3t",
    "--build-arg=NPM_KEY=k3y",
    "--build-arg",
    "NOTE=plain",
]
LEAKS = ("tok3n", "s3cr3t", "k3y")


def test_dry_run_shows_no_secret_anywhere_and_says_so_once(project, strict_fp, capsys):
    assert cli.main(["--env", "dev", "--dry-run", *SECRET_FLAGS]) == 0
    out, err = capsys.readouterr()
    assert not any(leak in out + err for leak in LEAKS), out + err
    build = out.splitlines()[0]
    assert "'SOURCE_URL=https://***@git.example/team/rag'" in build
    assert "'API_TOKEN=***'" in build and "'NPM_KEY=***'" in build and "NOTE=plain" in build
    assert err.count("are shown as ***") == 1
    assert "build args (secret values shown as ***):" in err.splitlines()
    assert "  API_TOKEN=***" in err.splitlines()


def test_real_run_passes_the_secret_and_prints_it_nowhere(project, strict_fp, capsys):
    build = strict_fp.register([strict_fp.program("docker"), "build", strict_fp.any()])
    strict_fp.register(
        [strict_fp.program("docker"), "image", "inspect", strict_fp.any()],
        stdout="sha256:0123 12 "
        + json.dumps(
            [f"rag-worker:{t}" for t in ("dev-20231203-143022", "dev", "git-a1b2c3d", "latest")]
        )
        + " null\n",
    )
    assert cli.main(["--env", "dev", "--metadata-file", "m.json", *SECRET_FLAGS]) == 0
    out, err = capsys.readouterr()
    argv = list(build.calls[0].args)
    assert URL in argv and "API_TOKEN=s3cr3t" in argv and "NPM_KEY=k3y" in argv
    assert not any(leak in out + err for leak in LEAKS), err
    hint = [line for line in err.splitlines() if line.startswith("push it: ")]
    assert hint and hint[0].endswith("(put the *** values back)")
    doc = (project / "m.json").read_text()
    assert not any(leak in doc for leak in LEAKS)


def test_the_plan_printout_and_the_metadata_share_the_rule():
    args = (
        ("NPM_TOKEN", "npm_abc"),
        ("PIP_INDEX_URL", "https://user:s3cret@pypi.example/simple"),
        ("PYTHON_IMAGE", "python:3.11-slim"),
    )
    assert metadata.redact(args) == {key: redact_value(key, value) for key, value in args}


# --- Values that pass a first look but docker (or the end of the run) would refuse: each is exit 2 ---


LONG_ENV = "e" * 120  # a valid tag itself; <env>-<timestamp> is 136 characters


def assert_refused(argv, fragment, strict_fp, capsys):
    for dry in ([], ["--dry-run"]):
        register_git(strict_fp)  # the read-only git queries, in each run
        code, out, err = run_main(argv + dry, capsys)
        assert code == 2, err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert fragment in err, err
        assert out == "" and "Traceback" not in err
    assert docker_calls(strict_fp) == 0


# --- every generated tag obeys the tag grammar --------------------------------------------------


def test_a_200_digit_build_number_is_refused(project, strict_fp, capsys):
    assert_refused(
        ["--env", "dev", "--build-number", "1" * 200],
        "the build number from --build-number makes the tag 'build-1111",
        strict_fp,
        capsys,
    )
    register_git(strict_fp)
    assert (
        "(206 characters), which is not a valid Docker tag"
        in run_main(["--env", "dev", "--build-number", "1" * 200], capsys)[2]
    )


def test_a_long_environment_from_setup_cfg_is_refused(project, strict_fp, capsys):
    (project / "setup.cfg").write_text(f"[ragbuild]\nenvironments = dev {LONG_ENV}\n")
    assert_refused(
        ["--env", LONG_ENV], f"--env '{LONG_ENV}' makes the tag 'eeee", strict_fp, capsys
    )


def test_every_generated_tag_is_checked_in_the_plan():
    with pytest.raises(UsageError, match=r"git's commit id makes the tag 'git-a+\.\.\.a+' \(132 "):
        make_plan(
            Options(env="dev"),
            Config(),
            GitInfo(sha="a" * 128),
            steps.facts.clock({"SOURCE_DATE_EPOCH": "0"}),
        )


# --- repository names ---------------------------------------------------------------------------


def test_a_registry_over_255_characters_is_refused(project, strict_fp, capsys):
    uri = "r.example.com/" + "/".join(["abcdefghij"] * 23)  # 266 characters
    assert_refused(
        ["--env", "dev", "--registry", uri],
        "--registry is 266 characters long; docker allows at most 255",
        strict_fp,
        capsys,
    )
    assert parse_registry("r.example.com/" + "a" * 241).uri.endswith("a")  # 255: fine


def test_an_image_name_over_255_characters_is_refused(project, strict_fp, capsys):
    assert_refused(
        ["--env", "dev", "--image-name", "a" * 256],
        "--image-name is 256 characters long; docker allows at most 255",
        strict_fp,
        capsys,
    )


# --- the Dockerfile and the context -------------------------------------------------------------


def test_a_dockerfile_that_is_a_directory_says_so(project, strict_fp, capsys):
    (project / "src").mkdir()
    assert_refused(
        ["--env", "dev", "-f", "src"],
        "Dockerfile 'src' is a directory; pass the file, e.g. -f src/Dockerfile",
        strict_fp,
        capsys,
    )


def test_a_dockerfile_on_stdin_is_refused_saying_so(project, strict_fp, capsys):
    (project / "-").write_text("FROM scratch\n")  # docker reads stdin even so
    assert_refused(
        ["--env", "dev", "-f", "-"],
        "-f - (the Dockerfile on stdin) is not supported: ragbuild reads the Dockerfile "
        "before the build (the context guard's per-Dockerfile ignore file, doctor's "
        "checks); write it to a file and pass -f FILE",
        strict_fp,
        capsys,
    )


def test_an_unreadable_dockerfile_is_refused(project, strict_fp, capsys, monkeypatch):
    real = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode, **kw: False if str(path) == "Dockerfile" else real(path, mode, **kw),
    )  # root reads any mode
    assert_refused(
        ["--env", "dev"],
        "Dockerfile 'Dockerfile' cannot be read (permission denied)",
        strict_fp,
        capsys,
    )


def test_a_context_that_is_a_file_says_so(project, strict_fp, capsys):
    assert_refused(
        ["--env", "dev", "--context", "Dockerfile"],
        "build context 'Dockerfile' is not a directory (it is a file)",
        strict_fp,
        capsys,
    )


def test_an_unreadable_context_is_refused(project, strict_fp, capsys, monkeypatch):
    (project / "ctx").mkdir()
    real = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode, **kw: False if str(path) == "ctx" else real(path, mode, **kw),
    )
    assert_refused(
        ["--env", "dev", "--context", "ctx"],
        "build context 'ctx' cannot be read (permission denied)",
        strict_fp,
        capsys,
    )


# --- inputs that were accepted silently ----------------------------------------------------------


def test_an_empty_image_name_is_refused_not_the_default(project, strict_fp, capsys):
    assert_refused(
        ["--env", "dev", "--image-name", ""],
        "--image-name is empty; give a lowercase image name like rag-worker",
        strict_fp,
        capsys,
    )
    assert_refused(["--env", "dev", "--image-name="], "--image-name is empty", strict_fp, capsys)


@pytest.mark.parametrize("epoch", ["-1", "\uff10", "\u0661\u0662", " 12", "1_000", "+5", "9" * 30])
def test_source_date_epoch_takes_only_ascii_digits(epoch, project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    code, out, err = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 2 and out == ""
    assert err == f"error: SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970\n"
    assert len(strict_fp.calls) == 0


def test_source_date_epoch_zero_is_1970():
    assert steps.facts.clock({"SOURCE_DATE_EPOCH": "0"}).year in (
        1969,
        1970,
    )  # local time of epoch 0


@pytest.mark.parametrize("value", ["a\nb", "line\r\n", "\n"])
def test_a_build_arg_value_with_a_line_break_is_refused_without_showing_it(
    value, project, strict_fp, capsys
):
    assert_refused(
        ["--env", "dev", "--build-arg", f"NPM_TOKEN={value}"],
        "--build-arg NPM_TOKEN: the value has a line break, which would split the printed command",
        strict_fp,
        capsys,
    )
    assert value.strip() == "" or value.strip() not in capsys.readouterr().err


def test_a_cache_spec_with_a_line_break_is_refused(project, strict_fp, capsys):
    assert_refused(
        ["--env", "dev", "--cache-from", "type=local,src=a\nb"],
        "--cache-from 'type=local,src=a\\nb' has a line break",
        strict_fp,
        capsys,
    )


ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (
            ["--registry", ECR],
            "--skip-existing-immutable only changes what --push pushes to an "
            "IMMUTABLE ECR repository: add --push",
        ),
        ([], "--skip-existing-immutable only changes what --push pushes"),
        (
            ["--registry", "registry.example.com/rag", "--push"],
            "--skip-existing-immutable reads the tag immutability of an ECR repository, and "
            "registry.example.com is not ECR: drop it",
        ),
    ],
)
def test_skip_existing_immutable_without_an_effect_is_refused(
    argv, fragment, project, strict_fp, capsys
):
    assert_refused(
        ["--env", "dev", "--skip-existing-immutable", *argv], fragment, strict_fp, capsys
    )


def test_skip_existing_immutable_with_an_ecr_push_is_planned():
    options = Options(env="dev", registry=ECR, push=True, skip_existing_immutable=True)
    plan = make_plan(
        options, Config(), GitInfo(sha="a1b2c3d"), steps.facts.clock({"SOURCE_DATE_EPOCH": "0"})
    )
    assert plan.registry.is_ecr and plan.options.skip_existing_immutable


# --- --metadata-file: checked up front, no temporary file left behind ---------------------------


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--metadata-file", ""], "--metadata-file is empty; name a file"),
        (["--metadata-file="], "--metadata-file is empty"),
        (
            ["--metadata-file", "no/such/dir/m.json"],
            "--metadata-file no/such/dir/m.json: directory",
        ),
        (["--metadata-file", "."], "--metadata-file . is a directory; name a file"),
    ],
)
def test_a_metadata_path_that_cannot_be_written_stops_before_git(
    argv, fragment, project, strict_fp, capsys
):
    strict_fp.allow_unregistered(False)
    code, out, err = run_main(["--env", "dev", *argv], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and fragment in err, err
    assert len(strict_fp.calls) == 0  # not even git


def test_a_metadata_directory_that_is_not_writable_stops_before_git(
    project, strict_fp, capsys, monkeypatch
):
    (project / "out").mkdir()
    real = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode, **kw: (
            False if str(path).endswith("/out") and mode & os.W_OK else real(path, mode, **kw)
        ),
    )
    code, _, err = run_main(["--env", "dev", "--metadata-file", "out/m.json"], capsys)
    assert code == 2
    assert err == f"error: --metadata-file out/m.json: directory {project}/out is not writable\n"
    assert len(strict_fp.calls) == 0


def test_a_failed_replace_leaves_no_temporary_file(project, tmp_path, monkeypatch):
    from ragbuild import metadata, steps
    from ragbuild.run.runner import Runner

    plan = make_plan(
        Options(env="dev"),
        Config(),
        GitInfo(sha="a1b2c3d"),
        steps.facts.clock({"SOURCE_DATE_EPOCH": "0"}),
    )

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(metadata.os, "replace", refuse)
    from ragbuild.steps import RunState

    state = RunState(plan.options, Config(), None, plan)
    record = steps.Recorder(state, Runner(), path=str(project / "m.json"))
    with pytest.raises(Exception, match="cannot write --metadata-file .*m.json: Permission denied"):
        record.finish()
    assert sorted(p.name for p in project.iterdir()) == ["Dockerfile"]


def test_a_multi_platform_build_has_no_id_to_follow():
    plan = build_plan(f"{PLAIN}/rag-worker", platform="linux/amd64,linux/arm64")
    assert "--iidfile" not in build_command(plan, PushPlan(plan.refs), iid_file="i").argv


# --- the guide's commands: bash's tags (the drop-in promise) ------------------------------------

ECR_PROD = "123456789.dkr.ecr.us-east-1.amazonaws.com/rag-worker-prod"


GUIDE_EXAMPLES = [
    pytest.param(
        ["--env", "dev"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="development",
    ),
    pytest.param(
        ["--version", "1.0.0", "--env", "prod"],
        [
            "rag-worker:v1.0.0",
            "rag-worker:1.0.0",
            "rag-worker:prod-20231203-143022",
            "rag-worker:prod",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="production-1.0.0",
    ),
    pytest.param(
        ["--env", "staging", "--version", "1.0.0-rc.1"],
        [
            "rag-worker:v1.0.0-rc.1",
            "rag-worker:1.0.0-rc.1",
            "rag-worker:staging-20231203-143022",
            "rag-worker:staging",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="staging-rc",
    ),
    pytest.param(
        ["--env", "dev", "--registry", ECR_DEV],
        [
            f"{ECR_DEV}:dev-20231203-143022",
            f"{ECR_DEV}:dev",
            f"{ECR_DEV}:git-a1b2c3d",
            f"{ECR_DEV}:latest",
        ],
        id="ecr-registry",
    ),
    pytest.param(
        ["--env", "prod", "--version", "1.0.0", "--registry", ECR_PROD, "--push"],
        [
            f"{ECR_PROD}:v1.0.0",
            f"{ECR_PROD}:1.0.0",
            f"{ECR_PROD}:prod-20231203-143022",
            f"{ECR_PROD}:prod",
            f"{ECR_PROD}:git-a1b2c3d",
            f"{ECR_PROD}:latest",
        ],
        id="build-and-push",
    ),
    pytest.param(
        ["--env", "dev", "--no-cache"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="no-cache",
    ),
    pytest.param(
        ["--env", "dev", "--tag", "my-custom-tag"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:my-custom-tag",
            "rag-worker:latest",
        ],
        id="custom-tag",
    ),
    pytest.param(
        ["--version", "1.2.3", "--env", "prod", "--registry", ECR_PROD, "--push", "--no-cache"],
        [
            f"{ECR_PROD}:v1.2.3",
            f"{ECR_PROD}:1.2.3",
            f"{ECR_PROD}:prod-20231203-143022",
            f"{ECR_PROD}:prod",
            f"{ECR_PROD}:git-a1b2c3d",
            f"{ECR_PROD}:latest",
        ],
        id="multiple-operations",
    ),
    pytest.param(
        ["--version", "1.0.0", "--env", "dev"],
        [
            "rag-worker:v1.0.0",
            "rag-worker:1.0.0",
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="help-example-version-dev",
    ),
    pytest.param(
        ["--version", "v1.2.3", "--env", "prod", "--registry", ECR_PROD],
        [
            f"{ECR_PROD}:v1.2.3",
            f"{ECR_PROD}:1.2.3",
            f"{ECR_PROD}:prod-20231203-143022",
            f"{ECR_PROD}:prod",
            f"{ECR_PROD}:git-a1b2c3d",
            f"{ECR_PROD}:latest",
        ],
        id="leading-v-stripped-once",
    ),
    pytest.param(
        ["--version", "2.0.0", "--no-latest"],
        [
            "rag-worker:v2.0.0",
            "rag-worker:2.0.0",
            "rag-worker:git-a1b2c3d",
        ],
        id="version-only-no-latest",
    ),
    pytest.param(
        ["--env", "dev", "--no-latest", "--latest"],
        [
            "rag-worker:dev-20231203-143022",
            "rag-worker:dev",
            "rag-worker:git-a1b2c3d",
            "rag-worker:latest",
        ],
        id="latest-after-no-latest",
    ),
]


@pytest.mark.parametrize("argv, expected", GUIDE_EXAMPLES)
def test_the_guides_commands_plan_bashs_tags(argv, expected):
    """The drop-in promise, from the command line the guide gives to the tags bash made."""
    assert list(make_plan(build_cli.parse_build(argv), Config(), GIT, MOMENT).refs) == expected
