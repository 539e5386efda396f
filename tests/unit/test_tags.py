"""Tags beyond bash's, through the pure plan: --semver-tags, --latest-policy, --build-number and
--ci-tags. Every expected tag list is written out in full, in order."""

from __future__ import annotations


import pytest

from ragbuild.git import parse_version_tags
from ragbuild.tags import version_channels
from ragbuild.commands.build import parse_build
from ragbuild.errors import UsageError
from ragbuild.config import Config
from ragbuild.describe import describe_plan
from ragbuild.git import version_tags_command
from ragbuild.plan import make_plan
from ragbuild.run.command import Kind
from ragbuild.tags import parse_version

from ragbuild.errors import EXIT_USAGE
from fakes import MOMENT, GIT, in_a_new_python

TS = "20231203-143022"
#: What `git tag --list 'v*'` prints in the repository these tests imagine.
GIT_TAGS = "v0.9\nv1.2.3\nv1.4.0\nv2.0.0-rc.1\nvNext\n"


def plan_for(argv, tags=GIT_TAGS, environ=None):
    known = parse_version_tags(tags) if tags is not None else None
    return make_plan(
        parse_build(argv), Config(), GIT, MOMENT, version_tags=known, environ=environ or {}
    )


TAG_PLANS = [
    # --semver-tags: <major>.<minor>, <major> right after <version>; latest stays bash's
    pytest.param(
        ["--version", "1.5.0", "--semver-tags"],
        ["v1.5.0", "1.5.0", "1.5", "1", "git-a1b2c3d", "latest"],
        id="semver-release",
    ),
    pytest.param(
        ["--version", "1.5.0", "--env", "prod", "--semver-tags"],
        ["v1.5.0", "1.5.0", "1.5", "1", f"prod-{TS}", "prod", "git-a1b2c3d", "latest"],
        id="semver-prod",
    ),
    pytest.param(
        ["--version", "1.5.0-rc.1", "--env", "staging", "--semver-tags"],
        ["v1.5.0-rc.1", "1.5.0-rc.1", f"staging-{TS}", "staging", "git-a1b2c3d", "latest"],
        id="semver-prerelease-no-channels-latest-as-bash",
    ),
    pytest.param(
        ["--version", "1.2.3+build.5", "--semver-tags"],
        ["v1.2.3_build.5", "1.2.3_build.5", "1.2", "1", "git-a1b2c3d", "latest"],
        id="semver-build-metadata-is-a-release",
    ),
    pytest.param(
        ["--version", "0.3.0", "--semver-tags", "--no-latest"],
        ["v0.3.0", "0.3.0", "0.3", "0", "git-a1b2c3d"],
        id="semver-zero-major-no-latest",
    ),
    # --latest-policy auto against v0.9 (not semver), v1.2.3, v1.4.0, v2.0.0-rc.1 (prerelease)
    pytest.param(
        ["--version", "1.4.1", "--latest-policy", "auto", "--semver-tags"],
        ["v1.4.1", "1.4.1", "1.4", "1", "git-a1b2c3d", "latest"],
        id="auto-newest",
    ),
    pytest.param(
        ["--version", "1.4.0", "--latest-policy", "auto", "--semver-tags"],
        ["v1.4.0", "1.4.0", "1.4", "1", "git-a1b2c3d", "latest"],
        id="auto-rebuild-of-the-highest",
    ),
    pytest.param(
        ["--version", "1.2.4", "--latest-policy", "auto", "--semver-tags"],
        ["v1.2.4", "1.2.4", "1.2", "git-a1b2c3d"],
        id="auto-patch-of-an-older-minor",
    ),
    pytest.param(
        ["--version", "1.2.0", "--latest-policy", "auto", "--semver-tags"],
        ["v1.2.0", "1.2.0", "git-a1b2c3d"],
        id="auto-older-than-everything",
    ),
    pytest.param(
        ["--version", "1.3.0-rc.1", "--latest-policy", "auto", "--semver-tags"],
        ["v1.3.0-rc.1", "1.3.0-rc.1", "git-a1b2c3d"],
        id="auto-prerelease",
    ),
    pytest.param(
        ["--version", "1.5.0", "--latest-policy", "auto"],
        ["v1.5.0", "1.5.0", "git-a1b2c3d", "latest"],
        id="auto-without-semver-tags",
    ),
    pytest.param(
        ["--version", "1.3.0", "--latest-policy", "auto"],
        ["v1.3.0", "1.3.0", "git-a1b2c3d"],
        id="auto-lower-drops-latest",
    ),
    pytest.param(
        ["--env", "dev", "--latest-policy", "auto"],
        [f"dev-{TS}", "dev", "git-a1b2c3d"],
        id="auto-without-version",
    ),
    pytest.param(
        ["--version", "1.9.0", "--latest-policy=never", "--semver-tags"],
        ["v1.9.0", "1.9.0", "1.9", "1", "git-a1b2c3d"],
        id="never",
    ),
    pytest.param(
        ["--version", "1.9.0", "--latest-policy", "always", "--latest"],
        ["v1.9.0", "1.9.0", "git-a1b2c3d", "latest"],
        id="always-agrees-with-latest",
    ),
    # build-N after git-<sha>, before each --tag and latest
    pytest.param(
        ["--env", "dev", "--build-number", "42", "--tag", "qa"],
        [f"dev-{TS}", "dev", "git-a1b2c3d", "build-42", "qa", "latest"],
        id="build-number",
    ),
    pytest.param(
        [
            "--version",
            "2.1.0",
            "--env",
            "prod",
            "--semver-tags",
            "--build-number=7",
            "-t",
            "release",
        ],
        [
            "v2.1.0",
            "2.1.0",
            "2.1",
            "2",
            f"prod-{TS}",
            "prod",
            "git-a1b2c3d",
            "build-7",
            "release",
            "latest",
        ],
        id="everything",
    ),
    pytest.param(
        ["--env", "dev", "--build-number", "0042"],
        [f"dev-{TS}", "dev", "git-a1b2c3d", "build-42", "latest"],
        id="build-number-leading-zeros",
    ),
    pytest.param(
        ["--env", "dev", "--build-number", "42", "--tag", "build-42"],
        [f"dev-{TS}", "dev", "git-a1b2c3d", "build-42", "latest"],
        id="build-tag-given-once",
    ),
]


@pytest.mark.parametrize("argv, expected", TAG_PLANS)
def test_tag_plan(argv, expected):
    assert list(plan_for(argv).tags) == expected


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"BUILD_NUMBER": "11", "GITHUB_RUN_NUMBER": "22", "CI_PIPELINE_IID": "33"}, "build-11"),
        ({"GITHUB_RUN_NUMBER": "22", "CI_PIPELINE_IID": "33"}, "build-22"),
        ({"CI_PIPELINE_IID": "33"}, "build-33"),
        ({"BUILD_NUMBER": "", "GITHUB_RUN_NUMBER": "22"}, "build-22"),  # empty counts as unset
    ],
)
def test_ci_tags_take_the_first_build_number_set(environ, expected):
    plan = plan_for(["--env", "dev", "--ci-tags"], environ=environ)
    assert list(plan.tags) == [f"dev-{TS}", "dev", "git-a1b2c3d", expected, "latest"]
    variable = [
        name
        for name in ("BUILD_NUMBER", "GITHUB_RUN_NUMBER", "CI_PIPELINE_IID")
        if environ.get(name)
    ][0]
    assert f"  {expected}: build number from {variable}" in describe_plan(plan)


def test_build_number_flag_wins_over_ci_variables():
    plan = plan_for(
        ["--env", "dev", "--ci-tags", "--build-number", "5"], environ={"BUILD_NUMBER": "11"}
    )
    assert "build-5" in plan.tags and "build-11" not in plan.tags


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (
            ["--env", "dev", "--ci-tags"],
            {},
            "--ci-tags needs a build number: none of BUILD_NUMBER, "
            "GITHUB_RUN_NUMBER, CI_PIPELINE_IID is set",
        ),
        (
            ["--env", "dev", "--ci-tags"],
            {"BUILD_NUMBER": "abc"},
            "BUILD_NUMBER='abc' (read by --ci-tags) is not a positive integer",
        ),
        (
            ["--env", "dev", "--build-number", "0"],
            {},
            "--build-number '0' is not a positive integer",
        ),
        (
            ["--env", "dev", "--build-number", "-3"],
            {},
            "--build-number '-3' is not a positive integer",
        ),
        (["--env", "dev", "--build-number", "1.5"], {}, "--build-number '1.5' is not a positive"),
        (["--env", "dev", "--build-number", ""], {}, "--build-number '' is not a positive integer"),
        (["--env", "dev", "--semver-tags"], {}, "--semver-tags needs --version"),
    ],
)
def test_refusals(argv, environ, message):
    with pytest.raises(UsageError) as err:
        plan_for(argv, environ=environ)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--no-latest", "--latest-policy", "always"],
            "--no-latest contradicts --latest-policy always",
        ),
        (
            ["--no-latest", "--latest-policy", "auto"],
            "--no-latest contradicts --latest-policy auto",
        ),
        (["--latest", "--latest-policy", "never"], "--latest contradicts --latest-policy never"),
        (["--latest", "--latest-policy", "auto"], "--latest contradicts --latest-policy auto"),
        (["--latest-policy", "sometimes"], "argument --latest-policy: invalid choice: 'sometimes'"),
    ],
)
def test_contradicting_latest_flags_are_refused(argv, message):
    with pytest.raises(UsageError) as err:
        parse_build(["--env", "dev", *argv])
    assert message in str(err.value)


@pytest.mark.parametrize(
    "argv, policy",
    [
        ([], "always"),
        (["--latest"], "always"),
        (["--no-latest"], "never"),
        (["--no-latest", "--latest"], "always"),
        (["--no-latest", "--latest-policy", "never"], "never"),
        (["--latest-policy", "auto"], "auto"),
        (["--latest-policy", "never"], "never"),
    ],
)
def test_latest_flags_become_one_policy(argv, policy):
    options = parse_build(argv)
    assert options.latest_policy == policy
    assert not hasattr(options, "latest")  # one source of truth: the policy


# --- why each moving tag was kept or left out ---------------------------------------------------


def notes(argv, tags=GIT_TAGS):
    plan = plan_for(argv, tags=tags)
    lines = describe_plan(plan)
    if "tag choices:" not in lines:
        return []
    start = lines.index("tag choices:") + 1
    return [line.strip() for line in lines[start : lines.index("build args:")]]


def test_auto_explains_each_moving_tag():
    assert notes(["--version", "1.2.4", "--latest-policy", "auto", "--semver-tags"]) == [
        "1.2: kept: 1.2.4 >= v1.2.3, the highest v1.2.* tag",
        "1: left out: 1.2.4 < v1.4.0, the highest v1.* tag",
        "latest: left out: 1.2.4 < v1.4.0, the highest version tag",
    ]


def test_auto_explains_a_prerelease():
    assert notes(["--version", "1.3.0-rc.1", "--latest-policy", "auto", "--semver-tags"]) == [
        "1.3: left out: 1.3.0-rc.1 is a prerelease",
        "1: left out: 1.3.0-rc.1 is a prerelease",
        "latest: left out: 1.3.0-rc.1 is a prerelease",
    ]


def test_auto_with_a_new_major_ignores_prerelease_tags():
    # v2.0.0-rc.1 is there, but a prerelease tag never moved anything: 2.0.0 starts channel 2
    assert notes(["--version", "2.0.0", "--latest-policy", "auto", "--semver-tags"]) == [
        "2.0: kept: 2.0.0 is a release and there is no v2.0.* tag",
        "2: kept: 2.0.0 is a release and there is no v2.* tag",
        "latest: kept: 2.0.0 >= v1.4.0, the highest version tag",
    ]


def test_auto_without_version_tags():
    assert notes(["--version", "0.1.0", "--latest-policy", "auto"], tags="") == [
        "latest: kept: 0.1.0 is a release and there is no version tag"
    ]


def test_auto_without_a_version_says_so():
    assert notes(["--env", "dev", "--latest-policy", "auto"]) == [
        "latest: left out: no --version (with --latest-policy auto only a released version "
        "moves it)"
    ]


def test_always_and_never_explain_only_with_semver_tags():
    assert notes(["--version", "1.0.0"]) == []
    assert notes(["--version", "1.0.0", "--no-latest"]) == []
    assert notes(["--version", "1.0.0-rc.1", "--semver-tags"]) == [
        "1.0: left out: 1.0.0-rc.1 is a prerelease",
        "1: left out: 1.0.0-rc.1 is a prerelease",
        "latest: kept: --latest-policy always (the default, as bash)",
    ]
    assert notes(["--version", "1.0.0", "--semver-tags", "--no-latest"])[-1] == (
        "latest: left out: --latest-policy never (--no-latest)"
    )


# --- the git facts ------------------------------------------------------------------------------


def test_version_tags_are_one_read_only_git_call():
    cmd = version_tags_command()
    assert cmd.argv == ("git", "tag", "--list", "v*")
    assert cmd.kind is Kind.QUERY and not cmd.check


def test_non_semver_tags_are_ignored():
    assert [name for name, _ in parse_version_tags(GIT_TAGS)] == ["v1.2.3", "v1.4.0", "v2.0.0-rc.1"]
    assert parse_version_tags("") == ()
    assert parse_version_tags("release-1\nv01.2.3\nv1.2\n") == ()


def test_version_channels_only_reads_the_tags_under_auto():
    # under always the highest tag (v9.0.0) is not consulted
    channels = version_channels(
        parse_version("1.0.0"),
        semver_tags=True,
        policy="always",
        known=parse_version_tags("v9.0.0\n"),
    )
    assert channels.tags == ("1.0", "1") and channels.latest


# --- semver: parsed once, imported only when a version needs it --------------------------------


@pytest.mark.parametrize("given", ["1.4.1", "v1.4.1"])
def test_the_version_gives_its_tags_build_arg_and_channels_in_one_spelling(given):
    plan = plan_for(["--version", given, "--semver-tags"], tags=None)
    assert plan.tags[:4] == ("v1.4.1", "1.4.1", "1.4", "1")
    assert ("VERSION", "1.4.1") in plan.build_args and plan.version == "1.4.1"
    assert {"1.4", "1", "latest"} <= plan.moving_tags


def test_a_build_without_version_works_without_semver_installed():
    """semver is needed only when a version is given: a dev build runs where it is missing."""

    code = (
        "import sys; sys.modules['semver'] = None; from datetime import datetime; "
        "from ragbuild.plan import Config, GitInfo, Options, make_plan; "
        "print(make_plan(Options(env='dev'), Config(), GitInfo(), datetime(2023, 1, 1)).tags)"
    )
    done = in_a_new_python(code)
    assert "'dev-20230101-000000', 'dev', 'latest'" in done.stdout


# --- a --tag the latest policy would contradict -------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--env", "dev", "--no-latest", "--tag", "latest"],
            "--tag latest contradicts --no-latest (--latest-policy never): it would tag latest whatever",
        ),
        (
            ["--env", "dev", "--latest-policy", "never", "--tag", "latest"],
            "--tag latest contradicts --no-latest (--latest-policy never)",
        ),
        (
            ["--env", "dev", "--latest-policy", "auto", "--tag", "latest"],
            "--tag latest contradicts --latest-policy auto: it would tag latest whatever the policy "
            "decides; drop --tag latest, or use --latest-policy always",
        ),
        (
            ["--version", "1.2.4", "--semver-tags", "--latest-policy", "auto", "--tag", "1"],
            "--tag 1 contradicts --semver-tags with --latest-policy auto, which decides whether 1 moves",
        ),
        (
            [
                "--version",
                "1.2.4",
                "--semver-tags",
                "--latest-policy",
                "auto",
                "-t",
                "ok",
                "-t",
                "1.2",
            ],
            "--tag 1.2 contradicts --semver-tags with --latest-policy auto",
        ),
    ],
)
def test_a_tag_the_policy_decides_about_is_refused(argv, message):
    with pytest.raises(UsageError) as err:
        plan_for(argv)
    assert str(err.value).startswith(message)


def test_tags_the_policy_does_not_decide_about_are_kept():
    assert plan_for(["--env", "dev", "--tag", "latest"]).tags[-1] == "latest"  # always: as bash
    assert "1" in plan_for(["--version", "1.2.4", "--latest-policy", "auto", "--tag", "1"]).tags
    never = plan_for(["--version", "1.2.4", "--semver-tags", "--no-latest", "--tag", "1"])
    assert never.tags[:4] == ("v1.2.4", "1.2.4", "1.2", "1") and "latest" not in never.tags


def test_the_auto_dry_run_no_longer_says_left_out_while_tagging_latest(project, strict_fp, capsys):
    from fakes import docker_calls
    from ragbuild import cli

    strict_fp.register([strict_fp.program("git"), "tag", "--list", "v*"], stdout="")
    code = cli.main(["--env", "dev", "--latest-policy", "auto", "--tag", "latest", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: --tag latest contradicts --latest-policy auto")
    assert docker_calls(strict_fp) == 0


def test_the_latest_policy_reads_as_its_flag_value_in_messages():
    from ragbuild.config import LatestPolicy

    assert [f"--latest-policy {policy}" for policy in LatestPolicy] == [
        "--latest-policy always",
        "--latest-policy auto",
        "--latest-policy never",
    ]


@pytest.mark.parametrize(
    "flags, policy",
    [([], "always"), (["--latest-policy", "always"], "always"), (["--no-latest"], "never")],
)
def test_a_channel_note_names_the_policy_as_the_user_spells_it(flags, policy):
    """Python 3.11 formats a str Enum member as ``LatestPolicy.ALWAYS``: the note says ``always``."""
    assert notes(["--version", "1.4.2", "--semver-tags", *flags])[0] == (
        f"1.4: kept: 1.4.2 is a release (--latest-policy {policy}: git tags are not compared)"
    )


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, version",
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("1.0.0-rc.1", "1.0.0-rc.1"),
        ("1.2.3+build.5", "1.2.3+build.5"),
        ("v0.0.0-alpha.1+exp.sha.5114f85", "0.0.0-alpha.1+exp.sha.5114f85"),
    ],
)
def test_semantic_versions_are_accepted(raw, version):
    assert str(parse_version(raw)) == version


@pytest.mark.parametrize(
    "raw",
    [
        "1.0",
        "01.2.3",
        "latest",
        "1.2.3.4",
        "vv1.2.3",
        "V1.2.3",
        "1.2.3-",
        "1.2",
        " 1.2.3",
        "1.2.3-rc..1",
        "",
    ],
)
def test_non_semantic_versions_are_refused_naming_the_value(raw):
    with pytest.raises(UsageError) as err:
        parse_version(raw)
    message = str(err.value)
    assert f"--version {raw!r}" in message
    assert "\n" not in message
    assert err.value.exit_code == EXIT_USAGE


def test_version_message_says_what_is_allowed():
    with pytest.raises(UsageError, match=r"MAJOR\.MINOR\.PATCH"):
        parse_version("1.0")
