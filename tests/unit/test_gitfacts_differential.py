"""Differential tests of ragbuild's git facts against the real git (issue 22).

* The dirty verdict: many small generated repositories with random changes (edits, chmod,
  deletes, untracked and gitignored files, skip-worktree, assume-unchanged, CRLF with and
  without core.autocrlf, symlinks, .dockerignore patterns), each compared with the truth
  computed without ragbuild's git code: the commit exported by ``git archive`` (git's own
  checkout, line endings included), both trees listed with the same ignore rules, and the
  files compared byte for byte and by mode.
* "No repository at all": generated directory layouts (nested repositories, ``.git`` files
  naming missing directories, empty ``.git`` directories, bare repositories, GIT_DIR,
  GIT_CEILING_DIRECTORIES) where ``gitfacts.discover`` is compared with ``git rev-parse``.

The seed is fixed, printed in each failure, and overridable: ``GITFACTS_SEED=123``;
``GITFACTS_CASES=500`` runs more cases.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest

from ragbuild import gitfacts
from ragbuild.config import Options
from ragbuild.run.runner import Runner
from ragbuild.git import git_info
from tests.gitcases import CASES, CLEARED, SEED, base_env, git, make_case, truth

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def ragbuild_verdict(root, context, monkeypatch) -> set:
    monkeypatch.chdir(root)
    info = git_info(Runner(), Options(env="dev", context=context, file="Dockerfile"), base_env())
    assert info.sha, info.reason
    assert info.dirty == bool(info.changes)
    return {path for path, _ in info.changes}


@pytest.fixture
def isolated(monkeypatch):
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    for key, value in base_env().items():
        if key.startswith("GIT_"):
            monkeypatch.setenv(key, value)


def test_dirty_verdict_matches_a_checkout_of_the_commit(tmp_path, monkeypatch, isolated):
    rng = random.Random(SEED)
    dirty = 0
    for number in range(CASES):
        root = tmp_path / f"case{number}"
        case = make_case(rng, root)
        expected = truth(root, case, tmp_path / f"checkout{number}")
        got = ragbuild_verdict(root, case["context"], monkeypatch)
        assert got == expected, (
            f"GITFACTS_SEED={SEED} case {number}: {'; '.join(case['done'])}: "
            f"ragbuild says {sorted(got)}, the checkout {sorted(expected)}"
        )
        dirty += bool(expected)
    assert 0.2 * CASES < dirty < 0.9 * CASES, f"GITFACTS_SEED={SEED}: {dirty} dirty cases"


# --- "no repository at all": gitfacts.discover against git's discovery ----------------------------


def make_layout(rng, root) -> tuple:
    """Nested directories root/d1/.../d4 with random .git entries; (start, environ, sound):
    ``sound`` is False when the layout has a .git git would not accept (a dangling .git file,
    an empty .git directory, a GIT_DIR naming nothing), where ragbuild may find what git does
    not (never the other way)."""
    levels = [root]
    for depth in range(4):
        levels.append(levels[-1] / f"d{depth}")
    levels[-1].mkdir(parents=True)
    sound, done = True, []
    for level in levels:
        kind = rng.choice(
            ["none", "none", "none", "repo", "dangling", "empty", "bare", "worktree-file"]
        )
        if kind == "repo":
            git(level, "init", "-q")
        elif kind == "dangling":
            (level / ".git").write_text(f"gitdir: {root}/moved/.git/worktrees/wt\n")
            sound = False
        elif kind == "empty":
            (level / ".git").mkdir()
            sound = False
        elif kind == "bare":
            if level == levels[-1]:
                continue
            bare = level / "bare.git"
            git(level, "init", "-q", "--bare", str(bare))
            levels_bare = bare  # a start inside a bare repository
            done.append(f"bare at {levels_bare}")
        elif kind == "worktree-file":
            target = root.parent / f"{root.name}-real{levels.index(level)}"
            git(root.parent, "init", "-q", str(target))
            (level / ".git").write_text(f"gitdir: {target}/.git\n")
        if kind != "none":
            done.append(f"{kind} at {level.relative_to(root.parent)}")
    start = rng.choice(levels)
    if rng.random() < 0.15 and any((level / "bare.git").is_dir() for level in levels):
        start = next(
            level / "bare.git" / "refs" for level in levels if (level / "bare.git").is_dir()
        )
    environ = base_env()
    ceilings = [str(level) for level in levels if rng.random() < 0.25]
    if ceilings or rng.random() < 0.5:
        if rng.random() < 0.3:
            ceilings.insert(0, "")  # the empty entry: no symlink resolution after it
        ceilings.append(str(root.parent))  # never above the test's own directory
        environ["GIT_CEILING_DIRECTORIES"] = ":".join(ceilings)
    if rng.random() < 0.1:
        named = rng.choice(levels)
        environ["GIT_DIR"] = (
            str(named / ".git") if (named / ".git").is_dir() else str(named / "none")
        )
        sound = sound and (named / ".git").is_dir() and (named / ".git" / "HEAD").exists()
    done.append(f"start {start.relative_to(root.parent)} ceilings={ceilings}")
    return start, environ, sound, done


def test_no_repository_is_what_git_finds_too(tmp_path_factory):
    rng = random.Random(SEED)
    found_none = found_some = 0
    for number in range(CASES * 2):
        parent = tmp_path_factory.mktemp(f"layout{number}")
        start, environ, sound, done = make_layout(rng, parent / "root")
        environ["GIT_CEILING_DIRECTORIES"] = environ.get("GIT_CEILING_DIRECTORIES", str(parent))
        asked = subprocess.run(
            ["git", "rev-parse", "--absolute-git-dir"],
            cwd=start,
            capture_output=True,
            text=True,
            env=environ,
        )
        mine = gitfacts.discover(os.path.realpath(start), environ)
        where = f"GITFACTS_SEED={SEED} layout {number}: {'; '.join(done)}"
        if mine is None:
            found_none += 1
            assert asked.returncode == 128, (
                f"{where}: ragbuild found no repository, git did: {asked.stdout}"
            )
        else:
            found_some += 1
        if sound:
            assert (mine is None) == (asked.returncode != 0), (
                f"{where}: ragbuild {mine}, git {asked.returncode} {asked.stdout}{asked.stderr}"
            )
            if asked.returncode == 0 and "GIT_DIR" not in environ:
                git_dir = (
                    gitfacts._git_dir_of(mine)
                    if not mine.endswith(".git") or os.path.isfile(mine)
                    else mine
                )
                assert os.path.realpath(git_dir) == os.path.realpath(asked.stdout.strip()), where
    assert found_none > 10 and found_some > 10, (found_none, found_some)
