"""The runner: the only module that starts processes, and the only one that imports plumbum.

Every docker, git and aws call goes through ``Runner.run``, which logs the command shell-quoted
(``+ cmd``, with bare program names and secret values as ``***``, exactly as ``--dry-run`` prints
it) and turns failures into the package's errors. ``--dry-run`` is the same plan given to
``DryRunner`` (run/dry.py), and it alone decides what a dry run does with a command, from its ``Kind``: a
``QUERY`` (a read-only git query) runs as in a real run; a ``PROBE`` and an ``ACTION`` are printed
and taken to have exited 0 with their ``assume`` as output, so the steps go through the same
code either way and never ask which runner they have. What a real run would decide from a
probe's answer is said once, as ``dry run: <Command.dry_note>``; ``report`` lines (what a real
run found: "built ...", "pushed ...") and ``emit`` (the pinned line) are a real run's only. So a
real run's ``+`` lines are the dry run's output, plus what only a real run can decide to run
(retries, polls, diagnostics after a failure).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import copy
import importlib
import os
import signal
import subprocess
import sys
import time
import types
from dataclasses import replace
from typing import IO, Any, Callable, Optional, TypeVar, cast
from collections.abc import Sequence

from ragbuild.run import signals
from ragbuild.run.terminal import close, follow_window, is_terminal, open_pty
from ragbuild.errors import (
    CommandFailed,
    Interrupted,
    RagbuildError,
    ToolMissing,
    interrupted_text,
    signal_of,
)
from ragbuild.run.console import paint
from ragbuild.run.answer import make_way, read_answer
from ragbuild.run.command import Command, Kind, Mode, Result, Secret

T = TypeVar("T")

#: Programs whose binary can be replaced through an environment variable (``DOCKER=/usr/bin/docker``).
PROGRAM_ENV = {"docker": "DOCKER", "aws": "AWS_CLI"}

#: How many lines of a failed command's output an error message keeps.
TAIL_LINES = 15
#: How much of a ``Mode.WATCH`` command's stderr is kept (characters): the end of a build's
#: output, where BuildKit prints the failed step's log and the error, never the whole log
#: of a long build. 64 Ki holds the last ~400 lines of pip's or plain progress.
WATCH_KEEP = 64 * 1024
#: How many bytes one read of a child's stream asks for.
READ_SIZE = 65536
#: How many checks ``Runner.check_all`` runs at once.
CHECK_THREADS = 8
#: Modules plumbum imports at its own import but uses only in calls a run never makes, loaded on
#: first use instead (``_plumbum``). plumbum declares them lazy itself (``__lazy_modules__`` in
#: ``plumbum/path/local.py`` and ``remote.py``, for PEP 810's lazy imports), which Pythons before
#: 3.15 ignore: ``urllib.request``, for ``LocalPath.as_uri`` and ``RemotePath``'s URLs, pulls in
#: ``http.client``, ``email`` and ``ssl``, about 30 ms of every run's start on the benchmark machine
#: (benchmarks/README.md, "Current figures": 157 ms, 130 ms with ``urllib.request`` lazy).
PLUMBUM_LAZY = ("urllib.request", "urllib.parse", "socket", "pickle", "glob")


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def resolve(program: str) -> str:
    """The binary to start for a bare program name (``DOCKER`` may name another docker)."""
    variable = PROGRAM_ENV.get(program)
    return (os.environ.get(variable) if variable else None) or program


class Runner:
    """Runs commands for real. ``out``: where results and a dry run's commands go (stdout);
    ``log``: where the ``+ command`` lines and messages go (stderr)."""

    def __init__(
        self, *, out: Optional[IO[str]] = None, log: Optional[IO[str]] = None, quiet: bool = False
    ):
        self._out = out or sys.stdout
        self._log = log or sys.stderr
        #: ``-q/--quiet``: the log keeps only errors; results (``emit``, stdout) stay, and the
        #: output of docker's builds and pushes is kept for the error messages, not shown
        self.quiet = quiet
        #: global flags for every docker command (``aimed_at``)
        self._docker_flags: tuple[str, ...] = ()

    def aimed_at(self, docker_flags: Sequence[str]) -> Runner:
        """A new runner like this one (its streams; a dry run's said-once warnings shared) that
        puts ``docker_flags`` before every docker command's subcommand: the target the plan
        chose (``DockerTarget.docker_flags``: ``--context NAME`` for a context's
        builder). This runner is left as it was."""
        aimed = copy.copy(self)
        aimed._docker_flags = tuple(docker_flags)
        return aimed

    def _targeted(self, cmd: Command) -> Command:
        """``cmd`` with the run's docker flags when it is a docker command."""
        if self._docker_flags and cmd.argv[0] == "docker":
            return replace(cmd, argv=(cmd.argv[0], *self._docker_flags, *cmd.argv[1:]))
        return cmd

    def log(self, message: str, level: Optional[str] = None) -> None:
        """One line (or more) on stderr; ``level`` (``output.SUCCESS``...) colours it on a
        terminal, else the message's first word does (``warning:``, ``error:``, ``+``).
        ``--quiet`` keeps only ``error:`` lines."""
        if self.quiet and not message.startswith("error:"):
            return
        _write(self._log, f"{paint(message, self._log, level)}\n")

    def waiting(self, what: str, limit: Optional[float] = None) -> AbstractContextManager[object]:
        """While a step waits (``with runner.waiting("GET /ping to answer 200", 60): ...``):
        one line on the log says what for and for how long (waiting.py); nothing with
        ``--quiet``."""
        from ragbuild.run import waiting

        if self.quiet:
            return waiting.NoLine()
        return waiting.WaitLine(self._log, what, limit)

    def report(self, message: str, level: Optional[str] = None) -> None:
        """A line about what a real run found or did ("built ...", "pushed ..."); a dry run,
        which found and did nothing, leaves it out."""
        self.log(message, level)

    def emit(self, line: str, level: Optional[str] = None) -> None:
        """A result line on stdout (the pinned ``<repository>@sha256:...``, a doctor finding),
        where a dry run prints its commands; ``level`` colours it on a terminal, as in ``log``."""
        _write(self._out, f"{paint(line, self._out, level)}\n")

    def verdict(self, summary: str, status: int, *, asked: str) -> int:
        """The end of a run that only checks (doctor): ``summary`` on stdout, and ``status``. A
        dry run, which printed what it would ask (``asked``: who asks it) and asked nothing,
        says so instead and returns 0: it found nothing."""
        self.emit(summary)
        return status

    def stop_or_warn(self, error: RagbuildError, *, key: Optional[str] = None) -> None:
        """A check a real run stops at: raise ``error``. A dry run, which shows the whole plan,
        logs it once (per ``key``, default the message) as a warning and goes on."""
        raise error

    def apply(self, what: str, action: Callable[[], None]) -> None:
        """A change that is no command (writing a file): ``action()``; a dry run says ``what``
        it would do instead."""
        action()

    def check(self, what: str, probe: Callable[[], T], assume: T) -> T:
        """A check that is no command (an HTTP poll): ``probe()``; a dry run says ``what`` it
        would do and takes ``assume`` as the answer."""
        return probe()

    def check_all(self, checks: Sequence[tuple[str, Callable[[], T], T]]) -> list[T]:
        """Several checks that are no command (``(what, probe, assume)``, as ``check`` takes
        them) at once, in up to ``CHECK_THREADS`` threads (HTTP requests to a far registry);
        their answers in order, or the first one's exception that raised, in order. Ctrl-C
        (SIGTERM, SIGHUP) stops waiting for them (``Interrupted``): no check that has not
        started yet starts, and the threads are daemon threads, so the process exits without
        waiting for a request in flight to run out its timeout and retries (a
        ``ThreadPoolExecutor``'s workers are joined at interpreter exit)."""
        if len(checks) < 2:
            return [self.check(*one) for one in checks]
        import queue
        import threading

        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(checks)):
            todo.put(index)
        answers: dict[int, T] = {}  # index -> answer; every index has one or an error
        raised: list[Optional[BaseException]] = [None] * len(checks)

        def work() -> None:
            while True:
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    answers[index] = checks[index][1]()
                except BaseException as error:  # handed to the caller, in order
                    raised[index] = error

        threads = [
            threading.Thread(target=work, name=f"ragbuild-check-{n}", daemon=True)
            for n in range(min(CHECK_THREADS, len(checks)))
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()  # interruptible: the signal handlers run in this thread
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP (errors.Stopped)
            while True:  # what has not started never will
                try:
                    todo.get_nowait()
                except queue.Empty:
                    break
            signum = signal_of(stop)
            raise Interrupted(
                f"{interrupted_text(signum)}; stopped {len(checks)} registry requests",
                signum=signum,
            ) from None
        for error in raised:
            if error is not None:
                raise error
        return [answers[index] for index in range(len(checks))]

    def run(self, cmd: Command, *, stdin: Optional[Secret] = None) -> Result:
        """Run one command and return what it produced.

        ``cmd.mode``: ``CAPTURE`` keeps stdout and stderr; ``STREAM`` lets the child write to our
        terminal (docker's live progress); ``TEE`` shows stdout+stderr live and keeps them;
        ``WATCH`` is ``STREAM`` with the child's stderr passed on by us (``_watch``) and its last
        ``WATCH_KEEP`` characters kept as the result's stderr.
        ``cmd.answer_file``: the result's stdout is that file's text, once the command ended.
        A non-zero exit raises ``CommandFailed`` (its ``output``: what the command said, kept)
        unless ``cmd.check`` is false.
        """
        if stdin is not None and cmd.stdin is None:
            raise ValueError("secret given to a command that does not read stdin")
        name = cmd.name  # before the run's docker flags go in
        cmd = self._targeted(cmd)
        for path in (cmd.answer_file, cmd.iid_file):  # an earlier run's answer is none of ours
            if path is not None:
                make_way(path)
        if cmd.kind is not Kind.QUERY and not cmd.poll:
            self.log(f"+ {cmd.display()}")
        proc: Optional[subprocess.Popen[bytes]] = None
        pty_ends: list[int] = []  # WATCH on a terminal: the pty's (ours, the child's)
        try:  # one try from the start: a signal right after popen still stops the child
            with signals.deferred():  # a signal now is raised once proc is assigned
                if cmd.mode is Mode.WATCH and is_terminal(self._log) and not self.quiet:
                    pty_ends += open_pty(self._log)
                proc = self._start(cmd, stdin, stderr=pty_ends[1] if pty_ends else None)
            if pty_ends:  # the child has its end: once it (and its children) exit, ours reads EIO
                close(pty_ends.pop())
            if cmd.mode is Mode.WATCH:
                stdout, stderr = self._watch(proc, pty_ends[0] if pty_ends else None, stdin)
            else:
                stdout, stderr = self._wait(proc, cmd.mode, stdin)
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP (errors.Stopped)
            if proc is not None:
                _terminate(proc)
            signum = signal_of(stop)
            raise Interrupted(
                f"{interrupted_text(signum)}; stopped {name}", signum=signum
            ) from None
        finally:
            for end in pty_ends:
                close(end)
        if cmd.answer_file is not None:  # the answer is in a file it wrote (none: "")
            stdout = read_answer(cmd.answer_file)
        image_id = read_answer(cmd.iid_file).strip() if cmd.iid_file is not None else ""
        return self._result(cmd, proc, stdout, stderr, image_id)

    def run_all(self, cmds: Sequence[Command], *, show_output: bool = False) -> list[Result]:
        """Run several commands at once (``CAPTURE``, no stdin) and return their results in
        order; each is checked as ``run`` checks it. The ``+`` lines are logged first, in order;
        then every process starts, then each is waited for. ``show_output``: each one's stdout
        and stderr are written out when it is done, in order (as ``TEE`` would, all at once).
        Ctrl-C stops them all."""
        if any(cmd.mode is not Mode.CAPTURE or cmd.stdin for cmd in cmds):
            raise ValueError("run_all runs CAPTURE commands without stdin only")
        name = cmds[0].name if cmds else ""  # before the run's docker flags go in
        cmds = [self._targeted(cmd) for cmd in cmds]
        for cmd in cmds:
            if cmd.kind is not Kind.QUERY:
                self.log(f"+ {cmd.display()}")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for cmd in cmds:
                with signals.deferred():  # a signal now is raised once the child is listed
                    procs.append(self._start(cmd, None))
            outputs = [self._wait(proc, cmd.mode, None) for cmd, proc in zip(cmds, procs)]
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP (errors.Stopped)
            for proc in procs:
                _terminate(proc)
            signum = signal_of(stop)
            raise Interrupted(
                f"{interrupted_text(signum)}; stopped {len(procs)} `{name}` commands", signum=signum
            ) from None
        except BaseException:
            for proc in procs:
                _terminate(proc)
            raise
        if show_output and not self.quiet:
            for out, err in outputs:
                _write(self._out, out + err)
        return [
            self._result(cmd, proc, out, err) for cmd, proc, (out, err) in zip(cmds, procs, outputs)
        ]

    def _start(
        self, cmd: Command, stdin: Optional[Secret], *, stderr: Optional[int] = None
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd``; ``stderr``: for ``WATCH``, the file descriptor its stderr goes to (the
        pty's child end; none: a pipe)."""
        program = resolve(cmd.argv[0])
        local, CommandNotFound = _plumbum()
        try:
            machine_cmd = local[program][list(cmd.argv[1:])]
        except CommandNotFound:
            raise ToolMissing(missing_message(cmd.argv[0], program)) from None
        env = {**os.environ, **dict(cmd.env)}
        pipe = subprocess.PIPE
        streams = {
            Mode.CAPTURE: (pipe, pipe),
            Mode.STREAM: (None, None),
            Mode.TEE: (pipe, subprocess.STDOUT),
            Mode.INTERACTIVE: (None, None),  # and our stdin: a shell in a container
            Mode.WATCH: (None, pipe if stderr is None else stderr),
        }[cmd.mode]
        own_stdin = None if cmd.mode is Mode.INTERACTIVE else subprocess.DEVNULL
        try:
            proc = cast(
                subprocess.Popen[bytes],
                machine_cmd.popen(
                    stdin=pipe if stdin is not None else own_stdin,
                    stdout=streams[0],
                    stderr=streams[1],
                    env=env,
                ),
            )
        except FileNotFoundError:
            raise ToolMissing(missing_message(cmd.argv[0], program)) from None
        except OSError as err:  # DOCKER names a directory or a file without the execute bit
            raise ToolMissing(
                f"{program} cannot be run ({err.strerror}): "
                f"{missing_message(cmd.argv[0], program).split(': ', 1)[1]}"
            ) from None
        return proc

    @staticmethod
    def _result(
        cmd: Command, proc: subprocess.Popen[bytes], stdout: str, stderr: str, image_id: str = ""
    ) -> Result:
        result = Result(
            proc.returncode if proc.returncode is not None else -1, stdout, stderr, image_id
        )
        if cmd.check and not result.ok:
            raise CommandFailed(
                failure_message(cmd, result),
                returncode=result.returncode,
                output=result.stdout + result.stderr,
            )
        return result

    def _watch(
        self, proc: subprocess.Popen[bytes], terminal: Optional[int], stdin: Optional[Secret] = None
    ) -> tuple[str, str]:
        """Pass the child's stderr on to our log as it comes, and keep its last ``WATCH_KEEP``
        characters: ``("", kept)``. ``terminal``: our end of the pty the child's stderr is
        (``terminal.open_pty``), whose window follows ours (SIGWINCH) while the child runs; none: the
        child's stderr is a pipe.

        Why a pty: docker (``docker build`` with BuildKit, and buildx) draws its live progress
        only when its stderr is a terminal, and prints plain progress to a pipe
        (``--progress=auto``: https://docs.docker.com/reference/cli/docker/buildx/build/#progress);
        so the user sees what they saw when docker wrote to the terminal itself, and on a
        failure both print the failed step's log at the end, which is what is kept. The kept
        text is as docker wrote it (a pty's: escape sequences and ``\r\n``)."""
        import codecs

        if stdin is not None:  # fed whole, then closed, before its output is read (as TEE)
            assert proc.stdin is not None
            proc.stdin.write(stdin.reveal().encode())
            proc.stdin.close()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        kept = ""
        restore = follow_window(self._log, terminal) if terminal is not None else None
        try:
            while True:
                if terminal is not None:
                    try:
                        chunk = os.read(terminal, READ_SIZE)
                    except OSError:  # EIO: every holder of the child's end closed it
                        chunk = b""
                else:
                    assert proc.stderr is not None
                    chunk = proc.stderr.read1(READ_SIZE)  # type: ignore[attr-defined]
                text = decoder.decode(chunk, final=not chunk)
                if text:
                    if not self.quiet:
                        _write(self._log, text)
                    kept = (kept + text)[-WATCH_KEEP:]
                if not chunk:
                    break
            proc.wait()
        finally:
            if restore is not None:
                restore()
        return "", kept

    def _wait(
        self, proc: subprocess.Popen[bytes], mode: Mode, stdin: Optional[Secret]
    ) -> tuple[str, str]:
        if mode is Mode.TEE:
            if stdin is not None:
                assert proc.stdin is not None
                proc.stdin.write(stdin.reveal().encode())
                proc.stdin.close()
            kept = []
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                kept.append(line)
                if not self.quiet:
                    _write(self._out, line)
            proc.wait()
            return "".join(kept), ""
        data = stdin.reveal().encode() if stdin is not None else None
        out, err = proc.communicate(data)
        return _decode(out), _decode(err)


class _OnFirstUse(types.ModuleType):
    """Stands in ``sys.modules`` for a module while plumbum imports it (``_plumbum``): the first
    attribute asked of it imports the real module (``sys.modules`` holds no stand-in by then)
    and answers from it. Its own ``__spec__`` is None, so an ``import`` statement that finds it
    in ``sys.modules`` takes it as it is; the standard library's ``importlib.util.LazyLoader``
    does not do here, as Python 3.11's import reads the module's ``__spec__``, which loads it."""

    def __getattr__(self, attr: str) -> object:
        if sys.modules.get(self.__name__) is self:  # asked while plumbum imports: from now on
            del sys.modules[self.__name__]  # the real module, which import_module puts there
        return getattr(importlib.import_module(self.__name__), attr)


def _plumbum() -> tuple[Any, type[Exception]]:
    """``(plumbum.local, plumbum.commands.processes.CommandNotFound)``, importing plumbum on the
    first command (a run that starts none, ``--help``, never pays for it) with each module of
    ``PLUMBUM_LAZY`` an ``_OnFirstUse`` stand-in, imported only if plumbum uses it.

    Only plumbum's own references are stand-ins: they are out of ``sys.modules`` again once
    plumbum is imported, so a later ``import urllib.request`` (ragbuild's registry access) is
    an ordinary import."""
    if "plumbum" not in sys.modules:
        stand_ins = {name: _OnFirstUse(name) for name in PLUMBUM_LAZY if name not in sys.modules}
        sys.modules.update(stand_ins)
        try:
            import plumbum  # noqa: F401
        finally:
            for name, module in stand_ins.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
    from plumbum import local
    from plumbum.commands.processes import CommandNotFound

    return local, CommandNotFound


def _decode(data: Optional[bytes]) -> str:
    return data.decode(errors="replace") if data else ""


def _write(stream: IO[str], text: str) -> None:
    """Write and flush; what the stream's encoding cannot hold (docker's progress bars on an
    ASCII terminal) becomes ``?`` instead of an error."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, errors="replace").decode(encoding))
    stream.flush()


def ended(returncode: Optional[int]) -> str:
    """How a command ended, for messages: ``failed (exit 3)``, or ``was killed by signal 9
    (SIGKILL)`` (subprocess reports a signal as a negative return code)."""
    if returncode is not None and returncode < 0:
        try:
            name = f" ({signal.Signals(-returncode).name})"
        except ValueError:
            name = ""
        return f"was killed by signal {-returncode}{name}"
    return f"failed (exit {returncode})"


def failure_message(cmd: Command, result: Result) -> str:
    """One line naming the command and how it ended, then the tail of what it said."""
    head = f"`{cmd.display()}` {ended(result.returncode)}"
    said = tail(result.stdout + result.stderr)
    if cmd.mode in (Mode.STREAM, Mode.WATCH):
        return f"{head}; its output is above"
    return f"{head}:\n{said}" if said else head


#: How to get a missing program, where the project has a way: ``make engine`` runs the harness's
#: own engine steps (tests/e2e/harness.sh engine).
INSTALL_HINT = {"docker": " (as root on Debian or Ubuntu: make engine)"}


def missing_message(name: str, program: str) -> str:
    variable = PROGRAM_ENV.get(name)
    hint = f" or set {variable} to its path" if variable else ""
    return f"{program} not found: install {name}{INSTALL_HINT.get(name, '')}{hint}"


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a child on Ctrl-C, SIGTERM or SIGHUP and reap it, so nothing is left behind:
    SIGTERM, up to ``grace`` seconds to exit, then SIGKILL; at once when a further signal
    came meanwhile (``signals.hurried``)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline and not signals.hurried():
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()
