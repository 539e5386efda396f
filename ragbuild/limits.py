"""Every limit the tool applies (timeouts, retries, thresholds), in one table.

Each limit has a default, a ``setup.cfg [ragbuild]`` key and a flag of the same name on every
command whose step applies it; a flag beats setup.cfg, setup.cfg beats the default. The table is
what ``--help``, config.py's checks and docs/lifecycle.md go by.

=================  ========  ================================================================
key / flag          default   what it limits
=================  ========  ================================================================
smoke-timeout       60        seconds the smoke test waits for ``GET /ping`` to answer 200
push-attempts       3         attempts per ``docker push`` / manifest read-back when a
                              failure looks transient (a network or registry error)
push-backoff        2         seconds before the second attempt, doubled before each further one
context-warn-mb     100       warn when the build context exceeds this many MB (0: never)
=================  ========  ================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Setting:
    """One limit: its key (``smoke-timeout``, also the flag ``--smoke-timeout``), how its text
    is read, what values it accepts, and its default."""

    key: str
    convert: Callable[[str], float]  # the text's value (int or float)
    accept: Callable[[float], bool]
    what: str  # what a valid value is, for the one-line refusal
    default: float
    help: str

    @property
    def field(self) -> str:
        return self.key.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.key}"

    def parse(self, text: str) -> float:
        """The value of ``text``; ValueError naming what is expected (nan, inf, 1e999 and
        negative numbers are refused where they would wait forever or never run)."""
        try:
            value = self.convert(text)
        except (TypeError, ValueError):
            value = None
        if value is None or not self.accept(value):  # nan fails every comparison: refused
            raise ValueError(f"{text!r} is not {self.what}")
        return value


SETTINGS = (
    Setting(
        "smoke-timeout",
        float,
        lambda v: math.isfinite(v) and v > 0,
        "a number of seconds (more than 0)",
        60.0,
        "seconds the smoke test waits for GET /ping to answer 200",
    ),
    Setting(
        "push-attempts",
        int,
        lambda v: 1 <= v <= 100,
        "a number of attempts (1-100)",
        3,
        "attempts per docker push / manifest read-back on a network or registry error",
    ),
    Setting(
        "push-backoff",
        float,
        lambda v: math.isfinite(v) and 0 <= v <= 3600,
        "a number of seconds (0-3600)",
        2.0,
        "seconds before the second push attempt, doubled before each further one",
    ),
    Setting(
        "context-warn-mb",
        float,
        lambda v: math.isfinite(v) and v >= 0,
        "a number of megabytes (0 or more)",
        100.0,
        "warn, naming the largest entries, when the build context (after .dockerignore) "
        "exceeds MB megabytes (0: never)",
    ),
)
BY_KEY = {setting.key: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Limits:
    """The limits a run applies, resolved: flag, else setup.cfg, else the default."""

    smoke_timeout: float = BY_KEY["smoke-timeout"].default
    push_attempts: int = int(BY_KEY["push-attempts"].default)
    push_backoff: float = BY_KEY["push-backoff"].default
    context_warn_mb: float = BY_KEY["context-warn-mb"].default

    def override(self, **given: Optional[float]) -> Limits:
        """These limits with the given (not None) values in place: the flags over setup.cfg."""
        known = {f.name for f in fields(self)}
        # int or float, as each field is (push_attempts: int)
        values: dict[str, Any] = {k: v for k, v in given.items() if k in known and v is not None}
        return replace(self, **values)


assert [s.field for s in SETTINGS] == [f.name for f in fields(Limits)]


def default_text(setting: Setting) -> str:
    return f"{setting.default:g}"
