"""Values that pass a first look but docker (or the end of the run) would refuse: each is exit 2
with one line before git or docker runs (the read-only git queries aside), in a real run and
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
        register_git(strict_fp)  # the read-only git queries, in each run
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


# --- inputs that were accepted silently ----------------------------------------------------------


def test_an_empty_image_name_is_refused_not_the_default(project, strict_fp, capsys):
    assert_refused(["--env", "dev", "--image-name", ""],
                   "--image-name is empty; give a lowercase image name like rag-worker", strict_fp,
                   capsys)
    assert_refused(["--env", "dev", "--image-name="], "--image-name is empty", strict_fp, capsys)


@pytest.mark.parametrize("epoch", ["-1", "\uff10", "\u0661\u0662", " 12", "1_000", "+5", "9" * 30])
def test_source_date_epoch_takes_only_ascii_digits(epoch, project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    code, out, err = run_main(["--env", "dev", "--dry-run"], capsys)
    assert code == 2 and out == ""
    assert err == f"error: SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970\n"
    assert len(strict_fp.calls) == 0


def test_source_date_epoch_zero_is_1970():
    assert steps.clock({"SOURCE_DATE_EPOCH": "0"}).year in (1969, 1970)  # local time of epoch 0


@pytest.mark.parametrize("value", ["a\nb", "line\r\n", "\n"])
def test_a_build_arg_value_with_a_line_break_is_refused_without_showing_it(value, project,
                                                                          strict_fp, capsys):
    assert_refused(["--env", "dev", "--build-arg", f"NPM_TOKEN={value}"],
                   "--build-arg NPM_TOKEN: the value has a line break, which would split the "
                   "printed command", strict_fp, capsys)
    assert value.strip() == "" or value.strip() not in capsys.readouterr().err


def test_a_cache_spec_with_a_line_break_is_refused(project, strict_fp, capsys):
    assert_refused(["--env", "dev", "--cache-from", "type=local,src=a\nb"],
                   "--cache-from 'type=local,src=a\\nb' has a line break", strict_fp, capsys)


ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker"


@pytest.mark.parametrize("argv, fragment", [
    (["--registry", ECR], "--skip-existing-immutable only changes what --push pushes to an "
                          "IMMUTABLE ECR repository: add --push"),
    ([], "--skip-existing-immutable only changes what --push pushes"),
    (["--registry", "registry.example.com/rag", "--push"],
     "--skip-existing-immutable reads the tag immutability of an ECR repository, and "
     "registry.example.com is not ECR: drop it"),
])
def test_skip_existing_immutable_without_an_effect_is_refused(argv, fragment, project, strict_fp,
                                                              capsys):
    assert_refused(["--env", "dev", "--skip-existing-immutable", *argv], fragment, strict_fp,
                   capsys)


def test_skip_existing_immutable_with_an_ecr_push_is_planned():
    options = cli.parse_build(["--env", "dev", "--registry", ECR, "--push",
                               "--skip-existing-immutable"])
    plan = make_plan(options, Config(), GitInfo(sha="a1b2c3d"), steps.clock({"SOURCE_DATE_EPOCH": "0"}))
    assert plan.registry.is_ecr and plan.options.skip_existing_immutable


# --- --metadata-file: checked up front, no temporary file left behind ---------------------------


@pytest.mark.parametrize("argv, fragment", [
    (["--metadata-file", ""], "--metadata-file is empty; name a file"),
    (["--metadata-file="], "--metadata-file is empty"),
    (["--metadata-file", "no/such/dir/m.json"], "--metadata-file no/such/dir/m.json: directory"),
    (["--metadata-file", "."], "--metadata-file . is a directory; name a file"),
])
def test_a_metadata_path_that_cannot_be_written_stops_before_git(argv, fragment, project,
                                                                 strict_fp, capsys):
    strict_fp.allow_unregistered(False)
    code, out, err = run_main(["--env", "dev", *argv], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and fragment in err, err
    assert len(strict_fp.calls) == 0  # not even git


def test_a_metadata_directory_that_is_not_writable_stops_before_git(project, strict_fp, capsys,
                                                                    monkeypatch):
    (project / "out").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if str(path).endswith("/out") and mode & os.W_OK else real(path, mode, **kw)))
    code, _, err = run_main(["--env", "dev", "--metadata-file", "out/m.json"], capsys)
    assert code == 2
    assert err == f"error: --metadata-file out/m.json: directory {project}/out is not writable\n"
    assert len(strict_fp.calls) == 0


def test_a_failed_replace_leaves_no_temporary_file(project, tmp_path, monkeypatch):
    from ragbuild import metadata
    from ragbuild.runner import Runner

    plan = make_plan(cli.parse_build(["--env", "dev"]), Config(), GitInfo(sha="a1b2c3d"),
                     steps.clock({"SOURCE_DATE_EPOCH": "0"}))

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(metadata.os, "replace", refuse)
    from ragbuild.pipeline import RunState

    state = RunState(plan.options, Config(), None, plan)
    record = metadata.Recorder(state, Runner(), path=str(project / "m.json"))
    with pytest.raises(Exception, match="cannot write --metadata-file .*m.json: Permission denied"):
        record.finish()
    assert sorted(p.name for p in project.iterdir()) == ["Dockerfile"]
