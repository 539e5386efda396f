"""git.py: git's commands (read-only, in English) and the parsers of its answers."""

from __future__ import annotations
import pytest
from ragbuild.errors import UsageError
from ragbuild.run.command import Kind
from ragbuild.git import GitInfo, parse_git_repository, parse_git_status


# --- git ---------------------------------------------------------------------------------------


def test_git_queries_are_read_only_and_speak_english():
    from ragbuild.git import (
        git_hash_command,
        git_repository_command,
        git_status_command,
        git_tree_command,
    )

    for cmd in (
        git_repository_command(),
        git_status_command(),
        git_tree_command("a" * 40),
        git_hash_command(),
        git_hash_command("/sub"),
    ):
        assert cmd.argv[0] == "git" and cmd.kind is Kind.QUERY and not cmd.check
        assert dict(cmd.env)["LC_ALL"] == "C"
    assert git_status_command().argv[1] == "--no-optional-locks"  # a query takes no index lock
    assert git_repository_command().argv[-3:] == ("HEAD^{commit}", "--short=7", "HEAD^{commit}")
    assert git_tree_command("f" * 40, "/sub").argv == (
        "git",
        "-C",
        "/sub",
        "ls-tree",
        "-r",
        "-z",
        "--full-tree",
        "f" * 40,
    )
    assert git_hash_command().argv == ("git", "hash-object", "--stdin-paths")
    assert git_hash_command().stdin  # the paths go on stdin: one process for every file


OID40 = "ab" * 20


@pytest.mark.parametrize(
    "stdout, answer",
    [
        (f"true\n/src/app\nfalse\n{OID40}\nabababa\n", ("/src/app", False, OID40, "abababa")),
        (f"true\n/src/app\ntrue\n{OID40}\nabababa\n", ("/src/app", True, OID40, "abababa")),
        (f"true\n/a b\nfalse\n{'c' * 64}\nccccccc\n", ("/a b", False, "c" * 64, "ccccccc")),
    ],
)
def test_parse_git_repository(stdout, answer):
    assert parse_git_repository(stdout) == answer


@pytest.mark.parametrize(
    "stdout",
    [
        "",
        "true\n/src/app\n",
        "false\n/src/app\nfalse\n" + OID40 + "\nabababa\n",
        "true\n/src/app\nmaybe\n" + OID40 + "\nabababa\n",
        "true\n/src/app\nfalse\nHEAD^{commit}\nabababa\n",  # not an id
        "true\n/src/app\nfalse\n" + OID40 + "\nffffff\n",  # a short sha of another commit
        "true\n/src/app\nfalse\n" + OID40 + "\nabababa\nextra\n",
    ],
)
def test_parse_git_repository_fails_closed(stdout):
    from ragbuild.git import GitUnreadable

    with pytest.raises(GitUnreadable, match="incomplete answer"):
        parse_git_repository(stdout)


@pytest.mark.parametrize(
    "returncode, stderr, reason",
    [
        # git's advice lines after its fatal line are part of the reason (one line)
        (
            128,
            "fatal: detected dubious ownership in repository at '/x'\nTo add an exception for "
            "this directory, call:\n\n\tgit config --global --add safe.directory /x\n",
            "fatal: detected dubious ownership in repository at '/x' To add an exception for this "
            "directory, call: git config --global --add safe.directory /x",
        ),
        (
            128,
            "fatal: unknown repository extension found:\n\tfoo\n",
            "fatal: unknown repository extension found: foo",
        ),
        (
            128,
            "error: bad config line 1 in file .git/config\nfatal: not a git repository: .git\n",
            "error: bad config line 1 in file .git/config",
        ),
        (
            128,
            "warning: something\nfatal: not a git repository: /src/.git/worktrees/wt\n",
            "fatal: not a git repository: /src/.git/worktrees/wt",
        ),
        (1, "", "exit 1"),
        (1, "odd\n", "odd"),
    ],
)
def test_git_reason_is_gits_line_and_its_advice(returncode, stderr, reason):
    from ragbuild.git import git_reason

    assert git_reason(returncode, stderr) == reason


@pytest.mark.parametrize(
    "given, sha",
    [
        ("A1B2C3D", "a1b2c3d"),
        ("a1b2c3d4e", "a1b2c3d4e"),
        ("ab" * 20, "abababa"),
        ("cd" * 32, "cdcdcdc"),
    ],
)
def test_check_git_commit(given, sha):
    from ragbuild.git import check_git_commit

    assert check_git_commit(given) == sha


@pytest.mark.parametrize("given", ["abc123", "g1b2c3d", "HEAD", "", "a" * 65, "v1.2.3"])
def test_check_git_commit_refuses_what_is_no_commit_id(given):
    from ragbuild.git import check_git_commit

    with pytest.raises(UsageError, match="is not a commit id"):
        check_git_commit(given)


def test_parse_git_status():
    from fakes import git_status_output

    text = git_status_output(
        "c" * 40, changed=["src/app.py", "a b.txt"], untracked=["new.py", "dir/x"]
    )
    rename = (
        "2 R. N... 100644 100644 100644 " + "0" * 40 + " " + "0" * 40 + " R100 new name\0old name\0"
    )
    unmerged = "u UU N... 100644 100644 100644 100644 " + " ".join(["0" * 40] * 3) + " both.txt\0"
    assert parse_git_status(text + rename + unmerged) == (
        "c" * 40,
        ("src/app.py", "a b.txt", "new name", "both.txt"),
        ("new.py", "dir/x"),
    )
    assert parse_git_status("# branch.oid (initial)\0# branch.head main\0? Dockerfile\0") == (
        None,
        (),
        ("Dockerfile",),
    )


def test_parse_git_status_without_a_head_is_not_trusted():
    from ragbuild.git import GitUnreadable

    with pytest.raises(GitUnreadable, match="no branch.oid"):
        parse_git_status("")


def test_git_info_tag_and_commit():
    assert GitInfo(sha="abc1234").tag == "git-abc1234"
    assert GitInfo(sha="abc1234", dirty=True).tag == "git-abc1234-dirty"
    assert GitInfo().tag is None and GitInfo().commit == "unknown"
