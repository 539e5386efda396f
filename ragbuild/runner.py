"""The runner: the only module that starts processes, and the only one that imports plumbum.

Every docker, git and aws call goes through ``Runner.run``, which logs the command shell-quoted
(``+ cmd``, with bare program names and secret values as ``***``, exactly as ``--dry-run`` prints
it) and turns failures into the package's errors. ``--dry-run`` is the same runner with
``dry_run=True``: it prints each command instead of running it. Only read-only git queries
(``Command.read_only``) still run, unlogged, in both modes; a dry run starts no docker or aws.
So a real run's ``+`` lines are the dry run's output, plus what only a real run can decide to
run (retries, polls, diagnostics after a failure).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

from ragbuild.errors import CommandFailed, Interrupted, RagbuildError, ToolMissing
from ragbuild.output import paint
from ragbuild.plan import Command

#: Programs whose binary can be replaced through an environment variable (``DOCKER=/usr/bin/docker``).
PROGRAM_ENV = {"docker": "DOCKER", "aws": "AWS_CLI"}

#: How many lines of a failed command's output an error message keeps.
TAIL_LINES = 15


class Secret:
    """A value that must never be printed: repr, str and format all hide it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""
    dry: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def resolve(program: str) -> str:
    """The binary to start for a bare program name (``DOCKER`` may name another docker)."""
    variable = PROGRAM_ENV.get(program)
    return (os.environ.get(variable) if variable else None) or program


class Runner:
    def __init__(self, *, dry_run: bool = False, out=None, log=None):
        self.dry_run = dry_run
        self._out = out or sys.stdout
        self._log = log or sys.stderr
        self._warned = set()  # a dry run's warnings, each given once

    def log(self, message: str, level: str | None = None) -> None:
        """One line (or more) on stderr; ``level`` (``output.SUCCESS``...) colours it on a
        terminal, else the message's first word does (``warning:``, ``error:``, ``+``)."""
        _write(self._log, f"{paint(message, self._log, level)}\n")

    def emit(self, line: str) -> None:
        """A result line on stdout (the pinned ``<repository>@sha256:...``), where a dry run
        prints its commands."""
        _write(self._out, f"{line}\n")

    def stop_or_warn(self, error: RagbuildError, *, key: str | None = None) -> None:
        """A check a real run stops at: raise ``error``. A dry run, which shows the whole plan,
        logs it once as a warning and goes on."""
        if not self.dry_run:
            raise error
        key = key or str(error)
        if key not in self._warned:
            self._warned.add(key)
            self.log(f"warning: {error} (a real run stops here)")

    def run(self, cmd: Command, *, stdin: Secret | None = None) -> Result:
        """Run one command (or print it, in a dry run) and return what it produced.

        ``cmd.mode``: ``capture`` keeps stdout and stderr; ``stream`` lets the child write to
        our terminal (docker's live progress); ``tee`` shows stdout+stderr live and keeps them.
        A non-zero exit raises ``CommandFailed`` unless ``cmd.check`` is false.
        """
        if stdin is not None and cmd.stdin is None:
            raise ValueError("secret given to a command that does not read stdin")
        program = resolve(cmd.argv[0])
        if self.dry_run and not cmd.read_only:
            if not shutil.which(program):
                self.stop_or_warn(ToolMissing(_missing_message(cmd.argv[0], program)), key=program)
            if cmd.hides_secrets and "***" not in self._warned:
                self._warned.add("***")
                self.log("dry run: secret values (secret-looking build args, URL credentials) "
                         "are shown as ***; the real command gets them")
            _write(self._out, f"{cmd.display()}\n")
            return Result(0, dry=True)
        if not cmd.read_only:
            self.log(f"+ {cmd.display()}")
        from plumbum import local
        from plumbum.commands.processes import CommandNotFound

        try:
            machine_cmd = local[program][list(cmd.argv[1:])]
        except CommandNotFound:
            raise ToolMissing(_missing_message(cmd.argv[0], program)) from None
        env = {**os.environ, **dict(cmd.env)}
        pipe = subprocess.PIPE
        streams = {
            "capture": (pipe, pipe),
            "stream": (None, None),
            "tee": (pipe, subprocess.STDOUT),
            "interactive": (None, None),  # and our stdin: a shell in a container
        }[cmd.mode]
        own_stdin = None if cmd.mode == "interactive" else subprocess.DEVNULL
        try:
            proc = machine_cmd.popen(
                stdin=pipe if stdin is not None else own_stdin,
                stdout=streams[0],
                stderr=streams[1],
                env=env,
            )
        except FileNotFoundError:
            raise ToolMissing(_missing_message(cmd.argv[0], program)) from None
        except OSError as err:  # DOCKER names a directory or a file without the execute bit
            raise ToolMissing(f"{program} cannot be run ({err.strerror}): "
                              f"{_missing_message(cmd.argv[0], program).split(': ', 1)[1]}") from None
        try:
            stdout, stderr = self._wait(proc, cmd.mode, stdin)
        except KeyboardInterrupt:
            _terminate(proc)
            raise Interrupted(f"interrupted; stopped {' '.join(cmd.argv[:2])}") from None
        result = Result(proc.returncode, stdout, stderr)
        if cmd.check and not result.ok:
            raise CommandFailed(failure_message(cmd, result), returncode=result.returncode)
        return result

    def _wait(self, proc, mode: str, stdin: Secret | None) -> tuple[str, str]:
        if mode == "tee":
            if stdin is not None:
                proc.stdin.write(stdin.reveal().encode())
                proc.stdin.close()
            kept = []
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                kept.append(line)
                _write(self._out, line)
            proc.wait()
            return "".join(kept), ""
        data = stdin.reveal().encode() if stdin is not None else None
        out, err = proc.communicate(data)
        decode = lambda b: b.decode(errors="replace") if b else ""  # noqa: E731
        return decode(out), decode(err)


def _write(stream, text: str) -> None:
    """Write and flush; what the stream's encoding cannot hold (docker's progress bars on an
    ASCII terminal) becomes ``?`` instead of an error."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, errors="replace").decode(encoding))
    stream.flush()


def ended(returncode: int) -> str:
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
    if cmd.mode == "stream":
        return f"{head}; its output is above"
    return f"{head}:\n{said}" if said else head


#: How to get a missing program, where the project has a way: ``make engine`` runs the harness's
#: own engine steps (tests/e2e/harness.sh engine).
INSTALL_HINT = {"docker": " (as root on Debian or Ubuntu: make engine)"}


def _missing_message(name: str, program: str) -> str:
    variable = PROGRAM_ENV.get(name)
    hint = f" or set {variable} to its path" if variable else ""
    return f"{program} not found: install {name}{INSTALL_HINT.get(name, '')}{hint}"


def _terminate(proc, grace: float = 10.0) -> None:
    """Stop a child on Ctrl-C and reap it, so nothing is left behind."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
