"""SIGTERM and SIGHUP get Ctrl-C's cleanup (issue 15 f): at each stage that owns something (the
build's docker child, the smoke test's container, the push, the scanner), a signal stops the
child and reaps it, removes what the stage made, records the metadata as interrupted, and exits
128 + the signal number. The signals are real (sent to this process); docker and the scanner are
faked (pytest-subprocess), real children are used for the runner's own termination."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time

import pytest

from fakes import STAMP, REPO
from registry_fakes import serve
from ragbuild import cli, sagemaker, smoke
from ragbuild.commands import build as build_command
from ragbuild.run import signals
from ragbuild.errors import Interrupted, Stopped
from ragbuild.run.command import Command, Mode
from ragbuild.run.runner import Runner

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
NAMES = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "interrupted by SIGTERM",
    signal.SIGHUP: "interrupted by SIGHUP",
}
REFS = [f"rag-worker:dev-{STAMP}", "rag-worker:dev", "rag-worker:git-a1b2c3d", "rag-worker:latest"]
LOCAL = "localhost:5000/rag-worker"
IMAGE_ID = "sha256:" + "0e" * 32
SMOKE_NAME = "ragbuild-smoke-5a5a5a5a5a5a"


def ids(signum):
    return signal.Signals(signum).name


def deliver(signum):
    """Send ``signum`` to this process (the handler runs in the main thread, where the run is)."""
    os.kill(os.getpid(), signum)
    time.sleep(0.5)


@pytest.fixture
def handlers():
    """The handlers cli.main installs, for tests that call the runner directly."""
    previous = signals.install()
    yield
    signals.restore(previous)


# --- the mechanism -----------------------------------------------------------------------------


def test_main_installs_handlers_for_its_run_and_restores_them(project, fp, monkeypatch):
    seen = {}

    def parse(argv):
        seen.update({s: signal.getsignal(s) for s in SIGNALS})
        raise Stopped(signal.SIGHUP)

    before = {s: signal.getsignal(s) for s in SIGNALS}
    monkeypatch.setattr(build_command, "cmd_build", parse)
    assert cli.main(["--env", "dev"]) == 129
    assert all(handler is signals._raise_stopped for handler in seen.values())
    assert {s: signal.getsignal(s) for s in before} == before


def test_an_ignored_sighup_stays_ignored(monkeypatch):
    """nohup ignores SIGHUP: a run started that way keeps running when the terminal goes."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        installed = signals.install()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signals._raise_stopped
        signals.restore(installed)
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_stopped_is_a_keyboard_interrupt_with_the_exit_status():
    stop = Stopped(signal.SIGTERM)
    assert isinstance(stop, KeyboardInterrupt)
    assert str(stop) == "interrupted by SIGTERM"
    assert Interrupted(signum=signal.SIGHUP).exit_code == 129
    assert Interrupted().exit_code == 130


def test_a_signal_while_a_child_starts_is_raised_once_the_block_is_done(handlers):
    done = []
    with pytest.raises(Stopped) as err:
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler ran meanwhile, and held it back
            done.append("assigned")
    assert done == ["assigned"] and err.value.signum == signal.SIGTERM
    with signals.deferred():  # nothing pending: nothing raised
        pass


def signal_when_started(pidfile, signum, timeout=10.0):
    main = threading.main_thread().ident

    def fire():
        deadline = time.monotonic() + timeout
        while (
            not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        signal.pthread_kill(main, signum)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("mode", ["capture", "stream", "tee", "watch"])
@pytest.mark.parametrize("signum", SIGNALS, ids=ids)
def test_the_runner_stops_and_reaps_the_child_on_each_signal(tmp_path, handlers, signum, mode):
    pidfile = tmp_path / "pid"
    runner = Runner(out=io.StringIO(), log=io.StringIO())
    thread = signal_when_started(pidfile, signum)
    with pytest.raises(Interrupted) as err:
        runner.run(Command(("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"), mode=Mode(mode)))
    thread.join()
    assert err.value.exit_code == 128 + signum
    assert str(err.value) == f"{NAMES[signum]}; stopped sh -c"
    assert gone(int(pidfile.read_text()))  # terminated and reaped: not even a zombie


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=ids)
def test_a_second_signal_kills_the_child_at_once_and_still_reaps_it(tmp_path, handlers, second):
    # a CI system repeating SIGTERM, or Ctrl-C pressed twice, while the runner gives a child
    # that does not exit on SIGTERM its grace period: the child must still be stopped and
    # reaped (not left running because the second signal broke out of the cleanup)
    pidfile = tmp_path / "pid"
    runner = Runner(out=io.StringIO(), log=io.StringIO())
    main = threading.main_thread().ident

    def fire():
        while not (pidfile.exists() and pidfile.read_text().strip()):
            time.sleep(0.02)
        signal.pthread_kill(main, signal.SIGTERM)
        time.sleep(0.5)  # inside the grace period
        signal.pthread_kill(main, second)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    started = time.monotonic()
    with pytest.raises(Interrupted) as err:
        runner.run(
            Command(("sh", "-c", f"trap '' TERM; echo $$ > {pidfile}; while :; do sleep 0.1; done"))
        )
    thread.join()
    assert str(err.value) == "interrupted by SIGTERM; stopped sh -c"  # the first signal's run
    assert err.value.exit_code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5  # killed on the second signal, not after 10 s
    assert gone(int(pidfile.read_text()))


def test_signals_after_the_first_raise_nothing_in_the_cleanup(handlers):
    cleaned = []
    with pytest.raises(Stopped):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # during the cleanup: no second Stopped
            time.sleep(0.1)
            cleaned.append(True)
    assert cleaned == [True] and signals.hurried()


# --- each stage, through cli.main --------------------------------------------------------------


def register_build(fp, on_build=None):
    fp.register([fp.program("docker"), "build", "-f", fp.any()], callback=on_build)
    fp.register(
        [fp.program("docker"), "image", "inspect", fp.any()],
        stdout=f"{IMAGE_ID} 151234567 {json.dumps(REFS)} {{}}\n",
    )


def run_stage(capsys, argv):
    code = cli.main([*argv, "--metadata-file", "m.json"])
    err = capsys.readouterr().err
    with open("m.json", encoding="utf-8") as handle:
        return code, err, json.load(handle)


def assert_interrupted(code, err, doc, signum, step):
    assert code == 128 + signum, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {NAMES[signum]}"), err
    assert (doc["status"], doc["failed_step"]) == ("interrupted", step)
    assert doc["error"].startswith(NAMES[signum])


@pytest.mark.parametrize("signum", SIGNALS, ids=ids)
def test_a_signal_during_the_build(project, strict_fp, capsys, signum):
    register_build(strict_fp, on_build=lambda process: deliver(signum))
    code, err, doc = run_stage(capsys, ["--env", "dev"])
    assert_interrupted(code, err, doc, signum, "build")


@pytest.mark.parametrize("signum", SIGNALS, ids=ids)
def test_a_signal_during_the_smoke_test_removes_its_container(
    project, strict_fp, capsys, monkeypatch, signum
):
    register_build(strict_fp)
    monkeypatch.setattr(smoke, "container_name", lambda: SMOKE_NAME)
    strict_fp.register(
        [strict_fp.program("docker"), "run", "-d", "--name", SMOKE_NAME, strict_fp.any()],
        stdout="c0ffee\n",
    )
    strict_fp.register(
        [strict_fp.program("docker"), "port", SMOKE_NAME, "8080/tcp"], stdout="127.0.0.1:49155\n"
    )
    strict_fp.register([strict_fp.program("docker"), "rm", "-f", SMOKE_NAME])

    def never_answers(port, method, path, *rest):  # the image that never answers: the signal
        deliver(signum)  # comes meanwhile
        return sagemaker.Outcome(None, 0.0)

    monkeypatch.setattr(sagemaker, "http_request", never_answers)
    code, err, doc = run_stage(capsys, ["--env", "dev", "--smoke-test"])
    assert_interrupted(code, err, doc, signum, "smoke")
    assert strict_fp.call_count([strict_fp.program("docker"), "rm", "-f", SMOKE_NAME]) == 1


@pytest.mark.parametrize("signum", SIGNALS, ids=ids)
def test_a_signal_during_the_scan(project, strict_fp, stub_bin, capsys, signum):
    scanner = stub_bin / "trivy"
    scanner.write_text("#!/bin/sh\nexit 97\n")
    scanner.chmod(0o755)
    register_build(strict_fp)
    strict_fp.register(
        [strict_fp.program("trivy"), strict_fp.any()], callback=lambda process: deliver(signum)
    )
    code, err, doc = run_stage(capsys, ["--env", "dev", "--scan"])
    assert_interrupted(code, err, doc, signum, "scan")


@pytest.mark.parametrize("signum", SIGNALS, ids=ids)
def test_a_signal_during_the_push_says_what_was_pushed(project, strict_fp, capsys, signum):
    refs = [ref.replace("rag-worker", LOCAL, 1) for ref in REFS]
    strict_fp.register(
        [strict_fp.program("docker"), "build", "--help"], stdout="Usage: docker build\n"
    )
    strict_fp.register([strict_fp.program("docker"), "build", "-f", strict_fp.any()])
    strict_fp.register(
        [strict_fp.program("docker"), "image", "inspect", strict_fp.any()],
        stdout=f"{IMAGE_ID} 151234567 {json.dumps(refs)} {{}}\n",
    )
    strict_fp.register(
        [strict_fp.program("docker"), "push", refs[0]],
        stdout=f"dev: digest: sha256:{'ab' * 32} size: 528\n",
    )
    strict_fp.register(
        [strict_fp.program("docker"), "push", refs[1]], callback=lambda process: deliver(signum)
    )
    serve(refs[0])  # after the first push, the registry serves this run's image
    code, err, doc = run_stage(capsys, ["--env", "dev", "--registry", LOCAL, "--push"])
    assert_interrupted(code, err, doc, signum, "push")
    assert f"pushed: {refs[0]}" in err and f"not pushed: {refs[1]}" in err
    assert doc["pushed_refs"] == [refs[0]]


def test_a_signal_during_a_cleanup_lets_the_cleanup_command_finish(tmp_path, handlers):
    """The smoke test's ``docker rm`` and run's rollback run deferred: CI's second SIGTERM (or a
    second Ctrl-C) comes after the cleanup command is done, instead of killing it."""
    pidfile, done = tmp_path / "pid", tmp_path / "done"
    runner = Runner(out=io.StringIO(), log=io.StringIO())
    thread = signal_when_started(pidfile, signal.SIGTERM)
    with pytest.raises(Stopped):
        with signals.deferred():
            runner.run(Command(("sh", "-c", f"echo $$ > {pidfile}; sleep 0.5; touch {done}")))
    thread.join()
    assert done.exists()  # not terminated halfway


def test_the_ctrl_c_tests_pass_when_the_test_run_inherits_sigint_ignored():
    """A test run started as a shell's background job inherits SIGINT ignored; the suite's
    conftest gives it Python's handler back, so a Ctrl-C test still sees its Ctrl-C."""
    import subprocess
    import sys

    repo = REPO
    test = "tests/unit/run/test_runner.py::test_ctrl_c_on_a_command_without_arguments"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,  # a whole pytest start-up: minutes on two cores busy with other runs
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 passed" in done.stdout


@pytest.mark.parametrize("signum", SIGNALS, ids=ids)
def test_a_signal_during_the_concurrent_read_back_exits_without_waiting_for_the_requests(signum):
    """Ctrl-C (or SIGTERM/SIGHUP) while ``Runner.check_all`` waits for registry requests: the
    process exits at once, not after every request in flight has run out its timeout and its
    retries (a pool's worker threads are joined at interpreter exit), and no request that had
    not started yet is made."""
    import subprocess
    import sys
    import textwrap

    repo = REPO
    script = textwrap.dedent(f"""
        import os, signal, sys, threading, time
        from ragbuild.run import signals
        from ragbuild.errors import Interrupted
        from ragbuild.run.runner import CHECK_THREADS, Runner

        signals.install()
        started = []
        def probe():
            started.append(1)
            time.sleep(20)  # a registry request that hangs for its whole timeout
        checks = [("GET", probe, None)] * (CHECK_THREADS + 4)
        threading.Timer(0.5, lambda: os.kill(os.getpid(), {int(signum)})).start()
        try:
            Runner().check_all(checks)
        except Interrupted as stop:
            print(len(started), stop, flush=True)
            sys.exit(128 + stop.signum)
    """)
    begun = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - begun
    assert done.returncode == 128 + signum, done.stderr
    assert took < 5, f"exited {took:.1f} s after starting (the probes hang 20 s)"
    started, _, message = done.stdout.strip().partition(" ")
    assert int(started) <= 8  # the queued ones never started
    assert message.startswith(NAMES[signum])
