#!/usr/bin/env python3
"""Drop-in for scripts/build-image.sh: runs ragbuild from a fresh clone, no install needed.

Started by a Python without ragbuild's packages (``./scripts/build-image.py`` is the system
python3 by its #! line) while the project's ``.venv`` exists (``make venv``, or any make target's
first use, made it), it runs itself again with ``.venv/bin/python``: the README's commands work
after ``make build-dev`` without activating anything."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, ROOT)

from ragbuild.deps import NEEDED, install_hint, missing  # noqa: E402 (imports nothing)

MISSING = missing()
if MISSING:
    VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
    if os.access(VENV_PYTHON, os.X_OK) and not os.environ.get("RAGBUILD_IN_VENV"):
        os.environ["RAGBUILD_IN_VENV"] = "1"  # once: a .venv without the packages says so below
        os.execv(VENV_PYTHON, [VENV_PYTHON, *sys.argv])
    sys.stderr.write(
        f"error: missing Python packages {', '.join(MISSING)}: {install_hint(NEEDED.values())}\n"
    )
    sys.exit(1)

from ragbuild.cli import run  # noqa: E402

run()
