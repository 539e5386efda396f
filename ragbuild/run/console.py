"""Colour for the log, as build-image.sh had it: its ``[INFO]`` blue, ``[SUCCESS]`` green,
``[WARNING]`` yellow and ``[ERROR]`` red levels, on a terminal only.

The words stay the port's (``warning: ...``, ``error: ...``, ``+ docker ...``): colour is added
around them, never text, so a log without colour is byte for byte what it always was.

When (``colour(stream)``), in this order:

- ``NO_COLOR`` set to anything but the empty string: never (https://no-color.org);
- ``FORCE_COLOR`` set to anything but the empty string or ``0``: always (the convention of
  Node, pytest and many CI systems: https://force-color.org);
- otherwise only when ``stream`` is a terminal (``isatty``); a pipe, a file or a CI log is plain.
"""

from __future__ import annotations

import os
from typing import IO, Optional
from collections.abc import Mapping

INFO, SUCCESS, WARNING, ERROR = "info", "success", "warning", "error"

#: build-image.sh's ANSI colours: BLUE='\033[0;34m', GREEN='\033[0;32m', YELLOW='\033[1;33m',
#: RED='\033[0;31m', NC='\033[0m'.
COLOURS = {INFO: "\033[0;34m", SUCCESS: "\033[0;32m", WARNING: "\033[1;33m", ERROR: "\033[0;31m"}
RESET = "\033[0m"

#: The word a message starts with that gives its level when the caller does not.
PREFIXES = (("error:", ERROR), ("warning:", WARNING), ("+ ", INFO))


def colour(stream: IO[str], environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether to colour what is written to ``stream`` (see the module's rules)."""
    environ = os.environ if environ is None else environ
    if environ.get("NO_COLOR", ""):
        return False
    if environ.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed stream
        return False


def level_of(message: str, level: Optional[str] = None) -> Optional[str]:
    """The message's level: the one given, else the one its first word names, else None."""
    if level is not None:
        return level
    for prefix, named in PREFIXES:
        if message.startswith(prefix):
            return named
    return None


def paint(
    message: str,
    stream: IO[str],
    level: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> str:
    """``message`` as it is to be written to ``stream``: unchanged when there is no colour or no
    level; else the level's word (``error:``, ``warning:``, ``+``) in its colour, or the whole
    first line for a success or a message given a level without such a word."""
    level = level_of(message, level)
    if level is None or not colour(stream, environ):
        return message
    code = COLOURS[level]
    for prefix, named in PREFIXES:
        if named == level and message.startswith(prefix):
            word = prefix.rstrip()
            return f"{code}{word}{RESET}{message[len(word) :]}"
    first, sep, rest = message.partition("\n")
    return f"{code}{first}{RESET}{sep}{rest}"
