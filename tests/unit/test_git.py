"""Git facts from a real git: ``--dry-run`` through ``main()`` still runs the one read-only
git queries, so each repository state shows up in the printed build command."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest
from plumbum import local

from ragbuild import cli

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

#: Variables a git hook or the caller's shell may set that would point git elsewhere.
GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                     "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES")


@pytest.fixture
def git_env(tmp_path, monkeypatch, project):
    """Git sees only the test's directories and no user or system configuration."""
    with local.env():  # plumbum merges its own copy of the environment into every child's
        for name in GIT_LOCATION_VARS:
            monkeypatch.delenv(name, raising=False)
            local.env.pop(name, None)
        monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
        monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
        yield project


def git(*args):
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(git_env):
    """The project directory as a repository with one commit (the Dockerfile)."""
    git("init", "-q")
    git("config", "user.name", "Test")
    git("config", "user.email", "test@example.com")
    git("config", "commit.gpgsign", "false")
    git("add", "Dockerfile")
    git("commit", "-q", "-m", "Add the Dockerfile")
    return git_env


def head_sha():
    return git("rev-parse", "--short=7", "HEAD")


def dry_run(capsys, *argv):
    code = cli.main(["--dry-run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def build_words(out):
    return shlex.split(out.splitlines()[0])


def tags(out):
    words = build_words(out)
    return [words[i + 1].split(":", 1)[1] for i, w in enumerate(words) if w == "-t"]


def build_arg(out, key):
    words = build_words(out)
    values = [words[i + 1].split("=", 1)[1] for i, w in enumerate(words)
              if w == "--build-arg" and words[i + 1].startswith(key + "=")]
    assert len(values) == 1
    return values[0]


def test_clean_repository_tags_git_sha(repo, capsys):
    sha = head_sha()
    assert len(sha) == 7
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert tags(out) == ["dev-20231203-143022", "dev", f"git-{sha}", "latest"]
    assert build_arg(out, "GIT_COMMIT") == sha
    assert "warning" not in err


def test_dirty_tree_is_marked(repo, capsys):
    sha = head_sha()
    (repo / "Dockerfile").write_text("FROM scratch\nLABEL changed=1\n")
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert f"git-{sha}-dirty" in tags(out) and f"git-{sha}" not in tags(out)
    assert build_arg(out, "GIT_COMMIT") == f"{sha}-dirty"
    assert f"warning: the git tree has uncommitted changes (Dockerfile): tagging git-{sha}-dirty" in err


def test_staged_change_is_dirty_too(repo, capsys):
    (repo / "Dockerfile").write_text("FROM scratch\nLABEL staged=1\n")
    git("add", "Dockerfile")
    code, out, _ = dry_run(capsys, "--env", "dev")
    assert code == 0 and tags(out)[2].endswith("-dirty")


def test_prod_from_a_dirty_tree_is_refused_before_anything(repo, capsys):
    (repo / "Dockerfile").write_text("FROM scratch\nLABEL changed=1\n")
    code, out, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0")
    assert code == 2
    assert out == ""
    assert err.splitlines()[-1].startswith("error: the git tree has uncommitted changes")
    assert "--allow-dirty" in err.splitlines()[-1]


def test_prod_from_a_dirty_tree_with_allow_dirty(repo, capsys):
    sha = head_sha()
    (repo / "Dockerfile").write_text("FROM scratch\nLABEL changed=1\n")
    code, out, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0", "--allow-dirty")
    assert code == 0, err
    assert tags(out) == ["v1.0.0", "1.0.0", "prod-20231203-143022", "prod", f"git-{sha}-dirty",
                         "latest"]


def test_repository_with_tags_still_tags_the_sha(repo, capsys):
    sha = head_sha()
    git("tag", "v1.0.0")
    git("tag", "-a", "release-1", "-m", "Release 1")
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert tags(out)[2] == f"git-{sha}"
    assert build_arg(out, "GIT_COMMIT") == sha


def test_repository_without_commits(git_env, capsys):
    git("init", "-q")
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert tags(out) == ["dev-20231203-143022", "dev", "latest"]
    assert build_arg(out, "GIT_COMMIT") == "unknown"
    assert ("warning: the git repository has no commits: no git-<sha> tag, GIT_COMMIT=unknown"
            in err.splitlines())


def test_not_a_repository(git_env, capsys):
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert tags(out) == ["dev-20231203-143022", "dev", "latest"]
    assert build_arg(out, "GIT_COMMIT") == "unknown"
    assert ("warning: not a git repository: no git-<sha> tag, GIT_COMMIT=unknown"
            in err.splitlines())


def test_git_not_installed(git_env, capsys, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with local.env(PATH=str(empty)):
        code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert build_arg(out, "GIT_COMMIT") == "unknown"
    assert "warning: git is not installed: no git-<sha> tag, GIT_COMMIT=unknown" in err.splitlines()


def test_works_from_a_subdirectory_of_the_repository(repo, capsys, monkeypatch):
    sha = head_sha()
    sub = repo / "service"
    sub.mkdir()
    (sub / "Dockerfile").write_text("FROM scratch\n")
    git("add", "service/Dockerfile")
    git("commit", "-q", "-m", "the service")
    sha = head_sha()
    monkeypatch.chdir(sub)
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert f"git-{sha}" in tags(out)


def test_prod_in_a_repository_without_commits_is_not_refused_as_dirty(git_env, capsys):
    git("init", "-q")
    code, out, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0")
    assert code == 0, err
    assert "git-" not in " ".join(tags(out))


# --- what docker sends, not only what git tracks, decides whether the tree is dirty -------------


def test_untracked_file_in_the_context_makes_the_tree_dirty(repo, capsys):
    """issue 11 (a) 1: an untracked file docker sends is code that is in no commit."""
    sha = head_sha()
    (repo / "hotfix.py").write_text("print('not committed')\n")
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert f"git-{sha}-dirty" in tags(out)
    assert build_arg(out, "GIT_COMMIT") == f"{sha}-dirty"
    assert (f"warning: the git tree has uncommitted changes (hotfix.py (untracked)): tagging "
            f"git-{sha}-dirty") in err.splitlines()


def test_prod_is_refused_for_an_untracked_file_and_names_it(repo, capsys):
    (repo / "src").mkdir()
    (repo / "src" / "patch.py").write_text("x = 1\n")
    code, out, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0")
    assert code == 2 and out == ""
    last = err.splitlines()[-1]
    assert last.startswith("error: the git tree has uncommitted changes (src/patch.py (untracked))")
    assert "--allow-dirty" in last
    code, out, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0", "--allow-dirty")
    assert code == 0, err
    assert f"git-{head_sha()}-dirty" in tags(out)


def test_many_changes_are_counted_not_all_listed(repo, capsys):
    for i in range(8):
        (repo / f"f{i}.txt").write_text("x")
    code, _, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0")
    assert code == 2 and "and 3 more" in err


@pytest.mark.parametrize("layout", ["gitignored", "dockerignored", "dockerignored-directory",
                                    "outside-the-context"])
def test_untracked_files_docker_does_not_send_leave_the_tree_clean(repo, capsys, layout):
    sha = head_sha()
    argv = ["--env", "prod", "--version", "1.0.0"]
    if layout == "gitignored":
        (repo / ".gitignore").write_text("*.log\n")
        git("add", ".gitignore")
        (repo / "debug.log").write_text("x")
    elif layout.startswith("dockerignored"):
        (repo / ".dockerignore").write_text("notes.md\nscratch\n")
        git("add", ".dockerignore")
        (repo / "notes.md").write_text("x")
        (repo / "scratch").mkdir()
        (repo / "scratch" / "deep").mkdir()
        (repo / "scratch" / "deep" / "try.py").write_text("x")
    else:  # the context is a subdirectory; an untracked file beside it is not sent
        (repo / "service").mkdir()
        (repo / "service" / "app.py").write_text("x")
        git("add", "service/app.py")
        (repo / "elsewhere.txt").write_text("x")
        argv += ["--context", "service"]
    git("commit", "-q", "-m", "ignore rules")
    sha = head_sha()
    code, out, err = dry_run(capsys, *argv)
    assert code == 0, err
    assert f"git-{sha}" in tags(out) and build_arg(out, "GIT_COMMIT") == sha


def test_a_dockerignore_exception_brings_an_untracked_file_back(repo, capsys):
    """docker's matcher decides, ``!`` exceptions included: an excluded directory's file that a
    later ``!`` pattern re-includes is sent, so it makes the tree dirty."""
    (repo / ".dockerignore").write_text("build\n!build/keep.txt\n")
    git("add", ".dockerignore")
    git("commit", "-q", "-m", "ignore build")
    (repo / "build").mkdir()
    (repo / "build" / "other.txt").write_text("x")
    (repo / "build" / "keep.txt").write_text("x")
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert tags(out)[2].endswith("-dirty")
    assert "(build/keep.txt (untracked))" in err


def test_an_untracked_dockerfile_outside_the_context_is_still_read(repo, capsys):
    (repo / "service").mkdir()
    (repo / "service" / "app.py").write_text("x")
    git("add", "service/app.py")
    git("commit", "-q", "-m", "service")
    (repo / "docker").mkdir()
    (repo / "docker" / "Dockerfile.new").write_text("FROM scratch\n")
    code, out, err = dry_run(capsys, "--env", "dev", "--context", "service",
                             "-f", "docker/Dockerfile.new")
    assert code == 0, err
    assert tags(out)[2].endswith("-dirty")
    assert "docker/Dockerfile.new (untracked)" in err


# --- git that fails or answers incompletely stops the run before docker -----------------------


def test_a_missing_head_commit_stops_with_gits_reason(repo, capsys):
    """Before: "bad object HEAD" contained "head" and was read as "no commits yet", so the
    image was tagged GIT_COMMIT=unknown."""
    oid = git("rev-parse", "HEAD")
    os.remove(repo / ".git" / "objects" / oid[:2] / oid[2:])
    code, out, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (
        "error: git cannot say which commit this build is made from: fatal: bad object HEAD; "
        "the run stops before docker rather than tag the image without it")


def test_an_unreadable_repository_format_stops_with_gits_reason(repo, capsys):
    git("config", "core.repositoryformatversion", "1")
    git("config", "extensions.notyetinvented", "true")
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 1 and out == ""
    assert "fatal: unknown repository extension found:" in err.splitlines()[-1]


def test_inside_the_git_directory_stops(repo, capsys, monkeypatch):
    monkeypatch.chdir(repo / ".git")
    (repo / ".git" / "Dockerfile").write_text("FROM scratch\n")
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 1 and out == ""
    assert "this operation must be run in a work tree" in err.splitlines()[-1]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="a repository owned by another user needs root to make")
def test_a_repository_git_refuses_as_dubious_stops(repo, capsys):
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 65534, 65534)
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 1 and out == ""
    assert "fatal: detected dubious ownership in repository" in err.splitlines()[-1]
