"""The entry points: python -m ragbuild, the console script, scripts/build-image.py from a fresh
clone (with and without its packages), the usage line's name, a closed stdout."""

from __future__ import annotations
import os
import shlex
import shutil
import subprocess
import sys
import pytest
from fakes import EPOCH, STAMP, REPO
from ragbuild import cli

import re

from ragbuild.run import console
from ragbuild.run.console import ERROR, INFO, RESET, SUCCESS, WARNING


DOCKER = "docker"


def tags_of(build_line):
    words = shlex.split(build_line)
    return [words[i + 1] for i, word in enumerate(words) if word == "-t"]


# --- entry points ------------------------------------------------------------------------------


def child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER", "ECR_REGISTRY_URI")}
    env.update(SOURCE_DATE_EPOCH=EPOCH, TZ="UTC", **extra)
    return env


def run_script(clone, *args, flags=("-I",), cwd, env=None):
    """``python FLAGS scripts/build-image.py ARGS`` of the checkout ``clone``, run in ``cwd``."""
    script = str(clone / "scripts" / "build-image.py")
    return subprocess.run(
        [sys.executable, *flags, script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_python_dash_m_ragbuild_help():
    done = subprocess.run(
        [sys.executable, "-m", "ragbuild", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ragbuild [-h]")
    assert "examples:\n  ragbuild --env dev\n" in done.stdout


def test_run_exits_with_mains_status_and_leaves_the_objects_to_the_process(monkeypatch):
    """The entry point: main()'s status is the exit status, and gc.freeze() comes after main()
    (the shutdown's collections skip what the run made; before main() they would miss nothing)."""
    import gc

    calls = []
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 3)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    with pytest.raises(SystemExit) as exit_:
        cli.run()
    assert exit_.value.code == 3
    assert calls == ["main", "freeze"]


@pytest.mark.parametrize("argv, status", [(["--help"], 0), (["--env", "dev", "--bogus"], 2)])
def test_the_script_exits_with_mains_status(fresh_clone, tmp_path, argv, status):
    done = subprocess.run(
        [sys.executable, "-I", str(fresh_clone / "scripts" / "build-image.py"), *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == status, done.stderr


@pytest.fixture
def fresh_clone(tmp_path):
    """The files a clone has, somewhere else, never installed."""
    clone = tmp_path / "clone"
    shutil.copytree(
        REPO / "ragbuild", clone / "ragbuild", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "scripts", clone / "scripts")
    return clone


def test_script_help_from_a_fresh_clone(fresh_clone, tmp_path):
    # -I: no PYTHONPATH, no user site, no script directory or cwd on sys.path
    done = run_script(fresh_clone, "--help", cwd=tmp_path, env=child_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: build-image.py")


def test_script_dry_run_from_a_fresh_clone(fresh_clone, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "Dockerfile").write_text("FROM scratch\n")
    done = run_script(
        fresh_clone,
        *("--env", "dev", "--dry-run"),
        cwd=work,
        env=child_env(GIT_CEILING_DIRECTORIES=str(tmp_path)),
    )
    assert done.returncode == 0, done.stderr
    build, inspect = done.stdout.splitlines()
    assert tags_of(build) == [f"rag-worker:dev-{STAMP}", "rag-worker:dev", "rag-worker:latest"]
    assert "--build-arg GIT_COMMIT=unknown" in build
    assert "warning: not a git repository" in done.stderr


def test_script_without_its_packages_says_how_to_install(fresh_clone, tmp_path):
    bare = [sys.executable, "-S", "-I"]  # no site-packages at all
    probe = subprocess.run(
        bare
        + [
            "-c",
            "import importlib.util as u; "
            "print(u.find_spec('plumbum') is None and "
            "u.find_spec('semver') is None)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.stdout.strip() != "True":
        pytest.skip("this interpreter has plumbum or semver outside site-packages")
    done = run_script(fresh_clone, "--env", "dev", flags=bare[1:], cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    matcher = "e2b-dockerfile-utils" if sys.version_info >= (3, 11) else "docker"
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        f"error: missing Python packages plumbum, semver, shtab, {matcher}: "
    )
    assert f"pip install plumbum semver shtab {matcher}`" in done.stderr


def test_usage_says_ragbuild_for_the_console_script(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/ragbuild"])
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ragbuild [-h]") and "\n  ragbuild --env dev " in out
    assert cli.main(["--bogus"]) == 2
    assert "(see ragbuild --help)" in capsys.readouterr().err
    assert cli.main(["clean", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: ragbuild clean")


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
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "build-image.py"), "--env", "dev", "--dry-run"],
            cwd=work,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.returncode == cli.EXIT_BROKEN_PIPE == 141
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert f"rag-worker:dev-{STAMP}" in done.stderr  # the plan went to stderr as usual


def test_script_started_by_a_python_without_its_packages_uses_the_projects_venv(
    fresh_clone, tmp_path
):
    # ./scripts/build-image.py after `make build-dev`: the #! line's python3 lacks the packages
    # that .venv has; the README's commands must work without activating .venv
    (fresh_clone / ".venv").symlink_to(sys.prefix, target_is_directory=True)  # has them
    done = run_script(fresh_clone, "--help", flags=("-S", "-I"), cwd=tmp_path, env=child_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: build-image.py")


def test_a_venv_without_the_packages_is_tried_once_then_says_how_to_install(fresh_clone, tmp_path):
    bin_dir = fresh_clone / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"  # a .venv whose python lacks the packages too
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -S -I "$@"\n')
    python.chmod(0o755)
    done = run_script(
        fresh_clone, "--env", "dev", flags=("-S", "-I"), cwd=tmp_path, env=child_env()
    )
    assert done.returncode == 1  # no loop: one try with .venv, then the one-line reason
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: missing Python packages plumbum, semver, shtab, ")


# --- the Makefile ------------------------------------------------------------------------------

MAKE_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ECR_URI", "ECR_REGISTRY_URI", "ARGS")
}


def make_n(*args, env=None):
    if not shutil.which("make"):
        pytest.fail("make is not installed (the Makefile is the project's entry point)")
    done = subprocess.run(
        ["make", "-n", "-C", str(REPO), "-o", ".venv/.installed", *args],
        capture_output=True,
        text=True,
        env={**MAKE_ENV, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_push_dev_defaults_ecr_uri_to_ecr_registry_uri():
    out = make_n("push-dev", env={"ECR_REGISTRY_URI": "r.example.com/rag"})
    assert '--registry "r.example.com/rag" --push' in out


def test_ecr_uri_on_the_command_line_wins():
    out = make_n(
        "push-prod",
        "ECR_URI=c.example.com/rag",
        "VERSION=1.0.0",
        env={"ECR_REGISTRY_URI": "r.example.com/rag"},
    )
    assert '--registry "c.example.com/rag"' in out


def test_make_help_lists_every_target():
    targets = set(re.findall(r"(?m)^([a-zA-Z0-9_-]+):(?!=)", (REPO / "Makefile").read_text()))
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True, env=MAKE_ENV
    )
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert "push-dev" in listed and listed == targets


RED, GREEN, YELLOW, BLUE = (console.COLOURS[level] for level in (ERROR, SUCCESS, WARNING, INFO))


SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "scripts", "build-image.py")


def _script_stderr(env_extra, *, tty):
    """scripts/build-image.py with a bad flag; its stderr a pseudo-terminal or a pipe."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(env_extra)
    if not tty:
        done = subprocess.run(
            [sys.executable, SCRIPT, "--bogus"], env=env, capture_output=True, text=True, timeout=60
        )
        return done.returncode, done.stderr
    main, secondary = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, SCRIPT, "--bogus"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=secondary,
            timeout=60,
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
        return done.returncode, b"".join(chunks).decode().replace("\r\n", "\n")
    finally:
        os.close(main)


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals")
def test_the_cli_error_is_red_on_a_real_terminal_only():
    code, err = _script_stderr({}, tty=True)
    assert code == 2 and err.startswith(f"{RED}error:{RESET} unrecognized arguments: --bogus")
    code, err = _script_stderr({"NO_COLOR": "1"}, tty=True)
    assert err.startswith("error: unrecognized arguments: --bogus")
    code, err = _script_stderr({}, tty=False)
    assert code == 2 and err.startswith("error: unrecognized arguments: --bogus")
    code, err = _script_stderr({"FORCE_COLOR": "1"}, tty=False)
    assert err.startswith(f"{RED}error:{RESET} unrecognized")
