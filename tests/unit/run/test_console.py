"""Colour on a terminal only (ragbuild/run/console.py): build-image.sh's four levels, NO_COLOR,
FORCE_COLOR, and byte-identical plain text everywhere else."""

from __future__ import annotations

import io
import os

import pytest

from ragbuild.run import console
from ragbuild.run.console import ERROR, INFO, RESET, SUCCESS, WARNING, paint
from ragbuild.run.runner import Runner

RED, GREEN, YELLOW, BLUE = (console.COLOURS[level] for level in (ERROR, SUCCESS, WARNING, INFO))


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    "message, level, painted",
    [
        ("warning: the tree is dirty", None, f"{YELLOW}warning:{RESET} the tree is dirty"),
        ("error: no such image", None, f"{RED}error:{RESET} no such image"),
        ("+ docker build .", None, f"{BLUE}+{RESET} docker build ."),
        (
            "built sha256:ab (1 MB) with 2 tags:\n  a",
            SUCCESS,
            f"{GREEN}built sha256:ab (1 MB) with 2 tags:{RESET}\n  a",
        ),
        (
            "build context .: 3 files",
            None,
            "build context .: 3 files",
        ),  # info without a marker: plain
    ],
)
def test_each_level_is_coloured_on_a_terminal(message, level, painted):
    assert paint(message, Terminal(), level, environ={}) == painted


@pytest.mark.parametrize(
    "environ",
    [{}, {"FORCE_COLOR": ""}, {"FORCE_COLOR": "0"}, {"NO_COLOR": "1", "FORCE_COLOR": "1"}],
)
def test_a_pipe_or_file_stays_plain(environ):
    for message in ("warning: x", "error: y", "+ docker version", "smoke test passed: z"):
        assert (
            paint(message, io.StringIO(), SUCCESS if "passed" in message else None, environ=environ)
            == message
        )


@pytest.mark.parametrize("value", ["1", "true", "anything"])
def test_no_color_beats_a_terminal(value):
    assert paint("warning: x", Terminal(), environ={"NO_COLOR": value}) == "warning: x"


def test_an_empty_no_color_is_unset():
    assert paint("warning: x", Terminal(), environ={"NO_COLOR": ""}).startswith(YELLOW)


@pytest.mark.parametrize("value", ["1", "true", "3"])
def test_force_color_colours_a_pipe(value):
    assert (
        paint("error: x", io.StringIO(), environ={"FORCE_COLOR": value}) == f"{RED}error:{RESET} x"
    )


def test_a_closed_stream_is_not_a_terminal():
    stream = open(os.devnull, "w")
    stream.close()  # isatty() now raises ValueError
    assert console.colour(stream, {}) is False


def test_the_runner_log_colours_on_a_terminal_and_not_in_a_capture(monkeypatch):
    tty, plain = Terminal(), io.StringIO()
    for log in (tty, plain):
        runner = Runner(out=io.StringIO(), log=log)
        runner.log("warning: careful")
        runner.log("pushed and verified 2 tags", SUCCESS)
    assert tty.getvalue() == (
        f"{YELLOW}warning:{RESET} careful\n{GREEN}pushed and verified 2 tags{RESET}\n"
    )
    assert plain.getvalue() == "warning: careful\npushed and verified 2 tags\n"
