"""Commands as data: ``Command`` (one process to start, with its ``Mode`` of output and its
``Kind``, which is all a dry run needs), what it gave back (``Result``) and a value it is fed
that is never printed (``Secret``). Made by the domain, started by ``run.runner``."""

from __future__ import annotations

import enum
import shlex
from dataclasses import dataclass
from typing import Optional

from ragbuild.run.redaction import redact_argv, redact_value

#: What a dry run takes ``--iidfile`` to have said: the image ID a real run follows from the
#: build on (summary, smoke test, scan, ``docker tag`` before each push, the read-back).
DRY_IMAGE_ID = "IMAGE_ID"


class Mode(enum.Enum):
    """Where a command's output goes."""

    CAPTURE = "capture"  # kept, not shown
    STREAM = "stream"  # the child writes to our terminal (docker's live progress); not kept
    TEE = "tee"  # shown live and kept (stdout and stderr merged)
    #: like STREAM, and the end of its stderr kept (the build: what it failed on, for
    #: ``build_failure``); through a pseudo-terminal when ours is one (``runner.Runner.run``)
    WATCH = "watch"
    INTERACTIVE = "interactive"  # like STREAM, and the child reads our stdin (a shell)


class Kind(enum.Enum):
    """What a command is, which is all a dry run needs to know (``dry.DryRunner``)."""

    QUERY = "query"  # read-only and local (a git query): runs in a dry run too; not logged
    PROBE = "probe"  # asks docker or aws something: a dry run prints it and assumes it passes
    ACTION = "action"  # changes something: a dry run prints it


@dataclass(frozen=True)
class Command:
    """One process to start, as data: what ``--dry-run`` prints is ``display()``."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # (("DOCKER_BUILDKIT", "1"),): added to the environment
    mode: Mode = Mode.CAPTURE
    check: bool = True  # a non-zero exit raises CommandFailed
    kind: Kind = Kind.ACTION
    stdin: Optional[str] = None  # a placeholder naming what is fed on stdin; never its value
    assume: str = ""  # the stdout a dry run takes it to have printed (it exits 0)
    dry_note: str = ""  # what a real run decides from its answer, said by a dry run
    #: a file the command writes its answer to (``--metadata-file``): ``Runner.run`` removes
    #: it before the command (an earlier run's is no answer), returns its text as the stdout and
    #: removes it (a dry run: ``assume``, and no file touched)
    answer_file: Optional[str] = None
    #: the file ``docker build --iidfile`` writes the built image's ID to: made way for and read
    #: as ``answer_file`` is; its text is the result's ``image_id`` (a dry run: DRY_IMAGE_ID)
    iid_file: Optional[str] = None
    #: a poll, run again and again while a step waits: a real run logs no ``+`` line for it (the
    #: wait line says what is waited for: waiting.py); a dry run prints it as any command
    poll: bool = False

    @property
    def name(self) -> str:
        """The program and its subcommand (``docker push``), for messages: what the runner adds
        (the run's global ``docker --context NAME``) is not in ``argv`` yet."""
        return " ".join(self.argv[:2])

    def display(self) -> str:
        """The command line, shell-quoted, with secret values shown as ``***`` (``redact_argv``)."""
        words = [f"{k}={shlex.quote(redact_value(k, v))}" for k, v in self.env]
        words.append(shlex.join(redact_argv(self.argv)))
        if self.stdin:
            words.append(f"< {self.stdin}")
        return " ".join(words)

    @property
    def hides_secrets(self) -> bool:
        """Whether ``display()`` shows ``***`` in place of a value the real command gets."""
        return redact_argv(self.argv) != tuple(self.argv) or any(
            redact_value(k, v) != v for k, v in self.env
        )


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
    image_id: str = ""  # what the command wrote to its ``Command.iid_file``, stripped

    @property
    def ok(self) -> bool:
        return self.returncode == 0
