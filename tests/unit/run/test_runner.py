"""The runner: how commands are logged, started, fed, captured or streamed, and stopped.

Faked processes (pytest-subprocess) show what would be started; a few real, short-lived
processes (sh, cat, sleep) show the streams and Ctrl-C, which a fake cannot."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ragbuild.errors import EXIT_INTERRUPTED, CommandFailed, Interrupted, ToolMissing
from ragbuild.run.command import Command, Kind, Mode
from ragbuild.run.dry import DryRunner
from ragbuild.run.runner import Runner, failure_message, resolve
from ragbuild.run.command import Secret, Result
from fakes import in_a_new_python

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


def quiet_runner(dry_run=False):
    out, log = io.StringIO(), io.StringIO()
    return (DryRunner if dry_run else Runner)(out=out, log=log), out, log


# --- logging and what is started ---------------------------------------------------------------


def test_command_is_logged_shell_quoted_with_the_bare_program_name(fp, stub_bin):
    fp.allow_unregistered(False)
    recorder = fp.register([fp.program("docker"), "build", "-t", "a b", "."])
    runner, out, log = quiet_runner()
    runner.run(Command(("docker", "build", "-t", "a b", "."), env=(("DOCKER_BUILDKIT", "1"),)))
    assert log.getvalue() == "+ DOCKER_BUILDKIT=1 docker build -t 'a b' .\n"
    assert out.getvalue() == ""
    assert len(recorder.calls) == 1


def test_every_command_but_a_read_only_query_is_logged(fp, stub_bin):
    """The real run's ``+`` lines are what a dry run prints: docker queries included."""
    fp.register([fp.program("docker"), "version"])
    fp.register([fp.program("git"), "describe"], stdout="abc1234\n")
    runner, out, log = quiet_runner()
    runner.run(Command(("docker", "version"), check=False))
    runner.run(Command(("git", "describe"), kind=Kind.QUERY))
    assert log.getvalue() == "+ docker version\n"


def test_env_is_added_to_the_callers_environment(fp, stub_bin, monkeypatch):
    monkeypatch.setenv("RAGBUILD_TEST_MARK", "kept")
    recorder = fp.register([fp.program("docker"), "build", "."])
    runner, _, _ = quiet_runner()
    runner.run(Command(("docker", "build", "."), env=(("DOCKER_BUILDKIT", "1"),)))
    env = recorder.calls[0].kwargs["env"]
    assert env["DOCKER_BUILDKIT"] == "1"
    assert env["RAGBUILD_TEST_MARK"] == "kept"


def test_docker_variable_names_the_binary_but_not_what_is_shown(fp, monkeypatch):
    monkeypatch.setenv("DOCKER", "/opt/x/mydocker")
    fp.allow_unregistered(False)
    fp.register([fp.program("mydocker"), "ps"], stdout="ok\n")
    runner, _, log = quiet_runner()
    result = runner.run(Command(("docker", "ps")))
    assert list(fp.calls[0]) == ["/opt/x/mydocker", "ps"]
    assert result.stdout == "ok\n"
    assert log.getvalue() == "+ docker ps\n"


def test_resolve(monkeypatch):
    monkeypatch.delenv("DOCKER", raising=False)
    monkeypatch.delenv("AWS_CLI", raising=False)
    assert resolve("docker") == "docker"
    monkeypatch.setenv("DOCKER", "/usr/bin/docker")
    monkeypatch.setenv("AWS_CLI", "/opt/aws/bin/aws")
    monkeypatch.setenv("GIT", "/nope/git")  # only docker and aws can be replaced
    assert (resolve("docker"), resolve("aws"), resolve("git")) == (
        "/usr/bin/docker",
        "/opt/aws/bin/aws",
        "git",
    )
    monkeypatch.setenv("DOCKER", "")
    assert resolve("docker") == "docker"


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_prints_instead_of_running(fp, stub_bin):
    fp.allow_unregistered(False)  # any start would raise
    runner, out, log = quiet_runner(dry_run=True)
    result = runner.run(Command(("docker", "push", "r.example.com/x:1 2"), env=(("A", "b"),)))
    assert out.getvalue() == "A=b docker push 'r.example.com/x:1 2'\n"
    assert result == Result(0)
    assert len(fp.calls) == 0


def test_dry_run_prints_the_bare_name_even_with_docker_set(fp, monkeypatch):
    monkeypatch.setenv("DOCKER", "/opt/x/mydocker")
    fp.allow_unregistered(False)
    runner, out, _ = quiet_runner(dry_run=True)
    runner.run(Command(("docker", "build", ".")))
    assert out.getvalue() == "docker build .\n"


def test_dry_run_still_runs_read_only_queries(fp):
    fp.allow_unregistered(False)
    fp.register([fp.program("git"), "describe"], stdout="abc1234\n")
    runner, out, _ = quiet_runner(dry_run=True)
    result = runner.run(Command(("git", "describe"), kind=Kind.QUERY))
    assert result.stdout == "abc1234\n"
    assert out.getvalue() == ""


def test_read_only_is_git_only_so_a_dry_run_starts_no_docker():
    """The probes a plan makes (buildx, the daemon's registry configuration) are printed in a
    dry run, not run."""
    from ragbuild import push_preflight
    from ragbuild.buildx import buildx_version_command
    from ragbuild.git import git_status_command, version_tags_command

    assert buildx_version_command().kind is not Kind.QUERY
    assert push_preflight.registry_config_command().kind is not Kind.QUERY
    assert git_status_command().kind is Kind.QUERY and version_tags_command().kind is Kind.QUERY


def test_dry_run_warns_once_about_a_program_a_real_run_would_not_find(fp, monkeypatch, tmp_path):
    fp.allow_unregistered(False)
    monkeypatch.setenv("DOCKER", str(tmp_path / "nope" / "docker"))
    runner, out, log = quiet_runner(dry_run=True)
    runner.run(Command(("docker", "build", ".")))
    runner.run(Command(("docker", "push", "r")))
    assert out.getvalue() == "docker build .\ndocker push r\n"
    assert log.getvalue() == (
        f"warning: {tmp_path}/nope/docker not found: install docker (as root on Debian or Ubuntu: make engine) or set "
        "DOCKER to its path (a real run stops here)\n"
    )


def test_stop_or_warn_raises_in_a_real_run_and_warns_once_in_a_dry_run():
    from ragbuild.errors import PushFailed

    with pytest.raises(PushFailed):
        quiet_runner()[0].stop_or_warn(PushFailed("no helper"))
    runner, out, log = quiet_runner(dry_run=True)
    runner.stop_or_warn(PushFailed("no helper"))
    runner.stop_or_warn(PushFailed("no helper"))
    assert log.getvalue() == "warning: no helper (a real run stops here)\n"


def test_emit_writes_a_result_line_to_the_runners_out():
    runner, out, log = quiet_runner()
    runner.emit("r@sha256:1")
    assert (out.getvalue(), log.getvalue()) == ("r@sha256:1\n", "")


# --- secrets in what is printed ----------------------------------------------------------------


SECRET_BUILD = Command(
    (
        "docker",
        "build",
        "--build-arg",
        "PIP_INDEX_URL=https://u:tok@m.example/s",
        "--build-arg",
        "API_TOKEN=x",
        "--build-arg",
        "NOTE=plain",
        ".",
    )
)


def test_dry_run_shows_stars_for_secret_values_and_says_so_once(fp):
    fp.allow_unregistered(False)
    runner, out, log = quiet_runner(dry_run=True)
    runner.run(SECRET_BUILD)
    runner.run(SECRET_BUILD)
    line = (
        "docker build --build-arg 'PIP_INDEX_URL=https://***@m.example/s' --build-arg "
        "'API_TOKEN=***' --build-arg NOTE=plain .\n"
    )
    assert out.getvalue() == line * 2
    assert log.getvalue().count("shown as ***") == 1
    assert "tok" not in out.getvalue() + log.getvalue()


def test_the_real_command_gets_the_secret_and_the_log_hides_it(fp, stub_bin):
    recorder = fp.register([fp.program("docker"), "build", fp.any()])
    runner, _, log = quiet_runner()
    runner.run(SECRET_BUILD)
    assert "API_TOKEN=x" in recorder.calls[0].args
    assert "PIP_INDEX_URL=https://u:tok@m.example/s" in recorder.calls[0].args
    assert "tok" not in log.getvalue() and "API_TOKEN=***" in log.getvalue()


def test_a_failure_message_hides_secrets_too(fp, stub_bin):
    fp.register([fp.program("docker"), "build", fp.any()], returncode=1)
    runner, _, _ = quiet_runner()
    with pytest.raises(CommandFailed) as err:
        runner.run(Command(SECRET_BUILD.argv))
    assert "tok" not in str(err.value) and "API_TOKEN=***" in str(err.value)


# --- capture, check ----------------------------------------------------------------------------


def test_capture_keeps_stdout_and_stderr_apart(fp, stub_bin):
    recorder = fp.register([fp.program("docker"), "ps"], stdout="out\n", stderr="err\n")
    runner, out, _ = quiet_runner()
    result = runner.run(Command(("docker", "ps")))
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")
    assert out.getvalue() == ""
    kwargs = recorder.calls[0].kwargs
    assert kwargs["stdout"] is not None and kwargs["stderr"] is not None


def test_failure_raises_with_the_command_and_the_tail_of_its_output(fp, stub_bin):
    said = "".join(f"line {i}\n" for i in range(1, 31))
    fp.register([fp.program("docker"), "pull", "x y"], stderr=said, returncode=3)
    runner, _, _ = quiet_runner()
    with pytest.raises(CommandFailed) as err:
        runner.run(Command(("docker", "pull", "x y")))
    message = str(err.value)
    assert message.splitlines()[0] == "`docker pull 'x y'` failed (exit 3):"
    assert message.splitlines()[1:] == [f"line {i}" for i in range(16, 31)]
    assert err.value.returncode == 3


def test_check_false_returns_the_failure(fp, stub_bin):
    fp.register([fp.program("docker"), "buildx", "version"], stderr="no buildx\n", returncode=1)
    runner, _, _ = quiet_runner()
    result = runner.run(Command(("docker", "buildx", "version"), check=False))
    assert not result.ok and result.returncode == 1 and result.stderr == "no buildx\n"


def test_failure_message_of_a_streamed_command_points_above():
    cmd = Command(("docker", "build", "."), mode=Mode.STREAM)
    assert (
        failure_message(cmd, Result(1)) == "`docker build .` failed (exit 1); its output is above"
    )


def test_failure_message_without_output_is_one_line():
    assert failure_message(Command(("docker", "ps")), Result(2)) == "`docker ps` failed (exit 2)"


def test_a_child_killed_by_a_signal_is_named_so_not_a_negative_exit():
    assert failure_message(Command(("docker", "ps")), Result(-9)) == (
        "`docker ps` was killed by signal 9 (SIGKILL)"
    )
    runner, _, _ = quiet_runner()
    with pytest.raises(CommandFailed) as err:
        runner.run(Command(("sh", "-c", "kill -TERM $$")))
    assert str(err.value) == "`sh -c 'kill -TERM $$'` was killed by signal 15 (SIGTERM)"
    assert err.value.returncode == -15


# --- stream and tee (real processes) -----------------------------------------------------------


def test_stream_lets_the_child_write_to_our_terminal(capfd):
    runner = Runner(log=io.StringIO())
    result = runner.run(Command(("sh", "-c", "echo progress; echo step >&2"), mode=Mode.STREAM))
    assert (result.stdout, result.stderr) == ("", "")
    captured = capfd.readouterr()
    assert captured.out == "progress\n"
    assert captured.err == "step\n"


def test_stream_is_not_piped(fp, stub_bin):
    recorder = fp.register([fp.program("docker"), "build", "."])
    runner, _, _ = quiet_runner()
    runner.run(Command(("docker", "build", "."), mode=Mode.STREAM))
    kwargs = recorder.calls[0].kwargs
    assert kwargs["stdout"] is None and kwargs["stderr"] is None


def test_stream_failure_raises(capfd):
    runner = Runner(log=io.StringIO())
    with pytest.raises(CommandFailed, match="its output is above"):
        runner.run(Command(("sh", "-c", "echo broken >&2; exit 4"), mode=Mode.STREAM))
    assert capfd.readouterr().err == "broken\n"


def test_tee_shows_and_keeps_stdout_and_stderr():
    runner, out, _ = quiet_runner()
    result = runner.run(Command(("sh", "-c", "echo one; echo two >&2; echo three"), mode=Mode.TEE))
    assert out.getvalue() == "one\ntwo\nthree\n"
    assert result.stdout == "one\ntwo\nthree\n"


def test_tee_replaces_what_an_ascii_terminal_cannot_show():
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii", write_through=True)
    runner = Runner(out=out, log=io.StringIO())
    result = runner.run(
        Command(("sh", "-c", "printf 'layer \\342\\226\\210 done\\n'"), mode=Mode.TEE)
    )
    assert result.stdout == "layer \u2588 done\n"  # kept as docker said it
    assert raw.getvalue() == b"layer ? done\n"


def test_tee_failure_message_carries_the_output():
    runner, _, _ = quiet_runner()
    with pytest.raises(CommandFailed) as err:
        runner.run(Command(("sh", "-c", "echo denied; exit 1"), mode=Mode.TEE))
    assert str(err.value).endswith(":\ndenied")


# --- watch: streamed, and the end of stderr kept (real processes) -------------------------------


class Terminal(io.StringIO):
    """A log that says it is a terminal, as sys.stderr on one does (no file descriptor)."""

    def isatty(self):
        return True


def test_watch_passes_stderr_on_and_keeps_it_and_leaves_stdout_alone(capfd):
    runner, _, log = quiet_runner()
    with pytest.raises(CommandFailed) as err:
        runner.run(
            Command(
                ("sh", "-c", "echo result; echo step 1 >&2; echo failed >&2; exit 3"),
                mode=Mode.WATCH,
            )
        )
    assert log.getvalue().splitlines()[1:] == ["step 1", "failed"]  # after the + line
    assert capfd.readouterr().out == "result\n"  # the child's stdout is ours, as in STREAM
    assert str(err.value) == (
        "`sh -c 'echo result; echo step 1 >&2; echo failed >&2; exit 3'` "
        "failed (exit 3); its output is above"
    )
    assert err.value.returncode == 3
    assert err.value.output == "step 1\nfailed\n"


def test_watch_keeps_only_the_end_of_a_long_output(monkeypatch):
    from ragbuild.run import runner as runner_module

    monkeypatch.setattr(runner_module, "WATCH_KEEP", 100)
    runner, _, log = quiet_runner()
    result = runner.run(Command(("sh", "-c", "seq 1 5000 >&2"), mode=Mode.WATCH))
    assert log.getvalue().count("\n") == 5001  # all of it shown
    assert len(result.stderr) == 100 and result.stderr.endswith("\n4999\n5000\n")


def test_watch_decodes_a_character_split_between_two_reads():
    runner, _, log = quiet_runner()
    result = runner.run(
        Command(
            ("sh", "-c", "printf '\\342\\226' >&2; sleep 0.2; printf '\\210 done\\n' >&2"),
            mode=Mode.WATCH,
        )
    )
    assert result.stderr == "\u2588 done\n"
    assert log.getvalue().endswith("\u2588 done\n")


def test_watch_gives_the_child_a_terminal_when_the_log_is_one(capfd):
    """docker draws its live progress only on a terminal: the build keeps it. Its stdout stays
    ours (here capfd's file, so not a terminal even under ``pytest -s``)."""
    log = Terminal()
    runner = Runner(out=io.StringIO(), log=log)
    with pytest.raises(CommandFailed) as err:
        runner.run(
            Command(
                (
                    "sh",
                    "-c",
                    "if test -t 2; then echo terminal >&2; else echo pipe >&2;"
                    " fi; test -t 1 || echo stdout-is-ours; exit 1",
                ),
                mode=Mode.WATCH,
            )
        )
    assert err.value.output == "terminal\r\n"  # as a pty gives it
    assert log.getvalue().endswith("terminal\r\n")
    assert capfd.readouterr().out == "stdout-is-ours\n"


def test_without_a_terminal_the_child_gets_a_pipe():
    runner, _, _ = quiet_runner()
    result = runner.run(
        Command(("sh", "-c", "test -t 2 && echo terminal >&2 || echo pipe >&2"), mode=Mode.WATCH)
    )
    assert result.stderr == "pipe\n"


def test_the_childs_terminal_has_the_size_of_ours():
    import fcntl
    import pty
    import struct
    import termios

    ours, theirs = pty.openpty()
    fcntl.ioctl(theirs, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    with open(theirs, "w", closefd=True) as terminal, open(ours, "rb", closefd=True):
        runner = Runner(out=io.StringIO(), log=terminal)
        result = runner.run(Command(("sh", "-c", "stty size <&2 >&2"), mode=Mode.WATCH))
    assert result.stderr == "33 111\r\n"


def test_the_childs_terminal_follows_ours_when_it_is_resized(tmp_path):
    """A resized terminal sends SIGWINCH to its foreground process group (ragbuild and
    docker): the runner resizes the pty, which docker asks for the size as it redraws."""
    import fcntl
    import pty
    import struct
    import termios

    ours, theirs = pty.openpty()
    fcntl.ioctl(theirs, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    main = threading.main_thread().ident
    asked, resized = tmp_path / "asked", tmp_path / "resized"

    def resize():  # once the child has asked the size once
        deadline = time.monotonic() + 10
        while not asked.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        fcntl.ioctl(theirs, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        signal.pthread_kill(main, signal.SIGWINCH)  # what the terminal sends
        time.sleep(0.3)  # the main thread, blocked reading the pty, runs the handler at once
        resized.touch()

    before = signal.getsignal(signal.SIGWINCH)
    script = (
        f"stty size <&2 >&2; touch {asked}; i=0; while [ ! -e {resized} ] && "
        "[ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; stty size <&2 >&2"
    )
    with open(theirs, "w", closefd=True) as terminal, open(ours, "rb", closefd=True):
        runner = Runner(out=io.StringIO(), log=terminal)
        thread = threading.Thread(target=resize)
        thread.start()
        result = runner.run(Command(("sh", "-c", script), mode=Mode.WATCH))
        thread.join()
    assert result.stderr == "33 111\r\n40 120\r\n"
    assert signal.getsignal(signal.SIGWINCH) == before  # the handler was the run's alone


def test_watch_with_an_answer_file_returns_both(tmp_path):
    answer = str(tmp_path / "own" / "answer.json")
    runner, _, _ = quiet_runner()
    result = runner.run(
        Command(
            ("sh", "-c", f"echo '{{}}' > {answer}; echo progress >&2"),
            mode=Mode.WATCH,
            answer_file=answer,
        )
    )
    assert (result.stdout, result.stderr) == ("{}\n", "progress\n")


def test_watch_feeds_a_secret_on_stdin_and_logs_its_placeholder():
    runner, _, log = quiet_runner()
    result = runner.run(
        Command(
            ("sh", "-c", "read line; echo got=${#line} chars >&2"),
            stdin="<password>",
            mode=Mode.WATCH,
        ),
        stdin=Secret("hunter2"),
    )
    assert result.stderr == "got=7 chars\n"
    assert (
        log.getvalue()
        == "+ sh -c 'read line; echo got=${#line} chars >&2' < <password>\ngot=7 chars\n"
    )


def test_a_dry_run_prints_a_watched_command(fp):
    fp.allow_unregistered(False)
    runner, out, _ = quiet_runner(dry_run=True)
    assert runner.run(Command(("docker", "build", "."), mode=Mode.WATCH)) == Result(0)
    assert out.getvalue() == "docker build .\n"


# --- secrets on stdin --------------------------------------------------------------------------


def test_secret_is_never_shown():
    secret = Secret("hunter2")
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        "%s" % secret,  # noqa: UP031 (the %-operator is one way to show it) f"{secret}",
        repr([secret]),
        repr({"password": secret}),
    ]
    assert all("hunter2" not in text for text in shown)
    assert secret.reveal() == "hunter2"


@pytest.mark.parametrize("mode", [Mode.CAPTURE, Mode.TEE])
def test_secret_is_fed_on_stdin_and_not_logged(mode):
    runner, out, log = quiet_runner()
    result = runner.run(
        Command(("sh", "-c", "read line; echo got=$line"), stdin="<password>", mode=mode),
        stdin=Secret("hunter2"),
    )
    assert result.stdout == "got=hunter2\n"
    assert log.getvalue() == "+ sh -c 'read line; echo got=$line' < <password>\n"


def test_secret_reaches_stdin_of_a_faked_process(fp, stub_bin):
    fed = []
    fp.register([fp.program("docker"), "login", "--password-stdin"], stdin_callable=fed.append)
    runner, _, log = quiet_runner()
    runner.run(
        Command(("docker", "login", "--password-stdin"), stdin="<ecr token>"), stdin=Secret("t0ken")
    )
    assert fed == [b"t0ken"]
    assert "t0ken" not in log.getvalue()


def test_dry_run_prints_the_placeholder_not_the_secret(fp):
    fp.allow_unregistered(False)
    runner, out, _ = quiet_runner(dry_run=True)
    runner.run(
        Command(("docker", "login", "--password-stdin"), stdin="<ecr token>"), stdin=Secret("t0ken")
    )
    assert out.getvalue() == "docker login --password-stdin < <ecr token>\n"


def test_a_secret_for_a_command_without_stdin_is_refused(fp):
    fp.allow_unregistered(False)
    runner, _, _ = quiet_runner()
    with pytest.raises(ValueError):
        runner.run(Command(("docker", "ps")), stdin=Secret("x"))


def test_without_a_secret_stdin_is_closed():
    runner, _, _ = quiet_runner()
    result = runner.run(Command(("sh", "-c", "cat; echo end")))
    assert result.stdout == "end\n"  # cat saw EOF at once, nothing waited on the terminal


def test_without_a_secret_stdin_is_dev_null_not_the_terminal(fp, stub_bin):
    recorder = fp.register([fp.program("docker"), "build", "."])
    runner, _, _ = quiet_runner()
    runner.run(Command(("docker", "build", "."), mode=Mode.STREAM))
    assert recorder.calls[0].kwargs["stdin"] == subprocess.DEVNULL


# --- missing programs --------------------------------------------------------------------------


def test_missing_program_on_path(stub_bin):
    runner, _, _ = quiet_runner()
    with pytest.raises(
        ToolMissing, match="^no-such-tool-4711 not found: install no-such-tool-4711$"
    ):
        runner.run(Command(("no-such-tool-4711", "x")))


def test_missing_docker_named_by_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER", str(tmp_path / "nope" / "docker"))
    runner, _, _ = quiet_runner()
    with pytest.raises(ToolMissing) as err:
        runner.run(Command(("docker", "ps")))
    assert str(err.value) == (
        f"{tmp_path}/nope/docker not found: install docker (as root on Debian or Ubuntu: make engine) or set DOCKER "
        "to its path"
    )


@pytest.mark.parametrize("make", ["directory", "not-executable"])
def test_docker_variable_naming_something_not_runnable(monkeypatch, tmp_path, make):
    target = tmp_path / "docker"
    if make == "directory":
        target.mkdir()
    else:
        target.write_text("#!/bin/sh\n")
        target.chmod(0o644)
    monkeypatch.setenv("DOCKER", str(target))
    runner, _, _ = quiet_runner()
    with pytest.raises(ToolMissing) as err:
        runner.run(Command(("docker", "ps")))
    assert str(err.value) == (
        f"{target} cannot be run (Permission denied): install docker (as root on Debian "
        "or Ubuntu: make engine) or "
        "set DOCKER to its path"
    )


# --- Ctrl-C ------------------------------------------------------------------------------------


@pytest.fixture
def cli_signal_handlers():
    """The handlers ``cli.main`` installs (``signals.install``): with Python's own SIGINT
    handler a Ctrl-C between a child's start and its listing raises at once, leaving that
    child unlisted and running, which ``signals.deferred`` exists to prevent."""
    from ragbuild.run import signals

    previous = signals.install()
    yield
    signals.restore(previous)


def sigint_when_started(pidfile, timeout=10.0, children=1):
    """From another thread: once ``children`` children have written their pids, deliver SIGINT
    to the main thread (where a blocking wait must be interrupted, as a real Ctrl-C would)."""
    main = threading.main_thread().ident

    def started() -> int:
        return len(pidfile.read_text().split()) if pidfile.exists() else 0

    def fire():
        deadline = time.monotonic() + timeout
        while started() < children and time.monotonic() < deadline:
            time.sleep(0.02)
        signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread


def gone(pid):
    try:
        os.kill(pid, 0)  # succeeds for a zombie, i.e. a child nobody reaped
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("mode", [Mode.CAPTURE, Mode.STREAM, Mode.TEE, Mode.WATCH, "watch-tty"])
@pytest.mark.usefixtures("cli_signal_handlers")
def test_ctrl_c_terminates_and_reaps_the_child(tmp_path, mode):
    pidfile = tmp_path / "pid"
    runner, _, _ = quiet_runner()
    if mode == "watch-tty":  # docker's stderr is a pty of ours
        runner, mode = Runner(out=io.StringIO(), log=Terminal()), Mode.WATCH
    thread = sigint_when_started(pidfile)
    started = time.monotonic()
    with pytest.raises(Interrupted) as err:
        runner.run(Command(("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"), mode=mode))
    thread.join()
    assert time.monotonic() - started < 10
    assert err.value.exit_code == EXIT_INTERRUPTED == 130
    assert str(err.value) == "interrupted; stopped sh -c"
    assert gone(int(pidfile.read_text()))


@pytest.mark.usefixtures("cli_signal_handlers")
def test_ctrl_c_on_a_command_without_arguments(tmp_path):
    pidfile = tmp_path / "pid"
    script = tmp_path / "long-task"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 30\n")
    script.chmod(0o755)
    runner, _, _ = quiet_runner()
    thread = sigint_when_started(pidfile)
    with pytest.raises(Interrupted) as err:
        runner.run(Command((str(script),)))
    thread.join()
    assert str(err.value) == f"interrupted; stopped {script}"
    assert gone(int(pidfile.read_text()))


@pytest.mark.usefixtures("cli_signal_handlers")
def test_a_child_ignoring_sigterm_is_killed(tmp_path, monkeypatch):
    from ragbuild.run import runner as runner_module

    real = runner_module._terminate
    monkeypatch.setattr(runner_module, "_terminate", lambda proc: real(proc, grace=0.3))
    pidfile = tmp_path / "pid"
    runner, _, _ = quiet_runner()
    thread = sigint_when_started(pidfile)
    with pytest.raises(Interrupted):
        runner.run(
            Command(("sh", "-c", f"trap '' TERM; echo $$ > {pidfile}; sleep 30 & wait; sleep 30"))
        )
    thread.join()
    assert gone(int(pidfile.read_text()))


# --- run_all: several read-backs at once -------------------------------------------------------


def test_run_all_runs_the_commands_at_once_and_returns_results_in_order(tmp_path):
    """Three 0.4 s commands take about 0.4 s, not 1.2 s; the + lines come first, in order."""
    runner, _, log = quiet_runner()
    cmds = [
        Command(("sh", "-c", f"sleep 0.4; echo {n}; echo e{n} >&2"), check=False) for n in range(3)
    ]
    started = time.monotonic()
    results = runner.run_all(cmds)
    elapsed = time.monotonic() - started
    assert [(r.returncode, r.stdout, r.stderr) for r in results] == [
        (0, f"{n}\n", f"e{n}\n") for n in range(3)
    ]
    assert elapsed < 1.0, elapsed
    assert log.getvalue().splitlines() == [f"+ {cmd.display()}" for cmd in cmds]


def test_run_all_checks_each_command_as_run_does(tmp_path):
    runner, _, _ = quiet_runner()
    ok = Command(("sh", "-c", "exit 0"))
    failing = Command(("sh", "-c", "echo nope >&2; exit 3"))
    unchecked = Command(failing.argv, check=False)
    assert runner.run_all([ok, unchecked])[1].returncode == 3
    with pytest.raises(CommandFailed) as err:
        runner.run_all([ok, failing])
    assert "failed (exit 3)" in str(err.value) and "nope" in str(err.value)


def test_run_all_refuses_streamed_commands_and_secrets():
    runner, _, _ = quiet_runner()
    with pytest.raises(ValueError):
        runner.run_all([Command(("true",), mode=Mode.TEE)])
    with pytest.raises(ValueError):
        runner.run_all([Command(("cat",), stdin="<password>")])


def test_a_dry_run_prints_run_all_in_order_and_starts_nothing(fp):
    fp.allow_unregistered(False)
    runner, out, _ = quiet_runner(dry_run=True)
    cmds = [
        Command(("docker", "manifest", "inspect", f"h/r:{n}"), kind=Kind.PROBE, assume=str(n))
        for n in range(3)
    ]
    assert [r.stdout for r in runner.run_all(cmds)] == ["0", "1", "2"]
    assert out.getvalue().splitlines() == [f"docker manifest inspect h/r:{n}" for n in range(3)]
    assert len(fp.calls) == 0


@pytest.mark.usefixtures("cli_signal_handlers")
def test_ctrl_c_during_run_all_stops_every_child(tmp_path):
    pidfile = tmp_path / "pid"
    runner, _, _ = quiet_runner()
    thread = sigint_when_started(pidfile, children=2)  # both started: a loaded machine is slow
    long = Command(("sh", "-c", f"echo $$ >> {pidfile}; exec sleep 30"))
    with pytest.raises(Interrupted) as err:
        runner.run_all([long, long])
    thread.join()
    assert "interrupted; stopped 2" in str(err.value)
    for pid in pidfile.read_text().split():
        assert gone(int(pid))


def test_a_commands_answer_file_is_its_stdout(tmp_path):
    answer = tmp_path / "answer.json"
    cmd = Command(
        ("sh", "-c", f"echo printed; echo written > {answer}"),
        answer_file=str(answer),
        assume="assumed",
    )
    assert Runner(log=io.StringIO()).run(cmd).stdout == "written\n"
    assert DryRunner(log=io.StringIO(), out=io.StringIO()).run(cmd).stdout == "assumed"


def test_an_answer_file_the_command_did_not_write_is_an_empty_answer(tmp_path):
    cmd = Command(("true",), answer_file=str(tmp_path / "never-written"))
    assert Runner(log=io.StringIO()).run(cmd).stdout == ""


@pytest.mark.parametrize("together", [False, True])
@pytest.mark.usefixtures("cli_signal_handlers")
def test_an_interrupted_docker_command_is_named_without_the_runs_docker_flags(
    tmp_path, monkeypatch, together
):
    """``docker --context NAME push`` (the run's flags, Runner.aimed_at) is still
    "docker push" in the message, not "docker --context"."""
    pidfile = tmp_path / "pid"
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\necho $$ >> {pidfile}\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("DOCKER", str(fake))
    runner, _, _ = quiet_runner()
    runner = runner.aimed_at(("--context", "remote"))
    thread = sigint_when_started(pidfile)
    cmd = Command(("docker", "push", "h/r:t"))
    with pytest.raises(Interrupted) as err:
        runner.run_all([cmd]) if together else runner.run(cmd)
    thread.join()
    assert str(err.value) == (
        "interrupted; stopped 1 `docker push` commands"
        if together
        else "interrupted; stopped docker push"
    )
    assert gone(int(pidfile.read_text().split()[0]))


def test_an_answer_file_that_cannot_be_removed_is_no_traceback(fp, tmp_path):
    """A directory (or another user's file) where the answer file goes: the command still runs
    and its own result decides."""
    from ragbuild.run.command import Command

    where = tmp_path / "answer.json"
    where.mkdir()
    fp.register([fp.program("docker"), "build", "."], returncode=0)
    result = Runner().run(Command(("docker", "build", "."), answer_file=str(where)))
    assert result.ok and result.stdout == ""


# --- plumbum's import: what it declares lazy is imported only when used --------------------------


def test_running_a_command_does_not_import_what_plumbum_declares_lazy():
    """urllib.request (and http.client, email and ssl behind it, ~30 ms of every start), and the
    other modules of PLUMBUM_LAZY, stay unimported through plumbum's import and a command's
    run; plumbum still has them when they are used (``LocalPath.as_uri``, ``glob``), and a later
    ``import urllib.request`` is the ordinary module. What the interpreter had imported before
    (Python 3.12's pathlib imports urllib.parse, 3.13's glob, and ragbuild imports pathlib
    there) is no import of plumbum's."""
    in_a_new_python(
        "import sys\n"
        "from ragbuild.run.command import Command, Kind\n"
        "from ragbuild.run.runner import Runner, PLUMBUM_LAZY\n"
        "assert {'urllib.request', 'socket', 'pickle'} <= set(PLUMBUM_LAZY)\n"
        "before = set(sys.modules)\n"
        "assert 'plumbum' not in before\n"
        "assert Runner().run(Command(('git', '--version'), kind=Kind.QUERY)).ok\n"
        "assert 'plumbum' in sys.modules\n"
        "late = [m for m in (*PLUMBUM_LAZY, 'http.client', 'email.parser', 'ssl')\n"
        "        if m in sys.modules and m not in before]\n"
        "assert not late, late\n"
        "from plumbum import local\n"
        "assert local.path('/tmp').as_uri() == 'file:///tmp'\n"
        "assert local.path('/').glob('tm[p]') == [local.path('/tmp')]\n"
        "import urllib.request\n"
        "assert type(urllib.request).__name__ == 'module', type(urllib.request)\n"
        "assert sys.modules['urllib.request'] is urllib.request\n"
        "assert urllib.request.Request('http://h/').host == 'h'\n"
    )


def test_a_module_imported_before_plumbum_is_left_as_it_is():
    """No stand-in for a module that is already imported: plumbum gets the real one."""
    in_a_new_python(
        "import sys, urllib.request\n"
        "real = sys.modules['urllib.request']\n"
        "from ragbuild.run.runner import _plumbum\n"
        "_plumbum()\n"
        "import plumbum.path.local as local_path\n"
        "assert local_path.urllib is real and sys.modules['urllib.request'] is real\n"
    )


def test_a_stand_in_used_while_it_is_in_sys_modules_becomes_the_real_module():
    """A ``from m import name`` while the stand-in is still in sys.modules (plumbum using a
    module at its own import) imports the real module once, and it stays."""
    in_a_new_python(
        "import sys\n"
        "from ragbuild.run.runner import _OnFirstUse\n"
        "stand_in = sys.modules['colorsys'] = _OnFirstUse('colorsys')\n"
        "from colorsys import rgb_to_hsv\n"
        "assert rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)\n"
        "assert sys.modules['colorsys'] is not stand_in\n"
        "assert type(sys.modules['colorsys']).__name__ == 'module'\n"
        "assert stand_in.hls_to_rgb is sys.modules['colorsys'].hls_to_rgb\n"
    )


# --- the answer file's directory: the user's own, closed to others ------------------------------


def _answer_build(fp, digest="sha256:" + "12" * 32):
    def build(process):
        argv = list(process.args)
        with open(argv[argv.index("--metadata-file") + 1], "w") as f:
            f.write(digest)

    fp.register([fp.program("docker"), "buildx", "build", fp.any()], callback=build)


def test_the_answer_directory_is_made_for_the_user_alone(fp, tmp_path):
    where = tmp_path / "ragbuild-0" / "a.json"
    _answer_build(fp)
    cmd = Command(
        ("docker", "buildx", "build", "--metadata-file", str(where), "."), answer_file=str(where)
    )
    assert Runner().run(cmd).stdout == "sha256:" + "12" * 32
    made = os.lstat(where.parent)
    assert made.st_uid == os.getuid() and made.st_mode & 0o777 == 0o700
    assert not where.exists()  # removed once read


@pytest.mark.parametrize("kind", ["open to others", "a symlink", "a file"])
def test_an_answer_directory_others_could_write_in_stops_before_the_command(fp, tmp_path, kind):
    """Someone else's file there could be taken for the answer, or replace it: one line, no
    command started."""
    from ragbuild.errors import RagbuildError

    directory = tmp_path / "ragbuild-0"
    if kind == "open to others":
        directory.mkdir()
        directory.chmod(0o777)
    elif kind == "a symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        directory.symlink_to(tmp_path / "elsewhere")
    else:
        directory.write_text("")
    where = directory / "a.json"
    cmd = Command(
        ("docker", "buildx", "build", "--metadata-file", str(where), "."), answer_file=str(where)
    )
    with pytest.raises(RagbuildError) as err:
        Runner().run(cmd)
    assert str(err.value).startswith(
        f"{directory}, where docker writes what it pushed, is not a "
        "directory of yours that only you can use (mode 0700)"
    )
    assert "\n" not in str(err.value)
    assert not list(fp.calls)


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory to another user needs root")
def test_an_answer_directory_of_another_user_stops_before_the_command(fp, tmp_path):
    from ragbuild.errors import RagbuildError

    directory = tmp_path / "ragbuild-0"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, -1)
    where = directory / "a.json"
    with pytest.raises(RagbuildError, match="is not a directory of yours"):
        Runner().run(Command(("docker", "buildx", "build", "."), answer_file=str(where)))
    assert not list(fp.calls)


# --- the answer directory in a dry run: said, not made ------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "open to others", "the user's own"])
def test_a_dry_run_says_what_a_real_run_does_with_the_answer_directory(
    fp, stub_bin, tmp_path, kind
):
    """Where a real run stops (someone else could write there) a dry run warns; where it makes
    the directory, the dry run says so, since the printed build line, pasted, needs it (buildx
    writes its --metadata-file only in a directory that is there, after it pushed). It makes
    nothing and starts nothing."""
    fp.allow_unregistered(False)
    directory = tmp_path / "ragbuild-0"
    if kind != "missing":
        directory.mkdir(mode=0o700)
        directory.chmod(0o777 if kind == "open to others" else 0o700)
    where = directory / "a.json"
    cmd = Command(
        ("docker", "buildx", "build", "--metadata-file", str(where), "."), answer_file=str(where)
    )
    runner, out, log = quiet_runner(dry_run=True)
    runner.run(cmd)
    runner.run(cmd)  # said once
    assert out.getvalue() == f"docker buildx build --metadata-file {where} .\n" * 2
    said = {
        "missing": f"dry run: a real run first makes {directory} (mode 0700), where docker "
        "writes what it pushed; make it before running the build line yourself\n",
        "open to others": f"warning: {directory}, where docker writes what it pushed, is not a "
        "directory of yours that only you can use (mode 0700): remove it, or "
        "set TMPDIR to a directory of yours (a real run stops here)\n",
        "the user's own": "",
    }[kind]
    assert log.getvalue() == said
    assert directory.exists() is (kind != "missing")
    assert not list(fp.calls)


def test_a_runner_aimed_at_a_docker_target_is_a_new_runner_and_the_first_is_unchanged():
    out = io.StringIO()
    first = DryRunner(log=io.StringIO(), out=out)
    aimed = first.aimed_at(("--context", "remote"))
    cmd = Command(("docker", "push", "h/r:t"))
    aimed.run(cmd)
    first.run(cmd)
    aimed.run(Command(("git", "push")))
    assert out.getvalue().splitlines() == [
        "docker --context remote push h/r:t",
        "docker push h/r:t",
        "git push",
    ]


# --- the runner reads the ID file --------------------------------------------------------------


def test_the_runner_reads_the_id_file_and_removes_it(tmp_path):
    path = tmp_path / "answers" / "x.iid"
    os.mkdir(path.parent, 0o700)
    path.write_text("stale from an earlier run")  # no answer of this one
    script = f"import sys; open({str(path)!r}, 'w').write('sha256:' + 'ab' * 32 + '\\n')"
    result = Runner(log=io.StringIO()).run(Command(("python3", "-c", script), iid_file=str(path)))
    assert result.image_id == "sha256:" + "ab" * 32
    assert not path.exists()
    silent = Runner(log=io.StringIO()).run(Command(("true",), iid_file=str(path)))
    assert silent.image_id == ""  # wrote none: the stale one was removed before
