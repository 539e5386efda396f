"""Issue 22's git cases against the real engine and git: a change git is told not to look at
stops a prod build before docker (case 1), a checkout git cannot read stops it (case 2), and
the dirty verdict of generated repositories against what docker itself sends (one build for
every case)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tarfile
import io

import pytest

from ragbuild.config import Options
from ragbuild.run.runner import Runner
from ragbuild.git import git_info
from tests.gitcases import CASES, CLEARED, SEED, base_env, make_case

from .support import BASE_IMAGE, git

pytestmark = pytest.mark.e2e

SERVICE_DOCKERFILE = (
    "FROM python:3.11-slim\nARG GIT_COMMIT\nLABEL commit=$GIT_COMMIT\nCOPY . /app\n"
)


def service(project) -> str:
    """A small service in the project copy (svc/: Dockerfile, app.txt), committed: its sha."""
    context = project.path / "svc"
    context.mkdir()
    (context / "Dockerfile").write_text(SERVICE_DOCKERFILE)
    (context / "app.txt").write_text("setting = committed\n")
    git(project.path, "add", "svc")
    git(project.path, "commit", "-q", "-m", "svc")
    return git(project.path, "rev-parse", "--short", "HEAD")


def test_case1_a_skip_worktree_edit_stops_prod_before_docker(project, unique, docker, images):
    """issue 22 case 1: the edit is hidden from `git status`; prod exits 2 naming app.txt and
    nothing is built; --allow-dirty builds it tagged -dirty, and the image holds the edit."""
    sha = service(project)
    (project.path / "svc" / "app.txt").write_text("setting = local only\n")
    git(project.path, "update-index", "--skip-worktree", "svc/app.txt")
    assert git(project.path, "status", "--porcelain") == ""
    name = images.track_repository(unique("hidden"))
    args = ["-f", "svc/Dockerfile", "--context", "svc", "--image-name", name]
    refused = project.script("--env", "prod", "--version", "1.0.0", *args)
    assert refused.returncode == 2, refused.describe()
    assert "(svc/app.txt)" in refused.stderr.splitlines()[-1]
    assert "+ docker" not in refused.stderr and docker.refs(name) == []
    result = project.script(
        "--env", "prod", "--version", "1.0.0", "--allow-dirty", *args
    ).assert_ok()
    images.track_result(result)
    assert docker.image_id(f"{name}:git-{sha}-dirty") and not docker.image_id(f"{name}:git-{sha}")
    cat = docker.quiet("run", "--rm", "--entrypoint", "cat", f"{name}:prod", "/app/app.txt")
    assert cat.stdout == "setting = local only\n"


def test_case2_a_moved_linked_worktree_stops_prod_before_docker(project, unique, docker, tmp_path):
    """issue 22 case 2: a linked worktree with a hotfix, its main repository moved away: git
    exits 128, the run stops (exit 1) with git's reason, and nothing is built."""
    service(project)
    wt = tmp_path / "wt"
    git(project.path, "worktree", "add", "-q", str(wt))
    (wt / "svc" / "app.txt").write_text("hotfix\n")
    moved = project.path.parent / f"{project.path.name}-moved.git"
    shutil.move(str(project.path / ".git"), str(moved))
    try:
        name = unique("moved")
        result = project.runner.run(
            [
                str(project.venv / "bin" / "python"),
                "-m",
                "ragbuild",
                "--env",
                "prod",
                "--version",
                "1.0.0",
                "-f",
                "svc/Dockerfile",
                "--context",
                "svc",
                "--image-name",
                name,
            ],
            cwd=wt,
        )
        assert result.returncode == 1, result.describe()
        last = result.stderr.splitlines()[-1]
        assert last.startswith(
            "error: git cannot say which commit this build is made from: "
            "fatal: not a git repository: "
        ), last
        assert "/worktrees/wt" in last
        assert "+ docker" not in result.stderr and docker.refs(name) == []
    finally:
        shutil.move(str(moved), str(project.path / ".git"))


# --- the dirty verdict against docker: what the engine sends, from the work tree and the commit ---

LISTER = """import hashlib, json, os, stat
found = {}
for top, dirs, files in os.walk("/ctx"):
    for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
        full = os.path.join(top, name)
        mode = os.lstat(full).st_mode
        if stat.S_ISLNK(mode):
            found[full] = ["link", os.readlink(full)]
        else:
            data = open(full, "rb").read()
            found[full] = ["x" if mode & stat.S_IXUSR else "f", hashlib.sha256(data).hexdigest(),
                           hashlib.sha256(data.replace(b"\\r\\n", b"\\n")).hexdigest()]
json.dump(found, open("/listing.json", "w"))
"""


def prefixed(patterns: str, prefix: str) -> list:
    """A case's .dockerignore lines for its directory inside the shared context (docker's
    patterns are relative to the context root: a prefix keeps their meaning)."""
    lines = []
    for line in patterns.splitlines():
        if line.strip():
            bang = "!" if line.startswith("!") else ""
            lines.append(f"{bang}{prefix}/{line.lstrip('!')}")
    return lines


def exported(root, into):
    data = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", "HEAD"],
        check=True,
        capture_output=True,
        env=base_env(),
    ).stdout
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into)


def docker_truth(listing: dict, number: int, autocrlf: bool) -> set:
    """The paths whose sent file differs between the case's work tree and its commit, as the
    engine received them."""
    sides = {}
    for side in ("work", "head"):
        prefix = f"/ctx/case{number}/{side}/"
        sides[side] = {
            path[len(prefix) :]: entry for path, entry in listing.items() if path.startswith(prefix)
        }
    work, head = sides["work"], sides["head"]
    differs = set()
    for path in set(work) | set(head):
        a, b = work.get(path), head.get(path)
        if a is None or b is None or a[0] != b[0]:
            differs.add(path)
        elif a[1] != b[1] and not (autocrlf and a[0] != "link" and a[2] == b[2]):
            differs.add(path)
    return differs


def test_the_dirty_verdict_matches_what_docker_sends(
    tmp_path, monkeypatch, docker, unique, images, runner
):
    """Generated repositories (tests/gitcases.py) side by side in one build context: each
    case's work tree and its commit (git archive), under the case's own .dockerignore patterns;
    the image lists what the engine received; ragbuild's verdict for each case must name the
    same files. GITFACTS_SEED / GITFACTS_CASES as in the unit differential test."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    rng = random.Random(SEED)
    context = tmp_path / "context"
    context.mkdir()
    ignore = ["**/.git"]
    cases = []
    for number in range(CASES):
        root = tmp_path / f"case{number}"
        case = make_case(rng, root, subcontext=False)
        monkeypatch.chdir(root)
        info = git_info(Runner(), Options(env="dev", context=".", file="Dockerfile"), base_env())
        cases.append((case, {path for path, _ in info.changes}))
        work = context / f"case{number}" / "work"
        shutil.copytree(root, work, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        exported(root, context / f"case{number}" / "head")
        patterns = (root / ".dockerignore").read_text() if (root / ".dockerignore").exists() else ""
        ignore += prefixed(patterns, f"case{number}/work") + prefixed(
            patterns, f"case{number}/head"
        )
    (context / ".dockerignore").write_text("\n".join(ignore) + "\n")
    (context / "list.py").write_text(LISTER)
    (context / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nCOPY . /ctx\nRUN python3 /ctx/list.py\n"
    )
    name = images.track_repository(unique("gitfacts"))
    built = docker("build", "-q", "-t", name, str(context), env={"DOCKER_BUILDKIT": "1"})
    assert built.returncode == 0, built.describe()
    shown = docker.quiet("run", "--rm", "--entrypoint", "cat", name, "/listing.json")
    assert shown.returncode == 0, shown.stderr
    listing = json.loads(shown.stdout)
    dirty = 0
    for number, (case, verdict) in enumerate(cases):
        expected = docker_truth(listing, number, case["autocrlf"])
        assert verdict == expected, (
            f"GITFACTS_SEED={SEED} case {number}: {'; '.join(case['done'])}: "
            f"ragbuild says {sorted(verdict)}, docker {sorted(expected)}"
        )
        dirty += bool(expected)
    assert 0.2 * CASES < dirty < 0.9 * CASES, f"GITFACTS_SEED={SEED}: {dirty} dirty cases"
