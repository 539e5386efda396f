"""The wait line: while a step waits (a container to answer, to exit, a retry's backoff), one
line says what for and for how long, instead of the commands of each poll.

On a terminal it is one line redrawn in place (``\\r`` and erase-line, ``ESC [ K``) about twice
a second and erased when the wait ends, so the log above it is what it was; in a log (stderr not
a terminal) it is a line every ``LOG_EVERY`` seconds, the first once a wait has lasted that long,
so a short wait adds nothing. Shapes: ``what`` is a phrase after "waiting for" ("GET /ping to
answer 200"); ``limit`` the seconds the wait may last (None: no limit); times are whole seconds.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import IO, Callable, Optional

#: Seconds between two lines in a log (stderr is not a terminal).
LOG_EVERY = 5.0
#: Seconds between two redraws on a terminal.
DRAW_EVERY = 0.5
ERASE = "\r\x1b[K"


def text(what: str, elapsed: float, limit: Optional[float]) -> str:
    """``waiting for WHAT: 12s of at most 60s`` (``12s`` without a limit)."""
    bound = f" of at most {limit:g}s" if limit is not None else ""
    return f"waiting for {what}: {int(elapsed)}s{bound}"


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class WaitLine:
    """A context manager: while it is entered, a thread keeps the line up to date on ``stream``
    (the runner's log). ``terminal``: whether to redraw in place (default: ``stream.isatty()``).
    ``clock`` and ``every`` are for tests."""

    def __init__(
        self,
        stream: IO[str],
        what: str,
        limit: Optional[float] = None,
        *,
        terminal: Optional[bool] = None,
        clock: Callable[[], float] = time.monotonic,
        every: Optional[float] = None,
    ):
        self.stream, self.what, self.limit = stream, what, limit
        self.terminal = is_terminal(stream) if terminal is None else terminal
        self.clock = clock
        self.every = every if every is not None else (DRAW_EVERY if self.terminal else LOG_EVERY)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._drawn = False
        self.start = 0.0

    def __enter__(self) -> WaitLine:
        self.start = self.clock()
        self._thread = threading.Thread(target=self._loop, name="ragbuild-wait-line", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: Optional[type], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._drawn and self.terminal:
                self._write(ERASE)
                self._drawn = False

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    def draw(self) -> None:
        """The line now: redrawn on a terminal, one more line in a log."""
        line = text(self.what, self.elapsed, self.limit)
        with self._lock:
            self._write(f"{ERASE}{line}" if self.terminal else f"{line}\n")
            self._drawn = True

    def _loop(self) -> None:
        if self.terminal:
            self.draw()
        while not self._stop.wait(self.every):
            self.draw()

    def _write(self, data: str) -> None:
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):  # a closed log: the wait goes on without its line
            pass


class NoLine:
    """What a dry run and ``--quiet`` wait with: nothing drawn."""

    def __enter__(self) -> NoLine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
