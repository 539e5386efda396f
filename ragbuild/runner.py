"""The runner: the only module that starts processes, and the only one that imports plumbum.

Every docker, git and aws call goes through ``Runner.run``, which logs the command shell-quoted
(with bare program names, exactly as ``--dry-run`` prints it) and turns failures into the
package's errors. ``--dry-run`` is the same runner with ``dry_run=True``: it prints each command
instead of running it, except read-only queries (``Command.read_only``), which it still runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from ragbuild.errors import CommandFailed, Interrupted, ToolMissing
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

    def log(self, message: str) -> None:
        print(message, file=self._log, flush=True)

    def run(self, cmd: Command, *, stdin: Secret | None = None) -> Result:
        """Run one command (or print it, in a dry run) and return what it produced.

        ``cmd.mode``: ``capture`` keeps stdout and stderr; ``stream`` lets the child write to
        our terminal (docker's live progress); ``tee`` shows stdout+stderr live and keeps them.
        A non-zero exit raises ``CommandFailed`` unless ``cmd.check`` is false.
        """
        if stdin is not None and cmd.stdin is None:
            raise ValueError("secret given to a command that does not read stdin")
        if self.dry_run and not cmd.read_only:
            print(cmd.display(), file=self._out, flush=True)
            return Result(0, dry=True)
        if not cmd.quiet:
            self.log(f"+ {cmd.display()}")
        program = resolve(cmd.argv[0])
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
        }[cmd.mode]
        try:
            proc = machine_cmd.popen(
                stdin=pipe if stdin is not None else subprocess.DEVNULL,
                stdout=streams[0],
                stderr=streams[1],
                env=env,
                cwd=cmd.cwd,
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
            raise CommandFailed(failure_message(cmd, result), returncode=result.returncode,
                                output=result.stdout + result.stderr)
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
                self._out.write(line)
                self._out.flush()
            proc.wait()
            return "".join(kept), ""
        data = stdin.reveal().encode() if stdin is not None else None
        out, err = proc.communicate(data)
        decode = lambda b: b.decode(errors="replace") if b else ""  # noqa: E731
        return decode(out), decode(err)


def failure_message(cmd: Command, result: Result) -> str:
    """One line naming the command and its exit status, then the tail of what it said."""
    head = f"`{cmd.display()}` failed (exit {result.returncode})"
    said = tail(result.stdout + result.stderr)
    if cmd.mode == "stream":
        return f"{head}; its output is above"
    return f"{head}:\n{said}" if said else head


def _missing_message(name: str, program: str) -> str:
    variable = PROGRAM_ENV.get(name)
    hint = f" or set {variable} to its path" if variable else ""
    return f"{program} not found: install {name}{hint}"


def _terminate(proc, grace: float = 10.0) -> None:
    """Stop a child on Ctrl-C and reap it, so nothing is left behind."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
