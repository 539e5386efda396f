"""Git facts through main(): the tags, the dirty mark and the release checks from a real git, and
git's failures and incomplete answers (faked) that stop a run before docker; --latest-policy auto
against a repository's version tags."""

from __future__ import annotations
import pytest
import os
import shlex
import shutil
import subprocess
from plumbum import local
from ragbuild import cli
from fakes import (
    GIT_HASH,
    GIT_REV_PARSE,
    GIT_STATUS,
    OID,
    docker_calls,
    git_ls_tree,
    git_status_output,
    register_git,
)


# --- Git facts from a real git: ``--dry-run`` through ``main()`` still runs the one read-only -------


pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


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
    """The words of the dry run's build line (a probe may come before it: the guard's
    ``docker version`` when the ignore file has an exception)."""
    return shlex.split(next(line for line in out.splitlines() if " build " in line))


def tags(out):
    words = build_words(out)
    return [words[i + 1].split(":", 1)[1] for i, w in enumerate(words) if w == "-t"]


def build_arg(out, key):
    words = build_words(out)
    values = [
        words[i + 1].split("=", 1)[1]
        for i, w in enumerate(words)
        if w == "--build-arg" and words[i + 1].startswith(key + "=")
    ]
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
    assert (
        f"warning: the git tree has uncommitted changes (Dockerfile): tagging git-{sha}-dirty"
        in err
    )


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
    assert tags(out) == [
        "v1.0.0",
        "1.0.0",
        "prod-20231203-143022",
        "prod",
        f"git-{sha}-dirty",
        "latest",
    ]


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
    assert (
        "warning: the git repository has no commits: no git-<sha> tag, GIT_COMMIT=unknown"
        in err.splitlines()
    )


@pytest.mark.parametrize(
    "flags",
    [
        ("--env", "prod", "--version", "1.0.0"),
        ("--env", "dev", "--push", "--registry", "localhost:5000/app"),
    ],
)
def test_a_release_from_a_repository_without_commits_stops_before_docker(git_env, capsys, flags):
    """No commit: no GIT_COMMIT a release could carry, as with no repository at all."""
    git("init", "-q")
    code, out, err = dry_run(capsys, *flags)
    assert code == 1
    assert err.splitlines()[-1] == (
        "error: the git repository has no commits: a release (--env prod or --push) is built "
        "from a commit git names; the run stops before docker rather than tag the image without "
        "it; commit first, or build an exported source tree (no .git) with --git-commit SHA"
    )
    assert "docker build" not in out


def test_not_a_repository(git_env, capsys):
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert tags(out) == ["dev-20231203-143022", "dev", "latest"]
    assert build_arg(out, "GIT_COMMIT") == "unknown"
    assert "warning: not a git repository: no git-<sha> tag, GIT_COMMIT=unknown" in err.splitlines()


def test_git_not_installed(repo, capsys, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with local.env(PATH=str(empty)):
        code, out, err = dry_run(capsys, "--env", "dev")
        assert code == 0, err
        assert build_arg(out, "GIT_COMMIT") == "unknown"
        assert (
            "warning: git is not installed: no git-<sha> tag, GIT_COMMIT=unknown"
            in err.splitlines()
        )
        code, out, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0")  # a release stops
        assert code == 1 and out == ""
        assert err.splitlines()[-1].startswith("error: git not found: install git")
        assert "a release (--env prod or --push) is built from a commit git names" in err
        code, out, err = dry_run(capsys, "--env", "dev", "--push", "--registry", "localhost:5000")
        assert code == 1 and out == "" and "error: git not found" in err


def test_without_a_repository_git_is_not_needed(git_env, capsys, tmp_path, monkeypatch):
    """No .git anywhere git would look: "not a git repository" is ragbuild's own finding."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with local.env(PATH=str(empty)):
        code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert "warning: not a git repository: no git-<sha> tag, GIT_COMMIT=unknown" in err.splitlines()


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


# --- what docker sends, not only what git tracks, decides whether the tree is dirty -------------


def test_untracked_file_in_the_context_makes_the_tree_dirty(repo, capsys):
    """issue 11 (a) 1: an untracked file docker sends is code that is in no commit."""
    sha = head_sha()
    (repo / "hotfix.py").write_text("print('not committed')\n")
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0, err
    assert f"git-{sha}-dirty" in tags(out)
    assert build_arg(out, "GIT_COMMIT") == f"{sha}-dirty"
    assert (
        f"warning: the git tree has uncommitted changes (hotfix.py (not in the commit)): "
        f"tagging git-{sha}-dirty"
    ) in err.splitlines()


def test_prod_is_refused_for_an_untracked_file_and_names_it(repo, capsys):
    (repo / "src").mkdir()
    (repo / "src" / "patch.py").write_text("x = 1\n")
    code, out, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0")
    assert code == 2 and out == ""
    last = err.splitlines()[-1]
    assert last.startswith(
        "error: the git tree has uncommitted changes (src/patch.py (not in the "
        "commit)): what docker would send differs from commit"
    )
    assert "add it to .dockerignore" in last and ".gitignore" not in last
    assert "--allow-dirty" in last
    code, out, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0", "--allow-dirty")
    assert code == 0, err
    assert f"git-{head_sha()}-dirty" in tags(out)


def test_many_changes_are_counted_not_all_listed(repo, capsys):
    for i in range(8):
        (repo / f"f{i}.txt").write_text("x")
    code, _, err = dry_run(capsys, "--env", "prod", "--version", "1.0.0")
    assert code == 2 and "and 3 more" in err


@pytest.mark.parametrize(
    "layout", ["dockerignored", "dockerignored-directory", "outside-the-context"]
)
def test_untracked_files_docker_does_not_send_leave_the_tree_clean(repo, capsys, layout):
    sha = head_sha()
    argv = ["--env", "prod", "--version", "1.0.0"]
    if layout.startswith("dockerignored"):
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
    assert "(build/keep.txt (not in the commit))" in err


def test_an_untracked_dockerfile_outside_the_context_is_still_read(repo, capsys):
    (repo / "service").mkdir()
    (repo / "service" / "app.py").write_text("x")
    git("add", "service/app.py")
    git("commit", "-q", "-m", "service")
    (repo / "docker").mkdir()
    (repo / "docker" / "Dockerfile.new").write_text("FROM scratch\n")
    code, out, err = dry_run(
        capsys, "--env", "dev", "--context", "service", "-f", "docker/Dockerfile.new"
    )
    assert code == 0, err
    assert tags(out)[2].endswith("-dirty")
    assert "docker/Dockerfile.new (not in the commit)" in err


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
        "the run stops before docker rather than tag the image without it"
    )


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


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="a repository owned by another user needs root to make",
)
def test_a_repository_git_refuses_as_dubious_stops(repo, capsys):
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 65534, 65534)
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 1 and out == ""
    assert "fatal: detected dubious ownership in repository" in err.splitlines()[-1]


# --- Git's failures and incomplete answers, faked (pytest-subprocess): each stops the run before ----


def run(capsys, *argv):
    code = cli.main(["--dry-run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def git_cmd(fp, argv):
    return [fp.program("git"), *argv[1:]]


@pytest.mark.parametrize(
    "stderr",
    [
        # words the old parser searched for ("head", "bad revision") in failures that are not
        # "no commits yet": each was tagged GIT_COMMIT=unknown before
        "fatal: unable to read HEAD's tree: Permission denied\n",
        "error: object file .git/objects/ab/cdef is empty\nfatal: bad revision 'HEAD'\n",
        "fatal: index file smaller than expected\n",
    ],
)
def test_a_failing_git_status_stops_before_docker(project, fp, capsys, stderr):
    fp.allow_unregistered(False)
    (project / ".git").mkdir()
    fp.register(git_cmd(fp, GIT_REV_PARSE), returncode=128, stderr="fatal: bad object HEAD\n")
    fp.register(git_cmd(fp, GIT_STATUS), returncode=128, stderr=stderr)
    code, out, err = run(capsys, "--env", "dev")
    assert code == 1 and out == ""
    first = [line for line in stderr.splitlines() if line.startswith(("fatal:", "error:"))][0]
    assert err.splitlines()[-1] == (
        f"error: git cannot say which commit this build is made from: "
        f"{first}; the run stops before docker rather than tag the "
        "image without it"
    )
    assert docker_calls(fp) == 0


@pytest.mark.parametrize("argv", [["--env", "dev"], ["--env", "prod", "--version", "1.0.0"]])
def test_a_not_a_repository_message_with_a_dot_git_is_not_trusted(project, fp, capsys, argv):
    """issue 22 case 2, faked: a .git is there (a linked worktree's file), so git's "not a git
    repository" is a checkout it cannot read, never "no repository": exit 1 before docker."""
    fp.allow_unregistered(False)
    (project / ".git").write_text("gitdir: /src/.git/worktrees/gone\n")
    gone = "fatal: not a git repository: /src/.git/worktrees/gone\n"
    fp.register(git_cmd(fp, GIT_REV_PARSE), returncode=128, stderr=gone)
    fp.register(git_cmd(fp, GIT_STATUS), returncode=128, stderr=gone)
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (
        "error: git cannot say which commit this build is made from: "
        "fatal: not a git repository: /src/.git/worktrees/gone; the "
        "run stops before docker rather than tag the image without it"
    )
    assert docker_calls(fp) == 0


def test_a_rev_parse_failure_with_a_commit_is_gits_reason(project, fp, capsys):
    """status names a commit though rev-parse failed: rev-parse's own reason stops the run."""
    fp.allow_unregistered(False)
    register_git(fp, stdout="", returncode=1)
    code, out, err = run(capsys, "--env", "dev")
    assert code == 1 and out == "" and "exit 1" in err.splitlines()[-1]


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "true\n",
        "true\n/x\n",
        "true\n/x\nmaybe\n",
        f"true\n/x\nfalse\n{OID}\n",
        f"true\n/x\nfalse\n{OID}\n0000000\n",
    ],
)
def test_an_incomplete_rev_parse_answer_stops(project, fp, capsys, answer):
    fp.allow_unregistered(False)
    (project / ".git").mkdir()
    fp.register(git_cmd(fp, GIT_REV_PARSE), stdout=answer)
    code, out, err = run(capsys, "--env", "dev")
    assert code == 1 and out == "" and "incomplete answer" in err


def test_a_status_without_head_stops(project, fp, capsys):
    fp.allow_unregistered(False)
    (project / ".git").mkdir()
    fp.register(git_cmd(fp, GIT_REV_PARSE), returncode=128, stderr="fatal: x\n")
    fp.register(git_cmd(fp, GIT_STATUS), stdout="? x\0")
    code, _, err = run(capsys, "--env", "dev")
    assert code == 1 and "no branch.oid" in err


def test_no_commits_is_told_by_the_initial_oid_not_by_words(project, fp, capsys):
    fp.allow_unregistered(False)
    (project / ".git").mkdir()
    fp.register(
        git_cmd(fp, GIT_REV_PARSE), returncode=128, stderr="fatal: bad object HEAD\n"
    )  # words that say nothing of "no commits"
    fp.register(git_cmd(fp, GIT_STATUS), stdout=git_status_output("(initial)"))
    code, out, err = run(capsys, "--env", "dev")
    assert code == 0, err
    assert "GIT_COMMIT=unknown" in out
    assert "warning: the git repository has no commits: no git-<sha> tag" in err


def register_rev_parse(fp, project):
    (project / ".git").mkdir()
    fp.register(git_cmd(fp, GIT_REV_PARSE), stdout=f"true\n{project}\nfalse\n{OID}\n{OID[:7]}\n")


@pytest.mark.parametrize(
    "answer, reason",
    [
        ({"returncode": 128, "stderr": "fatal: not a tree object\n"}, "fatal: not a tree object"),
        ({"stdout": "100644 blob abc\0"}, "git ls-tree gave '100644 blob abc'"),
    ],
)
def test_a_failing_or_odd_ls_tree_stops(project, fp, capsys, answer, reason):
    fp.allow_unregistered(False)
    register_rev_parse(fp, project)
    fp.register(git_cmd(fp, git_ls_tree()), **answer)
    code, out, err = run(capsys, "--env", "dev")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (
        "error: git cannot say which commit this build is made from: "
        f"{reason}; the run stops before docker rather than tag the "
        "image without it"
    )
    assert docker_calls(fp) == 0


@pytest.mark.parametrize(
    "answer, reason",
    [
        # a required filter that fails (git-lfs missing): git's reason
        (
            {
                "returncode": 128,
                "stderr": "error: external filter 'git-lfs clean' failed\nfatal: "
                "Dockerfile: clean filter 'lfs' failed\n",
            },
            "error: external filter 'git-lfs clean' failed",
        ),
        ({"stdout": ""}, "git hash-object gave 0 ids for 1 files"),
    ],
)
def test_a_failing_or_short_hash_object_stops(project, fp, capsys, answer, reason):
    fp.allow_unregistered(False)
    register_rev_parse(fp, project)
    fp.register(git_cmd(fp, git_ls_tree()), stdout=f"100644 blob {'1' * 40}\tDockerfile\0")
    fp.register(git_cmd(fp, GIT_HASH), **answer)
    code, out, err = run(capsys, "--env", "dev")
    assert code == 1 and out == ""
    assert reason in err.splitlines()[-1]
    assert docker_calls(fp) == 0


def test_hash_object_is_given_the_sent_files_that_the_commit_has(project, fp, capsys):
    """One process for every file; a file the commit lacks is a change without hashing."""
    fp.allow_unregistered(False)
    register_rev_parse(fp, project)
    (project / "app.txt").write_text("x\n")
    (project / "new.txt").write_text("y\n")
    fp.register(
        git_cmd(fp, git_ls_tree()),
        stdout=f"100644 blob {'1' * 40}\tDockerfile\x00100644 blob {'2' * 40}\tapp.txt"
        f"\x00100644 blob {'3' * 40}\tgone.txt\x00",
    )
    asked = []

    def answer(data):
        asked.append(data.decode())
        return {"stdout": f"{'1' * 40}\n{'9' * 40}\n"}

    fp.register(git_cmd(fp, GIT_HASH), stdin_callable=answer)
    code, out, err = run(capsys, "--env", "dev")
    assert code == 0, err
    assert sorted(asked[0].splitlines()) == ["Dockerfile", "app.txt"]
    assert (
        "warning: the git tree has uncommitted changes (app.txt, gone.txt (missing), new.txt "
        "(not in the commit)): tagging git-a1b2c3d-dirty"
    ) in err.splitlines()
    assert fp.call_count([fp.program("git"), fp.any()]) == 3


def test_a_failing_git_tag_stops_auto_with_gits_reason(project, fp, capsys):
    fp.allow_unregistered(False)
    register_git(fp)
    fp.register(
        [fp.program("git"), "tag", "--list", "v*"],
        returncode=128,
        stderr="fatal: unable to read refs: Permission denied\n",
    )
    code, out, err = run(capsys, "--version", "1.0.0", "--latest-policy", "auto")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (
        "error: git cannot list the v* tags --latest-policy auto "
        "compares with: fatal: unable to read refs: Permission denied"
    )


def test_a_shallow_clone_stops_auto_without_asking_for_tags(project, fp, capsys):
    fp.allow_unregistered(False)
    register_git(fp, shallow=True)
    code, out, err = run(capsys, "--version", "1.0.1", "--env", "prod", "--latest-policy", "auto")
    assert code == 2 and out == "" and "shallow clone" in err
    assert fp.call_count([fp.program("git"), "tag", fp.any()]) == 0


def test_the_default_policy_reads_no_tags_in_a_shallow_clone(project, fp, capsys):
    """Only auto compares with tags: a shallow CI checkout builds as before otherwise."""
    fp.allow_unregistered(False)
    register_git(fp, shallow=True)
    code, out, err = run(capsys, "--version", "1.0.1", "--env", "prod")
    assert code == 0, err
    assert "rag-worker:git-a1b2c3d" in out


# --- --latest-policy auto against a real git with v* tags: the dry run runs the one read-only -------


@pytest.fixture
def tagged(repo):  # noqa: F811
    """Tags as a real project grows them: releases, a prerelease, and tags that are no versions."""
    for name in ("v1.2.3", "v1.4.0", "v2.0.0-rc.1", "vNext", "v0.9", "release-3.0.0"):
        git("tag", name)
    git("tag", "-a", "v1.3.0", "-m", "an annotated tag counts too")
    return repo


@pytest.mark.parametrize(
    "version, expected",
    [
        ("1.4.1", ["v1.4.1", "1.4.1", "1.4", "1", "git-{sha}", "latest"]),
        ("1.4.0", ["v1.4.0", "1.4.0", "1.4", "1", "git-{sha}", "latest"]),
        ("1.3.1", ["v1.3.1", "1.3.1", "1.3", "git-{sha}"]),
        ("1.2.0", ["v1.2.0", "1.2.0", "git-{sha}"]),
        ("2.0.0", ["v2.0.0", "2.0.0", "2.0", "2", "git-{sha}", "latest"]),
        ("2.0.0-rc.2", ["v2.0.0-rc.2", "2.0.0-rc.2", "git-{sha}"]),
    ],
)
def test_auto_compares_with_the_repositorys_version_tags(tagged, capsys, version, expected):
    sha = git("rev-parse", "--short=7", "HEAD")
    code, out, err = dry_run(
        capsys, "--version", version, "--semver-tags", "--latest-policy", "auto"
    )
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


@pytest.mark.parametrize("env", ["staging", "dev"])
def test_auto_for_a_prerelease_reads_no_tags_and_moves_nothing(repo, capsys, env):  # noqa: F811
    """Issue 22 case 6: a prerelease never moves latest under auto, whatever the tags say, so a
    repository without v* tags (or a shallow one) is no reason to stop."""
    git("tag", "release-3")
    code, out, err = dry_run(
        capsys, "--env", env, "--version", "2.0.0-rc.1", "--semver-tags", "--latest-policy", "auto"
    )
    assert code == 0, err
    assert "latest" not in tags(out) and "2" not in tags(out)
    assert "  latest: left out: 2.0.0-rc.1 is a prerelease\n" in err


def test_auto_for_a_prerelease_in_a_shallow_clone_reads_no_tags(project, fp, capsys):
    fp.allow_unregistered(False)
    register_git(fp, shallow=True)
    code, out, err = run(
        capsys, "--version", "2.0.0-rc.1", "--env", "staging", "--latest-policy", "auto"
    )
    assert code == 0, err
    assert fp.call_count([fp.program("git"), "tag", fp.any()]) == 0
    assert "rag-worker:latest" not in out


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
    git(
        "clone",
        "-q",
        "--depth",
        "1",
        "--branch",
        "release-1.x",
        "--no-tags",
        f"file://{repo}",
        str(clone),
    )
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
