"""Git facts against the real git (issue 22): dirty is decided from content, and a checkout git
cannot read stops a release. Each test runs ``main()`` without --dry-run where "before docker"
matters: the stub docker on PATH would say it ran."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest

from ragbuild import cli

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

PROD = ("--env", "prod", "--version", "1.0.0")
STUB_RAN = "the stub docker really ran"


def git(*args, cwd=None):
    return subprocess.run(
        ["git", *args], check=True, capture_output=True, text=True, cwd=cwd
    ).stdout.strip()


def init(path):
    git("init", "-q", str(path))
    for key, value in (
        ("user.name", "Test"),
        ("user.email", "t@example.com"),
        ("commit.gpgsign", "false"),
        ("protocol.file.allow", "always"),
    ):
        git("-C", str(path), "config", key, value)


@pytest.fixture
def repo(git_env):
    """The project as a repository: the Dockerfile, app.txt and run.sh, committed."""
    init(git_env)
    (git_env / "app.txt").write_text("setting = committed\n")
    (git_env / "run.sh").write_text("#!/bin/sh\necho hi\n")
    git("add", "-A")
    git("commit", "-q", "-m", "the app")
    return git_env


def build(capsys, *argv):
    """A real run (not --dry-run): (exit status, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def dry_run(capsys, *argv):
    return build(capsys, "--dry-run", *argv)


def tags(out):
    words = shlex.split(out.splitlines()[0])
    return [words[i + 1].split(":", 1)[1] for i, w in enumerate(words) if w == "-t"]


def refused(capsys, *argv):
    """A prod run refused as dirty before docker: its error line."""
    code, out, err = build(capsys, *PROD, *argv)
    assert code == 2, err
    assert out == "" and STUB_RAN not in err
    last = err.splitlines()[-1]
    assert last.startswith("error: the git tree has uncommitted changes (")
    return last


def clean(capsys, *argv):
    code, out, err = dry_run(capsys, *PROD, *argv)
    assert code == 0, err
    sha = git("rev-parse", "--short=7", "HEAD")
    assert f"git-{sha}" in tags(out), out
    assert "warning: the git tree" not in err
    return out


# --- case 1 and the other ways git hides a change ---------------------------------------------


@pytest.mark.parametrize("flag", ["--skip-worktree", "--assume-unchanged"])
def test_an_edit_git_is_told_not_to_look_at_still_makes_the_tree_dirty(repo, capsys, flag):
    """issue 22 case 1: `git status` says nothing, the image would hold the edit."""
    (repo / "app.txt").write_text("setting = local only\n")
    git("update-index", flag, "app.txt")
    assert git("status", "--porcelain") == ""  # git's status is the stand-in that hid it
    assert "(app.txt)" in refused(capsys)


def test_a_gitignored_file_docker_sends_is_not_in_the_commit(repo, capsys):
    (repo / ".gitignore").write_text("*.local\n")
    git("add", ".gitignore")
    git("commit", "-q", "-m", "ignore")
    (repo / "settings.local").write_text("secret = 1\n")
    last = refused(capsys)
    assert "settings.local (not in the commit)" in last
    assert "add it to .dockerignore" in last and ".gitignore" not in last
    (repo / ".dockerignore").write_text("*.local\n")  # the advice works: .dockerignore, committed
    git("add", ".dockerignore")
    git("commit", "-q", "-m", "not in the image")
    clean(capsys)


def test_a_crlf_checkout_under_autocrlf_is_no_change(repo, capsys):
    git("config", "core.autocrlf", "true")
    os.remove(repo / "app.txt")
    git("checkout", "--", "app.txt")  # git writes it with CRLF
    assert (repo / "app.txt").read_bytes() == b"setting = committed\r\n"
    clean(capsys)
    git("config", "core.autocrlf", "false")  # the same bytes are a change without the setting
    assert "(app.txt)" in refused(capsys)


def test_a_file_committed_with_crlf_under_autocrlf_is_no_change(repo, capsys):
    (repo / "win.txt").write_bytes(b"a\r\nb\r\n")
    git("add", "win.txt")
    git("commit", "-q", "-m", "crlf as it is")
    git("config", "core.autocrlf", "true")  # git keeps CRLF the commit already has
    assert git("status", "--porcelain") == ""
    clean(capsys)


def test_a_text_attribute_with_eol_crlf_is_no_change(repo, capsys):
    (repo / ".gitattributes").write_text("*.txt text eol=crlf\n")
    git("add", ".gitattributes")
    git("commit", "-q", "-m", "eol")
    os.remove(repo / "app.txt")
    git("checkout", "--", "app.txt")
    assert (repo / "app.txt").read_bytes().endswith(b"\r\n")
    clean(capsys)


def test_gits_clean_filter_is_applied(repo, capsys):
    """An LFS-style filter: the commit holds what the clean filter made of the file."""
    git("config", "filter.upper.clean", "tr a-z A-Z")
    git("config", "filter.upper.smudge", "cat")
    (repo / ".gitattributes").write_text("*.dat filter=upper\n")
    (repo / "model.dat").write_text("weights\n")
    git("add", ".gitattributes", "model.dat")
    git("commit", "-q", "-m", "filtered")
    assert git("cat-file", "-p", "HEAD:model.dat") == "WEIGHTS"
    clean(capsys)  # the file's bytes are not the blob's; the filter makes them so
    (repo / "model.dat").write_text("other weights\n")
    assert "(model.dat)" in refused(capsys)


def test_an_executable_bit_is_a_change(repo, capsys):
    os.chmod(repo / "run.sh", 0o755)
    assert "run.sh (mode 100644 -> 100755)" in refused(capsys)
    git("config", "core.fileMode", "false")  # git is told not to look: docker still sends it
    assert git("status", "--porcelain") == ""
    assert "run.sh (mode 100644 -> 100755)" in refused(capsys)


def test_a_deleted_file_and_a_sparse_checkout_are_missing(repo, capsys):
    os.remove(repo / "app.txt")
    assert "app.txt (missing)" in refused(capsys)
    git("checkout", "--", "app.txt")
    clean(capsys)
    git("sparse-checkout", "set", "--no-cone", "/Dockerfile", "/run.sh")
    assert not (repo / "app.txt").exists() and git("status", "--porcelain") == ""
    assert "app.txt (missing)" in refused(capsys)


def test_a_deleted_file_docker_would_not_send_is_no_change(repo, capsys):
    (repo / ".dockerignore").write_text("app.txt\n")
    git("add", ".dockerignore")
    git("commit", "-q", "-m", "app.txt stays out")
    os.remove(repo / "app.txt")
    (repo / "app.txt.bak").write_text("x")  # sent: not excluded
    assert "app.txt.bak (not in the commit)" in refused(capsys)
    os.remove(repo / "app.txt.bak")
    clean(capsys)


def test_a_changed_symlink_is_a_change(repo, capsys):
    os.symlink("app.txt", repo / "link")
    git("add", "link")
    git("commit", "-q", "-m", "link")
    clean(capsys)
    os.remove(repo / "link")
    os.symlink("run.sh", repo / "link")
    assert "(link)" in refused(capsys)


def test_a_file_outside_the_context_is_no_change_but_the_dockerfile_is(repo, capsys):
    (repo / "service").mkdir()
    (repo / "service" / "main.py").write_text("x = 1\n")
    git("add", "service")
    git("commit", "-q", "-m", "service")
    (repo / "app.txt").write_text("changed, not sent\n")
    clean(capsys, "--context", "service")
    (repo / "Dockerfile").write_text("FROM scratch\nLABEL changed=1\n")
    assert "(Dockerfile)" in refused(capsys, "--context", "service")


def test_an_edit_in_a_submodule_its_ignore_setting_hides_is_a_change(repo, capsys, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    init(lib)
    (lib / "lib.py").write_text("VERSION = 1\n")
    git("-C", str(lib), "add", "-A")
    git("-C", str(lib), "commit", "-q", "-m", "lib")
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git("config", "-f", ".gitmodules", "submodule.lib.ignore", "all")
    git("add", ".gitmodules")
    git("commit", "-q", "-m", "the lib")
    clean(capsys)
    (repo / "lib" / "lib.py").write_text("VERSION = 2\n")
    assert git("status", "--porcelain") == ""  # ignore = all: status says nothing
    assert "(lib/lib.py)" in refused(capsys)
    git("-C", "lib", "checkout", "-q", "--", "lib.py")
    (repo / "lib" / "new.py").write_text("x\n")
    assert "lib/new.py (not in the commit)" in refused(capsys)


def test_allow_dirty_still_builds_and_marks_the_image(repo, capsys):
    (repo / "app.txt").write_text("setting = local only\n")
    git("update-index", "--skip-worktree", "app.txt")
    code, out, err = dry_run(capsys, *PROD, "--allow-dirty")
    assert code == 0, err
    assert f"git-{git('rev-parse', '--short=7', 'HEAD')}-dirty" in tags(out)


# --- case 2 and the other checkouts git cannot read ---------------------------------------------


@pytest.fixture
def moved_worktree(repo, tmp_path, monkeypatch):
    """issue 22 case 2: a linked worktree with an uncommitted hotfix whose main repository
    was moved away; git exits 128 "not a git repository: .../worktrees/wt"."""
    wt = tmp_path / "wt"
    git("worktree", "add", "-q", str(wt))
    (wt / "app.txt").write_text("hotfix\n")
    shutil.move(str(repo), str(tmp_path / "moved"))
    monkeypatch.chdir(wt)
    return wt


@pytest.mark.parametrize("argv", [PROD, ("--env", "dev")])
def test_a_moved_linked_worktree_stops_before_docker(moved_worktree, capsys, argv):
    code, out, err = build(capsys, *argv)
    assert code == 1 and out == "" and STUB_RAN not in err
    last = err.splitlines()[-1]
    assert last.startswith(
        "error: git cannot say which commit this build is made from: fatal: not a git repository: "
    )
    assert "/worktrees/wt" in last


def test_git_dir_naming_a_missing_directory_stops(repo, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "nowhere"))
    code, out, err = build(capsys, "--env", "dev")
    assert code == 1 and out == "" and STUB_RAN not in err
    assert "fatal: not a git repository: " in err.splitlines()[-1]


def test_git_dir_naming_another_repository_stops_a_release(repo, capsys, monkeypatch, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    init(other)
    git("-C", str(other), "commit", "-q", "--allow-empty", "-m", "other")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    code, out, err = build(capsys, *PROD)
    assert code == 1 and out == "" and STUB_RAN not in err
    assert f"GIT_DIR={other / '.git'} makes git read another repository" in err.splitlines()[-1]
    monkeypatch.setenv("GIT_DIR", ".git")  # as a git hook sets it: this checkout's
    clean(capsys)


def test_git_work_tree_naming_another_directory_stops_a_release(
    repo, capsys, monkeypatch, tmp_path
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("GIT_WORK_TREE", str(elsewhere))
    code, out, err = build(capsys, *PROD)
    assert code == 1 and out == "" and "makes git read another work tree" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="a repository owned by another user needs root")
def test_dubious_ownership_stops_with_gits_advice(repo, capsys):
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 65534, 65534)
    code, out, err = build(capsys, *PROD)
    assert code == 1 and out == "" and STUB_RAN not in err
    last = err.splitlines()[-1]
    assert "fatal: detected dubious ownership in repository" in last
    assert f"git config --global --add safe.directory {repo}" in last  # git's advice, kept


# --- no repository at all ------------------------------------------------------------------------


def test_no_repository_is_a_warning_for_dev_and_stops_a_release(git_env, capsys):
    code, out, err = dry_run(capsys, "--env", "dev")
    assert code == 0 and "warning: not a git repository" in err
    code, out, err = build(capsys, *PROD)
    assert code == 1 and out == "" and STUB_RAN not in err
    assert "--git-commit" in err.splitlines()[-1]
    code, out, err = build(capsys, "--env", "dev", "--push", "--registry", "localhost:5000")
    assert code == 1 and out == "" and "not a git repository" in err.splitlines()[-1]


def test_git_commit_builds_a_release_from_an_exported_tree(git_env, capsys):
    full = "0123456789abcdef0123456789abcdef01234567"
    code, out, err = dry_run(capsys, *PROD, "--git-commit", full)
    assert code == 0, err
    assert "git-0123456" in tags(out)
    assert "--build-arg GIT_COMMIT=0123456" in out
    assert (
        "git commit: 0123456 (--git-commit: a tree without .git, not compared)" in err.splitlines()
    )
    code, out, err = dry_run(capsys, *PROD, "--git-commit", "HEAD")
    assert code == 2 and "is not a commit id" in err


def test_git_commit_is_refused_in_a_repository(repo, capsys):
    code, out, err = dry_run(capsys, *PROD, "--git-commit", "0123456")
    assert code == 2 and out == ""
    assert "--git-commit is for a tree without a git repository" in err.splitlines()[-1]


def test_doctor_names_the_repair_of_a_moved_worktree(moved_worktree, capsys):
    code = cli.main(["doctor"])
    out, err = capsys.readouterr()
    line = next(line for line in (out + err).splitlines() if line.startswith("problem  git:"))
    assert "fatal: not a git repository: " in line and "/worktrees/wt" in line
    assert line.endswith(
        f"fix: if the main repository was moved, run `git worktree repair {moved_worktree}` in it"
    )
    assert code == 1


def test_a_context_outside_the_work_tree_is_not_compared_and_says_so(repo, capsys, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "Dockerfile").write_text("FROM scratch\n")
    (elsewhere / "data.txt").write_text("x\n")
    clean(capsys, "--context", str(elsewhere), "-f", str(elsewhere / "Dockerfile"))
    code, out, err = dry_run(
        capsys, "--env", "dev", "--context", str(elsewhere), "-f", str(elsewhere / "Dockerfile")
    )
    assert code == 0, err
    assert any(
        line.startswith("warning: 2 files docker sends (e.g. ")
        and f"are outside the git work tree {repo}: commit " in line
        for line in err.splitlines()
    ), err
    (repo / "app.txt").write_text("changed\n")  # not sent from here: still clean
    clean(capsys, "--context", str(elsewhere), "-f", str(elsewhere / "Dockerfile"))
    os.remove(elsewhere / "data.txt")
    code, out, err = dry_run(
        capsys, "--env", "dev", "--context", str(elsewhere), "-f", str(elsewhere / "Dockerfile")
    )
    assert (
        f"warning: the file docker sends {elsewhere / 'Dockerfile'} is outside the git work "
        f"tree {repo}: commit {git('rev-parse', '--short=7', 'HEAD')} says nothing about "
        "it"
    ) in err.splitlines()


def test_odd_file_names_are_hashed_by_the_one_process(repo, capsys):
    """--stdin-paths reads one name a line, C-quoted when it holds a newline, a backslash or
    starts with a quote (gitfacts.c_quote)."""
    names = ["new\nline.txt", '"quoted.txt', "back\\slash.txt", "tab\there.txt", "space d.txt"]
    for name in names:
        (repo / name).write_text(f"{name}\n")
    git("add", "-A")
    git("commit", "-q", "-m", "odd names")
    clean(capsys)
    shown = [
        '"new\\nline.txt"',
        '"\\"quoted.txt"',
        '"back\\\\slash.txt"',
        '"tab\\there.txt"',
        "space d.txt",
    ]  # one line: quoted as git shows them
    for name, text in zip(names, shown):
        (repo / name).write_text("changed\n")
        assert f"({text}): what docker would send" in refused(capsys)
        git("checkout", "--", name)
    clean(capsys)


def test_discovery_stops_at_a_filesystem_boundary_as_git(tmp_path, monkeypatch):
    """GIT_DISCOVERY_ACROSS_FILESYSTEM (git's one_filesystem): a parent on another device is
    not looked at unless the variable is true. The boundary is faked: os.stat's st_dev."""
    from ragbuild import gitfacts

    (tmp_path / ".git").mkdir()
    start = tmp_path / "mnt" / "inner"
    start.mkdir(parents=True)
    real_stat = os.stat

    class Stat:
        def __init__(self, found, device):
            self.st_dev, self.st_mode = device, found.st_mode

    def stat(path, *args, **kw):
        found = real_stat(path, *args, **kw)
        inside = str(path).startswith(str(tmp_path / "mnt"))
        return Stat(found, 2 if inside else 1)

    monkeypatch.setattr(gitfacts.os, "stat", stat)
    env = {"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)}
    assert gitfacts.discover(str(start), env) is None
    for value in ("1", "true", "yes", "on"):
        assert gitfacts.discover(
            str(start), {**env, "GIT_DISCOVERY_ACROSS_FILESYSTEM": value}
        ) == str(tmp_path / ".git")
    for value in ("0", "false", "off", ""):
        assert (
            gitfacts.discover(str(start), {**env, "GIT_DISCOVERY_ACROSS_FILESYSTEM": value}) is None
        )


def test_an_edit_that_keeps_size_and_mtime_is_a_change(repo, capsys):
    """git status trusts its stat cache: same size, same mtime (and an index written later)
    is "unchanged" without reading the file. The content decides here. (ctime is set aside:
    the write changes it, and whether git sees that depends on the second the test crosses.)"""
    git("config", "core.trustctime", "false")
    os.utime(repo / "app.txt", (946684800, 946684800))  # 2000-01-01
    git("update-index", "--refresh")
    (repo / "app.txt").write_text("setting = COMMITTED\n")  # same size
    os.utime(repo / "app.txt", (946684800, 946684800))
    assert git("status", "--porcelain") == ""  # the stand-in misses it
    assert "(app.txt)" in refused(capsys)


@pytest.mark.parametrize("where", ["info/exclude", "core.excludesFile"])
def test_a_file_other_git_excludes_hide_is_not_in_the_commit(repo, capsys, tmp_path, where):
    if where == "info/exclude":
        (repo / ".git" / "info").mkdir(exist_ok=True)
        (repo / ".git" / "info" / "exclude").write_text("*.local\n")
    else:
        excludes = tmp_path / "excludes"
        excludes.write_text("*.local\n")
        git("config", "core.excludesFile", str(excludes))
    (repo / "settings.local").write_text("x = 1\n")
    assert git("status", "--porcelain") == ""
    assert "settings.local (not in the commit)" in refused(capsys)


@pytest.mark.parametrize(
    "layout, reason",
    [
        (
            "empty .git directory",
            "fatal: not a git repository (or any of the parent directories): .git",
        ),
        ("garbage .git file", "fatal: invalid gitfile format: "),
        ("dangling .git file", "fatal: not a git repository: "),
    ],
)
def test_a_dot_git_git_cannot_use_is_never_no_repository(git_env, capsys, layout, reason):
    """A .git is there, so git's failure is a checkout it cannot read, whatever its words."""
    if layout == "empty .git directory":
        (git_env / ".git").mkdir()
    elif layout == "garbage .git file":
        (git_env / ".git").write_text("not a gitfile\n")
    else:
        (git_env / ".git").write_text(f"gitdir: {git_env.parent}/gone/.git/worktrees/wt\n")
    for argv in (PROD, ("--env", "dev")):
        code, out, err = build(capsys, *argv)
        assert code == 1 and out == "" and STUB_RAN not in err
        assert err.splitlines()[-1].startswith(
            f"error: git cannot say which commit this build is made from: {reason}"
        ), err
