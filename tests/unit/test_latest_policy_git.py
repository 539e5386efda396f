"""--latest-policy auto against a real git with v* tags: the dry run runs the one read-only
``git tag --list 'v*'`` and the printed build command shows which moving tags the version got."""

from __future__ import annotations

import shutil

import pytest

from test_git import dry_run, git, git_env, repo, tags  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture
def tagged(repo):  # noqa: F811
    """Tags as a real project grows them: releases, a prerelease, and tags that are no versions."""
    for name in ("v1.2.3", "v1.4.0", "v2.0.0-rc.1", "vNext", "v0.9", "release-3.0.0"):
        git("tag", name)
    git("tag", "-a", "v1.3.0", "-m", "an annotated tag counts too")
    return repo


@pytest.mark.parametrize("version, expected", [
    ("1.4.1", ["v1.4.1", "1.4.1", "1.4", "1", "git-{sha}", "latest"]),
    ("1.4.0", ["v1.4.0", "1.4.0", "1.4", "1", "git-{sha}", "latest"]),
    ("1.3.1", ["v1.3.1", "1.3.1", "1.3", "git-{sha}"]),
    ("1.2.0", ["v1.2.0", "1.2.0", "git-{sha}"]),
    ("2.0.0", ["v2.0.0", "2.0.0", "2.0", "2", "git-{sha}", "latest"]),
    ("2.0.0-rc.2", ["v2.0.0-rc.2", "2.0.0-rc.2", "git-{sha}"]),
])
def test_auto_compares_with_the_repositorys_version_tags(tagged, capsys, version, expected):
    sha = git("rev-parse", "--short=7", "HEAD")
    code, out, err = dry_run(capsys, "--version", version, "--semver-tags", "--latest-policy",
                             "auto")
    assert code == 0, err
    assert tags(out) == [t.format(sha=sha) for t in expected]


def test_auto_says_why_in_the_printed_plan(tagged, capsys):
    code, _, err = dry_run(capsys, "--version", "1.3.1", "--semver-tags", "--latest-policy", "auto")
    assert code == 0
    assert "tag choices:\n" in err
    assert "  1.3: kept: 1.3.1 >= v1.3.0, the highest v1.3.* tag\n" in err
    assert "  1: left out: 1.3.1 < v1.4.0, the highest v1.* tag\n" in err
    assert "  latest: left out: 1.3.1 < v1.4.0, the highest version tag\n" in err


def test_auto_in_a_repository_without_tags_moves_latest(repo, capsys):  # noqa: F811
    code, out, err = dry_run(capsys, "--version", "0.1.0", "--latest-policy", "auto")
    assert code == 0
    assert tags(out)[-1] == "latest"
    assert "latest: kept: 0.1.0 is a release and there is no version tag" in err


def test_auto_outside_a_repository_warns_and_compares_with_nothing(git_env, capsys):  # noqa: F811
    code, out, err = dry_run(capsys, "--version", "0.1.0", "--latest-policy", "auto")
    assert code == 0
    assert "warning: cannot list the v* git tags" in err
    assert tags(out)[-1] == "latest"
