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


def test_auto_in_a_repository_without_version_tags_stops(repo, capsys):  # noqa: F811
    """No v* tag fetched: auto cannot tell whether a higher version exists upstream."""
    git("tag", "release-3")
    code, out, err = dry_run(capsys, "--version", "0.1.0", "--latest-policy", "auto")
    assert code == 2 and out == ""
    last = err.splitlines()[-1]
    assert "no v* version tag" in last and "git fetch --tags --unshallow" in last
    assert "fetch-depth: 0" in last and "--latest-policy always" in last


def test_auto_outside_a_repository_stops(git_env, capsys):  # noqa: F811
    code, out, err = dry_run(capsys, "--version", "0.1.0", "--latest-policy", "auto")
    assert code == 2 and out == ""
    assert "not a git repository" in err.splitlines()[-1]


def test_auto_without_a_version_needs_no_tags(repo, capsys):  # noqa: F811
    code, out, err = dry_run(capsys, "--env", "dev", "--latest-policy", "auto")
    assert code == 0, err
    assert "latest" not in tags(out)


def _commit(message):
    git("commit", "-q", "--allow-empty", "-m", message)


def test_auto_in_a_shallow_ci_checkout_stops_before_docker(repo, capsys, tmp_path, monkeypatch):  # noqa: F811
    """issue 11 (a) 2: what a default actions/checkout gives: one commit of release-1.x, no tags.
    Before, auto said "kept: there is no version tag" and moved latest past v2.0.0."""
    _commit("1.0.0")
    git("tag", "v1.0.0")
    git("branch", "release-1.x")
    _commit("2.0.0")
    git("tag", "v2.0.0")
    git("checkout", "-q", "release-1.x")
    _commit("1.0.1")
    clone = tmp_path / "ci-checkout"
    git("clone", "-q", "--depth", "1", "--branch", "release-1.x", "--no-tags",
        f"file://{repo}", str(clone))
    monkeypatch.chdir(clone)
    argv = ("--version", "1.0.1", "--env", "prod", "--semver-tags", "--latest-policy", "auto")
    code, out, err = dry_run(capsys, *argv)
    assert code == 2 and out == ""
    last = err.splitlines()[-1]
    assert last.startswith("error: --latest-policy auto cannot decide in a shallow clone")
    assert "`git fetch --tags --unshallow`" in last and "`fetch-depth: 0`" in last
    # the fix it names works: with the history and tags, latest stays on v2.0.0
    git("fetch", "-q", "--tags", "--unshallow")
    code, out, err = dry_run(capsys, *argv)
    assert code == 0, err
    assert tags(out)[:4] == ["v1.0.1", "1.0.1", "1.0", "1"] and "latest" not in tags(out)
    assert "latest: left out: 1.0.1 < v2.0.0, the highest version tag" in err
