"""Redaction: what ragbuild prints (the log, ``--dry-run``, error messages, the metadata) never
shows a secret; the real argv keeps it. One rule for every printout: a build arg (or variable)
whose name looks like a secret is shown as ``***``, and so are URL credentials
(``https://user:token@host``) anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


REDACTED = "***"
#: A build arg (or env variable) whose name contains one of these, or has one of the parts, is
#: taken for a secret: the context check warns about it and every printout shows ``***``.
SECRET_ARG_WORDS = ("TOKEN", "PASSWORD", "PASSWD", "SECRET", "CREDENTIAL")
SECRET_ARG_PARTS = ("KEY", "KEYS", "APIKEY", "PRIVATEKEY")
URL_USERINFO_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def is_secret_name(key: str) -> bool:
    upper = key.upper()
    return any(word in upper for word in SECRET_ARG_WORDS) or any(
        part in SECRET_ARG_PARTS for part in re.split(r"[_\-]", upper)
    )


def secret_build_args(build_args: Iterable[tuple[str, str]]) -> list[str]:
    """The names among ``(key, value)`` build args that carry a secret: the ones every printout
    hides (``redact_value``), a secret-looking name or a value with URL credentials
    (``PIP_INDEX_URL=https://user:token@host/simple``). One rule for hiding and for warning."""
    return [key for key, value in build_args if redact_value(key, value) != value]


def redact_value(key: str, value: str) -> str:
    """``***`` for a secret-looking name; otherwise the value with URL credentials
    (``https://user:token@host``) hidden."""
    if is_secret_name(key):
        return REDACTED
    return URL_USERINFO_RE.sub(rf"\g<scheme>{REDACTED}@", value)


def redact_argv(argv: Iterable[str]) -> tuple[str, ...]:
    """``argv`` as it may be printed: each ``--build-arg KEY=VALUE`` (or ``--build-arg=KEY=VALUE``)
    through ``redact_value``, URL credentials hidden in every other word."""
    shown, words = [], list(argv)
    for i, word in enumerate(words):
        after_flag = i > 0 and words[i - 1] == "--build-arg"
        if after_flag or word.startswith("--build-arg="):
            prefix = "" if after_flag else "--build-arg="
            key, eq, value = word[len(prefix) :].partition("=")
            if eq:
                shown.append(f"{prefix}{key}={redact_value(key, value)}")
                continue
        shown.append(URL_USERINFO_RE.sub(rf"\g<scheme>{REDACTED}@", word))
    return tuple(shown)
