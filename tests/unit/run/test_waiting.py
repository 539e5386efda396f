"""The wait line (waiting.py) and ``-q/--quiet`` (Runner.quiet): what a waiting step and a quiet
run print."""

import io
import threading

from ragbuild.run import waiting
from ragbuild.run.command import Command, Kind
from ragbuild.run.dry import DryRunner
from ragbuild.run.runner import Runner


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_text_says_what_for_and_how_long():
    assert (
        waiting.text("GET /ping to answer 200", 12.7, 60)
        == "waiting for GET /ping to answer 200: 12s of at most 60s"
    )
    assert waiting.text("the push", 3, None) == "waiting for the push: 3s"


def test_in_a_log_a_line_every_few_seconds_and_none_for_a_short_wait():
    log, clock = io.StringIO(), Clock()
    ticked = threading.Event()
    line = waiting.WaitLine(log, "x to exit", 30, terminal=False, clock=clock, every=0.05)
    original = line.draw

    def draw():
        original()
        ticked.set()

    line.draw = draw
    with line:
        clock.now = 5.0
        assert ticked.wait(2)
    lines = log.getvalue().splitlines()
    assert lines and all(text == "waiting for x to exit: 5s of at most 30s" for text in lines)
    assert "\r" not in log.getvalue()
    quick = io.StringIO()
    with waiting.WaitLine(quick, "y", 30, terminal=False):  # LOG_EVERY (5 s) never passes
        pass
    assert quick.getvalue() == ""


def test_on_a_terminal_one_line_redrawn_in_place_then_erased():
    tty, clock = Terminal(), Clock()
    with waiting.WaitLine(tty, "GET /ping", 60, clock=clock, every=0.01):
        clock.now = 2.0
        threading.Event().wait(0.1)
    out = tty.getvalue()
    assert out.startswith("\r\x1b[Kwaiting for GET /ping: 0s of at most 60s")
    assert "\r\x1b[Kwaiting for GET /ping: 2s of at most 60s" in out
    assert "\n" not in out
    assert out.endswith("\r\x1b[K")  # erased: the log goes on where it was


def test_a_runner_waits_with_a_line_and_a_quiet_or_dry_one_without():
    assert isinstance(Runner(log=io.StringIO()).waiting("x", 1), waiting.WaitLine)
    assert isinstance(Runner(log=io.StringIO(), quiet=True).waiting("x", 1), waiting.NoLine)
    assert isinstance(DryRunner(log=io.StringIO()).waiting("x", 1), waiting.NoLine)


def test_a_poll_has_no_plus_line_but_a_dry_run_prints_it(fp):
    fp.register([fp.program("docker"), "inspect", "c"], stdout="true\n")
    log = io.StringIO()
    Runner(log=log).run(Command(("docker", "inspect", "c"), kind=Kind.PROBE, poll=True))
    assert log.getvalue() == ""
    out = io.StringIO()
    DryRunner(out=out, log=io.StringIO()).run(Command(("docker", "inspect", "c"), poll=True))
    assert out.getvalue() == "docker inspect c\n"


def test_quiet_keeps_errors_and_results_only(fp):
    fp.register([fp.program("docker"), "push", "r:1"], stdout="1: digest: sha256:ab size: 1\n")
    out, log = io.StringIO(), io.StringIO()
    runner = Runner(out=out, log=log, quiet=True)
    from ragbuild.run.command import Mode

    result = runner.run(Command(("docker", "push", "r:1"), mode=Mode.TEE))
    assert "digest: sha256:ab" in result.stdout  # kept for the run, not shown
    runner.log("warning: something")
    runner.report("pushed and verified 1 tags")
    runner.log("error: it failed")
    runner.emit("r@sha256:ab")
    assert log.getvalue() == "error: it failed\n"
    assert out.getvalue() == "r@sha256:ab\n"
