"""Git's failures and incomplete answers, faked (pytest-subprocess): each stops the run before
docker with git's own reason, and which case it is comes from git's exit status and the precise
query that failed, never from words found in its stderr."""

from __future__ import annotations

import pytest

from fakes import GIT_REV_PARSE, GIT_STATUS, OID, docker_calls, git_status_output, register_git
from ragbuild import cli


def run(capsys, *argv):
    code = cli.main(["--dry-run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def git_cmd(fp, argv):
    return [fp.program("git"), *argv[1:]]


@pytest.mark.parametrize("stderr", [
    # words the old parser searched for ("head", "bad revision") in failures that are not
    # "no commits yet": each was tagged GIT_COMMIT=unknown before
    "fatal: unable to read HEAD's tree: Permission denied\n",
    "error: object file .git/objects/ab/cdef is empty\nfatal: bad revision 'HEAD'\n",
    "fatal: index file smaller than expected\n",
])
def test_a_failing_git_status_stops_before_docker(project, fp, capsys, stderr):
    fp.allow_unregistered(False)
    fp.register(git_cmd(fp, GIT_REV_PARSE), stdout=f"true\n{project}\nfalse\n")
    fp.register(git_cmd(fp, GIT_STATUS), returncode=128, stderr=stderr)
    code, out, err = run(capsys, "--env", "dev")
    assert code == 1 and out == ""
    first = [line for line in stderr.splitlines() if line.startswith(("fatal:", "error:"))][0]
    assert err.splitlines()[-1] == (f"error: git cannot say which commit this build is made from: "
                                    f"{first}; the run stops before docker rather than tag the "
                                    "image without it")
    assert docker_calls(fp) == 0


def test_a_not_a_repository_message_from_a_later_query_is_not_trusted(project, fp, capsys):
    """Only the first query's exit 128 with git's fixed message means "not a repository"."""
    fp.allow_unregistered(False)
    fp.register(git_cmd(fp, GIT_REV_PARSE), stdout=f"true\n{project}\nfalse\n")
    fp.register(git_cmd(fp, GIT_STATUS), returncode=128,
                stderr="fatal: not a git repository: /src/.git/worktrees/gone\n")
    code, out, err = run(capsys, "--env", "dev")
    assert code == 1 and "not a git repository: /src/.git/worktrees/gone" in err
    assert "GIT_COMMIT=unknown" not in out


def test_a_failing_short_sha_stops(project, fp, capsys):
    fp.allow_unregistered(False)
    register_git(fp, stdout="", returncode=1)
    code, out, err = run(capsys, "--env", "dev")
    assert code == 1 and out == "" and "exit 1" in err.splitlines()[-1]


@pytest.mark.parametrize("answer", ["", "true\n", f"true\n/x\n", "true\n/x\nmaybe\n"])
def test_an_incomplete_rev_parse_answer_stops(project, fp, capsys, answer):
    fp.allow_unregistered(False)
    fp.register(git_cmd(fp, GIT_REV_PARSE), stdout=answer)
    code, out, err = run(capsys, "--env", "dev")
    assert code == 1 and out == "" and "incomplete answer" in err


def test_a_status_without_head_stops(project, fp, capsys):
    fp.allow_unregistered(False)
    fp.register(git_cmd(fp, GIT_REV_PARSE), stdout=f"true\n{project}\nfalse\n")
    fp.register(git_cmd(fp, GIT_STATUS), stdout="? x\0")
    code, _, err = run(capsys, "--env", "dev")
    assert code == 1 and "no branch.oid" in err


def test_no_commits_is_told_by_the_initial_oid_not_by_words(project, fp, capsys):
    fp.allow_unregistered(False)
    fp.register(git_cmd(fp, GIT_REV_PARSE), stdout=f"true\n{project}\nfalse\n")
    fp.register(git_cmd(fp, GIT_STATUS), stdout=git_status_output("(initial)"))
    code, out, err = run(capsys, "--env", "dev")
    assert code == 0, err
    assert "GIT_COMMIT=unknown" in out
    assert "warning: the git repository has no commits: no git-<sha> tag" in err


def test_a_failing_git_tag_stops_auto_with_gits_reason(project, fp, capsys):
    fp.allow_unregistered(False)
    register_git(fp)
    fp.register([fp.program("git"), "tag", "--list", "v*"], returncode=128,
                stderr="fatal: unable to read refs: Permission denied\n")
    code, out, err = run(capsys, "--version", "1.0.0", "--latest-policy", "auto")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == ("error: git cannot list the v* tags --latest-policy auto "
                                    "compares with: fatal: unable to read refs: Permission denied")


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
