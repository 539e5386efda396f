"""main(): the program's name as it was started, the push hint's exact command, and a closed
stdout (``--dry-run | head -1``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import EPOCH, STAMP
from ragbuild import cli

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "registry.example.com/rag"


# --- the name in usage lines --------------------------------------------------------------------


@pytest.mark.parametrize("argv0, name", [
    ("scripts/build-image.py", "build-image.py"), ("./build-image.py", "build-image.py"),
    ("/home/me/.venv/bin/ragbuild", "ragbuild"), ("/x/site-packages/ragbuild/__main__.py", "ragbuild"),
])
def test_program_name(argv0, name):
    assert cli.program_name(argv0) == name


def test_usage_says_ragbuild_for_the_console_script(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/ragbuild"])
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ragbuild [-h]") and "\n  ragbuild --env dev " in out
    assert cli.main(["--bogus"]) == 2
    assert "(see ragbuild --help)" in capsys.readouterr().err
    assert cli.main(["clean", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: ragbuild clean")


# --- the push hint: the exact command ------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv0, environ, words", [
    ("scripts/build-image.py", {}, [".venv/bin/python", "scripts/build-image.py"]),  # make
    ("scripts/build-image.py", {"VIRTUAL_ENV": "VENV"}, ["scripts/build-image.py"]),  # activated
    ("./scripts/build-image.py", {"RAGBUILD_IN_VENV": "1"}, ["./scripts/build-image.py"]),  # #!
    ("build-image.py", {"VIRTUAL_ENV": "VENV"}, ["./build-image.py"]),
    ("/opt/venv/bin/ragbuild", {}, ["ragbuild"]),
    ("/x/ragbuild/__main__.py", {}, [".venv/bin/python", "-m", "ragbuild"]),
])
def test_rerun_words_start_the_program_as_it_was_started(argv0, environ, words, workdir):
    venv = str(workdir / ".venv")
    environ = {k: venv if v == "VENV" else v for k, v in environ.items()}
    assert cli.rerun_words(argv0, f"{venv}/bin/python", venv, "/usr", environ) == words


def test_outside_a_virtualenv_the_script_runs_through_its_shebang(workdir):
    assert cli.rerun_words("scripts/build-image.py", "/usr/bin/python3", "/usr", "/usr",
                           {}) == ["scripts/build-image.py"]


def hint(argv, monkeypatch, registry=None):
    from datetime import datetime

    from ragbuild.plan import Config, GitInfo, make_plan

    monkeypatch.setattr(sys, "argv", ["scripts/build-image.py"])
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)  # not in a virtualenv
    plan = make_plan(cli.parse_build(argv), Config(), GitInfo(sha="a1b2c3d"), datetime(2023, 1, 1))
    return cli.push_hint(plan, argv)


def test_push_hint_is_the_script_with_every_argument_and_push(monkeypatch):
    argv = ["--env", "prod", "--version", "1.2.3", "--smoke-test", "--registry", REGISTRY,
            "--build-arg", "PIP_INDEX_URL=https://mirror/simple", "--tag", "qa"]
    assert hint(argv, monkeypatch) == (
        "push it: scripts/build-image.py --env prod --version 1.2.3 --smoke-test --registry "
        f"{REGISTRY} --build-arg PIP_INDEX_URL=https://mirror/simple --tag qa --push")


def test_push_hint_without_a_registry_names_the_flag_and_no_make_target(monkeypatch):
    line = hint(["--env", "prod", "--version", "1.2.3", "--build-arg", "NPM_TOKEN=s3cr3t"],
                monkeypatch)
    assert line == ("push it: scripts/build-image.py --env prod --version 1.2.3 --build-arg "
                    "'NPM_TOKEN=***' --registry '<registry>/<repository>' --push "
                    "(put the *** values back)")
    assert "make" not in line and "s3cr3t" not in line


# --- a closed stdout -----------------------------------------------------------------------------


def test_dry_run_into_a_closed_pipe_exits_141_without_a_traceback(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "Dockerfile").write_text("FROM scratch\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SOURCE_DATE_EPOCH=EPOCH, TZ="UTC", GIT_CEILING_DIRECTORIES=str(tmp_path))
    read, write = os.pipe()
    os.close(read)  # `| head -1` that has already gone
    try:
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "build-image.py"), "--env",
                               "dev", "--dry-run"], cwd=work, stdout=write, stderr=subprocess.PIPE,
                              text=True, env=env, timeout=60)
    finally:
        os.close(write)
    assert done.returncode == cli.EXIT_BROKEN_PIPE == 141
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert f"rag-worker:dev-{STAMP}" in done.stderr  # the plan went to stderr as usual
