"""One choice of walk (guard.context_rules) for the context step, the git facts' dirty check and
doctor: where the docker client is a 20.10 classic builder and the ignore file has an exception
whose two walks differ, all three follow the walk that client makes."""

from __future__ import annotations

import types

import pytest

from ragbuild import guard
from ragbuild.commands import doctor
from ragbuild.config import Options
from ragbuild.git import git_info
from tests.gitcases import CLEARED, base_env, git
from fakes import ClientSays

IGNORE = ".git\nnode_modules\n!**/keep*\n"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    for key, value in base_env().items():
        if key.startswith("GIT_"):
            monkeypatch.setenv(key, value)
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (root / ".dockerignore").write_text(IGNORE)
    (root / "src" / "keep.py").write_text("kept\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "one")
    # not in the commit: only buildx's walk sends it (it walks into node_modules for **/keep*)
    (root / "node_modules" / "pkg").mkdir(parents=True)
    (root / "node_modules" / "pkg" / "keep.js").write_text("new\n")
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize(
    "client, flags, dirty",
    [
        ("20.10.24+dfsg1", {}, []),  # the classic builder does not send node_modules/pkg/keep.js
        ("28.0.1", {}, ["node_modules/pkg/keep.js"]),
        # a single-platform push: the classic walk too (then build_pushes is false: below)
        ("20.10.24", {"push": True}, []),
        ("20.10.24", {"builder": "remote"}, ["node_modules/pkg/keep.js"]),
    ],
)
def test_the_dirty_verdict_follows_the_walk_the_client_makes(repo, client, flags, dirty):
    runner = ClientSays(client)
    options = Options(env="dev", context=".", file="Dockerfile", **flags)
    info = git_info(runner, options, base_env())
    assert [path for path, _ in info.changes] == dirty
    sent = {rel for rel, _ in guard.walk_context(guard.context_rules(runner, options))}
    assert ("node_modules/pkg/keep.js" in sent) is bool(dirty)
    # asked only when the walks can differ and the build does not go through buildx
    assert runner.asked == (0 if "builder" in flags else 2)


def test_the_client_is_not_asked_without_an_exception(repo):
    (repo / ".dockerignore").write_text("node_modules\n")
    runner = ClientSays("20.10.24")
    info = git_info(runner, Options(env="dev", context=".", file="Dockerfile"), base_env())
    assert info.changes == ((".dockerignore", ""),) and runner.asked == 0


@pytest.mark.parametrize("client, files", [("20.10.24", 3), ("28.0.1", 4)])
def test_doctor_counts_the_files_of_the_walk_the_client_makes(repo, client, files):
    doc = types.SimpleNamespace(
        runner=ClientSays(client),
        options=Options(env="dev", context=".", file="Dockerfile"),
        environ=base_env(),
    )
    (finding,) = doctor.check_context(doc)
    assert f"{files} files" in finding.detail, finding


@pytest.mark.parametrize(
    "flags, buildx",
    [
        ({}, False),
        ({"push": True}, False),  # one platform: the guard's walk decides (build_pushes)
        ({"builder": "remote"}, True),
        ({"platform": "linux/amd64,linux/arm64"}, True),
        ({"platform": "linux/amd64"}, False),
        ({"cache_to": ("type=local,dest=/tmp/c",)}, True),
        ({"cache_to": ("type=inline",)}, False),
        ({"cache_from": ("localhost:5000/app:cache",)}, False),
        ({"platform": "not a platform"}, True),  # the plan says why; the walk sends the most
    ],
)
def test_through_buildx_is_the_plans_buildx_from_the_flags(flags, buildx):
    assert guard.through_buildx(Options(**flags)) is buildx


@pytest.mark.parametrize("client, by_build", [("20.10.24", False), ("28.0.1", True)])
def test_a_push_whose_walk_was_the_classic_clis_stays_docker_build_then_push(
    repo, client, by_build
):
    """Where the guard took the classic CLI's walk, the build must be the classic ``docker
    build`` (then ``docker push``), not ``buildx build --push``, which would send other files."""
    from datetime import datetime

    from ragbuild.commands.build import parse_build
    from ragbuild.config import Config
    from ragbuild.docker_config import DockerTarget
    from ragbuild.git import GitInfo
    from ragbuild.plan import PushPlan, build_pushes, make_plan

    options = Options(env="dev", context=".", file="Dockerfile", push=True)
    report = guard.scan_context(".", "Dockerfile", guard.context_rules(ClientSays(client), options))
    argv = ["--env", "dev", "--registry", "localhost:5000/r", "--push"]
    plan = make_plan(
        parse_build(argv), Config(), GitInfo(), datetime(2026, 1, 2), docker=DockerTarget()
    )
    assert build_pushes(plan, PushPlan(plan.refs), True, report.classic_walk) is by_build
