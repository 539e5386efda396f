"""Termination signals as Ctrl-C: one cleanup path for SIGINT, SIGTERM and SIGHUP.

``install()`` (called by ``cli.main``) makes each of them raise ``errors.Stopped``, a
``KeyboardInterrupt`` carrying the signal number, in the main thread; so every ``except
KeyboardInterrupt`` and ``finally`` that cleans up after Ctrl-C (the runner stopping its child,
the smoke test removing its container, ``run`` rolling back, the metadata recording
"interrupted") runs for all three, and the CLI exits 128 + the signal number. CI systems cancel
a job with SIGTERM (Buildkite, Jenkins, GitLab, Kubernetes, ``docker stop``); a closed terminal
sends SIGHUP. A signal ignored when ragbuild started (``nohup``: SIGHUP; a shell's background
job: SIGINT) stays ignored.

``deferred()`` holds a signal back while a child is being started, so that the runner always
has the child's handle when the exception comes and can stop it (without it, a signal landing
inside ``popen`` would leave the child running, unknown).

One signal stops the run; the cleanup it starts is not itself stopped. A second signal (Ctrl-C
pressed again, a CI system repeating SIGTERM) raises nothing: it only makes ``hurried()`` true,
and the runner then kills the child it was giving time to exit (SIGKILL instead of waiting out
the grace period). Raised again inside the cleanup, it would leave that child running, a smoke
container up, the metadata unwritten.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Callable, Optional, Union
from collections.abc import Iterator

from ragbuild.errors import Stopped

#: The signals that get Ctrl-C's cleanup.
NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

#: A signal's handler as ``signal.signal`` takes and returns it (a function, SIG_DFL/SIG_IGN,
#: or None: one not installed from Python).
Handler = Union[Callable[[int, Optional[FrameType]], object], int, signal.Handlers, None]

_deferring = False
_pending: Optional[int] = None
_stopping = False  # a signal has stopped the run: the ones after it only hurry the cleanup
_hurry = False


def _raise_stopped(signum: int, frame: object) -> None:
    global _pending, _stopping, _hurry
    if _stopping or _pending is not None:
        _hurry = True
        return
    if _deferring:
        _pending = signum
        return
    _stopping = True
    raise Stopped(signum)


def hurried() -> bool:
    """Whether a further signal came after the one that stopped the run: the cleanup should
    kill rather than wait."""
    return _hurry


def _reset() -> None:
    global _pending, _stopping, _hurry
    _pending, _stopping, _hurry = None, False, False


def install() -> dict[int, Handler]:
    """Install the handlers (main thread only); returns the previous ones, for ``restore``."""
    previous: dict[int, Handler] = {}
    _reset()
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in NAMES:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        current = signal.getsignal(signum)
        if current == signal.SIG_IGN or (
            signum == signal.SIGINT and current is not signal.default_int_handler
        ):
            continue  # ignored, or someone else's SIGINT handler: left alone
        previous[signum] = signal.signal(signum, _raise_stopped)
    return previous


def restore(previous: dict[int, Handler]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    _reset()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold our handlers' signals back for the block; one that came meanwhile is raised as
    ``Stopped`` when it ends (after the block's assignments are done)."""
    global _deferring, _pending, _stopping
    outer = _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = outer
        if not outer and _pending is not None:
            signum, _pending = _pending, None
            _stopping = True
            raise Stopped(signum)
