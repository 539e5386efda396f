"""tags.py's rules, each answer, note and message whole: the version, the channel tags and the
``latest`` policy with the note for each decision, the CI build number, and the tags a build
gets in their order. Written against the survivors of ``make mutation``
(docs/test-harness.md#mutation-testing)."""

from __future__ import annotations

import pytest
import semver

from ragbuild import tags
from ragbuild.config import LatestPolicy
from ragbuild.git import GitInfo, parse_version_tags
from ragbuild.tags import BuildNumber, Channels
from fakes import refused

ALWAYS, AUTO, NEVER = LatestPolicy.ALWAYS, LatestPolicy.AUTO, LatestPolicy.NEVER
V = semver.Version.parse
STAMP = "20250102-030405"
TAG_RULE = (
    "which is not a valid Docker tag: up to 128 letters, digits, '_', '.' or '-', not "
    "starting with '.' or '-'"
)


def test_channel_tags():
    assert tags.channel_tags(V("1.4.2")) == ("1.4", "1")
    assert tags.channel_tags(V("10.0.0-rc.1")) == ("10.0", "10")


@pytest.mark.parametrize(
    "parsed, env, semver_tags, moving",
    [
        (None, None, False, {"latest"}),
        (None, "", True, {"latest"}),
        (V("1.4.2"), "dev", True, {"latest", "dev", "1.4", "1"}),
        (V("1.4.2"), "dev", False, {"latest", "dev"}),
        (None, "dev", True, {"latest", "dev"}),
        (V("1.4.2"), None, True, {"latest", "1.4", "1"}),
    ],
)
def test_moving_tags(parsed, env, semver_tags, moving):
    assert tags.moving_tags(parsed, env, semver_tags) == frozenset(moving)


@pytest.mark.parametrize(
    "parsed, policy, needed",
    [
        (V("1.0.0"), AUTO, True),
        (V("1.0.0-rc.1"), AUTO, False),
        (None, AUTO, False),
        (V("1.0.0"), ALWAYS, False),
        (V("1.0.0"), NEVER, False),
    ],
)
def test_needs_known_tags(parsed, policy, needed):
    assert tags.needs_known_tags(parsed, policy) is needed


def known(*names: str) -> tuple:
    return parse_version_tags("\n".join(names))


def test_highest_stable_tag_by_default_of_all():
    found = known("v1.0.0", "v3.0.0-rc.1", "v2.1.0", "v0.9.0")
    assert tags._highest(found) == ("v2.1.0", V("2.1.0"))
    assert tags._highest(found, lambda v: v.major < 2) == ("v1.0.0", V("1.0.0"))
    # by version, not by the tag's name: v10 is above v9
    assert tags._highest(known("v9.1.0", "v10.0.0")) == ("v10.0.0", V("10.0.0"))
    assert tags._highest(known("v3.0.0-rc.1")) is None
    assert tags._highest(()) is None


def test_semver_tags_need_a_version():
    message = "--semver-tags needs --version (it adds <major> and <major>.<minor>)"
    for policy in (ALWAYS, AUTO, NEVER):
        assert refused(tags.version_channels, None, semver_tags=True, policy=policy) == message


@pytest.mark.parametrize(
    "version, semver_tags, policy, expected",
    [
        ("1.4.2", False, ALWAYS, Channels((), True, ())),
        (None, False, ALWAYS, Channels((), True, ())),
        ("1.4.2", False, NEVER, Channels((), False, ())),
        (
            "1.4.2",
            True,
            ALWAYS,
            Channels(
                ("1.4", "1"),
                True,
                (
                    "1.4: kept: 1.4.2 is a release (--latest-policy always: git tags are not "
                    "compared)",
                    "1: kept: 1.4.2 is a release (--latest-policy always: git tags are not "
                    "compared)",
                    "latest: kept: --latest-policy always (the default, as bash)",
                ),
            ),
        ),
        (
            "2.0.0-rc.1",
            True,
            NEVER,
            Channels(
                (),
                False,
                (
                    "2.0: left out: 2.0.0-rc.1 is a prerelease",
                    "2: left out: 2.0.0-rc.1 is a prerelease",
                    "latest: left out: --latest-policy never (--no-latest)",
                ),
            ),
        ),
        (
            "1.4.2",
            True,
            NEVER,
            Channels(
                ("1.4", "1"),
                False,
                (
                    "1.4: kept: 1.4.2 is a release (--latest-policy never: git tags are not "
                    "compared)",
                    "1: kept: 1.4.2 is a release (--latest-policy never: git tags are not "
                    "compared)",
                    "latest: left out: --latest-policy never (--no-latest)",
                ),
            ),
        ),
        (
            None,
            False,
            AUTO,
            Channels(
                (),
                False,
                (
                    "latest: left out: no --version (with --latest-policy auto only a released "
                    "version moves it)",
                ),
            ),
        ),
        (
            "1.0.0-rc.1",
            True,
            AUTO,
            Channels(
                (),
                False,
                (
                    "1.0: left out: 1.0.0-rc.1 is a prerelease",
                    "1: left out: 1.0.0-rc.1 is a prerelease",
                    "latest: left out: 1.0.0-rc.1 is a prerelease",
                ),
            ),
        ),
        (
            "1.4.2",
            True,
            AUTO,
            Channels(
                ("1.4", "1"),
                True,
                (
                    "1.4: kept: 1.4.2 is a release and there is no v1.4.* tag",
                    "1: kept: 1.4.2 is a release and there is no v1.* tag",
                    "latest: kept: 1.4.2 is a release and there is no version tag",
                ),
            ),
        ),
    ],
)
def test_version_channels_without_git_tags(version, semver_tags, policy, expected):
    parsed = V(version) if version is not None else None
    assert tags.version_channels(parsed, semver_tags=semver_tags, policy=policy) == expected


def test_auto_compares_each_channel_with_its_own_stable_tags():
    # 1.4.1 after v2.4.9: moves 1.4 (v1.4.1 is equal: kept), not 1 (v1.5.0), not latest
    found = known("v2.0.0", "v1.5.0", "v1.4.1", "v2.4.9", "v1.4.9-rc.1", "v0.4.7")
    channel = tags.version_channels(V("1.4.1"), semver_tags=True, policy=AUTO, known=found)
    assert channel == Channels(
        ("1.4",),
        False,
        (
            "1.4: kept: 1.4.1 >= v1.4.1, the highest v1.4.* tag",
            "1: left out: 1.4.1 < v1.5.0, the highest v1.* tag",
            "latest: left out: 1.4.1 < v2.4.9, the highest version tag",
        ),
    )


def test_auto_moves_every_channel_of_the_highest_release():
    found = known("v1.9.0", "v2.0.0", "v2.0.1", "v3.0.0-rc.1", "v2.0.2-rc.1")
    channel = tags.version_channels(V("2.0.1"), semver_tags=True, policy=AUTO, known=found)
    assert channel == Channels(
        ("2.0", "2"),
        True,
        (
            "2.0: kept: 2.0.1 >= v2.0.1, the highest v2.0.* tag",
            "2: kept: 2.0.1 >= v2.0.1, the highest v2.* tag",
            "latest: kept: 2.0.1 >= v2.0.1, the highest version tag",
        ),
    )


def test_auto_compares_versions_not_names():
    found = known("v9.1.0", "v10.0.0")
    channel = tags.version_channels(V("9.2.0"), semver_tags=False, policy=AUTO, known=found)
    assert channel.notes == ("latest: left out: 9.2.0 < v10.0.0, the highest version tag",)


def test_auto_without_semver_tags_decides_latest_only():
    found = known("v1.0.0")
    assert tags.version_channels(V("0.9.0"), semver_tags=False, policy=AUTO, known=found) == (
        Channels((), False, ("latest: left out: 0.9.0 < v1.0.0, the highest version tag",))
    )


def test_policy_given_as_its_word():
    channel = tags.version_channels(V("1.0.0"), semver_tags=True, policy="always")
    assert channel.notes[0] == (
        "1.0: kept: 1.0.0 is a release (--latest-policy always: git tags are not compared)"
    )


@pytest.mark.parametrize(
    "flag, ci_tags, environ, number",
    [
        ("7", False, {}, BuildNumber("7", "--build-number")),
        (" 007 ", True, {"BUILD_NUMBER": "5"}, BuildNumber("7", "--build-number")),
        ("1", False, {}, BuildNumber("1", "--build-number")),
        (None, False, {"BUILD_NUMBER": "5"}, None),
        (
            None,
            True,
            {"BUILD_NUMBER": "5", "GITHUB_RUN_NUMBER": "12", "CI_PIPELINE_IID": "3"},
            BuildNumber("5", "BUILD_NUMBER"),
        ),
        (
            None,
            True,
            {"BUILD_NUMBER": "", "GITHUB_RUN_NUMBER": "12", "CI_PIPELINE_IID": "3"},
            BuildNumber("12", "GITHUB_RUN_NUMBER"),
        ),
        (None, True, {"CI_PIPELINE_IID": "03"}, BuildNumber("3", "CI_PIPELINE_IID")),
    ],
)
def test_build_number(flag, ci_tags, environ, number):
    assert tags.build_number(flag, ci_tags, environ) == number


@pytest.mark.parametrize(
    "flag, environ, message",
    [
        (
            None,
            {"OTHER": "1"},
            "--ci-tags needs a build number: none of BUILD_NUMBER, GITHUB_RUN_NUMBER, "
            "CI_PIPELINE_IID is set (or pass --build-number N)",
        ),
        (
            "0",
            {},
            "--build-number '0' is not a positive integer (the build-<N> tag needs one)",
        ),
        (
            " 00 ",
            {},
            "--build-number ' 00 ' is not a positive integer (the build-<N> tag needs one)",
        ),
        ("-1", {}, "--build-number '-1' is not a positive integer (the build-<N> tag needs one)"),
        ("x1", {}, "--build-number 'x1' is not a positive integer (the build-<N> tag needs one)"),
        (
            None,
            {"GITHUB_RUN_NUMBER": "1.5"},
            "GITHUB_RUN_NUMBER='1.5' (read by --ci-tags) is not a positive integer (the "
            "build-<N> tag needs one)",
        ),
    ],
)
def test_build_number_refused(flag, environ, message):
    assert refused(tags.build_number, flag, True, environ) == message


@pytest.mark.parametrize(
    "raw, version",
    [("v1.2.3", "1.2.3"), ("1.2.3", "1.2.3"), ("v1.3.0-rc.1+b.5", "1.3.0-rc.1+b.5")],
)
def test_parse_version(raw, version):
    parsed = tags.parse_version(raw)
    assert isinstance(parsed, semver.Version)
    assert str(parsed) == version


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            "v",
            "--version 'v' is empty; give a semantic version such as 1.2.3 (with make: "
            "VERSION=1.2.3)",
        ),
        (
            "",
            "--version '' is empty; give a semantic version such as 1.2.3 (with make: "
            "VERSION=1.2.3)",
        ),
        (
            "vv1.2.3",
            "--version 'vv1.2.3' is not a semantic version: use MAJOR.MINOR.PATCH with an "
            "optional -prerelease and +build, e.g. 1.2.3 or 1.3.0-rc.1",
        ),
        (
            "1.2",
            "--version '1.2' is not a semantic version: use MAJOR.MINOR.PATCH with an "
            "optional -prerelease and +build, e.g. 1.2.3 or 1.3.0-rc.1",
        ),
    ],
)
def test_parse_version_refused(raw, message):
    assert refused(tags.parse_version, raw) == message


GIT = GitInfo(sha="abc1234")


def test_plan_tags_in_their_order():
    channel = Channels(("1.2", "1"), True)
    number = BuildNumber("9", "BUILD_NUMBER")
    assert tags.plan_tags("1.2.3+b.4", "dev", STAMP, GIT, number, ("x", "y"), channel) == (
        "v1.2.3_b.4",
        "1.2.3_b.4",
        "1.2",
        "1",
        f"dev-{STAMP}",
        "dev",
        "git-abc1234",
        "build-9",
        "x",
        "y",
        "latest",
    )


def test_plan_tags_give_each_tag_once_and_leave_out_what_is_not_asked():
    dirty = GitInfo(sha="abc1234", dirty=True)
    channel = Channels((), False)
    assert tags.plan_tags(None, "dev", STAMP, dirty, None, ("dev", "z"), channel) == (
        f"dev-{STAMP}",
        "dev",
        "git-abc1234-dirty",
        "z",
    )
    assert tags.plan_tags("1.0.0", None, STAMP, GitInfo(), None, ("latest",), Channels()) == (
        "v1.0.0",
        "1.0.0",
        "latest",
    )


def test_a_version_too_long_for_a_tag_is_refused_as_the_version():
    version = "1.2.3+" + "b" * 130
    message = refused(tags.plan_tags, version, None, STAMP, GIT, None, (), Channels())
    assert message == (
        f"--version {'v1.2.3_' + 'b' * 130!r} is not a valid Docker tag: up to 128 letters, "
        "digits, '_', '.' or '-', not starting with '.' or '-'"
    )


@pytest.mark.parametrize(
    "env, git, number, message",
    [
        (
            "e" * 43 + " ",  # a 60-character tag is shown whole
            GIT,
            None,
            f"--env {'e' * 43 + ' '!r} makes the tag {'e' * 43 + ' -' + STAMP!r} (60 "
            f"characters), {TAG_RULE}",
        ),
        (
            "e" * 44,
            GitInfo(sha="a b"),
            None,
            f"git's commit id makes the tag 'git-a b' (7 characters), {TAG_RULE}",
        ),
        (
            None,
            GitInfo(sha="s" * 56 + " "),  # 61 characters: shortened
            None,
            f"git's commit id makes the tag {'git-' + 's' * 36 + '...' + 's' * 11 + ' '!r} "
            f"(61 characters), {TAG_RULE}",
        ),
        (
            None,
            GIT,
            BuildNumber("9" * 200, "--build-number"),
            "the build number from --build-number makes the tag "
            f"{'build-' + '9' * 34 + '...' + '9' * 12!r} (206 characters), {TAG_RULE}",
        ),
    ],
)
def test_a_generated_tag_docker_would_refuse(env, git, number, message):
    got = refused(tags.plan_tags, None, env, STAMP, git, number, (), Channels())
    assert got == message


# Survivors of `make mutation` that are equivalent (no input tells them from the code):
# - plan_tags' ``tags += [v<version>, <version>]`` as ``tags = [...]``: ``tags`` is still empty
#   there, the version's tags come first (mutant 10).
# - version_channels' ``version = str(parsed) if parsed is not None else None`` with the
#   condition ``or True`` (``"None"``): ``version`` is only read where ``parsed`` is a version
#   (``decide`` returns before it without one, --semver-tags is refused without one) (mutant 11).
# plan_tags checked ``<version>`` as a tag after ``v<version>``; a semantic version starts with
# a digit, so the second check could never fail when the first passed: it is gone (its
# mutants, a changed source name in a message no input could reach, survived).
