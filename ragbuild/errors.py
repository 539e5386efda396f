"""The one exception tree. Each class is a message written for the user and an exit status.

The CLI catches ``RagbuildError`` once and prints ``error: <message>``; nothing else in the
package prints errors or calls ``sys.exit``.
"""

import signal
from collections.abc import Mapping
from typing import Optional

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: An unexpected exception: a bug in ragbuild (the traceback is shown, to be reported).
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


class RagbuildError(Exception):
    """Base class: ``str(err)`` is the one-line message shown to the user."""

    exit_code = EXIT_FAILED


class UsageError(RagbuildError):
    """Bad flags or values; nothing was run."""

    exit_code = EXIT_USAGE


class ToolMissing(RagbuildError):
    """A program we need (docker, git, aws) is not installed."""


class CommandFailed(RagbuildError):
    """A command exited non-zero. Carries what the user needs to see, never a secret;
    ``output``: what the command said that the runner kept (not part of the message: a
    streamed build's is above it), for a diagnosis (``build_failure.classify``)."""

    def __init__(self, message: str, *, returncode: Optional[int] = None, output: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.output = output


class GitFailed(RagbuildError):
    """Git failed or answered incompletely about the repository the build runs in: the run stops
    before docker with git's own reason rather than tag an image with facts it does not have."""


class DockerUnavailable(RagbuildError):
    """The docker daemon cannot be reached, or the client cannot build with BuildKit."""


class PushFailed(RagbuildError):
    """Some refs were not pushed or did not verify. ``pushed``: ref -> digest (None: pushed,
    digest unknown) of what went before the failure, which the metadata records."""

    def __init__(self, message: str = "", *, pushed: Optional[Mapping[str, Optional[str]]] = None):
        super().__init__(message)
        self.pushed = dict(pushed or {})


class SmokeTestFailed(RagbuildError):
    """The built image did not answer /health as expected."""


class ScanFailed(RagbuildError):
    """The vulnerability scanner exited non-zero (findings, or its own failure): no push."""


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Stopped(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM, SIGHUP) arrived: what the handlers ``signals.install`` (called
    by ``cli.main``) raise in the main thread. A KeyboardInterrupt, so every cleanup Ctrl-C runs (each ``except
    KeyboardInterrupt`` and ``finally``) runs for it too; ``signum`` gives the exit status,
    128 + the signal number, as a shell reports a process a signal ended (143 for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)

    def __str__(self) -> str:
        return interrupted_text(self.signum)


def signal_of(stop: BaseException) -> int:
    """The signal behind an interruption: a ``Stopped``'s or ``Interrupted``'s, else SIGINT
    (Python's own KeyboardInterrupt is Ctrl-C)."""
    return getattr(stop, "signum", signal.SIGINT)


def interrupted_text(signum: int) -> str:
    """``interrupted`` for Ctrl-C, ``interrupted by SIGTERM`` for another signal."""
    return "interrupted" if signum == signal.SIGINT else f"interrupted by {signal_name(signum)}"


class Interrupted(RagbuildError):
    """A signal (Ctrl-C's SIGINT, SIGTERM, SIGHUP) stopped the run after the child was
    terminated and reaped; exit status 128 + the signal number (130, 143, 129)."""

    exit_code = EXIT_INTERRUPTED

    def __init__(
        self,
        message: str = "",
        *,
        signum: int = signal.SIGINT,
        pushed: Optional[Mapping[str, Optional[str]]] = None,
    ):
        super().__init__(message or interrupted_text(signum))
        self.signum = int(signum)
        self.pushed = dict(pushed or {})  # as PushFailed's: what a stopped push had pushed
        self.exit_code = 128 + self.signum
