"""The one exception tree. Each class is a message written for the user and an exit status.

The CLI catches ``RagbuildError`` once and prints ``error: <message>``; nothing else in the
package prints errors or calls ``sys.exit``.
"""

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
    """A command exited non-zero. Carries what the user needs to see, never a secret."""

    def __init__(self, message: str, *, returncode: Optional[int] = None):
        super().__init__(message)
        self.returncode = returncode


class GitFailed(RagbuildError):
    """Git failed or answered incompletely about the repository the build runs in: the run stops
    before docker with git's own reason rather than tag an image with facts it does not have."""


class DockerUnavailable(RagbuildError):
    """The docker daemon cannot be reached, or the client cannot build with BuildKit."""


class PushFailed(RagbuildError):
    """Some refs were not pushed or did not verify."""


class SmokeTestFailed(RagbuildError):
    """The built image did not answer /health as expected."""


class ScanFailed(RagbuildError):
    """The vulnerability scanner exited non-zero (findings, or its own failure): no push."""


class Interrupted(RagbuildError):
    """Ctrl-C: the child was terminated and reaped."""

    exit_code = EXIT_INTERRUPTED
