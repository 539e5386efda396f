"""The terminal a watched command (``Mode.WATCH``: the build) writes to: a pseudo-terminal
whose window follows ours, so docker's progress looks as it does in a shell."""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import IO, Callable, Optional


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty() and sys.platform != "win32"
    except (AttributeError, ValueError):  # closed, or no such method
        return False


def open_pty(like: IO[str]) -> tuple[int, int]:
    """A new pseudo-terminal ``(ours, the child's)``, its window the size of ``like``'s."""
    import pty

    ours, theirs = pty.openpty()
    copy_window(like, ours)
    return ours, theirs


def copy_window(like: IO[str], fd: int) -> None:
    """Give the terminal ``fd`` the window size of the terminal ``like`` (if it has one)."""
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(like.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def follow_window(like: IO[str], fd: int) -> Optional[Callable[[], None]]:
    """While a child draws on the pty whose our end is ``fd``, a resized terminal (SIGWINCH)
    resizes the pty too. The child, in our process group, gets the terminal's SIGWINCH itself
    and asks its stderr (the pty) for the size as it redraws (docker's progress display does at
    every redraw). Returns what restores the previous handler; None off the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.signal(signal.SIGWINCH, lambda signum, frame: copy_window(like, fd))

    def restore() -> None:
        signal.signal(signal.SIGWINCH, previous)

    return restore


def close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:  # the child's end, closed once the child had it
        pass
