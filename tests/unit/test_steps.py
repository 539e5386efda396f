"""The build's steps on their own: docker's config.json, the summary's tag check, the daemon
diagnosis, and what a dry run of the checks before the build prints."""

from __future__ import annotations
import dataclasses
import json
import pytest
from ragbuild import push, steps
from ragbuild import docker_config
from ragbuild.docker_config import DockerTarget
from ragbuild.errors import DockerUnavailable
from ragbuild.reference import familiar
from ragbuild.run.runner import Runner
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


@pytest.mark.parametrize(
    "content, context, helpers",
    [
        (
            json.dumps(
                {"currentContext": "big-box", "credHelpers": {"r.example": "ecr-login"}}
            ).encode(),
            "big-box",
            {"r.example": "ecr-login"},
        ),
        (b"\xff\xfe not utf-8", None, {}),
        (b"{broken", None, {}),
        (b"[]", None, {}),
        (json.dumps({"currentContext": 3, "credHelpers": ["ecr-login"]}).encode(), None, {}),
        (
            json.dumps({"credHelpers": {"a": "", "b": None, "c": "gcloud"}}).encode(),
            None,
            {"a": "", "c": "gcloud"},  # "": no helper for "a", not even credsStore (issue 23)
        ),
    ],
)
def test_read_docker_config(tmp_path, content, context, helpers):
    (tmp_path / "config.json").write_bytes(content)
    config = docker_config.read_docker_config({"DOCKER_CONFIG": str(tmp_path)})
    assert (config.current_context, config.cred_helpers) == (context, helpers)


def test_a_missing_docker_config_is_nothing_set(tmp_path):
    assert docker_config.read_docker_config(
        {"DOCKER_CONFIG": str(tmp_path)}
    ) == docker_config.DockerConfig(str(tmp_path / "config.json"))


# --- the summary's tag check -------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, listed",
    [
        ("docker.io/library/rag-worker:dev", "rag-worker:dev"),
        ("index.docker.io/team/rag-worker:dev", "team/rag-worker:dev"),
        ("docker.io/team/rag-worker:dev", "team/rag-worker:dev"),
        ("library/rag-worker:dev", "rag-worker:dev"),
        ("docker.io/library/team/x:dev", "library/team/x:dev"),
        ("localhost:5000/library/x:dev", "localhost:5000/library/x:dev"),
        ("rag-worker:dev", "rag-worker:dev"),
    ],
)
def test_refs_are_compared_as_docker_lists_them(ref, listed):
    assert familiar(ref) == listed
    assert familiar(listed) == listed


@pytest.mark.parametrize(
    "base", ["docker.io/library/rag-worker", "index.docker.io/team/rag", "library/rag-worker"]
)
def test_a_good_build_on_docker_hub_names_never_lacks_tags(fp, base, capsys):
    from datetime import datetime

    from ragbuild.config import Config, Options
    from ragbuild.git import GitInfo
    from ragbuild.plan import make_plan

    if "/" in base and "." in base.split("/")[0]:
        options = Options(env="dev", registry=base)
    else:
        options = Options(env="dev", image_name=base)
    plan = make_plan(options, Config(), GitInfo(sha="abc1234"), datetime(2026, 1, 1))
    listed = [familiar(ref) for ref in plan.refs]
    fp.register(
        [fp.program("docker"), "image", "inspect", fp.any()],
        stdout=f"sha256:0123 12 {json.dumps(listed)} null\n",
    )
    info = steps.summary.summarize(Runner(), plan)
    assert info.repo_tags == tuple(listed)


# --- the daemon: one list of markers, one message ----------------------------------------------


def test_push_and_diagnose_share_the_daemon_markers_and_message():
    for marker in docker_config.DAEMON_DOWN_MARKERS:
        assert push.classify_failure(f"docker: {marker.upper()}") == push.Failure.DAEMON
    # a push's "connection refused" is the registry's, not the daemon's
    assert (
        push.classify_failure("dial tcp 10.0.0.1:5000: connect: connection refused")
        == push.Failure.UNREACHABLE
    )
    target = DockerTarget(host="tcp://10.0.0.5:2375")
    assert docker_config.daemon_unreachable(target).startswith(
        "cannot reach the Docker daemon at tcp://10.0.0.5:2375: start it"
    )


def test_diagnose_names_the_unreachable_daemon(fp):
    from types import SimpleNamespace

    fp.register(
        [fp.program("docker"), "version", "--format", "{{.Client.Version}}"],
        returncode=1,
        stderr='error during connect: Get "http://x/v1.24/version"\n',
    )
    target = DockerTarget(context="buildbox")
    with pytest.raises(DockerUnavailable) as err:
        steps.build.diagnose(Runner(), SimpleNamespace(docker=target))
    assert str(err.value) == docker_config.daemon_unreachable(target)


# --- the checks before the build, in a dry run -------------------------------------------------


def test_a_dry_run_with_a_missing_scanner_warns_and_prints_the_scan_it_would_run(
    project, strict_fp, capsys
):
    from ragbuild import cli

    code = cli.main(
        [
            "--env",
            "dev",
            "--dry-run",
            "--scan-command",
            "no-such-scanner-4711 {image} --fail-on high",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert (
        "warning: the scanner no-such-scanner-4711 (--scan-command) is not installed or not "
        "executable (a real run stops here)"
    ) in err.splitlines()
    assert out.splitlines()[-1] == "no-such-scanner-4711 IMAGE_ID --fail-on high"
    assert err.count("no-such-scanner-4711") == 1  # one warning, not one per check


# --- Git facts from a real git: ``--dry-run`` through ``main()`` still runs the one read-only -------


pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

#: Variables a git hook or the caller's shell may set that would point git elsewhere.
GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
)


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


# --- a build that pushes (plan.build_pushes) ---------------------------------------------------


def _pushing_plan(tmp_path, **options):
    from registry_fakes import build_plan
    from ragbuild.plan import PushPlan

    plan = build_plan(registry="localhost:5000/rag-worker", **options)
    plan = dataclasses.replace(plan, docker=DockerTarget())
    return plan, PushPlan(plan.refs, by_build=True)


def _is_pushing_build(argv):
    return argv[1:4] == ["buildx", "build", "--builder"] and "--push" in argv


def test_a_build_that_pushes_records_the_digest_it_wrote_for_every_ref(fp, tmp_path):
    plan, pushing = _pushing_plan(tmp_path)
    digest = "sha256:" + "12" * 32

    def build(process):
        argv = list(process.args)
        assert _is_pushing_build(argv) and argv[argv.index("--builder") + 1] == "default"
        path = argv[argv.index("--metadata-file") + 1]
        with open(path, "w") as metadata:
            json.dump(
                {"containerimage.digest": digest, "containerimage.config.digest": "x"}, metadata
            )

    fp.register([fp.program("docker"), "buildx", "build", fp.any()], callback=build)
    digests = {}
    assert steps.build.build(Runner(), plan, pushing, digests).pushed is True
    assert digests == {ref: digest for ref in plan.refs}


@pytest.mark.parametrize("written", ["", "{}", '{"containerimage.digest": "sha256:short"}', "[1]"])
def test_a_build_that_pushes_without_a_digest_cannot_be_verified(fp, tmp_path, written):
    from ragbuild.errors import PushFailed

    plan, pushing = _pushing_plan(tmp_path)

    def build(process):
        argv = list(process.args)
        if written:
            with open(argv[argv.index("--metadata-file") + 1], "w") as metadata:
                metadata.write(written)

    fp.register([fp.program("docker"), "buildx", "build", fp.any()], callback=build)
    digests = {}
    with pytest.raises(PushFailed, match="named no manifest digest") as failed:
        steps.build.build(Runner(), plan, pushing, digests)
    # the build did push: every ref is recorded as pushed, digest unknown (the metadata's
    # pushed_refs), and the message says so, as a docker push that printed no digest does
    assert digests == {ref: None for ref in plan.refs}
    assert f"pushed: {plan.refs[0]} (digest unknown)" in str(failed.value)


def _register_local_image(fp, plan, created, refs=None):
    """What ``docker image inspect`` says of the plan's primary ref after a build."""
    labels = {"org.opencontainers.image.created": created}
    fp.register(
        [fp.program("docker"), "image", "inspect", "--format", fp.any(), plan.primary],
        stdout=f"sha256:{'0e' * 32} 1000 {json.dumps(list(refs or plan.refs))} "
        f"{json.dumps(labels)}\n",
    )


@pytest.mark.parametrize("pushed", [True, False])
def test_tags_missing_after_a_build_that_pushed_says_the_tags_are_out(fp, tmp_path, pushed):
    """The summary's tag check fails after the build pushed: the user learns the tags went to
    the registry anyway (the verification does not run after a failed step)."""
    from ragbuild.errors import CommandFailed

    plan, _ = _pushing_plan(tmp_path)
    _register_local_image(fp, plan, plan.created, refs=plan.refs[:1])
    with pytest.raises(CommandFailed) as err:
        steps.summary.summarize(Runner(), plan, pushed=pushed)
    said = str(err.value)
    assert said.startswith(f"the built image lacks tags {', '.join(plan.refs[1:])}; ")
    assert (
        f"the build had already pushed its {len(plan.refs)} tags to localhost:5000/rag-worker "
        "(not read back)" in said
    ) is pushed


def test_the_pipelines_inspect_step_tells_the_summary_whether_the_build_pushed(fp, tmp_path):
    from ragbuild import steps
    from ragbuild.errors import CommandFailed
    from ragbuild.config import Config, Options

    plan, _ = _pushing_plan(tmp_path)
    facts = steps.facts.Facts(
        git=None, moment=steps.facts.clock({}), docker_config=None, docker=None
    )
    state = steps.RunState(Options(), Config(), facts, plan, build_pushed=True)
    _register_local_image(fp, plan, plan.created, refs=plan.refs[:1])
    with pytest.raises(CommandFailed, match="the build had already pushed its"):
        steps.STEPS[[step.name for step in steps.STEPS].index("inspect")].run(Runner(), state)


def test_a_push_that_fails_after_this_runs_build_goes_again_with_docker_push(fp, tmp_path, capsys):
    """buildx names the image in the daemon before it pushes: every ref on one image with this
    run's created label means the build worked and the push failed. No second build."""
    plan, pushing = _pushing_plan(tmp_path)
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1)
    _register_local_image(fp, plan, plan.created)
    digests = {}
    assert steps.build.build(Runner(), plan, pushing, digests).pushed is False
    assert digests == {}
    err = capsys.readouterr().err
    assert "after it built and tagged the image" in err and "the push failed" in err
    assert not [c for c in fp.calls if list(c)[1] == "build"]  # never built twice


@pytest.mark.parametrize(
    "found",
    [
        "missing",  # no image with the primary tag
        "older",  # an earlier build's image: another created label
        "fewer tags",  # not every ref names it
    ],
)
def test_a_failed_build_that_pushes_is_the_builds_failure_without_a_second_build(
    fp, tmp_path, capsys, found
):
    from ragbuild.errors import CommandFailed

    plan, pushing = _pushing_plan(tmp_path)
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1)
    if found == "missing":
        fp.register(
            [fp.program("docker"), "image", "inspect", "--format", fp.any(), plan.primary],
            returncode=1,
            stderr="Error: No such image\n",
        )
    else:
        _register_local_image(
            fp,
            plan,
            "2020-01-01T00:00:00+00:00" if found == "older" else plan.created,
            refs=plan.refs[:1] if found == "fewer tags" else None,
        )
    fp.register([fp.program("docker"), "version", "--format", fp.any()], stdout="28.2.2\n")
    fp.register([fp.program("docker"), "buildx", "version"], stdout="v0.13.1\n")
    with pytest.raises(CommandFailed, match=r"the build failed: no image of this run") as err:
        steps.build.build(Runner(), plan, pushing, {})
    assert err.value.returncode == 1
    assert not [c for c in fp.calls if list(c)[1] == "build"]
    assert "docker push" not in capsys.readouterr().err


def test_with_source_date_epoch_a_failed_build_that_pushes_builds_again_to_tell(
    fp, tmp_path, capsys
):
    """SOURCE_DATE_EPOCH gives every build one created label: an earlier build's image would
    pass for this run's, so the build runs again without the push instead."""
    from ragbuild.errors import CommandFailed

    plan, pushing = _pushing_plan(tmp_path)
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1)
    fp.register([fp.program("docker"), "build", fp.any()])  # the same build, cached, no push
    assert steps.build.build(Runner(), plan, pushing, {}, unique_created=False).pushed is False
    err = capsys.readouterr().err
    assert "building again without the push" in err and "the push failed" in err
    plain = [c for c in fp.calls if list(c)[1] == "build"]
    assert len(plain) == 1 and "--push" not in list(plain[0])
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1)
    fp.register([fp.program("docker"), "build", fp.any()], returncode=1)
    fp.register([fp.program("docker"), "version", "--format", fp.any()], stdout="28.2.2\n")
    fp.register([fp.program("docker"), "buildx", "version"], stdout="v0.13.1\n")
    with pytest.raises(CommandFailed, match=r"docker build failed \(exit 1\)"):
        steps.build.build(Runner(), plan, pushing, {}, unique_created=False)


def test_the_created_label_is_this_runs_alone_without_source_date_epoch():
    from datetime import datetime

    plain = steps.facts.Facts(
        git=None, moment=steps.facts.clock({}), docker_config=None, docker=None
    )
    fixed = dataclasses.replace(
        plain, moment=steps.facts.clock({"SOURCE_DATE_EPOCH": "1700000000"})
    )
    assert isinstance(plain.moment, datetime)
    assert plain.unique_created and not fixed.unique_created


def test_a_dry_run_of_a_push_with_buildx_shows_the_build_that_pushes_and_no_docker_push(
    project, fp, capsys, buildx_plugin
):
    register_git(fp)
    code = cli.main(
        ["--env", "dev", "--registry", "localhost:5000/rag-worker", "--push", "--dry-run"]
    )
    out = capsys.readouterr().out
    assert code == 0
    builds = [line for line in out.splitlines() if " build " in f" {line} "]
    assert len(builds) == 1 and builds[0].startswith("docker buildx build --builder default ")
    assert (
        "--push --provenance=false --sbom=false --output type=image,oci-mediatypes=false "
        "--metadata-file "
    ) in builds[0]
    assert "docker push" not in out


@pytest.mark.parametrize("flags", [["--smoke-test"], ["--builder", "other"]])
def test_a_dry_run_pushes_with_docker_push_when_something_comes_between(
    project, fp, capsys, buildx_plugin, flags
):
    """A smoke test must pass before anything is pushed; another builder keeps --load."""
    register_git(fp)
    assert (
        cli.main(
            [
                "--env",
                "dev",
                "--registry",
                "localhost:5000/rag-worker",
                "--push",
                "--dry-run",
                *flags,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "docker push localhost:5000/rag-worker:dev" in out
    assert not any("--push" in line for line in out.splitlines() if " build " in line)


def test_a_dry_run_prints_the_build_that_pushes_as_the_real_run_starts_it(fp, tmp_path):
    """docs/dry-run.md: the real run's ``+`` lines are the dry run's output. The build's
    --metadata-file was a fresh temporary directory each run, deleted when the build ended: the
    dry run printed a path no real run uses, and pasted it made a build that pushed and then
    failed writing to a directory that is gone. A dry run makes no directory either."""
    import io
    from ragbuild.run.dry import DryRunner

    plan, pushing = _pushing_plan(tmp_path)
    out = io.StringIO()
    steps.build.build(DryRunner(out=out, log=io.StringIO()), plan, pushing, {})
    assert not os.path.exists(
        os.path.dirname(steps.build.answer_path(plan))
    )  # not even the directory
    printed = [line for line in out.getvalue().splitlines() if "buildx build" in line]

    def build(process):
        with open(list(process.args)[list(process.args).index("--metadata-file") + 1], "w") as f:
            json.dump({"containerimage.digest": "sha256:" + "12" * 32}, f)

    fp.register([fp.program("docker"), "buildx", "build", fp.any()], callback=build)
    log = io.StringIO()
    steps.build.build(Runner(log=log), plan, pushing, {})
    executed = [line[2:] for line in log.getvalue().splitlines() if line.startswith("+ ")]
    assert len(printed) == 1 and executed == printed
    assert not os.path.exists(steps.build.answer_path(plan))  # removed once read


def test_a_build_that_pushes_never_takes_an_earlier_runs_answer(fp, tmp_path):
    """The answer file of a run with the same plan (SOURCE_DATE_EPOCH) is removed before the
    build: a build that writes none is one that named no digest, not the earlier digest."""
    from ragbuild.errors import PushFailed

    plan, pushing = _pushing_plan(tmp_path)
    os.mkdir(os.path.dirname(steps.build.answer_path(plan)), 0o700)  # as an earlier run left it
    with open(steps.build.answer_path(plan), "w") as stale:
        json.dump({"containerimage.digest": "sha256:" + "34" * 32}, stale)
    fp.register([fp.program("docker"), "buildx", "build", fp.any()])
    digests = {}
    with pytest.raises(PushFailed, match="named no manifest digest"):
        steps.build.build(Runner(), plan, pushing, digests)
    assert set(digests.values()) == {None}


def test_builds_of_other_plans_in_the_same_second_get_other_answer_files(tmp_path):
    """``--env dev`` and ``--env staging`` of one commit, started together (a CI matrix), must not
    read each other's digest."""
    from registry_fakes import build_plan

    dev, prod = (
        build_plan(registry="localhost:5000/rag-worker", env="dev"),
        build_plan(registry="localhost:5000/rag-worker", env="staging"),
    )
    assert dev.created == prod.created and dev.base == prod.base
    assert steps.build.answer_path(dev) != steps.build.answer_path(prod)
    assert steps.build.answer_path(dev) == steps.build.answer_path(dataclasses.replace(dev))


# --- a failed build's cause, from what docker said (build_failure) -----------------------------
# The faked docker's stderr is a real failed build's output (build_failures/, which
# test_build_failure.py describes); the runner reads it as it reads the real one's pipe.


def _said(name):
    from pathlib import Path

    return (Path(__file__).parent / "build_failures" / f"{name}.txt").read_bytes().decode()


def _runner():
    """Logs to a pipe-like stream: never a terminal, so docker's stderr is read through a pipe
    (a fake's as a real one's) even under ``pytest -s`` on a terminal (test_runner.py has the
    pty)."""
    import io

    return Runner(log=io.StringIO())


def _local_plan(**options):
    from registry_fakes import build_plan

    return dataclasses.replace(
        build_plan(registry=None, push=False, **options), docker=DockerTarget()
    )


def _register_diagnosis(fp, client="20.10.24+dfsg1"):
    fp.register([fp.program("docker"), "version", "--format", fp.any()], stdout=f"{client}\n")
    fp.register([fp.program("docker"), "buildx", "version"], stdout="v0.13.1\n")


@pytest.mark.parametrize("returncode", [1, 17])
def test_a_failed_build_says_its_cause_in_one_line_after_its_output(fp, returncode):
    from ragbuild.build_failure import classify
    from ragbuild.errors import CommandFailed

    said = _said("tls-pip.legacy")
    fp.register([fp.program("docker"), "build", fp.any()], returncode=returncode, stderr=said)
    _register_diagnosis(fp)
    plan = _local_plan()
    runner = _runner()
    with pytest.raises(CommandFailed) as err:
        steps.build.build(runner, plan, None, {})
    expected = classify(said, not_passed=plan.host.ca_note).message
    assert str(err.value) == f"docker build failed (exit {returncode}): {expected}"
    assert err.value.returncode == returncode  # docker's
    assert said in runner._log.getvalue()  # streamed to the user as it came


def test_a_failed_build_of_another_cause_points_at_its_output(fp):
    from ragbuild.errors import CommandFailed

    fp.register(
        [fp.program("docker"), "build", fp.any()],
        returncode=1,
        stderr=_said("other-after-tls.modern"),
    )
    _register_diagnosis(fp)
    with pytest.raises(CommandFailed) as err:
        steps.build.build(_runner(), _local_plan(pull=True), None, {})
    assert str(err.value).startswith(
        "docker build failed (exit 1); its output is above; with "
        "--pull, docker must reach the registry"
    )


def test_with_pull_an_unreachable_base_image_says_to_drop_it(fp):
    from ragbuild.errors import CommandFailed

    fp.register(
        [fp.program("docker"), "build", fp.any()], returncode=1, stderr=_said("base-pull.legacy")
    )
    _register_diagnosis(fp)
    with pytest.raises(CommandFailed) as err:
        steps.build.build(_runner(), _local_plan(pull=True), None, {})
    said = str(err.value)
    assert said.startswith(
        "docker build failed (exit 1): the engine cannot get the base image "
        "python:3.11-slim (its registry's name does not resolve"
    )
    assert "drop --pull to build from its copy" in said
    assert said.count("--pull, docker must reach") == 0  # one fix, not two


def test_an_unreachable_daemon_is_diagnosed_before_the_output_is_read(fp):
    fp.register(
        [fp.program("docker"), "build", fp.any()], returncode=1, stderr=_said("tls-uv.modern")
    )
    fp.register(
        [fp.program("docker"), "version", "--format", fp.any()],
        returncode=1,
        stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is "
        "the docker daemon running?\n",
    )
    with pytest.raises(DockerUnavailable, match="cannot reach the Docker daemon"):
        steps.build.build(_runner(), _local_plan(), None, {})


def test_a_failed_build_that_pushes_says_its_cause_and_that_nothing_was_pushed(fp, tmp_path):
    from ragbuild.build_failure import classify
    from ragbuild.errors import CommandFailed

    plan, pushing = _pushing_plan(tmp_path)
    said = _said("tls-uv.modern")
    fp.register([fp.program("docker"), "buildx", "build", fp.any()], returncode=1, stderr=said)
    fp.register(
        [fp.program("docker"), "image", "inspect", "--format", fp.any(), plan.primary],
        returncode=1,
        stderr="Error: No such image\n",
    )
    _register_diagnosis(fp, "28.2.2")
    with pytest.raises(CommandFailed) as err:
        steps.build.build(_runner(), plan, pushing, {})
    expected = classify(said, not_passed=plan.host.ca_note).message
    assert str(err.value) == f"docker buildx build failed (exit 1): {expected} (nothing was pushed)"
    assert err.value.returncode == 1


def test_the_cause_says_whether_the_build_had_the_host_ca():
    from ragbuild.errors import CommandFailed
    from ragbuild.run.command import Command

    from ragbuild.pip_config import HostNetwork

    failure = CommandFailed("x", returncode=1, output=_said("tls-uv.legacy"))
    plan = dataclasses.replace(_local_plan(), host=HostNetwork(ca_note="--no-host-ca"))
    with_ca = Command(("docker", "build", "--secret", "id=ragbuild-host-ca,src=/corp/ca.pem", "."))
    without = Command(("docker", "build", "--secret", "id=npmrc,src=/home/me/.npmrc", "."))
    assert "passed the host's CA bundle /corp/ca.pem" in steps.build.explain(plan, with_ca, failure)
    assert (
        "passed no host CA bundle to the build (--no-host-ca): drop --no-host-ca"
        in steps.build.explain(plan, without, failure)
    )


@pytest.mark.parametrize(
    "argv, found",
    [
        (["--secret", "id=ragbuild-host-ca,src=/a/ca.pem"], "/a/ca.pem"),
        (["--secret=id=ragbuild-host-ca,source=/b/ca.pem"], "/b/ca.pem"),
        (["--secret", "src=/c/ca.pem,id=ragbuild-host-ca,type=file"], "/c/ca.pem"),
        (["--secret", "id=other,src=/a/ca.pem", "-t", "id=ragbuild-host-ca"], None),
        (["--build-arg", "X=--secret", "id=ragbuild-host-ca,src=/d"], None),
        ([], None),
    ],
)
def test_passed_secret(argv, found):
    assert steps.build.passed_secret(["docker", "build", *argv, "."], "ragbuild-host-ca") == found
