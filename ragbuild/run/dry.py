"""``--dry-run``: the dry runner prints each command a real run would start instead of starting
it, runs only read-only ``Kind.QUERY`` commands, and warns (once each) where a real run would
stop. ``make_runner`` picks it or the real ``Runner``: nothing else asks which one it has."""

from __future__ import annotations

from contextlib import AbstractContextManager

import os
import shutil
from typing import IO, Callable, Optional
from collections.abc import Sequence

from ragbuild.errors import RagbuildError
from ragbuild.run.command import DRY_IMAGE_ID, Command, Kind, Result, Secret
from ragbuild.run.answer import check_answer_directory
from ragbuild.run.runner import T, Runner, _write, missing_message, resolve


class DryRunner(Runner):
    """``--dry-run``: prints each command a real run would start (stdout) instead of starting it,
    runs only ``Kind.QUERY`` commands, and warns (once each) where a real run would stop."""

    def __init__(
        self, *, out: Optional[IO[str]] = None, log: Optional[IO[str]] = None, quiet: bool = False
    ):
        super().__init__(out=out, log=log, quiet=quiet)
        self._warned: set[str] = set()

    def _once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log(message)

    def report(self, message: str, level: Optional[str] = None) -> None:
        pass

    def emit(self, line: str, level: Optional[str] = None) -> None:
        pass

    def verdict(self, summary: str, status: int, *, asked: str) -> int:
        _write(
            self._out,
            f"dry run: these are the commands {asked}; it ran none of them, so it found nothing\n",
        )
        return 0

    def stop_or_warn(self, error: RagbuildError, *, key: Optional[str] = None) -> None:
        self._once(key or str(error), f"warning: {error} (a real run stops here)")

    def apply(self, what: str, action: Callable[[], None]) -> None:
        self.log(f"dry run: would {what}")

    def check(self, what: str, probe: Callable[[], T], assume: T) -> T:
        self._once(what, f"dry run: a real run would {what}")
        return assume

    def waiting(self, what: str, limit: Optional[float] = None) -> AbstractContextManager[object]:
        from ragbuild.run import waiting

        return waiting.NoLine()  # a dry run waits for nothing

    def check_all(self, checks: Sequence[tuple[str, Callable[[], T], T]]) -> list[T]:
        """One after the other, as ``check``: each said, in order, none asked."""
        return [self.check(*one) for one in checks]

    def run_all(self, cmds: Sequence[Command], *, show_output: bool = False) -> list[Result]:
        """One after the other: the printed commands keep their order."""
        return [self.run(cmd) for cmd in cmds]

    def run(self, cmd: Command, *, stdin: Optional[Secret] = None) -> Result:
        if cmd.kind is Kind.QUERY:
            return super().run(cmd, stdin=stdin)
        cmd = self._targeted(cmd)
        program = resolve(cmd.argv[0])
        if not shutil.which(program):
            self._once(
                program, f"warning: {missing_message(cmd.argv[0], program)} (a real run stops here)"
            )
        if cmd.hides_secrets:
            self._once(
                "***",
                "dry run: secret values (secret-looking build args, URL "
                "credentials) are shown as ***; the real command gets them",
            )
        for path in (cmd.answer_file, cmd.iid_file):
            if path is not None:
                self._answer_directory(os.path.dirname(path) or ".")
        _write(self._out, f"{cmd.display()}\n")
        if cmd.dry_note:
            self._once(cmd.dry_note, f"dry run: {cmd.dry_note}")
        return Result(0, cmd.assume, image_id=DRY_IMAGE_ID if cmd.iid_file else "")

    def _answer_directory(self, directory: str) -> None:
        """What a real run's ``make_way`` would do with the directory of a command's answer
        file, said and not done: a warning where it would stop; where it would make the
        directory, that it would, since the printed command, pasted, fails without it (buildx
        writes its --metadata-file only in a directory that is there, after the push)."""
        try:
            check_answer_directory(directory)
        except FileNotFoundError:
            self._once(
                directory,
                f"dry run: a real run first makes {directory} (mode 0700), "
                "where docker writes what it pushed; make it before running "
                "the build line yourself",
            )
        except OSError:
            pass  # the real run's mkdir says why
        except RagbuildError as error:
            self.stop_or_warn(error)


def make_runner(dry_run: bool, *, log: Optional[IO[str]] = None, quiet: bool = False) -> Runner:
    """The runner for ``--dry-run`` or a real run; ``log``: where its messages go (stderr);
    ``quiet``: ``-q/--quiet`` (only errors on the log)."""
    return DryRunner(log=log, quiet=quiet) if dry_run else Runner(log=log, quiet=quiet)
