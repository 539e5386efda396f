"""Values that pass a first look but docker (or the end of the run) would refuse: each is exit 2
with one line before git or docker runs (the read-only git describe aside), in a real run and
in a dry run alike."""

from __future__ import annotations

import os

import pytest

from fakes import docker_calls, register_git
from ragbuild import cli, steps
from ragbuild.errors import UsageError
from ragbuild.plan import Config, GitInfo, make_plan, parse_registry

LONG_ENV = "e" * 120  # a valid tag itself; <env>-<timestamp> is 136 characters


def run_main(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(argv, fragment, strict_fp, capsys):
    for dry in ([], ["--dry-run"]):
        register_git(strict_fp)  # the one read-only git describe, in each run
        code, out, err = run_main(argv + dry, capsys)
        assert code == 2, err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert fragment in err, err
        assert out == "" and "Traceback" not in err
    assert docker_calls(strict_fp) == 0


# --- every generated tag obeys the tag grammar --------------------------------------------------


def test_a_200_digit_build_number_is_refused(project, strict_fp, capsys):
    assert_refused(["--env", "dev", "--build-number", "1" * 200],
                   "the build number from --build-number makes the tag 'build-1111", strict_fp,
                   capsys)
    register_git(strict_fp)
    assert "(206 characters), which is not a valid Docker tag" in run_main(
        ["--env", "dev", "--build-number", "1" * 200], capsys)[2]


def test_a_long_environment_from_setup_cfg_is_refused(project, strict_fp, capsys):
    (project / "setup.cfg").write_text(f"[ragbuild]\nenvironments = dev {LONG_ENV}\n")
    assert_refused(["--env", LONG_ENV], f"--env '{LONG_ENV}' makes the tag 'eeee", strict_fp,
                   capsys)


def test_every_generated_tag_is_checked_in_the_plan():
    with pytest.raises(UsageError, match=r"git's commit id makes the tag 'git-a+\.\.\.a+' \(132 "):
        make_plan(cli.parse_build(["--env", "dev"]), Config(), GitInfo(sha="a" * 128),
                  steps.clock({"SOURCE_DATE_EPOCH": "0"}))


# --- repository names ---------------------------------------------------------------------------


def test_a_registry_over_255_characters_is_refused(project, strict_fp, capsys):
    uri = "r.example.com/" + "/".join(["abcdefghij"] * 23)  # 266 characters
    assert_refused(["--env", "dev", "--registry", uri],
                   "--registry is 266 characters long; docker allows at most 255", strict_fp, capsys)
    assert parse_registry("r.example.com/" + "a" * 241).uri.endswith("a")  # 255: fine


def test_an_image_name_over_255_characters_is_refused(project, strict_fp, capsys):
    assert_refused(["--env", "dev", "--image-name", "a" * 256],
                   "--image-name is 256 characters long; docker allows at most 255", strict_fp,
                   capsys)


# --- the Dockerfile and the context -------------------------------------------------------------


def test_a_dockerfile_that_is_a_directory_says_so(project, strict_fp, capsys):
    (project / "src").mkdir()
    assert_refused(["--env", "dev", "-f", "src"],
                   "Dockerfile 'src' is a directory; pass the file, e.g. -f src/Dockerfile",
                   strict_fp, capsys)


def test_an_unreadable_dockerfile_is_refused(project, strict_fp, capsys, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if str(path) == "Dockerfile" else real(path, mode, **kw)))  # root reads any mode
    assert_refused(["--env", "dev"], "Dockerfile 'Dockerfile' cannot be read (permission denied)",
                   strict_fp, capsys)


def test_a_context_that_is_a_file_says_so(project, strict_fp, capsys):
    assert_refused(["--env", "dev", "--context", "Dockerfile"],
                   "build context 'Dockerfile' is not a directory (it is a file)", strict_fp, capsys)


def test_an_unreadable_context_is_refused(project, strict_fp, capsys, monkeypatch):
    (project / "ctx").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if str(path) == "ctx" else real(path, mode, **kw)))
    assert_refused(["--env", "dev", "--context", "ctx"],
                   "build context 'ctx' cannot be read (permission denied)", strict_fp, capsys)
