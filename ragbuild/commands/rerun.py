"""The command line that runs this program again as it was started (for the push hint after
a build: ``build.push_hint``) and the program's name in messages."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # imported when a build needs them (--help stays fast)
    pass


def program_name(argv0: Optional[str] = None) -> str:
    """build-image.py when started as scripts/build-image.py, else ragbuild (the console script,
    or ``python -m ragbuild``)."""
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    return "build-image.py" if name.startswith("build-image") else "ragbuild"


def rerun_words(
    argv0: Optional[str] = None,
    executable: Optional[str] = None,
    prefix: Optional[str] = None,
    base_prefix: Optional[str] = None,
    environ: Mapping[str, str] = os.environ,
) -> list[str]:
    """How to start this program again as it was started: ``scripts/build-image.py`` (its
    shebang finds python3 on PATH), prefixed with the interpreter when that is a virtualenv's
    that is not activated (``make`` runs ``.venv/bin/python scripts/build-image.py``);
    ``ragbuild`` for the console script; ``<python> -m ragbuild``."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    prefix = sys.prefix if prefix is None else prefix
    base_prefix = sys.base_prefix if base_prefix is None else base_prefix
    python = _relative(executable)
    name = os.path.basename(argv0)
    if name == "__main__.py":
        return [python, "-m", "ragbuild"]
    if program_name(argv0) == "ragbuild":
        return ["ragbuild"]
    script = argv0 if os.sep in argv0 else os.path.join(".", argv0)
    # RAGBUILD_IN_VENV: the script ran itself again with the project's .venv (scripts/
    # build-image.py), so starting it as the user did works as it is
    inactive_venv = (
        prefix != base_prefix
        and environ.get("VIRTUAL_ENV") != prefix
        and not environ.get("RAGBUILD_IN_VENV")
    )
    return [python, script] if inactive_venv else [script]


def _relative(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    return rel if not rel.startswith(os.pardir) else path
