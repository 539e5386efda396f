"""The benchmarks' processes: one small helper over plumbum, as ragbuild's runner uses.

Every process gets the harness's environment (plus a command's own variables), a working
directory, no stdin, and its output in the run's log (or a file of its own). ``timed`` measures
what the benchmarks report: wall-clock seconds from the child's start to its exit.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Any, Callable, NamedTuple, Optional
from collections.abc import Sequence

from plumbum import local

Argv = Sequence[object]  # program and arguments; paths and numbers become str


class CommandError(SystemExit):
    """A command of a benchmark round failed; the round may be retried."""


class Done(NamedTuple):
    """A finished command: exit status and, when captured, its output (text)."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


def load_env_file(path: Path) -> dict[str, str]:
    """The environment after sourcing the harness's env file (shell: bash reads it).
    SystemExit when the file is missing."""
    if not path.is_file():
        raise SystemExit(
            f"error: {path} not found: bring the harness up first (bash "
            "tests/e2e/harness.sh up --with-buildessential --with-realistic), "
            "or run `make bench`"
        )
    listing = local["bash"]["-c", 'set -a; . "$1"; env -0', "bash", str(path)]()
    return dict(item.split("=", 1) for item in listing.split("\0") if "=" in item)


class Shell:
    """Starts the benchmark's processes with ``env`` (the harness's) as the whole environment;
    what they print goes to ``logfile`` unless a call says otherwise. ``hint()``: more words for
    a failure (why the harness may have failed), or ""."""

    def __init__(self, env: dict[str, str], logfile: Path, hint: Callable[[], str] = str):
        local.env.clear()  # plumbum adds its own environment to every child's: make it env
        local.env.update(env)
        self.env = env
        self.logfile = logfile
        self.hint = hint
        self._log = open(logfile, "a", encoding="utf-8")

    def close(self) -> None:
        self._log.close()

    def _bound(self, argv: Argv, extra_env: Optional[dict[str, str]]) -> tuple[Any, dict]:
        """The plumbum command for ``argv``, its program found on the PATH it runs with (as
        subprocess finds it), and the variables it adds."""
        extra = extra_env or {}
        words = [str(word) for word in argv]
        path = extra.get("PATH", self.env.get("PATH", os.defpath))
        program = shutil.which(words[0], path=path) or words[0]
        return local[program][words[1:]], extra

    def _header(self, argv: Argv, cwd: Optional[Path]) -> None:
        self._log.write(f"\n$ (cd {cwd or os.getcwd()}) {shlex.join(map(str, argv))}\n")
        self._log.flush()

    def _failed(self, argv: Argv, returncode: int, where: object) -> CommandError:
        self._log.flush()
        return CommandError(
            f"error: `{shlex.join(map(str, argv))}` failed (exit {returncode}); "
            f"see {where}{self.hint()}"
        )

    def run(
        self,
        argv: Argv,
        *,
        cwd: Optional[Path] = None,
        extra_env: Optional[dict[str, str]] = None,
        check: bool = True,
    ) -> Done:
        """Run to its end, output to the log; CommandError on a non-zero exit when ``check``."""
        bound, extra = self._bound(argv, extra_env)
        self._header(argv, cwd)
        proc = bound.popen(
            cwd=cwd, env=extra, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        done = Done(proc.wait())
        if check and done.returncode:
            raise self._failed(argv, done.returncode, self.logfile)
        return done

    def capture(
        self,
        argv: Argv,
        *,
        cwd: Optional[Path] = None,
        extra_env: Optional[dict[str, str]] = None,
        check: bool = True,
    ) -> Done:
        """Run to its end and keep stdout and stderr (also copied to the log)."""
        bound, extra = self._bound(argv, extra_env)
        self._header(argv, cwd)
        proc = bound.popen(cwd=cwd, env=extra, stdin=subprocess.DEVNULL)
        out, err = proc.communicate()
        done = Done(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
        self._log.write(done.stdout + done.stderr)
        if check and done.returncode:
            raise self._failed(argv, done.returncode, self.logfile)
        return done

    def out(self, argv: Argv, **kw: Any) -> str:
        """The command's stdout, stripped."""
        return self.capture(argv, **kw).stdout.strip()

    def timed(
        self,
        argv: Argv,
        *,
        cwd: Optional[Path] = None,
        extra_env: Optional[dict[str, str]] = None,
        output: Optional[Path] = None,
    ) -> float:
        """Wall-clock seconds from the child's start to its exit (``time.perf_counter``); its
        output goes to ``output`` (or the log). CommandError on a non-zero exit."""
        bound, extra = self._bound(argv, extra_env)  # the program is found before the clock
        sink: IO[str] = open(output, "w", encoding="utf-8") if output else self._log
        if not output:
            self._header(argv, cwd)
        try:
            start = time.perf_counter()
            proc = bound.popen(
                cwd=cwd, env=extra, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
            returncode = proc.wait()
            elapsed = time.perf_counter() - start
        finally:
            if output:
                sink.close()
        if returncode:
            raise self._failed(argv, returncode, output or self.logfile)
        return elapsed
