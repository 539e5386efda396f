"""commands/rerun.py: the program's name as it was started and the push hint's exact command."""

from __future__ import annotations
import sys
import pytest
from ragbuild.commands import build as build_cli
from ragbuild.commands import rerun


REGISTRY = "registry.example.com/rag"


# --- the name in usage lines --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv0, name",
    [
        ("scripts/build-image.py", "build-image.py"),
        ("./build-image.py", "build-image.py"),
        ("/home/me/.venv/bin/ragbuild", "ragbuild"),
        ("/x/site-packages/ragbuild/__main__.py", "ragbuild"),
    ],
)
def test_program_name(argv0, name):
    assert rerun.program_name(argv0) == name


# --- the push hint: the exact command ------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "argv0, environ, words",
    [
        ("scripts/build-image.py", {}, [".venv/bin/python", "scripts/build-image.py"]),  # make
        (
            "scripts/build-image.py",
            {"VIRTUAL_ENV": "VENV"},
            ["scripts/build-image.py"],
        ),  # activated
        ("./scripts/build-image.py", {"RAGBUILD_IN_VENV": "1"}, ["./scripts/build-image.py"]),  # #!
        ("build-image.py", {"VIRTUAL_ENV": "VENV"}, ["./build-image.py"]),
        ("/opt/venv/bin/ragbuild", {}, ["ragbuild"]),
        ("/x/ragbuild/__main__.py", {}, [".venv/bin/python", "-m", "ragbuild"]),
    ],
)
def test_rerun_words_start_the_program_as_it_was_started(argv0, environ, words, workdir):
    venv = str(workdir / ".venv")
    environ = {k: venv if v == "VENV" else v for k, v in environ.items()}
    assert rerun.rerun_words(argv0, f"{venv}/bin/python", venv, "/usr", environ) == words


def test_outside_a_virtualenv_the_script_runs_through_its_shebang(workdir):
    assert rerun.rerun_words("scripts/build-image.py", "/usr/bin/python3", "/usr", "/usr", {}) == [
        "scripts/build-image.py"
    ]


def hint(argv, monkeypatch, registry=None):
    from datetime import datetime

    from ragbuild.config import Config
    from ragbuild.git import GitInfo
    from ragbuild.plan import make_plan

    monkeypatch.setattr(sys, "argv", ["scripts/build-image.py"])
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)  # not in a virtualenv
    plan = make_plan(
        build_cli.parse_build(argv), Config(), GitInfo(sha="a1b2c3d"), datetime(2023, 1, 1)
    )
    return build_cli.push_hint(plan, argv)


def test_push_hint_is_the_script_with_every_argument_and_push(monkeypatch):
    argv = [
        "--env",
        "prod",
        "--version",
        "1.2.3",
        "--smoke-test",
        "--registry",
        REGISTRY,
        "--build-arg",
        "PIP_INDEX_URL=https://mirror/simple",
        "--tag",
        "qa",
    ]
    assert hint(argv, monkeypatch) == (
        "push it: scripts/build-image.py --env prod --version 1.2.3 --smoke-test --registry "
        f"{REGISTRY} --build-arg PIP_INDEX_URL=https://mirror/simple --tag qa --push"
    )


def test_push_hint_without_a_registry_names_the_flag_and_no_make_target(monkeypatch):
    line = hint(
        ["--env", "prod", "--version", "1.2.3", "--build-arg", "NPM_TOKEN=s3cr3t"], monkeypatch
    )
    assert line == (
        "push it: scripts/build-image.py --env prod --version 1.2.3 --build-arg "
        "'NPM_TOKEN=***' --registry '<registry>/<repository>' --push "
        "(put the *** values back)"
    )
    assert "make" not in line and "s3cr3t" not in line
